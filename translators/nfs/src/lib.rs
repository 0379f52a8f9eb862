//! `nfs/server`: Cairn's NFSv3 access edge. It serves the top of a client graph to NFS
//! clients through the `nfs3_server` crate (NFSv3, MOUNT and portmap on one TCP port), the
//! way `mount/fuse` serves it to the kernel.
//!
//! ```text
//! NFS client ──TCP──▶ address check ──▶ nfs3_server (RPC, XDR) ──▶ CairnNfs ──fop──▶ graph top
//! ```
//!
//! - **File handles are gfids.** A handle is the gateway's generation (fixed per volume,
//!   derived from the volume id) followed by the object's 16-byte gfid, so the same handle
//!   resolves on every node's gateway and after a restart: NFS clients keep working when
//!   they fail over to another node or the gateway comes back.
//! - **Open files are cached.** NFS has no open or close; the gateway opens a file on its
//!   first READ or WRITE (or keeps the descriptor CREATE made), reuses it, and releases it
//!   when it has been idle for a while or the cache is full. Releasing is the file's "close"
//!   (WORM's write-once rule counts from it).
//! - **Stability.** A WRITE returns once a quorum of bricks holds the data (like every Cairn
//!   write); FILE_SYNC and DATA_SYNC writes and COMMIT also fsync on the bricks.
//! - **Errors** become NFS status codes in one place, [`status::nfs_status`]; a WORM refusal
//!   stays `NFS3ERR_ROFS` / `NFS3ERR_PERM`, an unreachable volume becomes `NFS3ERR_JUKEBOX`
//!   (the client retries) rather than a hard I/O error.
//! - **Who may connect** is an allow and a reject list of addresses, checked when a
//!   connection is accepted ([`Gateway`]).
//!
//! Operations run with the gateway's own (root) credentials, as with an export that does
//! not squash root: access is controlled by the address lists.
//!
//! # Layout
//!
//! - `handle`: [`GfidHandle`].
//! - `status`: errno → `nfsstat3`.
//! - `attr`: `Iatt` → `fattr3`, `sattr3` → `SetAttr`.
//! - `fds`: the open-file cache.
//! - `fs`: [`CairnNfs`], the `nfs3_server` file system over a graph.
//! - `gateway`: [`Gateway`], the listener with its address check.

mod attr;
mod fds;
mod fs;
mod gateway;
mod handle;
pub mod status;

pub use fs::CairnNfs;
pub use gateway::{Gateway, GatewayConfig};
pub use handle::GfidHandle;

/// The generation every gateway of a volume puts in its handles: a stable function of the
/// volume id, so handles survive restarts and are the same on every node.
pub fn generation_for(volume_id: &str) -> u64 {
    // FNV-1a: stable across builds and platforms (unlike `DefaultHasher`).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in volume_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // nfs3_server refuses handles of an *older* generation as stale; keep it nonzero.
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_stable_and_differs_between_volumes() {
        assert_eq!(generation_for("a-volume"), generation_for("a-volume"));
        assert_ne!(generation_for("a-volume"), generation_for("b-volume"));
        // A fixed value: a change here would make every client's handles stale.
        assert_eq!(generation_for(""), 0xcbf2_9ce4_8422_2325);
    }
}
