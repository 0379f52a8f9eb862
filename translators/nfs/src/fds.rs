//! The open-file cache: NFS has no open or close, so the gateway keeps the descriptors it
//! opened for READ and WRITE (and those CREATE made) and reuses them.
//!
//! A descriptor is released when it has been idle for [`FdCache::idle`], when the cache
//! holds more than its bound (the least recently used first), and when the gateway stops.
//! A descriptor still in use by a request is never released under it: each request holds
//! an `Arc` of it, and only descriptors nobody holds are released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use cairn_translators::{DirEntry, Fd, FopResult, Gfid, Loc, Xdata, XlatorRef};

struct Slot {
    fd: Arc<Fd>,
    write: bool,
    dir: bool,
    used: Instant,
    /// Directories: entries read from the volume but not sent (the reply was full), and the
    /// cookie they follow.
    stash: Option<(u64, VecDeque<DirEntry>)>,
}

impl Slot {
    /// The descriptor, to be released once no request holds it.
    fn retire(self) -> Retired {
        Retired {
            fd: self.fd,
            dir: self.dir,
        }
    }
}

/// A descriptor to release, and whether it is a directory's.
struct Retired {
    fd: Arc<Fd>,
    dir: bool,
}

#[derive(Default)]
struct State {
    open: HashMap<Gfid, Slot>,
    /// Descriptors replaced, evicted or idle, released once no request holds them.
    retired: Vec<Retired>,
}

/// Open descriptors by gfid.
pub(crate) struct FdCache {
    top: XlatorRef,
    state: Mutex<State>,
    max: usize,
    idle: Duration,
}

impl FdCache {
    /// A cache over `top` holding at most `max` descriptors, each released after `idle`.
    pub(crate) fn new(top: XlatorRef, max: usize, idle: Duration) -> FdCache {
        FdCache {
            top,
            state: Mutex::new(State::default()),
            max: max.max(1),
            idle,
        }
    }

    /// How long a descriptor may stay unused before it is released.
    pub(crate) fn idle(&self) -> Duration {
        self.idle
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map inconsistent (every change
        // is a single insert or remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A descriptor of `gfid` open for reading (and writing, with `write`), opening one if
    /// the cache has none suitable.
    pub(crate) async fn get(&self, gfid: Gfid, write: bool) -> FopResult<Arc<Fd>> {
        if let Some(fd) = self.cached(gfid, write) {
            return Ok(fd);
        }
        let flags = if write { libc::O_RDWR } else { libc::O_RDONLY };
        let fd = Fd::new(gfid, flags);
        self.top
            .open(
                &crate::fs::cx(),
                Loc::inode(gfid),
                flags,
                fd.clone(),
                Xdata::new(),
            )
            .await?;
        Ok(self.insert_slot(gfid, fd, write, false))
    }

    /// A descriptor of directory `gfid`, opening one if the cache has none.
    pub(crate) async fn get_dir(&self, gfid: Gfid) -> FopResult<Arc<Fd>> {
        if let Some(fd) = self.cached(gfid, false) {
            return Ok(fd);
        }
        let fd = Fd::new(gfid, libc::O_RDONLY | libc::O_DIRECTORY);
        self.top
            .opendir(&crate::fs::cx(), Loc::inode(gfid), fd.clone(), Xdata::new())
            .await?;
        Ok(self.insert_slot(gfid, fd, false, true))
    }

    /// Keeps entries of directory `gfid` that were read after cookie `from` but not sent.
    pub(crate) fn stash(&self, gfid: Gfid, from: u64, entries: VecDeque<DirEntry>) {
        if let Some(s) = self.lock().open.get_mut(&gfid).filter(|s| s.dir) {
            s.stash = Some((from, entries));
        }
    }

    /// The entries kept for directory `gfid` if they follow cookie `from`.
    pub(crate) fn unstash(&self, gfid: Gfid, from: u64) -> Option<VecDeque<DirEntry>> {
        let mut st = self.lock();
        let s = st.open.get_mut(&gfid)?;
        match s.stash.take() {
            Some((f, e)) if f == from => Some(e),
            _ => None,
        }
    }

    fn cached(&self, gfid: Gfid, write: bool) -> Option<Arc<Fd>> {
        let mut st = self.lock();
        let slot = st.open.get_mut(&gfid)?;
        if write && !slot.write {
            return None;
        }
        slot.used = Instant::now();
        Some(Arc::clone(&slot.fd))
    }

    /// Adds a descriptor just opened (or created) and returns the one to use: a suitable
    /// descriptor another request opened meanwhile wins, and ours is released.
    pub(crate) fn insert(&self, gfid: Gfid, fd: Fd, write: bool) -> Arc<Fd> {
        self.insert_slot(gfid, fd, write, false)
    }

    fn insert_slot(&self, gfid: Gfid, fd: Fd, write: bool, dir: bool) -> Arc<Fd> {
        let fd = Arc::new(fd);
        let mut guard = self.lock();
        let st = &mut *guard;
        if let Some(s) = st.open.get_mut(&gfid)
            && (s.write || !write)
        {
            // Another request opened a suitable one meanwhile: use it, release ours.
            s.used = Instant::now();
            st.retired.push(Retired { fd, dir });
            return Arc::clone(&s.fd);
        }
        let slot = Slot {
            fd: Arc::clone(&fd),
            write,
            dir,
            used: Instant::now(),
            stash: None,
        };
        if let Some(old) = st.open.insert(gfid, slot) {
            st.retired.push(old.retire());
        }
        while st.open.len() > self.max {
            let oldest = st
                .open
                .iter()
                .filter(|(g, _)| **g != gfid)
                .min_by_key(|(_, s)| s.used)
                .map(|(g, _)| *g);
            let Some(s) = oldest.and_then(|g| st.open.remove(&g)) else {
                break;
            };
            st.retired.push(s.retire());
        }
        fd
    }

    /// The cached descriptor of `gfid`, if any (for COMMIT, which need not open one).
    pub(crate) fn peek(&self, gfid: Gfid) -> Option<Arc<Fd>> {
        self.lock().open.get(&gfid).map(|s| Arc::clone(&s.fd))
    }

    /// Number of descriptors open (cached and retired).
    pub(crate) fn len(&self) -> usize {
        let st = self.lock();
        st.open.len() + st.retired.len()
    }

    /// Releases the descriptors idle for longer than [`FdCache::idle`] (all of them with
    /// `all`) that no request holds.
    pub(crate) async fn sweep(&self, all: bool) {
        let now = Instant::now();
        let done: Vec<Retired> = {
            let mut st = self.lock();
            let idle: Vec<Gfid> = st
                .open
                .iter()
                .filter(|(_, s)| all || now.duration_since(s.used) >= self.idle)
                .map(|(g, _)| *g)
                .collect();
            for g in idle {
                if let Some(s) = st.open.remove(&g) {
                    st.retired.push(s.retire());
                }
            }
            let (free, held): (Vec<_>, Vec<_>) = std::mem::take(&mut st.retired)
                .into_iter()
                .partition(|r| Arc::strong_count(&r.fd) == 1);
            st.retired = held;
            free
        };
        for r in done {
            let fd = Arc::unwrap_or_clone(r.fd);
            let result = if r.dir {
                self.top.releasedir(&crate::fs::cx(), fd).await
            } else {
                self.top.release(&crate::fs::cx(), fd).await
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "releasing an idle NFS descriptor");
            }
        }
    }
}
