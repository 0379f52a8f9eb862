//! Building a running graph of translators from a validated volfile.
//!
//! Each translator type registers a [`TranslatorType`]: its declaration (arity, roles,
//! typed options; checked by `cairn_volfiles::validate` before anything is built) and a
//! constructor. [`Graph::build`] then constructs nodes children-first, wires parents, and
//! [`Graph::start`] starts them children-first.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_volfiles::{Catalog, Options, Role, TypeDecl, ValidGraph, Volfile, VolfileError};

use crate::error::FopResult;
use crate::xlator::{Event, XlatorRef};

/// What a constructor receives.
pub struct BuildCtx<'a> {
    /// The node name.
    pub name: &'a str,
    /// The node's options, typed and with defaults filled in.
    pub options: &'a Options,
    /// The already-built subvolumes, in volfile order.
    pub children: Vec<XlatorRef>,
    /// The volume name.
    pub volume: &'a str,
    /// Client or brick graph.
    pub role: Role,
}

/// A translator constructor. Errors are messages; the builder adds the node name.
pub type BuildFn = fn(BuildCtx<'_>) -> Result<XlatorRef, String>;

/// A translator type: its declaration and its constructor.
#[derive(Clone, Copy)]
pub struct TranslatorType {
    /// Arity, roles, options, documentation.
    pub decl: TypeDecl,
    /// Builds one node.
    pub build: BuildFn,
}

/// The translator types a process knows.
#[derive(Clone, Default)]
pub struct Registry {
    types: BTreeMap<&'static str, TranslatorType>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The types this crate provides: `protocol/client`, `protocol/server`, `debug/io-stats`,
    /// `debug/error-gen`, `features/locks`, `features/index`, `cluster/replicate`.
    pub fn builtin() -> Registry {
        let mut r = Registry::new();
        r.register(crate::protocol::client::TYPE);
        r.register(crate::protocol::server::TYPE);
        r.register(crate::debug::io_stats::TYPE);
        r.register(crate::debug::error_gen::TYPE);
        r.register(crate::debug::delay_gen::TYPE);
        r.register(crate::features::locks::TYPE);
        r.register(crate::features::index::TYPE);
        r.register(crate::features::worm::TYPE);
        r.register(crate::features::bitrot::TYPE);
        r.register(crate::cluster::afr::TYPE);
        r.register(crate::cluster::dht::TYPE);
        r.register(crate::performance::quick_read::TYPE);
        r.register(crate::performance::md_cache::TYPE);
        r.register(crate::performance::readdir_ahead::TYPE);
        r
    }

    /// Adds (or replaces) a type.
    pub fn register(&mut self, t: TranslatorType) {
        self.types.insert(t.decl.type_name, t);
    }

    /// A type by name.
    pub fn get(&self, type_name: &str) -> Option<&TranslatorType> {
        self.types.get(type_name)
    }
}

impl Catalog for Registry {
    fn decl(&self, type_name: &str) -> Option<&TypeDecl> {
        self.types.get(type_name).map(|t| &t.decl)
    }

    fn decls(&self) -> Vec<&TypeDecl> {
        self.types.values().map(|t| &t.decl).collect()
    }
}

/// A built graph.
pub struct Graph {
    volume: String,
    role: Role,
    top: XlatorRef,
    /// Every node, children before parents.
    nodes: Vec<(String, XlatorRef)>,
}

impl Graph {
    /// Builds the nodes of a validated graph, children first, and wires their parents.
    pub fn build(vg: &ValidGraph, registry: &Registry) -> Result<Graph, VolfileError> {
        let mut built: BTreeMap<String, XlatorRef> = BTreeMap::new();
        let mut nodes = Vec::with_capacity(vg.nodes.len());
        for node in &vg.nodes {
            let spec = &node.spec;
            let node_err = |message: String| VolfileError::Node {
                node: spec.name.clone(),
                type_name: spec.type_name.clone(),
                message,
            };
            let ty = registry
                .get(&spec.type_name)
                .ok_or_else(|| node_err("unknown translator type".into()))?;
            let mut children = Vec::with_capacity(spec.subvolumes.len());
            for sub in &spec.subvolumes {
                let child = built
                    .get(sub)
                    .ok_or_else(|| node_err(format!("subvolume '{sub}' was not built first")))?;
                children.push(Arc::clone(child));
            }
            let xl = (ty.build)(BuildCtx {
                name: &spec.name,
                options: &node.options,
                children: children.clone(),
                volume: &vg.volume,
                role: vg.role,
            })
            .map_err(node_err)?;
            for child in &children {
                child.base().add_parent(Arc::downgrade(&xl));
            }
            built.insert(spec.name.clone(), Arc::clone(&xl));
            nodes.push((spec.name.clone(), xl));
        }
        let top = built
            .get(&vg.top)
            .cloned()
            .ok_or_else(|| VolfileError::Graph(format!("top '{}' was not built", vg.top)))?;
        Ok(Graph {
            volume: vg.volume.clone(),
            role: vg.role,
            top,
            nodes,
        })
    }

    /// Validates and builds a parsed volfile.
    pub fn from_volfile(vf: &Volfile, registry: &Registry) -> Result<Graph, VolfileError> {
        let vg = cairn_volfiles::validate(vf, registry)?;
        Graph::build(&vg, registry)
    }

    /// Reads, validates and builds a volfile from disk.
    pub fn load(path: &std::path::Path, registry: &Registry) -> Result<Graph, VolfileError> {
        let vf = cairn_volfiles::read_file(path)?;
        Graph::from_volfile(&vf, registry)
    }

    /// The volume name.
    pub fn volume(&self) -> &str {
        &self.volume
    }

    /// Client or brick graph.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The top node, where an access edge (FUSE, server) attaches.
    pub fn top(&self) -> &XlatorRef {
        &self.top
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&XlatorRef> {
        self.nodes.iter().find(|(n, _)| n == name).map(|(_, x)| x)
    }

    /// Every node, children before parents.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &XlatorRef)> {
        self.nodes.iter().map(|(n, x)| (n.as_str(), x))
    }

    /// Every node of concrete type `T`.
    pub fn find<T: 'static>(&self) -> impl Iterator<Item = &T> {
        self.nodes
            .iter()
            .filter_map(|(_, x)| x.as_any().downcast_ref::<T>())
    }

    /// Sends events that reach the top of the graph to `listener`.
    pub fn on_event(&self, listener: impl Fn(&Event) + Send + Sync + 'static) {
        self.top.base().set_listener(Arc::new(listener));
    }

    /// Starts every node, children first. Stops at the first failure (after stopping the
    /// nodes already started).
    pub async fn start(&self) -> FopResult<()> {
        for (i, (name, xl)) in self.nodes.iter().enumerate() {
            if let Err(e) = xl.start().await {
                for (_, started) in self.nodes[..i].iter().rev() {
                    started.stop().await;
                }
                return Err(e.context(format!("starting {name}")));
            }
        }
        Ok(())
    }

    /// Stops every node, parents first.
    pub async fn stop(&self) {
        for (_, xl) in self.nodes.iter().rev() {
            xl.stop().await;
        }
    }
}
