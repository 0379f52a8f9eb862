//! [`CairnNfs`]: the `nfs3_server` file system over the top of a client graph. Each NFS
//! procedure becomes one or two fops; descriptors come from the open-file cache.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_translators::{
    Cx, DirEntry, Fd, FileKind, FopError, Gfid, Iatt, Loc, Payload, SetAttr, Target, TimeSet,
    Timespec, Xdata, XlatorRef,
};
use nfs3_server::nfs3_types::nfs3::{
    createverf3, fattr3, filename3, nfspath3, nfsstat3, sattr3, stable_how,
};
use nfs3_server::vfs::{
    DirEntryPlus, NextResult, NfsFileSystem, NfsReadFileSystem, ReadDirPlusIterator,
};

use crate::attr::{fattr, set_attr};
use crate::fds::FdCache;
use crate::handle::GfidHandle;
use crate::status::nfs_status;

/// Bytes' worth of entries asked of the volume per directory read.
const READDIR_CHUNK: u32 = 32 * 1024;

type NfsResult<T> = Result<T, nfsstat3>;

/// The NFS file system of one volume: a graph top and its open-file cache.
#[derive(Clone)]
pub struct CairnNfs {
    top: XlatorRef,
    fds: Arc<FdCache>,
    fsid: u64,
}

/// The context of every fop the gateway makes on behalf of clients (see the crate
/// documentation on credentials). Never the internal context: bricks let Cairn's own
/// copies (pid 0) through WORM and bitrot checks, and NFS clients are not Cairn.
pub(crate) fn cx() -> Cx {
    Cx {
        uid: 0,
        gid: 0,
        pid: std::process::id().max(1),
        lk_owner: 0,
        client: 0,
    }
}

/// An NFS name as a Cairn entry name: UTF-8 and a single valid component.
fn entry_name(name: &filename3<'_>) -> NfsResult<String> {
    let text = std::str::from_utf8(name.as_ref()).map_err(|_| nfsstat3::NFS3ERR_INVAL)?;
    cairn_translators::check_name(text).map_err(|e| nfs_status("name", &e))?;
    Ok(text.to_string())
}

impl CairnNfs {
    /// A file system over `top`, reporting `fsid` as its file system id, keeping at most
    /// `max_fds` descriptors open, each for at most `fd_idle` unused.
    pub fn new(top: XlatorRef, fsid: u64, max_fds: usize, fd_idle: Duration) -> CairnNfs {
        CairnNfs {
            fds: Arc::new(FdCache::new(Arc::clone(&top), max_fds, fd_idle)),
            top,
            fsid,
        }
    }

    /// Releases idle descriptors (all of them with `all`). The gateway calls it
    /// periodically and when it stops.
    pub async fn sweep(&self, all: bool) {
        self.fds.sweep(all).await;
    }

    /// How long a descriptor stays open unused.
    pub fn fd_idle(&self) -> Duration {
        self.fds.idle()
    }

    /// Descriptors the gateway holds open now.
    pub fn open_fds(&self) -> usize {
        self.fds.len()
    }

    fn attr(&self, iatt: &Iatt) -> fattr3 {
        fattr(iatt, self.fsid)
    }

    async fn stat(&self, gfid: Gfid) -> NfsResult<Iatt> {
        self.top
            .stat(&cx(), Target::Loc(Loc::inode(gfid)), Xdata::new())
            .await
            .map_err(|e| nfs_status("stat", &e))
    }

    async fn lookup_iatt(&self, dir: Gfid, name: String) -> Result<Iatt, FopError> {
        let e = self
            .top
            .lookup(&cx(), Loc::entry(dir, name), Xdata::new())
            .await?;
        Ok(e.iatt)
    }

    /// Applies a size and attributes; returns the attributes after.
    async fn apply(&self, gfid: Gfid, attr: SetAttr, size: Option<u64>) -> NfsResult<Iatt> {
        let target = Target::Loc(Loc::inode(gfid));
        let mut last = None;
        if let Some(size) = size {
            let r = self
                .top
                .truncate(&cx(), target.clone(), size, Xdata::new())
                .await;
            last = Some(r.map_err(|e| nfs_status("truncate", &e))?);
        }
        if !attr.is_empty() {
            let r = self.top.setattr(&cx(), target, attr, Xdata::new()).await;
            last = Some(r.map_err(|e| nfs_status("setattr", &e))?);
        }
        match last {
            Some(iatt) => Ok(iatt),
            None => self.stat(gfid).await,
        }
    }

    /// Creates regular file `name` in `dir` with permissions `perm`, or finds it already
    /// there (UNCHECKED create). Returns its attributes.
    async fn create_file(
        &self,
        dir: Gfid,
        name: String,
        perm: u32,
        truncate: bool,
    ) -> NfsResult<Iatt> {
        let g = Gfid::random();
        let mut flags = libc::O_CREAT | libc::O_RDWR;
        if truncate {
            flags |= libc::O_TRUNC;
        }
        let fd = Fd::new(g, flags);
        let loc = Loc::entry(dir, name).with_gfid(g);
        let entry = self
            .top
            .create(
                &cx(),
                loc,
                flags,
                libc::S_IFREG | (perm & 0o7777),
                0,
                fd.clone(),
                Xdata::new(),
            )
            .await
            .map_err(|e| nfs_status("create", &e))?;
        let iatt = entry.iatt;
        if iatt.gfid.is_null() || iatt.gfid == g {
            // Keep the descriptor: the WRITEs that follow a CREATE need no open.
            self.fds.insert(g, fd, true);
            let mut iatt = iatt;
            if iatt.gfid.is_null() {
                iatt.gfid = g;
            }
            Ok(iatt)
        } else {
            // The name existed: create opened the existing file.
            if let Err(e) = self.top.release(&cx(), fd).await {
                tracing::debug!(error = %e, "release after create of an existing file");
            }
            Ok(iatt)
        }
    }
}

/// The times an exclusive create stores its verifier in (as Linux's NFS server does), so a
/// retransmitted CREATE finds its own file.
fn verifier_times(verf: &createverf3) -> (Timespec, Timespec) {
    let v = verf.0;
    let a = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    let m = u32::from_be_bytes([v[4], v[5], v[6], v[7]]);
    (
        Timespec {
            sec: i64::from(a & 0x7fff_ffff),
            nsec: 0,
        },
        Timespec {
            sec: i64::from(m & 0x7fff_ffff),
            nsec: 0,
        },
    )
}

impl NfsReadFileSystem for CairnNfs {
    type Handle = GfidHandle;

    fn root_dir(&self) -> GfidHandle {
        GfidHandle(Gfid::ROOT)
    }

    async fn lookup(&self, dirid: &GfidHandle, filename: &filename3<'_>) -> NfsResult<GfidHandle> {
        match filename.as_ref() {
            b"." => return Ok(*dirid),
            b".." if dirid.0.is_root() => return Ok(*dirid),
            _ => {}
        }
        let name = entry_name(filename)?;
        let iatt = self
            .lookup_iatt(dirid.0, name)
            .await
            .map_err(|e| nfs_status("lookup", &e))?;
        if iatt.gfid.is_null() {
            return Err(nfsstat3::NFS3ERR_IO);
        }
        Ok(GfidHandle(iatt.gfid))
    }

    async fn getattr(&self, id: &GfidHandle) -> NfsResult<fattr3> {
        let iatt = self.stat(id.0).await?;
        Ok(self.attr(&iatt))
    }

    async fn read(&self, id: &GfidHandle, offset: u64, count: u32) -> NfsResult<(Vec<u8>, bool)> {
        let fd = self
            .fds
            .get(id.0, false)
            .await
            .map_err(|e| nfs_status("open", &e))?;
        let data = self
            .top
            .read(&cx(), Fd::clone(&fd), offset, count, Xdata::new())
            .await
            .map_err(|e| nfs_status("read", &e))?;
        // A short read is the end of the file.
        let eof = data.len() < count as usize;
        Ok((data.bytes().to_vec(), eof))
    }

    async fn readdirplus(
        &self,
        dirid: &GfidHandle,
        cookie: u64,
    ) -> NfsResult<impl ReadDirPlusIterator<GfidHandle>> {
        let fd = self
            .fds
            .get_dir(dirid.0)
            .await
            .map_err(|e| nfs_status("opendir", &e))?;
        let buf = self.fds.unstash(dirid.0, cookie).unwrap_or_default();
        Ok(DirIter {
            fs: self.clone(),
            dir: dirid.0,
            fd,
            from: cookie,
            buf,
            eof: false,
            last: None,
        })
    }

    async fn readlink(&self, id: &GfidHandle) -> NfsResult<nfspath3<'_>> {
        let target = self
            .top
            .readlink(&cx(), Loc::inode(id.0), Xdata::new())
            .await
            .map_err(|e| nfs_status("readlink", &e))?;
        Ok(nfspath3::from(target.into_bytes()))
    }
}

/// A directory listing from a cookie: reads batches from the volume as the reply fills.
struct DirIter {
    fs: CairnNfs,
    dir: Gfid,
    fd: Arc<Fd>,
    /// The cookie the entries in `buf` follow.
    from: u64,
    buf: VecDeque<DirEntry>,
    eof: bool,
    /// The entry handed out last, with the cookie it followed (it may not have fit).
    last: Option<(u64, DirEntry)>,
}

impl Drop for DirIter {
    fn drop(&mut self) {
        // The reply is full or done. The entry handed out last may not have fit; keep it
        // and the rest for the request that continues from the cookie before it.
        if let Some((from, e)) = self.last.take() {
            let mut rest = std::mem::take(&mut self.buf);
            rest.push_front(e);
            self.fs.fds.stash(self.dir, from, rest);
        }
    }
}

impl ReadDirPlusIterator<GfidHandle> for DirIter {
    async fn next(&mut self) -> NextResult<DirEntryPlus<GfidHandle>> {
        loop {
            while let Some(e) = self.buf.pop_front() {
                let from = self.from;
                self.from = e.offset;
                // `.` and `..` are not listed (NFSv3 does not require them; clients add
                // their own).
                if e.name == "." || e.name == ".." {
                    continue;
                }
                let gfid = match &e.iatt {
                    Some(i) if !i.gfid.is_null() => i.gfid,
                    _ => e.gfid,
                };
                let out = DirEntryPlus {
                    fileid: gfid.ino(),
                    name: filename3::from(e.name.clone().into_bytes()),
                    cookie: e.offset,
                    name_attributes: e.iatt.as_ref().map(|i| self.fs.attr(i)),
                    name_handle: (!gfid.is_null()).then_some(GfidHandle(gfid)),
                };
                self.last = Some((from, e));
                return NextResult::Ok(out);
            }
            if self.eof {
                self.last = None;
                return NextResult::Eof;
            }
            let batch = self
                .fs
                .top
                .readdir(
                    &cx(),
                    Fd::clone(&self.fd),
                    self.from,
                    READDIR_CHUNK,
                    true,
                    Xdata::new(),
                )
                .await;
            match batch {
                Ok(b) if b.is_empty() => self.eof = true,
                Ok(b) => self.buf.extend(b),
                Err(e) => {
                    self.last = None;
                    return NextResult::Err(nfs_status("readdir", &e));
                }
            }
        }
    }
}

impl NfsFileSystem for CairnNfs {
    async fn setattr(&self, id: &GfidHandle, setattr: sattr3) -> NfsResult<fattr3> {
        let (attr, size) = set_attr(&setattr);
        let iatt = self.apply(id.0, attr, size).await?;
        Ok(self.attr(&iatt))
    }

    async fn write(
        &self,
        id: &GfidHandle,
        offset: u64,
        data: &[u8],
        stable: stable_how,
    ) -> NfsResult<(fattr3, stable_how)> {
        let fd = self
            .fds
            .get(id.0, true)
            .await
            .map_err(|e| nfs_status("open", &e))?;
        let payload = Payload::new(Bytes::copy_from_slice(data));
        let iatt = self
            .top
            .write(&cx(), Fd::clone(&fd), offset, payload, Xdata::new())
            .await
            .map_err(|e| nfs_status("write", &e))?;
        if stable != stable_how::UNSTABLE {
            self.top
                .fsync(
                    &cx(),
                    Fd::clone(&fd),
                    stable == stable_how::DATA_SYNC,
                    Xdata::new(),
                )
                .await
                .map_err(|e| nfs_status("fsync", &e))?;
        }
        Ok((self.attr(&iatt), stable))
    }

    async fn create(
        &self,
        dirid: &GfidHandle,
        filename: &filename3<'_>,
        attr: sattr3,
    ) -> NfsResult<(GfidHandle, fattr3)> {
        let name = entry_name(filename)?;
        let (mut set, size) = set_attr(&attr);
        let perm = set.perm.take().unwrap_or(0o644);
        let iatt = self
            .create_file(dirid.0, name, perm, size == Some(0))
            .await?;
        if iatt.kind != FileKind::File {
            return Err(nfsstat3::NFS3ERR_EXIST);
        }
        let size = size.filter(|s| *s != 0);
        let iatt = if set.is_empty() && size.is_none() {
            iatt
        } else {
            self.apply(iatt.gfid, set, size).await?
        };
        Ok((GfidHandle(iatt.gfid), self.attr(&iatt)))
    }

    async fn create_exclusive(
        &self,
        dirid: &GfidHandle,
        filename: &filename3<'_>,
        createverf: createverf3,
    ) -> NfsResult<GfidHandle> {
        let name = entry_name(filename)?;
        let (atime, mtime) = verifier_times(&createverf);
        match self.lookup_iatt(dirid.0, name.clone()).await {
            // A retransmission of the CREATE that made it: same verifier in the times.
            Ok(i)
                if i.kind == FileKind::File
                    && i.atime.sec == atime.sec
                    && i.mtime.sec == mtime.sec =>
            {
                return Ok(GfidHandle(i.gfid));
            }
            Ok(_) => return Err(nfsstat3::NFS3ERR_EXIST),
            Err(e) if e.errno == libc::ENOENT => {}
            Err(e) => return Err(nfs_status("lookup", &e)),
        }
        let g = Gfid::random();
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR;
        let fd = Fd::new(g, flags);
        let entry = self
            .top
            .create(
                &cx(),
                Loc::entry(dirid.0, name).with_gfid(g),
                flags,
                libc::S_IFREG | 0o644,
                0,
                fd.clone(),
                Xdata::new(),
            )
            .await
            .map_err(|e| nfs_status("create", &e))?;
        let gfid = if entry.iatt.gfid.is_null() {
            g
        } else {
            entry.iatt.gfid
        };
        self.fds.insert(gfid, fd, true);
        let stamp = SetAttr {
            atime: Some(TimeSet::At(atime)),
            mtime: Some(TimeSet::At(mtime)),
            ..SetAttr::default()
        };
        self.apply(gfid, stamp, None).await?;
        Ok(GfidHandle(gfid))
    }

    async fn mkdir(
        &self,
        dirid: &GfidHandle,
        dirname: &filename3<'_>,
    ) -> NfsResult<(GfidHandle, fattr3)> {
        let name = entry_name(dirname)?;
        let g = Gfid::random();
        let entry = self
            .top
            .mkdir(
                &cx(),
                Loc::entry(dirid.0, name).with_gfid(g),
                libc::S_IFDIR | 0o755,
                0,
                Xdata::new(),
            )
            .await
            .map_err(|e| nfs_status("mkdir", &e))?;
        let mut iatt = entry.iatt;
        if iatt.gfid.is_null() {
            iatt.gfid = g;
        }
        Ok((GfidHandle(iatt.gfid), self.attr(&iatt)))
    }

    async fn remove(&self, dirid: &GfidHandle, filename: &filename3<'_>) -> NfsResult<()> {
        // REMOVE and RMDIR both come here.
        let name = entry_name(filename)?;
        let loc = Loc::entry(dirid.0, name.clone());
        let err = match self.top.unlink(&cx(), loc.clone(), Xdata::new()).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if err.errno == libc::EISDIR || err.errno == libc::EPERM {
            // Perhaps a directory (unlink(2) of one fails with EISDIR or EPERM); a refusal
            // of a file (WORM) keeps its own error.
            if let Ok(i) = self.lookup_iatt(dirid.0, name).await
                && i.kind == FileKind::Dir
            {
                return self
                    .top
                    .rmdir(&cx(), loc, Xdata::new())
                    .await
                    .map_err(|e| nfs_status("rmdir", &e));
            }
        }
        Err(nfs_status("unlink", &err))
    }

    async fn rename<'a>(
        &self,
        from_dirid: &GfidHandle,
        from_filename: &filename3<'a>,
        to_dirid: &GfidHandle,
        to_filename: &filename3<'a>,
    ) -> NfsResult<()> {
        let old = Loc::entry(from_dirid.0, entry_name(from_filename)?);
        let new = Loc::entry(to_dirid.0, entry_name(to_filename)?);
        self.top
            .rename(&cx(), old, new, 0, Xdata::new())
            .await
            .map_err(|e| nfs_status("rename", &e))
    }

    async fn symlink<'a>(
        &self,
        dirid: &GfidHandle,
        linkname: &filename3<'a>,
        symlink: &nfspath3<'a>,
        _attr: &sattr3,
    ) -> NfsResult<(GfidHandle, fattr3)> {
        let name = entry_name(linkname)?;
        let target = std::str::from_utf8(symlink.as_ref())
            .map_err(|_| nfsstat3::NFS3ERR_INVAL)?
            .to_string();
        let g = Gfid::random();
        let entry = self
            .top
            .symlink(
                &cx(),
                target,
                Loc::entry(dirid.0, name).with_gfid(g),
                0,
                Xdata::new(),
            )
            .await
            .map_err(|e| nfs_status("symlink", &e))?;
        let mut iatt = entry.iatt;
        if iatt.gfid.is_null() {
            iatt.gfid = g;
        }
        Ok((GfidHandle(iatt.gfid), self.attr(&iatt)))
    }

    async fn commit(&self, id: &GfidHandle, _offset: u64, _count: u32) -> NfsResult<()> {
        // fsync(2) makes the whole file durable on each brick, whichever descriptor it
        // goes through.
        let fd = match self.fds.peek(id.0) {
            Some(fd) => fd,
            None => self
                .fds
                .get(id.0, false)
                .await
                .map_err(|e| nfs_status("open", &e))?,
        };
        self.top
            .fsync(&cx(), Fd::clone(&fd), false, Xdata::new())
            .await
            .map_err(|e| nfs_status("fsync", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_never_passes_for_cairn_itself() {
        // Bricks exempt pid 0 (heal, rebalance) from WORM and bitrot refusals.
        assert_ne!(cx().pid, 0);
        assert_ne!(cx(), Cx::internal());
    }

    #[test]
    fn exclusive_create_verifiers_fit_in_times() {
        let (a, m) = verifier_times(&createverf3([0xff, 0, 0, 1, 0, 0, 0, 2]));
        assert_eq!((a.sec, m.sec), (0x7f00_0001, 2));
        assert!(a.sec >= 0 && m.sec >= 0);
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(
            entry_name(&filename3::from(&b"img-1.dcm"[..]))
                .ok()
                .as_deref(),
            Some("img-1.dcm")
        );
        assert_eq!(
            entry_name(&filename3::from(&b"a/b"[..])),
            Err(nfsstat3::NFS3ERR_INVAL)
        );
        assert_eq!(
            entry_name(&filename3::from(&[0xffu8, 0xfe][..])),
            Err(nfsstat3::NFS3ERR_INVAL)
        );
        assert_eq!(
            entry_name(&filename3::from(vec![b'x'; 300])),
            Err(nfsstat3::NFS3ERR_NAMETOOLONG)
        );
    }
}
