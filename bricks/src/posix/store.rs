//! The synchronous side of `storage/posix`: resolving gfids and names to paths on the brick,
//! gfid xattrs and handles, attribute conversion, error mapping.
//!
//! Every operation runs on a blocking thread (see `super::run`). Paths never follow
//! symlinks: stat is `lstat`, xattrs are `l*xattr`, opens carry `O_NOFOLLOW`, and names are
//! single checked components, so no client can make the brick touch a file outside it.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cairn_translators::types::check_name;
use cairn_translators::{FileKind, FopError, FopResult, Gfid, Iatt, Loc, Timespec};

use super::data::Rewrites;
use crate::layout::{
    self, META_DIR, XATTR_GFID, dir_handle, dir_handle_target, file_handle, parse_dir_handle_target,
};

/// Directory links kept in memory before the cache is emptied and refilled from handles.
const DIR_CACHE_MAX: usize = 200_000;

/// The brick directory and what posix remembers about it.
pub struct Store {
    /// The brick root.
    pub root: PathBuf,
    /// Directory gfid → (parent gfid, name), mirroring the `.cairn/dirs` symlinks.
    dirs: Mutex<HashMap<Gfid, (Gfid, String)>>,
    /// Serialise read-modify-write of counters (xattrop) per object: one of these by the
    /// object's gfid, so changes of different objects never wait for each other.
    xattrop_locks: Vec<Mutex<()>>,
    /// Files being rewritten in place (see [`Rewrites`]).
    pub(crate) rewrites: Arc<Rewrites>,
    /// File handle directories (`.cairn/handles/XX/YY`) known to exist, one bit each.
    file_fans: Box<[AtomicU64]>,
}

/// Stripes of the xattrop lock.
const XATTROP_STRIPES: usize = 64;

/// An `io::Error` as a fop error, with the path (relative to the brick) for context.
pub fn io_error(e: &io::Error, what: &str, path: &Path) -> FopError {
    FopError::io(e, format!("{what} {}", path.display()))
}

/// A rustix errno as a fop error, with context.
pub fn sys_error(e: rustix::io::Errno, what: &str, path: &Path) -> FopError {
    FopError::errno(e.raw_os_error(), format!("{what} {}", path.display()))
}

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        sec,
        nsec: u32::try_from(nsec).unwrap_or(0),
    }
}

/// Attributes of an object from its `lstat` and gfid.
pub fn iatt(meta: &Metadata, gfid: Gfid) -> Iatt {
    let kind = FileKind::from_mode(meta.mode()).unwrap_or(FileKind::File);
    let mut nlink = u32::try_from(meta.nlink()).unwrap_or(u32::MAX);
    // Non-directories carry one extra link: their handle.
    if kind != FileKind::Dir && nlink > 1 {
        nlink -= 1;
    }
    Iatt {
        gfid,
        kind,
        perm: meta.mode() & 0o7777,
        nlink,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev(),
        size: meta.size(),
        blocks: meta.blocks(),
        blksize: u32::try_from(meta.blksize()).unwrap_or(4096),
        atime: ts(meta.atime(), meta.atime_nsec()),
        mtime: ts(meta.mtime(), meta.mtime_nsec()),
        ctime: ts(meta.ctime(), meta.ctime_nsec()),
    }
}

/// `lstat`, mapping errors.
pub fn lstat(path: &Path) -> FopResult<Metadata> {
    fs::symlink_metadata(path).map_err(|e| io_error(&e, "stat", path))
}

/// Reads an object's gfid xattr.
pub fn read_gfid(path: &Path) -> FopResult<Option<Gfid>> {
    let mut buf = [0u8; 16];
    match rustix::fs::lgetxattr(path, XATTR_GFID, &mut buf) {
        Ok(16) => Ok(Some(Gfid(buf))),
        Ok(_) | Err(rustix::io::Errno::RANGE) => Err(FopError::eio(format!(
            "{}: malformed gfid xattr",
            path.display()
        ))),
        Err(rustix::io::Errno::NODATA) => Ok(None),
        Err(e) => Err(sys_error(e, "read gfid of", path)),
    }
}

/// Reads a gfid from an open file.
pub fn read_gfid_fd(file: &fs::File, path_for_errors: &Path) -> FopResult<Option<Gfid>> {
    let mut buf = [0u8; 16];
    match rustix::fs::fgetxattr(file, XATTR_GFID, &mut buf) {
        Ok(16) => Ok(Some(Gfid(buf))),
        Ok(_) | Err(rustix::io::Errno::RANGE) => Err(FopError::eio(format!(
            "{}: malformed gfid xattr",
            path_for_errors.display()
        ))),
        Err(rustix::io::Errno::NODATA) => Ok(None),
        Err(e) => Err(sys_error(e, "read gfid of", path_for_errors)),
    }
}

impl Store {
    /// A store over an already prepared brick directory.
    pub fn new(root: PathBuf) -> Store {
        Store {
            root,
            dirs: Mutex::new(HashMap::new()),
            xattrop_locks: (0..XATTROP_STRIPES).map(|_| Mutex::new(())).collect(),
            rewrites: Arc::default(),
            file_fans: (0..1024).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The lock under which the counters of `gfid` are read, changed and written back.
    pub fn xattrop_lock(&self, gfid: Gfid) -> FopResult<std::sync::MutexGuard<'_, ()>> {
        let stripe = u64::from_le_bytes([
            gfid.0[8], gfid.0[9], gfid.0[10], gfid.0[11], gfid.0[12], gfid.0[13], gfid.0[14],
            gfid.0[15],
        ]) as usize
            % XATTROP_STRIPES;
        self.xattrop_locks
            .get(stripe)
            .ok_or_else(|| FopError::eio("no xattrop lock stripe"))?
            .lock()
            .map_err(|_| FopError::eio("xattrop lock poisoned"))
    }

    /// Remembers where a directory is. True when it was not remembered yet (or elsewhere).
    pub fn remember_dir(&self, gfid: Gfid, parent: Gfid, name: &str) -> bool {
        let Ok(mut d) = self.dirs.lock() else {
            return false;
        };
        if d.get(&gfid).is_some_and(|(p, n)| *p == parent && n == name) {
            return false;
        }
        if d.len() >= DIR_CACHE_MAX {
            d.clear();
        }
        d.insert(gfid, (parent, name.to_string()));
        true
    }

    /// Forgets a directory.
    pub fn forget_dir(&self, gfid: Gfid) {
        if let Ok(mut d) = self.dirs.lock() {
            d.remove(&gfid);
        }
    }

    /// Parent and name of a directory, from the cache or its handle.
    fn dir_link(&self, gfid: Gfid) -> FopResult<(Gfid, String)> {
        if let Some(link) = self.dirs.lock().ok().and_then(|d| d.get(&gfid).cloned()) {
            return Ok(link);
        }
        let handle = dir_handle(&self.root, gfid);
        let target = fs::read_link(&handle).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                FopError::new(
                    libc::ESTALE,
                    format!("no directory with gfid {gfid} on this brick"),
                )
            } else {
                io_error(&e, "read handle", &handle)
            }
        })?;
        let (parent, name) = parse_dir_handle_target(target.as_os_str()).ok_or_else(|| {
            FopError::eio(format!("{}: malformed directory handle", handle.display()))
        })?;
        self.remember_dir(gfid, parent, &name);
        Ok((parent, name))
    }

    /// Path of a directory by gfid, walking parent links up to the root.
    pub fn dir_path(&self, gfid: Gfid) -> FopResult<PathBuf> {
        let mut names = Vec::new();
        let mut cur = gfid;
        while !cur.is_root() {
            let (parent, name) = self.dir_link(cur)?;
            names.push(name);
            cur = parent;
            if names.len() > 4096 {
                return Err(FopError::new(
                    libc::ELOOP,
                    format!("directory handle chain of {gfid} does not reach the root"),
                ));
            }
        }
        let mut path = self.root.clone();
        for name in names.iter().rev() {
            path.push(name);
        }
        Ok(path)
    }

    /// Path of `name` in directory `parent`. `.cairn` at the root is reserved.
    pub fn entry_path(&self, parent: Gfid, name: &str) -> FopResult<PathBuf> {
        check_name(name)?;
        if parent.is_root() && name == META_DIR {
            return Err(FopError::new(
                libc::EPERM,
                format!("'{META_DIR}' is reserved for Cairn's metadata"),
            ));
        }
        Ok(self.dir_path(parent)?.join(name))
    }

    /// Path of any object by gfid: the handle of a non-directory, the real path of a
    /// directory.
    pub fn inode_path(&self, gfid: Gfid) -> FopResult<PathBuf> {
        self.locate(gfid).map(|(path, _)| path)
    }

    /// [`Self::inode_path`], with the `lstat` of a file's handle when finding it took one
    /// (so a caller that needs the metadata does not read it twice).
    pub(super) fn locate(&self, gfid: Gfid) -> FopResult<(PathBuf, Option<Metadata>)> {
        if gfid.is_root() {
            return Ok((self.root.clone(), None));
        }
        if gfid.is_null() {
            return Err(FopError::invalid("operation on the null gfid"));
        }
        // A directory this brick knows needs no look at the file handles (which it lacks).
        if self.dirs.lock().is_ok_and(|d| d.contains_key(&gfid)) {
            return Ok((self.dir_path(gfid)?, None));
        }
        let handle = file_handle(&self.root, gfid);
        match fs::symlink_metadata(&handle) {
            Ok(meta) => Ok((handle, Some(meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((self.dir_path(gfid)?, None)),
            Err(e) => Err(io_error(&e, "stat handle", &handle)),
        }
    }

    /// Path of a location: by parent and name when given, else by gfid.
    pub fn loc_path(&self, loc: &Loc) -> FopResult<PathBuf> {
        match (loc.parent, loc.name.as_deref(), loc.gfid) {
            (Some(p), Some(n), _) => self.entry_path(p, n),
            (_, _, Some(g)) => self.inode_path(g),
            _ => Err(FopError::invalid(format!("incomplete location {loc}"))),
        }
    }

    /// Creates the handle of a new object. `parent`/`name` are used for directories.
    pub fn make_handle(
        &self,
        path: &Path,
        gfid: Gfid,
        is_dir: bool,
        parent: Gfid,
        name: &str,
    ) -> FopResult<()> {
        let handle = if is_dir {
            dir_handle(&self.root, gfid)
        } else {
            file_handle(&self.root, gfid)
        };
        let link = || {
            if is_dir {
                std::os::unix::fs::symlink(dir_handle_target(parent, name), &handle)
            } else {
                fs::hard_link(path, &handle)
            }
        };
        // The handle's directory is one of 65,536. A file's is made (or found) once per
        // process and then remembered, so a create costs only the link; a directory's is
        // made when the link says it is missing. (`create_dir_all` before every link cost a
        // failed `mkdir` and a `stat` per create.)
        let fan = handle.parent();
        let bit = (usize::from(gfid.0[0]) << 8) | usize::from(gfid.0[1]);
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        let known = || {
            self.file_fans
                .get(word)
                .is_some_and(|w| w.load(Ordering::Relaxed) & mask != 0)
        };
        let remember = || {
            if let Some(w) = self.file_fans.get(word) {
                w.fetch_or(mask, Ordering::Relaxed);
            }
        };
        if !is_dir
            && !known()
            && let Some(fan) = fan
        {
            match fs::create_dir(fan) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) => fs::create_dir_all(fan)
                    .map_err(|e| io_error(&e, "create handle directory", fan))?,
            }
            remember();
        }
        let mut result = link();
        if let Err(e) = &result
            && e.kind() == io::ErrorKind::NotFound
            && let Some(fan) = fan
        {
            fs::create_dir_all(fan).map_err(|e| io_error(&e, "create handle directory", fan))?;
            if !is_dir {
                remember();
            }
            result = link();
        }
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A leftover from a crash between creating an object and its handle, or a
                // re-created directory: replace it.
                fs::remove_file(&handle).map_err(|e| io_error(&e, "replace handle", &handle))?;
                if is_dir {
                    std::os::unix::fs::symlink(dir_handle_target(parent, name), &handle)
                } else {
                    fs::hard_link(path, &handle)
                }
                .map_err(|e| io_error(&e, "create handle", &handle))?;
            }
            Err(e) => return Err(io_error(&e, "create handle", &handle)),
        }
        if is_dir {
            self.remember_dir(gfid, parent, name);
        }
        Ok(())
    }

    /// Points a directory's handle at its new parent and name (after a rename).
    pub fn move_dir_handle(&self, gfid: Gfid, parent: Gfid, name: &str) -> FopResult<()> {
        let handle = dir_handle(&self.root, gfid);
        let tmp = handle.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(dir_handle_target(parent, name), &tmp)
            .map_err(|e| io_error(&e, "create handle", &tmp))?;
        fs::rename(&tmp, &handle).map_err(|e| io_error(&e, "replace handle", &handle))?;
        self.remember_dir(gfid, parent, name);
        Ok(())
    }

    /// Makes the missing handle of `path`, which has gfid `gfid`. A handle already there is
    /// left as it is (it may be another object's that carries a copied gfid).
    fn restore_handle(&self, path: &Path, gfid: Gfid, is_dir: bool, parent: Gfid, name: &str) {
        let handle = if is_dir {
            dir_handle(&self.root, gfid)
        } else {
            file_handle(&self.root, gfid)
        };
        if fs::symlink_metadata(&handle).is_ok() {
            return;
        }
        if let Some(fan) = handle.parent()
            && let Err(e) = fs::create_dir_all(fan)
        {
            tracing::warn!(handle = %handle.display(), error = %e, "cannot make a handle directory");
            return;
        }
        let made = if is_dir {
            std::os::unix::fs::symlink(dir_handle_target(parent, name), &handle)
        } else {
            fs::hard_link(path, &handle)
        };
        match made {
            Ok(()) => {
                tracing::warn!(path = %path.display(), %gfid, "restored the missing handle of an object (left by an interrupted create)");
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), %gfid, error = %e, "cannot restore the handle of an object");
            }
        }
    }

    /// Removes the handle of an object whose last name is gone.
    pub fn drop_handle(&self, gfid: Gfid, is_dir: bool) {
        let handle = if is_dir {
            self.forget_dir(gfid);
            dir_handle(&self.root, gfid)
        } else {
            file_handle(&self.root, gfid)
        };
        if let Err(e) = fs::remove_file(&handle)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(handle = %handle.display(), error = %e, "could not remove handle");
        }
    }

    /// After a name of a non-directory went away: drops the handle when it is the only link
    /// left.
    pub fn drop_handle_if_last(&self, gfid: Gfid) {
        let handle = file_handle(&self.root, gfid);
        if let Ok(meta) = fs::symlink_metadata(&handle)
            && meta.nlink() <= 1
        {
            self.drop_handle(gfid, false);
        }
    }

    /// Sets a new object's gfid xattr.
    pub fn set_gfid(&self, path: &Path, gfid: Gfid) -> FopResult<()> {
        rustix::fs::lsetxattr(path, XATTR_GFID, &gfid.0, rustix::fs::XattrFlags::empty())
            .map_err(|e| sys_error(e, "set gfid of", path))
    }

    /// The gfid of the object at `path`, giving it one (and a handle) when it has none: files
    /// placed on the brick by hand, or left half-created by a crash, become usable. `meta`
    /// (the object's `lstat`, when the caller has it) also finds an object that has its gfid
    /// but lost the race to its handle (a brick killed between the two steps of a create):
    /// its handle is made then, so the object can be reached by gfid again.
    pub fn ensure_gfid(
        &self,
        path: &Path,
        meta: Option<&Metadata>,
        is_dir: bool,
        parent: Gfid,
        name: &str,
        want: Option<Gfid>,
    ) -> FopResult<Gfid> {
        if let Some(g) = read_gfid(path)? {
            if is_dir {
                // Checked once per directory the cache learns, not on every lookup.
                if self.remember_dir(g, parent, name) && g != Gfid::ROOT {
                    self.restore_handle(path, g, true, parent, name);
                }
            } else if meta.is_some_and(|m| m.nlink() == 1) {
                // A named file with a handle has two links; one means the handle is missing.
                self.restore_handle(path, g, false, parent, name);
            }
            return Ok(g);
        }
        let gfid = want.unwrap_or_else(Gfid::random);
        self.set_gfid(path, gfid)?;
        self.make_handle(path, gfid, is_dir, parent, name)?;
        tracing::info!(path = %path.display(), %gfid, "assigned a gfid to an object without one");
        Ok(gfid)
    }

    /// `lstat` + gfid of a path known by gfid.
    pub fn stat_gfid(&self, gfid: Gfid) -> FopResult<(PathBuf, Iatt)> {
        let (path, meta) = self.locate(gfid)?;
        let meta = match meta {
            Some(meta) => meta,
            None => lstat(&path)?,
        };
        Ok((path, iatt(&meta, gfid)))
    }

    /// `lstat` + gfid of a location.
    pub fn stat_loc(&self, loc: &Loc) -> FopResult<(PathBuf, Iatt)> {
        match (loc.parent, loc.name.as_deref()) {
            (Some(parent), Some(name)) => {
                let path = self.entry_path(parent, name)?;
                let meta = lstat(&path)?;
                let gfid =
                    self.ensure_gfid(&path, Some(&meta), meta.is_dir(), parent, name, None)?;
                Ok((path, iatt(&meta, gfid)))
            }
            _ => self.stat_gfid(loc.require_gfid()?),
        }
    }

    /// The parent directory's path and metadata, for ownership inheritance.
    pub fn parent_meta(&self, parent: Gfid) -> FopResult<Metadata> {
        let p = self.dir_path(parent)?;
        lstat(&p)
    }
}

/// The group a new object gets: the parent's when the parent is set-group-id, else the
/// caller's.
pub fn new_owner(parent: &Metadata, uid: u32, gid: u32) -> (u32, u32) {
    if parent.mode() & libc::S_ISGID != 0 {
        (uid, parent.gid())
    } else {
        (uid, gid)
    }
}

/// Gives a new object its owner, keeping set-id bits that `chown` clears.
pub fn chown_new(path: &Path, owner: (u32, u32), mode: u32) -> FopResult<()> {
    std::os::unix::fs::lchown(path, Some(owner.0), Some(owner.1))
        .map_err(|e| io_error(&e, "chown", path))?;
    if mode & 0o6000 != 0 {
        rustix::fs::chmodat(
            rustix::fs::CWD,
            path,
            rustix::fs::Mode::from_raw_mode(mode & 0o7777),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(|e| sys_error(e, "chmod", path))?;
    }
    Ok(())
}

/// Re-exported for the fop modules.
pub use layout::XATTR_BRICK;
