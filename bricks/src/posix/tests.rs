//! storage/posix against a real directory (needs root for trusted.* xattrs).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use cairn_translators::wire::{Batch, Request};
use cairn_translators::*;

use super::{Posix, entry};
use crate::layout::{self, Identity};

fn id() -> Identity {
    Identity {
        volume_id: "vol-a".into(),
        brick_id: "brick-1".into(),
    }
}

fn brick() -> (tempfile::TempDir, Posix) {
    let dir = tempfile::tempdir().unwrap();
    let p = Posix::open("posix", dir.path().to_path_buf(), &id(), true).unwrap();
    (dir, p)
}

fn cx() -> Cx {
    Cx {
        uid: 1234,
        gid: 5678,
        ..Cx::default()
    }
}

/// Creates `parent/name` asking for gfid `g` (without O_EXCL) and leaves it open.
async fn create_open(p: &Posix, parent: Gfid, name: &str, g: Gfid) -> (FopResult<Entry>, Fd) {
    let fd = Fd::new(g, libc::O_RDWR);
    let e = p
        .create(
            &cx(),
            Loc::entry(parent, name).with_gfid(g),
            libc::O_RDWR,
            0o644,
            0o022,
            fd.clone(),
            Xdata::new(),
        )
        .await;
    (e, fd)
}

async fn mkfile(p: &Posix, parent: Gfid, name: &str, data: &[u8]) -> Gfid {
    let g = Gfid::random();
    let (e, fd) = create_open(p, parent, name, g).await;
    assert_eq!(e.unwrap().iatt.gfid, g);
    p.write(
        &cx(),
        fd.clone(),
        0,
        Payload::new(data.to_vec()),
        Xdata::new(),
    )
    .await
    .unwrap();
    p.release(&cx(), fd).await.unwrap();
    g
}

/// Creates `parent/name` asking for gfid `g` (without O_EXCL), then closes it.
async fn create_closed(p: &Posix, parent: Gfid, name: &str, g: Gfid) -> FopResult<Entry> {
    let (e, fd) = create_open(p, parent, name, g).await;
    let _ = p.release(&cx(), fd).await;
    e
}

/// True when `name` at the brick root and the handle of `g` are one inode.
fn has_handle(root: &Path, name: &str, g: Gfid) -> bool {
    let ino = |p: std::path::PathBuf| fs::metadata(p).map(|m| m.ino()).ok();
    let plain = ino(root.join(name));
    plain.is_some() && plain == ino(layout::file_handle(root, g))
}

async fn mkdir(p: &Posix, parent: Gfid, name: &str) -> Gfid {
    let g = Gfid::random();
    p.mkdir(
        &cx(),
        Loc::entry(parent, name).with_gfid(g),
        0o755,
        0o022,
        Xdata::new(),
    )
    .await
    .unwrap();
    g
}

async fn read_all(p: &Posix, g: Gfid) -> Vec<u8> {
    let fd = Fd::new(g, libc::O_RDONLY);
    p.open(
        &cx(),
        Loc::inode(g),
        libc::O_RDONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    let data = p
        .read(&cx(), fd.clone(), 0, 1 << 20, Xdata::new())
        .await
        .unwrap();
    p.release(&cx(), fd).await.unwrap();
    data.bytes().to_vec()
}

async fn list(p: &Posix, dir: Gfid, plus: bool, batch: u32) -> Vec<DirEntry> {
    let fd = Fd::new(dir, 0);
    p.opendir(&cx(), Loc::inode(dir), fd.clone(), Xdata::new())
        .await
        .unwrap();
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let got = p
            .readdir(&cx(), fd.clone(), offset, batch, plus, Xdata::new())
            .await
            .unwrap();
        let Some(last) = got.last() else { break };
        offset = last.offset;
        all.extend(got);
    }
    p.releasedir(&cx(), fd).await.unwrap();
    all
}

fn names(entries: &[DirEntry]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|e| e.name.clone())
        .filter(|n| n != "." && n != "..")
        .collect()
}

#[tokio::test]
async fn files_are_plain_files_with_gfids_handles_and_owners() {
    let (dir, p) = brick();
    let d = mkdir(&p, Gfid::ROOT, "2024").await;
    let g = mkfile(&p, d, "img.dcm", b"DICM-bytes").await;
    let plain = dir.path().join("2024/img.dcm");
    assert_eq!(
        fs::read(&plain).unwrap(),
        b"DICM-bytes",
        "stored at its own path"
    );
    let meta = fs::metadata(&plain).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (1234, 5678),
        "owned by the caller"
    );
    assert_eq!(meta.mode() & 0o7777, 0o644);
    assert_eq!(meta.nlink(), 2, "the file plus its handle");
    let handle = layout::file_handle(dir.path(), g);
    assert_eq!(fs::metadata(&handle).unwrap().ino(), meta.ino());
    let dh = fs::read_link(layout::dir_handle(dir.path(), d)).unwrap();
    assert_eq!(
        dh.to_str().unwrap(),
        layout::dir_handle_target(Gfid::ROOT, "2024")
    );
    // The kernel can follow a directory handle too.
    assert!(layout::dir_handle(dir.path(), d).join("img.dcm").exists());

    let st = p
        .stat(&cx(), Target::Loc(Loc::inode(g)), Xdata::new())
        .await
        .unwrap();
    assert_eq!(
        (st.size, st.nlink, st.kind),
        (10, 1, FileKind::File),
        "the handle link is not shown"
    );
    assert_eq!(read_all(&p, g).await, b"DICM-bytes");
    let e = p
        .lookup(&cx(), Loc::entry(d, "img.dcm"), Xdata::new())
        .await
        .unwrap();
    assert_eq!(e.iatt.gfid, g);
}

/// A brick killed between a create's gfid and its handle leaves a named object that cannot
/// be reached by gfid; the next lookup or listing by name gives it its handle back.
#[tokio::test]
async fn an_object_whose_handle_a_crash_lost_gets_it_back_from_its_name() {
    let (dir, _) = brick();
    let p = Posix::open("posix", dir.path().to_path_buf(), &id(), true).unwrap();
    let d = mkdir(&p, Gfid::ROOT, "series").await;
    let g = mkfile(&p, d, "IM0001.dcm", b"pixels").await;
    let h = mkfile(&p, d, "IM0002.dcm", b"more pixels").await;
    drop(p);
    for (gfid, is_dir) in [(g, false), (h, false), (d, true)] {
        let handle = if is_dir {
            layout::dir_handle(dir.path(), gfid)
        } else {
            layout::file_handle(dir.path(), gfid)
        };
        fs::remove_file(handle).unwrap();
    }
    // A restarted brick: nothing cached.
    let p = Posix::open("posix", dir.path().to_path_buf(), &id(), true).unwrap();
    for gfid in [g, h] {
        let err = p
            .stat(&cx(), Target::Loc(Loc::inode(gfid)), Xdata::new())
            .await
            .unwrap_err();
        assert!(
            [libc::ENOENT, libc::ESTALE].contains(&err.errno),
            "no handle, no object: {err}"
        );
    }
    // A lookup by name restores the directory's handle and the file's.
    let e = p
        .lookup(&cx(), Loc::entry(Gfid::ROOT, "series"), Xdata::new())
        .await
        .unwrap();
    assert_eq!(e.iatt.gfid, d);
    assert_eq!(
        fs::read_link(layout::dir_handle(dir.path(), d))
            .unwrap()
            .to_str()
            .unwrap(),
        layout::dir_handle_target(Gfid::ROOT, "series")
    );
    let e = p
        .lookup(&cx(), Loc::entry(d, "IM0001.dcm"), Xdata::new())
        .await
        .unwrap();
    assert_eq!((e.iatt.gfid, e.iatt.nlink), (g, 1));
    assert_eq!(read_all(&p, g).await, b"pixels");
    // So does a listing with attributes, for the other file.
    let listed = list(&p, d, true, 4096).await;
    assert!(listed.iter().any(|e| e.gfid == h), "{listed:?}");
    assert_eq!(read_all(&p, h).await, b"more pixels");
    assert_eq!(
        fs::metadata(layout::file_handle(dir.path(), h))
            .unwrap()
            .ino(),
        fs::metadata(dir.path().join("series/IM0002.dcm"))
            .unwrap()
            .ino()
    );
}

#[tokio::test]
async fn create_excl_and_create_existing() {
    let (_dir, p) = brick();
    let g = mkfile(&p, Gfid::ROOT, "a", b"1").await;
    let fd = Fd::new(Gfid::random(), libc::O_RDWR);
    let e = p
        .create(
            &cx(),
            Loc::entry(Gfid::ROOT, "a").with_gfid(fd.gfid()),
            libc::O_RDWR | libc::O_EXCL,
            0o644,
            0,
            fd,
            Xdata::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EEXIST);
    // Without O_EXCL the existing file is opened and keeps its identity.
    let fd = Fd::new(Gfid::random(), libc::O_RDWR);
    let e = p
        .create(
            &cx(),
            Loc::entry(Gfid::ROOT, "a").with_gfid(fd.gfid()),
            libc::O_RDWR,
            0o644,
            0,
            fd.clone(),
            Xdata::new(),
        )
        .await
        .unwrap();
    assert_eq!(e.iatt.gfid, g);
    p.release(&cx(), fd).await.unwrap();
}

#[tokio::test]
async fn unlink_drops_the_handle_with_the_last_name() {
    let (dir, p) = brick();
    let g = mkfile(&p, Gfid::ROOT, "a", b"x").await;
    let e = p
        .link(
            &cx(),
            Loc::inode(g),
            Loc::entry(Gfid::ROOT, "b"),
            Xdata::new(),
        )
        .await
        .unwrap();
    assert_eq!((e.iatt.gfid, e.iatt.nlink), (g, 2));
    p.unlink(&cx(), Loc::entry(Gfid::ROOT, "a"), Xdata::new())
        .await
        .unwrap();
    assert!(
        layout::file_handle(dir.path(), g).exists(),
        "b still links it"
    );
    p.unlink(&cx(), Loc::entry(Gfid::ROOT, "b"), Xdata::new())
        .await
        .unwrap();
    assert!(!layout::file_handle(dir.path(), g).exists());
    let e = p
        .stat(&cx(), Target::Loc(Loc::inode(g)), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ESTALE);
    let e = p
        .unlink(&cx(), Loc::entry(Gfid::ROOT, "b"), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ENOENT);
}

#[tokio::test]
async fn renaming_a_directory_moves_its_handle_and_keeps_children_reachable() {
    let (dir, p) = brick();
    let a = mkdir(&p, Gfid::ROOT, "a").await;
    let b = mkdir(&p, a, "b").await;
    let f = mkfile(&p, b, "f", b"deep").await;
    let z = mkdir(&p, Gfid::ROOT, "z").await;
    p.rename(
        &cx(),
        Loc::entry(Gfid::ROOT, "a"),
        Loc::entry(z, "a2"),
        0,
        Xdata::new(),
    )
    .await
    .unwrap();
    assert!(dir.path().join("z/a2/b/f").exists());
    // Entry operations under the moved directory resolve through the new path.
    let e = p
        .lookup(&cx(), Loc::entry(b, "f"), Xdata::new())
        .await
        .unwrap();
    assert_eq!(e.iatt.gfid, f);
    // A fresh brick process (empty cache) resolves from the handles on disk.
    let p2 = Posix::open("posix", dir.path().to_path_buf(), &id(), false).unwrap();
    let e = p2
        .lookup(&cx(), Loc::entry(b, "f"), Xdata::new())
        .await
        .unwrap();
    assert_eq!(e.iatt.gfid, f);
    let fresh = mkfile(&p2, b, "g", b"new").await;
    assert!(dir.path().join("z/a2/b/g").exists());
    assert_eq!(read_all(&p2, fresh).await, b"new");
}

#[tokio::test]
async fn rename_over_a_file_drops_the_replaced_handle() {
    let (dir, p) = brick();
    let a = mkfile(&p, Gfid::ROOT, "a", b"A").await;
    let b = mkfile(&p, Gfid::ROOT, "b", b"B").await;
    p.rename(
        &cx(),
        Loc::entry(Gfid::ROOT, "a"),
        Loc::entry(Gfid::ROOT, "b"),
        0,
        Xdata::new(),
    )
    .await
    .unwrap();
    assert!(!layout::file_handle(dir.path(), b).exists());
    assert_eq!(read_all(&p, a).await, b"A");
    // RENAME_NOREPLACE is honoured.
    let _c = mkfile(&p, Gfid::ROOT, "c", b"C").await;
    let e = p
        .rename(
            &cx(),
            Loc::entry(Gfid::ROOT, "c"),
            Loc::entry(Gfid::ROOT, "b"),
            libc::RENAME_NOREPLACE,
            Xdata::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EEXIST);
}

#[tokio::test]
async fn rmdir_and_directory_errors() {
    let (dir, p) = brick();
    let d = mkdir(&p, Gfid::ROOT, "d").await;
    mkfile(&p, d, "x", b"").await;
    assert_eq!(
        p.rmdir(&cx(), Loc::entry(Gfid::ROOT, "d"), Xdata::new())
            .await
            .unwrap_err()
            .errno,
        libc::ENOTEMPTY
    );
    assert_eq!(
        p.unlink(&cx(), Loc::entry(Gfid::ROOT, "d"), Xdata::new())
            .await
            .unwrap_err()
            .errno,
        libc::EISDIR
    );
    p.unlink(&cx(), Loc::entry(d, "x"), Xdata::new())
        .await
        .unwrap();
    p.rmdir(&cx(), Loc::entry(Gfid::ROOT, "d"), Xdata::new())
        .await
        .unwrap();
    assert!(!layout::dir_handle(dir.path(), d).exists());
    let e = p
        .mkdir(&cx(), Loc::entry(d, "orphan"), 0o755, 0, Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(
        e.errno,
        libc::ESTALE,
        "a removed directory's gfid no longer resolves"
    );
}

#[tokio::test]
async fn symlinks_and_nodes() {
    let (dir, p) = brick();
    let g = Gfid::random();
    p.symlink(
        &cx(),
        "../target".into(),
        Loc::entry(Gfid::ROOT, "ln").with_gfid(g),
        0,
        Xdata::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        fs::read_link(dir.path().join("ln")).unwrap().to_str(),
        Some("../target")
    );
    assert_eq!(
        p.readlink(&cx(), Loc::inode(g), Xdata::new())
            .await
            .unwrap(),
        "../target"
    );
    let st = p
        .stat(&cx(), Target::Loc(Loc::inode(g)), Xdata::new())
        .await
        .unwrap();
    assert_eq!(st.kind, FileKind::Symlink);
    // Changing a symlink's owner never touches its target.
    p.setattr(
        &cx(),
        Target::Loc(Loc::inode(g)),
        SetAttr {
            uid: Some(7),
            ..SetAttr::default()
        },
        Xdata::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        fs::symlink_metadata(dir.path().join("ln")).unwrap().uid(),
        7
    );
    let fifo = Gfid::random();
    let e = p
        .mknod(
            &cx(),
            Loc::entry(Gfid::ROOT, "pipe").with_gfid(fifo),
            libc::S_IFIFO | 0o600,
            0,
            0,
            Xdata::new(),
        )
        .await
        .unwrap();
    assert_eq!(e.iatt.kind, FileKind::Fifo);
}

#[tokio::test]
async fn setattr_truncate_and_times() {
    let (dir, p) = brick();
    let g = mkfile(&p, Gfid::ROOT, "f", b"0123456789").await;
    let t = Target::Loc(Loc::inode(g));
    let st = p.truncate(&cx(), t.clone(), 4, Xdata::new()).await.unwrap();
    assert_eq!(st.size, 4);
    let when = Timespec {
        sec: 1_000_000_000,
        nsec: 5,
    };
    let st = p
        .setattr(
            &cx(),
            t.clone(),
            SetAttr {
                perm: Some(0o600),
                uid: Some(1),
                gid: Some(2),
                atime: Some(TimeSet::At(when)),
                mtime: Some(TimeSet::At(when)),
            },
            Xdata::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        (st.perm, st.uid, st.gid, st.mtime, st.atime),
        (0o600, 1, 2, when, when)
    );
    let meta = fs::metadata(dir.path().join("f")).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.mtime(), meta.len()),
        (0o600, 1_000_000_000, 4)
    );
}

#[tokio::test]
async fn sparse_files_beyond_4gib_and_seek_data() {
    let (dir, p) = brick();
    let g = Gfid::random();
    let fd = Fd::new(g, libc::O_RDWR);
    p.create(
        &cx(),
        Loc::entry(Gfid::ROOT, "sparse").with_gfid(g),
        libc::O_RDWR,
        0o644,
        0,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    let far = 5u64 << 30;
    let st = p
        .write(
            &cx(),
            fd.clone(),
            far,
            Payload::new(b"end".to_vec()),
            Xdata::new(),
        )
        .await
        .unwrap();
    assert_eq!(st.size, far + 3);
    assert!(st.blocks < 1024, "sparse: {} blocks", st.blocks);
    let got = p
        .read(&cx(), fd.clone(), far - 2, 10, Xdata::new())
        .await
        .unwrap();
    assert_eq!(got.bytes().as_ref(), b"\0\0end");
    let data_at = p
        .lseek(&cx(), fd.clone(), 0, Whence::Data, Xdata::new())
        .await
        .unwrap();
    assert!(data_at >= far - 4096 && data_at <= far, "{data_at}");
    assert_eq!(
        p.lseek(&cx(), fd.clone(), 0, Whence::Hole, Xdata::new())
            .await
            .unwrap(),
        0
    );
    p.fsync(&cx(), fd.clone(), false, Xdata::new())
        .await
        .unwrap();
    p.release(&cx(), fd).await.unwrap();
    assert_eq!(
        fs::metadata(dir.path().join("sparse")).unwrap().len(),
        far + 3
    );
}

#[tokio::test]
async fn xattrs_user_namespace_and_protected_identity() {
    let (_dir, p) = brick();
    let g = mkfile(&p, Gfid::ROOT, "f", b"").await;
    let t = Target::Loc(Loc::inode(g));
    let mut x = Xdata::new();
    x.set("user.patient", b"12345".to_vec());
    p.setxattr(&cx(), t.clone(), x, 0, Xdata::new())
        .await
        .unwrap();
    let got = p
        .getxattr(&cx(), t.clone(), Some("user.patient".into()), Xdata::new())
        .await
        .unwrap();
    assert_eq!(got.get("user.patient"), Some(&b"12345"[..]));
    let all = p
        .getxattr(&cx(), t.clone(), None, Xdata::new())
        .await
        .unwrap();
    assert!(all.contains("user.patient") && all.contains(layout::XATTR_GFID));
    p.removexattr(&cx(), t.clone(), "user.patient".into(), Xdata::new())
        .await
        .unwrap();
    let e = p
        .getxattr(&cx(), t.clone(), Some("user.patient".into()), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ENODATA);
    let mut bad = Xdata::new();
    bad.set(layout::XATTR_GFID, vec![0u8; 16]);
    assert_eq!(
        p.setxattr(&cx(), t.clone(), bad, 0, Xdata::new())
            .await
            .unwrap_err()
            .errno,
        libc::EPERM
    );
    assert_eq!(
        p.removexattr(&cx(), t, layout::XATTR_GFID.into(), Xdata::new())
            .await
            .unwrap_err()
            .errno,
        libc::EPERM
    );
}

// Many threads, and the object reached both by gfid and by name: the counters' lock is
// the object's, whatever path a request takes to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn xattrop_adds_counters_atomically() {
    let (_dir, p) = brick();
    let g = mkfile(&p, Gfid::ROOT, "f", b"").await;
    let t = Target::Loc(Loc::inode(g));
    let by_name = Target::Loc(Loc::entry(Gfid::ROOT, "f"));
    let add = |a: i64, b: i64| {
        let mut x = Xdata::new();
        x.set(
            "trusted.cairn.test.pending",
            [a.to_be_bytes(), b.to_be_bytes()].concat(),
        );
        x
    };
    let mut tasks = Vec::new();
    let p = Arc::new(p);
    for i in 0..400 {
        let t = if i % 2 == 0 {
            t.clone()
        } else {
            by_name.clone()
        };
        let p = Arc::clone(&p);
        let x = add(1, -2);
        tasks.push(tokio::spawn(async move {
            p.xattrop(&Cx::default(), t, XattropOp::AddArray64, x, Xdata::new())
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let out = p
        .xattrop(
            &Cx::default(),
            t.clone(),
            XattropOp::AddArray64,
            add(0, 0),
            Xdata::new(),
        )
        .await
        .unwrap();
    let v = out.get("trusted.cairn.test.pending").unwrap();
    assert_eq!(i64::from_be_bytes(v[..8].try_into().unwrap()), 400);
    assert_eq!(i64::from_be_bytes(v[8..].try_into().unwrap()), -800);
    let mut odd = Xdata::new();
    odd.set("trusted.cairn.test.x", vec![1, 2, 3]);
    assert_eq!(
        p.xattrop(&Cx::default(), t, XattropOp::AddArray64, odd, Xdata::new())
            .await
            .unwrap_err()
            .errno,
        libc::EINVAL
    );
}

#[tokio::test]
async fn xattrop_floor_settles_double_clears_at_zero() {
    let (_dir, p) = brick();
    let g = mkfile(&p, Gfid::ROOT, "f", b"").await;
    let t = Target::Loc(Loc::inode(g));
    let add = |a: i64, b: i64| {
        let mut x = Xdata::new();
        x.set(
            "trusted.cairn.test.dirty",
            [a.to_be_bytes(), b.to_be_bytes()].concat(),
        );
        x
    };
    let read = |x: &Xdata| {
        let v = x.get("trusted.cairn.test.dirty").unwrap();
        (
            i64::from_be_bytes(v[..8].try_into().unwrap()),
            i64::from_be_bytes(v[8..].try_into().unwrap()),
        )
    };
    p.xattrop(
        &cx(),
        t.clone(),
        XattropOp::AddArray64,
        add(2, 1),
        Xdata::new(),
    )
    .await
    .unwrap();
    // Two parties each clear the same two marks: the counter stops at zero.
    for _ in 0..2 {
        p.xattrop(
            &cx(),
            t.clone(),
            XattropOp::AddArray64Floor,
            add(-2, 0),
            Xdata::new(),
        )
        .await
        .unwrap();
    }
    let out = p
        .xattrop(
            &cx(),
            t.clone(),
            XattropOp::AddArray64,
            add(0, 0),
            Xdata::new(),
        )
        .await
        .unwrap();
    assert_eq!(read(&out), (0, 1), "floored at zero, other element kept");
    // A later mark counts again.
    let out = p
        .xattrop(
            &cx(),
            t,
            XattropOp::AddArray64Floor,
            add(1, -5),
            Xdata::new(),
        )
        .await
        .unwrap();
    assert_eq!(read(&out), (1, 0));
}

#[tokio::test]
async fn readdir_resumes_from_cookies_and_hides_metadata() {
    let (dir, p) = brick();
    let mut want = BTreeSet::new();
    for i in 0..300 {
        let name = format!("image-{i:04}.dcm");
        fs::write(dir.path().join(&name), b"").unwrap(); // placed by hand: gets a gfid on listing
        want.insert(name);
    }
    let sub = mkdir(&p, Gfid::ROOT, "series").await;
    want.insert("series".into());
    for batch in [200, 4096, 1 << 20] {
        let plain = list(&p, Gfid::ROOT, false, batch).await;
        assert_eq!(names(&plain), want, "batch {batch}");
        assert_eq!(
            plain.len(),
            want.len() + 2,
            "each entry once, plus . and .."
        );
        assert!(
            plain
                .iter()
                .filter(|e| e.name != "." && e.name != "..")
                .all(|e| !e.gfid.is_null())
        );
    }
    let plus = list(&p, Gfid::ROOT, true, 8192).await;
    let s = plus.iter().find(|e| e.name == "series").unwrap();
    assert_eq!((s.gfid, s.kind), (sub, FileKind::Dir));
    assert!(
        plus.iter()
            .filter(|e| e.name != "." && e.name != "..")
            .all(|e| e.iatt.is_some())
    );
    // Files placed by hand were given gfids and handles.
    let e = p
        .lookup(
            &cx(),
            Loc::entry(Gfid::ROOT, "image-0007.dcm"),
            Xdata::new(),
        )
        .await
        .unwrap();
    assert!(layout::file_handle(dir.path(), e.iatt.gfid).exists());
    // .cairn is neither listed nor reachable.
    assert_eq!(
        p.lookup(&cx(), Loc::entry(Gfid::ROOT, ".cairn"), Xdata::new())
            .await
            .unwrap_err()
            .errno,
        libc::ENOENT
    );
    assert_eq!(
        p.mkdir(
            &cx(),
            Loc::entry(Gfid::ROOT, ".cairn"),
            0o755,
            0,
            Xdata::new()
        )
        .await
        .unwrap_err()
        .errno,
        libc::EPERM
    );
}

#[tokio::test]
async fn hostile_names_never_leave_the_brick() {
    let (_dir, p) = brick();
    for name in ["..", "../../etc", "a/b", "", "."] {
        let e = p
            .lookup(&cx(), Loc::entry(Gfid::ROOT, name), Xdata::new())
            .await
            .unwrap_err();
        assert_eq!(e.errno, libc::EINVAL, "{name:?}");
        let e = p
            .mkdir(&cx(), Loc::entry(Gfid::ROOT, name), 0o755, 0, Xdata::new())
            .await
            .unwrap_err();
        assert_eq!(e.errno, libc::EINVAL, "{name:?}");
    }
    // A symlink on the brick is never followed by inode operations.
    let g = Gfid::random();
    p.symlink(
        &cx(),
        "/etc/passwd".into(),
        Loc::entry(Gfid::ROOT, "evil").with_gfid(g),
        0,
        Xdata::new(),
    )
    .await
    .unwrap();
    let fd = Fd::new(g, libc::O_RDONLY);
    let e = p
        .open(&cx(), Loc::inode(g), libc::O_RDONLY, fd, Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ELOOP);
    let e = p
        .truncate(&cx(), Target::Loc(Loc::inode(g)), 0, Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ELOOP);
    assert!(fs::metadata("/etc/passwd").unwrap().len() > 0);
}

#[tokio::test]
async fn access_follows_the_mode_bits() {
    let (_dir, p) = brick();
    let g = mkfile(&p, Gfid::ROOT, "f", b"").await; // 0644, owner 1234:5678
    let who = |uid, gid| Cx {
        uid,
        gid,
        ..Cx::default()
    };
    let loc = || Loc::inode(g);
    p.access(&who(1234, 1), loc(), libc::W_OK as u32, Xdata::new())
        .await
        .unwrap();
    p.access(&who(9, 5678), loc(), libc::R_OK as u32, Xdata::new())
        .await
        .unwrap();
    assert_eq!(
        p.access(&who(9, 5678), loc(), libc::W_OK as u32, Xdata::new())
            .await
            .unwrap_err()
            .errno,
        libc::EACCES
    );
    assert_eq!(
        p.access(&who(0, 0), loc(), libc::X_OK as u32, Xdata::new())
            .await
            .unwrap_err()
            .errno,
        libc::EACCES
    );
    p.access(&who(0, 0), loc(), libc::W_OK as u32, Xdata::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn compound_create_write_release_on_the_brick() {
    let (dir, p) = brick();
    let g = Gfid::random();
    let fd = Fd::new(g, libc::O_WRONLY);
    let out = p
        .compound(
            &cx(),
            Batch(vec![
                Request::Create {
                    loc: Loc::entry(Gfid::ROOT, "c.dcm").with_gfid(g),
                    flags: libc::O_WRONLY,
                    mode: 0o644,
                    umask: 0,
                    fd: fd.clone(),
                    xdata: Xdata::new(),
                },
                Request::Write {
                    fd: fd.clone(),
                    offset: 0,
                    data: Payload::new(vec![9u8; 57_000]),
                    xdata: Xdata::new(),
                },
                Request::Release { fd },
            ]),
        )
        .await
        .unwrap();
    assert!(out.0.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(
        fs::read(dir.path().join("c.dcm")).unwrap(),
        vec![9u8; 57_000]
    );
}

#[test]
fn a_brick_refuses_other_volumes_other_bricks_and_non_directories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let e = Posix::open("p", root.clone(), &id(), false).err().unwrap();
    assert!(e.contains("no Cairn brick identity"), "{e}");
    Posix::open("p", root.clone(), &id(), true).unwrap();
    Posix::open("p", root.clone(), &id(), false).unwrap();
    let other_vol = Identity {
        volume_id: "vol-b".into(),
        ..id()
    };
    let e = Posix::open("p", root.clone(), &other_vol, true)
        .err()
        .unwrap();
    assert!(e.contains("belongs to volume id vol-a, not vol-b"), "{e}");
    let other_brick = Identity {
        brick_id: "brick-9".into(),
        ..id()
    };
    let e = Posix::open("p", root.clone(), &other_brick, false)
        .err()
        .unwrap();
    assert!(
        e.contains("is brick brick-1 of its volume, not brick-9"),
        "{e}"
    );
    let file = root.join("plain-file");
    fs::write(&file, b"").unwrap();
    let e = Posix::open("p", file, &id(), true).err().unwrap();
    assert!(e.contains("is not a directory"), "{e}");
    let e = Posix::open("p", root.join("missing"), &id(), true)
        .err()
        .unwrap();
    assert!(e.contains("does not exist"), "{e}");
    let e = Posix::open("p", Path::new("relative/dir").to_path_buf(), &id(), true)
        .err()
        .unwrap();
    assert!(e.contains("absolute"), "{e}");
    fs::write(root.join(".cairn/format"), "99\n").unwrap();
    let e = Posix::open("p", root, &id(), false).err().unwrap();
    assert!(e.contains("newer than this release"), "{e}");
}

fn layout_xattr(generation: u32) -> Vec<u8> {
    let mut v = vec![1u8, 0];
    v.extend_from_slice(&generation.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&u32::MAX.to_be_bytes());
    v
}

fn with_gen(generation: &[u8]) -> Xdata {
    let mut x = Xdata::new();
    x.set(types::LAYOUT_GEN_KEY, generation.to_vec());
    x
}

#[tokio::test]
async fn lookup_returns_xattrs_of_every_listed_prefix() {
    let (_dir, p) = brick();
    let g = mkfile(&p, Gfid::ROOT, "f", b"").await;
    let mut x = Xdata::new();
    x.set("trusted.cairn.afr.vol-client-0", vec![0u8; 24]);
    x.set("trusted.cairn.dht.linkto", b"vol-replicate-1".to_vec());
    x.set("user.other", b"no".to_vec());
    p.setxattr(&cx(), Target::Loc(Loc::inode(g)), x, 0, Xdata::new())
        .await
        .unwrap();
    let mut ask = Xdata::new();
    types::add_lookup_prefix(&mut ask, "trusted.cairn.dht.");
    types::add_lookup_prefix(&mut ask, "trusted.cairn.afr.");
    types::add_lookup_prefix(&mut ask, "trusted.cairn.dht.");
    assert_eq!(
        ask.get(types::LOOKUP_XATTR_PREFIX),
        Some(&b"trusted.cairn.dht.\ntrusted.cairn.afr."[..])
    );
    let e = p
        .lookup(&cx(), Loc::entry(Gfid::ROOT, "f"), ask)
        .await
        .unwrap();
    let keys: BTreeSet<&str> = e.xdata.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["trusted.cairn.afr.vol-client-0", "trusted.cairn.dht.linkto"])
    );
    assert_eq!(
        e.xdata.get("trusted.cairn.dht.linkto"),
        Some(&b"vol-replicate-1"[..])
    );
    // One prefix, as replication alone sends it.
    let mut one = Xdata::new();
    types::add_lookup_prefix(&mut one, "trusted.cairn.afr.");
    let e = p.lookup(&cx(), Loc::inode(g), one).await.unwrap();
    assert_eq!(e.xdata.iter().count(), 1);
    assert!(e.xdata.contains("trusted.cairn.afr.vol-client-0"));
    // No key, no xattrs.
    let e = p.lookup(&cx(), Loc::inode(g), Xdata::new()).await.unwrap();
    assert!(e.xdata.is_empty());
}

#[tokio::test]
async fn xattrs_set_at_creation() {
    let (dir, p) = brick();
    let layout = layout_xattr(1);
    let mut x = Xdata::new();
    x.set(
        format!("{}{}", types::SETXATTR_ON_CREATE, entry::XATTR_DHT_LAYOUT),
        layout.clone(),
    );
    let d = Gfid::random();
    p.mkdir(
        &cx(),
        Loc::entry(Gfid::ROOT, "d").with_gfid(d),
        0o755,
        0o022,
        x,
    )
    .await
    .unwrap();
    assert_eq!(
        xattr_of(&dir.path().join("d"), entry::XATTR_DHT_LAYOUT),
        Some(layout)
    );
    let got = p
        .getxattr(
            &cx(),
            Target::Loc(Loc::inode(d)),
            Some(entry::XATTR_DHT_LAYOUT.into()),
            Xdata::new(),
        )
        .await
        .unwrap();
    assert!(got.contains(entry::XATTR_DHT_LAYOUT));

    // Create and symlink honour the keys too.
    let mut x = Xdata::new();
    x.set("cairn.setxattr.trusted.cairn.dht.tag", b"c".to_vec());
    let g = Gfid::random();
    let fd = Fd::new(g, libc::O_RDWR);
    p.create(
        &cx(),
        Loc::entry(d, "c").with_gfid(g),
        libc::O_RDWR | libc::O_EXCL,
        0o644,
        0o022,
        fd.clone(),
        x.clone(),
    )
    .await
    .unwrap();
    p.release(&cx(), fd).await.unwrap();
    assert_eq!(
        xattr_of(&dir.path().join("d/c"), "trusted.cairn.dht.tag"),
        Some(b"c".to_vec())
    );
    p.symlink(
        &cx(),
        "c".into(),
        Loc::entry(d, "s").with_gfid(Gfid::random()),
        0,
        x,
    )
    .await
    .unwrap();
    assert_eq!(
        xattr_of(&dir.path().join("d/s"), "trusted.cairn.dht.tag"),
        Some(b"c".to_vec())
    );

    // Names outside trusted.cairn.dht. are refused before anything is made.
    for key in [
        "cairn.setxattr.user.x",
        "cairn.setxattr.trusted.cairn.gfid",
        "cairn.setxattr.trusted.cairn.dht.",
    ] {
        let mut bad = Xdata::new();
        bad.set(key, b"1".to_vec());
        let e = p
            .mkdir(
                &cx(),
                Loc::entry(Gfid::ROOT, "refused").with_gfid(Gfid::random()),
                0o755,
                0o022,
                bad.clone(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.errno, libc::EINVAL, "{key}: {e}");
        assert!(e.msg.contains(key), "{e}");
        let e = p
            .mknod(
                &cx(),
                Loc::entry(Gfid::ROOT, "refused").with_gfid(Gfid::random()),
                libc::S_IFREG | 0o644,
                0,
                0,
                bad.clone(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.errno, libc::EINVAL, "{key}: {e}");
        let e = p
            .create(
                &cx(),
                Loc::entry(Gfid::ROOT, "refused").with_gfid(Gfid::random()),
                libc::O_RDWR,
                0o644,
                0o022,
                Fd::new(Gfid::random(), libc::O_RDWR),
                bad,
            )
            .await
            .unwrap_err();
        assert_eq!(e.errno, libc::EINVAL, "{key}: {e}");
        assert!(!dir.path().join("refused").exists());
    }

    // A value the filesystem refuses (over the 64 KiB xattr limit): the new object goes.
    let mut huge = Xdata::new();
    huge.set("cairn.setxattr.trusted.cairn.dht.big", vec![7u8; 70_000]);
    let handles_before = handle_count(dir.path());
    let e = p
        .mkdir(
            &cx(),
            Loc::entry(Gfid::ROOT, "big").with_gfid(Gfid::random()),
            0o755,
            0o022,
            huge.clone(),
        )
        .await
        .unwrap_err();
    assert!(e.msg.contains("trusted.cairn.dht.big"), "{e}");
    assert!(!dir.path().join("big").exists());
    let e = p
        .create(
            &cx(),
            Loc::entry(Gfid::ROOT, "big").with_gfid(Gfid::random()),
            libc::O_RDWR,
            0o644,
            0o022,
            Fd::new(Gfid::random(), libc::O_RDWR),
            huge,
        )
        .await
        .unwrap_err();
    assert!(e.msg.contains("trusted.cairn.dht.big"), "{e}");
    assert!(!dir.path().join("big").exists());
    assert_eq!(handle_count(dir.path()), handles_before);
}

fn xattr_of(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn handle_count(root: &Path) -> usize {
    fn walk(p: &Path) -> usize {
        fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let ft = e.file_type().unwrap();
                        if ft.is_dir() { walk(&e.path()) } else { 1 }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&layout::handles_dir(root)) + walk(&layout::dirs_dir(root))
}

#[tokio::test]
async fn mknod_makes_sticky_linkto_files() {
    let (dir, p) = brick();
    let g = Gfid::random();
    let mut x = Xdata::new();
    x.set(
        "cairn.setxattr.trusted.cairn.dht.linkto",
        b"vol-replicate-1".to_vec(),
    );
    let e = p
        .mknod(
            &cx(),
            Loc::entry(Gfid::ROOT, "pointer").with_gfid(g),
            libc::S_IFREG | 0o1000,
            0,
            0,
            x,
        )
        .await
        .unwrap();
    assert_eq!(e.iatt.gfid, g);
    assert_eq!(e.iatt.kind, FileKind::File);
    assert_eq!(e.iatt.perm, 0o1000);
    assert_eq!(e.iatt.size, 0);
    let meta = fs::symlink_metadata(dir.path().join("pointer")).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.mode() & 0o7777, 0o1000);
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    assert_eq!(
        xattr_of(&dir.path().join("pointer"), "trusted.cairn.dht.linkto"),
        Some(b"vol-replicate-1".to_vec())
    );
    // Reachable by gfid, like any file.
    let st = p
        .stat(&cx(), Target::Loc(Loc::inode(g)), Xdata::new())
        .await
        .unwrap();
    assert_eq!(st.perm, 0o1000);
    // A umask never strips the sticky bit (it covers the permission bits only).
    let e = p
        .mknod(
            &cx(),
            Loc::entry(Gfid::ROOT, "pointer2").with_gfid(Gfid::random()),
            libc::S_IFREG | 0o1000,
            0,
            0o7777,
            Xdata::new(),
        )
        .await
        .unwrap();
    assert_eq!(e.iatt.perm, 0o1000);
}

#[tokio::test]
async fn stale_layouts_refuse_new_names() {
    let (dir, p) = brick();
    let d = mkdir(&p, Gfid::ROOT, "d").await;
    let mut x = Xdata::new();
    x.set(entry::XATTR_DHT_LAYOUT, layout_xattr(3));
    p.setxattr(&cx(), Target::Loc(Loc::inode(d)), x, 0, Xdata::new())
        .await
        .unwrap();
    let src = mkfile(&p, Gfid::ROOT, "src", b"x").await;
    let listing = || {
        let mut v: Vec<String> = fs::read_dir(dir.path().join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };

    // Every way of making a name, with generation 2 against the stored 3.
    let old = with_gen(&2u32.to_be_bytes());
    let mut errors = Vec::new();
    errors.push(
        p.mkdir(&cx(), Loc::entry(d, "n1"), 0o755, 0o022, old.clone())
            .await
            .unwrap_err(),
    );
    errors.push(
        p.mknod(
            &cx(),
            Loc::entry(d, "n2"),
            libc::S_IFREG | 0o1000,
            0,
            0,
            old.clone(),
        )
        .await
        .unwrap_err(),
    );
    errors.push(
        p.create(
            &cx(),
            Loc::entry(d, "n3"),
            libc::O_RDWR,
            0o644,
            0o022,
            Fd::new(Gfid::random(), libc::O_RDWR),
            old.clone(),
        )
        .await
        .unwrap_err(),
    );
    errors.push(
        p.symlink(&cx(), "t".into(), Loc::entry(d, "n4"), 0, old.clone())
            .await
            .unwrap_err(),
    );
    errors.push(
        p.link(&cx(), Loc::inode(src), Loc::entry(d, "n5"), old.clone())
            .await
            .unwrap_err(),
    );
    errors.push(
        p.rename(
            &cx(),
            Loc::entry(Gfid::ROOT, "src"),
            Loc::entry(d, "n6"),
            0,
            old.clone(),
        )
        .await
        .unwrap_err(),
    );
    for e in &errors {
        assert_eq!(e.errno, libc::ESTALE, "{e}");
        assert!(
            e.msg.contains(&d.to_string())
                && e.msg.contains("generation 3")
                && e.msg.contains("client has 2"),
            "{e}"
        );
    }
    assert!(listing().is_empty(), "{:?}", listing());
    assert!(dir.path().join("src").exists());

    // Renaming out of the directory is checked against the new parent only.
    let inside = mkfile(&p, d, "inside", b"").await;
    p.rename(
        &cx(),
        Loc::entry(d, "inside"),
        Loc::entry(Gfid::ROOT, "moved-out"),
        0,
        old.clone(),
    )
    .await
    .unwrap();
    assert!(dir.path().join("moved-out").exists());
    let _ = inside;

    // Current or newer generations, and no key at all, go through.
    for (name, x) in [
        ("same", with_gen(&3u32.to_be_bytes())),
        ("newer", with_gen(&4u32.to_be_bytes())),
        ("none", Xdata::new()),
    ] {
        p.mkdir(
            &cx(),
            Loc::entry(d, format!("{name}-dir")),
            0o755,
            0o022,
            x.clone(),
        )
        .await
        .unwrap();
        p.mknod(
            &cx(),
            Loc::entry(d, format!("{name}-node")),
            libc::S_IFREG | 0o644,
            0,
            0,
            x.clone(),
        )
        .await
        .unwrap();
        let fd = Fd::new(Gfid::random(), libc::O_RDWR);
        p.create(
            &cx(),
            Loc::entry(d, format!("{name}-file")),
            libc::O_RDWR,
            0o644,
            0o022,
            fd.clone(),
            x.clone(),
        )
        .await
        .unwrap();
        p.release(&cx(), fd).await.unwrap();
        p.symlink(
            &cx(),
            "t".into(),
            Loc::entry(d, format!("{name}-sym")),
            0,
            x.clone(),
        )
        .await
        .unwrap();
        p.link(
            &cx(),
            Loc::inode(src),
            Loc::entry(d, format!("{name}-link")),
            x.clone(),
        )
        .await
        .unwrap();
    }
    p.rename(
        &cx(),
        Loc::entry(Gfid::ROOT, "src"),
        Loc::entry(d, "renamed"),
        0,
        with_gen(&3u32.to_be_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(listing().len(), 16);

    // A parent without a layout: nothing to compare with.
    p.mkdir(
        &cx(),
        Loc::entry(Gfid::ROOT, "plain"),
        0o755,
        0o022,
        with_gen(&0u32.to_be_bytes()),
    )
    .await
    .unwrap();

    // A generation that is not 4 bytes is refused, with nothing created.
    let e = p
        .mkdir(
            &cx(),
            Loc::entry(d, "bad"),
            0o755,
            0o022,
            with_gen(&[0, 0, 3]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EINVAL, "{e}");
    assert!(e.msg.contains(types::LAYOUT_GEN_KEY), "{e}");
    assert!(!dir.path().join("d/bad").exists());

    // A stored layout the brick cannot read is an error, not a silent pass.
    let mut x = Xdata::new();
    x.set(entry::XATTR_DHT_LAYOUT, vec![1u8, 0, 0]);
    p.setxattr(&cx(), Target::Loc(Loc::inode(d)), x, 0, Xdata::new())
        .await
        .unwrap();
    let e = p
        .mkdir(
            &cx(),
            Loc::entry(d, "bad"),
            0o755,
            0o022,
            with_gen(&3u32.to_be_bytes()),
        )
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EIO, "{e}");
    assert!(!dir.path().join("d/bad").exists());
}

/// `features/worm` over a real brick: what a client (pid ≠ 0) may not do to a committed file,
/// and what Cairn's own operations (pid 0) may.
#[tokio::test]
async fn worm_over_posix_guards_committed_files_from_clients_but_lets_moves_and_repairs_through() {
    use cairn_translators::features::worm::{MIGRATED_KEY, Worm, WormConfig, XATTR_WORM};
    let (_dir, p) = brick();
    let posix: XlatorRef = Arc::new(p);
    let worm = Worm::new(
        "worm",
        vec![posix],
        WormConfig {
            volume: false,
            file_level: true,
            retention: std::time::Duration::from_secs(3600),
            auto_commit: std::time::Duration::ZERO,
            enterprise: false,
            deletable: true,
        },
    );
    let client = Cx { pid: 4321, ..cx() };
    let internal = Cx::internal();
    let g = Gfid::random();
    let fd = Fd::new(g, libc::O_RDWR);
    worm.create(
        &client,
        Loc::entry(Gfid::ROOT, "img").with_gfid(g),
        libc::O_RDWR,
        0o644,
        0o022,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    worm.write(
        &client,
        fd.clone(),
        0,
        Payload::new(b"pixels".to_vec()),
        Xdata::new(),
    )
    .await
    .unwrap();
    worm.setattr(
        &client,
        Target::Loc(Loc::inode(g)),
        SetAttr {
            perm: Some(0o444),
            ..SetAttr::default()
        },
        Xdata::new(),
    )
    .await
    .unwrap();
    // Even through an fd opened before the commit, no write gets in.
    let e = worm
        .write(
            &client,
            fd.clone(),
            0,
            Payload::new(b"XX".to_vec()),
            Xdata::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EROFS, "{e}");
    worm.release(&client, fd).await.unwrap();
    let e = worm
        .setattr(
            &client,
            Target::Loc(Loc::inode(g)),
            SetAttr {
                perm: Some(0o644),
                ..SetAttr::default()
            },
            Xdata::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EPERM, "{e}");
    // A client cannot forge or drop the retention state.
    let mut forged = Xdata::new();
    forged.set(XATTR_WORM, b"1:0:0".to_vec());
    let e = worm
        .setxattr(&client, Target::Loc(Loc::inode(g)), forged, 0, Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EPERM, "{e}");
    let e = worm
        .removexattr(
            &client,
            Target::Loc(Loc::inode(g)),
            XATTR_WORM.to_string(),
            Xdata::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EPERM, "{e}");
    // Claiming to be a move does not help a client.
    let mut moved = Xdata::new();
    moved.set(MIGRATED_KEY, b"1".to_vec());
    let e = worm
        .unlink(&client, Loc::entry(Gfid::ROOT, "img"), moved.clone())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EROFS, "{e}");
    // Heal may put the same bytes back.
    let hfd = Fd::new(g, libc::O_WRONLY);
    worm.open(
        &internal,
        Loc::inode(g),
        libc::O_WRONLY,
        hfd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    worm.write(
        &internal,
        hfd.clone(),
        0,
        Payload::new(b"pixels".to_vec()),
        Xdata::new(),
    )
    .await
    .unwrap();
    worm.release(&internal, hfd).await.unwrap();
    // Cairn's own unlink is refused unless it is the end of a move.
    let e = worm
        .unlink(&internal, Loc::entry(Gfid::ROOT, "img"), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EROFS, "{e}");
    worm.unlink(&internal, Loc::entry(Gfid::ROOT, "img"), moved)
        .await
        .unwrap();
}

/// `features/bitrot` over a real brick: a closed, quiet file is signed; a change drops the
/// signature before it lands and the file is signed again (next version); a scrub of a
/// copy damaged on disk marks it bad, and reads of it fail until heal removes the mark;
/// clients cannot forge or remove the xattrs.
#[tokio::test]
async fn bitrot_over_posix_signs_quiet_files_and_scrub_finds_damage() {
    use cairn_translators::features::bitrot::{
        Bitrot, BitrotConfig, SCRUB_KEY, ScrubReply, Signature, Verdict, XATTR_BAD, XATTR_SIGNATURE,
    };
    let (dir, p) = brick();
    let posix: XlatorRef = Arc::new(p);
    let br = Bitrot::new(
        "bitrot",
        vec![posix],
        BitrotConfig {
            signing: true,
            signing_time: std::time::Duration::from_secs(1),
        },
    );
    br.start().await.unwrap();
    let internal = Cx::internal();
    let client = Cx { pid: 77, ..cx() };
    let sig = async |br: &Bitrot, g: Gfid| {
        br.getxattr(
            &internal,
            Target::Loc(Loc::inode(g)),
            Some(XATTR_SIGNATURE.into()),
            Xdata::new(),
        )
        .await
        .ok()
        .and_then(|x| x.get(XATTR_SIGNATURE).and_then(Signature::decode))
    };
    let scrub = async |br: &Bitrot, g: Gfid| {
        let x = br
            .getxattr(
                &internal,
                Target::Loc(Loc::inode(g)),
                Some(SCRUB_KEY.into()),
                Xdata::new(),
            )
            .await
            .unwrap();
        ScrubReply::decode(x.get(SCRUB_KEY).unwrap()).unwrap()
    };
    let g = Gfid::random();
    let fd = Fd::new(g, libc::O_RDWR);
    br.create(
        &client,
        Loc::entry(Gfid::ROOT, "img").with_gfid(g),
        libc::O_RDWR,
        0o644,
        0o022,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    let data = vec![7u8; 300_000];
    br.write(
        &client,
        fd.clone(),
        0,
        Payload::new(data.clone()),
        Xdata::new(),
    )
    .await
    .unwrap();
    // Open: not signed, however long it waits; a scrub calls it busy.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(sig(&br, g).await, None, "an open file is not signed");
    assert_eq!(scrub(&br, g).await.verdict, Verdict::Busy);
    br.release(&client, fd.clone()).await.unwrap();
    drop(fd);
    let mut signed = None;
    for _ in 0..50 {
        signed = sig(&br, g).await;
        if signed.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let first = signed.expect("signed once closed and quiet");
    assert_eq!(first.version, 1);
    assert_eq!(first.hash, xxhash_rust::xxh3::xxh3_128(&data));
    let ok = scrub(&br, g).await;
    assert_eq!(ok.verdict, Verdict::Ok);
    assert_eq!(ok.bytes, data.len() as u64);

    // A change: the signature is gone as soon as the write returns; signed again later.
    let fd = Fd::new(g, libc::O_WRONLY);
    br.open(
        &client,
        Loc::inode(g),
        libc::O_WRONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    br.write(
        &client,
        fd.clone(),
        10,
        Payload::new(vec![1u8; 5]),
        Xdata::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        sig(&br, g).await,
        None,
        "a change drops the signature first"
    );
    br.release(&client, fd.clone()).await.unwrap();
    drop(fd);
    let mut again = None;
    for _ in 0..50 {
        again = sig(&br, g).await;
        if again.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(again.expect("signed again").version, 2);

    // Damage on disk, behind the brick's back.
    let path = dir.path().join("img");
    let mut bytes = fs::read(&path).unwrap();
    bytes[123_456] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    assert_eq!(scrub(&br, g).await.verdict, Verdict::Corrupt);
    assert!(
        rustix::fs::getxattr(&path, XATTR_BAD, &mut [0u8; 64]).is_ok(),
        "the copy is marked bad on disk"
    );
    assert_eq!(scrub(&br, g).await.verdict, Verdict::Bad);
    let fd = Fd::new(g, libc::O_RDONLY);
    br.open(
        &client,
        Loc::inode(g),
        libc::O_RDONLY,
        fd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    let e = br
        .read(&client, fd.clone(), 0, 4096, Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EIO, "a damaged copy serves no reads: {e}");
    // Clients can neither forge nor clear the marks.
    let mut forged = Xdata::new();
    forged.set(
        XATTR_SIGNATURE,
        b"1:xxh3-128:9:00000000000000000000000000000000".to_vec(),
    );
    let e = br
        .setxattr(&client, Target::Loc(Loc::inode(g)), forged, 0, Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EPERM);
    let e = br
        .removexattr(
            &client,
            Target::Loc(Loc::inode(g)),
            XATTR_BAD.into(),
            Xdata::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EPERM);
    // Heal (internal) removes the mark once it has rewritten the copy: reads work again.
    br.removexattr(
        &internal,
        Target::Loc(Loc::inode(g)),
        XATTR_BAD.into(),
        Xdata::new(),
    )
    .await
    .unwrap();
    br.read(&client, fd.clone(), 0, 4096, Xdata::new())
        .await
        .unwrap();
    br.release(&client, fd).await.unwrap();
    br.stop().await;
}

/// A lookup of `name` under the root asking for its content (quick-read).
async fn lookup_content(p: &Posix, name: &str) -> Option<Vec<u8>> {
    let mut x = Xdata::new();
    x.set_u64(performance::quick_read::WANT_KEY, 1 << 20);
    let e = p
        .lookup(&cx(), Loc::entry(Gfid::ROOT, name), x)
        .await
        .unwrap();
    e.xdata
        .get(performance::quick_read::CONTENT_KEY)
        .map(<[u8]>::to_vec)
}

#[tokio::test]
async fn a_copy_heal_rewrites_in_place_serves_no_content_until_it_is_whole() {
    let (_d, p) = brick();
    let g = mkfile(&p, Gfid::ROOT, "img.dcm", &[7u8; 5000]).await;
    assert_eq!(lookup_content(&p, "img.dcm").await, Some(vec![7u8; 5000]));
    // A reader opened the copy before heal came to rebuild it.
    let rfd = Fd::new(g, libc::O_RDONLY);
    p.open(
        &cx(),
        Loc::inode(g),
        libc::O_RDONLY,
        rfd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    let wfd = open_rewrite(&p, g).await;
    // Heal empties the copy and sets its size: zeros, which nobody may be served.
    empty_to(&p, &wfd, 5000).await;
    let err = p
        .read(&cx(), rfd.clone(), 0, 5000, Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(err.errno, libc::EIO, "{err}");
    assert_eq!(lookup_content(&p, "img.dcm").await, None);
    p.write(
        &cx(),
        wfd.clone(),
        0,
        Payload::new(vec![9u8; 5000]),
        Xdata::new(),
    )
    .await
    .unwrap();
    assert_eq!(lookup_content(&p, "img.dcm").await, None);
    // Finished and released: the copy is whole, and read again.
    finish_rewrite(&p, &wfd).await;
    p.release(&cx(), wfd).await.unwrap();
    let data = p
        .read(&cx(), rfd.clone(), 0, 5000, Xdata::new())
        .await
        .unwrap();
    assert_eq!(data.bytes(), &[9u8; 5000][..]);
    assert_eq!(lookup_content(&p, "img.dcm").await, Some(vec![9u8; 5000]));
    p.release(&cx(), rfd).await.unwrap();
}

#[tokio::test]
async fn a_copy_heal_creates_serves_no_content_until_it_is_filled() {
    let (_d, p) = brick();
    let g = Gfid::random();
    let mut rewrite = Xdata::new();
    rewrite.set(types::REWRITE_KEY, Vec::new());
    let wfd = Fd::new(g, libc::O_WRONLY);
    p.create(
        &cx(),
        Loc::entry(Gfid::ROOT, "new.dcm").with_gfid(g),
        libc::O_WRONLY | libc::O_EXCL,
        0o644,
        0,
        wfd.clone(),
        rewrite,
    )
    .await
    .unwrap();
    p.truncate(&cx(), Target::Fd(wfd.clone()), 3000, Xdata::new())
        .await
        .unwrap();
    assert_eq!(lookup_content(&p, "new.dcm").await, None);
    fill_and_finish(&p, wfd, vec![5u8; 3000]).await;
    assert_eq!(lookup_content(&p, "new.dcm").await, Some(vec![5u8; 3000]));
}

/// Empties the file open on `wfd` and gives it `size` bytes of zeros, as heal does first.
async fn empty_to(p: &Posix, wfd: &Fd, size: u64) {
    for size in [0, size] {
        p.truncate(&cx(), Target::Fd(wfd.clone()), size, Xdata::new())
            .await
            .unwrap();
    }
}

/// Writes `data` at offset 0 through `wfd`, says the rewrite is finished and closes it.
async fn fill_and_finish(p: &Posix, wfd: Fd, data: Vec<u8>) {
    p.write(&cx(), wfd.clone(), 0, Payload::new(data), Xdata::new())
        .await
        .unwrap();
    finish_rewrite(p, &wfd).await;
    p.release(&cx(), wfd).await.unwrap();
}

/// Tells the brick the rewrite through `wfd` is finished, as heal does.
async fn finish_rewrite(p: &Posix, wfd: &Fd) {
    let mut done = Xdata::new();
    done.set(types::REWRITE_DONE_KEY, Vec::new());
    p.flush(&cx(), wfd.clone(), done).await.unwrap();
}

/// Opens `g` for a rewrite in place, as heal does.
async fn open_rewrite(p: &Posix, g: Gfid) -> Fd {
    let mut rewrite = Xdata::new();
    rewrite.set(types::REWRITE_KEY, Vec::new());
    let wfd = Fd::new(g, libc::O_WRONLY);
    p.open(&cx(), Loc::inode(g), libc::O_WRONLY, wfd.clone(), rewrite)
        .await
        .unwrap();
    wfd
}

#[tokio::test]
async fn a_rewrite_that_never_finished_leaves_the_copy_refused_until_one_does() {
    let (_d, p) = brick();
    let g = mkfile(&p, Gfid::ROOT, "img.dcm", &[7u8; 5000]).await;
    // Heal empties the copy, sets its size, and its write fails (a full disk): zeros.
    let wfd = open_rewrite(&p, g).await;
    empty_to(&p, &wfd, 5000).await;
    p.release(&cx(), wfd).await.unwrap();
    assert_eq!(lookup_content(&p, "img.dcm").await, None);
    let rfd = Fd::new(g, libc::O_RDONLY);
    p.open(
        &cx(),
        Loc::inode(g),
        libc::O_RDONLY,
        rfd.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    let err = p
        .read(&cx(), rfd.clone(), 0, 5000, Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(err.errno, libc::EIO, "{err}");
    // A later heal rewrites it and finishes.
    let wfd = open_rewrite(&p, g).await;
    fill_and_finish(&p, wfd, vec![9u8; 5000]).await;
    let data = p
        .read(&cx(), rfd.clone(), 0, 5000, Xdata::new())
        .await
        .unwrap();
    assert_eq!(data.bytes(), &[9u8; 5000][..]);
    assert_eq!(lookup_content(&p, "img.dcm").await, Some(vec![9u8; 5000]));
    p.release(&cx(), rfd).await.unwrap();
}

#[test]
fn a_read_overlapped_by_the_start_of_a_rewrite_is_dropped() {
    let rewrites = Arc::new(super::data::Rewrites::default());
    let g = Gfid::random();
    let finished = |g: Gfid| {
        let guard = rewrites.begin(g);
        guard.finish();
        guard
    };
    assert_eq!(rewrites.steady(g, || 1), Some(1));
    // Begun (and even ended) while the read ran: what it read may be torn.
    assert_eq!(rewrites.steady(g, || drop(finished(g))), None);
    let guard = finished(g);
    assert_eq!(rewrites.steady(g, || 2), None);
    // Two rewrites of one file: busy until both end.
    let second = finished(g);
    drop(guard);
    assert_eq!(rewrites.steady(g, || 3), None);
    drop(second);
    assert_eq!(rewrites.steady(g, || 4), Some(4));
    // Another file's rewrite in a different stripe leaves this one's reads alone.
    let mut other = Gfid::random();
    other.0[15] = g.0[15].wrapping_add(1);
    assert_eq!(rewrites.steady(g, || drop(finished(other))), Some(()));
    // One that ends unfinished leaves the copy refused, until one finishes.
    drop(rewrites.begin(g));
    assert_eq!(rewrites.steady(g, || 5), None);
    drop(finished(g));
    assert_eq!(rewrites.steady(g, || 6), Some(6));
}

/// Passes everything to posix; once armed, the next xattrop that lowers a counter (the read
/// the index judges an object clean by) stops after it ran, until released.
struct Gate {
    base: XlatorBase,
    armed: std::sync::atomic::AtomicBool,
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl Translator for Gate {
    cairn_translators::xlator_base!();

    async fn xattrop(
        &self,
        cx: &Cx,
        target: Target,
        op: XattropOp,
        xattrs: Xdata,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        let lowers = xattrs.iter().any(|(_, v)| {
            cairn_translators::features::index::read_counters(v)
                .iter()
                .any(|c| *c < 0)
        });
        let r = self
            .base
            .child()?
            .xattrop(cx, target, op, xattrs, xdata)
            .await;
        if lowers && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        r
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_entry_survives_a_clear_that_read_the_counters_before_a_new_mark() {
    use cairn_translators::features::index::{DATA, Index, XATTR_DIRTY, counters, read_counters};
    let (_dir, p) = brick();
    let g = mkfile(&p, Gfid::ROOT, "f", b"x").await;
    let posix: XlatorRef = Arc::new(p);
    let gate = Arc::new(Gate {
        base: XlatorBase::new("gate", "test/gate", vec![Arc::clone(&posix)]),
        armed: Default::default(),
        entered: Default::default(),
        release: Default::default(),
    });
    let idx = tempfile::tempdir().unwrap();
    let listed = idx.path().join(g.to_string());
    let gate_ref: XlatorRef = gate.clone();
    let index = Arc::new(Index::new(
        "index",
        vec![gate_ref],
        idx.path().to_path_buf(),
    ));
    let change = |n: i64| {
        let index = Arc::clone(&index);
        async move {
            let mut x = Xdata::new();
            x.set(XATTR_DIRTY, counters(DATA, n));
            index
                .xattrop(
                    &cx(),
                    Target::Loc(Loc::inode(g)),
                    XattropOp::AddArray64,
                    x,
                    Xdata::new(),
                )
                .await
        }
    };
    change(1).await.unwrap();
    assert!(listed.exists(), "a raised counter is listed");

    // A clear brings the counter to zero and reads every counter clean, then stalls before
    // acting on what it read; meanwhile another request raises the counter again. (Without
    // the per-object lock the raise finds the entry there, and the clear then removes it.)
    gate.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let clear = tokio::spawn(change(-1));
    gate.entered.notified().await;
    let mark = tokio::spawn(change(1));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    gate.release.notify_one();
    clear.await.unwrap().unwrap();
    mark.await.unwrap().unwrap();

    let x = posix
        .getxattr(&cx(), Target::Loc(Loc::inode(g)), None, Xdata::new())
        .await
        .unwrap();
    let dirty = read_counters(x.get(XATTR_DIRTY).expect("dirty counter"));
    assert_eq!(dirty, [1, 0, 0]);
    assert!(
        listed.exists(),
        "the object is dirty but its index entry was removed"
    );

    // A raise that fails (no such object) leaves no entry behind.
    let ghost = Gfid::random();
    let mut x = Xdata::new();
    x.set(XATTR_DIRTY, counters(DATA, 1));
    let r = index
        .xattrop(
            &cx(),
            Target::Loc(Loc::inode(ghost)),
            XattropOp::AddArray64,
            x,
            Xdata::new(),
        )
        .await;
    assert!(r.is_err());
    assert!(!idx.path().join(ghost.to_string()).exists());
}

#[tokio::test]
async fn lowering_a_counter_drops_the_index_entry_only_when_every_counter_is_clean() {
    use cairn_translators::features::bitrot::XATTR_BAD;
    use cairn_translators::features::index::{DATA, Index, XATTR_DIRTY, counters};
    let (_dir, p) = brick();
    let g = mkfile(&p, Gfid::ROOT, "f", b"x").await;
    let posix: XlatorRef = Arc::new(p);
    let idx = tempfile::tempdir().unwrap();
    let listed = idx.path().join(g.to_string());
    let index = Index::new("index", vec![Arc::clone(&posix)], idx.path().to_path_buf());
    let t = || Target::Loc(Loc::inode(g));
    let op = |name: &str, n: i64| {
        let mut x = Xdata::new();
        x.set(name.to_string(), counters(DATA, n));
        x
    };
    let pending = "trusted.cairn.afr.pending.brick-2";

    // Dirty and blamed: clearing the dirty mark leaves the blame, so the entry stays; the
    // reply carries only the counter that was changed.
    index
        .xattrop(
            &cx(),
            t(),
            XattropOp::AddArray64,
            op(XATTR_DIRTY, 1),
            Xdata::new(),
        )
        .await
        .unwrap();
    index
        .xattrop(
            &cx(),
            t(),
            XattropOp::AddArray64,
            op(pending, 1),
            Xdata::new(),
        )
        .await
        .unwrap();
    let out = index
        .xattrop(
            &cx(),
            t(),
            XattropOp::AddArray64,
            op(XATTR_DIRTY, -1),
            Xdata::new(),
        )
        .await
        .unwrap();
    let names: Vec<&String> = out.iter().map(|(k, _)| k).collect();
    assert_eq!(names, [XATTR_DIRTY]);
    assert!(listed.exists(), "a blamed object left the index");

    // What the index judged by: posix reports every counter under the asked prefixes after
    // the change, and says it did.
    let mut asked = Xdata::new();
    asked.set(
        cairn_translators::types::XATTROP_REPORT_KEY,
        b"trusted.cairn.afr.\0".to_vec(),
    );
    let all = posix
        .xattrop(&cx(), t(), XattropOp::AddArray64, op(XATTR_DIRTY, 0), asked)
        .await
        .unwrap();
    let mut names: Vec<&String> = all.iter().map(|(k, _)| k).collect();
    names.sort();
    assert_eq!(
        names,
        [
            cairn_translators::types::XATTROP_REPORT_KEY,
            XATTR_DIRTY,
            pending
        ]
    );
    assert_eq!(all.get(pending), Some(&counters(DATA, 1)[..]));

    // A copy marked bad by a scrub stays listed with every counter at zero.
    let mut bad = Xdata::new();
    bad.set(XATTR_BAD, b"1".to_vec());
    posix
        .setxattr(&cx(), t(), bad, 0, Xdata::new())
        .await
        .unwrap();
    index
        .xattrop(
            &cx(),
            t(),
            XattropOp::AddArray64,
            op(pending, -1),
            Xdata::new(),
        )
        .await
        .unwrap();
    assert!(listed.exists(), "a copy marked bad left the index");

    posix
        .removexattr(&cx(), t(), XATTR_BAD.to_string(), Xdata::new())
        .await
        .unwrap();
    index
        .xattrop(
            &cx(),
            t(),
            XattropOp::AddArray64,
            op(XATTR_DIRTY, 0),
            Xdata::new(),
        )
        .await
        .unwrap();
    assert!(!listed.exists(), "a clean object stayed in the index");
}

#[tokio::test]
async fn handles_go_into_new_and_existing_handle_directories() {
    let (dir, p) = brick();
    // Two gfids in one handle directory (the first two bytes choose it), one in another.
    let first = Gfid([0xab, 0xcd, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    let same_fan = Gfid([0xab, 0xcd, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]);
    let other_fan = Gfid([0x12, 0x34, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]);
    for (i, g) in [first, same_fan, other_fan].into_iter().enumerate() {
        let fan = layout::file_handle(dir.path(), g);
        let fan = fan.parent().unwrap();
        let existed = fan.exists();
        assert_eq!(existed, i == 1, "handle directory of file {i}");
        let name = format!("f{i}");
        let e = create_closed(&p, Gfid::ROOT, &name, g).await.unwrap();
        assert_eq!(e.iatt.gfid, g);
        assert!(has_handle(dir.path(), &name, g), "file {i} has its handle");
    }
    // A handle directory the brick made and remembers, removed behind its back, is made
    // again by the next create that needs it.
    let fan = layout::file_handle(dir.path(), other_fan);
    let fan = fan.parent().unwrap().to_path_buf();
    fs::remove_file(layout::file_handle(dir.path(), other_fan)).unwrap();
    fs::remove_dir(&fan).unwrap();
    let again = Gfid([0x12, 0x34, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]);
    create_closed(&p, Gfid::ROOT, "again", again).await.unwrap();
    assert!(has_handle(dir.path(), "again", again));
}

#[tokio::test]
async fn xattr_calls_by_gfid_on_a_removed_directory_fail_and_make_nothing() {
    let (dir, p) = brick();
    let d = mkdir(&p, Gfid::ROOT, "series").await;
    let t = Target::Loc(Loc::inode(d));
    let mut x = Xdata::new();
    x.set("trusted.cairn.afr.dirty", vec![0u8; 24]);
    p.xattrop(
        &cx(),
        t.clone(),
        XattropOp::AddArray64,
        x.clone(),
        Xdata::new(),
    )
    .await
    .unwrap();
    p.rmdir(&cx(), Loc::entry(Gfid::ROOT, "series"), Xdata::new())
        .await
        .unwrap();
    let e = p
        .xattrop(&cx(), t.clone(), XattropOp::AddArray64, x, Xdata::new())
        .await
        .unwrap_err();
    assert!(
        e.errno == libc::ENOENT || e.errno == libc::ESTALE,
        "xattrop on a removed directory: {e}"
    );
    let e = p.getxattr(&cx(), t, None, Xdata::new()).await.unwrap_err();
    assert!(
        e.errno == libc::ENOENT || e.errno == libc::ESTALE,
        "getxattr on a removed directory: {e}"
    );
    assert!(!dir.path().join("series").exists());
}

#[tokio::test]
async fn a_create_without_o_excl_opens_an_existing_file_and_keeps_or_gives_its_identity() {
    let (dir, p) = brick();
    // A file with an identity keeps it, and its bytes.
    let g = mkfile(&p, Gfid::ROOT, "kept", b"first").await;
    let e = create_closed(&p, Gfid::ROOT, "kept", Gfid::random())
        .await
        .unwrap();
    assert_eq!(e.iatt.gfid, g);
    assert!(!e.xdata.contains(cairn_translators::types::CREATED_KEY));
    assert_eq!(fs::read(dir.path().join("kept")).unwrap(), b"first");

    // A file put on the brick behind Cairn's back (no gfid) gets the one asked for, and its
    // handle.
    fs::write(dir.path().join("foreign"), b"bytes").unwrap();
    let want = Gfid::random();
    let e = create_closed(&p, Gfid::ROOT, "foreign", want)
        .await
        .unwrap();
    assert_eq!(e.iatt.gfid, want);
    assert!(has_handle(dir.path(), "foreign", want));
    assert_eq!(fs::read(dir.path().join("foreign")).unwrap(), b"bytes");
}
