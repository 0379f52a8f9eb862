//! Cairn volfiles: the YAML description of a translator graph, its typed options, and the
//! checks that run before any graph is built.
//!
//! A volfile names a volume, a role (`client` or `brick`), a `top` node and a list of nodes,
//! each with a translator type, text options and subvolumes. This crate knows no translator
//! types itself: the crate that implements them supplies a [`Catalog`] of [`TypeDecl`]s, and
//! [`validate()`] checks a [`Volfile`] against it, returning a [`ValidGraph`] whose nodes carry
//! typed [`Options`] and come in build order (children first).
//!
//! ```text
//! text ──parse──▶ Volfile ──validate(catalog)──▶ ValidGraph ──▶ graph builder
//!      ◀──emit──
//! ```
//!
//! # Example
//!
//! ```
//! use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};
//!
//! static DECLS: &[TypeDecl] = &[TypeDecl {
//!     type_name: "storage/posix",
//!     arity: Arity::Leaf,
//!     roles: &[Role::Brick],
//!     maturity: Maturity::Stable,
//!     options: &[OptionSpec {
//!         key: "directory",
//!         kind: OptionKind::Path,
//!         default: None,
//!         doc: "Root directory of the brick.",
//!     }],
//!     doc: "Stores files in a local directory.",
//! }];
//!
//! let vf = cairn_volfiles::parse(
//!     "version: 1\nvolume: pacs\nrole: brick\ntop: posix\ngraph:\n\
//!      - {name: posix, type: storage/posix, options: {directory: /srv/b1}}\n",
//! )?;
//! let graph = cairn_volfiles::validate(&vf, &DECLS)?;
//! let posix = graph.node("posix").map(|n| n.options.str("directory"));
//! assert_eq!(posix, Some(Ok("/srv/b1")));
//! # Ok::<(), cairn_volfiles::VolfileError>(())
//! ```
//!
//! # Layout
//!
//! - [`schema`]: the data types of a volfile ([`Volfile`], [`NodeSpec`], [`Role`]) and
//!   [`FORMAT_VERSION`].
//! - [`yaml`]: [`parse`], [`emit`] and [`read_file`]; the only module that uses `serde_yaml`.
//! - [`options`]: the typed option system: [`OptionSpec`] declarations, [`OptionKind`]
//!   parsing, [`parse_options`] and the typed [`Options`] map.
//! - [`mod@validate`]: the [`Catalog`] trait, [`TypeDecl`], [`validate()`] and
//!   [`render_reference`], which writes the Markdown option reference.
//! - [`error`]: [`VolfileError`], the one error type of the crate.

pub mod error;
pub mod options;
pub mod schema;
pub mod validate;
pub mod yaml;

pub use error::VolfileError;
pub use options::*;
pub use schema::*;
pub use validate::*;
pub use yaml::{emit, parse, read_file};
