//! A real brick, a real FUSE mount, real tools: every byte compared, and the brick
//! directory checked as plain files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use cairn_tests::*;

fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("expected an error")
        .raw_os_error()
        .unwrap_or(0)
}

#[test]
fn file_data_round_trips_and_lands_as_plain_files() {
    let v = Volume::start();
    let sizes = [0usize, 1, 4095, 4096, 4097, 57 * 1024, 517 * 1024, 3 << 20];
    for (i, size) in sizes.iter().enumerate() {
        let data = pattern(*size, i as u64);
        let p = v.mnt.join(format!("f{i}.dcm"));
        fs::write(&p, &data).unwrap();
        assert_eq!(fs::read(&p).unwrap(), data, "read back {size} bytes");
        assert_eq!(fs::metadata(&p).unwrap().len(), *size as u64);
        assert_eq!(
            fs::read(v.brick_dir.join(format!("f{i}.dcm"))).unwrap(),
            data,
            "plain file on the brick"
        );
    }
    // Overwrite in the middle, append, truncate down and up.
    let p = v.mnt.join("edit");
    fs::write(&p, b"0123456789").unwrap();
    let mut f = OpenOptions::new().write(true).open(&p).unwrap();
    f.seek(SeekFrom::Start(3)).unwrap();
    f.write_all(b"abc").unwrap();
    drop(f);
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"XYZ").unwrap();
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), b"012abc6789XYZ");
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(4).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"012a");
    f.set_len(6).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"012a\0\0");
    drop(f);
    // O_TRUNC on open.
    fs::write(&p, b"new").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"new");
    // Reading and writing one handle concurrently with another.
    let mut a = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let mut b = File::open(&p).unwrap();
    a.write_all(b"NEW!").unwrap();
    let mut got = String::new();
    b.read_to_string(&mut got).unwrap();
    assert_eq!(got, "NEW!");
    assert_eq!(fs::read(v.brick_dir.join("edit")).unwrap(), b"NEW!");
}

#[test]
fn directories_renames_and_unlink() {
    let v = Volume::start();
    let m = &v.mnt;
    fs::create_dir_all(m.join("2024/05/17/study-1/series-1")).unwrap();
    fs::write(m.join("2024/05/17/study-1/series-1/img1.dcm"), b"one").unwrap();
    fs::write(m.join("2024/05/17/study-1/series-1/img2.dcm"), b"two").unwrap();
    // rmdir of a non-empty directory fails, of an empty one succeeds.
    assert_eq!(
        errno(fs::remove_dir(m.join("2024/05/17/study-1"))),
        libc::ENOTEMPTY
    );
    fs::create_dir(m.join("empty")).unwrap();
    fs::remove_dir(m.join("empty")).unwrap();
    assert!(!m.join("empty").exists());
    // Rename a file within and across directories, and over an existing file.
    fs::rename(
        m.join("2024/05/17/study-1/series-1/img1.dcm"),
        m.join("2024/05/17/study-1/series-1/a.dcm"),
    )
    .unwrap();
    fs::create_dir(m.join("inbox")).unwrap();
    fs::rename(
        m.join("2024/05/17/study-1/series-1/a.dcm"),
        m.join("inbox/a.dcm"),
    )
    .unwrap();
    fs::write(m.join("inbox/b.dcm"), b"bee").unwrap();
    fs::rename(m.join("inbox/b.dcm"), m.join("inbox/a.dcm")).unwrap();
    assert_eq!(fs::read(m.join("inbox/a.dcm")).unwrap(), b"bee");
    // Rename a directory with content, then use it through its new name.
    fs::rename(m.join("2024/05/17/study-1"), m.join("inbox/study-renamed")).unwrap();
    assert_eq!(
        fs::read(m.join("inbox/study-renamed/series-1/img2.dcm")).unwrap(),
        b"two"
    );
    fs::write(m.join("inbox/study-renamed/series-1/img3.dcm"), b"three").unwrap();
    assert!(!m.join("2024/05/17/study-1").exists());
    // A directory cannot move into itself.
    assert_eq!(
        errno(fs::rename(m.join("inbox"), m.join("inbox/study-renamed/x"))),
        libc::EINVAL
    );
    // Unlink.
    fs::remove_file(m.join("inbox/a.dcm")).unwrap();
    assert_eq!(errno(fs::metadata(m.join("inbox/a.dcm"))), libc::ENOENT);
    assert_eq!(errno(fs::remove_file(m.join("inbox/a.dcm"))), libc::ENOENT);
    assert_eq!(errno(fs::remove_file(m.join("inbox"))), libc::EISDIR);
    // The brick holds exactly the same tree.
    let diffs = compare_trees(m, &v.brick_dir, &[".cairn"]);
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[test]
fn hard_links_symlinks_and_attributes() {
    let v = Volume::start();
    let m = &v.mnt;
    fs::write(m.join("orig"), b"shared").unwrap();
    fs::hard_link(m.join("orig"), m.join("alias")).unwrap();
    let (a, b) = (
        fs::metadata(m.join("orig")).unwrap(),
        fs::metadata(m.join("alias")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    fs::write(m.join("alias"), b"changed").unwrap();
    assert_eq!(fs::read(m.join("orig")).unwrap(), b"changed");
    fs::remove_file(m.join("orig")).unwrap();
    assert_eq!(fs::metadata(m.join("alias")).unwrap().nlink(), 1);

    std::os::unix::fs::symlink("alias", m.join("ln")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", m.join("dangling")).unwrap();
    assert_eq!(fs::read_link(m.join("ln")).unwrap(), Path::new("alias"));
    assert_eq!(fs::read(m.join("ln")).unwrap(), b"changed");
    assert!(
        fs::symlink_metadata(m.join("dangling"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read_link(v.brick_dir.join("dangling")).unwrap(),
        Path::new("/nonexistent/target")
    );

    fs::set_permissions(m.join("alias"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(m.join("alias"), Some(1001), Some(1002)).unwrap();
    std::os::unix::fs::lchown(m.join("ln"), Some(1003), Some(1004)).unwrap();
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 1_500_000_000,
            tv_nsec: 123,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 1_600_000_000,
            tv_nsec: 456,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        m.join("alias"),
        &t,
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
    for root in [m.as_path(), v.brick_dir.as_path()] {
        let st = fs::metadata(root.join("alias")).unwrap();
        assert_eq!(st.mode() & 0o7777, 0o640, "{}", root.display());
        assert_eq!((st.uid(), st.gid()), (1001, 1002));
        assert_eq!((st.mtime(), st.mtime_nsec()), (1_600_000_000, 456));
        assert_eq!((st.atime(), st.atime_nsec()), (1_500_000_000, 123));
        let ln = fs::symlink_metadata(root.join("ln")).unwrap();
        assert_eq!((ln.uid(), ln.gid()), (1003, 1004));
    }
    // Special files.
    run(Command::new("mkfifo").arg(m.join("pipe")));
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::metadata(m.join("pipe")).unwrap().file_type()
    ));
}

#[test]
fn user_xattrs_pass_and_other_namespaces_do_not() {
    let v = Volume::start();
    let p = v.mnt.join("x");
    fs::write(&p, b"").unwrap();
    rustix::fs::setxattr(
        &p,
        "user.study",
        b"1.2.840.113619",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(&p, "user.study", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"1.2.840.113619");
    // The value is a real xattr on the brick's plain file.
    let n = rustix::fs::getxattr(v.brick_dir.join("x"), "user.study", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"1.2.840.113619");
    let mut list = [0u8; 256];
    let n = rustix::fs::listxattr(&p, &mut list).unwrap();
    let names: Vec<&[u8]> = list[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        names,
        vec![&b"user.study"[..]],
        "internal xattrs are not listed"
    );
    rustix::fs::removexattr(&p, "user.study").unwrap();
    assert_eq!(
        rustix::fs::getxattr(&p, "user.study", &mut buf).unwrap_err(),
        rustix::io::Errno::NODATA
    );
    assert_eq!(
        rustix::fs::getxattr(&p, "trusted.cairn.gfid", &mut buf).unwrap_err(),
        rustix::io::Errno::NODATA
    );
    let e = rustix::fs::setxattr(
        &p,
        "trusted.cairn.gfid",
        &[0u8; 16],
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap_err();
    assert_eq!(e, rustix::io::Errno::NOTSUP);
    let out = run(Command::new("getfattr").arg("-d").arg(&p));
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

#[test]
fn statfs_reports_the_brick_filesystem() {
    let v = Volume::start();
    let on_mount = rustix::fs::statvfs(&v.mnt).unwrap();
    let on_brick = rustix::fs::statvfs(&v.brick_dir).unwrap();
    assert_eq!(
        on_mount.f_blocks * on_mount.f_frsize,
        on_brick.f_blocks * on_brick.f_frsize
    );
    assert_eq!(on_mount.f_files, on_brick.f_files);
    assert!(on_mount.f_bavail > 0);
    let df = run(Command::new("df").arg("-P").arg(&v.mnt));
    assert!(
        String::from_utf8_lossy(&df.stdout).contains("cairn"),
        "df shows the volume"
    );
}

#[test]
fn sparse_file_over_4gib() {
    let v = Volume::start();
    let p = v.mnt.join("sparse.img");
    let far = 5u64 << 30;
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(&p)
        .unwrap();
    f.write_all(b"head").unwrap();
    f.seek(SeekFrom::Start(far)).unwrap();
    f.write_all(b"tail").unwrap();
    f.sync_all().unwrap();
    drop(f);
    let meta = fs::metadata(&p).unwrap();
    assert_eq!(meta.len(), far + 4);
    assert!(
        meta.blocks() < 4096,
        "stays sparse: {} blocks",
        meta.blocks()
    );
    let mut f = File::open(&p).unwrap();
    let mut buf = [0u8; 8];
    f.seek(SeekFrom::Start(far - 4)).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"\0\0\0\0tail");
    f.seek(SeekFrom::Start(1 << 32)).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert_eq!(buf, [0; 8], "a hole reads as zeros");
    let brick = fs::metadata(v.brick_dir.join("sparse.img")).unwrap();
    assert_eq!(brick.len(), far + 4);
    assert!(brick.blocks() < 4096);
    // cp --sparse keeps it sparse through SEEK_DATA/SEEK_HOLE.
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&p)
        .arg(v.mnt.join("copy.img")));
    let copy = fs::metadata(v.mnt.join("copy.img")).unwrap();
    assert_eq!(copy.len(), far + 4);
    assert!(
        copy.blocks() < 4096,
        "copy stays sparse: {} blocks",
        copy.blocks()
    );
}

#[test]
fn ls_l_of_a_10000_entry_directory() {
    let v = Volume::start();
    let dir = v.mnt.join("series");
    fs::create_dir(&dir).unwrap();
    for i in 0..10_000 {
        File::create(dir.join(format!("IM{i:05}.dcm"))).unwrap();
    }
    let out = run(Command::new("ls").arg("-l").arg(&dir));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("IM")).collect();
    assert_eq!(lines.len(), 10_000);
    let mut names: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    names.dedup();
    assert_eq!(names.len(), 10_000, "each entry exactly once");
    assert!(
        lines.iter().all(|l| l.starts_with("-rw")),
        "attributes of every entry"
    );
    // Unsorted listing (raw readdir order, with . and ..).
    let out = run(Command::new("ls").arg("-f").arg(&dir));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 10_002);
    assert_eq!(
        fs::read_dir(v.brick_dir.join("series")).unwrap().count(),
        10_000
    );
}

/// A source tree with the shapes tools care about: the workspace's own sources plus
/// symlinks, hard links, empty directories, odd modes, and a binary file.
fn source_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let ws = workspace_root();
    sh(
        &ws,
        &format!(
            "tar -cf - --exclude=target --exclude=.git volfiles translators bricks | tar -C '{}' -xf -",
            root.display()
        ),
    );
    sh(
        root,
        "mkdir -p empty/deeper && ln -s volfiles/Cargo.toml link-to-file && ln -s translators dir-link \
              && ln volfiles/Cargo.toml hardlinked.toml && chmod 0750 empty && chmod 0600 hardlinked.toml \
              && printf 'bin\\0ary\\377' > binary.dat && touch -d '2001-02-03 04:05:06' binary.dat",
    );
}

#[test]
fn cp_a_tar_x_and_rsync_a_copy_trees_exactly() {
    let v = Volume::start();
    let src = v.tmp.path().join("src");
    source_tree(&src);
    let tarball = v.tmp.path().join("src.tar");
    sh(&src, &format!("tar -cf '{}' .", tarball.display()));

    run(Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(v.mnt.join("by-cp")));
    fs::create_dir(v.mnt.join("by-tar")).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(v.mnt.join("by-tar"))
        .arg("-xf")
        .arg(&tarball));
    run(Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", src.display()))
        .arg(v.mnt.join("by-rsync")));

    for copy in ["by-cp", "by-tar", "by-rsync"] {
        let diffs = compare_trees(&src, &v.mnt.join(copy), &[]);
        assert!(diffs.is_empty(), "{copy}: {diffs:#?}");
    }
    // rsync finds nothing to do the second time: sizes, times and modes all came through.
    let out = run(Command::new("rsync")
        .args(["-ai", "--dry-run"])
        .arg(format!("{}/", src.display()))
        .arg(v.mnt.join("by-rsync")));
    let changes = String::from_utf8_lossy(&out.stdout);
    assert!(
        changes.trim().is_empty(),
        "rsync would still change: {changes}"
    );
    // Hard links copied by cp -a stay hard links.
    let a = fs::metadata(v.mnt.join("by-cp/hardlinked.toml")).unwrap();
    let b = fs::metadata(v.mnt.join("by-cp/volfiles/Cargo.toml")).unwrap();
    assert_eq!(a.ino(), b.ino());
    // And the brick holds the same bytes as plain files.
    let diffs = compare_trees(&src, &v.brick_dir.join("by-tar"), &[]);
    assert!(diffs.is_empty(), "brick: {diffs:#?}");
}

#[test]
fn git_clone_onto_the_mount_then_status_and_commit() {
    let v = Volume::start();
    let repo = v.tmp.path().join("repo");
    source_tree(&repo);
    let git =
        "git -c user.name=Cairn -c user.email=cairn@example.invalid -c init.defaultBranch=main";
    sh(
        &repo,
        &format!(
            "{git} init -q && {git} add -A && {git} commit -qm first && echo more >> binary.dat && {git} commit -qam second"
        ),
    );
    sh(
        &v.mnt,
        &format!("{git} clone -q '{}' clone", repo.display()),
    );
    let clone = v.mnt.join("clone");
    assert_eq!(
        sh(&clone, &format!("{git} status --porcelain")),
        "",
        "a fresh clone is clean"
    );
    sh(&clone, &format!("{git} fsck --strict --no-progress 2>&1"));
    sh(
        &clone,
        &format!("echo change >> volfiles/Cargo.toml && {git} commit -qam third && {git} gc -q"),
    );
    assert_eq!(sh(&clone, &format!("{git} status --porcelain")), "");
    assert_eq!(
        sh(&clone, &format!("{git} rev-list --count HEAD")).trim(),
        "3"
    );
    let diffs = compare_trees(&clone, &v.brick_dir.join("clone"), &[]);
    assert!(diffs.is_empty(), "brick: {diffs:#?}");
}

#[test]
fn fsync_and_rename_for_atomic_replacement() {
    let v = Volume::start();
    let tmp = v.mnt.join("report.tmp");
    let mut f = File::create(&tmp).unwrap();
    f.write_all(&pattern(100_000, 9)).unwrap();
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    drop(f);
    fs::rename(&tmp, v.mnt.join("report")).unwrap();
    File::open(&v.mnt).unwrap().sync_all().unwrap();
    assert_eq!(
        fs::read(v.brick_dir.join("report")).unwrap(),
        pattern(100_000, 9)
    );
    run(Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", v.mnt.join("dd").display()))
        .args(["bs=64k", "count=16", "conv=fsync", "status=none"]));
    assert_eq!(fs::metadata(v.brick_dir.join("dd")).unwrap().len(), 1 << 20);
}

#[test]
fn the_brick_is_readable_as_plain_files_with_cairn_stopped() {
    let mut v = Volume::start();
    let src = v.tmp.path().join("src");
    source_tree(&src);
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(&v.mnt));
    v.mount.terminate();
    v.brick.stop();
    assert!(!is_mounted(&v.mnt));
    // No Cairn process runs; plain tools read the brick.
    let diffs = compare_trees(&src, &v.brick_dir, &[".cairn"]);
    assert!(diffs.is_empty(), "{diffs:#?}");
    let out = run(Command::new("cp")
        .arg("-a")
        .arg(v.brick_dir.join("volfiles"))
        .arg(v.tmp.path().join("rescued")));
    assert!(out.status.success());
    assert!(compare_trees(&src.join("volfiles"), &v.tmp.path().join("rescued"), &[]).is_empty());
}
