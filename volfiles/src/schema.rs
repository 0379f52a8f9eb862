//! The volfile data types, exactly as they appear in YAML.
//!
//! These types carry no meaning beyond their shape: [`crate::validate()`] checks them against a
//! catalog of translator types, and [`crate::yaml`] reads and writes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The volfile format version this release reads and writes; the only one it accepts.
pub const FORMAT_VERSION: u32 = 1;

/// One volfile: a named graph of translators for one role of one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volfile {
    /// Format version; must equal [`FORMAT_VERSION`].
    pub version: u32,
    /// The volume this graph belongs to (`[A-Za-z0-9_.-]+`, at most 64 characters).
    pub volume: String,
    /// Which process runs this graph.
    pub role: Role,
    /// The name of the top node, where operations enter the graph.
    pub top: String,
    /// The nodes, in any order.
    pub graph: Vec<NodeSpec>,
}

/// The kind of process a graph is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A client graph (mount, NFS, gateways), written `client`.
    Client,
    /// A brick graph run by `cairn-brickd`, written `brick`.
    Brick,
}

impl Role {
    /// The name as written in YAML: `client` or `brick`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Brick => "brick",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One translator instance in a graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique name within the graph (`[A-Za-z0-9_.-]+`).
    pub name: String,
    /// The translator type, e.g. `cluster/replicate`; written `type` in YAML.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Option values in their text form; typed by [`crate::parse_options`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Names of the child nodes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subvolumes: Vec<String>,
}
