//! The management API of `cairnd`: the JSON types of every request and reply, the routes,
//! and the HTTP client that the `cairn` CLI, mount clients and peer daemons use.
//!
//! # Layout
//!
//! - [`types`]: pool, volume, option and status types; transaction messages between peers.
//! - [`routes`]: every route, in one place.
//! - [`client`]: an HTTP/1.1 client over TCP (`host:port`) or a Unix socket (a path).
//!
//! Transport rules (enforced by `cairnd`):
//! - read-only routes answer anyone (but never reveal a volume's secret);
//! - routes that change configuration answer the local CLI (over the daemon's Unix socket,
//!   which only root can open) and pool members (`Authorization: Bearer <pool secret>`);
//! - a client volfile (which holds the volume secret) is served to addresses that the
//!   volume's `auth.allow` / `auth.reject` admit.
//! - Errors are non-2xx with `{"error": "..."}`.

pub mod client;
pub mod routes;
pub mod types;

pub use client::{ApiError, Client, Endpoint};
pub use types::*;

/// The port `cairnd` listens on by default (the same as glusterd's).
pub const DEFAULT_PORT: u16 = 24007;

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cairn";

/// The local CLI socket, inside the state directory.
pub const SOCKET_NAME: &str = "cairnd.sock";

/// HTTP header carrying the configuration version (on volfile replies).
pub const VERSION_HEADER: &str = "x-cairn-config-version";
