//! Cluster translators: the ones that fan out over several subvolumes.
//!
//! - [`afr`](crate::cluster::afr): `cluster/replicate`.
//! - [`dht`](crate::cluster::dht): `cluster/distribute`.

pub mod afr;
pub mod dht;
