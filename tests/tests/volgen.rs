//! Golden volgen: the volfiles cairnd generates for sample volumes are compared with the
//! files in volfiles/examples/generated/ and validated against every translator type; the
//! volume option reference in docs/ is generated from the option table.
//! Regenerate both with `CAIRN_BLESS=1 cargo test -p cairn-tests --test volgen`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use cairn_api::{BrickConfig, VolumeConfig, VolumeState};
use cairn_daemon::{options, volgen};
use cairn_tests::workspace_root;

fn volume(replica: u32, arbiter: bool, hosts: &[&str], opts: &[(&str, &str)]) -> VolumeConfig {
    VolumeConfig {
        name: "pacs".into(),
        id: "6f1c2b8e-6a43-4b39-9d3f-3b0f1d6f5a10".into(),
        replica,
        arbiter,
        bricks: hosts
            .iter()
            .enumerate()
            .map(|(i, h)| BrickConfig {
                id: format!("brick-{i}"),
                host: h.to_string(),
                path: format!("/data/brick{}/pacs", i / hosts.len().max(1) + 1),
                port: 24010 + (i / 3) as u16,
                arbiter: arbiter && i % 3 == 2,
                disabled: false,
            })
            .collect(),
        state: VolumeState::Started,
        options: opts
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        secret: "0123456789abcdef".into(),
        version: 7,
        removing: Vec::new(),
    }
}

fn golden(name: &str, text: &str) {
    let path = workspace_root()
        .join("volfiles/examples/generated")
        .join(name);
    if std::env::var_os("CAIRN_BLESS").is_some() {
        fs::write(&path, text).unwrap();
    }
    let on_disk = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == text,
        "{} differs from what volgen generates now:\n{text}",
        path.display()
    );
}

#[test]
fn generated_volfiles_match_the_golden_files_and_validate() {
    let registry = cairn_bricks::registry();
    let cases = [
        (
            "replica3",
            volume(
                3,
                false,
                &["node1", "node2", "node3"],
                &[("network.ping-timeout", "5s")],
            ),
        ),
        (
            "arbiter",
            volume(3, true, &["node1", "node2", "node3"], &[]),
        ),
        (
            "single",
            volume(1, false, &["node1"], &[("auth.allow", "10.1.*.*")]),
        ),
    ];
    for (name, v) in cases {
        let client = cairn_volfiles::emit(&volgen::client_volfile(&v)).unwrap();
        golden(&format!("{name}-client.yaml"), &client);
        let vf = cairn_volfiles::parse(&client).unwrap();
        cairn_volfiles::validate(&vf, &registry).unwrap_or_else(|e| panic!("{name} client: {e}"));
        let b = &v.bricks[0];
        let brick = cairn_volfiles::emit(&volgen::brick_volfile(
            &v,
            b,
            "0.0.0.0",
            Path::new("/var/lib/cairn/run/pacs-brick-0.clients"),
        ))
        .unwrap();
        golden(&format!("{name}-brick.yaml"), &brick);
        let vf = cairn_volfiles::parse(&brick).unwrap();
        cairn_volfiles::validate(&vf, &registry).unwrap_or_else(|e| panic!("{name} brick: {e}"));
    }
}

#[test]
fn volume_options_reach_the_translators_they_name() {
    let v = volume(
        3,
        false,
        &["a", "b", "c"],
        &[
            ("network.ping-timeout", "5s"),
            ("auth.reject", "10.9.9.9"),
            ("server.max-inflight", "64"),
        ],
    );
    let client = cairn_volfiles::emit(&volgen::client_volfile(&v)).unwrap();
    assert_eq!(client.matches("ping-timeout: 5s").count(), 3, "{client}");
    assert!(client.contains("type: cluster/replicate"));
    let brick = cairn_volfiles::emit(&volgen::brick_volfile(
        &v,
        &v.bricks[1],
        "10.0.0.2",
        Path::new("/x"),
    ))
    .unwrap();
    assert!(
        brick.contains("auth-reject: 10.9.9.9") && brick.contains("max-inflight: '64'")
            || brick.contains("max-inflight: \"64\"")
            || brick.contains("max-inflight: 64"),
        "{brick}"
    );
    assert!(brick.contains("listen: 10.0.0.2:24010"), "{brick}");
    // Every option in the table names a translator type and key that exist.
    let registry = cairn_bricks::registry();
    for o in options::OPTIONS {
        for t in o.targets {
            if let options::Target::Client { xlator, key }
            | options::Target::Brick { xlator, key } = t
            {
                let decl = cairn_volfiles::Catalog::decl(&registry, xlator)
                    .unwrap_or_else(|| panic!("{}: no type {xlator}", o.key));
                assert!(
                    decl.options.iter().any(|s| s.key == *key),
                    "{}: {xlator} has no option {key}",
                    o.key
                );
            }
        }
    }
}

#[test]
fn graph_names_follow_brick_ids_so_a_removed_set_renames_nothing() {
    let hosts = ["a", "b", "c", "a", "b", "c", "a", "b", "c"];
    let mut v = volume(3, false, &hosts, &[]);
    // The middle set is being drained: distribute is told by name.
    v.removing = vec!["brick-3".into(), "brick-4".into(), "brick-5".into()];
    let client = cairn_volfiles::emit(&volgen::client_volfile(&v)).unwrap();
    assert!(
        client.contains("decommissioned: pacs-replicate-1"),
        "{client}"
    );
    // After the commit, the last set keeps its names: they are keys on disk (replicate's
    // blame counters name the clients, distribute's pointers name the sets).
    v.bricks.retain(|b| !v.removing.contains(&b.id));
    v.removing.clear();
    let vf = volgen::client_volfile(&v);
    let names: Vec<&str> = vf.graph.iter().map(|n| n.name.as_str()).collect();
    for want in [
        "pacs-client-0",
        "pacs-client-8",
        "pacs-replicate-0",
        "pacs-replicate-2",
        "pacs-dht",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert!(!names.contains(&"pacs-replicate-1") && !names.contains(&"pacs-client-3"));
    let client = cairn_volfiles::emit(&vf).unwrap();
    assert!(!client.contains("decommissioned"), "{client}");
    let parsed = cairn_volfiles::parse(&client).unwrap();
    cairn_volfiles::validate(&parsed, &cairn_bricks::registry()).unwrap();
}

#[test]
fn the_volume_option_reference_in_docs_is_current() {
    let text = format!(
        "{}\n---\n\nRegenerate this page with `CAIRN_BLESS=1 cargo test -p cairn-tests --test volgen`.\n",
        options::render_reference()
    );
    let path = workspace_root().join("docs/reference/volume-options.md");
    if std::env::var_os("CAIRN_BLESS").is_some() {
        fs::write(&path, &text).unwrap();
    }
    assert!(
        fs::read_to_string(&path).unwrap_or_default() == text,
        "{} is stale: CAIRN_BLESS=1 cargo test -p cairn-tests --test volgen",
        path.display()
    );
}
