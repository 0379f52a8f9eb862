//! Reading and writing volfiles as YAML.
//!
//! This is the only module that uses `serde_yaml` (archived upstream), so replacing it later
//! touches this file alone. Option values may be written in YAML as strings, integers, floats
//! or booleans; [`parse`] normalises them to their text form (`24010`, `true`, `2.5`), so the
//! rest of the crate only sees strings. [`emit`] quotes every value that would otherwise read
//! back as something else, so `parse(&emit(vf)?)? == *vf`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_yaml::Value;

use crate::error::VolfileError;
use crate::options::OptionError;
use crate::schema::{FORMAT_VERSION, NodeSpec, Role, Volfile};

/// The volfile as read, before option values are turned into text.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a volfile: a mapping with version, volume, role, top and graph"
)]
struct RawVolfile {
    version: u32,
    volume: String,
    role: Role,
    top: String,
    graph: Vec<RawNode>,
}

/// One node as read; options may be any YAML scalar.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a node: a mapping with name, type, options and subvolumes"
)]
struct RawNode {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default)]
    options: BTreeMap<String, Value>,
    #[serde(default)]
    subvolumes: Vec<String>,
}

/// Turns a `serde_yaml` error into [`VolfileError::Syntax`], moving the location out of the
/// message into the `line`/`column` fields.
fn syntax_error(err: &serde_yaml::Error) -> VolfileError {
    let mut message = err.to_string();
    let (line, column) = match err.location() {
        Some(loc) => {
            let at = format!(" at line {} column {}", loc.line(), loc.column());
            message = message.replacen(&at, "", 1);
            (Some(loc.line()), Some(loc.column()))
        }
        None => (None, None),
    };
    VolfileError::Syntax {
        message,
        line,
        column,
    }
}

/// Reports an empty document, or a version other than [`FORMAT_VERSION`], before anything
/// else: a volfile from a newer release gets a version error rather than a confusing
/// unknown-field error.
fn check_empty_and_version(text: &str) -> Result<(), VolfileError> {
    let map = match serde_yaml::from_str::<Value>(text) {
        Ok(Value::Mapping(map)) => map,
        Ok(Value::Null) => {
            return Err(VolfileError::Syntax {
                message: "the volfile is empty".to_string(),
                line: None,
                column: None,
            });
        }
        _ => return Ok(()), // the full parse reports the real problem
    };
    let found = map
        .get("version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    match found {
        Some(found) if found != FORMAT_VERSION => Err(VolfileError::Version {
            found,
            supported: FORMAT_VERSION,
        }),
        _ => Ok(()),
    }
}

/// The text form of one option value; lists, maps and nulls are refused.
fn option_text(value: &Value) -> Result<String, &'static str> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Err("has no value; write '' for an empty string"),
        Value::Sequence(_) => {
            Err("a list is not allowed as an option value; write a comma-separated string")
        }
        Value::Mapping(_) => Err("a map is not allowed as an option value"),
        Value::Tagged(_) => Err("a tagged value is not allowed as an option value"),
    }
}

fn convert_node(raw: RawNode) -> Result<NodeSpec, VolfileError> {
    let mut options = BTreeMap::new();
    for (key, value) in raw.options {
        match option_text(&value) {
            Ok(text) => {
                options.insert(key, text);
            }
            Err(message) => {
                return Err(VolfileError::NodeOption {
                    node: raw.name,
                    type_name: raw.type_name,
                    source: OptionError {
                        key,
                        message: message.to_string(),
                    },
                });
            }
        }
    }
    Ok(NodeSpec {
        name: raw.name,
        type_name: raw.type_name,
        options,
        subvolumes: raw.subvolumes,
    })
}

/// Parses a volfile from YAML text.
///
/// Checks only the shape (fields, types, format version); [`crate::validate()`] checks the
/// graph. Unknown fields are rejected with a message naming the field; syntax errors carry
/// the line and column when `serde_yaml` knows them. Scalar option values are normalised to
/// text; a list or map as an option value is a [`VolfileError::NodeOption`] naming the node
/// and key.
pub fn parse(text: &str) -> Result<Volfile, VolfileError> {
    check_empty_and_version(text)?;
    let raw: RawVolfile = serde_yaml::from_str(text).map_err(|e| syntax_error(&e))?;
    if raw.version != FORMAT_VERSION {
        return Err(VolfileError::Version {
            found: raw.version,
            supported: FORMAT_VERSION,
        });
    }
    let graph = raw
        .graph
        .into_iter()
        .map(convert_node)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Volfile {
        version: raw.version,
        volume: raw.volume,
        role: raw.role,
        top: raw.top,
        graph,
    })
}

/// Writes a volfile as YAML text that [`parse`] reads back to an equal [`Volfile`].
///
/// Refuses a `version` other than [`FORMAT_VERSION`], the only version this release writes.
pub fn emit(vf: &Volfile) -> Result<String, VolfileError> {
    if vf.version != FORMAT_VERSION {
        return Err(VolfileError::Version {
            found: vf.version,
            supported: FORMAT_VERSION,
        });
    }
    serde_yaml::to_string(vf).map_err(|e| VolfileError::Syntax {
        message: format!("cannot write volfile: {e}"),
        line: None,
        column: None,
    })
}

/// Reads and parses the volfile at `path`; I/O problems become [`VolfileError::Io`] naming
/// the path.
pub fn read_file(path: &Path) -> Result<Volfile, VolfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| VolfileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "\
version: 1
volume: pacs
role: client
top: pacs-io-stats
graph:
  - name: pacs-client-0
    type: protocol/client
    options:
      remote-host: node1
      remote-port: 24010
  - name: pacs-io-stats
    type: debug/io-stats
    subvolumes: [pacs-client-0]
";

    fn syntax_message(text: &str) -> (String, Option<usize>) {
        match parse(text) {
            Err(VolfileError::Syntax { message, line, .. }) => (message, line),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn example_parses() {
        let vf = parse(EXAMPLE).unwrap();
        assert_eq!(vf.version, 1);
        assert_eq!(vf.volume, "pacs");
        assert_eq!(vf.role, Role::Client);
        assert_eq!(vf.top, "pacs-io-stats");
        assert_eq!(vf.graph.len(), 2);
        let client = &vf.graph[0];
        assert_eq!(client.name, "pacs-client-0");
        assert_eq!(client.type_name, "protocol/client");
        assert_eq!(client.options["remote-host"], "node1");
        assert_eq!(client.options["remote-port"], "24010");
        assert!(client.subvolumes.is_empty());
        let stats = &vf.graph[1];
        assert!(stats.options.is_empty());
        assert_eq!(stats.subvolumes, ["pacs-client-0"]);
    }

    #[test]
    fn scalar_option_values_are_normalised_to_text() {
        let text = "\
version: 1
volume: v
role: brick
top: p
graph:
  - name: p
    type: storage/posix
    options:
      port: 24010
      negative: -3
      enable: true
      off: false
      ratio: 2.5
      quoted: '007'
      word: hashed
";
        let vf = parse(text).unwrap();
        let o = &vf.graph[0].options;
        assert_eq!(o["port"], "24010");
        assert_eq!(o["negative"], "-3");
        assert_eq!(o["enable"], "true");
        assert_eq!(o["off"], "false");
        assert_eq!(o["ratio"], "2.5");
        assert_eq!(o["quoted"], "007");
        assert_eq!(o["word"], "hashed");
        assert_eq!(vf.role, Role::Brick);
    }

    #[test]
    fn unknown_top_level_field_is_rejected() {
        let text = EXAMPLE.replace("role: client", "role: client\ncolour: blue");
        let (message, line) = syntax_message(&text);
        assert!(message.contains("unknown field `colour`"), "{message}");
        assert_eq!(line, Some(4));
    }

    #[test]
    fn unknown_node_field_is_rejected() {
        let text = EXAMPLE.replace(
            "    type: debug/io-stats",
            "    type: debug/io-stats\n    kids: []",
        );
        let (message, line) = syntax_message(&text);
        assert!(message.contains("unknown field `kids`"), "{message}");
        assert!(message.contains("graph[1]"), "{message}");
        assert!(line.is_some());
    }

    #[test]
    fn missing_field_is_rejected() {
        let text = EXAMPLE.replace("top: pacs-io-stats\n", "");
        let (message, _) = syntax_message(&text);
        assert!(message.contains("missing field `top`"), "{message}");
    }

    #[test]
    fn empty_or_non_mapping_text_is_rejected() {
        assert_eq!(syntax_message("").0, "the volfile is empty");
        assert_eq!(
            syntax_message(" \n# only a comment\n").0,
            "the volfile is empty"
        );
        let (message, _) = syntax_message("- a\n");
        assert_eq!(
            message,
            "invalid type: sequence, expected a volfile: a mapping with version, volume, role, \
             top and graph"
        );
        let (message, _) =
            syntax_message(&EXAMPLE.replace("  - name: pacs-io-stats", "  - 7\n  - name: x"));
        assert_eq!(
            message,
            "graph[1]: invalid type: integer `7`, expected a node: a mapping with name, type, \
             options and subvolumes"
        );
    }

    #[test]
    fn bad_role_is_rejected() {
        let (message, _) = syntax_message(&EXAMPLE.replace("role: client", "role: server"));
        assert!(message.contains("unknown variant `server`"), "{message}");
    }

    #[test]
    fn syntax_error_carries_a_line() {
        let text = "version: 1\nvolume: v\nrole: client\ntop: [unclosed\ngraph: []\n";
        let err = parse(text).unwrap_err();
        let VolfileError::Syntax { line, column, .. } = &err else {
            panic!("expected a syntax error, got {err:?}");
        };
        assert!(line.is_some() && column.is_some(), "{err:?}");
        let shown = err.to_string();
        assert!(
            shown.starts_with("volfile syntax error at line "),
            "{shown}"
        );
        // The location is shown once, in front, not repeated inside the message.
        assert_eq!(shown.matches(" at line ").count(), 1, "{shown}");

        let err = parse("version: 1\nvolume: v\n@role: client\n").unwrap_err();
        assert!(
            matches!(err, VolfileError::Syntax { line: Some(3), .. }),
            "{err:?}"
        );
    }

    #[test]
    fn list_or_map_as_option_value_is_rejected() {
        let text = EXAMPLE.replace("remote-host: node1", "remote-host: [node1, node2]");
        let err = parse(&text).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(
                "node 'pacs-client-0' (protocol/client): option 'remote-host': a list is not allowed"
            ),
            "{shown}"
        );
        let text = EXAMPLE.replace("remote-host: node1", "remote-host: {a: 1}");
        let shown = parse(&text).unwrap_err().to_string();
        assert!(
            shown.contains("option 'remote-host': a map is not allowed"),
            "{shown}"
        );
        let text = EXAMPLE.replace("remote-host: node1", "remote-host:");
        let shown = parse(&text).unwrap_err().to_string();
        assert!(
            shown.contains("option 'remote-host': has no value"),
            "{shown}"
        );
    }

    #[test]
    fn other_version_is_reported_as_version_error() {
        // Even with fields this release does not know about.
        let text = EXAMPLE.replace("version: 1", "version: 2\nfuture-field: x");
        let err = parse(&text).unwrap_err();
        assert!(
            matches!(
                err,
                VolfileError::Version {
                    found: 2,
                    supported: 1
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "volfile version 2 is not supported (this release reads version 1)"
        );
        let err = parse(&EXAMPLE.replace("version: 1", "version: 0")).unwrap_err();
        assert!(
            matches!(err, VolfileError::Version { found: 0, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let vf = parse(EXAMPLE).unwrap();
        let text = emit(&vf).unwrap();
        assert_eq!(parse(&text).unwrap(), vf);
        // Option values that look like numbers or booleans stay strings.
        assert!(text.contains("remote-port: '24010'"), "{text}");
    }

    #[test]
    fn emit_refuses_other_versions() {
        let mut vf = parse(EXAMPLE).unwrap();
        vf.version = 7;
        assert!(matches!(
            emit(&vf),
            Err(VolfileError::Version { found: 7, .. })
        ));
    }

    #[test]
    fn tricky_strings_round_trip() {
        let tricky = [
            "",
            " ",
            "true",
            "False",
            "yes",
            "no",
            "on",
            "null",
            "~",
            "NULL",
            "24010",
            "-1",
            "0x1F",
            "0o17",
            "1e3",
            "1.5",
            ".inf",
            "-.inf",
            ".nan",
            "007",
            "a: b",
            "- x",
            "#c",
            "'",
            "\"",
            "[x]",
            "{y}",
            "a\nb",
            "tab\there",
            "trailing ",
            " leading",
            "*ref",
            "&anchor",
            "!tag",
            "%",
            "@",
            "`",
            "|",
            ">",
            "ü∞",
            "---",
            "...",
            "=",
            "<<",
        ];
        let mut options = BTreeMap::new();
        for (i, value) in tricky.iter().enumerate() {
            options.insert(format!("k{i}"), value.to_string());
            options.insert(value.to_string(), format!("v{i}"));
        }
        let vf = Volfile {
            version: FORMAT_VERSION,
            volume: "007".into(),
            role: Role::Brick,
            top: "true".into(),
            graph: vec![NodeSpec {
                name: "null".into(),
                type_name: "1.5".into(),
                options,
                subvolumes: tricky.iter().map(|s| s.to_string()).collect(),
            }],
        };
        let text = emit(&vf).unwrap();
        assert_eq!(parse(&text).unwrap(), vf, "{text}");
    }

    #[test]
    fn read_file_reports_path_on_io_error() {
        let path = Path::new("/nonexistent/cairn/volfile.yaml");
        let err = read_file(path).unwrap_err();
        assert!(matches!(err, VolfileError::Io { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("/nonexistent/cairn/volfile.yaml: "),
            "{err}"
        );
    }

    #[test]
    fn read_file_parses_a_file() {
        let path =
            std::env::temp_dir().join(format!("cairn-volfiles-test-{}.yaml", std::process::id()));
        std::fs::write(&path, EXAMPLE).unwrap();
        let vf = read_file(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(vf.unwrap(), parse(EXAMPLE).unwrap());
    }

    mod round_trip {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9_.-]{1,12}",
                "[ -~]{0,16}",
                "\\PC{0,8}",
                Just("true".to_string()),
                Just("24010".to_string()),
                Just("null".to_string()),
            ]
        }

        fn node() -> impl Strategy<Value = NodeSpec> {
            (
                text(),
                text(),
                proptest::collection::btree_map(text(), text(), 0..5),
                proptest::collection::vec(text(), 0..4),
            )
                .prop_map(|(name, type_name, options, subvolumes)| NodeSpec {
                    name,
                    type_name,
                    options,
                    subvolumes,
                })
        }

        proptest! {
            #[test]
            fn parse_of_emit_is_identity(
                volume in text(),
                top in text(),
                brick in any::<bool>(),
                graph in proptest::collection::vec(node(), 0..4),
            ) {
                let vf = Volfile {
                    version: FORMAT_VERSION,
                    volume,
                    role: if brick { Role::Brick } else { Role::Client },
                    top,
                    graph,
                };
                let text = emit(&vf).unwrap();
                prop_assert_eq!(parse(&text).unwrap(), vf, "{}", text);
            }
        }
    }
}
