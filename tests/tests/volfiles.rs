//! Golden volfiles: the examples in volfiles/examples validate against every translator type
//! a Cairn process knows; the bad ones fail with the error their first line promises; the
//! option reference in docs/ is the one generated from the declarations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use cairn_bricks::brickgraph::{BrickSpec, brick_volfile};
use cairn_tests::workspace_root;
use cairn_translators::Graph;
use cairn_volfiles::{Role, render_reference, validate};

fn examples(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn good_examples_validate_and_client_graphs_build() {
    let registry = cairn_bricks::registry();
    let dir = workspace_root().join("volfiles/examples");
    let files = examples(&dir);
    assert!(files.len() >= 3, "examples are missing");
    for path in files {
        let vf =
            cairn_volfiles::read_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let vg = validate(&vf, &registry).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if vg.role == Role::Client {
            Graph::build(&vg, &registry).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        // Emitting and parsing again gives the same volfile.
        let again = cairn_volfiles::parse(&cairn_volfiles::emit(&vf).unwrap()).unwrap();
        assert_eq!(again, vf, "{}", path.display());
    }
}

#[test]
fn bad_examples_fail_with_the_promised_message() {
    let registry = cairn_bricks::registry();
    let dir = workspace_root().join("volfiles/examples/bad");
    let files = examples(&dir);
    assert!(files.len() >= 5);
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be '# expect: ...'", path.display()));
        let err = cairn_volfiles::parse(&text)
            .and_then(|vf| validate(&vf, &registry).map(|_| ()))
            .expect_err(&format!("{} must not validate", path.display()));
        assert!(
            err.to_string().contains(expect),
            "{}: {err}",
            path.display()
        );
    }
}

#[test]
fn the_default_brick_graph_validates() {
    let vf = brick_volfile(&BrickSpec {
        volume: "pacs",
        volume_id: "v",
        brick_id: "b",
        directory: Path::new("/data/b"),
        listen: "0.0.0.0:0",
        init: false,
    });
    let vg = validate(&vf, &cairn_bricks::registry()).unwrap();
    let types: Vec<&str> = vg.nodes.iter().map(|n| n.decl.type_name).collect();
    assert_eq!(
        types,
        [
            "storage/posix",
            "features/locks",
            "features/index",
            "debug/io-stats",
            "protocol/server"
        ]
    );
}

/// docs/reference/translators.md is generated from the option declarations. After changing
/// an option, regenerate it with `CAIRN_BLESS=1 cargo test -p cairn-tests --test volfiles`.
#[test]
fn the_translator_reference_in_docs_is_current() {
    let generated = format!(
        "{}\n\n---\n\nRegenerate this page with `CAIRN_BLESS=1 cargo test -p cairn-tests --test volfiles`.\n",
        render_reference(&cairn_bricks::registry()).trim_end()
    );
    let path = workspace_root().join("docs/reference/translators.md");
    if std::env::var_os("CAIRN_BLESS").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &generated).unwrap();
    }
    let on_disk = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is stale: regenerate it with CAIRN_BLESS=1 cargo test -p cairn-tests --test volfiles",
        path.display()
    );
}
