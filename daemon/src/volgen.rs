//! Volfile generation: the brick graph of each brick, and the client graph of a volume.
//!
//! Brick: `protocol/server → debug/io-stats → features/worm → features/bitrot → features/index
//! → features/locks → storage/posix`.
//!
//! Client: one `protocol/client` per brick; with `replica N` every N consecutive bricks are
//! grouped under a `cluster/replicate`; several groups go under a `cluster/distribute`;
//! `performance/readdir-ahead` above that (unless `performance.readdir-ahead off`), then
//! `performance/quick-read` (unless `performance.quick-read off`), then
//! `performance/md-cache` (unless `performance.md-cache off`), `debug/io-stats`
//! on top. Volume options land on the translators the option table names.

use std::collections::BTreeMap;
use std::path::Path;

use cairn_api::{BrickConfig, VolumeConfig};
use cairn_volfiles::{FORMAT_VERSION, NodeSpec, Role, Volfile};

use crate::options::{self, Target};

fn node(
    name: String,
    type_name: &str,
    options: BTreeMap<String, String>,
    subvolumes: Vec<String>,
) -> NodeSpec {
    NodeSpec {
        name,
        type_name: type_name.to_string(),
        options,
        subvolumes,
    }
}

fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Adds the volume options that target `xlator` on this side of the volume.
fn apply_options(
    vol: &VolumeConfig,
    brick_side: bool,
    xlator: &str,
    into: &mut BTreeMap<String, String>,
) {
    for o in options::OPTIONS {
        let Some(value) = options::effective(&vol.options, o.key) else {
            continue;
        };
        for t in o.targets {
            match *t {
                Target::Client { xlator: x, key } if !brick_side && x == xlator => {
                    into.insert(key.to_string(), value.to_string());
                }
                Target::Brick { xlator: x, key } if brick_side && x == xlator => {
                    into.insert(key.to_string(), value.to_string());
                }
                _ => {}
            }
        }
    }
}

/// The brick volfile of `brick`. `listen_ip` is the address the brick binds (the node's);
/// `status_file` where it lists its clients.
pub fn brick_volfile(
    vol: &VolumeConfig,
    brick: &BrickConfig,
    listen_ip: &str,
    status_file: &Path,
) -> Volfile {
    let v = &vol.name;
    let b = &brick.id;
    let posix = format!("{v}-{b}-posix");
    let locks = format!("{v}-{b}-locks");
    let index = format!("{v}-{b}-index");
    let worm = format!("{v}-{b}-worm");
    let bitrot = format!("{v}-{b}-bitrot");
    let stats = format!("{v}-{b}-io-stats");
    let server = format!("{v}-{b}-server");
    let mut stats_opts = BTreeMap::new();
    apply_options(vol, true, "debug/io-stats", &mut stats_opts);
    let mut worm_opts = BTreeMap::new();
    apply_options(vol, true, "features/worm", &mut worm_opts);
    let mut bitrot_opts = BTreeMap::new();
    apply_options(vol, true, "features/bitrot", &mut bitrot_opts);
    let listen = if listen_ip.contains(':') {
        format!("[{listen_ip}]:{}", brick.port)
    } else {
        format!("{listen_ip}:{}", brick.port)
    };
    let mut server_opts = opts(&[
        ("listen", &listen),
        ("volume-id", &vol.id),
        ("brick-id", b),
        ("auth-secret", &vol.secret),
        ("status-file", &status_file.display().to_string()),
    ]);
    apply_options(vol, true, "protocol/server", &mut server_opts);
    Volfile {
        version: FORMAT_VERSION,
        volume: v.clone(),
        role: Role::Brick,
        top: server.clone(),
        graph: vec![
            node(
                posix.clone(),
                "storage/posix",
                opts(&[
                    ("directory", &brick.path),
                    ("volume-id", &vol.id),
                    ("brick-id", b),
                    ("init", "off"),
                ]),
                vec![],
            ),
            node(
                locks.clone(),
                "features/locks",
                BTreeMap::new(),
                vec![posix],
            ),
            node(
                index.clone(),
                "features/index",
                opts(&[("directory", &format!("{}/.cairn/indices", brick.path))]),
                vec![locks],
            ),
            node(bitrot.clone(), "features/bitrot", bitrot_opts, vec![index]),
            node(worm.clone(), "features/worm", worm_opts, vec![bitrot]),
            node(stats.clone(), "debug/io-stats", stats_opts, vec![worm]),
            node(server, "protocol/server", server_opts, vec![stats]),
        ],
    }
}

/// The number in a brick id `brick-N` (its position `i` for any other id).
fn brick_number(b: &BrickConfig, i: usize) -> usize {
    b.id.strip_prefix("brick-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(i)
}

/// The names of the groups (of `groups`, in brick order) that a `remove-brick` is draining.
fn leaving_groups(vol: &VolumeConfig, groups: &[String]) -> Vec<String> {
    let replica = vol.replica.max(1) as usize;
    vol.bricks
        .chunks(replica)
        .zip(groups)
        .filter(|(set, _)| set.iter().any(|b| vol.removing.contains(&b.id)))
        .map(|(_, g)| g.clone())
        .collect()
}

/// The client volfile of a volume.
pub fn client_volfile(vol: &VolumeConfig) -> Volfile {
    let v = &vol.name;
    let mut graph = Vec::new();
    let mut leaves = Vec::new();
    let mut numbers = Vec::new();
    for (i, brick) in vol.bricks.iter().enumerate() {
        // Named by the brick's id, not its position: the names are keys on disk (replicate's
        // blame counters, distribute's pointers), and a remove-brick shifts positions.
        let n = brick_number(brick, i);
        numbers.push(n);
        let name = format!("{v}-client-{n}");
        let port = brick.port.to_string();
        let mut o = opts(&[
            ("remote-host", &brick.host),
            ("remote-port", &port),
            ("volume-id", &vol.id),
            ("remote-brick", &brick.id),
            ("auth-secret", &vol.secret),
        ]);
        apply_options(vol, false, "protocol/client", &mut o);
        graph.push(node(name.clone(), "protocol/client", o, vec![]));
        leaves.push(name);
    }
    let replica = vol.replica.max(1) as usize;
    let groups: Vec<String> = if replica > 1 {
        leaves
            .chunks(replica)
            .enumerate()
            .map(|(g, members)| {
                let first = numbers.get(g * replica).copied().unwrap_or(g * replica);
                let name = format!("{v}-replicate-{}", first / replica);
                let mut o = BTreeMap::new();
                if vol.arbiter {
                    o.insert("arbiter-count".to_string(), "1".to_string());
                }
                apply_options(vol, false, "cluster/replicate", &mut o);
                graph.push(node(name.clone(), "cluster/replicate", o, members.to_vec()));
                name
            })
            .collect()
    } else {
        leaves
    };
    let below_stats = if groups.len() > 1 {
        let name = format!("{v}-dht");
        let mut o = BTreeMap::new();
        apply_options(vol, false, "cluster/distribute", &mut o);
        let leaving = leaving_groups(vol, &groups);
        if !leaving.is_empty() {
            o.insert("decommissioned".to_string(), leaving.join(","));
        }
        graph.push(node(name.clone(), "cluster/distribute", o, groups));
        name
    } else {
        groups.into_iter().next().unwrap_or_default()
    };
    let below_stats = if options::flag(&vol.options, "performance.readdir-ahead") {
        let name = format!("{v}-readdir-ahead");
        let mut o = BTreeMap::new();
        apply_options(vol, false, "performance/readdir-ahead", &mut o);
        graph.push(node(
            name.clone(),
            "performance/readdir-ahead",
            o,
            vec![below_stats],
        ));
        name
    } else {
        below_stats
    };
    let below_stats = if options::flag(&vol.options, "performance.quick-read") {
        let name = format!("{v}-quick-read");
        let mut o = BTreeMap::new();
        apply_options(vol, false, "performance/quick-read", &mut o);
        graph.push(node(
            name.clone(),
            "performance/quick-read",
            o,
            vec![below_stats],
        ));
        name
    } else {
        below_stats
    };
    let below_stats = if options::flag(&vol.options, "performance.md-cache") {
        let name = format!("{v}-md-cache");
        let mut o = BTreeMap::new();
        apply_options(vol, false, "performance/md-cache", &mut o);
        graph.push(node(
            name.clone(),
            "performance/md-cache",
            o,
            vec![below_stats],
        ));
        name
    } else {
        below_stats
    };
    let top = format!("{v}-io-stats");
    let mut stats_opts = BTreeMap::new();
    apply_options(vol, false, "debug/io-stats", &mut stats_opts);
    graph.push(node(
        top.clone(),
        "debug/io-stats",
        stats_opts,
        vec![below_stats],
    ));
    Volfile {
        version: FORMAT_VERSION,
        volume: v.clone(),
        role: Role::Client,
        top,
        graph,
    }
}
