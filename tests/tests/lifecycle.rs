//! Mount and brick life cycles: clean unmounts, restarts, a hung brick.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_tests::*;

fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn sigterm_unmounts_cleanly() {
    let mut v = Volume::start();
    fs::write(v.mnt.join("a"), b"x").unwrap();
    assert!(is_mounted(&v.mnt));
    let status = v
        .mount
        .terminate()
        .expect("the mount process exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(!is_mounted(&v.mnt), "no mount is left behind");
    assert!(
        v.mount.log_text().contains("unmount"),
        "the log records the unmount"
    );
}

#[test]
fn sigterm_while_a_file_is_open_still_unmounts() {
    let mut v = Volume::start();
    let _busy = File::create(v.mnt.join("held-open")).unwrap();
    let status = v.mount.terminate().expect("exits");
    assert!(status.success(), "exit status {status}");
    assert!(!is_mounted(&v.mnt));
}

#[test]
fn an_external_umount_ends_the_client_process() {
    let mut v = Volume::start();
    run(Command::new("umount").arg(&v.mnt));
    let pid = v.mount.pid();
    let gone = eventually(Duration::from_secs(15), || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true))
        .then_some(())
    });
    assert!(gone.is_some(), "the client process ends after umount");
    let status = v.mount.terminate();
    assert!(status.is_none_or(|s| s.success()));
}

#[test]
fn background_mount_as_in_the_quickstart() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let brick = BrickProc::start(&tmp.path().join("b"), "vol-bg", "b0", "127.0.0.1:0");
    let volfile = tmp.path().join("c.vol");
    fs::write(
        &volfile,
        client_volfile("vol-bg", ("127.0.0.1", brick.port(), "b0"), &[]),
    )
    .unwrap();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let log = tmp.path().join("bg.log");
    let out = run(Command::new(bin("cairn"))
        .arg("mount")
        .arg("--volfile")
        .arg(&volfile)
        .arg(&mnt)
        .arg("--log-file")
        .arg(&log));
    assert!(out.status.success());
    assert!(is_mounted(&mnt), "mounted when the command returns");
    fs::write(mnt.join("hello"), b"world").unwrap();
    assert_eq!(fs::read(tmp.path().join("b/hello")).unwrap(), b"world");
    run(Command::new("umount").arg(&mnt));
    assert!(!is_mounted(&mnt));
    // Mounting on a path that does not exist fails in the foreground with a clear message.
    let out = Command::new(bin("cairn"))
        .arg("mount")
        .arg("--volfile")
        .arg(&volfile)
        .arg(tmp.path().join("nope"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(brick);
}

#[test]
fn the_mount_survives_a_brick_restart_and_reopens_open_files() {
    let mut v = Volume::start_with(&[("ping-timeout", "2s"), ("reconnect-max-interval", "200ms")]);
    let p = v.mnt.join("long-lived");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    f.write_all(b"before ").unwrap();
    f.sync_all().unwrap();

    v.brick.restart();
    // Operations come back without remounting once the client has reconnected.
    let ok = eventually(Duration::from_secs(15), || {
        fs::write(v.mnt.join("after"), b"ok").ok()
    });
    assert!(ok.is_some(), "the mount recovers after the brick restarts");
    // The file held open across the restart still works: the client reopened it.
    let written = eventually(Duration::from_secs(10), || f.write_at(b"after", 7).ok());
    assert_eq!(written, Some(5));
    f.sync_all().unwrap();
    let mut got = String::new();
    File::open(&p).unwrap().read_to_string(&mut got).unwrap();
    assert_eq!(got, "before after");
    assert_eq!(
        fs::read(v.brick_dir.join("long-lived")).unwrap(),
        b"before after"
    );
    assert!(
        v.mount.log_text().contains("connected to brick"),
        "reconnection is logged"
    );
}

#[test]
fn a_hung_brick_fails_operations_instead_of_hanging_them() {
    let v = Volume::start_with(&[("ping-timeout", "2s"), ("reconnect-max-interval", "200ms")]);
    fs::write(v.mnt.join("a"), b"x").unwrap();
    v.brick.signal(nix::sys::signal::Signal::SIGSTOP);
    let started = Instant::now();
    let r = fs::write(v.mnt.join("b"), b"y");
    let took = started.elapsed();
    v.brick.signal(nix::sys::signal::Signal::SIGCONT);
    let err = r.expect_err("a write to a hung brick fails");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    assert!(
        took < Duration::from_secs(30),
        "failed after {took:?}, not hung"
    );
    // And recovers once the brick runs again.
    let ok = eventually(Duration::from_secs(15), || {
        fs::write(v.mnt.join("c"), b"z").ok()
    });
    assert!(ok.is_some(), "the mount recovers when the brick resumes");
    assert!(
        v.mount.log_text().contains("ping-timeout"),
        "the log says why the brick was declared down"
    );
}

/// A small ext4 filesystem on a loop device, mounted at `mnt`; unmounted when dropped.
struct LoopFs {
    mnt: std::path::PathBuf,
}

impl LoopFs {
    fn make(dir: &std::path::Path, inode_size: u32) -> LoopFs {
        let image = dir.join(format!("ext4-{inode_size}.img"));
        let mnt = dir.join(format!("ext4-{inode_size}"));
        File::create(&image).unwrap().set_len(64 << 20).unwrap();
        fs::create_dir_all(&mnt).unwrap();
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-I", &inode_size.to_string()])
            .arg(&image));
        run(Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(&image)
            .arg(&mnt));
        LoopFs { mnt }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// A brick on a filesystem whose inodes cannot hold Cairn's xattrs says so in its log, and
/// one whose inodes can does not; the probe leaves nothing behind either way.
#[test]
fn a_brick_warns_when_its_filesystem_keeps_xattrs_outside_the_inode() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    for (inode_size, spills) in [(128, true), (512, false)] {
        let disk = LoopFs::make(tmp.path(), inode_size);
        let dir = disk.mnt.join("brick");
        let mut brick = BrickProc::start(&dir, "v1", "b1", "127.0.0.1:0");
        // The brick checks before it listens, and writes its log synchronously.
        let warned = brick
            .log_text()
            .contains("keeps Cairn's xattrs outside the inode");
        assert_eq!(
            warned,
            spills,
            "{inode_size}-byte inodes: {}",
            brick.log_text()
        );
        let left: Vec<_> = fs::read_dir(dir.join(".cairn"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with("xattr-probe"))
            .collect();
        assert!(left.is_empty(), "probe files left: {left:?}");
        brick.stop();
        drop(disk);
    }
}
