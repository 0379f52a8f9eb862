use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::testing::conformance;
use crate::xlator::Translator;

/// A file of the in-memory store: gfid, bytes, mtime.
type File = (Gfid, Vec<u8>, Timespec);

/// A volume in memory: one directory (the root) of regular files, counting every call
/// that reaches it by fop name.
struct Store {
    base: XlatorBase,
    files: Mutex<HashMap<String, File>>,
    calls: Mutex<Vec<&'static str>>,
    clock: Mutex<i64>,
    /// When set, a lookup reads the file, then waits for a permit before it replies.
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
}

impl Store {
    fn new() -> Arc<Store> {
        Arc::new(Store {
            base: XlatorBase::new("store", "test/store", Vec::new()),
            files: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            clock: Mutex::new(1),
            gate: Mutex::new(None),
        })
    }

    /// Writes `data` as `name` directly, as another client would.
    fn put(&self, name: &str, data: &[u8]) -> Gfid {
        let mut clock = self.clock.lock().unwrap();
        *clock += 1;
        let t = Timespec {
            sec: *clock,
            nsec: 0,
        };
        let mut files = self.files.lock().unwrap();
        let gfid = files.get(name).map_or_else(Gfid::random, |f| f.0);
        files.insert(name.to_string(), (gfid, data.to_vec(), t));
        gfid
    }

    fn by_gfid(&self, gfid: Gfid) -> FopResult<File> {
        self.files
            .lock()
            .unwrap()
            .values()
            .find(|f| f.0 == gfid)
            .cloned()
            .ok_or_else(|| FopError::new(libc::ESTALE, "no such gfid"))
    }

    fn name_of(&self, gfid: Gfid) -> String {
        let files = self.files.lock().unwrap();
        files
            .iter()
            .find(|(_, f)| f.0 == gfid)
            .map(|(n, _)| n.clone())
            .unwrap()
    }

    fn note(&self, fop: &'static str) {
        self.calls.lock().unwrap().push(fop);
    }

    fn calls(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

fn iatt_of(f: &File) -> Iatt {
    Iatt {
        gfid: f.0,
        kind: FileKind::File,
        perm: 0o644,
        nlink: 1,
        size: f.1.len() as u64,
        mtime: f.2,
        ctime: f.2,
        ..Iatt::default()
    }
}

use crate::error::FopError;

#[async_trait::async_trait]
impl Translator for Store {
    crate::xlator_base!();

    async fn lookup(&self, _cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<Entry> {
        self.note("lookup");
        let f = match (&loc.name, loc.gfid) {
            (Some(n), _) => self
                .files
                .lock()
                .unwrap()
                .get(n)
                .cloned()
                .ok_or_else(|| FopError::new(libc::ENOENT, "no such name"))?,
            (None, Some(g)) => self.by_gfid(g)?,
            _ => return Err(FopError::new(libc::EINVAL, "bad loc")),
        };
        let mut x = Xdata::new();
        if let Some(want) = xdata.get_u64(WANT_KEY)
            && f.1.len() as u64 <= want
        {
            x.set(CONTENT_KEY, f.1.clone());
        }
        let gate = self.gate.lock().unwrap().clone();
        if let Some(g) = gate {
            let _ = g.acquire().await.unwrap();
        }
        Ok(Entry {
            iatt: iatt_of(&f),
            xdata: x,
        })
    }

    async fn open(&self, _cx: &Cx, _loc: Loc, _flags: i32, fd: Fd, _x: Xdata) -> FopResult<()> {
        self.note("open");
        fd.set_ctx("store", Arc::new(()));
        Ok(())
    }

    async fn read(&self, _cx: &Cx, fd: Fd, off: u64, size: u32, _x: Xdata) -> FopResult<Payload> {
        self.note("read");
        if fd.ctx::<()>("store").is_none() {
            return Err(FopError::new(libc::EBADF, "not open below"));
        }
        let f = self.by_gfid(fd.gfid())?;
        let start = (off as usize).min(f.1.len());
        let end = (start + size as usize).min(f.1.len());
        Ok(Payload::new(Bytes::copy_from_slice(&f.1[start..end])))
    }

    async fn write(&self, _cx: &Cx, fd: Fd, off: u64, data: Payload, _x: Xdata) -> FopResult<Iatt> {
        self.note("write");
        if fd.ctx::<()>("store").is_none() {
            return Err(FopError::new(libc::EBADF, "not open below"));
        }
        let name = self.name_of(fd.gfid());
        let mut body = self.by_gfid(fd.gfid())?.1;
        let end = off as usize + data.len();
        if body.len() < end {
            body.resize(end, 0);
        }
        body[off as usize..end].copy_from_slice(data.bytes());
        self.put(&name, &body);
        Ok(iatt_of(&self.by_gfid(fd.gfid())?))
    }

    async fn stat(&self, _cx: &Cx, target: Target, _x: Xdata) -> FopResult<Iatt> {
        self.note("stat");
        if let Target::Fd(fd) = &target
            && fd.ctx::<()>("store").is_none()
        {
            return Err(FopError::new(libc::EBADF, "not open below"));
        }
        Ok(iatt_of(&self.by_gfid(target.gfid().unwrap_or(Gfid::NULL))?))
    }

    async fn fsync(&self, _cx: &Cx, fd: Fd, _datasync: bool, _x: Xdata) -> FopResult<()> {
        self.note("fsync");
        if fd.ctx::<()>("store").is_none() {
            return Err(FopError::new(libc::EBADF, "not open below"));
        }
        Ok(())
    }

    async fn flush(&self, _cx: &Cx, _fd: Fd, _x: Xdata) -> FopResult<()> {
        self.note("flush");
        Ok(())
    }

    async fn release(&self, _cx: &Cx, _fd: Fd) -> FopResult<()> {
        self.note("release");
        Ok(())
    }

    async fn unlink(&self, _cx: &Cx, loc: Loc, _x: Xdata) -> FopResult<()> {
        self.note("unlink");
        let name = loc.name.unwrap_or_default();
        self.files
            .lock()
            .unwrap()
            .remove(&name)
            .map(|_| ())
            .ok_or_else(|| FopError::new(libc::ENOENT, "no such name"))
    }
}

fn cfg() -> Config {
    Config {
        lookup_size: 64 << 10,
        max_file_size: 1 << 20,
        timeout: Duration::from_secs(600),
        cache_size: 128 << 20,
        read_ahead: 8,
    }
}

fn over(store: &Arc<Store>, cfg: Config) -> QuickRead {
    let child: XlatorRef = Arc::clone(store) as XlatorRef;
    QuickRead::new("qr", vec![child], cfg)
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

/// lookup, open, read all of it in 128 KiB requests, flush, release: what an application's
/// open-read-close of a whole file becomes.
async fn read_file(qr: &QuickRead, name: &str) -> Vec<u8> {
    let e = qr
        .lookup(&cx(), Loc::entry(Gfid::ROOT, name), Xdata::new())
        .await
        .unwrap();
    read_open(qr, e.iatt.gfid).await
}

async fn read_open(qr: &QuickRead, gfid: Gfid) -> Vec<u8> {
    let fd = Fd::new(gfid, libc::O_RDONLY);
    qr.open(
        &cx(),
        Loc::inode(gfid),
        libc::O_RDONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    loop {
        let p = qr
            .read(&cx(), fd.clone(), out.len() as u64, 128 << 10, Xdata::new())
            .await
            .unwrap();
        if p.is_empty() {
            break;
        }
        out.extend_from_slice(p.bytes());
    }
    qr.flush(&cx(), fd.clone(), Xdata::new()).await.unwrap();
    qr.release(&cx(), fd).await.unwrap();
    out
}

fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[tokio::test]
async fn without_content_sizes_it_passes_everything_through() {
    let c = Config {
        lookup_size: 0,
        max_file_size: 0,
        ..cfg()
    };
    conformance(|leaf| Arc::new(QuickRead::new("qr", vec![leaf], c)) as XlatorRef).await;
}

#[tokio::test]
async fn a_small_file_is_read_with_one_lookup_below() {
    let store = Store::new();
    let body = image(57 * 1024, 1);
    store.put("mr.dcm", &body);
    let qr = over(&store, cfg());
    assert_eq!(read_file(&qr, "mr.dcm").await, body);
    assert_eq!(store.calls(), vec!["lookup"]);
    let c = qr.counters();
    assert_eq!((c.opens_served, c.files), (1, 1));
    assert!(c.reads_served >= 1);
}

#[tokio::test]
async fn a_file_above_lookup_size_is_fetched_whole_at_open() {
    let store = Store::new();
    let body = image(517 * 1024, 2);
    store.put("ct.dcm", &body);
    let qr = over(&store, cfg());
    assert_eq!(read_file(&qr, "ct.dcm").await, body);
    // The named lookup carried no content (too big); the open became one nameless lookup.
    assert_eq!(store.calls(), vec!["lookup", "lookup"]);
    assert_eq!(qr.counters().opens_fetched, 1);
}

#[tokio::test]
async fn a_file_above_max_file_size_is_read_the_plain_way() {
    let store = Store::new();
    let body = image(2 << 20, 3);
    store.put("big", &body);
    let qr = over(&store, cfg());
    assert_eq!(read_file(&qr, "big").await, body);
    let calls = store.calls();
    assert_eq!(&calls[..2], &["lookup", "open"]);
    assert!(calls.contains(&"read") && calls.ends_with(&["flush", "release"]));
    assert_eq!(qr.counters().files, 0);
}

#[tokio::test]
async fn a_write_on_this_mount_is_seen_by_the_next_open_and_by_open_readers() {
    let store = Store::new();
    let gfid = store.put("f", b"version 1");
    let qr = over(&store, cfg());
    assert_eq!(read_file(&qr, "f").await, b"version 1");

    // A reader holds the file open from memory while a writer on the same mount changes it.
    let reader = Fd::new(gfid, libc::O_RDONLY);
    qr.open(
        &cx(),
        Loc::inode(gfid),
        libc::O_RDONLY,
        reader.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    store.calls();
    let w = Fd::new(gfid, libc::O_WRONLY);
    qr.open(
        &cx(),
        Loc::inode(gfid),
        libc::O_WRONLY,
        w.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    qr.write(
        &cx(),
        w.clone(),
        8,
        Payload::new(Bytes::from_static(b"2")),
        Xdata::new(),
    )
    .await
    .unwrap();
    qr.release(&cx(), w).await.unwrap();

    // The open reader now reads from the bricks, after opening there.
    let p = qr
        .read(&cx(), reader.clone(), 0, 100, Xdata::new())
        .await
        .unwrap();
    assert_eq!(p.bytes().as_ref(), b"version 2");
    qr.release(&cx(), reader).await.unwrap();
    let calls = store.calls();
    assert!(calls.ends_with(&["open", "read", "release"]), "{calls:?}");

    // A new open after the writer's close: no old content anywhere.
    assert_eq!(read_open(&qr, gfid).await, b"version 2");
}

#[tokio::test]
async fn a_change_by_another_client_is_seen_at_the_next_lookup() {
    let store = Store::new();
    store.put("f", b"old");
    let qr = over(&store, cfg());
    assert_eq!(read_file(&qr, "f").await, b"old");
    store.put("f", b"new content");
    assert_eq!(read_file(&qr, "f").await, b"new content");
}

#[tokio::test]
async fn content_older_than_the_timeout_serves_nothing() {
    let store = Store::new();
    let gfid = store.put("f", b"old");
    let qr = over(
        &store,
        Config {
            timeout: Duration::ZERO,
            ..cfg()
        },
    );
    assert_eq!(read_file(&qr, "f").await, b"old");
    store.put("f", b"new");
    store.calls();
    // No lookup in between (the kernel cached the name): the open must not use old content.
    assert_eq!(read_open(&qr, gfid).await, b"new");
    let calls = store.calls();
    assert!(
        calls.contains(&"open") && calls.contains(&"read"),
        "{calls:?}"
    );
}

#[tokio::test]
async fn fstat_of_a_descriptor_answered_here_asks_by_inode() {
    let store = Store::new();
    let gfid = store.put("f", b"data");
    let qr = over(&store, cfg());
    qr.lookup(&cx(), Loc::entry(Gfid::ROOT, "f"), Xdata::new())
        .await
        .unwrap();
    let fd = Fd::new(gfid, libc::O_RDONLY);
    qr.open(
        &cx(),
        Loc::inode(gfid),
        libc::O_RDONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    store.calls();
    let ia = qr
        .stat(&cx(), Target::Fd(fd.clone()), Xdata::new())
        .await
        .unwrap();
    assert_eq!(ia.size, 4);
    let p = qr
        .read(&cx(), fd.clone(), 0, 10, Xdata::new())
        .await
        .unwrap();
    assert_eq!(p.bytes().as_ref(), b"data");
    qr.release(&cx(), fd).await.unwrap();
    assert_eq!(store.calls(), vec!["stat"]);
}

#[tokio::test]
async fn a_file_gone_at_open_fails_the_open() {
    let store = Store::new();
    let gfid = store.put("f", &image(200 * 1024, 4));
    let qr = over(&store, cfg());
    qr.lookup(&cx(), Loc::entry(Gfid::ROOT, "f"), Xdata::new())
        .await
        .unwrap();
    store.files.lock().unwrap().clear();
    let fd = Fd::new(gfid, libc::O_RDONLY);
    let e = qr
        .open(&cx(), Loc::inode(gfid), libc::O_RDONLY, fd, Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ESTALE);
}

#[tokio::test]
async fn the_cache_holds_no_more_than_cache_size() {
    let store = Store::new();
    let qr = over(
        &store,
        Config {
            cache_size: 256 << 10,
            ..cfg()
        },
    );
    for i in 0..20u8 {
        let name = format!("f{i}");
        let body = image(50 * 1024, i);
        store.put(&name, &body);
        assert_eq!(read_file(&qr, &name).await, body);
        assert!(qr.counters().bytes <= 256 << 10);
    }
    assert_eq!(qr.counters().files, 5);
    // The most recent files are the ones kept.
    store.calls();
    let _ = read_file(&qr, "f19").await;
    assert_eq!(store.calls(), vec!["lookup"]);
}

#[tokio::test]
async fn fsync_of_a_descriptor_answered_here_opens_it_below_first() {
    let store = Store::new();
    let gfid = store.put("f", b"data");
    let qr = over(&store, cfg());
    qr.lookup(&cx(), Loc::entry(Gfid::ROOT, "f"), Xdata::new())
        .await
        .unwrap();
    let fd = Fd::new(gfid, libc::O_RDONLY);
    qr.open(
        &cx(),
        Loc::inode(gfid),
        libc::O_RDONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    store.calls();
    qr.fsync(&cx(), fd.clone(), false, Xdata::new())
        .await
        .unwrap();
    qr.flush(&cx(), fd.clone(), Xdata::new()).await.unwrap();
    qr.release(&cx(), fd).await.unwrap();
    assert_eq!(store.calls(), vec!["open", "fsync", "flush", "release"]);
    assert_eq!(qr.counters().opened_behind, 1);
}

#[test]
fn numbered_names_parse_and_step() {
    let n = Numbered::parse("IM-0042.dcm").unwrap();
    assert_eq!((n.prefix.as_str(), n.number, n.width), ("IM-", 42, 4));
    assert_eq!(n.plus(1).as_deref(), Some("IM-0043.dcm"));
    assert_eq!(n.plus(58).as_deref(), Some("IM-0100.dcm"));
    assert!(Numbered::parse("IM-0043.dcm").unwrap().follows(&n));
    assert!(!Numbered::parse("IM-0044.dcm").unwrap().follows(&n));
    assert!(!Numbered::parse("XX-0043.dcm").unwrap().follows(&n));
    assert_eq!(Numbered::parse("IM-9999").unwrap().plus(1), None);
    assert_eq!(Numbered::parse("report.txt"), None);
    assert_eq!(Numbered::parse("7").unwrap().plus(2).as_deref(), Some("9"));
}

/// Waits until read-ahead fetched `n` files.
async fn fetched_ahead(qr: &QuickRead, n: u64) {
    for _ in 0..500 {
        if qr.counters().read_ahead >= n {
            // Let the tasks record their entries.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("read-ahead fetched {:?}", qr.counters());
}

fn series(store: &Store, n: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    (1..=n)
        .map(|i| {
            let name = format!("IM-{i:04}.dcm");
            let body = image(size, i as u8);
            store.put(&name, &body);
            (name, body)
        })
        .collect()
}

#[tokio::test]
async fn reading_a_series_in_order_fetches_the_next_images_ahead() {
    let store = Store::new();
    let images = series(&store, 12, 100 * 1024);
    let qr = over(&store, cfg());
    for (name, body) in &images[..2] {
        assert!(&read_file(&qr, name).await == body);
    }
    fetched_ahead(&qr, 8).await;
    store.calls();
    // The next image: its lookup, open and reads are all answered in the client.
    assert!(read_file(&qr, &images[2].0).await == images[2].1);
    assert_eq!(store.calls(), Vec::<&str>::new());
    assert_eq!(qr.counters().lookups_served, 1);
    // Reading on keeps the window ahead of the reader, to the end of the series.
    for (name, body) in &images[3..] {
        assert!(&read_file(&qr, name).await == body, "{name}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(qr.counters().read_ahead as usize, images.len() - 2);
}

#[tokio::test]
async fn an_image_removed_through_this_client_is_not_answered_from_read_ahead() {
    let store = Store::new();
    let images = series(&store, 6, 10 * 1024);
    let qr = over(&store, cfg());
    for (name, _) in &images[..2] {
        read_file(&qr, name).await;
    }
    fetched_ahead(&qr, 4).await;
    qr.unlink(&cx(), Loc::entry(Gfid::ROOT, &images[2].0), Xdata::new())
        .await
        .unwrap();
    let e = qr
        .lookup(&cx(), Loc::entry(Gfid::ROOT, &images[2].0), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ENOENT);
}

#[tokio::test]
async fn an_entry_read_ahead_longer_ago_than_the_timeout_is_looked_up_again() {
    let store = Store::new();
    let images = series(&store, 4, 1024);
    let qr = over(
        &store,
        Config {
            timeout: Duration::from_millis(200),
            ..cfg()
        },
    );
    for (name, _) in &images[..2] {
        read_file(&qr, name).await;
    }
    fetched_ahead(&qr, 2).await;
    // Another client rewrites the next image meanwhile.
    store.put(&images[2].0, b"rewritten");
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.calls();
    assert_eq!(read_file(&qr, &images[2].0).await, b"rewritten");
    assert_eq!(store.calls().first(), Some(&"lookup"));
}

#[tokio::test]
async fn looking_a_series_up_in_order_without_opening_it_fetches_nothing_ahead() {
    // What `stat` of every image, or a delete of a series, sends: lookups in order, and no
    // open. Fetching the next images' content for them would be wasted.
    let store = Store::new();
    let images = series(&store, 8, 100 * 1024);
    let qr = over(&store, cfg());
    for (name, _) in &images {
        qr.lookup(&cx(), Loc::entry(Gfid::ROOT, name), Xdata::new())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(qr.counters().read_ahead, 0);
    // Opening them in order then does.
    for (name, body) in &images[..2] {
        assert!(&read_file(&qr, name).await == body);
    }
    fetched_ahead(&qr, 6).await;
}

#[tokio::test]
async fn lookups_out_of_order_fetch_nothing_ahead() {
    let store = Store::new();
    let images = series(&store, 6, 1024);
    let qr = over(&store, cfg());
    for i in [4, 1, 3, 0] {
        read_file(&qr, &images[i].0).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(qr.counters().read_ahead, 0);
}

#[tokio::test]
async fn content_that_was_on_its_way_while_this_mount_wrote_the_file_is_not_kept() {
    let store = Store::new();
    let gfid = store.put("f", b"version 1");
    let qr = Arc::new(over(&store, cfg()));
    // A lookup reads version 1 below, and its reply is held back.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *store.gate.lock().unwrap() = Some(Arc::clone(&gate));
    let slow = {
        let qr = Arc::clone(&qr);
        tokio::spawn(async move {
            qr.lookup(&cx(), Loc::entry(Gfid::ROOT, "f"), Xdata::new())
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    *store.gate.lock().unwrap() = None;
    // Meanwhile this mount writes version 2 and closes.
    let w = Fd::new(gfid, libc::O_WRONLY);
    qr.open(
        &cx(),
        Loc::inode(gfid),
        libc::O_WRONLY,
        w.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    qr.write(&cx(), w.clone(), 8, Payload::new(&b"2"[..]), Xdata::new())
        .await
        .unwrap();
    qr.flush(&cx(), w.clone(), Xdata::new()).await.unwrap();
    qr.release(&cx(), w).await.unwrap();
    // The old reply arrives now.
    gate.add_permits(1);
    slow.await.unwrap();
    // An open with no lookup before it (the kernel knew the name) reads version 2.
    assert_eq!(read_open(&qr, gfid).await, b"version 2");
}

#[tokio::test]
async fn many_empty_files_count_against_the_cache_size_and_old_ones_go() {
    let store = Store::new();
    for i in 0..3000 {
        store.put(&format!("e{i}"), b"");
    }
    let qr = over(
        &store,
        Config {
            cache_size: 256 << 10,
            timeout: Duration::from_millis(200),
            read_ahead: 0,
            ..cfg()
        },
    );
    for i in 0..3000 {
        qr.lookup(&cx(), Loc::entry(Gfid::ROOT, format!("e{i}")), Xdata::new())
            .await
            .unwrap();
    }
    let c = qr.counters();
    assert!(
        c.files <= (256 << 10) / ENTRY_OVERHEAD && c.bytes <= 256 << 10,
        "empty files are bounded by their bookkeeping: {c:?}"
    );
    // Past the timeout, what is held goes as new content comes in (a few old files per
    // new one).
    let before = c.files;
    tokio::time::sleep(Duration::from_millis(250)).await;
    for i in 0..10 {
        qr.lookup(&cx(), Loc::entry(Gfid::ROOT, format!("e{i}")), Xdata::new())
            .await
            .unwrap();
    }
    assert!(
        qr.counters().files + 70 <= before,
        "expired content was dropped: {before} then {:?}",
        qr.counters()
    );
}
