//! The one error type of this crate, [`VolfileError`].
//!
//! Every variant carries enough context for an operator to find the problem in the volfile:
//! a path, a line, a node name, a type name or an option key.

use std::path::PathBuf;

use crate::options::OptionError;

/// Everything that can go wrong while reading, writing or validating a volfile.
#[derive(Debug, thiserror::Error)]
pub enum VolfileError {
    /// The volfile could not be read from disk.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The text is not valid YAML, or does not have the shape of a volfile (missing or unknown
    /// field, wrong value type, ...).
    #[error("volfile syntax error{}: {message}", location(*.line, *.column))]
    Syntax {
        /// What is wrong, without the location.
        message: String,
        /// One-based line of the problem, when known.
        line: Option<usize>,
        /// One-based column of the problem, when known.
        column: Option<usize>,
    },

    /// The volfile declares a format version this release does not read or write.
    #[error("volfile version {found} is not supported (this release reads version {supported})")]
    Version {
        /// The version found in the volfile.
        found: u32,
        /// The version this release supports ([`crate::FORMAT_VERSION`]).
        supported: u32,
    },

    /// A problem with one node: bad name, unknown type, wrong role, wrong arity, bad
    /// subvolume reference.
    #[error("node '{node}' ({type_name}): {message}")]
    Node {
        /// The node's name.
        node: String,
        /// The node's declared type.
        type_name: String,
        /// What is wrong.
        message: String,
    },

    /// One of a node's options is unknown, missing or has a bad value.
    #[error("node '{node}' ({type_name}): {source}")]
    NodeOption {
        /// The node's name.
        node: String,
        /// The node's declared type.
        type_name: String,
        /// The option problem, naming the key.
        source: OptionError,
    },

    /// A problem with the graph as a whole: empty graph, bad volume name, duplicate node
    /// names, missing or misplaced `top`, cycles, shared or unreachable nodes.
    #[error("{0}")]
    Graph(String),
}

/// Formats " at line L column C" (or " at line L") for [`VolfileError::Syntax`].
fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line} column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_display_includes_location_when_known() {
        let e = VolfileError::Syntax {
            message: "bad".into(),
            line: Some(3),
            column: Some(5),
        };
        assert_eq!(
            e.to_string(),
            "volfile syntax error at line 3 column 5: bad"
        );
        let e = VolfileError::Syntax {
            message: "bad".into(),
            line: None,
            column: None,
        };
        assert_eq!(e.to_string(), "volfile syntax error: bad");
    }

    #[test]
    fn node_option_display_names_node_type_and_key() {
        let e = VolfileError::NodeOption {
            node: "c0".into(),
            type_name: "protocol/client".into(),
            source: OptionError {
                key: "remote-port".into(),
                message: "expected an integer".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "node 'c0' (protocol/client): option 'remote-port': expected an integer"
        );
    }

    #[test]
    fn io_display_names_path() {
        let e = VolfileError::Io {
            path: PathBuf::from("/etc/cairn/x.yaml"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not found"),
        };
        assert!(e.to_string().starts_with("/etc/cairn/x.yaml: "));
    }
}
