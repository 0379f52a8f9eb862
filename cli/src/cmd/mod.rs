//! One module per verb.
//!
//! - [`mount`]: `cairn mount`, the FUSE client.

pub mod mount;
