//! Client caches through real FUSE mounts: what one mount writes, another sees within the
//! configured time, and the writer's own mount never serves data older than its last close.
//!
//! Two mounts of one brick, each with `performance/quick-read` in its graph (as cairnd's
//! generated client volfiles have it).

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
                "  - name: test-qr\n    type: performance/quick-read\n    options:\n      cache-timeout: {}ms\n    subvolumes: [test-client-0]\n  - name: test-io-stats\n    type: debug/io-stats\n    subvolumes: [test-qr]\n",
                TTL.as_millis()
            ),
        );
        assert_ne!(plain, with_qr, "quick-read inserted");
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
