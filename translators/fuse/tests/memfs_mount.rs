//! A real FUSE mount over an in-memory leaf translator: checks the kernel-facing behaviour
//! of the edge (inode numbers, readdirplus `.`/`..`, xattr namespaces, unmount, live graph
//! switches) without bricks or a network.
//!
//! Needs root and `/dev/fuse`, like every mount test (`scripts/test` runs as root).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_translators::graph::{BuildCtx, TranslatorType};
use cairn_translators::{
    Cx, DirEntry, Entry, Fd, FileKind, FopError, FopResult, Gfid, Graph, Iatt, Loc, Payload,
    Registry, SetAttr, Statfs, Target, TimeSet, Timespec, Translator, Xdata, XlatorBase, XlatorRef,
};
use cairn_volfiles::{Arity, Maturity, Role, TypeDecl};

#[derive(Clone)]
struct Node {
    iatt: Iatt,
    data: Vec<u8>,
    children: BTreeMap<String, Gfid>,
    target: String,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// A whole volume in memory: what the bricks would hold. Every graph built for the volume
/// gets its own [`MemXl`] over the same `Mem`.
struct Mem {
    nodes: Mutex<HashMap<Gfid, Node>>,
    lookups: AtomicU64,
    /// `MemXl`s alive (built and not yet dropped).
    instances: AtomicUsize,
}

/// The leaf translator of one graph over a [`Mem`]. Like `protocol/client`, it knows only
/// the fds opened through it, and fails everything once stopped: a fop reaching the wrong
/// graph, or a graph stopped too early, shows up as an error.
struct MemXl {
    base: XlatorBase,
    mem: Arc<Mem>,
    open: Mutex<HashSet<u64>>,
    stopped: AtomicBool,
}

impl std::ops::Deref for MemXl {
    type Target = Mem;
    fn deref(&self) -> &Mem {
        &self.mem
    }
}

impl Drop for MemXl {
    fn drop(&mut self) {
        self.mem.instances.fetch_sub(1, Ordering::SeqCst);
    }
}

impl MemXl {
    fn live(&self) -> FopResult<()> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(FopError::new(libc::ENOTCONN, "this graph was stopped"));
        }
        Ok(())
    }

    fn opened(&self, fd: &Fd) -> FopResult<()> {
        self.live()?;
        self.open.lock().unwrap().insert(fd.id());
        Ok(())
    }

    fn known(&self, fd: &Fd) -> FopResult<()> {
        self.live()?;
        if !self.open.lock().unwrap().contains(&fd.id()) {
            return Err(FopError::new(libc::EBADF, "fd not opened on this graph"));
        }
        Ok(())
    }

    fn target_gfid(&self, t: &Target) -> FopResult<Gfid> {
        self.live()?;
        if let Target::Fd(fd) = t {
            self.known(fd)?;
        }
        self.mem.target_gfid(t)
    }
}

/// Volumes by name, for the graph builder (whose constructors are plain functions).
static VOLUMES: Mutex<BTreeMap<String, Arc<Mem>>> = Mutex::new(BTreeMap::new());

fn build_mem(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let mem = VOLUMES
        .lock()
        .unwrap()
        .get(ctx.volume)
        .cloned()
        .ok_or_else(|| format!("no memory volume {}", ctx.volume))?;
    mem.instances.fetch_add(1, Ordering::SeqCst);
    Ok(Arc::new(MemXl {
        base: XlatorBase::new(ctx.name, "test/mem", Vec::new()),
        mem,
        open: Mutex::new(HashSet::new()),
        stopped: AtomicBool::new(false),
    }))
}

/// Registers `mem` as volume `volume` and returns a fresh graph over it.
fn graph(volume: &str, mem: &Arc<Mem>) -> Graph {
    VOLUMES
        .lock()
        .unwrap()
        .insert(volume.to_string(), Arc::clone(mem));
    let mut registry = Registry::builtin();
    registry.register(TranslatorType {
        decl: TypeDecl {
            type_name: "test/mem",
            arity: Arity::Leaf,
            roles: &[Role::Client],
            maturity: Maturity::Stable,
            options: &[],
            doc: "A volume in memory.",
        },
        build: build_mem,
    });
    let vf = cairn_volfiles::parse(&format!(
        "version: 1\nvolume: {volume}\nrole: client\ntop: {volume}-io-stats\ngraph:\n\
         - {{name: {volume}-mem, type: test/mem}}\n\
         - {{name: {volume}-io-stats, type: debug/io-stats, subvolumes: [{volume}-mem]}}\n"
    ))
    .unwrap();
    Graph::from_volfile(&vf, &registry).unwrap()
}

fn now() -> Timespec {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    Timespec {
        sec: d.as_secs() as i64,
        nsec: d.subsec_nanos(),
    }
}

fn enoent(what: impl std::fmt::Display) -> FopError {
    FopError::new(libc::ENOENT, format!("{what}: no such file"))
}

impl Mem {
    fn new() -> Arc<Mem> {
        let mut nodes = HashMap::new();
        nodes.insert(
            Gfid::ROOT,
            Node {
                iatt: Iatt {
                    gfid: Gfid::ROOT,
                    kind: FileKind::Dir,
                    perm: 0o755,
                    nlink: 2,
                    // A pre-1970 mtime must not upset anything.
                    mtime: Timespec {
                        sec: -86_400,
                        nsec: 5,
                    },
                    ..Iatt::default()
                },
                data: Vec::new(),
                children: BTreeMap::new(),
                target: String::new(),
                xattrs: BTreeMap::new(),
            },
        );
        Arc::new(Mem {
            nodes: Mutex::new(nodes),
            lookups: AtomicU64::new(0),
            instances: AtomicUsize::new(0),
        })
    }

    fn gfid_of(&self, loc: &Loc) -> FopResult<Gfid> {
        if let Some(g) = loc.gfid
            && loc.parent.is_none()
        {
            return Ok(g);
        }
        let (p, name) = loc.parent_and_name()?;
        let nodes = self.nodes.lock().unwrap();
        nodes
            .get(&p)
            .and_then(|n| n.children.get(name).copied())
            .ok_or_else(|| enoent(loc))
    }

    fn target_gfid(&self, t: &Target) -> FopResult<Gfid> {
        match t {
            Target::Fd(fd) => Ok(fd.gfid()),
            Target::Loc(l) => self.gfid_of(l),
        }
    }

    fn iatt(&self, g: Gfid) -> FopResult<Iatt> {
        self.nodes
            .lock()
            .unwrap()
            .get(&g)
            .map(|n| n.iatt.clone())
            .ok_or_else(|| enoent(g))
    }

    fn make(&self, cx: &Cx, loc: &Loc, kind: FileKind, perm: u32) -> FopResult<Entry> {
        let (p, name) = loc.parent_and_name()?;
        let g = loc.gfid.unwrap_or_else(Gfid::random);
        let mut nodes = self.nodes.lock().unwrap();
        let parent = nodes.get_mut(&p).ok_or_else(|| enoent(p))?;
        if parent.children.contains_key(name) {
            return Err(FopError::new(libc::EEXIST, format!("{loc} exists")));
        }
        parent.children.insert(name.to_string(), g);
        let t = now();
        let iatt = Iatt {
            gfid: g,
            kind,
            perm: perm & 0o7777,
            nlink: if kind == FileKind::Dir { 2 } else { 1 },
            uid: cx.uid,
            gid: cx.gid,
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
            ..Iatt::default()
        };
        nodes.insert(
            g,
            Node {
                iatt: iatt.clone(),
                data: Vec::new(),
                children: BTreeMap::new(),
                target: String::new(),
                xattrs: BTreeMap::new(),
            },
        );
        Ok(Entry {
            iatt,
            xdata: Xdata::new(),
        })
    }

    fn remove(&self, loc: &Loc, dir: bool) -> FopResult<()> {
        let (p, name) = loc.parent_and_name()?;
        let mut nodes = self.nodes.lock().unwrap();
        let g = *nodes
            .get(&p)
            .and_then(|n| n.children.get(name))
            .ok_or_else(|| enoent(loc))?;
        let node = nodes.get(&g).ok_or_else(|| enoent(g))?;
        match (dir, node.iatt.kind == FileKind::Dir) {
            (true, false) => return Err(FopError::new(libc::ENOTDIR, "not a directory")),
            (false, true) => return Err(FopError::new(libc::EISDIR, "is a directory")),
            (true, true) if !node.children.is_empty() => {
                return Err(FopError::new(libc::ENOTEMPTY, "not empty"));
            }
            _ => {}
        }
        nodes.get_mut(&p).unwrap().children.remove(name);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Translator for MemXl {
    cairn_translators::xlator_base!();

    async fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    async fn lookup(&self, _cx: &Cx, loc: Loc, _x: Xdata) -> FopResult<Entry> {
        self.live()?;
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let g = self.gfid_of(&loc)?;
        Ok(Entry {
            iatt: self.iatt(g)?,
            xdata: Xdata::new(),
        })
    }

    async fn stat(&self, _cx: &Cx, target: Target, _x: Xdata) -> FopResult<Iatt> {
        self.iatt(self.target_gfid(&target)?)
    }

    async fn setattr(&self, _cx: &Cx, t: Target, a: SetAttr, _x: Xdata) -> FopResult<Iatt> {
        let g = self.target_gfid(&t)?;
        let mut nodes = self.nodes.lock().unwrap();
        let n = nodes.get_mut(&g).ok_or_else(|| enoent(g))?;
        if let Some(p) = a.perm {
            n.iatt.perm = p;
        }
        if let Some(u) = a.uid {
            n.iatt.uid = u;
        }
        if let Some(g) = a.gid {
            n.iatt.gid = g;
        }
        let set = |t: TimeSet| match t {
            TimeSet::Now => now(),
            TimeSet::At(t) => t,
        };
        if let Some(t) = a.atime {
            n.iatt.atime = set(t);
        }
        if let Some(t) = a.mtime {
            n.iatt.mtime = set(t);
        }
        Ok(n.iatt.clone())
    }

    async fn truncate(&self, _cx: &Cx, t: Target, size: u64, _x: Xdata) -> FopResult<Iatt> {
        let g = self.target_gfid(&t)?;
        let mut nodes = self.nodes.lock().unwrap();
        let n = nodes.get_mut(&g).ok_or_else(|| enoent(g))?;
        n.data.resize(size as usize, 0);
        n.iatt.size = size;
        Ok(n.iatt.clone())
    }

    async fn readlink(&self, _cx: &Cx, loc: Loc, _x: Xdata) -> FopResult<String> {
        let g = self.gfid_of(&loc)?;
        Ok(self.nodes.lock().unwrap()[&g].target.clone())
    }

    async fn mkdir(&self, cx: &Cx, loc: Loc, mode: u32, _um: u32, _x: Xdata) -> FopResult<Entry> {
        self.make(cx, &loc, FileKind::Dir, mode)
    }

    async fn unlink(&self, _cx: &Cx, loc: Loc, _x: Xdata) -> FopResult<()> {
        self.remove(&loc, false)
    }

    async fn rmdir(&self, _cx: &Cx, loc: Loc, _x: Xdata) -> FopResult<()> {
        self.remove(&loc, true)
    }

    async fn symlink(
        &self,
        cx: &Cx,
        target: String,
        loc: Loc,
        _um: u32,
        _x: Xdata,
    ) -> FopResult<Entry> {
        let e = self.make(cx, &loc, FileKind::Symlink, 0o777)?;
        let mut nodes = self.nodes.lock().unwrap();
        let n = nodes.get_mut(&e.iatt.gfid).unwrap();
        n.iatt.size = target.len() as u64;
        n.target = target;
        Ok(Entry {
            iatt: n.iatt.clone(),
            xdata: Xdata::new(),
        })
    }

    async fn rename(&self, _cx: &Cx, old: Loc, new: Loc, _f: u32, _x: Xdata) -> FopResult<()> {
        let (op, on) = old.parent_and_name()?;
        let (np, nn) = new.parent_and_name()?;
        let mut nodes = self.nodes.lock().unwrap();
        let g = nodes
            .get_mut(&op)
            .and_then(|n| n.children.remove(on))
            .ok_or_else(|| enoent(&old))?;
        nodes
            .get_mut(&np)
            .ok_or_else(|| enoent(np))?
            .children
            .insert(nn.to_string(), g);
        Ok(())
    }

    async fn create(
        &self,
        cx: &Cx,
        loc: Loc,
        _flags: i32,
        mode: u32,
        _um: u32,
        fd: Fd,
        _x: Xdata,
    ) -> FopResult<Entry> {
        self.live()?;
        let e = self.make(cx, &loc, FileKind::File, mode)?;
        self.opened(&fd)?;
        Ok(e)
    }

    async fn open(&self, _cx: &Cx, loc: Loc, flags: i32, fd: Fd, _x: Xdata) -> FopResult<()> {
        self.opened(&fd)?;
        let g = self.gfid_of(&loc)?;
        if flags & libc::O_TRUNC != 0 {
            let mut nodes = self.nodes.lock().unwrap();
            let n = nodes.get_mut(&g).unwrap();
            n.data.clear();
            n.iatt.size = 0;
        }
        Ok(())
    }

    async fn read(&self, _cx: &Cx, fd: Fd, off: u64, size: u32, _x: Xdata) -> FopResult<Payload> {
        self.known(&fd)?;
        let nodes = self.nodes.lock().unwrap();
        let data = &nodes.get(&fd.gfid()).ok_or_else(|| enoent(fd.gfid()))?.data;
        let start = (off as usize).min(data.len());
        let end = (start + size as usize).min(data.len());
        Ok(Payload::new(Bytes::copy_from_slice(&data[start..end])))
    }

    async fn write(&self, _cx: &Cx, fd: Fd, off: u64, data: Payload, _x: Xdata) -> FopResult<Iatt> {
        self.known(&fd)?;
        let mut nodes = self.nodes.lock().unwrap();
        let n = nodes.get_mut(&fd.gfid()).ok_or_else(|| enoent(fd.gfid()))?;
        let end = off as usize + data.len();
        if n.data.len() < end {
            n.data.resize(end, 0);
        }
        n.data[off as usize..end].copy_from_slice(data.bytes());
        n.iatt.size = n.data.len() as u64;
        n.iatt.blocks = n.iatt.size.div_ceil(512);
        Ok(n.iatt.clone())
    }

    async fn flush(&self, _cx: &Cx, fd: Fd, _x: Xdata) -> FopResult<()> {
        self.known(&fd)
    }

    async fn fsync(&self, _cx: &Cx, fd: Fd, _d: bool, _x: Xdata) -> FopResult<()> {
        self.known(&fd)
    }

    async fn release(&self, _cx: &Cx, fd: Fd) -> FopResult<()> {
        self.known(&fd)?;
        self.open.lock().unwrap().remove(&fd.id());
        Ok(())
    }

    async fn opendir(&self, _cx: &Cx, loc: Loc, fd: Fd, _x: Xdata) -> FopResult<()> {
        self.gfid_of(&loc)?;
        self.opened(&fd)
    }

    async fn readdir(
        &self,
        _cx: &Cx,
        fd: Fd,
        offset: u64,
        _size: u32,
        plus: bool,
        _x: Xdata,
    ) -> FopResult<Vec<DirEntry>> {
        self.known(&fd)?;
        let nodes = self.nodes.lock().unwrap();
        let dir = nodes.get(&fd.gfid()).ok_or_else(|| enoent(fd.gfid()))?;
        let mut all = vec![
            DirEntry {
                name: ".".into(),
                offset: 1,
                gfid: Gfid::NULL,
                kind: FileKind::Dir,
                iatt: None,
            },
            DirEntry {
                name: "..".into(),
                offset: 2,
                gfid: Gfid::NULL,
                kind: FileKind::Dir,
                iatt: None,
            },
        ];
        for (i, (name, g)) in dir.children.iter().enumerate() {
            let iatt = nodes[g].iatt.clone();
            all.push(DirEntry {
                name: name.clone(),
                offset: i as u64 + 3,
                gfid: *g,
                kind: iatt.kind,
                iatt: plus.then_some(iatt),
            });
        }
        // Small batches, so the edge has to ask several times per kernel request.
        Ok(all.into_iter().skip(offset as usize).take(7).collect())
    }

    async fn releasedir(&self, _cx: &Cx, fd: Fd) -> FopResult<()> {
        self.known(&fd)?;
        self.open.lock().unwrap().remove(&fd.id());
        Ok(())
    }

    async fn statfs(&self, _cx: &Cx, _loc: Loc, _x: Xdata) -> FopResult<Statfs> {
        Ok(Statfs {
            blocks: 1000,
            bfree: 600,
            bavail: 500,
            files: 100,
            ffree: 90,
            bsize: 4096,
            frsize: 4096,
            namelen: 255,
        })
    }

    async fn setxattr(&self, _cx: &Cx, t: Target, x: Xdata, _f: i32, _xd: Xdata) -> FopResult<()> {
        let g = self.target_gfid(&t)?;
        let mut nodes = self.nodes.lock().unwrap();
        nodes
            .get_mut(&g)
            .unwrap()
            .xattrs
            .extend(x.0.into_iter().map(|(k, v)| (k, v.to_vec())));
        Ok(())
    }

    async fn getxattr(
        &self,
        _cx: &Cx,
        t: Target,
        name: Option<String>,
        _x: Xdata,
    ) -> FopResult<Xdata> {
        let g = self.target_gfid(&t)?;
        let nodes = self.nodes.lock().unwrap();
        let all = &nodes[&g].xattrs;
        let mut out = Xdata::new();
        match name {
            Some(n) => match all.get(&n) {
                Some(v) => out.set(n, v.clone()),
                None => return Err(FopError::new(libc::ENODATA, "no such xattr")),
            },
            None => {
                for (k, v) in all {
                    out.set(k.clone(), v.clone());
                }
                // Something an application must never see.
                out.set("trusted.cairn.gfid", g.0.to_vec());
            }
        }
        Ok(out)
    }

    async fn removexattr(&self, _cx: &Cx, t: Target, name: String, _x: Xdata) -> FopResult<()> {
        let g = self.target_gfid(&t)?;
        let mut nodes = self.nodes.lock().unwrap();
        match nodes.get_mut(&g).unwrap().xattrs.remove(&name) {
            Some(_) => Ok(()),
            None => Err(FopError::new(libc::ENODATA, "no such xattr")),
        }
    }
}

fn xattr_get(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let out = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(out.status.code().unwrap_or(-1))
    }
}

#[test]
fn a_real_mount_behaves() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mem = Mem::new();
    let dir = std::env::temp_dir().join(format!("cairn-fuse-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = cairn_fuse::MountOptions {
        fsname: "cairn:memtest".into(),
        ..Default::default()
    };
    let handle =
        cairn_fuse::mount(graph("memtest", &mem), &dir, &opts, rt.handle().clone()).unwrap();
    let mp = handle.mountpoint().to_path_buf();
    assert_eq!(
        cairn_fuse::mounted_at(&mp).unwrap().as_deref(),
        Some("cairn:memtest")
    );

    // Root: inode 1, a pre-1970 mtime.
    let root = std::fs::metadata(&mp).unwrap();
    assert_eq!(root.ino(), 1);
    assert_eq!(root.mtime(), -86_400);

    // Files: create, write, read back, inode number = gfid.ino().
    let file = mp.join("image-0001.dcm");
    std::fs::write(&file, b"DICM payload").unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), b"DICM payload");
    let md = std::fs::metadata(&file).unwrap();
    assert_eq!(md.len(), 12);
    let gfid = {
        let nodes = mem.nodes.lock().unwrap();
        nodes[&Gfid::ROOT].children["image-0001.dcm"]
    };
    assert_eq!(md.ino(), gfid.ino());

    // Random access, truncate, chmod.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file)
        .unwrap();
    f.seek(SeekFrom::Start(5)).unwrap();
    f.write_all(b"PAYLOAD").unwrap();
    f.set_len(8).unwrap();
    drop(f);
    let mut back = String::new();
    std::fs::File::open(&file)
        .unwrap()
        .read_to_string(&mut back)
        .unwrap();
    assert_eq!(back, "DICM PAY");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o600);

    // Directories with more entries than one volume batch and one kernel page.
    let study = mp.join("study");
    std::fs::create_dir(&study).unwrap();
    for i in 0..200 {
        std::fs::write(
            study.join(format!("slice-{i:04}-with-a-long-name.dcm")),
            b"x",
        )
        .unwrap();
    }
    let names: Vec<String> = std::fs::read_dir(&study)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 200, "every entry exactly once");
    let ls = std::process::Command::new("ls")
        .args(["-ai"])
        .arg(&study)
        .output()
        .unwrap();
    let ls = String::from_utf8(ls.stdout).unwrap();
    let dot = ls
        .lines()
        .find(|l| l.ends_with(" ."))
        .expect("ls -a shows .");
    let dotdot = ls
        .lines()
        .find(|l| l.ends_with(" .."))
        .expect("ls -a shows ..");
    let study_ino = std::fs::metadata(&study).unwrap().ino();
    assert_eq!(
        dot.split_whitespace().next().unwrap(),
        study_ino.to_string()
    );
    assert_eq!(dotdot.split_whitespace().next().unwrap(), "1");
    // `ls -l` (readdirplus) then stat of every entry: answered from the kernel's cache.
    let before = mem.lookups.load(Ordering::Relaxed);
    let status = std::process::Command::new("ls")
        .args(["-l"])
        .arg(&study)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let after = mem.lookups.load(Ordering::Relaxed);
    assert!(
        after - before < 50,
        "readdirplus primed the cache ({} lookups)",
        after - before
    );

    // Rename, symlink, unlink, rmdir.
    std::fs::rename(&file, study.join("moved.dcm")).unwrap();
    assert!(!file.exists());
    std::os::unix::fs::symlink("moved.dcm", study.join("link")).unwrap();
    assert_eq!(
        std::fs::read_link(study.join("link")).unwrap(),
        Path::new("moved.dcm")
    );
    assert_eq!(std::fs::read(study.join("link")).unwrap(), b"DICM PAY");
    std::fs::remove_file(study.join("link")).unwrap();
    assert_eq!(
        std::fs::remove_dir(&study).unwrap_err().raw_os_error(),
        Some(libc::ENOTEMPTY)
    );

    // xattrs: user. passes, trusted. is refused and never listed.
    let status = std::process::Command::new("setfattr")
        .args(["-n", "user.study", "-v", "CT-42"])
        .arg(study.join("moved.dcm"))
        .status();
    if let Ok(status) = status {
        assert!(status.success());
        assert_eq!(
            xattr_get(&study.join("moved.dcm"), "user.study").unwrap(),
            b"CT-42"
        );
        assert!(xattr_get(&study.join("moved.dcm"), "user.nope").is_err());
        assert!(xattr_get(&study.join("moved.dcm"), "trusted.cairn.gfid").is_err());
        let set_trusted = std::process::Command::new("setfattr")
            .args(["-n", "trusted.x", "-v", "1"])
            .arg(study.join("moved.dcm"))
            .output()
            .unwrap();
        assert!(!set_trusted.status.success());
        let dump = std::process::Command::new("getfattr")
            .args(["-d", "-m", "-"])
            .arg(study.join("moved.dcm"))
            .output()
            .unwrap();
        let dump = String::from_utf8_lossy(&dump.stdout);
        assert!(dump.contains("user.study"), "{dump}");
        assert!(!dump.contains("trusted"), "{dump}");
    }

    // statfs
    let df = nix::sys::statvfs::statvfs(&mp).unwrap();
    assert_eq!(df.blocks(), 1000);
    assert_eq!(df.blocks_available(), 500);

    // Non-UTF-8 names are refused.
    {
        use std::os::unix::ffi::OsStrExt;
        let latin1 = mp.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        assert_eq!(
            std::fs::write(&latin1, b"x").unwrap_err().raw_os_error(),
            Some(libc::EILSEQ)
        );
    }

    // A busy mount is not unmounted; a detach always works.
    let busy = std::fs::File::open(study.join("moved.dcm")).unwrap();
    let unmounter = handle.unmounter();
    let err = unmounter.unmount().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
    unmounter.detach().unwrap();
    assert_eq!(cairn_fuse::mounted_at(&mp).unwrap(), None);
    drop(busy);
    handle.join().unwrap();
    std::fs::remove_dir(&dir).unwrap();
}

/// Polls `what` until it is true, for at most 10 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn graphs_switch_under_open_files_and_a_busy_writer() {
    const SWITCHES: u64 = 50;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mem = Mem::new();
    let dir = std::env::temp_dir().join(format!("cairn-fuse-switch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = cairn_fuse::MountOptions {
        fsname: "cairn:switchtest".into(),
        ..Default::default()
    };
    let handle =
        cairn_fuse::mount(graph("switchtest", &mem), &dir, &opts, rt.handle().clone()).unwrap();
    let mp = handle.mountpoint().to_path_buf();
    let switcher = handle.switcher();
    assert_eq!(switcher.live_generations(), 1);
    assert_eq!(switcher.current_generation(), Some(1));

    // A file opened on the first graph and kept open through every switch.
    let held_path = mp.join("held.dcm");
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&held_path)
        .unwrap();
    held.write_all_at(b"generation 1;", 0).unwrap();

    // A writer that keeps creating, writing, reading back and listing through the mount.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let work = mp.join("incoming");
        std::fs::create_dir(&work).unwrap();
        std::thread::spawn(move || -> Result<u64, String> {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) || n < 20 {
                let path = work.join(format!("image-{n:05}.dcm"));
                let body = format!("image {n} ").repeat(100);
                std::fs::write(&path, &body).map_err(|e| format!("write {n}: {e}"))?;
                let back = std::fs::read_to_string(&path).map_err(|e| format!("read {n}: {e}"))?;
                if back != body {
                    return Err(format!("image {n} read back differently"));
                }
                if n.is_multiple_of(10) {
                    let count = std::fs::read_dir(&work)
                        .map_err(|e| format!("list: {e}"))?
                        .count() as u64;
                    if count != n + 1 {
                        return Err(format!("listed {count} images, expected {}", n + 1));
                    }
                }
                n += 1;
            }
            Ok(n)
        })
    };

    for k in 2..=SWITCHES + 1 {
        assert_eq!(switcher.switch(graph("switchtest", &mem)), Some(k));
        // The held file keeps working on the graph that opened it.
        let note = format!("switch {k};");
        let at = held.metadata().unwrap().len();
        held.write_all_at(note.as_bytes(), at).unwrap();
        let mut back = vec![0u8; note.len()];
        held.read_exact_at(&mut back, at).unwrap();
        assert_eq!(back, note.as_bytes());
        // New names and opens go to the new graph.
        std::fs::write(mp.join(format!("after-{k}")), k.to_string()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap().unwrap();
    assert!(written >= 20, "{written}");

    // Generation 1 stays alive for the held file; every other old graph is gone.
    eventually("two live generations", || switcher.live_generations() == 2);
    eventually("two translator instances", || {
        mem.instances.load(Ordering::SeqCst) == 2
    });
    let text = std::fs::read_to_string(&held_path).unwrap();
    assert!(
        text.starts_with("generation 1;switch 2;switch 3;"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("switch {};", SWITCHES + 1)),
        "{text}"
    );
    held.sync_all().unwrap();
    drop(held);
    eventually("one live generation", || switcher.live_generations() == 1);
    eventually("one translator instance", || {
        mem.instances.load(Ordering::SeqCst) == 1
    });
    assert_eq!(switcher.current_generation(), Some(SWITCHES + 1));

    // Files written through any generation are all there, through the newest one.
    let names: HashSet<String> = std::fs::read_dir(&mp)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for k in 2..=SWITCHES + 1 {
        assert!(names.contains(&format!("after-{k}")), "after-{k} missing");
    }
    assert_eq!(
        std::fs::read_dir(mp.join("incoming")).unwrap().count() as u64,
        written
    );

    // After the unmount, the last graph is stopped and freed too.
    handle.unmount_and_join().unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), switcher.stopped())
            .await
            .expect("every generation stops after the unmount");
    });
    assert_eq!(switcher.live_generations(), 0);
    assert_eq!(switcher.current_generation(), None);
    eventually("no translator instance", || {
        mem.instances.load(Ordering::SeqCst) == 0
    });
    std::fs::remove_dir(&dir).unwrap();
}

/// A request the graph can answer without waiting is answered on the FUSE thread that read
/// it, not handed to a runtime thread (the caches answer most of an image read this way).
/// Here the runtime is never driven at all: a current-thread runtime nobody runs, so any
/// request handed to it would never be answered. Over the in-memory volume, which never
/// waits, a whole create, write, read, stat, list and delete still completes.
#[test]
fn requests_that_need_no_waiting_are_answered_without_the_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mem = Mem::new();
    let dir = std::env::temp_dir().join(format!("cairn-fuse-inline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = cairn_fuse::MountOptions {
        fsname: "cairn:inlinetest".into(),
        ..Default::default()
    };
    let handle =
        cairn_fuse::mount(graph("inlinetest", &mem), &dir, &opts, rt.handle().clone()).unwrap();
    let mp = handle.mountpoint().to_path_buf();
    let unmounter = handle.unmounter();

    let (done, finished) = std::sync::mpsc::channel();
    let work_mp = mp.clone();
    std::thread::spawn(move || {
        let series = work_mp.join("series");
        std::fs::create_dir(&series).unwrap();
        let image = series.join("IM-0001.dcm");
        std::fs::write(&image, b"DICM inline").unwrap();
        let back = std::fs::read(&image).unwrap();
        let len = std::fs::metadata(&image).unwrap().len();
        let names: Vec<String> = std::fs::read_dir(&series)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        std::fs::remove_file(&image).unwrap();
        let _ = done.send((back, len, names));
    });
    let got = finished.recv_timeout(Duration::from_secs(20));
    if got.is_err() {
        // Unblock the stuck thread before failing.
        let _ = unmounter.detach();
    }
    let (back, len, names) = got.expect("a request waited for the runtime");
    assert_eq!(back, b"DICM inline");
    assert_eq!(len, 11);
    assert_eq!(names, ["IM-0001.dcm"]);
    {
        let nodes = mem.nodes.lock().unwrap();
        let series = nodes[&Gfid::ROOT].children["series"];
        assert!(
            nodes[&series].children.is_empty(),
            "the delete reached the volume"
        );
    }
    unmounter.unmount().unwrap();
    handle.join().unwrap();
    std::fs::remove_dir(&dir).unwrap();
}
