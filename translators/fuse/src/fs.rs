//! The `fuser::Filesystem` implementation: each kernel request becomes one or two fops on
//! the top of the client graph.
//!
//! A callback never waits for the volume. It resolves what it needs from the local tables
//! (node id → gfid, `fh` → [`Fd`]), checks names, and spawns a task on the tokio runtime
//! that runs the fop and sends the reply. Errors reach the kernel through
//! [`crate::errno::to_errno`] only.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cairn_translators::{
    Cx, DirEntry, Fd, FileKind, FopError, FopResult, Gfid, Iatt, Loc, Payload, SetAttr, Target,
    Whence, Xdata,
};
use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, Filesystem, FopenFlags,
    Generation as NodeGeneration, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use tokio::runtime::Handle as Runtime;

use crate::attr::{dir_placeholder, file_attr, file_type, time_set, user_dev};
use crate::errno::{entry_name, to_errno, utf8};
use crate::generation::{Generation, Slot};
use crate::handles::{DirBuf, Handle, HandleTable, READDIR_CHUNK, fill, lock};
use crate::inodes::{InodeTable, ROOT, UNKNOWN_INO};
use crate::options::MountOptions;
use crate::xattr::{FOREIGN_GET, FOREIGN_SET, SizedReply, is_user, name_list, sized};

/// Capabilities asked of the kernel when it offers them. Not asked: `FUSE_WRITEBACK_CACHE`
/// (a write must reach the bricks before it is acknowledged) and `FUSE_POSIX_LOCKS` /
/// `FUSE_FLOCK_LOCKS` (the kernel then keeps POSIX and BSD locks locally).
pub(crate) const WANTED_CAPS: InitFlags = InitFlags::FUSE_DO_READDIRPLUS
    .union(InitFlags::FUSE_READDIRPLUS_AUTO)
    .union(InitFlags::FUSE_PARALLEL_DIROPS)
    .union(InitFlags::FUSE_ASYNC_READ)
    .union(InitFlags::FUSE_BIG_WRITES)
    .union(InitFlags::FUSE_ATOMIC_O_TRUNC)
    .union(InitFlags::FUSE_CACHE_SYMLINKS);

/// Read-ahead asked of the kernel (it may allow less).
const MAX_READAHEAD: u32 = 1024 * 1024;

/// Generation number of every node: node ids are never reused for another gfid while the
/// kernel may still know the old one, so one generation is enough. (Not to be confused
/// with graph generations, [`Generation`].)
const GENERATION: NodeGeneration = NodeGeneration(0);

/// Replies with an errno and returns from the callback when `$e` is an error.
macro_rules! or_reply {
    ($reply:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(errno) => {
                $reply.error(errno);
                return;
            }
        }
    };
}

/// State shared by the callbacks and the tasks they spawn.
pub(crate) struct Shared {
    /// The graph generation new operations go to (see the `generation` module).
    gens: Arc<Slot>,
    rt: Runtime,
    opts: MountOptions,
    inodes: Mutex<InodeTable>,
    handles: HandleTable,
}

/// The FUSE file system over a client graph.
pub(crate) struct CairnFs {
    s: Arc<Shared>,
}

impl CairnFs {
    /// A file system sending fops to the current generation of `gens`, running them on
    /// `rt`.
    pub(crate) fn new(gens: Arc<Slot>, opts: MountOptions, rt: Runtime) -> CairnFs {
        CairnFs {
            s: Arc::new(Shared {
                gens,
                rt,
                opts,
                inodes: Mutex::new(InodeTable::new()),
                handles: HandleTable::default(),
            }),
        }
    }

    /// Runs `task` on the runtime with a handle on the shared state and on the current
    /// graph generation, which the task keeps alive until it is done.
    fn spawn<F, Fut>(&self, task: F)
    where
        F: FnOnce(Arc<Shared>, Arc<Generation>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_on(self.s.gens.current(), task);
    }

    /// Runs `task` against generation `g`: for operations on an open file, the generation
    /// the file was opened on.
    ///
    /// The task is first polled once here, on the FUSE thread that read the request, inside
    /// the runtime's context. One that needs no waiting (a lookup or getattr the caches
    /// answer; an open, read, flush or release of an image quick-read holds) replies at
    /// once, without waking a runtime thread: reading a small image is five such requests.
    /// A task that has to wait is handed to the runtime, which polls it again with its own
    /// waker.
    fn spawn_on<F, Fut>(&self, g: Arc<Generation>, task: F)
    where
        F: FnOnce(Arc<Shared>, Arc<Generation>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let _in_runtime = self.s.rt.enter();
        let mut fut = Box::pin(task(Arc::clone(&self.s), g));
        let mut first = std::task::Context::from_waker(std::task::Waker::noop());
        // A panic is contained as the runtime would contain it in a task: the request's
        // reply is dropped (fuser answers EIO) and the FUSE thread goes on.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fut.as_mut().poll(&mut first)
        })) {
            Ok(std::task::Poll::Pending) => {}
            Ok(std::task::Poll::Ready(())) => return,
            Err(_) => {
                tracing::error!("a FUSE request's handler panicked; answered EIO");
                return;
            }
        }
        // If the runtime is shutting down the task is dropped, and with it the reply,
        // which fuser then answers with EIO.
        drop(self.s.rt.spawn(fut));
    }
}

/// The caller of a request.
fn cx(req: &Request, lock_owner: Option<LockOwner>) -> Cx {
    Cx {
        uid: req.uid(),
        gid: req.gid(),
        // pid 0 marks Cairn's own operations (heal, rebalance), which WORM lets repair and
        // move files; a request from the kernel itself must not pass for one.
        pid: req.pid().max(1),
        lk_owner: lock_owner.map_or(0, |l| l.0),
        client: 0,
    }
}

impl Shared {
    /// The gfid of a node id, or `ESTALE` for an id the table does not know.
    fn gfid(&self, ino: INodeNo) -> Result<Gfid, Errno> {
        lock(&self.inodes).gfid(ino.0).ok_or(Errno::ESTALE)
    }

    /// The open handle behind `fh`, or `EBADF`.
    fn handle(&self, fh: FileHandle) -> Result<Arc<Handle>, Errno> {
        self.handles.get(fh.0).ok_or(Errno::EBADF)
    }

    /// The open file when the kernel gave a known `fh` (with the generation it was opened
    /// on), else the inode (with the current generation).
    fn target(&self, gfid: Gfid, fh: Option<FileHandle>) -> (Target, Arc<Generation>) {
        match fh.and_then(|fh| self.handles.get(fh.0)) {
            Some(h) => (Target::Fd(h.fd.clone()), Arc::clone(&h.generation)),
            None => (Target::Loc(Loc::inode(gfid)), self.gens.current()),
        }
    }

    /// Takes a kernel reference on the object an entry reply describes and returns its
    /// attributes under its node id. `proposed` is the gfid the caller asked a new object
    /// to get, used if the volume's reply carries none.
    fn entry_attr(
        &self,
        iatt: &Iatt,
        parent: INodeNo,
        proposed: Option<Gfid>,
    ) -> Result<FileAttr, Errno> {
        let gfid = match (iatt.gfid.is_null(), proposed) {
            (false, _) => iatt.gfid,
            (true, Some(g)) => g,
            (true, None) => {
                tracing::warn!("the volume answered an entry request without a gfid");
                return Err(Errno::EIO);
            }
        };
        let dir_parent = if iatt.kind == FileKind::Dir {
            parent.0
        } else {
            0
        };
        let node = lock(&self.inodes).remember(gfid, dir_parent);
        Ok(file_attr(iatt, node))
    }

    /// Answers an entry request (lookup, mknod, mkdir, symlink, link).
    fn reply_entry(
        &self,
        reply: ReplyEntry,
        op: &str,
        result: FopResult<Iatt>,
        parent: INodeNo,
        proposed: Option<Gfid>,
    ) {
        let iatt = match result {
            Ok(iatt) => iatt,
            Err(e) => return reply.error(to_errno(op, &e)),
        };
        match self.entry_attr(&iatt, parent, proposed) {
            Ok(attr) => reply.entry_with_ttls(
                &self.opts.attr_timeout,
                &self.opts.entry_timeout,
                &attr,
                GENERATION,
            ),
            Err(errno) => reply.error(errno),
        }
    }

    /// The inode number shown for `..` of directory `dir`.
    fn dotdot_ino(&self, dir: u64, gfid: &Gfid) -> u64 {
        let t = lock(&self.inodes);
        if dir == ROOT {
            ROOT // the root is its own parent inside the mount
        } else if !gfid.is_null() {
            t.display_ino(gfid)
        } else {
            t.parent(dir).unwrap_or(UNKNOWN_INO)
        }
    }

    /// Fills a readdir(plus) reply for directory node `dir` from offset `offset`, using
    /// the handle's read-ahead entries when they continue from that offset and fetching
    /// more from the volume while the reply has room.
    async fn list(
        &self,
        cx: &Cx,
        h: &Handle,
        offset: u64,
        plus: bool,
        sink: &mut (dyn FnMut(&Shared, &DirEntry) -> bool + Send),
    ) -> FopResult<()> {
        let cached = lock(&h.dir).take();
        let mut buf = match cached {
            // Entries with attributes serve a plain listing too (the kernel switches from
            // readdirplus to readdir mid-stream when nobody looks at the attributes).
            Some(b) if b.from == offset && (b.plus || !plus) => b,
            _ => DirBuf {
                from: offset,
                plus,
                entries: VecDeque::new(),
                eof: false,
            },
        };
        let mut added_any = false;
        loop {
            if let Some(last) = fill(&mut buf.entries, |e| sink(self, e)) {
                buf.from = last;
                added_any = true;
            }
            if !buf.entries.is_empty() || buf.eof {
                break; // the reply is full, or the directory has no more entries
            }
            let batch = h
                .generation
                .top()
                .readdir(
                    cx,
                    h.fd.clone(),
                    buf.from,
                    READDIR_CHUNK,
                    plus,
                    Xdata::new(),
                )
                .await;
            match batch {
                Ok(batch) if batch.is_empty() => buf.eof = true,
                Ok(batch) => {
                    // A plain batch makes the whole buffer plain: a later readdirplus must
                    // not hand out entries without attributes.
                    buf.plus &= plus;
                    buf.entries.extend(batch);
                }
                // What was already added is good; the kernel asks again for the rest.
                Err(e) if added_any => {
                    to_errno("readdir", &e);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        *lock(&h.dir) = Some(buf);
        Ok(())
    }

    /// Adds one entry to a plain readdir reply. Returns true when the reply is full.
    fn add_plain(&self, reply: &mut ReplyDirectory, dir: u64, e: &DirEntry) -> bool {
        let ino = match e.name.as_str() {
            "." => dir,
            ".." => self.dotdot_ino(dir, &e.gfid),
            _ if e.gfid.is_null() => UNKNOWN_INO,
            _ => lock(&self.inodes).display_ino(&e.gfid),
        };
        reply.add(INodeNo(ino), e.offset, file_type(e.kind), &e.name)
    }

    /// Adds one entry to a readdirplus reply, taking a kernel reference on it if it fits.
    /// Returns true when the reply is full.
    ///
    /// `.` and `..` carry their real inode numbers (which `fuser` also sends as the node
    /// id) but take no reference: the kernel never links them (`fuse_direntplus_link`
    /// returns before looking at the node id or the attributes). An entry the volume gave
    /// no attributes goes out with node id 0, which the kernel does not link either.
    fn add_plus(&self, reply: &mut ReplyDirectoryPlus, dir: u64, e: &DirEntry) -> bool {
        let ttl = self.opts.entry_timeout.min(self.opts.attr_timeout);
        if e.name == "." || e.name == ".." {
            let ino = if e.name == "." {
                dir
            } else {
                self.dotdot_ino(dir, &e.gfid)
            };
            let attr = match &e.iatt {
                Some(iatt) => file_attr(iatt, ino),
                None => dir_placeholder(ino),
            };
            return reply.add(INodeNo(ino), e.offset, &e.name, &ttl, &attr, GENERATION);
        }
        let gfid = match &e.iatt {
            Some(iatt) if !iatt.gfid.is_null() => Some(iatt.gfid),
            Some(_) if !e.gfid.is_null() => Some(e.gfid),
            _ => None,
        };
        let (Some(iatt), Some(gfid)) = (&e.iatt, gfid) else {
            let mut attr = dir_placeholder(0);
            attr.kind = file_type(e.kind);
            return reply.add(
                INodeNo(0),
                e.offset,
                &e.name,
                &Duration::ZERO,
                &attr,
                GENERATION,
            );
        };
        // Take the reference and add under one lock, and give it back if the entry did not
        // fit, so a concurrent forget never sees a count the kernel does not hold.
        let mut t = lock(&self.inodes);
        let parent = if iatt.kind == FileKind::Dir { dir } else { 0 };
        let node = t.remember(gfid, parent);
        let attr = file_attr(iatt, node);
        let full = reply.add(INodeNo(node), e.offset, &e.name, &ttl, &attr, GENERATION);
        if full {
            t.forget(node, 1);
        }
        full
    }
}

impl Filesystem for CairnFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let offered = WANTED_CAPS & config.capabilities();
        if let Err(refused) = config.add_capabilities(offered) {
            tracing::debug!("kernel refused capabilities {refused:?}");
        }
        let missing = WANTED_CAPS.difference(offered);
        if !missing.is_empty() {
            tracing::info!("the kernel does not offer {missing:?}; continuing without");
        }
        let background = self.s.opts.max_background.max(1);
        if let Err(nearest) = config.set_max_background(background) {
            let _ = config.set_max_background(nearest);
        }
        let threshold = (u32::from(background) * 3 / 4).max(1) as u16;
        if let Err(nearest) = config.set_congestion_threshold(threshold) {
            let _ = config.set_congestion_threshold(nearest);
        }
        if let Err(nearest) = config.set_max_write(self.s.opts.max_write) {
            tracing::info!("max-write limited to {nearest} bytes");
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(nearest);
        }
        tracing::debug!(
            abi = %config.kernel_abi(),
            capabilities = ?(config.capabilities() & WANTED_CAPS),
            "FUSE session initialised"
        );
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let pgfid = or_reply!(reply, self.s.gfid(parent));
        let name = or_reply!(reply, entry_name(name));
        let cx = cx(req, None);
        self.spawn(move |s, graph| async move {
            let r = graph
                .top()
                .lookup(&cx, Loc::entry(pgfid, name), Xdata::new())
                .await;
            match r {
                Err(e) if e.errno == libc::ENOENT && !s.opts.negative_timeout.is_zero() => {
                    // Node id 0: "no such name", cached for the negative timeout.
                    let attr = dir_placeholder(0);
                    reply.entry_with_ttls(
                        &Duration::ZERO,
                        &s.opts.negative_timeout,
                        &attr,
                        GENERATION,
                    );
                }
                r => s.reply_entry(reply, "lookup", r.map(|e| e.iatt), parent, None),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.s.inodes).forget(ino.0, nlookup);
    }

    // batch_forget: fuser's default calls `forget` for each node (its `ForgetOne` type is
    // not public, so it cannot be overridden).

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let gfid = or_reply!(reply, self.s.gfid(ino));
        let (target, generation) = self.s.target(gfid, fh);
        let cx = cx(req, None);
        self.spawn_on(generation, move |s, graph| async move {
            match graph.top().stat(&cx, target, Xdata::new()).await {
                Ok(iatt) => reply.attr(&s.opts.attr_timeout, &file_attr(&iatt, ino.0)),
                Err(e) => reply.error(to_errno("stat", &e)),
            }
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let gfid = or_reply!(reply, self.s.gfid(ino));
        let (target, generation) = self.s.target(gfid, fh);
        let attr = SetAttr {
            perm: mode.map(|m| m & 0o7777),
            uid,
            gid,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
        };
        let cx = cx(req, None);
        self.spawn_on(generation, move |s, graph| async move {
            let result = async {
                let mut last = None;
                if let Some(size) = size {
                    let iatt = graph
                        .top()
                        .truncate(&cx, target.clone(), size, Xdata::new());
                    last = Some(iatt.await.map_err(|e| ("truncate", e))?);
                }
                if !attr.is_empty() {
                    let iatt = graph.top().setattr(&cx, target.clone(), attr, Xdata::new());
                    last = Some(iatt.await.map_err(|e| ("setattr", e))?);
                }
                match last {
                    Some(iatt) => Ok(iatt),
                    None => graph
                        .top()
                        .stat(&cx, target, Xdata::new())
                        .await
                        .map_err(|e| ("stat", e)),
                }
            };
            match result.await {
                Ok(iatt) => reply.attr(&s.opts.attr_timeout, &file_attr(&iatt, ino.0)),
                Err((op, e)) => reply.error(to_errno(op, &e)),
            }
        });
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let gfid = or_reply!(reply, self.s.gfid(ino));
        let cx = cx(req, None);
        self.spawn(move |_, graph| async move {
            match graph
                .top()
                .readlink(&cx, Loc::inode(gfid), Xdata::new())
                .await
            {
                Ok(target) => reply.data(target.as_bytes()),
                Err(e) => reply.error(to_errno("readlink", &e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let pgfid = or_reply!(reply, self.s.gfid(parent));
        let name = or_reply!(reply, entry_name(name));
        let cx = cx(req, None);
        self.spawn(move |s, graph| async move {
            let g = Gfid::random();
            let loc = Loc::entry(pgfid, name).with_gfid(g);
            let r = graph
                .top()
                .mknod(&cx, loc, mode, user_dev(rdev), umask, Xdata::new())
                .await;
            s.reply_entry(reply, "mknod", r.map(|e| e.iatt), parent, Some(g));
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let pgfid = or_reply!(reply, self.s.gfid(parent));
        let name = or_reply!(reply, entry_name(name));
        let cx = cx(req, None);
        self.spawn(move |s, graph| async move {
            let g = Gfid::random();
            let loc = Loc::entry(pgfid, name).with_gfid(g);
            let r = graph.top().mkdir(&cx, loc, mode, umask, Xdata::new()).await;
            s.reply_entry(reply, "mkdir", r.map(|e| e.iatt), parent, Some(g));
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let pgfid = or_reply!(reply, self.s.gfid(parent));
        let name = or_reply!(reply, entry_name(name));
        let cx = cx(req, None);
        self.spawn(move |_, graph| async move {
            match graph
                .top()
                .unlink(&cx, Loc::entry(pgfid, name), Xdata::new())
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(to_errno("unlink", &e)),
            }
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let pgfid = or_reply!(reply, self.s.gfid(parent));
        let name = or_reply!(reply, entry_name(name));
        let cx = cx(req, None);
        self.spawn(move |_, graph| async move {
            match graph
                .top()
                .rmdir(&cx, Loc::entry(pgfid, name), Xdata::new())
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(to_errno("rmdir", &e)),
            }
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let pgfid = or_reply!(reply, self.s.gfid(parent));
        let name = or_reply!(reply, entry_name(link_name));
        let target = or_reply!(reply, utf8(target.as_os_str())).to_string();
        let cx = cx(req, None);
        self.spawn(move |s, graph| async move {
            let g = Gfid::random();
            let loc = Loc::entry(pgfid, name).with_gfid(g);
            let r = graph.top().symlink(&cx, target, loc, 0, Xdata::new()).await;
            s.reply_entry(reply, "symlink", r.map(|e| e.iatt), parent, Some(g));
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let old = Loc::entry(
            or_reply!(reply, self.s.gfid(parent)),
            or_reply!(reply, entry_name(name)),
        );
        let new = Loc::entry(
            or_reply!(reply, self.s.gfid(newparent)),
            or_reply!(reply, entry_name(newname)),
        );
        let cx = cx(req, None);
        self.spawn(move |_, graph| async move {
            match graph
                .top()
                .rename(&cx, old, new, flags.bits(), Xdata::new())
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(to_errno("rename", &e)),
            }
        });
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let gfid = or_reply!(reply, self.s.gfid(ino));
        let new = Loc::entry(
            or_reply!(reply, self.s.gfid(newparent)),
            or_reply!(reply, entry_name(newname)),
        );
        let cx = cx(req, None);
        self.spawn(move |s, graph| async move {
            let r = graph
                .top()
                .link(&cx, Loc::inode(gfid), new, Xdata::new())
                .await;
            s.reply_entry(reply, "link", r.map(|e| e.iatt), newparent, Some(gfid));
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let gfid = or_reply!(reply, self.s.gfid(ino));
        let cx = cx(req, None);
        self.spawn(move |s, graph| async move {
            let fd = Fd::new(gfid, flags.0);
            let r = graph
                .top()
                .open(&cx, Loc::inode(gfid), flags.0, fd.clone(), Xdata::new());
            match r.await {
                Ok(()) => {
                    let fh = s.handles.insert(fd, Arc::clone(&graph));
                    reply.opened(FileHandle(fh), FopenFlags::empty());
                }
                Err(e) => reply.error(to_errno("open", &e)),
            }
        });
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let h = or_reply!(reply, self.s.handle(fh));
        let cx = cx(req, lock_owner);
        self.spawn_on(Arc::clone(&h.generation), move |_, graph| async move {
            match graph
                .top()
                .read(&cx, h.fd.clone(), offset, size, Xdata::new())
                .await
            {
                Ok(data) => reply.data(data.bytes()),
                Err(e) => reply.error(to_errno("read", &e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let h = or_reply!(reply, self.s.handle(fh));
        let len = or_reply!(reply, u32::try_from(data.len()).map_err(|_| Errno::EFBIG));
        let payload = Payload::new(Bytes::copy_from_slice(data));
        let cx = cx(req, lock_owner);
        self.spawn_on(Arc::clone(&h.generation), move |_, graph| async move {
            match graph
                .top()
                .write(&cx, h.fd.clone(), offset, payload, Xdata::new())
                .await
            {
                Ok(_) => reply.written(len),
                Err(e) => reply.error(to_errno("write", &e)),
            }
        });
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let h = or_reply!(reply, self.s.handle(fh));
        let cx = cx(req, Some(lock_owner));
        self.spawn_on(Arc::clone(&h.generation), move |_, graph| async move {
            match graph.top().flush(&cx, h.fd.clone(), Xdata::new()).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(to_errno("flush", &e)),
            }
        });
    }

    fn release(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        flush: bool,
        reply: ReplyEmpty,
    ) {
        let Some(h) = self.s.handles.remove(fh.0) else {
            tracing::debug!(fh = fh.0, "release of an unknown file handle");
            return reply.ok();
        };
        let cx = cx(req, lock_owner);
        self.spawn_on(Arc::clone(&h.generation), move |_, graph| async move {
            if flush && let Err(e) = graph.top().flush(&cx, h.fd.clone(), Xdata::new()).await {
                to_errno("flush", &e);
            }
            if let Err(e) = graph.top().release(&cx, h.fd.clone()).await {
                tracing::warn!(fd = ?h.fd, "release failed: {e}");
            }
            // The kernel does not report release errors to anyone.
            reply.ok();
        });
    }

    fn fsync(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let h = or_reply!(reply, self.s.handle(fh));
        let cx = cx(req, None);
        self.spawn_on(Arc::clone(&h.generation), move |_, graph| async move {
            match graph
                .top()
                .fsync(&cx, h.fd.clone(), datasync, Xdata::new())
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(to_errno("fsync", &e)),
            }
        });
    }

    fn opendir(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let gfid = or_reply!(reply, self.s.gfid(ino));
        let cx = cx(req, None);
        self.spawn(move |s, graph| async move {
            let fd = Fd::new(gfid, flags.0);
            let r = graph
                .top()
                .opendir(&cx, Loc::inode(gfid), fd.clone(), Xdata::new());
            match r.await {
                Ok(()) => {
                    let fh = s.handles.insert(fd, Arc::clone(&graph));
                    reply.opened(FileHandle(fh), FopenFlags::empty());
                }
                Err(e) => reply.error(to_errno("opendir", &e)),
            }
        });
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let h = or_reply!(reply, self.s.handle(fh));
        let cx = cx(req, None);
        self.spawn_on(Arc::clone(&h.generation), move |s, _| async move {
            let mut sink = |s: &Shared, e: &DirEntry| s.add_plain(&mut reply, ino.0, e);
            let r = s.list(&cx, &h, offset, false, &mut sink).await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(to_errno("readdir", &e)),
            }
        });
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let h = or_reply!(reply, self.s.handle(fh));
        let cx = cx(req, None);
        self.spawn_on(Arc::clone(&h.generation), move |s, _| async move {
            let mut sink = |s: &Shared, e: &DirEntry| s.add_plus(&mut reply, ino.0, e);
            let r = s.list(&cx, &h, offset, true, &mut sink).await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(to_errno("readdirplus", &e)),
            }
        });
    }

    fn releasedir(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let Some(h) = self.s.handles.remove(fh.0) else {
            tracing::debug!(fh = fh.0, "releasedir of an unknown handle");
            return reply.ok();
        };
        let cx = cx(req, None);
        self.spawn_on(Arc::clone(&h.generation), move |_, graph| async move {
            if let Err(e) = graph.top().releasedir(&cx, h.fd.clone()).await {
                tracing::warn!(fd = ?h.fd, "releasedir failed: {e}");
            }
            reply.ok();
        });
    }

    fn fsyncdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let h = or_reply!(reply, self.s.handle(fh));
        let cx = cx(req, None);
        self.spawn_on(Arc::clone(&h.generation), move |_, graph| async move {
            match graph
                .top()
                .fsyncdir(&cx, h.fd.clone(), datasync, Xdata::new())
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(to_errno("fsyncdir", &e)),
            }
        });
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let cx = cx(req, None);
        self.spawn(move |_, graph| async move {
            match graph
                .top()
                .statfs(&cx, Loc::inode(Gfid::ROOT), Xdata::new())
                .await
            {
                Ok(f) => reply.statfs(
                    f.blocks, f.bfree, f.bavail, f.files, f.ffree, f.bsize, f.namelen, f.frsize,
                ),
                Err(e) => reply.error(to_errno("statfs", &e)),
            }
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        if !is_user(name.as_bytes()) {
            return reply.error(FOREIGN_SET);
        }
        if position != 0 {
            return reply.error(Errno::EINVAL);
        }
        let name = or_reply!(reply, utf8(name)).to_string();
        let gfid = or_reply!(reply, self.s.gfid(ino));
        let mut xattrs = Xdata::new();
        xattrs.set(name, value.to_vec());
        let cx = cx(req, None);
        self.spawn(move |_, graph| async move {
            let target = Target::Loc(Loc::inode(gfid));
            match graph
                .top()
                .setxattr(&cx, target, xattrs, flags, Xdata::new())
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(to_errno("setxattr", &e)),
            }
        });
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !is_user(name.as_bytes()) {
            return reply.error(FOREIGN_GET);
        }
        let name = or_reply!(reply, utf8(name)).to_string();
        let gfid = or_reply!(reply, self.s.gfid(ino));
        let cx = cx(req, None);
        self.spawn(move |_, graph| async move {
            let target = Target::Loc(Loc::inode(gfid));
            let r = graph
                .top()
                .getxattr(&cx, target, Some(name.clone()), Xdata::new());
            let all = match r.await {
                Ok(all) => all,
                Err(e) => return reply.error(to_errno("getxattr", &e)),
            };
            let Some(value) = all.get(&name) else {
                return reply.error(Errno::NO_XATTR);
            };
            match sized(value, size) {
                Ok(SizedReply::Size(n)) => reply.size(n),
                Ok(SizedReply::Data(d)) => reply.data(d),
                Err(errno) => reply.error(errno),
            }
        });
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let gfid = or_reply!(reply, self.s.gfid(ino));
        let cx = cx(req, None);
        self.spawn(move |_, graph| async move {
            let target = Target::Loc(Loc::inode(gfid));
            let all = match graph.top().getxattr(&cx, target, None, Xdata::new()).await {
                Ok(all) => all,
                Err(e) => return reply.error(to_errno("listxattr", &e)),
            };
            let list = name_list(&all);
            match sized(&list, size) {
                Ok(SizedReply::Size(n)) => reply.size(n),
                Ok(SizedReply::Data(d)) => reply.data(d),
                Err(errno) => reply.error(errno),
            }
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if !is_user(name.as_bytes()) {
            return reply.error(FOREIGN_SET);
        }
        let name = or_reply!(reply, utf8(name)).to_string();
        let gfid = or_reply!(reply, self.s.gfid(ino));
        let cx = cx(req, None);
        self.spawn(move |_, graph| async move {
            let target = Target::Loc(Loc::inode(gfid));
            match graph
                .top()
                .removexattr(&cx, target, name, Xdata::new())
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(to_errno("removexattr", &e)),
            }
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let gfid = or_reply!(reply, self.s.gfid(ino));
        let cx = cx(req, None);
        let mask = mask.bits() as u32;
        self.spawn(move |_, graph| async move {
            match graph
                .top()
                .access(&cx, Loc::inode(gfid), mask, Xdata::new())
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(to_errno("access", &e)),
            }
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let pgfid = or_reply!(reply, self.s.gfid(parent));
        let name = or_reply!(reply, entry_name(name));
        let cx = cx(req, None);
        self.spawn(move |s, graph| async move {
            let g = Gfid::random();
            let fd = Fd::new(g, flags);
            let loc = Loc::entry(pgfid, name).with_gfid(g);
            let r = graph
                .top()
                .create(&cx, loc, flags, mode, umask, fd.clone(), Xdata::new())
                .await;
            let iatt = match r {
                Ok(entry) => entry.iatt,
                Err(e) => return reply.error(to_errno("create", &e)),
            };
            let fd = match s.rebind_created(&graph, &cx, fd, &iatt, flags).await {
                Ok(fd) => fd,
                Err(e) => return reply.error(to_errno("create", &e)),
            };
            let attr = match s.entry_attr(&iatt, parent, Some(g)) {
                Ok(attr) => attr,
                Err(errno) => return reply.error(errno),
            };
            let fh = s.handles.insert(fd, Arc::clone(&graph));
            let ttl = s.opts.entry_timeout.min(s.opts.attr_timeout);
            reply.created(&ttl, &attr, GENERATION, FileHandle(fh), FopenFlags::empty());
        });
    }

    fn fallocate(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let h = or_reply!(reply, self.s.handle(fh));
        let cx = cx(req, None);
        self.spawn_on(Arc::clone(&h.generation), move |_, graph| async move {
            let r = graph
                .top()
                .fallocate(&cx, h.fd.clone(), mode, offset, length, Xdata::new())
                .await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(to_errno("fallocate", &e)),
            }
        });
    }

    fn lseek(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let whence = match whence {
            libc::SEEK_DATA => Whence::Data,
            libc::SEEK_HOLE => Whence::Hole,
            _ => return reply.error(Errno::EINVAL),
        };
        let offset = or_reply!(reply, u64::try_from(offset).map_err(|_| Errno::EINVAL));
        let h = or_reply!(reply, self.s.handle(fh));
        let cx = cx(req, None);
        self.spawn_on(Arc::clone(&h.generation), move |_, graph| async move {
            match graph
                .top()
                .lseek(&cx, h.fd.clone(), offset, whence, Xdata::new())
                .await
            {
                Ok(pos) => match i64::try_from(pos) {
                    Ok(pos) => reply.offset(pos),
                    Err(_) => reply.error(Errno::EOVERFLOW),
                },
                Err(e) => reply.error(to_errno("lseek", &e)),
            }
        });
    }
}

impl Shared {
    /// After `create`: when the volume opened an existing file instead of creating one
    /// (another client created the name first and `O_EXCL` was not given), the reply
    /// carries that file's gfid, not the proposed one. The handle is then reopened under
    /// the real gfid so every later fop on it names the right file.
    async fn rebind_created(
        &self,
        graph: &Generation,
        cx: &Cx,
        fd: Fd,
        iatt: &Iatt,
        flags: i32,
    ) -> FopResult<Fd> {
        if iatt.gfid.is_null() || iatt.gfid == fd.gfid() {
            return Ok(fd);
        }
        tracing::debug!(proposed = %fd.gfid(), actual = %iatt.gfid, "create opened an existing file");
        if let Err(e) = graph.top().release(cx, fd).await {
            tracing::debug!("release after create: {e}");
        }
        let flags = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC);
        let real = Fd::new(iatt.gfid, flags);
        graph
            .top()
            .open(cx, Loc::inode(iatt.gfid), flags, real.clone(), Xdata::new())
            .await
            .map_err(|e: FopError| e.context("reopening a file create found existing"))?;
        Ok(real)
    }
}
