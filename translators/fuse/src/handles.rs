//! Open file and directory handles: FUSE `fh` → Cairn [`Fd`] and the graph generation it
//! was opened on, and the read-ahead buffer of a directory stream.
//!
//! The `fh` given to the kernel is the `Fd`'s own id (unique in the process). Every fop on
//! an open handle goes to the generation that opened it (its translators know the `Fd`),
//! even after the mount switched to a newer graph; the handle keeps that generation alive
//! until it is released. A directory
//! handle also keeps the entries the volume returned beyond what fitted in the kernel's
//! reply buffer (usually one page), so listing a large directory costs one round trip per
//! [`READDIR_CHUNK`] of entries rather than one per page.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cairn_translators::{DirEntry, Fd};

use crate::generation::Generation;

/// Bytes' worth of entries asked of the volume per `readdir` call.
pub(crate) const READDIR_CHUNK: u32 = 64 * 1024;

/// Entries fetched but not yet given to the kernel.
#[derive(Debug, Default)]
pub(crate) struct DirBuf {
    /// The directory offset these entries continue from: the cookie of the last entry the
    /// kernel received.
    pub(crate) from: u64,
    /// Whether every entry carries attributes (fetched by readdirplus).
    pub(crate) plus: bool,
    /// The entries, in order.
    pub(crate) entries: VecDeque<DirEntry>,
    /// The volume said there is nothing after these entries.
    pub(crate) eof: bool,
}

/// One open file or directory.
#[derive(Debug)]
pub(crate) struct Handle {
    /// The Cairn handle, passed to every fop on this open file.
    pub(crate) fd: Fd,
    /// The graph generation the file was opened on, which serves every fop on it.
    pub(crate) generation: Arc<Generation>,
    /// Directory streams only: read-ahead entries.
    pub(crate) dir: Mutex<Option<DirBuf>>,
}

/// `fh` → open handle.
#[derive(Debug, Default)]
pub(crate) struct HandleTable {
    map: Mutex<HashMap<u64, Arc<Handle>>>,
}

impl HandleTable {
    /// Registers `fd`, opened on `generation`; its id is the `fh` for the kernel.
    pub(crate) fn insert(&self, fd: Fd, generation: Arc<Generation>) -> u64 {
        let fh = fd.id();
        let handle = Arc::new(Handle {
            fd,
            generation,
            dir: Mutex::new(None),
        });
        lock(&self.map).insert(fh, handle);
        fh
    }

    /// The handle behind `fh`.
    pub(crate) fn get(&self, fh: u64) -> Option<Arc<Handle>> {
        lock(&self.map).get(&fh).cloned()
    }

    /// Removes and returns the handle behind `fh` (release).
    pub(crate) fn remove(&self, fh: u64) -> Option<Arc<Handle>> {
        lock(&self.map).remove(&fh)
    }

    /// Number of open handles.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

/// Locks a mutex, recovering the data if a holder panicked (every table stays consistent
/// between statements, so the data is still good).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Moves entries from the front of `entries` into a reply through `add`, which returns
/// true when the reply is full (the entry was *not* added). Stops at the first entry that
/// does not fit, leaving it and the rest in `entries`. Returns the offset cookie of the last
/// entry added, if any.
pub(crate) fn fill(
    entries: &mut VecDeque<DirEntry>,
    mut add: impl FnMut(&DirEntry) -> bool,
) -> Option<u64> {
    let mut last = None;
    while let Some(entry) = entries.front() {
        if add(entry) {
            break;
        }
        last = Some(entry.offset);
        entries.pop_front();
    }
    last
}

#[cfg(test)]
mod tests {
    use cairn_translators::{FileKind, Gfid};

    use super::*;

    fn entries(n: u64) -> VecDeque<DirEntry> {
        (1..=n)
            .map(|i| DirEntry {
                name: format!("f{i}"),
                offset: i * 10,
                gfid: Gfid::random(),
                kind: FileKind::File,
                iatt: None,
            })
            .collect()
    }

    #[test]
    fn fill_stops_at_the_first_entry_that_does_not_fit() {
        let mut e = entries(5);
        let mut taken = Vec::new();
        let last = fill(&mut e, |d| {
            if taken.len() == 3 {
                return true;
            }
            taken.push(d.name.clone());
            false
        });
        assert_eq!(taken, ["f1", "f2", "f3"]);
        assert_eq!(last, Some(30), "resume after the last entry actually added");
        assert_eq!(e.len(), 2, "entries that did not fit are kept");
        assert_eq!(e[0].name, "f4");
    }

    #[test]
    fn fill_with_a_full_reply_takes_nothing() {
        let mut e = entries(2);
        assert_eq!(fill(&mut e, |_| true), None);
        assert_eq!(e.len(), 2);
        let mut e = entries(2);
        assert_eq!(fill(&mut e, |_| false), Some(20));
        assert!(e.is_empty());
        assert_eq!(fill(&mut VecDeque::new(), |_| false), None);
    }

    #[test]
    fn handles_are_keyed_by_fd_id_and_keep_their_generation() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let slot =
            crate::generation::Slot::new(crate::generation::tests::graph(), rt.handle().clone());
        let t = HandleTable::default();
        let fd = Fd::new(Gfid::random(), libc::O_RDONLY);
        let fh = t.insert(fd.clone(), slot.current());
        assert_eq!(fh, fd.id());
        assert_eq!(t.get(fh).map(|h| h.fd.clone()), Some(fd.clone()));
        assert_eq!(t.get(fh).map(|h| h.generation.number()), Some(1));
        assert_eq!(t.len(), 1);
        assert!(t.remove(fh).is_some());
        assert!(t.get(fh).is_none());
        assert!(t.remove(fh).is_none());
    }
}
