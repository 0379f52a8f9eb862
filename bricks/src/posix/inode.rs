//! Inode operations: attributes, access, symlink targets, extended attributes, counters,
//! capacity.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_translators::{
    Cx, FileKind, FopError, FopResult, Gfid, Iatt, Loc, SetAttr, Statfs, Target, TimeSet,
    XattropOp, Xdata,
};
use rustix::fs::{AtFlags, CWD, Mode, OFlags, Timestamps, XattrFlags};

use super::data::{self, OpenFile};
use super::dir::OpenDir;
use super::store::{Store, iatt, io_error, lstat, sys_error};
use crate::layout::{XATTR_BRICK, XATTR_GFID};

/// Xattrs no client may change: the object's identity and the brick's.
fn protected(name: &str) -> bool {
    name == XATTR_GFID || name == XATTR_BRICK
}

/// What an inode operation acts on.
enum Obj {
    /// A path (never followed if it is a symlink).
    Path(PathBuf, Gfid),
    /// An open file.
    File(Arc<OpenFile>, Gfid),
}

impl Obj {
    fn gfid(&self) -> Gfid {
        match self {
            Obj::Path(_, g) | Obj::File(_, g) => *g,
        }
    }

    fn label(&self) -> &Path {
        match self {
            Obj::Path(p, _) => p,
            Obj::File(f, _) => &f.path,
        }
    }

    fn stat(&self) -> FopResult<Iatt> {
        let meta = match self {
            Obj::Path(p, _) => lstat(p)?,
            Obj::File(f, _) => f
                .file
                .metadata()
                .map_err(|e| io_error(&e, "stat", &f.path))?,
        };
        Ok(iatt(&meta, self.gfid()))
    }
}

fn timespec(t: TimeSet) -> rustix::fs::Timespec {
    match t {
        TimeSet::Now => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        TimeSet::At(t) => rustix::fs::Timespec {
            tv_sec: t.sec,
            tv_nsec: i64::from(t.nsec),
        },
    }
}

const OMIT: rustix::fs::Timespec = rustix::fs::Timespec {
    tv_sec: 0,
    tv_nsec: rustix::fs::UTIME_OMIT,
};

/// Reads an xattr whatever its size.
fn get_xattr(obj: &Obj, name: &str) -> FopResult<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let r = match obj {
            Obj::Path(p, _) => rustix::fs::lgetxattr(p, name, &mut buf[..]),
            Obj::File(f, _) => rustix::fs::fgetxattr(&f.file, name, &mut buf[..]),
        };
        match r {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) if buf.len() < 64 * 1024 => buf.resize(buf.len() * 4, 0),
            Err(rustix::io::Errno::NODATA) => {
                return Err(FopError::new(libc::ENODATA, format!("no xattr {name}")));
            }
            Err(e) => return Err(sys_error(e, &format!("get xattr {name} of"), obj.label())),
        }
    }
}

fn list_xattrs(obj: &Obj) -> FopResult<Vec<String>> {
    let mut buf = vec![0u8; 1024];
    loop {
        let r = match obj {
            Obj::Path(p, _) => rustix::fs::llistxattr(p, &mut buf[..]),
            Obj::File(f, _) => rustix::fs::flistxattr(&f.file, &mut buf[..]),
        };
        match r {
            Ok(n) => {
                return Ok(buf[..n]
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .filter_map(|s| std::str::from_utf8(s).ok().map(str::to_string))
                    .collect());
            }
            Err(rustix::io::Errno::RANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(sys_error(e, "list xattrs of", obj.label())),
        }
    }
}

fn set_xattr(obj: &Obj, name: &str, value: &[u8], flags: XattrFlags) -> FopResult<()> {
    match obj {
        Obj::Path(p, _) => rustix::fs::lsetxattr(p, name, value, flags),
        Obj::File(f, _) => rustix::fs::fsetxattr(&f.file, name, value, flags),
    }
    .map_err(|e| sys_error(e, &format!("set xattr {name} of"), obj.label()))
}

impl Store {
    fn resolve(&self, target: &Target) -> FopResult<Obj> {
        match target {
            Target::Loc(loc) => {
                let (path, iatt) = self.stat_loc(loc)?;
                Ok(Obj::Path(path, iatt.gfid))
            }
            Target::Fd(fd) => {
                if let Some(of) = fd.ctx::<OpenFile>(data::CTX) {
                    return Ok(Obj::File(of, fd.gfid()));
                }
                if let Some(od) = fd.ctx::<OpenDir>(data::CTX) {
                    return Ok(Obj::Path(od.path.clone(), fd.gfid()));
                }
                Err(FopError::new(
                    libc::EBADF,
                    format!("{fd:?} is not open on this brick"),
                ))
            }
        }
    }

    /// [`Self::resolve`] for calls that need the object's path but not its attributes (the
    /// xattr calls): an object given by gfid alone is not `lstat`ed, which saves a `statx`
    /// of a directory each time a change marks its parent. A missing object fails the xattr
    /// call itself with `ENOENT`.
    fn resolve_for_xattrs(&self, target: &Target) -> FopResult<Obj> {
        match target {
            Target::Loc(loc) if loc.parent.is_none() || loc.name.is_none() => {
                let gfid = loc.require_gfid()?;
                let (path, _) = self.locate(gfid)?;
                Ok(Obj::Path(path, gfid))
            }
            _ => self.resolve(target),
        }
    }

    pub(crate) fn stat(&self, target: &Target) -> FopResult<Iatt> {
        self.resolve(target)?.stat()
    }

    pub(crate) fn setattr(&self, target: &Target, attr: &SetAttr) -> FopResult<Iatt> {
        let obj = self.resolve(target)?;
        let is_symlink = obj.stat()?.kind == FileKind::Symlink;
        if let Some(perm) = attr.perm
            && !is_symlink
        {
            let mode = Mode::from_raw_mode(perm & 0o7777);
            match &obj {
                Obj::Path(p, _) => rustix::fs::chmodat(CWD, p, mode, AtFlags::empty()),
                Obj::File(f, _) => rustix::fs::fchmod(&f.file, mode),
            }
            .map_err(|e| sys_error(e, "chmod", obj.label()))?;
        }
        if attr.uid.is_some() || attr.gid.is_some() {
            let uid = attr.uid.map(rustix::fs::Uid::from_raw);
            let gid = attr.gid.map(rustix::fs::Gid::from_raw);
            match &obj {
                Obj::Path(p, _) => rustix::fs::chownat(CWD, p, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
                Obj::File(f, _) => rustix::fs::fchown(&f.file, uid, gid),
            }
            .map_err(|e| sys_error(e, "chown", obj.label()))?;
        }
        if attr.atime.is_some() || attr.mtime.is_some() {
            let times = Timestamps {
                last_access: attr.atime.map(timespec).unwrap_or(OMIT),
                last_modification: attr.mtime.map(timespec).unwrap_or(OMIT),
            };
            match &obj {
                Obj::Path(p, _) => rustix::fs::utimensat(CWD, p, &times, AtFlags::SYMLINK_NOFOLLOW),
                Obj::File(f, _) => rustix::fs::futimens(&f.file, &times),
            }
            .map_err(|e| sys_error(e, "set times of", obj.label()))?;
        }
        obj.stat()
    }

    pub(crate) fn truncate(&self, target: &Target, size: u64) -> FopResult<Iatt> {
        let obj = self.resolve(target)?;
        match &obj {
            Obj::File(f, _) => f
                .file
                .set_len(size)
                .map_err(|e| io_error(&e, "truncate", &f.path))?,
            Obj::Path(p, _) => {
                let fd = rustix::fs::open(
                    p,
                    OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| sys_error(e, "open for truncate", p))?;
                File::from(fd)
                    .set_len(size)
                    .map_err(|e| io_error(&e, "truncate", p))?;
            }
        }
        obj.stat()
    }

    /// `access(2)` for the caller, from the attributes (the brick itself runs as root).
    pub(crate) fn access(&self, cx: &Cx, loc: &Loc, mask: u32) -> FopResult<()> {
        let (_, ia) = self.stat_loc(loc)?;
        let want = mask & 0o7;
        if want == 0 {
            return Ok(());
        }
        let denied = || FopError::new(libc::EACCES, format!("access {mask:o} denied"));
        if cx.uid == 0 {
            // Root may read and write anything, and execute what someone may execute.
            if want & 0o1 != 0 && ia.kind != FileKind::Dir && ia.perm & 0o111 == 0 {
                return Err(denied());
            }
            return Ok(());
        }
        let bits = if cx.uid == ia.uid {
            ia.perm >> 6
        } else if cx.gid == ia.gid {
            ia.perm >> 3
        } else {
            ia.perm
        } & 0o7;
        if want & !bits != 0 {
            return Err(denied());
        }
        Ok(())
    }

    pub(crate) fn readlink(&self, loc: &Loc) -> FopResult<String> {
        let path = self.loc_path(loc)?;
        let target = fs::read_link(&path).map_err(|e| {
            if e.raw_os_error() == Some(libc::EINVAL) {
                FopError::invalid(format!("{} is not a symlink", path.display()))
            } else {
                io_error(&e, "readlink", &path)
            }
        })?;
        target
            .into_os_string()
            .into_string()
            .map_err(|_| FopError::new(libc::EILSEQ, "symlink target is not UTF-8"))
    }

    pub(crate) fn statfs(&self) -> FopResult<Statfs> {
        let s = rustix::fs::statvfs(&self.root).map_err(|e| sys_error(e, "statfs", &self.root))?;
        Ok(Statfs {
            blocks: s.f_blocks,
            bfree: s.f_bfree,
            bavail: s.f_bavail,
            files: s.f_files,
            ffree: s.f_ffree,
            bsize: u32::try_from(s.f_bsize).unwrap_or(4096),
            frsize: u32::try_from(s.f_frsize).unwrap_or(4096),
            namelen: u32::try_from(s.f_namemax).unwrap_or(255),
        })
    }

    pub(crate) fn setxattr(&self, target: &Target, xattrs: &Xdata, flags: i32) -> FopResult<()> {
        if let Some((name, _)) = xattrs.iter().find(|(n, _)| protected(n)) {
            return Err(FopError::new(
                libc::EPERM,
                format!("{name} cannot be changed"),
            ));
        }
        let flags = XattrFlags::from_bits(flags as u32)
            .ok_or_else(|| FopError::invalid(format!("unknown setxattr flags {flags:#x}")))?;
        let obj = self.resolve_for_xattrs(target)?;
        for (name, value) in xattrs.iter() {
            set_xattr(&obj, name, value, flags)?;
        }
        Ok(())
    }

    pub(crate) fn getxattr(&self, target: &Target, name: Option<&str>) -> FopResult<Xdata> {
        let obj = self.resolve_for_xattrs(target)?;
        let mut out = Xdata::new();
        match name {
            Some(n) => out.set(n, get_xattr(&obj, n)?),
            None => {
                for n in list_xattrs(&obj)? {
                    match get_xattr(&obj, &n) {
                        Ok(v) => out.set(n, v),
                        // Removed between the list and the read.
                        Err(e) if e.errno == libc::ENODATA => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(out)
    }

    /// All xattrs of a path (used when the object was found by name).
    /// The xattrs of `path` whose names `keep` accepts (only those are read).
    pub(crate) fn getxattr_path_where(
        &self,
        path: &Path,
        keep: impl Fn(&str) -> bool,
    ) -> FopResult<Xdata> {
        let obj = Obj::Path(path.to_path_buf(), Gfid::NULL);
        let mut out = Xdata::new();
        for n in list_xattrs(&obj)?.into_iter().filter(|n| keep(n)) {
            if let Ok(v) = get_xattr(&obj, &n) {
                out.set(n, v);
            }
        }
        Ok(out)
    }

    pub(crate) fn removexattr(&self, target: &Target, name: &str) -> FopResult<()> {
        if protected(name) {
            return Err(FopError::new(
                libc::EPERM,
                format!("{name} cannot be removed"),
            ));
        }
        let obj = self.resolve_for_xattrs(target)?;
        match &obj {
            Obj::Path(p, _) => rustix::fs::lremovexattr(p, name),
            Obj::File(f, _) => rustix::fs::fremovexattr(&f.file, name),
        }
        .map_err(|e| match e {
            rustix::io::Errno::NODATA => FopError::new(libc::ENODATA, format!("no xattr {name}")),
            e => sys_error(e, &format!("remove xattr {name} of"), obj.label()),
        })
    }

    /// Adds arrays of big-endian i64 to xattrs atomically (with respect to other xattrops).
    pub(crate) fn xattrop(
        &self,
        target: &Target,
        op: XattropOp,
        xattrs: &Xdata,
        report: Option<&[String]>,
    ) -> FopResult<Xdata> {
        let floor = match op {
            XattropOp::AddArray64 => false,
            XattropOp::AddArray64Floor => true,
        };
        if let Some((name, _)) = xattrs.iter().find(|(n, _)| protected(n)) {
            return Err(FopError::new(
                libc::EPERM,
                format!("{name} cannot be changed"),
            ));
        }
        let obj = self.resolve_for_xattrs(target)?;
        let _guard = self.xattrop_lock(obj.gfid())?;
        let mut out = Xdata::new();
        for (name, delta) in xattrs.iter() {
            if delta.len() % 8 != 0 {
                return Err(FopError::invalid(format!(
                    "xattrop on {name}: {} bytes is not an array of 64-bit counters",
                    delta.len()
                )));
            }
            let mut current = match get_xattr(&obj, name) {
                Ok(v) => v,
                Err(e) if e.errno == libc::ENODATA => Vec::new(),
                Err(e) => return Err(e),
            };
            if current.len() % 8 != 0 {
                return Err(FopError::eio(format!(
                    "{name} holds {} bytes, not 64-bit counters",
                    current.len()
                )));
            }
            if current.len() < delta.len() {
                current.resize(delta.len(), 0);
            }
            for (cur, add) in current.chunks_exact_mut(8).zip(delta.chunks_exact(8)) {
                let a = i64::from_be_bytes(cur.try_into().map_err(|_| FopError::eio("counter"))?);
                let b = i64::from_be_bytes(add.try_into().map_err(|_| FopError::eio("counter"))?);
                let mut sum = a.wrapping_add(b);
                if floor && sum < 0 {
                    sum = 0;
                }
                cur.copy_from_slice(&sum.to_be_bytes());
            }
            set_xattr(&obj, name, &current, XattrFlags::empty())?;
            out.set(name.clone(), current);
        }
        if let Some(prefixes) = report {
            for name in list_xattrs(&obj)? {
                if out.contains(&name) || !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
                    continue;
                }
                match get_xattr(&obj, &name) {
                    Ok(v) => out.set(name, v),
                    // Removed between the listing and the read: not there.
                    Err(e) if e.errno == libc::ENODATA => {}
                    Err(e) => return Err(e),
                }
            }
            out.set(cairn_translators::types::XATTROP_REPORT_KEY, Vec::new());
        }
        Ok(out)
    }
}
