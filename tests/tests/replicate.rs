//! cluster/replicate over three real brick processes: writes everywhere, dirty marks that
//! clear, blame for a brick that missed changes, quorum, concurrent writers and creators,
//! split-brain. The client graph runs in the test process so it can look at every brick.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_tests::*;
use cairn_translators::features::index::{AFR_PREFIX, XATTR_DIRTY, read_counters};
use cairn_translators::*;

struct Set {
    bricks: Vec<BrickProc>,
    dirs: Vec<PathBuf>,
    volfile: String,
    _tmp: tempfile::TempDir,
}

fn start_set() -> Set {
    start_set_with(false)
}

/// Three bricks; with `counted`, a `debug/io-stats` between replicate and each brick's
/// client counts the requests each brick receives.
fn start_set_with(counted: bool) -> Set {
    require_root();
    let tmp = tempfile::Builder::new()
        .prefix("cairn-afr-")
        .tempdir()
        .unwrap();
    let mut bricks = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..3 {
        let d = tmp.path().join(format!("b{i}"));
        bricks.push(BrickProc::start(
            &d,
            "vol-afr",
            &format!("b{i}"),
            "127.0.0.1:0",
        ));
        dirs.push(d);
    }
    let mut vf =
        String::from("version: 1\nvolume: test\nrole: client\ntop: test-io-stats\ngraph:\n");
    for (i, b) in bricks.iter().enumerate() {
        vf.push_str(&format!(
            "  - name: test-client-{i}\n    type: protocol/client\n    options:\n      remote-host: 127.0.0.1\n      remote-port: {}\n      volume-id: vol-afr\n      remote-brick: b{i}\n      ping-timeout: 2s\n      reconnect-max-interval: 200ms\n",
            b.port()
        ));
    }
    let children = if counted {
        for i in 0..3 {
            vf.push_str(&format!(
                "  - name: test-count-{i}\n    type: debug/io-stats\n    subvolumes: [test-client-{i}]\n"
            ));
        }
        "test-count"
    } else {
        "test-client"
    };
    // With counting, dirty marks are cleared only at the end (one batch per brick).
    let flush = if counted { "60s" } else { "100ms" };
    vf.push_str(&format!("  - name: test-replicate-0\n    type: cluster/replicate\n    options:\n      eager-lock-idle: 200ms\n      changelog-flush: {flush}\n    subvolumes: [{children}-0, {children}-1, {children}-2]\n"));
    vf.push_str(
        "  - name: test-io-stats\n    type: debug/io-stats\n    subvolumes: [test-replicate-0]\n",
    );
    Set {
        bricks,
        dirs,
        volfile: vf,
        _tmp: tmp,
    }
}

async fn client(set: &Set) -> Graph {
    let vf = cairn_volfiles::parse(&set.volfile).unwrap();
    let g = Graph::from_volfile(&vf, &Registry::builtin()).unwrap();
    g.start().await.unwrap();
    wait_for(Duration::from_secs(10), || g.top().is_up()).await;
    g
}

async fn wait_for(limit: Duration, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cx() -> Cx {
    Cx {
        uid: 0,
        gid: 0,
        pid: 1,
        lk_owner: 0,
        client: 0,
    }
}

async fn put(top: &XlatorRef, parent: Gfid, name: &str, data: &[u8]) -> FopResult<Gfid> {
    let g = Gfid::random();
    let mut fd = Fd::new(g, libc::O_WRONLY);
    let e = top
        .create(
            &cx(),
            Loc::entry(parent, name).with_gfid(g),
            libc::O_WRONLY,
            0o644,
            0o022,
            fd.clone(),
            Xdata::new(),
        )
        .await?;
    let g = e.iatt.gfid;
    if g != fd.gfid() {
        // Another client created the name first: reopen the file that is there, as the
        // FUSE edge does.
        top.release(&cx(), fd).await?;
        fd = Fd::new(g, libc::O_WRONLY);
        top.open(
            &cx(),
            Loc::inode(g),
            libc::O_WRONLY,
            fd.clone(),
            Xdata::new(),
        )
        .await?;
    }
    let w = top
        .write(
            &cx(),
            fd.clone(),
            0,
            Payload::new(data.to_vec()),
            Xdata::new(),
        )
        .await;
    top.release(&cx(), fd).await?;
    w.map(|_| g)
}

async fn get(top: &XlatorRef, parent: Gfid, name: &str) -> FopResult<Vec<u8>> {
    let e = top
        .lookup(&cx(), Loc::entry(parent, name), Xdata::new())
        .await?;
    let fd = Fd::new(e.iatt.gfid, libc::O_RDONLY);
    top.open(
        &cx(),
        Loc::inode(e.iatt.gfid),
        libc::O_RDONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await?;
    let d = top.read(&cx(), fd.clone(), 0, 16 << 20, Xdata::new()).await;
    top.release(&cx(), fd).await?;
    d.map(|p| p.bytes().to_vec())
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    rustix::fs::lgetxattr(path, name, &mut buf)
        .ok()
        .map(|n| buf[..n].to_vec())
}

fn afr_counters(path: &Path) -> Vec<(String, [i64; 3])> {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(path, &mut names).unwrap_or(0);
    names[..n]
        .split(|b| *b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .filter(|s| s.starts_with(AFR_PREFIX))
        .map(|k| {
            (
                k.to_string(),
                read_counters(&xattr(path, k).unwrap_or_default()),
            )
        })
        .collect()
}

fn index_entries(brick: &Path) -> usize {
    fs::read_dir(brick.join(".cairn/indices"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_reach_every_brick_and_dirty_marks_clear() {
    let set = start_set();
    let g = client(&set).await;
    let top = g.top();
    let dir = top
        .mkdir(
            &cx(),
            Loc::entry(Gfid::ROOT, "series").with_gfid(Gfid::random()),
            0o755,
            0,
            Xdata::new(),
        )
        .await
        .unwrap();
    for i in 0..20 {
        put(
            top,
            dir.iatt.gfid,
            &format!("IM{i:03}.dcm"),
            &pattern(57 * 1024, i),
        )
        .await
        .unwrap();
    }
    for i in 0..20 {
        assert_eq!(
            get(top, dir.iatt.gfid, &format!("IM{i:03}.dcm"))
                .await
                .unwrap(),
            pattern(57 * 1024, i)
        );
        for d in &set.dirs {
            assert_eq!(
                fs::read(d.join(format!("series/IM{i:03}.dcm"))).unwrap(),
                pattern(57 * 1024, i),
                "{}",
                d.display()
            );
        }
    }
    // Every mark is cleared (at release for data, in batches for entries) and the index empties.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for d in &set.dirs {
        for p in [d.clone(), d.join("series"), d.join("series/IM007.dcm")] {
            for (k, c) in afr_counters(&p) {
                assert_eq!(c, [0, 0, 0], "{k} on {}", p.display());
            }
        }
        assert_eq!(index_entries(d), 0, "index of {}", d.display());
    }
    // The gfids agree everywhere.
    let g0 = xattr(&set.dirs[0].join("series/IM003.dcm"), "trusted.cairn.gfid");
    for d in &set.dirs[1..] {
        assert_eq!(xattr(&d.join("series/IM003.dcm"), "trusted.cairn.gfid"), g0);
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_brick_that_missed_changes_is_blamed_and_never_read() {
    let mut set = start_set();
    let g = client(&set).await;
    let top = g.top();
    put(top, Gfid::ROOT, "report", b"version 1").await.unwrap();
    // The first brick (the one reads prefer) goes away; the file changes meanwhile.
    set.bricks[0].kill();
    wait_for(Duration::from_secs(10), || {
        !g.node("test-client-0").unwrap().is_up()
    })
    .await;
    let e = top
        .lookup(&cx(), Loc::entry(Gfid::ROOT, "report"), Xdata::new())
        .await
        .unwrap();
    let fd = Fd::new(e.iatt.gfid, libc::O_WRONLY);
    top.open(
        &cx(),
        Loc::inode(e.iatt.gfid),
        libc::O_WRONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    top.write(
        &cx(),
        fd.clone(),
        0,
        Payload::new(b"version 2".to_vec()),
        Xdata::new(),
    )
    .await
    .unwrap();
    top.release(&cx(), fd).await.unwrap();
    put(top, Gfid::ROOT, "new-while-down", b"fresh")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The bricks that have the change blame the one that missed it, and index the file.
    for d in &set.dirs[1..] {
        let c = afr_counters(&d.join("report"));
        let blame = c
            .iter()
            .find(|(k, _)| k.ends_with("pending.test-client-0"))
            .map(|(_, v)| *v);
        assert!(
            blame.is_some_and(|v| v[0] > 0),
            "data blame on {}: {c:?}",
            d.display()
        );
        let root = afr_counters(d);
        assert!(
            root.iter()
                .any(|(k, v)| k.ends_with("pending.test-client-0") && v[2] > 0),
            "entry blame on the parent: {root:?}"
        );
        assert!(index_entries(d) >= 2);
    }
    // The brick comes back with its old copy; nobody reads it.
    set.bricks[0].restart();
    wait_for(Duration::from_secs(10), || {
        g.node("test-client-0").unwrap().is_up()
    })
    .await;
    assert_eq!(
        fs::read(set.dirs[0].join("report")).unwrap(),
        b"version 1",
        "the stale copy is still there"
    );
    assert_eq!(get(top, Gfid::ROOT, "report").await.unwrap(), b"version 2");
    assert_eq!(
        get(top, Gfid::ROOT, "new-while-down").await.unwrap(),
        b"fresh"
    );
    // A fresh client (no cache) reaches the same verdict from the counters alone.
    let g2 = client(&set).await;
    assert_eq!(
        get(g2.top(), Gfid::ROOT, "report").await.unwrap(),
        b"version 2"
    );
    g2.stop().await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_quorum_changes_fail_and_nothing_is_written_while_reads_work() {
    let mut set = start_set();
    let g = client(&set).await;
    let top = g.top();
    put(top, Gfid::ROOT, "kept", b"original").await.unwrap();
    let e = top
        .lookup(&cx(), Loc::entry(Gfid::ROOT, "kept"), Xdata::new())
        .await
        .unwrap();
    set.bricks[1].kill();
    set.bricks[2].kill();
    wait_for(Duration::from_secs(10), || {
        !g.node("test-client-1").unwrap().is_up() && !g.node("test-client-2").unwrap().is_up()
    })
    .await;
    let err = put(top, Gfid::ROOT, "refused", b"x").await.unwrap_err();
    assert_eq!(err.errno, libc::ENOTCONN, "{err}");
    assert!(err.msg.contains("quorum"), "{err}");
    assert!(
        !set.dirs[0].join("refused").exists(),
        "nothing reached the minority"
    );
    let fd = Fd::new(e.iatt.gfid, libc::O_WRONLY);
    top.open(
        &cx(),
        Loc::inode(e.iatt.gfid),
        libc::O_WRONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    let err = top
        .write(
            &cx(),
            fd.clone(),
            0,
            Payload::new(b"CHANGED!".to_vec()),
            Xdata::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.errno, libc::ENOTCONN);
    top.release(&cx(), fd).await.unwrap();
    let err = top
        .unlink(&cx(), Loc::entry(Gfid::ROOT, "kept"), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(err.errno, libc::ENOTCONN);
    assert_eq!(fs::read(set.dirs[0].join("kept")).unwrap(), b"original");
    assert_eq!(
        get(top, Gfid::ROOT, "kept").await.unwrap(),
        b"original",
        "reads still work"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_leave_identical_copies() {
    let set = start_set();
    let (a, b) = (client(&set).await, client(&set).await);
    put(a.top(), Gfid::ROOT, "shared", &[0u8; 65536])
        .await
        .unwrap();
    let e = a
        .top()
        .lookup(&cx(), Loc::entry(Gfid::ROOT, "shared"), Xdata::new())
        .await
        .unwrap();
    let run = |g: XlatorRef, seed: u64| async move {
        let fd = Fd::new(e.iatt.gfid, libc::O_RDWR);
        g.open(
            &cx(),
            Loc::inode(e.iatt.gfid),
            libc::O_RDWR,
            fd.clone(),
            Xdata::new(),
        )
        .await
        .unwrap();
        for i in 0..30 {
            g.write(
                &cx(),
                fd.clone(),
                0,
                Payload::new(pattern(65536, seed * 1000 + i)),
                Xdata::new(),
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
        g.release(&cx(), fd).await.unwrap();
    };
    let (ta, tb) = (
        tokio::spawn(run(Arc::clone(a.top()), 1)),
        tokio::spawn(run(Arc::clone(b.top()), 2)),
    );
    ta.await.unwrap();
    tb.await.unwrap();
    let copies: Vec<Vec<u8>> = set
        .dirs
        .iter()
        .map(|d| fs::read(d.join("shared")).unwrap())
        .collect();
    assert_eq!(copies[0], copies[1], "brick 0 and 1 differ");
    assert_eq!(copies[1], copies[2], "brick 1 and 2 differ");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_name_agree_on_one_gfid() {
    let set = start_set();
    let (a, b) = (client(&set).await, client(&set).await);
    for i in 0..25 {
        let name = format!("race-{i}");
        let (ta, tb) = (Arc::clone(a.top()), Arc::clone(b.top()));
        let (n1, n2) = (name.clone(), name.clone());
        let r1 = tokio::spawn(async move { put(&ta, Gfid::ROOT, &n1, b"from a").await });
        let r2 = tokio::spawn(async move { put(&tb, Gfid::ROOT, &n2, b"from b").await });
        let (r1, r2) = (r1.await.unwrap(), r2.await.unwrap());
        assert!(r1.is_ok() || r2.is_ok(), "{name}: one create wins");
        let gfids: Vec<Option<Vec<u8>>> = set
            .dirs
            .iter()
            .map(|d| xattr(&d.join(&name), "trusted.cairn.gfid"))
            .collect();
        assert!(gfids[0].is_some());
        assert!(
            gfids.iter().all(|g| *g == gfids[0]),
            "{name}: bricks disagree on the gfid: {gfids:?}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_brain_reads_as_eio() {
    let set = start_set();
    let g = client(&set).await;
    put(g.top(), Gfid::ROOT, "disputed", b"same").await.unwrap();
    g.stop().await;
    // Every copy blames another, as after a network partition without quorum enforcement.
    let blame = |brick: usize, whom: usize| {
        let key = format!("{AFR_PREFIX}pending.test-client-{whom}");
        rustix::fs::lsetxattr(
            set.dirs[brick].join("disputed"),
            key,
            &[
                0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    };
    blame(0, 1);
    blame(1, 2);
    blame(2, 0);
    let g = client(&set).await;
    let e = g
        .top()
        .lookup(&cx(), Loc::entry(Gfid::ROOT, "disputed"), Xdata::new())
        .await;
    assert!(e.is_ok(), "the name is still listed");
    let err = get(g.top(), Gfid::ROOT, "disputed").await.unwrap_err();
    assert_eq!(err.errno, libc::EIO);
    assert!(err.msg.contains("split-brain"), "{err}");
    let _ = XATTR_DIRTY;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_directory_whose_copies_each_missed_names_stays_readable_and_heal_merges_them() {
    use cluster::afr::heal::{Resolve, Throttle};
    let set = start_set();
    let g = client(&set).await;
    let dir = g
        .top()
        .mkdir(
            &cx(),
            Loc::entry(Gfid::ROOT, "series"),
            0o755,
            0o022,
            Xdata::new(),
        )
        .await
        .unwrap()
        .iatt
        .gfid;
    let x = put(g.top(), dir, "x.dcm", b"image x").await.unwrap();
    let y = put(g.top(), dir, "y.dcm", b"image y").await.unwrap();
    g.stop().await;
    // As after a change that reached brick 2 only while brick 1 was away and brick 0 was
    // read-only, then one that missed brick 2: bricks 0 and 1 lack y, brick 2 lacks x,
    // and every copy of the directory blames another for names.
    let drop_copy = |brick: usize, name: &str, gfid: Gfid| {
        fs::remove_file(set.dirs[brick].join("series").join(name)).unwrap();
        let h = gfid.to_string();
        let _ = fs::remove_file(
            set.dirs[brick]
                .join(".cairn/handles")
                .join(&h[0..2])
                .join(&h[2..4])
                .join(&h),
        );
    };
    drop_copy(0, "y.dcm", y);
    drop_copy(1, "y.dcm", y);
    drop_copy(2, "x.dcm", x);
    let blame = |brick: usize, whom: usize| {
        let mut v = vec![0u8; 24];
        v[23] = 1;
        rustix::fs::lsetxattr(
            set.dirs[brick].join("series"),
            format!("{AFR_PREFIX}pending.test-client-{whom}"),
            &v,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    };
    blame(0, 2);
    blame(1, 2);
    blame(2, 0);
    blame(2, 1);
    let g = client(&set).await;
    // Not a split-brain: the directory's attributes are read, its names are listed.
    let st = g
        .top()
        .lookup(&cx(), Loc::entry(Gfid::ROOT, "series"), Xdata::new())
        .await
        .unwrap();
    assert_eq!(st.iatt.gfid, dir);
    g.top()
        .stat(&cx(), Target::Loc(Loc::inode(dir)), Xdata::new())
        .await
        .unwrap();
    let afr = g.find::<cluster::afr::Afr>().next().unwrap();
    let r = afr
        .heal(Loc::inode(dir), &Resolve::None, false, &Throttle::new(0))
        .await
        .unwrap();
    assert!(r.split_brain.is_none(), "{r:?}");
    for d in &set.dirs {
        assert_eq!(
            fs::read(d.join("series/x.dcm")).unwrap(),
            b"image x",
            "{}",
            d.display()
        );
        assert_eq!(
            fs::read(d.join("series/y.dcm")).unwrap(),
            b"image y",
            "{}",
            d.display()
        );
        for (k, c) in afr_counters(&d.join("series")) {
            assert_eq!(c, [0, 0, 0], "{k} on {}", d.display());
        }
    }
    assert_eq!(get(g.top(), dir, "x.dcm").await.unwrap(), b"image x");
    assert_eq!(get(g.top(), dir, "y.dcm").await.unwrap(), b"image y");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_name_that_is_different_files_on_different_copies_is_not_merged() {
    use cluster::afr::heal::{Resolve, Throttle};
    let set = start_set();
    let g = client(&set).await;
    let dir = g
        .top()
        .mkdir(
            &cx(),
            Loc::entry(Gfid::ROOT, "series"),
            0o755,
            0o022,
            Xdata::new(),
        )
        .await
        .unwrap()
        .iatt
        .gfid;
    put(g.top(), dir, "a.dcm", b"first").await.unwrap();
    g.stop().await;
    // Brick 2's a.dcm is another file (another gfid), and the copies blame each other.
    let other = Gfid::random();
    let p = set.dirs[2].join("series/a.dcm");
    rustix::fs::lsetxattr(
        &p,
        "trusted.cairn.gfid",
        &other.0,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    for (b, w) in [(0, 2), (1, 2), (2, 0), (2, 1)] {
        let mut v = vec![0u8; 24];
        v[23] = 1;
        rustix::fs::lsetxattr(
            set.dirs[b].join("series"),
            format!("{AFR_PREFIX}pending.test-client-{w}"),
            &v,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    let g = client(&set).await;
    let afr = g.find::<cluster::afr::Afr>().next().unwrap();
    let r = afr
        .heal(Loc::inode(dir), &Resolve::None, false, &Throttle::new(0))
        .await
        .unwrap();
    let why = r.split_brain.expect("reported");
    assert!(why.contains("a.dcm"), "{why}");
    for d in &set.dirs {
        assert!(
            d.join("series/a.dcm").exists(),
            "nothing removed on {}",
            d.display()
        );
    }
    g.stop().await;
}

/// Unmounts a read-only bind mount when dropped.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn over(dir: &Path) -> ReadOnly {
        let d = dir.display().to_string();
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "mount --bind '{d}' '{d}' && mount -o remount,bind,ro '{d}'"
            ))
            .status()
            .unwrap()
            .success();
        assert!(ok, "read-only bind mount over {d}");
        ReadOnly(dir.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_that_reaches_fewer_bricks_than_quorum_is_not_acknowledged() {
    let mut set = start_set();
    let g = client(&set).await;
    let top = g.top();
    let kept = put(top, Gfid::ROOT, "kept", b"original").await.unwrap();
    // Brick 1 away, brick 0 up but read-only: only brick 2 can take a change, and one of
    // three is short of quorum.
    set.bricks[1].kill();
    wait_for(Duration::from_secs(10), || {
        !g.node("test-client-1").unwrap().is_up()
    })
    .await;
    let ro = ReadOnly::over(&set.dirs[0]);
    let err = put(top, Gfid::ROOT, "new", b"x").await.unwrap_err();
    assert_eq!(err.errno, libc::EROFS, "{err}");
    assert!(err.msg.contains("short of quorum"), "{err}");
    let fd = Fd::new(kept, libc::O_WRONLY);
    top.open(
        &cx(),
        Loc::inode(kept),
        libc::O_WRONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    let err = top
        .write(
            &cx(),
            fd.clone(),
            0,
            Payload::new(b"CHANGED!".to_vec()),
            Xdata::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.errno, libc::EROFS, "{err}");
    let _ = top.release(&cx(), fd).await;
    let err = top
        .mkdir(
            &cx(),
            Loc::entry(Gfid::ROOT, "d"),
            0o755,
            0o022,
            Xdata::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.errno, libc::EROFS, "{err}");
    drop(ro);
    // With brick 0 writable again, two of three make a quorum.
    put(top, Gfid::ROOT, "after", b"y").await.unwrap();
    assert_eq!(get(top, Gfid::ROOT, "after").await.unwrap(), b"y");
    g.stop().await;
}

/// Gfids in the heal index of any brick.
fn indexed(set: &Set) -> Vec<Gfid> {
    let mut out: Vec<Gfid> = set
        .dirs
        .iter()
        .filter_map(|d| fs::read_dir(d.join(".cairn/indices")).ok())
        .flat_map(|r| r.flatten())
        .filter_map(|e| Gfid::parse(&e.file_name().to_string_lossy()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Heals what the indices name until they are empty, as the heal daemon's index pass does.
async fn heal_indexed(set: &Set, afr: &cluster::afr::Afr) -> cluster::afr::heal::HealReport {
    use cluster::afr::heal::{Resolve, Throttle, merge};
    let mut total = cluster::afr::heal::HealReport::default();
    for _ in 0..10 {
        let pending = indexed(set);
        if pending.is_empty() {
            return total;
        }
        for g in pending {
            let r = match afr
                .heal(Loc::inode(g), &Resolve::None, false, &Throttle::new(0))
                .await
            {
                Ok(r) => r,
                // A file whose copy a brick lacks waits for its directory's entry heal,
                // which may come later in this round: the next round takes it again.
                Err(e) if e.errno == libc::EAGAIN => continue,
                Err(e) => panic!("{g}: {e}"),
            };
            assert!(r.split_brain.is_none(), "{g}: {r:?}");
            merge(&mut total, r);
        }
    }
    panic!("the index did not empty: {:?}", indexed(set));
}

fn tree(root: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == ".cairn" {
                continue;
            }
            let md = fs::symlink_metadata(&p).unwrap();
            use std::os::unix::fs::PermissionsExt;
            let mode = md.permissions().mode();
            if md.is_dir() {
                stack.push(p);
                out.push((rel, mode, Vec::new()));
            } else {
                out.push((rel, mode, fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heal_makes_a_returning_brick_whole_data_metadata_and_entries() {
    let mut set = start_set();
    let g = client(&set).await;
    let top = g.top();
    put(top, Gfid::ROOT, "report", b"version 1").await.unwrap();
    put(top, Gfid::ROOT, "retracted", b"wrong patient")
        .await
        .unwrap();
    set.bricks[0].kill();
    wait_for(Duration::from_secs(10), || {
        !g.node("test-client-0").unwrap().is_up()
    })
    .await;
    // While brick 0 is away: data, metadata and entry changes.
    let e = top
        .lookup(&cx(), Loc::entry(Gfid::ROOT, "report"), Xdata::new())
        .await
        .unwrap();
    let fd = Fd::new(e.iatt.gfid, libc::O_WRONLY);
    top.open(
        &cx(),
        Loc::inode(e.iatt.gfid),
        libc::O_WRONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    top.write(
        &cx(),
        fd.clone(),
        0,
        Payload::new(pattern(200_000, 9)),
        Xdata::new(),
    )
    .await
    .unwrap();
    top.release(&cx(), fd).await.unwrap();
    top.setattr(
        &cx(),
        Target::Loc(Loc::inode(e.iatt.gfid)),
        SetAttr {
            perm: Some(0o600),
            ..SetAttr::default()
        },
        Xdata::new(),
    )
    .await
    .unwrap();
    top.unlink(&cx(), Loc::entry(Gfid::ROOT, "retracted"), Xdata::new())
        .await
        .unwrap();
    let series = top
        .mkdir(
            &cx(),
            Loc::entry(Gfid::ROOT, "series").with_gfid(Gfid::random()),
            0o750,
            0,
            Xdata::new(),
        )
        .await
        .unwrap();
    for i in 0..5 {
        put(
            top,
            series.iatt.gfid,
            &format!("IM{i}.dcm"),
            &pattern(57 * 1024, i),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    set.bricks[0].restart();
    wait_for(Duration::from_secs(10), || {
        g.node("test-client-0").unwrap().is_up()
    })
    .await;
    assert_ne!(tree(&set.dirs[0]), tree(&set.dirs[1]), "brick 0 is stale");
    let afr = g.find::<cluster::afr::Afr>().next().unwrap();
    let report = heal_indexed(&set, afr).await;
    assert!(report.data >= 1 && report.metadata >= 1 && report.entries >= 3);
    assert_eq!(
        report.bytes,
        200_000 + 5 * 57 * 1024,
        "every missed byte is copied exactly once (a file created by its directory's heal is \
         not copied again for its own index entry)"
    );
    let want = tree(&set.dirs[1]);
    assert_eq!(tree(&set.dirs[0]), want, "brick 0 is whole again");
    assert_eq!(tree(&set.dirs[2]), want);
    assert!(!set.dirs[0].join("retracted").exists());
    // The healed copy carries the same gfid, and every counter is back to zero.
    for name in ["report", "series", "series/IM3.dcm"] {
        assert_eq!(
            xattr(&set.dirs[0].join(name), "trusted.cairn.gfid"),
            xattr(&set.dirs[1].join(name), "trusted.cairn.gfid"),
            "{name}"
        );
    }
    for d in &set.dirs {
        for p in [d.clone(), d.join("report"), d.join("series")] {
            for (k, c) in afr_counters(&p) {
                assert_eq!(c, [0, 0, 0], "{k} on {}", p.display());
            }
        }
        assert_eq!(index_entries(d), 0, "index of {}", d.display());
    }
    // With the other two bricks gone, brick 0 alone serves the healed contents.
    let mut set = set;
    set.bricks[1].kill();
    set.bricks[2].kill();
    let g2 = client_with_one(&set).await;
    assert_eq!(
        get(g2.top(), Gfid::ROOT, "report").await.unwrap(),
        pattern(200_000, 9)
    );
    g2.stop().await;
    g.stop().await;
}

/// A client whose replicate needs only one brick for reads (the others are down).
async fn client_with_one(set: &Set) -> Graph {
    let vf = cairn_volfiles::parse(&set.volfile).unwrap();
    let g = Graph::from_volfile(&vf, &Registry::builtin()).unwrap();
    g.start().await.unwrap();
    wait_for(Duration::from_secs(10), || {
        g.node("test-client-0").is_some_and(|n| n.is_up())
    })
    .await;
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heal_leaves_a_split_brain_alone_until_a_policy_picks_the_source() {
    use cluster::afr::heal::{Resolve, Throttle};
    let set = start_set();
    let g = client(&set).await;
    let gfid = put(g.top(), Gfid::ROOT, "disputed", b"same").await.unwrap();
    g.stop().await;
    // Three different copies, each blaming the next one.
    let contents: [&[u8]; 3] = [b"short", b"the longest copy of all", b"middle size"];
    for (i, c) in contents.iter().enumerate() {
        let p = set.dirs[i].join("disputed");
        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(0).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(c, 0).unwrap();
        let mut v = vec![0u8; 24];
        v[7] = 1;
        rustix::fs::lsetxattr(
            &p,
            format!("{AFR_PREFIX}pending.test-client-{}", (i + 1) % 3),
            &v,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    let g = client(&set).await;
    let afr = g.find::<cluster::afr::Afr>().next().unwrap();
    let r = afr
        .heal(Loc::inode(gfid), &Resolve::None, false, &Throttle::new(0))
        .await
        .unwrap();
    assert!(r.split_brain.is_some(), "{r:?}");
    for (i, c) in contents.iter().enumerate() {
        assert_eq!(
            fs::read(set.dirs[i].join("disputed")).unwrap(),
            *c,
            "nothing is copied without a policy"
        );
    }
    assert_eq!(
        get(g.top(), Gfid::ROOT, "disputed")
            .await
            .unwrap_err()
            .errno,
        libc::EIO
    );
    let r = afr
        .heal(
            Loc::inode(gfid),
            &Resolve::BiggerFile,
            false,
            &Throttle::new(0),
        )
        .await
        .unwrap();
    assert!(r.split_brain.is_none(), "{r:?}");
    for d in &set.dirs {
        assert_eq!(
            fs::read(d.join("disputed")).unwrap(),
            contents[1],
            "the biggest copy wins on {}",
            d.display()
        );
        for (k, c) in afr_counters(&d.join("disputed")) {
            assert_eq!(c, [0, 0, 0], "{k} on {}", d.display());
        }
    }
    // A fresh client reads the chosen contents.
    let g2 = client(&set).await;
    assert_eq!(
        get(g2.top(), Gfid::ROOT, "disputed").await.unwrap(),
        contents[1]
    );
    g2.stop().await;
    g.stop().await;
}

/// Requests each brick received since the last call (per brick, by fop).
fn requests(g: &Graph) -> Vec<u64> {
    (0..3)
        .map(|i| {
            let node = g.node(&format!("test-count-{i}")).unwrap();
            let stats = node
                .as_any()
                .downcast_ref::<debug::io_stats::IoStats>()
                .unwrap()
                .stats();
            let n = stats.snapshot().iter().map(|f| f.calls).sum();
            stats.reset();
            n
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_small_file_costs_one_round_trip_to_create_and_one_to_write() {
    let set = start_set_with(true);
    let g = client(&set).await;
    let top = g.top();
    let dir = top
        .mkdir(
            &cx(),
            Loc::entry(Gfid::ROOT, "study").with_gfid(Gfid::random()),
            0o755,
            0,
            Xdata::new(),
        )
        .await
        .unwrap()
        .iatt
        .gfid;
    tokio::time::sleep(Duration::from_millis(300)).await;
    requests(&g);
    for i in 0..5 {
        let gfid = Gfid::random();
        let fd = Fd::new(gfid, libc::O_WRONLY);
        top.create(
            &cx(),
            Loc::entry(dir, format!("IM{i}.dcm")).with_gfid(gfid),
            libc::O_WRONLY | libc::O_CREAT,
            0o644,
            0o022,
            fd.clone(),
            Xdata::new(),
        )
        .await
        .unwrap();
        // Unlocks and other background requests would show up here too.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(requests(&g), vec![1, 1, 1], "create: one request per brick");
        top.write(
            &cx(),
            fd.clone(),
            0,
            Payload::new(pattern(57 * 1024, i)),
            Xdata::new(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            requests(&g),
            vec![1, 1, 1],
            "first write: one request per brick"
        );
        top.flush(&cx(), fd.clone(), Xdata::new()).await.unwrap();
        assert_eq!(requests(&g), vec![0, 0, 0], "close(2) waits for no brick");
        top.release(&cx(), fd).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            requests(&g),
            vec![1, 1, 1],
            "release (in the background of close): one request per brick"
        );
    }
    for d in &set.dirs {
        assert_eq!(
            fs::read(d.join("study/IM3.dcm")).unwrap(),
            pattern(57 * 1024, 3)
        );
    }
    g.stop().await;
}

async fn create_excl(top: &XlatorRef, parent: Gfid, name: &str) -> FopResult<Gfid> {
    let g = Gfid::random();
    let fd = Fd::new(g, libc::O_WRONLY);
    let e = top
        .create(
            &cx(),
            Loc::entry(parent, name).with_gfid(g),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o644,
            0o022,
            fd.clone(),
            Xdata::new(),
        )
        .await?;
    top.release(&cx(), fd).await?;
    Ok(e.iatt.gfid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_exclusive_creates_have_exactly_one_winner() {
    let set = start_set();
    let (a, b) = (client(&set).await, client(&set).await);
    let mut wins = [0, 0];
    for i in 0..40 {
        let name = format!("excl-{i}");
        let (ta, tb) = (Arc::clone(a.top()), Arc::clone(b.top()));
        let (n1, n2) = (name.clone(), name.clone());
        let r1 = tokio::spawn(async move { create_excl(&ta, Gfid::ROOT, &n1).await });
        let r2 = tokio::spawn(async move { create_excl(&tb, Gfid::ROOT, &n2).await });
        let (r1, r2) = (r1.await.unwrap(), r2.await.unwrap());
        let winner = match (&r1, &r2) {
            (Ok(g), Err(e)) | (Err(e), Ok(g)) => {
                assert_eq!(e.errno, libc::EEXIST, "{name}: the loser gets EEXIST: {e}");
                *g
            }
            other => panic!("{name}: exactly one O_EXCL create succeeds: {other:?}"),
        };
        wins[usize::from(r1.is_err())] += 1;
        for d in &set.dirs {
            assert_eq!(
                xattr(&d.join(&name), "trusted.cairn.gfid"),
                Some(winner.0.to_vec()),
                "{name} on {}",
                d.display()
            );
        }
    }
    assert_eq!(wins[0] + wins[1], 40);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_replaces_a_stale_name_a_returning_brick_kept() {
    let mut set = start_set();
    let g = client(&set).await;
    let top = g.top();
    let old = put(top, Gfid::ROOT, "reused", b"old image").await.unwrap();
    set.bricks[2].kill();
    wait_for(Duration::from_secs(10), || {
        !g.node("test-client-2").unwrap().is_up()
    })
    .await;
    top.unlink(&cx(), Loc::entry(Gfid::ROOT, "reused"), Xdata::new())
        .await
        .unwrap();
    set.bricks[2].restart();
    wait_for(Duration::from_secs(10), || {
        g.node("test-client-2").unwrap().is_up()
    })
    .await;
    // Brick 2 still has the old file; a new one of the same name wins everywhere.
    assert!(set.dirs[2].join("reused").exists());
    let new = put(top, Gfid::ROOT, "reused", b"new image").await.unwrap();
    assert_ne!(new, old);
    for d in &set.dirs {
        assert_eq!(
            xattr(&d.join("reused"), "trusted.cairn.gfid"),
            Some(new.0.to_vec()),
            "{}",
            d.display()
        );
        assert_eq!(fs::read(d.join("reused")).unwrap(), b"new image");
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_opened_while_a_brick_lacked_it_writes_there_once_it_has_it() {
    let mut set = start_set();
    let g = client(&set).await;
    let top = g.top();
    set.bricks[2].kill();
    wait_for(Duration::from_secs(10), || {
        !g.node("test-client-2").unwrap().is_up()
    })
    .await;
    let gfid = put(top, Gfid::ROOT, "late", b"version 1").await.unwrap();
    // Opened while brick 2 has no copy: the fd is open on bricks 0 and 1 only.
    let fd = Fd::new(gfid, libc::O_WRONLY);
    top.open(
        &cx(),
        Loc::inode(gfid),
        libc::O_WRONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    set.bricks[2].restart();
    wait_for(Duration::from_secs(10), || {
        g.node("test-client-2").unwrap().is_up()
    })
    .await;
    let afr = g.find::<cluster::afr::Afr>().next().unwrap();
    heal_indexed(&set, afr).await;
    assert_eq!(fs::read(set.dirs[2].join("late")).unwrap(), b"version 1");
    // The next write through the old fd reaches brick 2 too, instead of blaming it.
    top.write(
        &cx(),
        fd.clone(),
        0,
        Payload::new(b"version 2".to_vec()),
        Xdata::new(),
    )
    .await
    .unwrap();
    top.release(&cx(), fd).await.unwrap();
    for d in &set.dirs {
        assert_eq!(
            fs::read(d.join("late")).unwrap(),
            b"version 2",
            "{}",
            d.display()
        );
    }
    assert!(
        indexed(&set).is_empty(),
        "no copy is left for heal: {:?}",
        indexed(&set)
    );
    g.stop().await;
}

/// A client whose requests to brick `slow` wait `ms` first (a `debug/delay-gen` under the
/// name replicate knows the brick by, so blame keys stay the same).
async fn client_slow_on(set: &Set, slow: usize, ms: u64) -> Graph {
    client_slow_on_fops(set, slow, ms, "").await
}

/// [`client_slow_on`] for the fops listed in `fops` only (comma-separated; empty: all).
async fn client_slow_on_fops(set: &Set, slow: usize, ms: u64, fops: &str) -> Graph {
    let proto = format!("test-proto-{slow}");
    let vf = set.volfile.replacen(
        &format!("  - name: test-client-{slow}\n"),
        &format!(
            "  - name: test-client-{slow}\n    type: debug/delay-gen\n    options:\n      delay-duration: {ms}ms\n      enable: \"{fops}\"\n    subvolumes: [{proto}]\n  - name: {proto}\n"
        ),
        1,
    );
    let vf = cairn_volfiles::parse(&vf).unwrap();
    let g = Graph::from_volfile(&vf, &Registry::builtin()).unwrap();
    g.start().await.unwrap();
    wait_for(Duration::from_secs(10), || g.top().is_up()).await;
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_that_reach_the_bricks_in_opposite_orders_still_agree() {
    let set = start_set();
    // Client a is slow to brick 0, client b to brick 2: on brick 0 b's create lands first,
    // on brick 2 a's. Neither may keep its own gfid on some bricks only.
    let a = client_slow_on(&set, 0, 150).await;
    let b = client_slow_on(&set, 2, 150).await;
    for (i, exclusive) in [(0, false), (1, true), (2, false), (3, true)] {
        let name = format!("crossed-{i}");
        let (ta, tb) = (Arc::clone(a.top()), Arc::clone(b.top()));
        let (n1, n2) = (name.clone(), name.clone());
        let (r1, r2) = if exclusive {
            let r1 = tokio::spawn(async move { create_excl(&ta, Gfid::ROOT, &n1).await });
            let r2 = tokio::spawn(async move { create_excl(&tb, Gfid::ROOT, &n2).await });
            (r1.await.unwrap(), r2.await.unwrap())
        } else {
            let r1 = tokio::spawn(async move { put(&ta, Gfid::ROOT, &n1, b"from a").await });
            let r2 = tokio::spawn(async move { put(&tb, Gfid::ROOT, &n2, b"from b").await });
            (r1.await.unwrap(), r2.await.unwrap())
        };
        if exclusive {
            assert!(
                r1.is_ok() != r2.is_ok(),
                "{name}: one O_EXCL create wins: {r1:?} {r2:?}"
            );
        } else {
            let (g1, g2) = (r1.unwrap(), r2.unwrap());
            let _ = (g1, g2);
        }
        let gfids: Vec<Option<Vec<u8>>> = set
            .dirs
            .iter()
            .map(|d| xattr(&d.join(&name), "trusted.cairn.gfid"))
            .collect();
        assert!(gfids[0].is_some(), "{name} exists");
        assert!(
            gfids.iter().all(|g| *g == gfids[0]),
            "{name}: bricks disagree on the gfid: {gfids:?}"
        );
        let copies: Vec<Vec<u8>> = set
            .dirs
            .iter()
            .map(|d| fs::read(d.join(&name)).unwrap())
            .collect();
        assert!(
            copies.iter().all(|c| *c == copies[0]),
            "{name}: copies differ: {copies:?}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heal_gives_a_returning_arbiter_names_and_metadata_only() {
    let mut set = start_set();
    set.volfile = set.volfile.replacen(
        "      eager-lock-idle: 200ms\n",
        "      arbiter-count: 1\n      eager-lock-idle: 200ms\n",
        1,
    );
    let g = client(&set).await;
    let top = g.top();
    set.bricks[2].kill();
    wait_for(Duration::from_secs(10), || {
        !g.node("test-client-2").unwrap().is_up()
    })
    .await;
    let series = top
        .mkdir(
            &cx(),
            Loc::entry(Gfid::ROOT, "series").with_gfid(Gfid::random()),
            0o750,
            0,
            Xdata::new(),
        )
        .await
        .unwrap();
    for i in 0..4 {
        put(
            top,
            series.iatt.gfid,
            &format!("IM{i}.dcm"),
            &pattern(57 * 1024, i),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    set.bricks[2].restart();
    wait_for(Duration::from_secs(10), || {
        g.node("test-client-2").unwrap().is_up()
    })
    .await;
    let afr = g.find::<cluster::afr::Afr>().next().unwrap();
    let report = heal_indexed(&set, afr).await;
    assert_eq!(report.bytes, 0, "no contents reach the arbiter");
    for i in 0..4 {
        let name = format!("series/IM{i}.dcm");
        let arb = set.dirs[2].join(&name);
        assert_eq!(
            fs::metadata(&arb).unwrap().len(),
            0,
            "{name} on the arbiter"
        );
        assert_eq!(
            xattr(&arb, "trusted.cairn.gfid"),
            xattr(&set.dirs[0].join(&name), "trusted.cairn.gfid")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&arb).unwrap().permissions().mode() & 0o7777,
            fs::metadata(set.dirs[0].join(&name))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        );
    }
    for d in &set.dirs {
        assert_eq!(index_entries(d), 0, "index of {}", d.display());
    }
    g.stop().await;
}

/// The set's client graph with `performance/quick-read` between io-stats and replicate.
fn with_quick_read(set: &mut Set) {
    let top =
        "  - name: test-io-stats\n    type: debug/io-stats\n    subvolumes: [test-replicate-0]\n";
    assert!(set.volfile.contains(top));
    set.volfile = set.volfile.replace(
        top,
        "  - name: test-qr\n    type: performance/quick-read\n    subvolumes: [test-replicate-0]\n  - name: test-io-stats\n    type: debug/io-stats\n    subvolumes: [test-qr]\n",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_quick_read_an_mr_image_costs_one_lookup_round_trip_and_a_ct_image_two() {
    let mut set = start_set_with(true);
    with_quick_read(&mut set);
    let g = client(&set).await;
    let top = g.top();
    let mr = pattern(57 * 1024, 1);
    let ct = pattern(517 * 1024, 2);
    put(top, Gfid::ROOT, "mr.dcm", &mr).await.unwrap();
    put(top, Gfid::ROOT, "ct.dcm", &ct).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A second client: nothing cached.
    let g2 = client(&set).await;
    let top2 = g2.top();
    requests(&g2);
    for (name, want, opens) in [("mr.dcm", &mr, 0u64), ("ct.dcm", &ct, 1)] {
        let e = top2
            .lookup(&cx(), Loc::entry(Gfid::ROOT, name), Xdata::new())
            .await
            .unwrap();
        assert_eq!(requests(&g2), vec![1, 1, 1], "{name}: lookup on every copy");
        let fd = Fd::new(e.iatt.gfid, libc::O_RDONLY);
        top2.open(
            &cx(),
            Loc::inode(e.iatt.gfid),
            libc::O_RDONLY,
            fd.clone(),
            Xdata::new(),
        )
        .await
        .unwrap();
        assert_eq!(
            requests(&g2),
            vec![opens; 3],
            "{name}: the open is answered by the client (a CT image: one fetch)"
        );
        let mut got = Vec::new();
        while got.len() < want.len() {
            let p = top2
                .read(&cx(), fd.clone(), got.len() as u64, 128 << 10, Xdata::new())
                .await
                .unwrap();
            assert!(!p.is_empty());
            got.extend_from_slice(p.bytes());
        }
        top2.flush(&cx(), fd.clone(), Xdata::new()).await.unwrap();
        top2.release(&cx(), fd).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(&got == want, "{name}: the bytes differ");
        assert_eq!(
            requests(&g2),
            vec![0, 0, 0],
            "{name}: reads, flush and release stay in the client"
        );
    }
    g2.stop().await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quick_read_never_serves_content_from_a_copy_that_missed_a_change() {
    let mut set = start_set();
    with_quick_read(&mut set);
    // No heal on access: the stale copies stay stale while the files are read.
    set.volfile = set.volfile.replace(
        "      eager-lock-idle: 200ms\n",
        "      eager-lock-idle: 200ms\n      heal-on-access: off\n",
    );
    let g = client(&set).await;
    let top = g.top();
    let names: Vec<String> = (0..12).map(|i| format!("IM-{i:04}.dcm")).collect();
    for (i, n) in names.iter().enumerate() {
        put(top, Gfid::ROOT, n, &pattern(20_000, i as u64))
            .await
            .unwrap();
    }
    set.bricks[0].kill();
    wait_for(Duration::from_secs(10), || {
        !g.node("test-client-0").unwrap().is_up()
    })
    .await;
    for (i, n) in names.iter().enumerate() {
        let e = top
            .lookup(&cx(), Loc::entry(Gfid::ROOT, n), Xdata::new())
            .await
            .unwrap();
        let fd = Fd::new(e.iatt.gfid, libc::O_WRONLY);
        top.open(
            &cx(),
            Loc::inode(e.iatt.gfid),
            libc::O_WRONLY,
            fd.clone(),
            Xdata::new(),
        )
        .await
        .unwrap();
        top.write(
            &cx(),
            fd.clone(),
            0,
            Payload::new(pattern(20_000, 100 + i as u64)),
            Xdata::new(),
        )
        .await
        .unwrap();
        top.release(&cx(), fd).await.unwrap();
    }
    set.bricks[0].restart();
    wait_for(Duration::from_secs(10), || {
        g.node("test-client-0").unwrap().is_up()
    })
    .await;
    g.stop().await;
    // A fresh client, every brick up, brick 0 holding the old bytes of every file: the
    // names hash over all three copies, so some lookups ask brick 0 for content.
    let g2 = client(&set).await;
    for (i, n) in names.iter().enumerate() {
        assert!(
            fs::read(set.dirs[0].join(n)).unwrap() == pattern(20_000, i as u64),
            "brick 0 still has the old copy of {n}"
        );
        assert!(
            get(g2.top(), Gfid::ROOT, n).await.unwrap() == pattern(20_000, 100 + i as u64),
            "{n}: the client read the copy that missed the change"
        );
    }
    let qr = g2
        .node("test-qr")
        .unwrap()
        .as_any()
        .downcast_ref::<performance::quick_read::QuickRead>()
        .unwrap()
        .counters();
    assert_eq!(
        qr.opens_served + qr.opens_fetched,
        names.len() as u64,
        "every open was answered from content: {qr:?}"
    );
    assert!(
        qr.opens_fetched > 0,
        "lookups that asked brick 0 got no content, so those opens fetched it from a good copy: {qr:?}"
    );
    g2.stop().await;
}

/// Opens `gfid` for writing through `top`, writes `data` at offset 0 and closes it.
async fn overwrite(top: &XlatorRef, gfid: Gfid, data: &[u8]) {
    let w = Fd::new(gfid, libc::O_WRONLY);
    top.open(
        &cx(),
        Loc::inode(gfid),
        libc::O_WRONLY,
        w.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    top.write(
        &cx(),
        w.clone(),
        0,
        Payload::new(data.to_vec()),
        Xdata::new(),
    )
    .await
    .unwrap();
    top.release(&cx(), w).await.unwrap();
}

/// Another client changes a file while this one cannot reach brick 0; when brick 0 comes
/// back, this client's verdict on the file (every copy good, from before) is stale, and a
/// read through a descriptor it opened before must not be served brick 0's old copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_brick_back_after_missing_another_clients_change_is_not_read_by_an_old_verdict() {
    let mut set = start_set();
    set.volfile = set.volfile.replace(
        "      eager-lock-idle: 200ms\n",
        "      eager-lock-idle: 200ms\n      heal-on-access: off\n",
    );
    let reader = client(&set).await;
    let writer = client(&set).await;
    let gfid = put(writer.top(), Gfid::ROOT, "report", b"version 1")
        .await
        .unwrap();
    // The reader judges every copy good and opens the file everywhere.
    let top = reader.top();
    top.lookup(&cx(), Loc::entry(Gfid::ROOT, "report"), Xdata::new())
        .await
        .unwrap();
    let r = Fd::new(gfid, libc::O_RDONLY);
    top.open(
        &cx(),
        Loc::inode(gfid),
        libc::O_RDONLY,
        r.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    set.bricks[0].kill();
    wait_for(Duration::from_secs(10), || {
        !reader.node("test-client-0").unwrap().is_up()
            && !writer.node("test-client-0").unwrap().is_up()
    })
    .await;
    overwrite(writer.top(), gfid, b"version 2").await;
    set.bricks[0].restart();
    wait_for(Duration::from_secs(10), || {
        reader.node("test-client-0").unwrap().is_up()
    })
    .await;
    // (Brick 0, first up, is where a verdict of "all good" sends reads.)
    let got = top
        .read(&cx(), r.clone(), 0, 100, Xdata::new())
        .await
        .unwrap();
    assert_eq!(
        got.bytes().as_ref(),
        b"version 2",
        "read the copy that missed the other client's write"
    );
    assert_eq!(fs::read(set.dirs[0].join("report")).unwrap(), b"version 1");
    top.release(&cx(), r).await.unwrap();
    reader.stop().await;
    writer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_long_after_the_lookup_never_goes_to_a_copy_that_missed_a_change() {
    let mut set = start_set();
    // No heal on access: brick 0 keeps its old copy for the whole test.
    set.volfile = set.volfile.replace(
        "      eager-lock-idle: 200ms\n",
        "      eager-lock-idle: 200ms\n      heal-on-access: off\n",
    );
    let g = client(&set).await;
    let top = g.top();
    put(top, Gfid::ROOT, "report", b"version 1").await.unwrap();
    set.bricks[0].kill();
    wait_for(Duration::from_secs(10), || {
        !g.node("test-client-0").unwrap().is_up()
    })
    .await;
    let gfid = top
        .lookup(&cx(), Loc::entry(Gfid::ROOT, "report"), Xdata::new())
        .await
        .unwrap()
        .iatt
        .gfid;
    overwrite(top, gfid, b"version 2").await;
    set.bricks[0].restart();
    wait_for(Duration::from_secs(10), || {
        g.node("test-client-0").unwrap().is_up()
    })
    .await;
    // A reader opens the file on every copy (brick 0 included) after a lookup...
    top.lookup(&cx(), Loc::entry(Gfid::ROOT, "report"), Xdata::new())
        .await
        .unwrap();
    let r = Fd::new(gfid, libc::O_RDONLY);
    top.open(
        &cx(),
        Loc::inode(gfid),
        libc::O_RDONLY,
        r.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    // ...and reads only after the client's table of verdicts was emptied (it is bounded).
    g.node("test-replicate-0")
        .unwrap()
        .as_any()
        .downcast_ref::<cluster::afr::Afr>()
        .unwrap()
        .forget_verdicts();
    let got = top
        .read(&cx(), r.clone(), 0, 100, Xdata::new())
        .await
        .unwrap();
    assert_eq!(
        got.bytes().as_ref(),
        b"version 2",
        "read the copy that missed the write"
    );
    assert_eq!(fs::read(set.dirs[0].join("report")).unwrap(), b"version 1");
    top.release(&cx(), r).await.unwrap();
    g.stop().await;
}

/// Until `done`, looks `gfid` up through `reader` asking for its content, and checks that
/// any content served is one of `allowed` (never a copy being rewritten). Returns how often
/// `on_brick` (a copy heal rewrites) was seen ending in zeros, and how often content came.
async fn look_while_healing(
    reader: &Graph,
    on_brick: &Path,
    gfid: Gfid,
    done: &std::sync::atomic::AtomicBool,
    allowed: &[&[u8]],
) -> (usize, usize) {
    let (mut zeros_seen, mut served) = (0, 0);
    let len = allowed[0].len();
    let t0 = Instant::now();
    while !done.load(std::sync::atomic::Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(30)
    {
        let copy = fs::read(on_brick).unwrap_or_default();
        if copy.len() == len && copy[len - 4096..].iter().all(|&b| b == 0) {
            zeros_seen += 1;
        }
        let mut x = Xdata::new();
        x.set_u64(performance::quick_read::WANT_KEY, 4 << 20);
        let e = reader
            .top()
            .lookup(&cx(), Loc::inode(gfid), x)
            .await
            .unwrap();
        if let Some(c) = e.xdata.get(performance::quick_read::CONTENT_KEY) {
            served += 1;
            assert!(
                allowed.contains(&c),
                "a lookup was handed a copy in the middle of its heal ({} zero bytes)",
                c.iter().filter(|&&b| b == 0).count()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (zeros_seen, served)
}

/// A 2 MiB file "img" whose copy on brick 0 (where first-up reads go) holds older bytes,
/// with every copy dirty and none blamed: heal picks the newest copy and rewrites brick 0's.
/// Returns its gfid, the newest bytes and the older ones.
async fn older_on_brick_0_and_dirty_everywhere(set: &Set) -> (Gfid, Vec<u8>, Vec<u8>) {
    let g = client(set).await;
    let new = pattern(2 << 20, 1);
    let old = pattern(2 << 20, 2);
    let gfid = put(g.top(), Gfid::ROOT, "img", &new).await.unwrap();
    g.stop().await;
    {
        let p = set.dirs[0].join("img");
        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&old, 0).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
    }
    for d in &set.dirs {
        let mut v = vec![0u8; 24];
        v[7] = 1;
        rustix::fs::lsetxattr(
            d.join("img"),
            XATTR_DIRTY,
            &v,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    (gfid, new, old)
}

/// Copies that disagree with nothing but dirty marks (a writer that could not record who
/// missed what): heal picks the newest copy and rewrites the others. While a copy is being
/// rewritten (emptied, then filled) no lookup may judge it good, or a reader could be handed
/// its zeros.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_being_rewritten_by_heal_is_never_read_from() {
    use cluster::afr::heal::{Resolve, Throttle};
    let set = start_set();
    let (gfid, new, old) = older_on_brick_0_and_dirty_everywhere(&set).await;
    let g = client(&set).await;
    let afr = g.find::<cluster::afr::Afr>().next().unwrap();
    // 2 MiB copied in 1 MiB chunks at 256 KiB/s: the second half of a sink stays zeros for
    // about four seconds.
    let done = std::sync::atomic::AtomicBool::new(false);
    let heal = async {
        let r = afr
            .heal(
                Loc::inode(gfid),
                &Resolve::None,
                true,
                &Throttle::new(256 << 10),
            )
            .await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    };
    let reader = client(&set).await;
    let (copy, allowed) = (set.dirs[0].join("img"), [new.as_slice(), old.as_slice()]);
    let look = look_while_healing(&reader, &copy, gfid, &done, &allowed);
    let (r, (zeros_seen, served)) = tokio::join!(heal, look);
    let r = r.unwrap();
    assert!(zeros_seen > 0, "the test looked during a sink's rewrite");
    assert!(served > 0, "lookups were served content from a good copy");
    assert!(r.split_brain.is_none(), "{r:?}");
    for d in &set.dirs {
        assert!(
            fs::read(d.join("img")).unwrap() == new,
            "the newest copy won on {}",
            d.display()
        );
        for (k, c) in afr_counters(&d.join("img")) {
            assert_eq!(c, [0, 0, 0], "{k} on {}", d.display());
        }
    }
    reader.stop().await;
    g.stop().await;
}

/// What a lookup (asking for content) of `gfid` through `reader` was handed, whether
/// `copy` was in the middle of its heal when it came back, and what a read right after it
/// got, by what that lookup judged.
async fn look_then_read(
    reader: &Graph,
    gfid: Gfid,
    copy: &Path,
    done: &std::sync::atomic::AtomicBool,
) -> (bool, Option<Vec<u8>>, Vec<u8>) {
    let top = reader.top();
    let mut x = Xdata::new();
    x.set_u64(performance::quick_read::WANT_KEY, 4 << 20);
    let e = top.lookup(&cx(), Loc::inode(gfid), x).await.unwrap();
    let on_disk = fs::read(copy).unwrap_or_default();
    let len = on_disk.len();
    let mid_heal = !done.load(std::sync::atomic::Ordering::SeqCst)
        && len > 4096
        && on_disk[len - 4096..].iter().all(|&b| b == 0);
    let content = e
        .xdata
        .get(performance::quick_read::CONTENT_KEY)
        .map(<[u8]>::to_vec);
    let fd = Fd::new(gfid, libc::O_RDONLY);
    top.open(
        &cx(),
        Loc::inode(gfid),
        libc::O_RDONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    let read = top.read(&cx(), fd.clone(), 0, 4 << 20, Xdata::new()).await;
    top.release(&cx(), fd).await.unwrap();
    (mid_heal, content, read.unwrap().bytes().to_vec())
}

/// The same heal, met by lookups whose requests straddle its start: the copies heal reads
/// from answer before heal blames brick 0's copy, brick 0 answers once heal is rewriting it.
/// Nothing in the replies blames that copy, so the brick itself must refuse its contents
/// until the rewrite is over, to lookups (quick-read) and to the reads that follow alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lookup_that_judged_a_copy_before_heal_blamed_it_is_not_handed_its_zeros() {
    use cluster::afr::heal::{Resolve, Throttle};
    let set = start_set();
    let (gfid, new, old) = older_on_brick_0_and_dirty_everywhere(&set).await;
    let g = client(&set).await;
    let afr = g.find::<cluster::afr::Afr>().next().unwrap();
    // Heal rewrites both copies that are not its source, one after the other, a few seconds
    // each at this rate; brick 0's comes first or second. Two readers whose lookups reach
    // brick 0 two and six seconds late: one of them meets it mid-rewrite.
    let early = client_slow_on_fops(&set, 0, 2000, "lookup").await;
    let late = client_slow_on_fops(&set, 0, 6000, "lookup").await;
    let done = std::sync::atomic::AtomicBool::new(false);
    let copy = set.dirs[0].join("img");
    let heal = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = afr
            .heal(
                Loc::inode(gfid),
                &Resolve::None,
                true,
                &Throttle::new(256 << 10),
            )
            .await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    };
    let (a, b, r) = tokio::join!(
        look_then_read(&early, gfid, &copy, &done),
        look_then_read(&late, gfid, &copy, &done),
        heal
    );
    assert!(r.unwrap().split_brain.is_none());
    assert!(
        a.0 || b.0,
        "a lookup met brick 0's copy in the middle of its heal"
    );
    for (_, content, read) in [a, b] {
        if let Some(c) = content {
            assert!(
                c == new || c == old,
                "a lookup was handed a copy in the middle of its heal ({} zero bytes)",
                c.iter().filter(|&&b| b == 0).count()
            );
        }
        assert!(
            read == new || read == old,
            "a read during the heal got {} zero bytes",
            read.iter().filter(|&&b| b == 0).count()
        );
    }
    for d in &set.dirs {
        assert!(fs::read(d.join("img")).unwrap() == new, "{}", d.display());
    }
    early.stop().await;
    late.stop().await;
    g.stop().await;
}

/// Lookup (asking for content) and read of `gfid` on brick 0 alone, through `g`'s client of
/// it: what the lookup carried, and what the read got.
async fn on_brick_0(g: &Graph, gfid: Gfid) -> (Option<Vec<u8>>, FopResult<Vec<u8>>) {
    let b0 = g.node("test-client-0").unwrap();
    let mut x = Xdata::new();
    x.set_u64(performance::quick_read::WANT_KEY, 4 << 20);
    let e = b0.lookup(&cx(), Loc::inode(gfid), x).await.unwrap();
    let content = e
        .xdata
        .get(performance::quick_read::CONTENT_KEY)
        .map(<[u8]>::to_vec);
    let fd = Fd::new(gfid, libc::O_RDONLY);
    b0.open(
        &cx(),
        Loc::inode(gfid),
        libc::O_RDONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    let read = b0.read(&cx(), fd.clone(), 0, 4 << 20, Xdata::new()).await;
    b0.release(&cx(), fd).await.unwrap();
    (content, read.map(|p| p.bytes().to_vec()))
}

/// A heal cut off while it rewrites a copy (its healer gone) leaves zeros there. Blame keeps
/// replicate's lookups off that copy, but a reader may still hold a verdict from before, so
/// the brick itself serves none of it until a later heal has rewritten it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_whose_heal_was_cut_off_serves_nothing_until_healed() {
    use cluster::afr::heal::{Resolve, Throttle};
    let set = start_set();
    let (gfid, new, _old) = older_on_brick_0_and_dirty_everywhere(&set).await;
    let g = client(&set).await;
    let afr = g.find::<cluster::afr::Afr>().next().unwrap();
    let copy = set.dirs[0].join("img");
    let mid_rewrite = || {
        fs::read(&copy).is_ok_and(|d| d.len() == new.len() && d[new.len() - 4096..] == [0; 4096])
    };
    let slow = Throttle::new(256 << 10);
    let heal = afr.heal(Loc::inode(gfid), &Resolve::None, true, &slow);
    let cut = async {
        let t0 = Instant::now();
        while !mid_rewrite() && t0.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        r = heal => panic!("the heal ended before it could be cut off: {r:?}"),
        () = cut => {}
    }
    assert!(mid_rewrite(), "brick 0's copy was being rewritten");
    g.stop().await;
    let reader = client(&set).await;
    let (content, read) = on_brick_0(&reader, gfid).await;
    assert_eq!(content, None, "a lookup was handed the half-made copy");
    let err = read.expect_err("a read of the half-made copy was served");
    assert_eq!(err.errno, libc::EIO, "{err}");
    // Healed whole by a later pass, it serves again.
    let afr = reader.find::<cluster::afr::Afr>().next().unwrap();
    let r = afr
        .heal(Loc::inode(gfid), &Resolve::None, true, &Throttle::new(0))
        .await
        .unwrap();
    assert!(r.split_brain.is_none(), "{r:?}");
    assert!(fs::read(&copy).unwrap() == new);
    let (content, read) = on_brick_0(&reader, gfid).await;
    assert!(content.is_some_and(|c| c == new));
    assert!(read.unwrap() == new);
    reader.stop().await;
}

/// A copy missing from a wiped brick is made again by a full heal: created empty, then
/// filled. Nothing blamed the wiped brick for it, so heal must before it starts, or a
/// lookup could judge the half-made copy good and hand out its zeros.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_being_made_again_on_a_wiped_brick_is_never_read_from() {
    use cluster::afr::heal::{Resolve, Throttle};
    let set = start_set();
    let g = client(&set).await;
    let data = pattern(2 << 20, 3);
    let gfid = put(g.top(), Gfid::ROOT, "img", &data).await.unwrap();
    g.stop().await;
    // Brick 0, where first-up reads go, loses the file: name and handle.
    fs::remove_file(set.dirs[0].join("img")).unwrap();
    fs::remove_file(cairn_bricks::layout::file_handle(&set.dirs[0], gfid)).unwrap();
    let g = client(&set).await;
    let afr = g.find::<cluster::afr::Afr>().next().unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let heal = async {
        let r = afr
            .heal_dir_full(Gfid::ROOT, &Resolve::None, &Throttle::new(256 << 10))
            .await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    };
    let reader = client(&set).await;
    let (copy, allowed) = (set.dirs[0].join("img"), [data.as_slice()]);
    let look = look_while_healing(&reader, &copy, gfid, &done, &allowed);
    let (r, (zeros_seen, served)) = tokio::join!(heal, look);
    r.unwrap();
    assert!(
        zeros_seen > 0,
        "the test looked while the copy was being made"
    );
    assert!(served > 0, "lookups were served content from a good copy");
    // Settled: the copy is whole and nothing blames it (heal of its index entry may
    // finish what the entry heal left).
    let r = afr
        .heal(Loc::inode(gfid), &Resolve::None, false, &Throttle::new(0))
        .await
        .unwrap();
    assert!(r.split_brain.is_none(), "{r:?}");
    for d in &set.dirs {
        assert!(fs::read(d.join("img")).unwrap() == data, "{}", d.display());
        for (k, c) in afr_counters(&d.join("img")) {
            assert_eq!(c, [0, 0, 0], "{k} on {}", d.display());
        }
    }
    reader.stop().await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_costs_one_round_trip_per_brick() {
    let set = start_set_with(true);
    let g = client(&set).await;
    let top = g.top();
    for i in 0..5 {
        put(
            top,
            Gfid::ROOT,
            &format!("IM{i}.dcm"),
            &pattern(57 * 1024, i),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    requests(&g);
    for i in 0..5 {
        let name = format!("IM{i}.dcm");
        top.unlink(&cx(), Loc::entry(Gfid::ROOT, name.as_str()), Xdata::new())
            .await
            .unwrap();
        // Unlocks and other background requests would show up here too.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(requests(&g), vec![1, 1, 1], "unlink: one request per brick");
        for d in &set.dirs {
            assert!(
                !d.join(&name).exists(),
                "{name} is gone from {}",
                d.display()
            );
        }
    }
    let gone = top
        .unlink(&cx(), Loc::entry(Gfid::ROOT, "IM0.dcm"), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(gone.errno, libc::ENOENT);
    g.stop().await;
}

/// What each brick holds under `name`: its gfid, or `None`.
fn held(set: &Set, name: &str) -> Vec<Option<Vec<u8>>> {
    set.dirs
        .iter()
        .map(|d| xattr(&d.join(name), "trusted.cairn.gfid"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unlinks_racing_renames_and_creates_of_the_name_leave_every_brick_agreeing() {
    let set = start_set();
    // Client a is slow to brick 0, client b to brick 2: a's unlink reaches brick 0 while b's
    // rename or create may hold the name there, after it already removed the file elsewhere.
    let a = client_slow_on(&set, 0, 150).await;
    let b = client_slow_on(&set, 2, 150).await;
    for i in 0..6 {
        let (victim, incoming) = (format!("victim-{i}"), format!("incoming-{i}"));
        put(a.top(), Gfid::ROOT, &victim, b"old").await.unwrap();
        let renamed = i % 2 == 0;
        if renamed {
            put(a.top(), Gfid::ROOT, &incoming, b"new").await.unwrap();
        }
        let (ta, tb) = (Arc::clone(a.top()), Arc::clone(b.top()));
        let (v1, v2, inc) = (victim.clone(), victim.clone(), incoming.clone());
        let r1 = tokio::spawn(async move {
            ta.unlink(&cx(), Loc::entry(Gfid::ROOT, v1.as_str()), Xdata::new())
                .await
        });
        let r2 = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if renamed {
                tb.rename(
                    &cx(),
                    Loc::entry(Gfid::ROOT, inc.as_str()),
                    Loc::entry(Gfid::ROOT, v2.as_str()),
                    0,
                    Xdata::new(),
                )
                .await
                .map(|()| None)
            } else {
                put(&tb, Gfid::ROOT, &v2, b"new").await.map(Some)
            }
        });
        let (r1, r2) = (r1.await.unwrap(), r2.await.unwrap());
        let now = held(&set, &victim);
        assert!(
            now.iter().all(|g| *g == now[0]),
            "{victim}: bricks disagree after unlink {r1:?} and {} {r2:?}: {now:?}",
            if renamed { "rename" } else { "create" }
        );
        if r2.is_ok() && now[0].is_some() {
            let copies: Vec<Vec<u8>> = set
                .dirs
                .iter()
                .map(|d| fs::read(d.join(&victim)).unwrap())
                .collect();
            assert!(copies.iter().all(|c| c == b"new"), "{victim}: {copies:?}");
        }
        if renamed {
            assert!(r2.is_ok(), "the rename succeeds: {r2:?}");
            assert_eq!(held(&set, &incoming), vec![None, None, None]);
        }
    }
    a.stop().await;
    b.stop().await;
}
