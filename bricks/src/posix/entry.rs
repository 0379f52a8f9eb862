//! Entry operations: lookup and everything that creates, removes or renames a name.
//!
//! A new object is created at its path, then given its gfid (chosen by the client, so every
//! replica agrees), its owner, and its handle. If any step after the first fails, the
//! object is removed again: a brick never keeps a half-made entry that clients can see.
//!
//! Two xdata keys serve `cluster/distribute` (see [`cairn_translators::types`]):
//! - [`SETXATTR_ON_CREATE`] keys on mkdir, mknod, create and symlink name xattrs (under
//!   `trusted.cairn.dht.` only) that the new object gets before the reply;
//! - [`LAYOUT_GEN_KEY`] on every fop that makes or removes a name (mkdir, mknod, create,
//!   symlink, link, rename, unlink) carries the layout generation the caller placed or found
//!   the name by (rename also the old parent's, under [`LAYOUT_GEN_SRC_KEY`]); when the
//!   parent directory's stored layout is newer, the fop fails with ESTALE before changing
//!   anything.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use cairn_translators::performance::quick_read;
use cairn_translators::types::{
    CREATED_KEY, LAYOUT_GEN_KEY, LAYOUT_GEN_SRC_KEY, SETXATTR_ON_CREATE, lookup_prefixes,
};
use cairn_translators::{Cx, Entry, FileKind, FopError, FopResult, Gfid, Iatt, Loc, Xdata};
use rustix::fs::{Mode, OFlags};

use super::data::OpenFile;
use super::store::{
    Store, chown_new, iatt, io_error, lstat, new_owner, read_gfid, read_gfid_fd, sys_error,
};
use crate::layout::XATTR_GFID;

/// Distribute's layout xattr on directories: `[1][flags][generation u32 BE][start u32 BE]
/// [end u32 BE]` (14 bytes). Posix reads only the version and the generation.
pub const XATTR_DHT_LAYOUT: &str = "trusted.cairn.dht.layout";

/// The only xattr names a [`SETXATTR_ON_CREATE`] key may set start with this.
const CREATE_XATTR_NAMESPACE: &str = "trusted.cairn.dht.";

/// The xattrs `xdata` asks a new object to get ([`SETXATTR_ON_CREATE`] keys), checked before
/// anything is created: a name outside [`CREATE_XATTR_NAMESPACE`] is EINVAL.
fn create_xattrs(xdata: &Xdata) -> FopResult<Vec<(&str, &[u8])>> {
    let mut out = Vec::new();
    for (key, value) in xdata.iter() {
        let Some(name) = key.strip_prefix(SETXATTR_ON_CREATE) else {
            continue;
        };
        match name.strip_prefix(CREATE_XATTR_NAMESPACE) {
            Some(rest) if !rest.is_empty() && !name.contains('\0') => {
                out.push((name, value.as_ref()));
            }
            _ => {
                return Err(FopError::invalid(format!(
                    "xdata key {key:?}: only xattrs under {CREATE_XATTR_NAMESPACE:?} can be \
                     set when an object is created"
                )));
            }
        }
    }
    Ok(out)
}

/// The layout generation `xdata` carries under `key` ([`LAYOUT_GEN_KEY`] or
/// [`LAYOUT_GEN_SRC_KEY`]), if any.
fn expected_layout_gen(xdata: &Xdata, key: &str) -> FopResult<Option<u32>> {
    let Some(raw) = xdata.get(key) else {
        return Ok(None);
    };
    let raw = <[u8; 4]>::try_from(raw).map_err(|_| {
        FopError::invalid(format!(
            "xdata key {key}: {} bytes, expected a 4-byte big-endian generation",
            raw.len()
        ))
    })?;
    Ok(Some(u32::from_be_bytes(raw)))
}

/// Umask applies to the permission bits only (as in the kernel): set-id and sticky bits
/// pass whatever the client's umask.
fn apply_umask(mode: u32, umask: u32) -> u32 {
    mode & !(umask & 0o777) & 0o7777
}

/// The parent, name and gfid of a location that names a new object.
fn new_entry(loc: &Loc) -> FopResult<(Gfid, &str, Gfid)> {
    let (parent, name) = loc.parent_and_name()?;
    let gfid = loc.gfid.unwrap_or_else(Gfid::random);
    if gfid.is_null() || gfid.is_root() {
        return Err(FopError::invalid(format!(
            "{gfid} cannot be given to a new object"
        )));
    }
    Ok((parent, name, gfid))
}

impl Store {
    /// Lookup; with xdata key [`cairn_translators::types::LOOKUP_XATTR_PREFIX`] the reply carries every xattr whose name
    /// starts with its value (replication asks for its counters this way, in the same
    /// round trip).
    pub(crate) fn lookup(&self, loc: &Loc, xdata: &Xdata) -> FopResult<Entry> {
        let found = self.stat_loc(loc).map_err(|e| {
            // `.cairn` at the root does not exist as far as clients know.
            if e.errno == libc::EPERM {
                FopError::new(libc::ENOENT, e.msg)
            } else {
                e
            }
        });
        let (path, iatt) = match found {
            // A miss judged with a stale layout is not definite: say so (distribute reloads
            // the layout and looks again).
            Err(e) if e.errno == libc::ENOENT => {
                if let Some(parent) = loc.parent {
                    self.check_layout_gen(parent, xdata)?;
                }
                return Err(e);
            }
            other => other?,
        };
        let mut reply = Xdata::new();
        let prefixes = lookup_prefixes(xdata);
        if !prefixes.is_empty() {
            reply =
                self.getxattr_path_where(&path, |k| prefixes.iter().any(|p| k.starts_with(&**p)))?;
        }
        if let Some(want) = xdata.get_u64(quick_read::WANT_KEY)
            && iatt.kind == FileKind::File
            && iatt.size > 0
            && iatt.size <= want.min(quick_read::MAX_FILE_SIZE_LIMIT)
            && let Some(data) = self
                .rewrites
                .steady(iatt.gfid, || read_whole(&path, &iatt))
                .flatten()
        {
            reply.set(quick_read::CONTENT_KEY, data);
        }
        Ok(Entry { iatt, xdata: reply })
    }

    /// Fails with ESTALE when `xdata` carries a layout generation ([`LAYOUT_GEN_KEY`]) older
    /// than the one stored on directory `parent` ([`XATTR_DHT_LAYOUT`]). No key, or no stored
    /// layout: nothing to check.
    fn check_layout_gen(&self, parent: Gfid, xdata: &Xdata) -> FopResult<()> {
        self.check_layout_gen_of(parent, xdata, LAYOUT_GEN_KEY)
    }

    /// [`Self::check_layout_gen`] for the generation under `key`.
    fn check_layout_gen_of(&self, parent: Gfid, xdata: &Xdata, key: &str) -> FopResult<()> {
        let Some(expected) = expected_layout_gen(xdata, key)? else {
            return Ok(());
        };
        let path = self.dir_path(parent)?;
        let mut buf = [0u8; 64];
        let raw = match rustix::fs::lgetxattr(&path, XATTR_DHT_LAYOUT, &mut buf) {
            Ok(n) => buf.get(..n).unwrap_or_default(),
            Err(rustix::io::Errno::NODATA) => return Ok(()),
            Err(rustix::io::Errno::RANGE) => {
                return Err(FopError::eio(format!(
                    "{}: malformed {XATTR_DHT_LAYOUT} xattr (longer than {} bytes)",
                    path.display(),
                    buf.len()
                )));
            }
            Err(e) => {
                return Err(sys_error(
                    e,
                    &format!("get xattr {XATTR_DHT_LAYOUT} of"),
                    &path,
                ));
            }
        };
        let stored = match raw {
            [1, _, g0, g1, g2, g3, ..] => u32::from_be_bytes([*g0, *g1, *g2, *g3]),
            _ => {
                return Err(FopError::eio(format!(
                    "{}: malformed {XATTR_DHT_LAYOUT} xattr ({} bytes, format {:?})",
                    path.display(),
                    raw.len(),
                    raw.first()
                )));
            }
        };
        if stored > expected {
            return Err(FopError::new(
                libc::ESTALE,
                format!(
                    "the layout of directory {parent} changed (generation {stored}, client has \
                     {expected}): refresh it"
                ),
            ));
        }
        Ok(())
    }

    /// Gives a freshly created object its gfid, the xattrs asked for at creation, owner and
    /// handle; removes it on failure.
    #[allow(clippy::too_many_arguments)]
    fn finish_new(
        &self,
        cx: &Cx,
        path: &Path,
        parent: Gfid,
        name: &str,
        gfid: Gfid,
        mode: u32,
        is_dir: bool,
        xattrs: &[(&str, &[u8])],
    ) -> FopResult<Entry> {
        let result = (|| {
            let pmeta = self.parent_meta(parent)?;
            self.set_gfid(path, gfid)?;
            for (xname, value) in xattrs {
                rustix::fs::lsetxattr(path, *xname, value, rustix::fs::XattrFlags::empty())
                    .map_err(|e| sys_error(e, &format!("set xattr {xname} of"), path))?;
            }
            if cx.uid != 0 || cx.gid != 0 || pmeta.mode() & libc::S_ISGID != 0 {
                chown_new(path, new_owner(&pmeta, cx.uid, cx.gid), mode)?;
            }
            self.make_handle(path, gfid, is_dir, parent, name)?;
            lstat(path)
        })();
        match result {
            Ok(meta) => Ok(Entry {
                iatt: iatt(&meta, gfid),
                xdata: Xdata::new(),
            }),
            Err(e) => {
                let _ = if is_dir {
                    fs::remove_dir(path)
                } else {
                    fs::remove_file(path)
                };
                Err(e)
            }
        }
    }

    pub(crate) fn mkdir(
        &self,
        cx: &Cx,
        loc: &Loc,
        mode: u32,
        umask: u32,
        xdata: &Xdata,
    ) -> FopResult<Entry> {
        let (parent, name, gfid) = new_entry(loc)?;
        let path = self.entry_path(parent, name)?;
        let xattrs = create_xattrs(xdata)?;
        self.check_layout_gen(parent, xdata)?;
        let mode = apply_umask(mode, umask);
        fs::DirBuilder::new()
            .mode(mode)
            .create(&path)
            .map_err(|e| io_error(&e, "mkdir", &path))?;
        self.finish_new(cx, &path, parent, name, gfid, mode, true, &xattrs)
    }

    pub(crate) fn mknod(
        &self,
        cx: &Cx,
        loc: &Loc,
        mode: u32,
        rdev: u64,
        umask: u32,
        xdata: &Xdata,
    ) -> FopResult<Entry> {
        let (parent, name, gfid) = new_entry(loc)?;
        let path = self.entry_path(parent, name)?;
        let kind = FileKind::from_mode(mode).unwrap_or(FileKind::File);
        if kind == FileKind::Dir || kind == FileKind::Symlink {
            return Err(FopError::invalid(
                "mknod cannot make directories or symlinks",
            ));
        }
        let xattrs = create_xattrs(xdata)?;
        self.check_layout_gen(parent, xdata)?;
        let perm = apply_umask(mode, umask);
        let file_type = rustix::fs::FileType::from_raw_mode(kind.mode_bits());
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            file_type,
            Mode::from_raw_mode(perm),
            rdev,
        )
        .map_err(|e| sys_error(e, "mknod", &path))?;
        self.finish_new(cx, &path, parent, name, gfid, perm, false, &xattrs)
    }

    pub(crate) fn symlink(
        &self,
        cx: &Cx,
        target: &str,
        loc: &Loc,
        xdata: &Xdata,
    ) -> FopResult<Entry> {
        let (parent, name, gfid) = new_entry(loc)?;
        let path = self.entry_path(parent, name)?;
        if target.is_empty() || target.contains('\0') {
            return Err(FopError::invalid("invalid symlink target"));
        }
        let xattrs = create_xattrs(xdata)?;
        self.check_layout_gen(parent, xdata)?;
        std::os::unix::fs::symlink(target, &path).map_err(|e| io_error(&e, "symlink", &path))?;
        self.finish_new(cx, &path, parent, name, gfid, 0o777, false, &xattrs)
    }

    /// Creates and opens a regular file. Without `O_EXCL` an existing file is opened (and
    /// keeps its xattrs: [`SETXATTR_ON_CREATE`] keys apply only to a file this call made).
    pub(crate) fn create(
        &self,
        cx: &Cx,
        loc: &Loc,
        flags: i32,
        mode: u32,
        umask: u32,
        xdata: &Xdata,
    ) -> FopResult<(Entry, OpenFile)> {
        let (parent, name, gfid) = new_entry(loc)?;
        let path = self.entry_path(parent, name)?;
        let xattrs = create_xattrs(xdata)?;
        self.check_layout_gen(parent, xdata)?;
        let perm = apply_umask(mode, umask);
        let exclusive = flags & libc::O_EXCL != 0;
        let oflags = super::data::open_flags(flags)
            | OFlags::CREATE
            | if exclusive {
                OFlags::EXCL
            } else {
                OFlags::empty()
            };
        // Tried as O_EXCL first even when the caller did not ask for it: a file this call
        // made has no gfid yet, so its gfid need not be read (one system call per new file).
        let mode = Mode::from_raw_mode(perm);
        let (fd, made) = match rustix::fs::open(&path, oflags | OFlags::EXCL, mode) {
            Ok(fd) => (fd, true),
            Err(rustix::io::Errno::EXIST) if !exclusive => (
                rustix::fs::open(&path, oflags, mode).map_err(|e| sys_error(e, "create", &path))?,
                false,
            ),
            Err(e) => return Err(sys_error(e, "create", &path)),
        };
        let file = fs::File::from(fd);
        // Without O_EXCL the file may have existed: keep its identity. XATTR_CREATE makes
        // two racing creators agree on one gfid.
        let existing = if made {
            None
        } else {
            read_gfid_fd(&file, &path)?
        };
        let (entry, created) = match existing {
            Some(g) => {
                let meta = file.metadata().map_err(|e| io_error(&e, "stat", &path))?;
                (
                    Entry {
                        iatt: iatt(&meta, g),
                        xdata: Xdata::new(),
                    },
                    false,
                )
            }
            None => match rustix::fs::fsetxattr(
                &file,
                XATTR_GFID,
                &gfid.0,
                rustix::fs::XattrFlags::CREATE,
            ) {
                Ok(()) => {
                    let result = (|| {
                        let pmeta = self.parent_meta(parent)?;
                        for (xname, value) in &xattrs {
                            rustix::fs::fsetxattr(
                                &file,
                                *xname,
                                value,
                                rustix::fs::XattrFlags::empty(),
                            )
                            .map_err(|e| sys_error(e, &format!("set xattr {xname} of"), &path))?;
                        }
                        if cx.uid != 0 || cx.gid != 0 || pmeta.mode() & libc::S_ISGID != 0 {
                            chown_new(&path, new_owner(&pmeta, cx.uid, cx.gid), perm)?;
                        }
                        self.make_handle(&path, gfid, false, parent, name)?;
                        file.metadata().map_err(|e| io_error(&e, "stat", &path))
                    })();
                    match result {
                        Ok(meta) => {
                            let mut xdata = Xdata::new();
                            xdata.set(CREATED_KEY, vec![1]);
                            (
                                Entry {
                                    iatt: iatt(&meta, gfid),
                                    xdata,
                                },
                                true,
                            )
                        }
                        Err(e) => {
                            let _ = fs::remove_file(&path);
                            return Err(e);
                        }
                    }
                }
                Err(rustix::io::Errno::EXIST) => {
                    let g = read_gfid(&path)?
                        .ok_or_else(|| FopError::eio("gfid vanished during create"))?;
                    let meta = file.metadata().map_err(|e| io_error(&e, "stat", &path))?;
                    (
                        Entry {
                            iatt: iatt(&meta, g),
                            xdata: Xdata::new(),
                        },
                        false,
                    )
                }
                Err(e) => {
                    let _ = fs::remove_file(&path);
                    return Err(sys_error(e, "set gfid of", &path));
                }
            },
        };
        let dirs_to_sync = if created {
            let handle = crate::layout::file_handle(&self.root, entry.iatt.gfid);
            path.parent()
                .map(Path::to_path_buf)
                .into_iter()
                .chain(handle.parent().map(Path::to_path_buf))
                .collect()
        } else {
            Vec::new()
        };
        Ok((entry, OpenFile::new(file, path, dirs_to_sync)))
    }

    pub(crate) fn unlink(&self, loc: &Loc, xdata: &Xdata) -> FopResult<()> {
        let (parent, name) = loc.parent_and_name()?;
        // A client whose layout is older may not know a rebalance is moving this name.
        self.check_layout_gen(parent, xdata)?;
        let path = self.entry_path(parent, name)?;
        let meta = lstat(&path)?;
        if meta.is_dir() {
            return Err(FopError::new(
                libc::EISDIR,
                format!("{} is a directory", path.display()),
            ));
        }
        let gfid = read_gfid(&path)?;
        fs::remove_file(&path).map_err(|e| io_error(&e, "unlink", &path))?;
        if let Some(g) = gfid {
            self.drop_handle_if_last(g);
        }
        Ok(())
    }

    pub(crate) fn rmdir(&self, loc: &Loc) -> FopResult<()> {
        let (parent, name) = loc.parent_and_name()?;
        let path = self.entry_path(parent, name)?;
        let meta = lstat(&path)?;
        if !meta.is_dir() {
            return Err(FopError::new(
                libc::ENOTDIR,
                format!("{} is not a directory", path.display()),
            ));
        }
        let gfid = read_gfid(&path)?;
        fs::remove_dir(&path).map_err(|e| io_error(&e, "rmdir", &path))?;
        if let Some(g) = gfid {
            self.drop_handle(g, true);
        }
        Ok(())
    }

    pub(crate) fn rename(&self, old: &Loc, new: &Loc, flags: u32, xdata: &Xdata) -> FopResult<()> {
        let (op, on) = old.parent_and_name()?;
        let (np, nn) = new.parent_and_name()?;
        let from = self.entry_path(op, on)?;
        let to = self.entry_path(np, nn)?;
        self.check_layout_gen(np, xdata)?;
        self.check_layout_gen_of(op, xdata, LAYOUT_GEN_SRC_KEY)?;
        let from_meta = lstat(&from)?;
        let from_gfid = read_gfid(&from)?;
        // What the destination held, for handle upkeep afterwards.
        let replaced = match fs::symlink_metadata(&to) {
            Ok(m) => Some((read_gfid(&to)?, m.is_dir())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&e, "stat", &to)),
        };
        let rflags = rustix::fs::RenameFlags::from_bits(flags)
            .ok_or_else(|| FopError::invalid(format!("unknown rename flags {flags:#x}")))?;
        rustix::fs::renameat_with(rustix::fs::CWD, &from, rustix::fs::CWD, &to, rflags)
            .map_err(|e| sys_error(e, "rename", &from))?;
        let exchanged = rflags.contains(rustix::fs::RenameFlags::EXCHANGE);
        if from_meta.is_dir()
            && let Some(g) = from_gfid
        {
            self.move_dir_handle(g, np, nn)?;
        }
        match replaced {
            Some((Some(g), true)) if exchanged => self.move_dir_handle(g, op, on)?,
            Some(_) if exchanged => {}
            Some((Some(g), true)) if Some(g) != from_gfid => self.drop_handle(g, true),
            Some((Some(g), false)) if Some(g) != from_gfid => self.drop_handle_if_last(g),
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn link(&self, old: &Loc, new: &Loc, xdata: &Xdata) -> FopResult<Entry> {
        let gfid = old.require_gfid()?;
        let (np, nn) = new.parent_and_name()?;
        self.check_layout_gen(np, xdata)?;
        let src = self.inode_path(gfid)?;
        let meta = lstat(&src)?;
        if meta.is_dir() {
            return Err(FopError::new(
                libc::EPERM,
                "hard links to directories are not allowed",
            ));
        }
        let dst: PathBuf = self.entry_path(np, nn)?;
        fs::hard_link(&src, &dst).map_err(|e| io_error(&e, "link", &dst))?;
        let meta = lstat(&dst)?;
        Ok(Entry {
            iatt: iatt(&meta, gfid),
            xdata: Xdata::new(),
        })
    }
}

/// The whole content of the regular file at `path`, for a lookup that asked for it
/// (quick-read), when it still has the size and times `seen` reported. Anything unexpected
/// (a changed file, an error) means no content: the client then reads the plain way.
fn read_whole(path: &Path, seen: &Iatt) -> Option<Vec<u8>> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let file = fs::File::from(fd);
    let len = usize::try_from(seen.size).ok()?;
    let buf = super::data::pread_new(&file, 0, len).ok()?;
    if buf.len() != len {
        return None;
    }
    let now = iatt(&file.metadata().ok()?, seen.gfid);
    (now.size == seen.size && now.mtime == seen.mtime && now.ctime == seen.ctime).then_some(buf)
}
