//! One module per verb family.
//!
//! - [`peer`]: `cairn peer probe|status|detach`.
//! - [`pool`]: `cairn pool list`.
//! - [`volume`]: `cairn volume create|start|stop|delete|info|list|status|set|get|reset`.
//! - [`heal`]: `cairn volume heal ...` (self-heal and split-brain).
//! - [`bitrot`]: `cairn volume bitrot ...` (signing and scrubbing).
//! - [`mount`]: `cairn mount` (the FUSE client) and `mount.cairn` (the `mount(8)` helper).

pub mod bitrot;
pub mod heal;
pub mod mount;
pub mod peer;
pub mod pool;
pub mod volume;
