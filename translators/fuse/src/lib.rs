//! `mount/fuse`: Cairn's FUSE access edge. It turns kernel FUSE requests into fops on the
//! top of a client graph and maps the answers back, errors included, in one place.
//!
//! ```text
//! kernel ──/dev/fuse──▶ fuser threads ──spawn──▶ tokio task ──fop──▶ graph top
//!                                       reply ◀──────────────────────┘
//! ```
//!
//! Node ids are gfids' low 64 bits, so inode numbers are the same on every client and
//! across remounts (the `inodes` module documents the rule for collisions), and the inode
//! table stays valid when the mount switches to a new graph of the same volume.
//!
//! # Layout
//!
//! - `options`: [`MountOptions`], its defaults and the `-o` list parser.
//! - `mount`: [`mount()`], [`MountHandle`], [`Unmounter`], [`mounted_at`]: mounting
//!   through `fusermount3` with `auto_unmount`, serving, unmounting.
//! - `generation`: [`GraphSwitcher`] and the graph generations behind it: a mount owns its
//!   graph and can switch to a new one live; open files stay on the graph that opened them,
//!   and an old graph is stopped once nothing uses it.
//! - `fs`: the `fuser::Filesystem` implementation, one callback per kernel request; each
//!   spawns a task that runs the fop and replies.
//! - `inodes`: the inode table, node id ↔ gfid with the kernel's lookup counts.
//! - `handles`: open files and directories (`fh` → `Fd`) and directory read-ahead.
//! - `attr`: `Iatt` → `FileAttr`, times, kinds, device numbers.
//! - `xattr`: the `user.`-only namespace rule and the xattr size protocol.
//! - `errno`: the one place `FopError` becomes a kernel errno; name checks (`EILSEQ`).

mod attr;
mod errno;
mod fs;
mod generation;
mod handles;
mod inodes;
mod mount;
mod options;
mod xattr;

pub use generation::GraphSwitcher;
pub use mount::{FSTYPE, MountHandle, SUBTYPE, Unmounter, mount, mounted_at};
pub use options::{KNOWN_KEYS, MountOptions};
