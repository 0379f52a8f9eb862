//! Client caches through real FUSE mounts: what one mount writes, another sees within the
//! configured time, and the writer's own mount never serves data older than its last close.
//!
//! Two mounts of one brick, each with `performance/readdir-ahead`, `performance/quick-read`
//! and `performance/md-cache` in its graph (as cairnd's generated client volfiles have them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use cairn_tests::*;

/// The cache timeout the mounts use.
const TTL: Duration = Duration::from_secs(1);

struct TwoMounts {
    a: MountProc,
    b: MountProc,
    _brick: BrickProc,
    _tmp: tempfile::TempDir,
}

impl TwoMounts {
    /// Mount `a` with the kernel's default timeouts (1 s); `b` with `b_opts`.
    fn start(b_opts: &[&str]) -> TwoMounts {
        require_root();
        let tmp = tempfile::Builder::new()
            .prefix("cairn-cache-")
            .tempdir()
            .unwrap();
        let brick = BrickProc::start(
            &tmp.path().join("brick"),
            "vol-test",
            "brick-0",
            "127.0.0.1:0",
        );
        let plain = client_volfile("vol-test", ("127.0.0.1", brick.port(), "brick-0"), &[]);
        let with_qr = plain.replace(
            "  - name: test-io-stats\n    type: debug/io-stats\n    subvolumes: [test-client-0]\n",
            &format!(
                "  - name: test-rda\n    type: performance/readdir-ahead\n    options:\n      request-size: 16KiB\n    subvolumes: [test-client-0]\n  - name: test-qr\n    type: performance/quick-read\n    options:\n      cache-timeout: {ms}ms\n    subvolumes: [test-rda]\n  - name: test-md\n    type: performance/md-cache\n    options:\n      timeout: {ms}ms\n    subvolumes: [test-qr]\n  - name: test-io-stats\n    type: debug/io-stats\n    subvolumes: [test-md]\n",
                ms = TTL.as_millis()
            ),
        );
        assert_ne!(plain, with_qr, "the performance translators inserted");
        let volfile = tmp.path().join("client.vol");
        fs::write(&volfile, with_qr).unwrap();
        let a = MountProc::start(&volfile, &tmp.path().join("a"), &[]);
        let b = MountProc::start(&volfile, &tmp.path().join("b"), b_opts);
        TwoMounts {
            a,
            b,
            _brick: brick,
            _tmp: tmp,
        }
    }

    fn on_a(&self, rel: &str) -> PathBuf {
        self.a.path.join(rel)
    }

    fn on_b(&self, rel: &str) -> PathBuf {
        self.b.path.join(rel)
    }
}

/// Same size, different bytes: only the times tell the versions apart.
fn version(n: u64, size: usize) -> Vec<u8> {
    pattern(size, 1000 + n)
}

#[test]
fn a_change_on_one_mount_is_seen_on_another_within_the_cache_timeout() {
    // b's kernel keeps names and attributes for 30 s, so it asks the volume nothing before
    // an open: only quick-read's own timeout stands between b and old content.
    let m = TwoMounts::start(&["-o", "entry-timeout=30,attribute-timeout=30"]);
    for (name, size) in [("mr.dcm", 57 * 1024), ("ct.dcm", 517 * 1024)] {
        fs::write(m.on_a(name), version(1, size)).unwrap();
        for _ in 0..2 {
            assert!(
                fs::read(m.on_b(name)).unwrap() == version(1, size),
                "{name}: b reads what a wrote"
            );
        }
        for n in 2..5 {
            fs::write(m.on_a(name), version(n, size)).unwrap();
            std::thread::sleep(TTL + Duration::from_millis(200));
            assert!(
                fs::read(m.on_b(name)).unwrap() == version(n, size),
                "{name}: b still read version {} after the timeout",
                n - 1
            );
        }
    }
}

#[test]
fn the_writers_own_mount_never_reads_data_older_than_its_last_close() {
    let m = TwoMounts::start(&[]);
    for (name, size) in [("mr.dcm", 57 * 1024), ("ct.dcm", 517 * 1024)] {
        fs::write(m.on_a(name), version(0, size)).unwrap();
        for n in 1..5 {
            // Past the kernel's entry timeout the next access looks the name up, and the
            // read after it is served from content; then the file changes on this mount and
            // is read again at once, with no lookup in between.
            std::thread::sleep(Duration::from_millis(1100));
            assert!(fs::read(m.on_a(name)).unwrap() == version(n - 1, size));
            fs::write(m.on_a(name), version(n, size)).unwrap();
            assert!(
                fs::read(m.on_a(name)).unwrap() == version(n, size),
                "{name}: read version {} right after writing version {n}",
                n - 1
            );
        }
        // A reader that kept the file open across a write on the same mount sees the write.
        let mut reader = fs::File::open(m.on_a(name)).unwrap();
        fs::write(m.on_a(name), version(99, size)).unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
        assert!(
            got == version(99, size),
            "{name}: an open reader read old data"
        );
    }
}

#[test]
fn a_series_read_in_order_on_one_mount_sees_an_image_another_mount_rewrote() {
    let m = TwoMounts::start(&[]);
    fs::create_dir(m.on_a("series")).unwrap();
    let size = 57 * 1024;
    let name = |i: u64| format!("series/IM-{i:04}.dcm");
    for i in 1..=20 {
        fs::write(m.on_a(&name(i)), version(i, size)).unwrap();
    }
    // b starts reading in order: the images after the fifth are fetched ahead.
    for i in 1..=5 {
        assert!(fs::read(m.on_b(&name(i))).unwrap() == version(i, size));
    }
    // a rewrites images b has fetched ahead, then b reads on past the cache timeout.
    for i in [7, 8, 12] {
        fs::write(m.on_a(&name(i)), version(100 + i, size)).unwrap();
    }
    std::thread::sleep(TTL + Duration::from_millis(200));
    for i in 6..=20 {
        let want = if [7, 8, 12].contains(&i) { 100 + i } else { i };
        assert!(
            fs::read(m.on_b(&name(i))).unwrap() == version(want, size),
            "image {i}: b read an old version"
        );
    }
}

/// The mode, size and link count `path` has now.
fn attrs(path: &std::path::Path) -> (u32, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).unwrap();
    (m.mode() & 0o7777, m.size(), m.nlink())
}

#[test]
fn attributes_changed_on_one_mount_are_seen_on_another_within_the_md_cache_timeout() {
    use std::os::unix::fs::PermissionsExt;
    // b's kernel keeps nothing, so every stat reaches b's md-cache: only its timeout stands
    // between b and old attributes.
    let m = TwoMounts::start(&["-o", "entry-timeout=0,attribute-timeout=0"]);
    fs::write(m.on_a("f.dcm"), version(1, 1000)).unwrap();
    assert_eq!(attrs(&m.on_b("f.dcm")), (0o644, 1000, 1));
    for (n, mode) in [(2u64, 0o600), (3, 0o640), (4, 0o444)] {
        fs::set_permissions(m.on_a("f.dcm"), fs::Permissions::from_mode(mode)).unwrap();
        let size = 1000 * n as usize;
        fs::OpenOptions::new()
            .write(true)
            .open(m.on_a("f.dcm"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, &version(n, size)))
            .unwrap();
        std::thread::sleep(TTL + Duration::from_millis(200));
        assert_eq!(
            attrs(&m.on_b("f.dcm")),
            (mode, size as u64, 1),
            "b still saw old attributes after the timeout"
        );
        fs::set_permissions(m.on_a("f.dcm"), fs::Permissions::from_mode(0o644)).unwrap();
    }
    // A name removed on a is gone on b after the timeout.
    fs::remove_file(m.on_a("f.dcm")).unwrap();
    std::thread::sleep(TTL + Duration::from_millis(200));
    assert!(!m.on_b("f.dcm").exists(), "b still saw a removed name");
}

#[test]
fn a_change_on_the_same_mount_is_seen_at_once_by_stat() {
    use std::os::unix::fs::PermissionsExt;
    let m = TwoMounts::start(&["-o", "entry-timeout=0,attribute-timeout=0"]);
    fs::write(m.on_b("f.dcm"), version(1, 1000)).unwrap();
    for (n, mode) in [(2u64, 0o600), (3, 0o640), (4, 0o444)] {
        // Known to md-cache, then changed through the same mount, then asked at once.
        assert_eq!(attrs(&m.on_b("f.dcm")).0 & 0o200, 0o200);
        let size = 1000 * n as usize;
        fs::write(m.on_b("f.dcm"), version(n, size)).unwrap();
        assert_eq!(
            attrs(&m.on_b("f.dcm")).1,
            size as u64,
            "size right after a write"
        );
        fs::set_permissions(m.on_b("f.dcm"), fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(attrs(&m.on_b("f.dcm")).0, mode, "mode right after a chmod");
        fs::hard_link(m.on_b("f.dcm"), m.on_b("g.dcm")).unwrap();
        assert_eq!(
            attrs(&m.on_b("f.dcm")).2,
            2,
            "link count right after a link"
        );
        fs::remove_file(m.on_b("g.dcm")).unwrap();
        assert_eq!(
            attrs(&m.on_b("f.dcm")).2,
            1,
            "link count right after an unlink"
        );
        fs::set_permissions(m.on_b("f.dcm"), fs::Permissions::from_mode(0o644)).unwrap();
    }
    fs::rename(m.on_b("f.dcm"), m.on_b("h.dcm")).unwrap();
    assert!(!m.on_b("f.dcm").exists(), "old name right after a rename");
    assert_eq!(attrs(&m.on_b("h.dcm")).1, 4000);
}

#[test]
fn a_directory_listed_in_batches_ahead_shows_every_name_once_with_this_mounts_changes() {
    // Small batches (16 KiB, about 90 entries), so a listing of 1,000 names is eleven
    // batches, each but the first asked for ahead.
    let m = TwoMounts::start(&["-o", "entry-timeout=0,attribute-timeout=0"]);
    fs::create_dir(m.on_a("day")).unwrap();
    let n = 1000;
    for i in 0..n {
        fs::write(m.on_a(&format!("day/IM-{i:05}.dcm")), b"DICM").unwrap();
    }
    let listing = |root: &std::path::Path| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = fs::read_dir(root.join("day"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let want: Vec<(String, u64)> = (0..n).map(|i| (format!("IM-{i:05}.dcm"), 4)).collect();
    assert_eq!(listing(&m.b.path), want, "each name once");
    // b changes the directory and a file between listings; its next listing shows both.
    fs::write(m.on_b("day/IM-00500.dcm"), vec![7u8; 1234]).unwrap();
    fs::remove_file(m.on_b("day/IM-00900.dcm")).unwrap();
    fs::write(m.on_b("day/IM-99999.dcm"), b"new").unwrap();
    let mut want2 = want.clone();
    want2[500].1 = 1234;
    want2.remove(900);
    want2.push(("IM-99999.dcm".into(), 3));
    assert_eq!(listing(&m.b.path), want2, "b's own changes");
    std::thread::sleep(TTL + Duration::from_millis(200));
    assert_eq!(listing(&m.a.path), want2, "a sees them after the timeout");
}

/// A directory a mount just made answers the kernel's lookups of new names itself
/// (md-cache); what that mount puts there is never missing on it, and what another mount
/// puts there is seen within the timeout.
#[test]
fn names_in_a_directory_a_mount_just_made_are_right_on_it_and_seen_by_others_in_time() {
    let m = TwoMounts::start(&["-o", "entry-timeout=0,attribute-timeout=0"]);
    fs::create_dir_all(m.on_b("2024/05/17/study-1/series-1")).unwrap();
    for i in 0..20u64 {
        let rel = format!("2024/05/17/study-1/series-1/IM{i:04}.dcm");
        assert!(!m.on_b(&rel).exists(), "{rel} is new");
        fs::write(m.on_b(&rel), version(i, 3000)).unwrap();
        assert_eq!(fs::read(m.on_b(&rel)).unwrap(), version(i, 3000), "{rel}");
    }
    fs::rename(
        m.on_b("2024/05/17/study-1/series-1/IM0000.dcm"),
        m.on_b("2024/05/17/study-1/series-1/renamed.dcm"),
    )
    .unwrap();
    fs::hard_link(
        m.on_b("2024/05/17/study-1/series-1/IM0001.dcm"),
        m.on_b("2024/05/17/study-1/series-1/linked.dcm"),
    )
    .unwrap();
    std::os::unix::fs::symlink("IM0002.dcm", m.on_b("2024/05/17/study-1/series-1/sym")).unwrap();
    for rel in ["renamed.dcm", "linked.dcm", "sym", "IM0019.dcm"] {
        assert!(
            m.on_b(&format!("2024/05/17/study-1/series-1/{rel}"))
                .exists(),
            "{rel} on the mount that made it"
        );
    }
    assert!(!m.on_b("2024/05/17/study-1/series-1/IM0000.dcm").exists());
    // Another mount's name in a directory b made a moment ago.
    fs::create_dir(m.on_b("2024/05/17/study-1/series-2")).unwrap();
    fs::write(
        m.on_a("2024/05/17/study-1/series-2/theirs.dcm"),
        version(9, 100),
    )
    .unwrap();
    std::thread::sleep(TTL + Duration::from_millis(200));
    assert_eq!(
        fs::read(m.on_b("2024/05/17/study-1/series-2/theirs.dcm")).unwrap(),
        version(9, 100),
        "b sees a's new name after the timeout"
    );
}
