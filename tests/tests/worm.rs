//! WORM and retention through a real FUSE mount of a replica-3 volume on three cairnd:
//! every forbidden operation gets the documented errno, retention expires and is extended
//! with periods of seconds, and the state is a versioned xattr on every brick's copy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_tests::*;
use rustix::fs::XattrFlags;

const RETAIN: &str = "user.cairn.retain-until";
const HOLD: &str = "user.cairn.legal-hold";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[track_caller]
fn errno<T: std::fmt::Debug>(r: std::io::Result<T>, want: i32, what: &str) {
    match r {
        Err(e) => assert_eq!(e.raw_os_error(), Some(want), "{what}: {e}"),
        Ok(v) => panic!("{what} succeeded ({v:?}); wanted errno {want}"),
    }
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    rustix::fs::setxattr(path, name, value, XattrFlags::empty()).map_err(std::io::Error::from)
}

fn get_xattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::getxattr(path, name, &mut buf).map_err(std::io::Error::from)?;
    buf.truncate(n);
    Ok(buf)
}

fn retain_until(path: &Path) -> u64 {
    String::from_utf8(get_xattr(path, RETAIN).unwrap())
        .unwrap()
        .parse()
        .unwrap()
}

fn commit(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o444)).unwrap();
}

/// Every change a committed file refuses, with its errno.
#[track_caller]
fn assert_immutable(mnt: &Path, rel: &str, bytes: &[u8]) {
    let f = mnt.join(rel);
    errno(
        fs::OpenOptions::new().write(true).open(&f),
        libc::EROFS,
        "open for writing",
    );
    errno(
        fs::OpenOptions::new().append(true).open(&f),
        libc::EROFS,
        "open for appending",
    );
    errno(fs::write(&f, b"ransomware"), libc::EROFS, "overwrite");
    errno(
        nix::unistd::truncate(&f, 0).map_err(|e| std::io::Error::from_raw_os_error(e as i32)),
        libc::EROFS,
        "truncate",
    );
    errno(fs::rename(&f, mnt.join("renamed")), libc::EROFS, "rename");
    // Another file renamed over it (left behind: on a WORM volume it cannot go).
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let intruder = mnt.join(format!(
        "intruder-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    fs::write(&intruder, b"x").unwrap();
    errno(fs::rename(&intruder, &f), libc::EROFS, "rename over");
    errno(
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)),
        libc::EPERM,
        "chmod",
    );
    errno(
        std::os::unix::fs::chown(&f, Some(4242), None),
        libc::EPERM,
        "chown",
    );
    errno(set_xattr(&f, "user.note", b"x"), libc::EPERM, "setxattr");
    assert_eq!(fs::read(&f).unwrap(), bytes, "{rel} still reads back");
}

#[test]
fn file_level_retention_through_fuse() {
    let p = pool(20);
    let (m, mnt, dirs) = replica3_volume(
        &p,
        "arch",
        &[
            ("features.worm-file-level", "on"),
            ("features.default-retention-period", "3s"),
            ("features.auto-commit-period", "0"),
        ],
    );
    let image = pattern(57 * 1024, 1);
    fs::write(mnt.join("a.dcm"), &image).unwrap();
    // Not committed yet: an ordinary file.
    errno(
        get_xattr(&mnt.join("a.dcm"), RETAIN),
        libc::ENODATA,
        "no retention yet",
    );
    fs::OpenOptions::new()
        .append(true)
        .open(mnt.join("a.dcm"))
        .unwrap()
        .write_all(b"")
        .unwrap();
    let t0 = now();
    commit(&mnt.join("a.dcm"));
    let until = retain_until(&mnt.join("a.dcm"));
    assert!((t0 + 3..=now() + 3).contains(&until), "{until} vs {t0}");
    assert_immutable(&mnt, "a.dcm", &image);
    errno(
        fs::remove_file(mnt.join("a.dcm")),
        libc::EROFS,
        "remove while retained",
    );
    // The state is a versioned xattr on every copy (not atime).
    for d in &dirs {
        let mut buf = vec![0u8; 64];
        let n = rustix::fs::getxattr(d.join("a.dcm"), "trusted.cairn.worm", &mut buf).unwrap();
        let v = String::from_utf8(buf[..n].to_vec()).unwrap();
        assert!(
            v.starts_with("1:") && v.ends_with(&format!(":{until}")),
            "{}: {v}",
            d.display()
        );
    }
    // A legal hold outlives the retention; released, the file can go.
    set_xattr(&mnt.join("a.dcm"), HOLD, b"1").unwrap();
    while now() <= until {
        std::thread::sleep(Duration::from_millis(200));
    }
    errno(
        fs::remove_file(mnt.join("a.dcm")),
        libc::EROFS,
        "remove under legal hold",
    );
    assert_immutable(&mnt, "a.dcm", &image);
    rustix::fs::removexattr(mnt.join("a.dcm"), HOLD).unwrap();
    fs::remove_file(mnt.join("a.dcm")).unwrap();
    assert!(!mnt.join("a.dcm").exists());

    // A retention date set explicitly commits, and in relax mode moves either way.
    fs::write(mnt.join("b.dcm"), b"study").unwrap();
    let later = now() + 3600;
    set_xattr(&mnt.join("b.dcm"), RETAIN, later.to_string().as_bytes()).unwrap();
    assert_eq!(retain_until(&mnt.join("b.dcm")), later);
    assert_immutable(&mnt, "b.dcm", b"study");
    set_xattr(
        &mnt.join("b.dcm"),
        RETAIN,
        (later + 60).to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(retain_until(&mnt.join("b.dcm")), later + 60);
    let soon = now() + 1;
    set_xattr(&mnt.join("b.dcm"), RETAIN, soon.to_string().as_bytes()).unwrap();
    assert_eq!(
        retain_until(&mnt.join("b.dcm")),
        soon,
        "relax mode shortens"
    );
    errno(
        set_xattr(&mnt.join("b.dcm"), RETAIN, b"next tuesday"),
        libc::EINVAL,
        "a date that is not a number",
    );
    errno(
        rustix::fs::removexattr(mnt.join("b.dcm"), RETAIN).map_err(std::io::Error::from),
        libc::EPERM,
        "removing a retention",
    );
    // New files keep coming while others are retained.
    for i in 0..5 {
        fs::write(mnt.join(format!("new{i}.dcm")), pattern(1000, i)).unwrap();
        fs::remove_file(mnt.join(format!("new{i}.dcm"))).unwrap();
    }
    drop(m);
    p.nodes[0].ok(&["volume", "stop", "arch"]);
}

#[test]
fn enterprise_mode_auto_commit_and_undeletable_files() {
    let p = pool(21);
    let (m, mnt, _) = replica3_volume(
        &p,
        "ent",
        &[
            ("features.worm-file-level", "on"),
            ("features.retention-mode", "enterprise"),
            ("features.default-retention-period", "2s"),
            ("features.auto-commit-period", "2s"),
            ("features.worm-files-deletable", "off"),
        ],
    );
    let f = mnt.join("scan.dcm");
    fs::write(&f, b"series 1").unwrap();
    // Within the auto-commit period the file is still writable.
    fs::OpenOptions::new()
        .append(true)
        .open(&f)
        .unwrap()
        .write_all(b"+")
        .unwrap();
    errno(get_xattr(&f, RETAIN), libc::ENODATA, "not committed yet");
    std::thread::sleep(Duration::from_millis(3200));
    // Idle past the period: the next attempt to change it commits it and fails.
    assert_immutable(&mnt, "scan.dcm", b"series 1+");
    let until = retain_until(&f);
    // Enterprise: only later.
    errno(
        set_xattr(&f, RETAIN, (until - 1).to_string().as_bytes()),
        libc::EPERM,
        "shortening in enterprise mode",
    );
    set_xattr(&f, RETAIN, (until + 1).to_string().as_bytes()).unwrap();
    assert_eq!(retain_until(&f), until + 1);
    while now() <= until + 1 {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Expired, but worm-files-deletable is off: it stays, and stays immutable.
    errno(
        fs::remove_file(&f),
        libc::EROFS,
        "remove with worm-files-deletable off",
    );
    assert_immutable(&mnt, "scan.dcm", b"series 1+");
    drop(m);
    p.nodes[0].ok(&["volume", "stop", "ent"]);
}

#[test]
fn volume_worm_lets_a_new_file_be_written_until_it_is_closed() {
    let p = pool(22);
    let (m, mnt, _) = replica3_volume(&p, "vw", &[("features.worm", "on")]);
    let f = mnt.join("ct.dcm");
    {
        let mut h = fs::File::create(&f).unwrap();
        for i in 0..8 {
            h.write_all(&pattern(64 * 1024, i)).unwrap();
        }
        h.sync_all().unwrap();
    }
    let want: Vec<u8> = (0..8).flat_map(|i| pattern(64 * 1024, i)).collect();
    assert_eq!(fs::read(&f).unwrap(), want);
    assert_immutable(&mnt, "ct.dcm", &want);
    errno(fs::remove_file(&f), libc::EROFS, "remove on a WORM volume");
    // Directories still work.
    fs::create_dir(mnt.join("study")).unwrap();
    fs::write(mnt.join("study/mr.dcm"), b"mr").unwrap();
    errno(
        fs::write(mnt.join("study/mr.dcm"), b"again"),
        libc::EROFS,
        "rewrite",
    );
    drop(m);
    p.nodes[0].ok(&["volume", "stop", "vw"]);
}
