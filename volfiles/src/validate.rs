//! Checking a volfile against a catalog of translator types.
//!
//! This crate does not know any translator: the caller hands [`validate`] a [`Catalog`] of
//! [`TypeDecl`]s (arity, roles, maturity, options). Validation checks the graph shape (names,
//! references, cycles, one parent per node, reachability from `top`) and then each node
//! against its declaration, and returns a [`ValidGraph`] in build order with typed options.
//! [`render_reference`] turns the same declarations into the Markdown option reference.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use crate::error::VolfileError;
use crate::options::{OptionSpec, Options, parse_options};
use crate::schema::{FORMAT_VERSION, NodeSpec, Role, Volfile};

/// How many subvolumes (children) a translator type takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// No subvolumes (e.g. `storage/posix`, `protocol/client`).
    Leaf,
    /// Exactly one subvolume (pass-through translators).
    One,
    /// At least this many subvolumes (fan-out translators).
    AtLeast(usize),
}

/// How far a translator type may be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maturity {
    /// Supported for production use.
    Stable,
    /// Complete, still being proven.
    Testing,
    /// May change or lose data; for development only.
    Experimental,
}

/// The declaration of one translator type, supplied by the crate that implements it.
#[derive(Debug, Clone, Copy)]
pub struct TypeDecl {
    /// The type name used in volfiles, e.g. `debug/io-stats`.
    pub type_name: &'static str,
    /// How many subvolumes a node of this type takes.
    pub arity: Arity,
    /// The graphs (client, brick) a node of this type may appear in.
    pub roles: &'static [Role],
    /// How far the type may be trusted.
    pub maturity: Maturity,
    /// The options a node of this type accepts.
    pub options: &'static [OptionSpec],
    /// One paragraph for the reference.
    pub doc: &'static str,
}

/// A set of translator type declarations to validate against.
pub trait Catalog {
    /// The declaration of `type_name`, if the catalog knows it.
    fn decl(&self, type_name: &str) -> Option<&TypeDecl>;
    /// Every declaration, for documentation and "known types" messages.
    fn decls(&self) -> Vec<&TypeDecl>;
}

/// A plain slice of declarations is a catalog: `validate(&vf, &DECLS)` with
/// `static DECLS: &[TypeDecl]`.
impl Catalog for &[TypeDecl] {
    fn decl(&self, type_name: &str) -> Option<&TypeDecl> {
        self.iter().find(|d| d.type_name == type_name)
    }

    fn decls(&self) -> Vec<&TypeDecl> {
        self.iter().collect()
    }
}

/// A node that passed validation, with its typed options and its type's declaration.
#[derive(Debug, Clone)]
pub struct ValidNode {
    /// The node as written in the volfile.
    pub spec: NodeSpec,
    /// Its options, typed, with defaults filled in.
    pub options: Options,
    /// The declaration of its type.
    pub decl: TypeDecl,
}

/// A validated graph: a tree rooted at `top`, ready to be built.
#[derive(Debug, Clone)]
pub struct ValidGraph {
    /// The volume name.
    pub volume: String,
    /// The process role this graph is for.
    pub role: Role,
    /// The name of the top node.
    pub top: String,
    /// All nodes, each after all of its subvolumes (so `top` is last).
    pub nodes: Vec<ValidNode>,
}

impl ValidGraph {
    /// The node called `name`, if any.
    pub fn node(&self, name: &str) -> Option<&ValidNode> {
        self.nodes.iter().find(|n| n.spec.name == name)
    }
}

/// Longest allowed volume name.
const MAX_VOLUME_NAME: usize = 64;

/// True for `[A-Za-z0-9_.-]+`.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn node_error(node: &NodeSpec, message: impl Into<String>) -> VolfileError {
    VolfileError::Node {
        node: node.name.clone(),
        type_name: node.type_name.clone(),
        message: message.into(),
    }
}

/// Checks a volfile against `catalog` and returns the graph in build order.
///
/// Checks, in this order: format version; volume name (`[A-Za-z0-9_.-]+`, at most 64
/// characters); graph non-empty; node names valid and unique; every subvolume names an existing
/// node and is listed once per parent; `top` exists; no cycles (the error shows the cycle
/// path); no node is the subvolume of two parents and `top` of none; every node reachable from
/// `top`; then for each node: known type, role allowed, arity, options. Every error names the
/// node (and type and option key) it is about.
pub fn validate(vf: &Volfile, catalog: &dyn Catalog) -> Result<ValidGraph, VolfileError> {
    if vf.version != FORMAT_VERSION {
        return Err(VolfileError::Version {
            found: vf.version,
            supported: FORMAT_VERSION,
        });
    }
    if !is_valid_name(&vf.volume) || vf.volume.len() > MAX_VOLUME_NAME {
        return Err(VolfileError::Graph(format!(
            "invalid volume name '{}': use 1 to {MAX_VOLUME_NAME} characters from \
             A-Z a-z 0-9 _ . -",
            vf.volume
        )));
    }
    if vf.graph.is_empty() {
        return Err(VolfileError::Graph(format!(
            "volume '{}': the graph has no nodes",
            vf.volume
        )));
    }

    // Names.
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, node) in vf.graph.iter().enumerate() {
        if !is_valid_name(&node.name) {
            return Err(node_error(
                node,
                "invalid node name: use characters from A-Z a-z 0-9 _ . -",
            ));
        }
        if index.insert(node.name.as_str(), i).is_some() {
            return Err(VolfileError::Graph(format!(
                "node name '{}' is used by more than one node",
                node.name
            )));
        }
    }

    // Subvolume references, as indices.
    let mut children: Vec<Vec<usize>> = Vec::with_capacity(vf.graph.len());
    for node in &vf.graph {
        let mut kids = Vec::with_capacity(node.subvolumes.len());
        for sub in &node.subvolumes {
            let Some(&k) = index.get(sub.as_str()) else {
                return Err(node_error(
                    node,
                    format!("subvolume '{sub}' is not a node in this graph"),
                ));
            };
            if kids.contains(&k) {
                return Err(node_error(node, format!("lists subvolume '{sub}' twice")));
            }
            kids.push(k);
        }
        children.push(kids);
    }

    let Some(&top) = index.get(vf.top.as_str()) else {
        return Err(VolfileError::Graph(format!(
            "top '{}' is not a node in this graph",
            vf.top
        )));
    };

    if let Some(cycle) = find_cycle(&children) {
        let path: Vec<&str> = cycle.iter().map(|&i| vf.graph[i].name.as_str()).collect();
        return Err(VolfileError::Graph(format!(
            "the graph has a cycle: {}",
            path.join(" → ")
        )));
    }

    // Trees only: one parent per node, none for top.
    let mut parent: Vec<Option<usize>> = vec![None; vf.graph.len()];
    for (p, kids) in children.iter().enumerate() {
        for &k in kids {
            if let Some(first) = parent[k] {
                return Err(VolfileError::Graph(format!(
                    "node '{}' is a subvolume of both '{}' and '{}'",
                    vf.graph[k].name, vf.graph[first].name, vf.graph[p].name
                )));
            }
            parent[k] = Some(p);
        }
    }
    if let Some(p) = parent[top] {
        return Err(VolfileError::Graph(format!(
            "top '{}' is itself a subvolume of '{}'",
            vf.top, vf.graph[p].name
        )));
    }

    let order = post_order(top, &children);
    let reachable: HashSet<usize> = order.iter().copied().collect();
    if let Some(lost) = vf
        .graph
        .iter()
        .enumerate()
        .find(|(i, _)| !reachable.contains(i))
    {
        return Err(VolfileError::Graph(format!(
            "node '{}' is not reachable from top '{}'",
            lost.1.name, vf.top
        )));
    }

    // Per-node checks, in volfile order so the first error is the first one a reader meets.
    let mut checked: Vec<Option<ValidNode>> = Vec::with_capacity(vf.graph.len());
    for node in &vf.graph {
        checked.push(Some(check_node(node, vf.role, catalog)?));
    }

    let mut nodes = Vec::with_capacity(order.len());
    for i in order {
        if let Some(valid) = checked[i].take() {
            nodes.push(valid);
        }
    }
    Ok(ValidGraph {
        volume: vf.volume.clone(),
        role: vf.role,
        top: vf.top.clone(),
        nodes,
    })
}

/// Checks one node against its type declaration.
fn check_node(
    node: &NodeSpec,
    role: Role,
    catalog: &dyn Catalog,
) -> Result<ValidNode, VolfileError> {
    let Some(decl) = catalog.decl(&node.type_name) else {
        let mut known: Vec<&str> = catalog.decls().iter().map(|d| d.type_name).collect();
        known.sort_unstable();
        return Err(node_error(
            node,
            format!("unknown translator type; known types: {}", known.join(", ")),
        ));
    };
    if !decl.roles.contains(&role) {
        let allowed: Vec<&str> = decl.roles.iter().map(|r| r.as_str()).collect();
        let allowed = if allowed.is_empty() {
            "none".to_string()
        } else {
            allowed.join(", ")
        };
        return Err(node_error(
            node,
            format!("this type is not allowed in a {role} graph (allowed in: {allowed})"),
        ));
    }
    let n = node.subvolumes.len();
    let arity_problem = match decl.arity {
        Arity::Leaf if n != 0 => Some(format!("this type takes no subvolumes, got {n}")),
        Arity::One if n != 1 => Some(format!("this type takes exactly one subvolume, got {n}")),
        Arity::AtLeast(min) if n < min => Some(format!(
            "this type takes at least {min} subvolume{}, got {n}",
            if min == 1 { "" } else { "s" }
        )),
        _ => None,
    };
    if let Some(message) = arity_problem {
        return Err(node_error(node, message));
    }
    let options =
        parse_options(decl.options, &node.options).map_err(|source| VolfileError::NodeOption {
            node: node.name.clone(),
            type_name: node.type_name.clone(),
            source,
        })?;
    Ok(ValidNode {
        spec: node.clone(),
        options,
        decl: *decl,
    })
}

/// Finds a cycle, returned as a path that starts and ends at the same node.
///
/// Iterative depth-first search, so a deep (hostile) volfile cannot overflow the stack.
fn find_cycle(children: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; children.len()];
    for start in 0..children.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // (node, index of the next child to visit)
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&child) = children[node].get(*next) {
                *next += 1;
                match mark[child] {
                    Mark::New => {
                        mark[child] = Mark::OnPath;
                        stack.push((child, 0));
                    }
                    Mark::OnPath => {
                        let from = stack.iter().position(|&(n, _)| n == child).unwrap_or(0);
                        let mut path: Vec<usize> = stack[from..].iter().map(|&(n, _)| n).collect();
                        path.push(child);
                        return Some(path);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

/// The nodes reachable from `top`, each after all of its subvolumes (subvolumes in listed
/// order). Assumes the graph has no cycles.
fn post_order(top: usize, children: &[Vec<usize>]) -> Vec<usize> {
    let mut order = Vec::new();
    let mut seen = vec![false; children.len()];
    let mut stack: Vec<(usize, usize)> = vec![(top, 0)];
    seen[top] = true;
    while let Some(&mut (node, ref mut next)) = stack.last_mut() {
        if let Some(&child) = children[node].get(*next) {
            *next += 1;
            if !seen[child] {
                seen[child] = true;
                stack.push((child, 0));
            }
        } else {
            order.push(node);
            stack.pop();
        }
    }
    order
}

fn arity_text(arity: Arity) -> String {
    match arity {
        Arity::Leaf => "none (leaf)".to_string(),
        Arity::One => "exactly one".to_string(),
        Arity::AtLeast(n) => format!("at least {n}"),
    }
}

fn maturity_text(maturity: Maturity) -> &'static str {
    match maturity {
        Maturity::Stable => "stable",
        Maturity::Testing => "testing",
        Maturity::Experimental => "experimental",
    }
}

/// Makes text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Renders the translator and option reference as Markdown.
///
/// One section per type, sorted by type name: its doc, subvolumes (arity), roles and
/// maturity, then a table `| key | type | default | description |` in declaration order.
/// The output depends only on the declarations, so it can be generated into `docs/` and
/// checked for staleness.
pub fn render_reference(catalog: &dyn Catalog) -> String {
    let mut decls: BTreeMap<&str, Vec<&TypeDecl>> = BTreeMap::new();
    for decl in catalog.decls() {
        decls.entry(decl.type_name).or_default().push(decl);
    }
    let mut out = String::from("# Translator reference\n\n");
    out.push_str("Generated from the translator type declarations; do not edit by hand.\n");
    for decl in decls.values().flatten() {
        // Writing to a String cannot fail.
        let _ = write!(out, "\n## `{}`\n\n", decl.type_name);
        if !decl.doc.is_empty() {
            let _ = write!(out, "{}\n\n", decl.doc.trim());
        }
        let roles: Vec<&str> = decl.roles.iter().map(|r| r.as_str()).collect();
        let _ = writeln!(out, "- Subvolumes: {}", arity_text(decl.arity));
        let _ = writeln!(out, "- Roles: {}", roles.join(", "));
        let _ = writeln!(out, "- Maturity: {}", maturity_text(decl.maturity));
        out.push('\n');
        if decl.options.is_empty() {
            out.push_str("No options.\n");
            continue;
        }
        out.push_str("| key | type | default | description |\n");
        out.push_str("| --- | --- | --- | --- |\n");
        for spec in decl.options {
            let default = match spec.default {
                None => "*required*".to_string(),
                Some("") => "*(empty)*".to_string(),
                Some(d) => format!("`{}`", cell(d)),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                cell(spec.key),
                cell(&spec.kind.describe()),
                default,
                cell(spec.doc)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::options::OptionKind;

    const CLIENT_OPTS: &[OptionSpec] = &[
        OptionSpec {
            key: "remote-host",
            kind: OptionKind::Str,
            default: None,
            doc: "Host of the brick daemon.",
        },
        OptionSpec {
            key: "remote-port",
            kind: OptionKind::Int { min: 1, max: 65535 },
            default: Some("24007"),
            doc: "Port of the brick daemon.",
        },
    ];
    const REPLICATE_OPTS: &[OptionSpec] = &[OptionSpec {
        key: "quorum-type",
        kind: OptionKind::Enum(&["auto", "fixed", "none"]),
        default: Some("auto"),
        doc: "How write quorum is counted | pipes escaped.",
    }];
    const STATS_OPTS: &[OptionSpec] = &[OptionSpec {
        key: "dump-interval",
        kind: OptionKind::Duration {
            min_ms: 0,
            max_ms: 86_400_000,
        },
        default: Some("30s"),
        doc: "How often counters are dumped.",
    }];
    const POSIX_OPTS: &[OptionSpec] = &[
        OptionSpec {
            key: "directory",
            kind: OptionKind::Path,
            default: None,
            doc: "Brick root.",
        },
        OptionSpec {
            key: "volume-id",
            kind: OptionKind::Str,
            default: Some(""),
            doc: "Expected volume id.",
        },
    ];

    /// A mock catalog; declarations deliberately not sorted.
    struct Mock(Vec<TypeDecl>);

    impl Catalog for Mock {
        fn decl(&self, type_name: &str) -> Option<&TypeDecl> {
            self.0.iter().find(|d| d.type_name == type_name)
        }
        fn decls(&self) -> Vec<&TypeDecl> {
            self.0.iter().collect()
        }
    }

    fn catalog() -> Mock {
        Mock(vec![
            TypeDecl {
                type_name: "storage/posix",
                arity: Arity::Leaf,
                roles: &[Role::Brick],
                maturity: Maturity::Stable,
                options: POSIX_OPTS,
                doc: "Stores files in a local directory.",
            },
            TypeDecl {
                type_name: "protocol/client",
                arity: Arity::Leaf,
                roles: &[Role::Client],
                maturity: Maturity::Stable,
                options: CLIENT_OPTS,
                doc: "Talks to one brick.",
            },
            TypeDecl {
                type_name: "cluster/replicate",
                arity: Arity::AtLeast(2),
                roles: &[Role::Client],
                maturity: Maturity::Testing,
                options: REPLICATE_OPTS,
                doc: "Keeps copies on every subvolume.",
            },
            TypeDecl {
                type_name: "debug/io-stats",
                arity: Arity::One,
                roles: &[Role::Client, Role::Brick],
                maturity: Maturity::Experimental,
                options: STATS_OPTS,
                doc: "Counts operations.",
            },
            TypeDecl {
                type_name: "debug/noop",
                arity: Arity::One,
                roles: &[Role::Client],
                maturity: Maturity::Stable,
                options: &[],
                doc: "",
            },
        ])
    }

    fn node(name: &str, type_name: &str, options: &[(&str, &str)], subs: &[&str]) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            type_name: type_name.into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            subvolumes: subs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn client(name: &str) -> NodeSpec {
        node(name, "protocol/client", &[("remote-host", "node1")], &[])
    }

    /// io-stats → replicate → [c0, c1], listed top first.
    fn good() -> Volfile {
        Volfile {
            version: FORMAT_VERSION,
            volume: "pacs".into(),
            role: Role::Client,
            top: "stats".into(),
            graph: vec![
                node("stats", "debug/io-stats", &[], &["rep"]),
                node("rep", "cluster/replicate", &[], &["c1", "c0"]),
                client("c0"),
                client("c1"),
            ],
        }
    }

    fn graph_error(vf: &Volfile) -> String {
        match validate(vf, &catalog()) {
            Err(ref e @ VolfileError::Graph(_)) => e.to_string(),
            other => panic!("expected a graph error, got {other:?}"),
        }
    }

    fn node_error(vf: &Volfile) -> (String, String, String) {
        match validate(vf, &catalog()) {
            Err(
                ref e @ VolfileError::Node {
                    ref node,
                    ref type_name,
                    ..
                },
            ) => (node.clone(), type_name.clone(), e.to_string()),
            other => panic!("expected a node error, got {other:?}"),
        }
    }

    fn option_error(vf: &Volfile) -> (String, String, String, String) {
        match validate(vf, &catalog()) {
            Err(
                ref e @ VolfileError::NodeOption {
                    ref node,
                    ref type_name,
                    ref source,
                },
            ) => (
                node.clone(),
                type_name.clone(),
                source.key.clone(),
                e.to_string(),
            ),
            other => panic!("expected an option error, got {other:?}"),
        }
    }

    #[test]
    fn valid_graph_is_topologically_ordered_with_defaults() {
        let g = validate(&good(), &catalog()).unwrap();
        assert_eq!(g.volume, "pacs");
        assert_eq!(g.role, Role::Client);
        assert_eq!(g.top, "stats");
        let names: Vec<&str> = g.nodes.iter().map(|n| n.spec.name.as_str()).collect();
        assert_eq!(names, ["c1", "c0", "rep", "stats"]);
        let c0 = g.node("c0").unwrap();
        assert_eq!(c0.options.int("remote-port").unwrap(), 24007);
        assert_eq!(c0.options.str("remote-host").unwrap(), "node1");
        assert_eq!(c0.decl.type_name, "protocol/client");
        assert_eq!(
            g.node("rep").unwrap().options.str("quorum-type").unwrap(),
            "auto"
        );
        assert_eq!(
            g.node("stats")
                .unwrap()
                .options
                .duration("dump-interval")
                .unwrap(),
            Duration::from_secs(30)
        );
        assert!(g.node("nope").is_none());
    }

    #[test]
    fn every_node_comes_after_its_subvolumes() {
        // A deeper tree listed in a scrambled order.
        let vf = Volfile {
            version: 1,
            volume: "v".into(),
            role: Role::Client,
            top: "top".into(),
            graph: vec![
                client("a0"),
                node("r1", "cluster/replicate", &[], &["b0", "b1", "b2"]),
                node("top", "debug/noop", &[], &["dht"]),
                client("b2"),
                node("dht", "cluster/replicate", &[], &["r0", "r1"]),
                client("b0"),
                node("r0", "cluster/replicate", &[], &["a0", "a1"]),
                client("a1"),
                client("b1"),
            ],
        };
        let g = validate(&vf, &catalog()).unwrap();
        assert_eq!(g.nodes.len(), 9);
        let pos = |name: &str| g.nodes.iter().position(|n| n.spec.name == name).unwrap();
        for n in &g.nodes {
            for sub in &n.spec.subvolumes {
                assert!(pos(sub) < pos(&n.spec.name), "{sub} before {}", n.spec.name);
            }
        }
        assert_eq!(g.nodes.last().unwrap().spec.name, "top");
    }

    #[test]
    fn a_single_leaf_is_a_valid_graph() {
        let vf = Volfile {
            version: 1,
            volume: "v".into(),
            role: Role::Brick,
            top: "posix".into(),
            graph: vec![node("posix", "storage/posix", &[("directory", "/b")], &[])],
        };
        let g = validate(&vf, &catalog()).unwrap();
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].options.opt_str("volume-id"), None);
    }

    #[test]
    fn version_must_match() {
        let mut vf = good();
        vf.version = 2;
        let err = validate(&vf, &catalog()).unwrap_err();
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
    }

    #[test]
    fn volume_name_is_checked() {
        for bad in ["", "pa cs", "pacs/1", "ü", &"x".repeat(65)] {
            let mut vf = good();
            vf.volume = bad.to_string();
            let e = graph_error(&vf);
            assert!(
                e.starts_with(&format!("invalid volume name '{bad}'")),
                "{e}"
            );
        }
        let mut vf = good();
        vf.volume = "A-z_0.9".repeat(10)[..64].to_string();
        assert!(validate(&vf, &catalog()).is_ok());
    }

    #[test]
    fn graph_must_not_be_empty() {
        let mut vf = good();
        vf.graph.clear();
        assert_eq!(graph_error(&vf), "volume 'pacs': the graph has no nodes");
    }

    #[test]
    fn node_names_are_checked() {
        let mut vf = good();
        vf.graph[2].name = "c 0".into();
        vf.graph[1].subvolumes = vec!["c 0".into(), "c1".into()];
        let (node, type_name, e) = node_error(&vf);
        assert_eq!(
            (node.as_str(), type_name.as_str()),
            ("c 0", "protocol/client")
        );
        assert!(e.contains("invalid node name"), "{e}");
    }

    #[test]
    fn node_names_are_unique() {
        let mut vf = good();
        vf.graph[3].name = "c0".into();
        assert_eq!(
            graph_error(&vf),
            "node name 'c0' is used by more than one node"
        );
    }

    #[test]
    fn subvolumes_must_exist() {
        let mut vf = good();
        vf.graph[1].subvolumes.push("c9".into());
        let (node, _, e) = node_error(&vf);
        assert_eq!(node, "rep");
        assert_eq!(
            e,
            "node 'rep' (cluster/replicate): subvolume 'c9' is not a node in this graph"
        );
    }

    #[test]
    fn subvolume_listed_twice_is_rejected() {
        let mut vf = good();
        vf.graph[1].subvolumes = vec!["c0".into(), "c1".into(), "c0".into()];
        let (_, _, e) = node_error(&vf);
        assert_eq!(
            e,
            "node 'rep' (cluster/replicate): lists subvolume 'c0' twice"
        );
    }

    #[test]
    fn top_must_exist() {
        let mut vf = good();
        vf.top = "nope".into();
        assert_eq!(graph_error(&vf), "top 'nope' is not a node in this graph");
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let mut vf = good();
        // stats → rep → c0 → stats
        vf.graph[2] = node("c0", "debug/noop", &[], &["stats"]);
        assert_eq!(
            graph_error(&vf),
            "the graph has a cycle: stats → rep → c0 → stats"
        );

        let mut vf = good();
        vf.graph[3].subvolumes = vec!["c1".into()];
        assert_eq!(graph_error(&vf), "the graph has a cycle: c1 → c1");

        // A cycle not involving top: x → y → x.
        let mut vf = good();
        vf.graph.push(node("x", "debug/noop", &[], &["y"]));
        vf.graph.push(node("y", "debug/noop", &[], &["x"]));
        assert_eq!(graph_error(&vf), "the graph has a cycle: x → y → x");
    }

    #[test]
    fn shared_subvolume_is_rejected() {
        let mut vf = good();
        vf.graph
            .push(node("rep2", "cluster/replicate", &[], &["c1", "c9"]));
        vf.graph.push(client("c9"));
        assert_eq!(
            graph_error(&vf),
            "node 'c1' is a subvolume of both 'rep' and 'rep2'"
        );
    }

    #[test]
    fn top_must_not_be_a_subvolume() {
        let mut vf = good();
        vf.top = "rep".into();
        assert_eq!(
            graph_error(&vf),
            "top 'rep' is itself a subvolume of 'stats'"
        );
    }

    #[test]
    fn unreachable_node_is_rejected() {
        let mut vf = good();
        vf.graph.push(client("c7"));
        assert_eq!(
            graph_error(&vf),
            "node 'c7' is not reachable from top 'stats'"
        );
    }

    #[test]
    fn unknown_type_lists_known_types() {
        let mut vf = good();
        vf.graph[0].type_name = "debug/trace".into();
        let (node, type_name, e) = node_error(&vf);
        assert_eq!(
            (node.as_str(), type_name.as_str()),
            ("stats", "debug/trace")
        );
        assert_eq!(
            e,
            "node 'stats' (debug/trace): unknown translator type; known types: \
             cluster/replicate, debug/io-stats, debug/noop, protocol/client, storage/posix"
        );
    }

    #[test]
    fn role_must_be_allowed() {
        let mut vf = good();
        vf.role = Role::Brick;
        let (node, _, e) = node_error(&vf);
        assert_eq!(node, "rep");
        assert_eq!(
            e,
            "node 'rep' (cluster/replicate): this type is not allowed in a brick graph \
             (allowed in: client)"
        );
    }

    #[test]
    fn arity_is_enforced() {
        // Leaf with a subvolume.
        let vf = Volfile {
            version: 1,
            volume: "v".into(),
            role: Role::Client,
            top: "c0".into(),
            graph: vec![
                node("c0", "protocol/client", &[("remote-host", "h")], &["c1"]),
                client("c1"),
            ],
        };
        let (_, _, e) = node_error(&vf);
        assert_eq!(
            e,
            "node 'c0' (protocol/client): this type takes no subvolumes, got 1"
        );

        // One with two.
        let mut vf = good();
        vf.graph[0].subvolumes = vec!["rep".into(), "c9".into()];
        vf.graph.push(client("c9"));
        let (_, _, e) = node_error(&vf);
        assert_eq!(
            e,
            "node 'stats' (debug/io-stats): this type takes exactly one subvolume, got 2"
        );

        // One with none.
        let vf = Volfile {
            version: 1,
            volume: "v".into(),
            role: Role::Client,
            top: "s".into(),
            graph: vec![node("s", "debug/io-stats", &[], &[])],
        };
        let (_, _, e) = node_error(&vf);
        assert!(e.ends_with("takes exactly one subvolume, got 0"), "{e}");

        // AtLeast(2) with one.
        let mut vf = good();
        vf.graph[1].subvolumes = vec!["c0".into()];
        vf.graph.pop();
        let (_, _, e) = node_error(&vf);
        assert_eq!(
            e,
            "node 'rep' (cluster/replicate): this type takes at least 2 subvolumes, got 1"
        );
    }

    #[test]
    fn options_are_checked_per_node() {
        let mut vf = good();
        vf.graph[3].options.insert("colour".into(), "red".into());
        let (node, type_name, key, e) = option_error(&vf);
        assert_eq!(
            (node.as_str(), type_name.as_str(), key.as_str()),
            ("c1", "protocol/client", "colour")
        );
        assert_eq!(
            e,
            "node 'c1' (protocol/client): option 'colour': unknown option; known options: \
             remote-host, remote-port"
        );

        let mut vf = good();
        vf.graph[2].options.clear();
        let (node, _, key, e) = option_error(&vf);
        assert_eq!((node.as_str(), key.as_str()), ("c0", "remote-host"));
        assert!(e.contains("required option is missing"), "{e}");

        let mut vf = good();
        vf.graph[1]
            .options
            .insert("quorum-type".into(), "Auto".into());
        let (node, _, key, e) = option_error(&vf);
        assert_eq!((node.as_str(), key.as_str()), ("rep", "quorum-type"));
        assert!(
            e.ends_with("expected one of: auto, fixed, none; got 'Auto'"),
            "{e}"
        );
    }

    #[test]
    fn slice_is_a_catalog() {
        let owned = catalog().0;
        let decls: &[TypeDecl] = &owned;
        let g = validate(&good(), &decls).unwrap();
        assert_eq!(g.nodes.len(), 4);
        assert_eq!(decls.decls().len(), 5);
        assert!(decls.decl("debug/trace").is_none());
    }

    #[test]
    fn reference_lists_every_type_and_key_sorted_and_deterministic() {
        let cat = catalog();
        let text = render_reference(&cat);
        for decl in cat.decls() {
            assert!(text.contains(&format!("## `{}`", decl.type_name)), "{text}");
            for spec in decl.options {
                assert!(text.contains(&format!("| `{}` |", spec.key)), "{text}");
            }
        }
        let at = |s: &str| text.find(s).unwrap();
        assert!(at("## `cluster/replicate`") < at("## `debug/io-stats`"));
        assert!(at("## `debug/noop`") < at("## `protocol/client`"));
        assert!(at("## `protocol/client`") < at("## `storage/posix`"));
        assert!(text.contains(
            "| `remote-port` | integer (1–65535) | `24007` | Port of the brick daemon. |"
        ));
        assert!(
            text.contains("| `remote-host` | string | *required* | Host of the brick daemon. |")
        );
        assert!(text.contains("| `volume-id` | string | *(empty)* |"));
        assert!(text.contains("| `dump-interval` | duration (0s–1d) | `30s` |"));
        assert!(text.contains("How write quorum is counted \\| pipes escaped."));
        assert!(text.contains("- Subvolumes: at least 2\n- Roles: client\n- Maturity: testing"));
        assert!(text.contains("- Roles: client, brick\n- Maturity: experimental"));
        assert!(text.contains("## `debug/noop`\n\n- Subvolumes: exactly one"));
        assert!(text.contains("No options."));

        // Same declarations in another order render identically.
        let mut reversed = catalog();
        reversed.0.reverse();
        assert_eq!(render_reference(&reversed), text);
        assert_eq!(render_reference(&cat), text);
    }
}
