//! Cluster translators: the ones that fan out over several subvolumes.
//!
//! - [`afr`](crate::cluster::afr): `cluster/replicate`.

pub mod afr;
