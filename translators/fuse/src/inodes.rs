//! The inode table: FUSE node ids ↔ gfids, with the kernel's lookup counts.
//!
//! # Node ids
//!
//! A gfid's node id is normally [`Gfid::ino`], the gfid's low 64 bits, so inode numbers
//! are the same on every client and across remounts; the root gfid's is 1, the FUSE root.
//! Two cases cannot use it:
//!
//! - the low 64 bits are 0 or 1 but the gfid is not the root (0 is "no node" to FUSE, 1 is
//!   the root), or
//! - another gfid already in the table holds that node id (a collision of the low halves).
//!
//! Such a gfid gets a node id from a private counter starting at [`PRIVATE_BASE`]
//! (skipping ids in use). Random (version 4) gfids, which is what Cairn creates, always have
//! the two top bits of their low half set to `10`, so they can never produce an id in the
//! private range (`11…`); a private id is only ever stable for the life of the mount.
//!
//! # Lookup counts
//!
//! Every reply that hands the kernel a reference to a node (lookup, create, mkdir, mknod,
//! symlink, link, and each readdirplus entry except `.` and `..`) calls
//! [`InodeTable::remember`], which adds one to the node's count *before* the reply is sent.
//! `forget` subtracts what the kernel says it drops; at zero the node leaves the table. The
//! root is pinned and never leaves.

use std::collections::HashMap;

use cairn_translators::Gfid;

/// The FUSE root node id.
pub(crate) const ROOT: u64 = 1;

/// First node id of the private range used when a gfid's own id is unusable.
pub(crate) const PRIVATE_BASE: u64 = 0xC000_0000_0000_0000;

#[derive(Debug)]
struct Node {
    gfid: Gfid,
    /// References the kernel holds (sum of remember minus forgets).
    lookups: u64,
    /// The parent directory's node id, for directories (0: unknown). Only used to give
    /// `..` a sensible inode number in directory listings.
    parent: u64,
}

/// Node ids ↔ gfids. Not synchronised; the FUSE layer wraps it in a mutex.
///
/// A gfid whose node id is its own [`Gfid::ino`] (nearly all of them) is found through
/// `nodes` alone; only gfids with a private node id are kept in `private` too, so the
/// table costs one slot per node (a mount whose kernel holds a million inodes).
#[derive(Debug)]
pub(crate) struct InodeTable {
    nodes: HashMap<u64, Node>,
    private: HashMap<Gfid, u64>,
    next_private: u64,
}

impl InodeTable {
    /// A table holding only the root.
    pub(crate) fn new() -> InodeTable {
        let mut t = InodeTable {
            nodes: HashMap::new(),
            private: HashMap::new(),
            next_private: PRIVATE_BASE,
        };
        t.nodes.insert(
            ROOT,
            Node {
                gfid: Gfid::ROOT,
                lookups: 1,
                parent: ROOT,
            },
        );
        if Gfid::ROOT.ino() != ROOT {
            t.private.insert(Gfid::ROOT, ROOT);
        }
        t
    }

    /// The gfid behind a node id, or `None` for an id the table does not know (the
    /// caller answers `ESTALE`).
    pub(crate) fn gfid(&self, node: u64) -> Option<Gfid> {
        self.nodes.get(&node).map(|n| n.gfid)
    }

    /// The node id a gfid has now, if the kernel holds a reference to it.
    pub(crate) fn node(&self, gfid: &Gfid) -> Option<u64> {
        let own = gfid.ino();
        if self.nodes.get(&own).is_some_and(|n| n.gfid == *gfid) {
            return Some(own);
        }
        self.private.get(gfid).copied()
    }

    /// The inode number to show for `gfid` without taking a reference (plain readdir):
    /// its node id if it has one, else its own id if that is usable.
    pub(crate) fn display_ino(&self, gfid: &Gfid) -> u64 {
        if let Some(node) = self.node(gfid) {
            return node;
        }
        match gfid.ino() {
            0 | ROOT => UNKNOWN_INO,
            ino => ino,
        }
    }

    /// Records one more kernel reference to `gfid` and returns its node id, allocating one
    /// if the gfid is new. `parent` (a directory's parent node, or 0) is remembered for
    /// directories.
    pub(crate) fn remember(&mut self, gfid: Gfid, parent: u64) -> u64 {
        if let Some(node) = self.node(&gfid)
            && let Some(n) = self.nodes.get_mut(&node)
        {
            if node != ROOT {
                n.lookups = n.lookups.saturating_add(1);
                if parent != 0 {
                    n.parent = parent;
                }
            }
            return node;
        }
        let own = gfid.ino();
        let node = if own > ROOT && !self.nodes.contains_key(&own) {
            own
        } else {
            let p = self.allocate_private();
            self.private.insert(gfid, p);
            p
        };
        self.nodes.insert(
            node,
            Node {
                gfid,
                lookups: 1,
                parent,
            },
        );
        node
    }

    /// The kernel dropped `count` references to `node`; at zero the node is removed.
    /// Unknown nodes and the root are ignored.
    pub(crate) fn forget(&mut self, node: u64, count: u64) {
        if node == ROOT {
            return;
        }
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        n.lookups = n.lookups.saturating_sub(count);
        if n.lookups == 0 {
            let gfid = n.gfid;
            self.nodes.remove(&node);
            if self.private.get(&gfid) == Some(&node) {
                self.private.remove(&gfid);
            }
        }
    }

    /// A directory's parent node id, if known.
    pub(crate) fn parent(&self, node: u64) -> Option<u64> {
        self.nodes.get(&node).map(|n| n.parent).filter(|p| *p != 0)
    }

    /// Number of nodes, the root included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The lookup count of a node.
    #[cfg(test)]
    pub(crate) fn lookups(&self, node: u64) -> Option<u64> {
        self.nodes.get(&node).map(|n| n.lookups)
    }

    fn allocate_private(&mut self) -> u64 {
        loop {
            let candidate = self.next_private;
            self.next_private = match self.next_private.checked_add(1) {
                Some(next) => next,
                None => PRIVATE_BASE,
            };
            if !self.nodes.contains_key(&candidate) {
                return candidate;
            }
        }
    }
}

/// The inode number shown for an entry whose identity is not known (plain readdir of an
/// entry the volume gave no gfid for). Never 0: glibc before 2.37 hides entries whose
/// `d_ino` is 0.
pub(crate) const UNKNOWN_INO: u64 = 0xffff_ffff;

#[cfg(test)]
mod tests {
    use super::*;

    fn gfid_with_low(high: u64, low: u64) -> Gfid {
        let mut g = [0u8; 16];
        g[..8].copy_from_slice(&high.to_be_bytes());
        g[8..].copy_from_slice(&low.to_be_bytes());
        Gfid(g)
    }

    #[test]
    fn the_root_is_node_one_and_pinned() {
        let mut t = InodeTable::new();
        assert_eq!(t.gfid(ROOT), Some(Gfid::ROOT));
        assert_eq!(t.remember(Gfid::ROOT, 0), ROOT);
        t.forget(ROOT, 1_000);
        assert_eq!(t.gfid(ROOT), Some(Gfid::ROOT));
        assert_eq!(t.node(&Gfid::ROOT), Some(ROOT));
        assert_eq!(t.parent(ROOT), Some(ROOT));
    }

    #[test]
    fn node_ids_are_the_low_half_of_the_gfid() {
        let mut t = InodeTable::new();
        let g = Gfid::random();
        let node = t.remember(g, ROOT);
        assert_eq!(node, g.ino());
        assert_eq!(t.gfid(node), Some(g));
        assert_eq!(t.node(&g), Some(node));
        assert_eq!(t.display_ino(&g), node);
        assert_eq!(
            t.gfid(12345),
            None,
            "unknown ids resolve to nothing (ESTALE)"
        );
    }

    #[test]
    fn counts_add_up_and_forget_removes_at_zero() {
        let mut t = InodeTable::new();
        let g = Gfid::random();
        let node = t.remember(g, ROOT);
        assert_eq!(t.remember(g, ROOT), node);
        assert_eq!(t.remember(g, ROOT), node);
        assert_eq!(t.lookups(node), Some(3));
        t.forget(node, 2);
        assert_eq!(t.lookups(node), Some(1));
        assert_eq!(t.gfid(node), Some(g));
        t.forget(node, 1);
        assert_eq!(t.gfid(node), None);
        assert_eq!(t.node(&g), None);
        assert_eq!(t.len(), 1, "only the root is left");
        t.forget(node, 1);
        t.forget(999, 1);
        // Looked up again after being forgotten: same id, fresh count.
        assert_eq!(t.remember(g, ROOT), node);
        assert_eq!(t.lookups(node), Some(1));
        t.forget(node, 5);
        assert_eq!(t.len(), 1, "over-forgetting saturates");
    }

    #[test]
    fn colliding_low_halves_fall_back_to_the_private_range() {
        let mut t = InodeTable::new();
        let a = gfid_with_low(0x1111, 0x8000_0000_0000_0042);
        let b = gfid_with_low(0x2222, 0x8000_0000_0000_0042);
        let na = t.remember(a, ROOT);
        let nb = t.remember(b, ROOT);
        assert_eq!(na, a.ino());
        assert_eq!(nb, PRIVATE_BASE);
        assert_eq!(t.gfid(na), Some(a));
        assert_eq!(t.gfid(nb), Some(b));
        assert_eq!(
            t.remember(b, ROOT),
            nb,
            "the private id sticks while referenced"
        );
        assert_eq!(t.display_ino(&b), nb);
        // Forgetting a leaves b where it is; a comes back under its own id.
        t.forget(na, 1);
        assert_eq!(t.remember(a, ROOT), na);
        // Low halves of 0 and 1 are reserved.
        let zero = gfid_with_low(0x3333, 0);
        let one = gfid_with_low(0x4444, 1);
        assert_eq!(t.remember(zero, ROOT), PRIVATE_BASE + 1);
        assert_eq!(t.remember(one, ROOT), PRIVATE_BASE + 2);
        assert_eq!(t.gfid(ROOT), Some(Gfid::ROOT));
        assert_eq!(t.display_ino(&gfid_with_low(5, 0)), UNKNOWN_INO);
    }

    #[test]
    fn a_gfid_whose_low_half_is_a_private_id_in_use_also_falls_back() {
        let mut t = InodeTable::new();
        let first = gfid_with_low(1, 0);
        assert_eq!(t.remember(first, ROOT), PRIVATE_BASE);
        let squatter = gfid_with_low(2, PRIVATE_BASE);
        let node = t.remember(squatter, ROOT);
        assert_ne!(node, PRIVATE_BASE);
        assert_eq!(t.gfid(PRIVATE_BASE), Some(first));
        assert_eq!(t.gfid(node), Some(squatter));
    }

    #[test]
    fn directories_remember_their_parent() {
        let mut t = InodeTable::new();
        let d = Gfid::random();
        let node = t.remember(d, ROOT);
        assert_eq!(t.parent(node), Some(ROOT));
        let e = Gfid::random();
        let child = t.remember(e, node);
        assert_eq!(t.parent(child), Some(node));
        let unknown = t.remember(Gfid::random(), 0);
        assert_eq!(t.parent(unknown), None);
    }
}
