//! The default brick graph, as a volfile:
//! `protocol/server → debug/io-stats → features/index → features/locks → storage/posix`.
//!
//! `cairn-brickd --directory …` serves this graph; the management daemon generates the same
//! shape for each brick of a volume.

use std::collections::BTreeMap;
use std::path::Path;

use cairn_volfiles::{FORMAT_VERSION, NodeSpec, Role, Volfile};

/// What a brick graph needs to know.
#[derive(Clone, Debug)]
pub struct BrickSpec<'a> {
    /// The volume's name (node names are derived from it).
    pub volume: &'a str,
    /// The volume id.
    pub volume_id: &'a str,
    /// The brick id.
    pub brick_id: &'a str,
    /// The brick directory.
    pub directory: &'a Path,
    /// `host:port` to listen on.
    pub listen: &'a str,
    /// Stamp the identity on a new brick.
    pub init: bool,
}

fn node(name: String, type_name: &str, options: &[(&str, String)], sub: Option<&str>) -> NodeSpec {
    NodeSpec {
        name,
        type_name: type_name.to_string(),
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        subvolumes: sub.map(|s| vec![s.to_string()]).unwrap_or_default(),
    }
}

/// The brick volfile for `spec`.
pub fn brick_volfile(spec: &BrickSpec<'_>) -> Volfile {
    let v = spec.volume;
    let posix = format!("{v}-posix");
    let locks = format!("{v}-locks");
    let index = format!("{v}-index");
    let stats = format!("{v}-io-stats");
    let server = format!("{v}-server");
    Volfile {
        version: FORMAT_VERSION,
        volume: v.to_string(),
        role: Role::Brick,
        top: server.clone(),
        graph: vec![
            node(
                posix.clone(),
                "storage/posix",
                &[
                    ("directory", spec.directory.display().to_string()),
                    ("volume-id", spec.volume_id.to_string()),
                    ("brick-id", spec.brick_id.to_string()),
                    ("init", if spec.init { "on" } else { "off" }.to_string()),
                ],
                None,
            ),
            node(locks.clone(), "features/locks", &[], Some(&posix)),
            node(
                index.clone(),
                "features/index",
                &[(
                    "directory",
                    spec.directory.join(".cairn/indices").display().to_string(),
                )],
                Some(&locks),
            ),
            node(stats.clone(), "debug/io-stats", &[], Some(&index)),
            node(
                server,
                "protocol/server",
                &[
                    ("listen", spec.listen.to_string()),
                    ("volume-id", spec.volume_id.to_string()),
                    ("brick-id", spec.brick_id.to_string()),
                ],
                Some(&stats),
            ),
        ],
    }
}
