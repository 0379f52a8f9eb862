//! `performance/readdir-ahead`: the next batch of a directory listing is asked for while the
//! caller is still busy with the current one.
//!
//! Listing a large directory (`ls -l` of a day's 10,000 images, a `find`, an NFS
//! READDIRPLUS loop) is a chain of batches, each waiting for the last: the bricks read
//! their directory and stat every entry, then the client hands the entries to the kernel,
//! then asks for the next batch. This translator
//!
//! - asks below for batches of at least `request-size` bytes, whatever the caller asked
//!   (callers buffer what does not fit);
//! - as soon as a batch arrives that is not the end, asks for the one after it in the
//!   background, so the bricks work on batch k+1 while the caller consumes batch k;
//! - answers the next call at that offset from the prefetched batch.
//!
//! A prefetched batch answers only if nothing was changed through this graph since it was
//! asked for (any create, remove, rename, link, write, truncate or attribute change: the
//! attributes in it could be older than that change) and if it is younger than
//! [`FRESH_FOR`]. Otherwise it is dropped and the call goes down. At most
//! `cache-limit / request-size` prefetches are outstanding at once over all directories.
//! Cairn's own operations (pid 0) and calls carrying extra keys pass straight through.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};

use crate::error::FopResult;
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::{
    Cx, DirEntry, Entry, Fd, Iatt, Loc, Payload, SetAttr, Target, XattropOp, Xdata,
};
use crate::wire::{Batch, CompoundResult, Request};
use crate::xlator::{Translator, XlatorBase, XlatorRef};

/// Key of this translator's context on a directory fd.
const FD_KEY: &str = "performance/readdir-ahead";

/// How long a prefetched batch may answer after it was asked for.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "request-size",
        kind: OptionKind::Size {
            min: 4096,
            max: 4 << 20,
        },
        default: Some("256KiB"),
        doc: "Each batch asked of the bricks is at least this large (in listing bytes).",
    },
    OptionSpec {
        key: "cache-limit",
        kind: OptionKind::Size {
            min: 0,
            max: 1 << 30,
        },
        default: Some("16MiB"),
        doc: "Prefetched batches outstanding at once, over all directories, are at most this divided by request-size (0: no prefetching).",
    },
];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "performance/readdir-ahead",
        arity: Arity::One,
        roles: &[Role::Client],
        maturity: Maturity::Stable,
        options: OPTIONS,
        doc: "Lists directories in large batches and asks for the next batch while the current one is consumed.",
    },
    build,
};

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let o = ctx.options;
    let request_size = o.size("request-size").map_err(|e| e.to_string())?;
    let cache_limit = o.size("cache-limit").map_err(|e| e.to_string())?;
    let cfg = Config {
        request_size: u32::try_from(request_size).map_err(|e| e.to_string())?,
        max_ahead: usize::try_from(cache_limit / request_size.max(1)).map_err(|e| e.to_string())?,
    };
    Ok(Arc::new(ReaddirAhead::new(ctx.name, ctx.children, cfg)))
}

/// Settings of one readdir-ahead node.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Smallest batch asked of the child.
    pub request_size: u32,
    /// Most prefetches outstanding at once.
    pub max_ahead: usize,
}

type Fetch = tokio::task::JoinHandle<FopResult<Vec<DirEntry>>>;

/// A batch asked for ahead of the caller.
struct Prefetch {
    offset: u64,
    plus: bool,
    generation: u64,
    asked: Instant,
    task: Fetch,
}

/// What a directory fd holds here.
#[derive(Default)]
struct RdaFd {
    ahead: Mutex<Option<Prefetch>>,
}

/// What [`ReaddirAhead::counters`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Batches asked for ahead.
    pub prefetched: u64,
    /// Calls answered from a prefetched batch.
    pub served: u64,
    /// Prefetched batches dropped unused (a change, too old, another offset).
    pub dropped: u64,
}

/// The `performance/readdir-ahead` translator. See the [module documentation](self).
pub struct ReaddirAhead {
    base: XlatorBase,
    cfg: Config,
    /// Bumped by every change through this graph.
    generation: AtomicU64,
    outstanding: Arc<AtomicUsize>,
    prefetched: AtomicU64,
    served: AtomicU64,
    dropped: AtomicU64,
}

fn internal(cx: &Cx) -> bool {
    cx.pid == 0
}

impl ReaddirAhead {
    /// A readdir-ahead node named `name` over `children` (exactly one).
    pub fn new(name: &str, children: Vec<XlatorRef>, cfg: Config) -> ReaddirAhead {
        ReaddirAhead {
            base: XlatorBase::new(name, TYPE.decl.type_name, children),
            cfg,
            generation: AtomicU64::new(0),
            outstanding: Arc::new(AtomicUsize::new(0)),
            prefetched: AtomicU64::new(0),
            served: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// What it has done so far.
    pub fn counters(&self) -> Counters {
        Counters {
            prefetched: self.prefetched.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn child(&self) -> FopResult<&XlatorRef> {
        self.base.child()
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Runs `call`, a change through this graph, voiding prefetches asked for before it
    /// ends (marked before and after, since a prefetch may overlap it).
    async fn changing<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        self.changed();
        let r = call.await;
        self.changed();
        r
    }

    /// Takes the prefetch held for `fd`, if any.
    fn take(&self, fd: &Fd) -> Option<Prefetch> {
        let r = fd.ctx::<RdaFd>(FD_KEY)?;
        let p = r.ahead.lock().ok()?.take()?;
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        Some(p)
    }

    /// Drops a prefetch that will not be used; its request finishes in the background.
    fn drop_unused(&self, p: Prefetch) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        drop(p.task);
    }

    /// Asks for the batch after `batch` in the background, if there is room.
    fn ahead(&self, cx: &Cx, fd: &Fd, batch: &[DirEntry], plus: bool) -> FopResult<()> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        if self.cfg.max_ahead == 0 {
            return Ok(());
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Ok(());
        };
        let taken = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cfg.max_ahead).then_some(n + 1)
            });
        if taken.is_err() {
            return Ok(());
        }
        let r = match fd.ctx::<RdaFd>(FD_KEY) {
            Some(r) => r,
            None => {
                let r = Arc::new(RdaFd::default());
                fd.set_ctx(FD_KEY, Arc::clone(&r));
                r
            }
        };
        let child = Arc::clone(self.child()?);
        let (cx, fd2, offset, size) = (cx.clone(), fd.clone(), last.offset, self.cfg.request_size);
        let generation = self.generation.load(Ordering::Acquire);
        let task = rt.spawn(async move {
            child
                .readdir(&cx, fd2, offset, size, plus, Xdata::new())
                .await
        });
        let old = r.ahead.lock().ok().and_then(|mut a| {
            a.replace(Prefetch {
                offset,
                plus,
                generation,
                asked: Instant::now(),
                task,
            })
        });
        self.prefetched.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = old {
            self.outstanding.fetch_sub(1, Ordering::AcqRel);
            self.drop_unused(old);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Translator for ReaddirAhead {
    crate::xlator_base!();

    async fn readdir(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        size: u32,
        plus: bool,
        xdata: Xdata,
    ) -> FopResult<Vec<DirEntry>> {
        if internal(cx) || !xdata.is_empty() {
            return self
                .child()?
                .readdir(cx, fd, offset, size, plus, xdata)
                .await;
        }
        if let Some(p) = self.take(&fd) {
            let usable = p.offset == offset
                && (p.plus || !plus)
                && p.generation == self.generation.load(Ordering::Acquire)
                && p.asked.elapsed() < FRESH_FOR;
            if usable {
                if let Ok(Ok(mut batch)) = p.task.await
                    && p.generation == self.generation.load(Ordering::Acquire)
                {
                    self.served.fetch_add(1, Ordering::Relaxed);
                    if !plus {
                        for e in &mut batch {
                            e.iatt = None;
                        }
                    }
                    self.ahead(cx, &fd, &batch, plus)?;
                    return Ok(batch);
                }
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                self.drop_unused(p);
            }
        }
        let batch = self
            .child()?
            .readdir(
                cx,
                fd.clone(),
                offset,
                size.max(self.cfg.request_size),
                plus,
                xdata,
            )
            .await?;
        self.ahead(cx, &fd, &batch, plus)?;
        Ok(batch)
    }

    async fn releasedir(&self, cx: &Cx, fd: Fd) -> FopResult<()> {
        // Let a request still in flight on this fd finish before the fd goes.
        if let Some(p) = self.take(&fd) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            let _ = p.task.await;
        }
        fd.take_ctx::<RdaFd>(FD_KEY);
        self.child()?.releasedir(cx, fd).await
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
        self.changing(self.child()?.create(cx, loc, flags, mode, umask, fd, xdata))
            .await
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
        self.changing(self.child()?.mknod(cx, loc, mode, rdev, umask, xdata))
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
        self.changing(self.child()?.mkdir(cx, loc, mode, umask, xdata))
            .await
    }

    async fn unlink(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        self.changing(self.child()?.unlink(cx, loc, xdata)).await
    }

    async fn rmdir(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        self.changing(self.child()?.rmdir(cx, loc, xdata)).await
    }

    async fn symlink(
        &self,
        cx: &Cx,
        link_target: String,
        loc: Loc,
        umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        self.changing(self.child()?.symlink(cx, link_target, loc, umask, xdata))
            .await
    }

    async fn rename(&self, cx: &Cx, old: Loc, new: Loc, flags: u32, xdata: Xdata) -> FopResult<()> {
        self.changing(self.child()?.rename(cx, old, new, flags, xdata))
            .await
    }

    async fn link(&self, cx: &Cx, old: Loc, new: Loc, xdata: Xdata) -> FopResult<Entry> {
        self.changing(self.child()?.link(cx, old, new, xdata)).await
    }

    async fn setattr(
        &self,
        cx: &Cx,
        target: Target,
        attr: SetAttr,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        self.changing(self.child()?.setattr(cx, target, attr, xdata))
            .await
    }

    async fn truncate(&self, cx: &Cx, target: Target, size: u64, xdata: Xdata) -> FopResult<Iatt> {
        self.changing(self.child()?.truncate(cx, target, size, xdata))
            .await
    }

    async fn write(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        data: Payload,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        self.changing(self.child()?.write(cx, fd, offset, data, xdata))
            .await
    }

    async fn fallocate(
        &self,
        cx: &Cx,
        fd: Fd,
        mode: i32,
        offset: u64,
        len: u64,
        xdata: Xdata,
    ) -> FopResult<()> {
        self.changing(self.child()?.fallocate(cx, fd, mode, offset, len, xdata))
            .await
    }

    async fn open(&self, cx: &Cx, loc: Loc, flags: i32, fd: Fd, xdata: Xdata) -> FopResult<()> {
        if flags & libc::O_TRUNC == 0 {
            return self.child()?.open(cx, loc, flags, fd, xdata).await;
        }
        self.changing(self.child()?.open(cx, loc, flags, fd, xdata))
            .await
    }

    async fn xattrop(
        &self,
        cx: &Cx,
        target: Target,
        op: XattropOp,
        xattrs: Xdata,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        self.changing(self.child()?.xattrop(cx, target, op, xattrs, xdata))
            .await
    }

    async fn compound(&self, cx: &Cx, ops: Batch<Request>) -> FopResult<Batch<CompoundResult>> {
        self.changing(self.child()?.compound(cx, ops)).await
    }
}

#[cfg(test)]
mod tests;
