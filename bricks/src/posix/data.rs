//! Data operations on open files: open, read, write, fsync, fallocate, lseek.
//!
//! An open file lives in the fd's context under [`CTX`]; release drops it (and closes it).
//! Reads and writes are `pread`/`pwrite` — never mmap, since another process may truncate.
//! `fsync` of a file this fd created also syncs the new name and its handle, so a file
//! whose fsync returned survives a crash with its name.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cairn_translators::{Fd, FopError, FopResult, Gfid, Iatt, Loc, Payload, Whence};
use rustix::fs::{Mode, OFlags};

use super::store::{Store, iatt, io_error, sys_error};

/// Key of posix's context on an fd.
pub const CTX: &str = "storage/posix";

/// A file open on the brick.
pub struct OpenFile {
    /// The open file.
    pub file: File,
    /// Where it was opened (for messages).
    pub path: PathBuf,
    /// Directories to fsync at the first fsync (the new name and its handle).
    dirs_to_sync: Mutex<Vec<PathBuf>>,
    /// Held while this fd rewrites the file in place ([`cairn_translators::types::REWRITE_KEY`]).
    rewrite: Option<RewriteGuard>,
}

impl OpenFile {
    /// Wraps an open file.
    pub fn new(file: File, path: PathBuf, dirs_to_sync: Vec<PathBuf>) -> OpenFile {
        OpenFile {
            file,
            path,
            dirs_to_sync: Mutex::new(dirs_to_sync),
            rewrite: None,
        }
    }

    /// With a guard, this open file rewrites its file in place: no content of it is served
    /// until the rewrite ends finished (see [`Rewrites`]).
    pub fn rewriting(mut self, guard: Option<RewriteGuard>) -> OpenFile {
        self.rewrite = guard;
        self
    }
}

/// Files being rewritten in place on this brick, and a way for a read to learn that a
/// rewrite overlapped it.
///
/// Heal rebuilds a copy by emptying it, setting its size and writing the contents back. A
/// lookup that judged the copy good before heal blamed it (the source's counters were read
/// first) may then read it: it would get zeros, and a size and times check does not catch
/// that, since ext4 timestamps move on at clock ticks, not at every write. So a content read
/// runs inside [`Rewrites::steady`]: it is refused while the file is being rewritten, and its
/// result is dropped when a rewrite of the file began meanwhile (an epoch, striped by gfid,
/// moves on at every start).
///
/// A rewrite ends well when heal says so ([`RewriteGuard::finish`], a flush carrying
/// [`cairn_translators::types::REWRITE_DONE_KEY`]) before it closes the file. One that ends
/// otherwise (a failed write on a full disk, a healer killed) leaves a copy that may hold
/// zeros: its contents stay refused until a later rewrite of it finishes.
pub struct Rewrites {
    /// Epochs, by the last byte of a gfid.
    epochs: [AtomicU64; 256],
    state: Mutex<RewriteState>,
}

#[derive(Default)]
struct RewriteState {
    /// Rewrites under way, by file.
    open: HashMap<Gfid, usize>,
    /// Files whose last rewrite did not finish.
    unfinished: HashSet<Gfid>,
}

impl Default for Rewrites {
    fn default() -> Rewrites {
        Rewrites {
            epochs: std::array::from_fn(|_| AtomicU64::new(0)),
            state: Mutex::new(RewriteState::default()),
        }
    }
}

/// A rewrite in progress; it ends when this is dropped (when its fd is released, or its
/// connection lost), well only if [`RewriteGuard::finish`] was called first.
pub struct RewriteGuard {
    rewrites: Arc<Rewrites>,
    gfid: Gfid,
    finished: AtomicBool,
}

impl RewriteGuard {
    /// The copy is whole again: it may serve its contents once this rewrite ends.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }
}

impl Drop for RewriteGuard {
    fn drop(&mut self) {
        let mut st = self.rewrites.lock();
        if let Some(n) = st.open.get_mut(&self.gfid) {
            *n -= 1;
            if *n == 0 {
                st.open.remove(&self.gfid);
            }
        }
        if self.finished.load(Ordering::SeqCst) {
            st.unfinished.remove(&self.gfid);
        } else {
            st.unfinished.insert(self.gfid);
        }
    }
}

impl Rewrites {
    /// Starts a rewrite of `gfid`, before the first byte of it changes.
    pub fn begin(self: &Arc<Self>, gfid: Gfid) -> RewriteGuard {
        *self.lock().open.entry(gfid).or_insert(0) += 1;
        self.epoch(gfid).fetch_add(1, Ordering::SeqCst);
        RewriteGuard {
            rewrites: Arc::clone(self),
            gfid,
            finished: AtomicBool::new(false),
        }
    }

    /// Runs `read`, a read of `gfid`'s contents, and gives its result only if the copy was
    /// whole when it started (no rewrite under way, none left unfinished) and no rewrite of
    /// it began before it ended.
    pub fn steady<T>(&self, gfid: Gfid, read: impl FnOnce() -> T) -> Option<T> {
        let before = self.epoch(gfid).load(Ordering::SeqCst);
        if self.busy(gfid) {
            return None;
        }
        let r = read();
        (!self.busy(gfid) && self.epoch(gfid).load(Ordering::SeqCst) == before).then_some(r)
    }

    fn busy(&self, gfid: Gfid) -> bool {
        let st = self.lock();
        st.open.contains_key(&gfid) || st.unfinished.contains(&gfid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RewriteState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn epoch(&self, gfid: Gfid) -> &AtomicU64 {
        &self.epochs[usize::from(gfid.0[15])]
    }
}

/// The open flags posix passes to `open(2)`: the application's, minus what would make a
/// brick misbehave (O_DIRECT needs aligned buffers; creation is create's job), plus
/// O_NOFOLLOW and O_CLOEXEC.
pub fn open_flags(flags: i32) -> OFlags {
    let keep = flags
        & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_DIRECT | libc::O_DIRECTORY);
    OFlags::from_bits_retain(keep as u32) | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The open file of an fd, or `EBADF`.
pub fn open_file(fd: &Fd) -> FopResult<Arc<OpenFile>> {
    fd.ctx::<OpenFile>(CTX)
        .ok_or_else(|| FopError::new(libc::EBADF, format!("{fd:?} is not open on this brick")))
}

fn fstat(of: &OpenFile, gfid: cairn_translators::Gfid) -> FopResult<Iatt> {
    let meta = of
        .file
        .metadata()
        .map_err(|e| io_error(&e, "stat", &of.path))?;
    Ok(iatt(&meta, gfid))
}

impl Store {
    pub(crate) fn open(&self, loc: &Loc, flags: i32) -> FopResult<OpenFile> {
        let path = self.loc_path(loc)?;
        let fd = rustix::fs::open(&path, open_flags(flags), Mode::empty()).map_err(|e| {
            if e == rustix::io::Errno::LOOP {
                FopError::new(libc::ELOOP, format!("{} is a symlink", path.display()))
            } else {
                sys_error(e, "open", &path)
            }
        })?;
        Ok(OpenFile::new(File::from(fd), path, Vec::new()))
    }

    pub(crate) fn read(&self, fd: &Fd, offset: u64, size: u32) -> FopResult<Payload> {
        let of = open_file(fd)?;
        let read = || pread_new(&of.file, offset, size as usize);
        let buf = if of.rewrite.is_some() {
            read()
        } else {
            self.rewrites.steady(fd.gfid(), read).ok_or_else(|| {
                FopError::eio(format!(
                    "{} is being rebuilt by heal; its contents are read from another copy",
                    of.path.display()
                ))
            })?
        }
        .map_err(|e| sys_error(e, "read", &of.path))?;
        Ok(Payload::new(buf))
    }

    /// Flush: nothing to write back (writes go straight to the file); a flush that carries
    /// [`cairn_translators::types::REWRITE_DONE_KEY`] says the fd's rewrite is finished.
    pub(crate) fn flush(&self, fd: &Fd, done: bool) -> FopResult<()> {
        let of = open_file(fd)?;
        if done && let Some(g) = &of.rewrite {
            g.finish();
        }
        Ok(())
    }

    pub(crate) fn write(&self, fd: &Fd, offset: u64, data: &Payload) -> FopResult<Iatt> {
        let of = open_file(fd)?;
        of.file
            .write_all_at(data.bytes(), offset)
            .map_err(|e| io_error(&e, "write", &of.path))?;
        fstat(&of, fd.gfid())
    }

    pub(crate) fn fsync(&self, fd: &Fd, datasync: bool) -> FopResult<()> {
        let of = open_file(fd)?;
        if datasync {
            of.file.sync_data()
        } else {
            of.file.sync_all()
        }
        .map_err(|e| io_error(&e, "fsync", &of.path))?;
        let dirs: Vec<PathBuf> = of
            .dirs_to_sync
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default();
        for dir in dirs {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    pub(crate) fn fallocate(&self, fd: &Fd, mode: i32, offset: u64, len: u64) -> FopResult<()> {
        let of = open_file(fd)?;
        let flags = rustix::fs::FallocateFlags::from_bits(mode as u32)
            .ok_or_else(|| FopError::new(libc::EOPNOTSUPP, format!("fallocate mode {mode:#x}")))?;
        rustix::fs::fallocate(&of.file, flags, offset, len)
            .map_err(|e| sys_error(e, "fallocate", &of.path))
    }

    pub(crate) fn lseek(&self, fd: &Fd, offset: u64, whence: Whence) -> FopResult<u64> {
        let of = open_file(fd)?;
        let pos = match whence {
            Whence::Data => rustix::fs::SeekFrom::Data(offset),
            Whence::Hole => rustix::fs::SeekFrom::Hole(offset),
        };
        rustix::fs::seek(&of.file, pos).map_err(|e| sys_error(e, "lseek", &of.path))
    }
}

/// `fsync` of a directory.
pub fn sync_dir(dir: &Path) -> FopResult<()> {
    let f = File::open(dir).map_err(|e| io_error(&e, "open directory", dir))?;
    f.sync_all()
        .map_err(|e| io_error(&e, "fsync directory", dir))
}

/// Reads up to `len` bytes of `file` at `offset` into a new buffer that is not zeroed
/// first (the bytes read are all it holds); shorter only at the end of the file.
pub(crate) fn pread_new(
    file: &File,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, rustix::io::Errno> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}
