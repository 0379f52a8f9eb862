//! The brick: Cairn's on-disk format, the `storage/posix` translator, and the
//! `cairn-brickd` process that serves one brick directory.
//!
//! # Layout
//!
//! - [`layout`]: the on-disk format (version 1): `.cairn/` handle trees, gfid and identity
//!   xattrs, and the checks a brick makes before it serves a directory.
//! - [`posix`]: `storage/posix`, the leaf translator that turns fops into syscalls.
//! - [`brickgraph`]: the default brick graph (`protocol/server → debug/io-stats →
//!   features/locks → storage/posix`) as a volfile.
//! - `bin/cairn-brickd.rs`: the process.

pub mod brickgraph;
pub mod layout;
pub mod posix;

use cairn_translators::Registry;

/// Every translator type a brick process knows: the core's plus `storage/posix`.
pub fn registry() -> Registry {
    let mut r = Registry::builtin();
    r.register(posix::TYPE);
    r
}
