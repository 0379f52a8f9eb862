//! `storage/posix`: the leaf of a brick graph; stores the volume's files as plain files.
//!
//! - [`store`]: resolving gfids and names to paths, handles, attributes.
//! - [`entry`]: lookup, create, mkdir, mknod, symlink, unlink, rmdir, rename, link.
//! - [`inode`]: stat, setattr, truncate, access, readlink, xattrs, xattrop, statfs.
//! - [`data`]: open, read, write, fsync, fallocate, lseek.
//! - [`dir`]: opendir, readdir(plus), fsyncdir.
//!
//! Most fops touch only the page cache and finish in microseconds, so they run inline on the
//! thread that received them: handing each one to another thread and back cost more CPU
//! than the call itself (two context switches per fop). The brick process runs
//! `io-threads` such threads (`performance.io-thread-count`), so a call that does wait for
//! the disk (a cold inode, a cold read) holds up one of them, not the brick. Calls whose
//! purpose is to wait for the device (fsync, fsyncdir, fallocate) go to tokio's blocking
//! pool. The brick directory is checked
//! when the node is built (see [`crate::layout::prepare`]): a brick refuses to start on a
//! path that is not a directory, or on another volume's or brick's directory.

pub mod data;
pub mod dir;
pub mod entry;
pub mod inode;
pub mod store;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use cairn_translators::graph::{BuildCtx, TranslatorType};
use cairn_translators::types::{REWRITE_DONE_KEY, REWRITE_KEY, XATTROP_REPORT_KEY};
use cairn_translators::wire::{Batch, CompoundResult, Request, run_compound};
use cairn_translators::{
    Cx, DirEntry, Entry, Fd, FopError, FopResult, Gfid, Iatt, Loc, Payload, SetAttr, Statfs,
    Target, Translator, Whence, XattropOp, Xdata, XlatorBase, XlatorRef,
};
use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};

use crate::layout::{self, Identity};
use store::Store;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "directory",
        kind: OptionKind::Path,
        default: None,
        doc: "The brick directory (an absolute path on a local filesystem with xattr support).",
    },
    OptionSpec {
        key: "volume-id",
        kind: OptionKind::Str,
        default: Some(""),
        doc: "The volume id this brick belongs to; the brick refuses a directory of another volume.",
    },
    OptionSpec {
        key: "brick-id",
        kind: OptionKind::Str,
        default: Some(""),
        doc: "This brick's id; the brick refuses a directory that is another brick.",
    },
    OptionSpec {
        key: "io-threads",
        kind: OptionKind::Int { min: 1, max: 64 },
        default: Some("16"),
        doc: "Threads of the brick process that receive requests and run their filesystem calls \
              (read by cairn-brickd when it starts).",
    },
    OptionSpec {
        key: "init",
        kind: OptionKind::Bool,
        default: Some("off"),
        doc: "Stamp the volume and brick ids on a directory that has none (creating a new brick). \
              Off, a directory without an identity is refused: its disk may not be mounted.",
    },
];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "storage/posix",
        arity: Arity::Leaf,
        roles: &[Role::Brick],
        maturity: Maturity::Stable,
        options: OPTIONS,
        doc: "Stores files as plain files at their own paths on a local directory, with gfid xattrs and a handle tree.",
    },
    build,
};

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let o = ctx.options;
    let e = |e: cairn_volfiles::OptionError| e.to_string();
    let root = PathBuf::from(o.str("directory").map_err(e)?);
    let identity = Identity {
        volume_id: o.str("volume-id").map_err(e)?.to_string(),
        brick_id: o.str("brick-id").map_err(e)?.to_string(),
    };
    let init = o.bool("init").map_err(e)?;
    o.int("io-threads").map_err(e)?;
    Ok(Arc::new(Posix::open(ctx.name, root, &identity, init)?))
}

/// The posix translator.
pub struct Posix {
    base: XlatorBase,
    store: Arc<Store>,
}

impl Posix {
    /// Checks and prepares `root` as brick `identity` (see [`layout::prepare`]) and serves it.
    pub fn open(
        name: &str,
        root: PathBuf,
        identity: &Identity,
        init: bool,
    ) -> Result<Posix, String> {
        if !root.is_absolute() {
            return Err(format!(
                "brick directory {} is not an absolute path",
                root.display()
            ));
        }
        layout::prepare(&root, identity, init)?;
        let root = root
            .canonicalize()
            .map_err(|e| format!("{}: {e}", root.display()))?;
        match layout::xattrs_fit_in_inode(&root) {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                brick = %root.display(),
                "the brick's filesystem keeps Cairn's xattrs outside the inode: every file takes \
                 one more 4 KiB block and every cold lookup one more disk read; make brick \
                 filesystems with 512-byte inodes (mkfs.xfs -i size=512, mkfs.ext4 -I 512), see \
                 the operator's guide, \"Prepare the brick disks\""
            ),
            Err(e) => {
                tracing::warn!(brick = %root.display(), "cannot check where the filesystem keeps xattrs: {e}")
            }
        }
        Ok(Posix {
            base: XlatorBase::new(name, TYPE.decl.type_name, Vec::new()),
            store: Arc::new(Store::new(root)),
        })
    }

    /// The brick directory.
    pub fn root(&self) -> &std::path::Path {
        &self.store.root
    }

    /// A rewrite in place begun for an `open` or `create` that asked for one
    /// ([`cairn_translators::types::REWRITE_KEY`]).
    fn rewrite_of(&self, loc: &Loc, fd: &Fd, xdata: &Xdata) -> Option<data::RewriteGuard> {
        if !xdata.contains(REWRITE_KEY) {
            return None;
        }
        let gfid = loc.gfid.filter(|g| *g != Gfid::NULL).unwrap_or(fd.gfid());
        Some(self.store.rewrites.begin(gfid))
    }

    /// Runs `f` here, on the thread that received the fop (see the module's notes).
    async fn run<T, F>(&self, f: F) -> FopResult<T>
    where
        F: FnOnce(&Store) -> FopResult<T>,
    {
        f(&self.store)
    }

    /// Runs `f` on the blocking pool: for calls that wait for the device.
    async fn run_blocking<T, F>(&self, f: F) -> FopResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> FopResult<T> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| FopError::eio(format!("brick worker failed: {e}")))?
    }
}

#[async_trait]
impl Translator for Posix {
    cairn_translators::xlator_base!();

    async fn lookup(&self, _cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<Entry> {
        self.run(move |s| s.lookup(&loc, &xdata)).await
    }

    async fn stat(&self, _cx: &Cx, target: Target, _xdata: Xdata) -> FopResult<Iatt> {
        self.run(move |s| s.stat(&target)).await
    }

    async fn setattr(
        &self,
        _cx: &Cx,
        target: Target,
        attr: SetAttr,
        _xdata: Xdata,
    ) -> FopResult<Iatt> {
        self.run(move |s| s.setattr(&target, &attr)).await
    }

    async fn truncate(
        &self,
        _cx: &Cx,
        target: Target,
        size: u64,
        _xdata: Xdata,
    ) -> FopResult<Iatt> {
        self.run(move |s| s.truncate(&target, size)).await
    }

    async fn access(&self, cx: &Cx, loc: Loc, mask: u32, _xdata: Xdata) -> FopResult<()> {
        let cx = cx.clone();
        self.run(move |s| s.access(&cx, &loc, mask)).await
    }

    async fn readlink(&self, _cx: &Cx, loc: Loc, _xdata: Xdata) -> FopResult<String> {
        self.run(move |s| s.readlink(&loc)).await
    }

    async fn mknod(
        &self,
        cx: &Cx,
        loc: Loc,
        mode: u32,
        rdev: u64,
        umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let cx = cx.clone();
        self.run(move |s| s.mknod(&cx, &loc, mode, rdev, umask, &xdata))
            .await
    }

    async fn mkdir(
        &self,
        cx: &Cx,
        loc: Loc,
        mode: u32,
        umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let cx = cx.clone();
        self.run(move |s| s.mkdir(&cx, &loc, mode, umask, &xdata))
            .await
    }

    async fn unlink(&self, _cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        self.run(move |s| s.unlink(&loc, &xdata)).await
    }

    async fn rmdir(&self, _cx: &Cx, loc: Loc, _xdata: Xdata) -> FopResult<()> {
        self.run(move |s| s.rmdir(&loc)).await
    }

    async fn symlink(
        &self,
        cx: &Cx,
        link_target: String,
        loc: Loc,
        _umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let cx = cx.clone();
        self.run(move |s| s.symlink(&cx, &link_target, &loc, &xdata))
            .await
    }

    async fn rename(
        &self,
        _cx: &Cx,
        old: Loc,
        new: Loc,
        flags: u32,
        xdata: Xdata,
    ) -> FopResult<()> {
        self.run(move |s| s.rename(&old, &new, flags, &xdata)).await
    }

    async fn link(&self, _cx: &Cx, old: Loc, new: Loc, xdata: Xdata) -> FopResult<Entry> {
        self.run(move |s| s.link(&old, &new, &xdata)).await
    }

    async fn create(
        &self,
        cx: &Cx,
        loc: Loc,
        flags: i32,
        mode: u32,
        umask: u32,
        fd: Fd,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let cx = cx.clone();
        // (Begun before the file exists: a copy heal creates holds zeros until it is filled.)
        let rewrite = self.rewrite_of(&loc, &fd, &xdata);
        let (entry, file) = self
            .run(move |s| s.create(&cx, &loc, flags, mode, umask, &xdata))
            .await?;
        fd.set_ctx(data::CTX, Arc::new(file.rewriting(rewrite)));
        Ok(entry)
    }

    async fn open(&self, _cx: &Cx, loc: Loc, flags: i32, fd: Fd, xdata: Xdata) -> FopResult<()> {
        let rewrite = self.rewrite_of(&loc, &fd, &xdata);
        let file = self.run(move |s| s.open(&loc, flags)).await?;
        fd.set_ctx(data::CTX, Arc::new(file.rewriting(rewrite)));
        Ok(())
    }

    async fn read(
        &self,
        _cx: &Cx,
        fd: Fd,
        offset: u64,
        size: u32,
        _xdata: Xdata,
    ) -> FopResult<Payload> {
        self.run(move |s| s.read(&fd, offset, size)).await
    }

    async fn write(
        &self,
        _cx: &Cx,
        fd: Fd,
        offset: u64,
        data: Payload,
        _xdata: Xdata,
    ) -> FopResult<Iatt> {
        self.run(move |s| s.write(&fd, offset, &data)).await
    }

    async fn flush(&self, _cx: &Cx, fd: Fd, xdata: Xdata) -> FopResult<()> {
        let done = xdata.contains(REWRITE_DONE_KEY);
        self.run(move |s| s.flush(&fd, done)).await
    }

    async fn fsync(&self, _cx: &Cx, fd: Fd, datasync: bool, _xdata: Xdata) -> FopResult<()> {
        self.run_blocking(move |s| s.fsync(&fd, datasync)).await
    }

    async fn release(&self, _cx: &Cx, fd: Fd) -> FopResult<()> {
        drop(fd.take_ctx::<data::OpenFile>(data::CTX));
        Ok(())
    }

    async fn opendir(&self, _cx: &Cx, loc: Loc, fd: Fd, _xdata: Xdata) -> FopResult<()> {
        let dir = self.run(move |s| s.opendir(&loc)).await?;
        fd.set_ctx(data::CTX, Arc::new(dir));
        Ok(())
    }

    async fn readdir(
        &self,
        _cx: &Cx,
        fd: Fd,
        offset: u64,
        size: u32,
        plus: bool,
        _xdata: Xdata,
    ) -> FopResult<Vec<DirEntry>> {
        self.run(move |s| s.readdir(&fd, offset, size, plus)).await
    }

    async fn releasedir(&self, _cx: &Cx, fd: Fd) -> FopResult<()> {
        fd.take_ctx::<dir::OpenDir>(data::CTX);
        Ok(())
    }

    async fn fsyncdir(&self, _cx: &Cx, fd: Fd, _datasync: bool, _xdata: Xdata) -> FopResult<()> {
        self.run_blocking(move |s| s.fsyncdir(&fd)).await
    }

    async fn statfs(&self, _cx: &Cx, _loc: Loc, _xdata: Xdata) -> FopResult<Statfs> {
        self.run(move |s| s.statfs()).await
    }

    async fn setxattr(
        &self,
        _cx: &Cx,
        target: Target,
        xattrs: Xdata,
        flags: i32,
        _xdata: Xdata,
    ) -> FopResult<()> {
        self.run(move |s| s.setxattr(&target, &xattrs, flags)).await
    }

    async fn getxattr(
        &self,
        _cx: &Cx,
        target: Target,
        name: Option<String>,
        _xdata: Xdata,
    ) -> FopResult<Xdata> {
        self.run(move |s| s.getxattr(&target, name.as_deref()))
            .await
    }

    async fn removexattr(
        &self,
        _cx: &Cx,
        target: Target,
        name: String,
        _xdata: Xdata,
    ) -> FopResult<()> {
        self.run(move |s| s.removexattr(&target, &name)).await
    }

    async fn xattrop(
        &self,
        _cx: &Cx,
        target: Target,
        op: XattropOp,
        xattrs: Xdata,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        let report: Option<Vec<String>> = xdata.get(XATTROP_REPORT_KEY).map(|v| {
            v.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        });
        self.run(move |s| s.xattrop(&target, op, &xattrs, report.as_deref()))
            .await
    }

    async fn fallocate(
        &self,
        _cx: &Cx,
        fd: Fd,
        mode: i32,
        offset: u64,
        len: u64,
        _xdata: Xdata,
    ) -> FopResult<()> {
        self.run_blocking(move |s| s.fallocate(&fd, mode, offset, len))
            .await
    }

    async fn lseek(
        &self,
        _cx: &Cx,
        fd: Fd,
        offset: u64,
        whence: Whence,
        _xdata: Xdata,
    ) -> FopResult<u64> {
        self.run(move |s| s.lseek(&fd, offset, whence)).await
    }

    async fn compound(&self, cx: &Cx, ops: Batch<Request>) -> FopResult<Batch<CompoundResult>> {
        run_compound(self, cx, ops).await
    }
}
