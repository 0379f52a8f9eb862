use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::error::FopError;
use crate::testing::conformance;
use crate::types::FileKind;

/// A volume in memory: names in directories and attributes by gfid, counting every call
/// that reaches it by fop name. A lookup can be held back until `release_lookups`.
struct Store {
    base: XlatorBase,
    names: Mutex<HashMap<(Gfid, String), Gfid>>,
    inodes: Mutex<HashMap<Gfid, Iatt>>,
    calls: Mutex<Vec<&'static str>>,
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
}

impl Store {
    fn new() -> Arc<Store> {
        let mut inodes = HashMap::new();
        inodes.insert(
            Gfid::ROOT,
            Iatt {
                gfid: Gfid::ROOT,
                kind: FileKind::Dir,
                perm: 0o755,
                nlink: 2,
                ..Iatt::default()
            },
        );
        Arc::new(Store {
            base: XlatorBase::new("store", "test/store", Vec::new()),
            names: Mutex::new(HashMap::new()),
            inodes: Mutex::new(inodes),
            calls: Mutex::new(Vec::new()),
            gate: Mutex::new(None),
        })
    }

    /// Makes (or changes) file `name` in the root directly, as another client would.
    fn put(&self, name: &str, size: u64, perm: u32) -> Gfid {
        let key = (Gfid::ROOT, name.to_string());
        let gfid = *self
            .names
            .lock()
            .unwrap()
            .entry(key)
            .or_insert_with(Gfid::random);
        self.inodes.lock().unwrap().insert(
            gfid,
            Iatt {
                gfid,
                kind: FileKind::File,
                perm,
                nlink: 1,
                size,
                ..Iatt::default()
            },
        );
        gfid
    }

    /// Makes `loc` (a new name) as `kind`, as a mkdir or create reaching the bricks does.
    fn make(&self, loc: &Loc, kind: FileKind, perm: u32) -> FopResult<Iatt> {
        let key = (
            loc.parent.unwrap_or(Gfid::NULL),
            loc.name.clone().unwrap_or_default(),
        );
        let mut names = self.names.lock().unwrap();
        if names.contains_key(&key) {
            return Err(FopError::new(libc::EEXIST, "exists"));
        }
        let gfid = loc.gfid.unwrap_or_else(Gfid::random);
        names.insert(key, gfid);
        let ia = Iatt {
            gfid,
            kind,
            perm,
            nlink: 1,
            ..Iatt::default()
        };
        self.inodes.lock().unwrap().insert(gfid, ia.clone());
        Ok(ia)
    }

    fn hold_lookups(&self) -> Arc<tokio::sync::Semaphore> {
        let s = Arc::new(tokio::sync::Semaphore::new(0));
        *self.gate.lock().unwrap() = Some(Arc::clone(&s));
        s
    }

    fn note(&self, fop: &'static str) {
        self.calls.lock().unwrap().push(fop);
    }

    fn calls(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn attrs(&self, gfid: Gfid) -> FopResult<Iatt> {
        self.inodes
            .lock()
            .unwrap()
            .get(&gfid)
            .cloned()
            .ok_or_else(|| FopError::new(libc::ESTALE, "no such gfid"))
    }
}

#[async_trait::async_trait]
impl Translator for Store {
    crate::xlator_base!();

    async fn lookup(&self, _cx: &Cx, loc: Loc, _xdata: Xdata) -> FopResult<Entry> {
        self.note("lookup");
        // What the reply says is read now; it may arrive late.
        let found = match (loc.parent, &loc.name, loc.gfid) {
            (Some(p), Some(n), _) => self
                .names
                .lock()
                .unwrap()
                .get(&(p, n.clone()))
                .copied()
                .ok_or_else(|| FopError::new(libc::ENOENT, "no such name"))
                .and_then(|g| self.attrs(g)),
            (None, None, Some(g)) => self.attrs(g),
            _ => Err(FopError::invalid("bad loc")),
        };
        let gate = self.gate.lock().unwrap().clone();
        if let Some(g) = gate {
            let _ = g.acquire().await.unwrap();
        }
        Ok(Entry {
            iatt: found?,
            xdata: Xdata::new(),
        })
    }

    async fn stat(&self, _cx: &Cx, target: Target, _x: Xdata) -> FopResult<Iatt> {
        self.note("stat");
        self.attrs(target.gfid().unwrap_or(Gfid::NULL))
    }

    async fn setattr(&self, _cx: &Cx, target: Target, attr: SetAttr, _x: Xdata) -> FopResult<Iatt> {
        self.note("setattr");
        let g = target.gfid().unwrap_or(Gfid::NULL);
        let mut inodes = self.inodes.lock().unwrap();
        let ia = inodes
            .get_mut(&g)
            .ok_or_else(|| FopError::new(libc::ESTALE, "no such gfid"))?;
        if let Some(p) = attr.perm {
            ia.perm = p;
        }
        Ok(ia.clone())
    }

    async fn write(&self, _cx: &Cx, fd: Fd, off: u64, data: Payload, _x: Xdata) -> FopResult<Iatt> {
        self.note("write");
        let mut inodes = self.inodes.lock().unwrap();
        let ia = inodes
            .get_mut(&fd.gfid())
            .ok_or_else(|| FopError::new(libc::ESTALE, "no such gfid"))?;
        ia.size = ia.size.max(off + data.len() as u64);
        Ok(ia.clone())
    }

    async fn unlink(&self, _cx: &Cx, loc: Loc, _x: Xdata) -> FopResult<()> {
        self.note("unlink");
        let key = (
            loc.parent.unwrap_or(Gfid::NULL),
            loc.name.unwrap_or_default(),
        );
        self.names
            .lock()
            .unwrap()
            .remove(&key)
            .map(|_| ())
            .ok_or_else(|| FopError::new(libc::ENOENT, "no such name"))
    }

    async fn mkdir(&self, _cx: &Cx, loc: Loc, perm: u32, _u: u32, _x: Xdata) -> FopResult<Entry> {
        self.note("mkdir");
        Ok(Entry {
            iatt: self.make(&loc, FileKind::Dir, perm)?,
            xdata: Xdata::new(),
        })
    }

    async fn create(
        &self,
        _cx: &Cx,
        loc: Loc,
        _flags: i32,
        perm: u32,
        _u: u32,
        _fd: Fd,
        _x: Xdata,
    ) -> FopResult<Entry> {
        self.note("create");
        Ok(Entry {
            iatt: self.make(&loc, FileKind::File, perm)?,
            xdata: Xdata::new(),
        })
    }

    async fn rename(&self, _cx: &Cx, old: Loc, new: Loc, _f: u32, _x: Xdata) -> FopResult<()> {
        self.note("rename");
        let mut names = self.names.lock().unwrap();
        let g = names
            .remove(&(
                old.parent.unwrap_or(Gfid::NULL),
                old.name.unwrap_or_default(),
            ))
            .ok_or_else(|| FopError::new(libc::ENOENT, "no such name"))?;
        names.insert(
            (
                new.parent.unwrap_or(Gfid::NULL),
                new.name.unwrap_or_default(),
            ),
            g,
        );
        Ok(())
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
        self.note("readdir");
        if offset > 0 {
            return Ok(Vec::new());
        }
        let names = self.names.lock().unwrap();
        let inodes = self.inodes.lock().unwrap();
        Ok(names
            .iter()
            .filter(|((p, _), _)| *p == fd.gfid())
            .enumerate()
            .map(|(i, ((_, n), g))| DirEntry {
                name: n.clone(),
                offset: i as u64 + 1,
                gfid: *g,
                kind: FileKind::File,
                iatt: plus.then(|| inodes.get(g).cloned()).flatten(),
            })
            .collect())
    }
}

fn cfg() -> Config {
    Config {
        timeout: Duration::from_secs(600),
        entries: 1024,
    }
}

fn over(store: &Arc<Store>, cfg: Config) -> MdCache {
    let child: XlatorRef = Arc::clone(store) as XlatorRef;
    MdCache::new("md", vec![child], cfg)
}

fn cx() -> Cx {
    Cx {
        uid: 0,
        gid: 0,
        pid: 100,
        lk_owner: 0,
        client: 0,
    }
}

async fn lookup(md: &MdCache, name: &str) -> FopResult<Iatt> {
    md.lookup(&cx(), Loc::entry(Gfid::ROOT, name), Xdata::new())
        .await
        .map(|e| e.iatt)
}

async fn stat(md: &MdCache, gfid: Gfid) -> Iatt {
    md.stat(&cx(), Target::Loc(Loc::inode(gfid)), Xdata::new())
        .await
        .unwrap()
}

#[tokio::test]
async fn it_passes_every_call_through_unchanged() {
    for c in [
        cfg(),
        Config {
            timeout: Duration::ZERO,
            ..cfg()
        },
    ] {
        conformance(|leaf| Arc::new(MdCache::new("md", vec![leaf], c)) as XlatorRef).await;
    }
}

#[tokio::test]
async fn repeated_lookups_and_stats_are_answered_in_the_client() {
    let store = Store::new();
    let g = store.put("IM-0001.dcm", 57 << 10, 0o644);
    let md = over(&store, cfg());
    for _ in 0..5 {
        let ia = lookup(&md, "IM-0001.dcm").await.unwrap();
        assert_eq!((ia.gfid, ia.size), (g, 57 << 10));
        assert_eq!(stat(&md, g).await.size, 57 << 10);
    }
    assert_eq!(store.calls(), vec!["lookup"]);
    let c = md.counters();
    assert_eq!((c.lookups_served, c.stats_served), (4, 5));
    // A lookup asking for more than attributes, and Cairn's own work, always go down.
    let mut x = Xdata::new();
    x.set_u64("cairn.quick-read.want", 1);
    md.lookup(&cx(), Loc::entry(Gfid::ROOT, "IM-0001.dcm"), x)
        .await
        .unwrap();
    md.lookup(
        &Cx::internal(),
        Loc::entry(Gfid::ROOT, "IM-0001.dcm"),
        Xdata::new(),
    )
    .await
    .unwrap();
    assert_eq!(store.calls(), vec!["lookup", "lookup"]);
}

#[tokio::test]
async fn a_change_through_this_client_is_seen_at_once() {
    let store = Store::new();
    let g = store.put("f", 10, 0o644);
    let md = over(&store, cfg());
    assert_eq!(lookup(&md, "f").await.unwrap().perm, 0o644);
    md.setattr(
        &cx(),
        Target::Loc(Loc::inode(g)),
        SetAttr {
            perm: Some(0o600),
            ..SetAttr::default()
        },
        Xdata::new(),
    )
    .await
    .unwrap();
    assert_eq!(stat(&md, g).await.perm, 0o600);
    assert_eq!(lookup(&md, "f").await.unwrap().perm, 0o600);

    let fd = Fd::new(g, libc::O_WRONLY);
    md.write(&cx(), fd, 10, Payload::new(vec![7u8; 90]), Xdata::new())
        .await
        .unwrap();
    assert_eq!(stat(&md, g).await.size, 100);

    md.unlink(&cx(), Loc::entry(Gfid::ROOT, "f"), Xdata::new())
        .await
        .unwrap();
    assert_eq!(lookup(&md, "f").await.unwrap_err().errno, libc::ENOENT);
}

#[tokio::test]
async fn a_rename_through_this_client_moves_the_name_at_once() {
    let store = Store::new();
    let a = store.put("a", 1, 0o644);
    let b = store.put("b", 2, 0o644);
    let md = over(&store, cfg());
    assert_eq!(lookup(&md, "a").await.unwrap().gfid, a);
    assert_eq!(lookup(&md, "b").await.unwrap().gfid, b);
    md.rename(
        &cx(),
        Loc::entry(Gfid::ROOT, "a"),
        Loc::entry(Gfid::ROOT, "b"),
        0,
        Xdata::new(),
    )
    .await
    .unwrap();
    assert_eq!(lookup(&md, "a").await.unwrap_err().errno, libc::ENOENT);
    assert_eq!(lookup(&md, "b").await.unwrap().gfid, a);
}

#[tokio::test]
async fn a_change_by_another_client_is_seen_after_the_timeout() {
    let store = Store::new();
    let g = store.put("f", 10, 0o644);
    let ttl = Duration::from_millis(200);
    let md = over(
        &store,
        Config {
            timeout: ttl,
            ..cfg()
        },
    );
    assert_eq!(lookup(&md, "f").await.unwrap().size, 10);
    store.put("f", 20, 0o644);
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(lookup(&md, "f").await.unwrap().size, 20);
    assert_eq!(stat(&md, g).await.size, 20);
}

#[tokio::test]
async fn a_reply_that_was_on_its_way_during_a_change_is_not_kept() {
    let store = Store::new();
    let g = store.put("f", 10, 0o644);
    let md = Arc::new(over(&store, cfg()));
    let gate = store.hold_lookups();
    // The lookup reads the old attributes below, then waits.
    let slow = {
        let md = Arc::clone(&md);
        tokio::spawn(async move { lookup(&md, "f").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    *store.gate.lock().unwrap() = None;
    md.setattr(
        &cx(),
        Target::Loc(Loc::inode(g)),
        SetAttr {
            perm: Some(0o600),
            ..SetAttr::default()
        },
        Xdata::new(),
    )
    .await
    .unwrap();
    gate.add_permits(1);
    assert_eq!(slow.await.unwrap().unwrap().perm, 0o644, "it read before");
    assert_eq!(stat(&md, g).await.perm, 0o600, "the old reply was not kept");
    assert_eq!(lookup(&md, "f").await.unwrap().perm, 0o600);
}

#[tokio::test]
async fn a_directory_listing_with_attributes_answers_the_lookups_after_it() {
    let store = Store::new();
    for i in 0..20 {
        store.put(&format!("IM-{i:04}.dcm"), 57 << 10, 0o644);
    }
    let md = over(&store, cfg());
    let dir = Fd::new(Gfid::ROOT, libc::O_RDONLY);
    let listed = md
        .readdir(&cx(), dir, 0, 64 << 10, true, Xdata::new())
        .await
        .unwrap();
    assert_eq!(listed.len(), 20);
    for i in 0..20 {
        lookup(&md, &format!("IM-{i:04}.dcm")).await.unwrap();
    }
    assert_eq!(store.calls(), vec!["readdir"]);
}

#[tokio::test]
async fn it_keeps_no_more_than_its_bound() {
    let store = Store::new();
    for i in 0..50 {
        store.put(&format!("f{i}"), i, 0o644);
    }
    let md = over(
        &store,
        Config {
            entries: 8,
            ..cfg()
        },
    );
    for i in 0..50 {
        assert_eq!(lookup(&md, &format!("f{i}")).await.unwrap().size, i);
    }
    let c = md.counters();
    assert!(c.inodes <= 8 && c.names <= 8, "{c:?}");
    store.calls();
    // The newest are still kept, the oldest went.
    lookup(&md, "f49").await.unwrap();
    assert!(store.calls().is_empty());
    lookup(&md, "f0").await.unwrap();
    assert_eq!(store.calls(), vec!["lookup"]);
}

/// Makes directory `name` in the root through `md`; its gfid.
async fn new_dir(md: &MdCache, name: &str) -> Gfid {
    md.mkdir(
        &cx(),
        Loc::entry(Gfid::ROOT, name),
        0o755,
        0o022,
        Xdata::new(),
    )
    .await
    .unwrap()
    .iatt
    .gfid
}

/// The kernel looks each new image's name up before it creates it; in a directory this
/// client just made, that lookup is answered here, and nothing this client made there is
/// ever reported missing.
#[tokio::test]
async fn lookups_in_a_directory_this_client_just_made_cost_no_round_trip() {
    let store = Store::new();
    let md = over(&store, cfg());
    let dir = new_dir(&md, "series").await;
    assert_eq!(store.calls(), vec!["mkdir"]);
    for i in 0..3 {
        let name = format!("IM{i:04}.dcm");
        let miss = md
            .lookup(&cx(), Loc::entry(dir, &name), Xdata::new())
            .await
            .unwrap_err();
        assert_eq!(miss.errno, libc::ENOENT, "{miss}");
        let fd = Fd::new(Gfid::random(), libc::O_WRONLY);
        let made = md
            .create(
                &cx(),
                Loc::entry(dir, &name).with_gfid(fd.gfid()),
                libc::O_WRONLY | libc::O_CREAT,
                0o644,
                0o022,
                fd.clone(),
                Xdata::new(),
            )
            .await
            .unwrap();
        // A name this client made goes down (and is found), however its lookup is asked.
        let mut want = Xdata::new();
        want.set_u64("cairn.quick-read.want", 1);
        for x in [Xdata::new(), want] {
            let found = md.lookup(&cx(), Loc::entry(dir, &name), x).await.unwrap();
            assert_eq!(found.iatt.gfid, made.iatt.gfid);
        }
    }
    assert_eq!(
        store.calls(),
        vec![
            "create", "lookup", "lookup", "create", "lookup", "lookup", "create", "lookup",
            "lookup"
        ],
        "no lookup of a new name reached the bricks"
    );
    assert_eq!(md.counters().misses_served, 3);
    // Cairn's own work and directories this client did not make always ask.
    let internal = md
        .lookup(&Cx::internal(), Loc::entry(dir, "other"), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(internal.errno, libc::ENOENT);
    store.put("elsewhere", 1, 0o644);
    let _ = lookup(&md, "not-there").await.unwrap_err();
    assert_eq!(store.calls(), vec!["lookup", "lookup"]);
}

/// A name another client puts in a directory this client made is seen once the timeout
/// has passed since the mkdir, as any change by another client.
#[tokio::test]
async fn a_name_another_client_adds_to_a_new_directory_is_seen_after_the_timeout() {
    let store = Store::new();
    let ttl = Duration::from_millis(300);
    let md = over(
        &store,
        Config {
            timeout: ttl,
            ..cfg()
        },
    );
    let dir = new_dir(&md, "series").await;
    // Another client's create, straight to the bricks.
    store
        .make(&Loc::entry(dir, "theirs.dcm"), FileKind::File, 0o644)
        .unwrap();
    let started = Instant::now();
    loop {
        match md
            .lookup(&cx(), Loc::entry(dir, "theirs.dcm"), Xdata::new())
            .await
        {
            Ok(e) => {
                assert_eq!(e.iatt.kind, FileKind::File);
                break;
            }
            Err(e) => {
                assert_eq!(e.errno, libc::ENOENT);
                assert!(
                    started.elapsed() < ttl + Duration::from_millis(200),
                    "still missing {:?} after the mkdir",
                    started.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // With the timeout at 0 nothing is answered here at all.
    let store = Store::new();
    let md = over(
        &store,
        Config {
            timeout: Duration::ZERO,
            ..cfg()
        },
    );
    let dir = new_dir(&md, "s").await;
    let _ = md
        .lookup(&cx(), Loc::entry(dir, "x"), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(store.calls(), vec!["mkdir", "lookup"]);
}
