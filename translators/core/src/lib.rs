//! Cairn's translator core: the `Translator` trait, the types every translator speaks, the
//! brick wire protocol, the graph builder, and the translators that are not tied to a disk
//! or an access protocol.
//!
//! # Layout
//!
//! - [`error`]: `FopError` (errno + message) and errno names.
//! - [`types`]: gfid, iatt, loc, fd, xdata, caller context, payload.
//! - [`fops`]: the fop table, written once; [`with_fops!`] feeds it to code generators.
//! - [`xlator`]: the `Translator` trait (one method per fop, pass-through by default),
//!   `XlatorBase`, events.
//! - [`wire`]: `Request`/`Reply` (generated from the fop table), `dispatch`, compound
//!   requests, and [`wire::frame`], the byte format with its size limits.
//! - [`graph`]: the registry of translator types and the graph builder.
//! - [`protocol`]: `protocol/client` and `protocol/server`.
//! - [`cluster`](crate::cluster): `cluster/replicate`.
//! - [`debug`]: `debug/io-stats` and `debug/error-gen`.
//! - [`features`](crate::features): `features/locks`, `features/index`.
//! - [`performance`](crate::performance): `performance/quick-read`, `performance/md-cache`,
//!   `performance/readdir-ahead`.
//! - `testing` (tests, or the `testing` feature): a recording mock leaf and the pass-through
//!   conformance suite.
//!
//! Layering: this crate depends only on `cairn-volfiles`. The brick's storage translator
//! (`storage/posix`) lives in `cairn-bricks`, the FUSE edge in `cairn-fuse`.

pub mod cluster;
pub mod debug;
pub mod error;
pub mod features;
pub mod fops;
pub mod graph;
pub mod performance;
pub mod protocol;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod types;
pub mod wire;
pub mod xlator;

pub use error::{FopError, FopResult};
pub use fops::FopKind;
pub use graph::{Graph, Registry};
pub use types::*;
pub use xlator::{Event, Translator, XlatorBase, XlatorRef};
