//! cluster/distribute over real brick processes and a real FUSE mount: placement by hash,
//! one listing per name, renames across groups, linkto pointers, min-free-disk, directory
//! heal, stale layouts, statfs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_tests::*;
use cairn_translators::cluster::dht::layout::{
    GroupLayout, Layout, XATTR_LAYOUT, XATTR_LINKTO, name_hash,
};

/// `groups` × `replica` bricks, distribute on top, mounted with FUSE.
struct Dist {
    mount: Option<MountProc>,
    bricks: Vec<BrickProc>,
    dirs: Vec<PathBuf>,
    #[allow(dead_code)]
    volfile: PathBuf,
    mnt: PathBuf,
    groups: usize,
    replica: usize,
    mounted: Vec<PathBuf>,
    tmp: tempfile::TempDir,
}

fn volfile_text(ports: &[u16], groups: usize, replica: usize, dht_opts: &[(&str, &str)]) -> String {
    let mut vf =
        String::from("version: 1\nvolume: test\nrole: client\ntop: test-io-stats\ngraph:\n");
    for (i, p) in ports.iter().enumerate() {
        vf.push_str(&format!(
            "  - name: test-client-{i}\n    type: protocol/client\n    options:\n      remote-host: 127.0.0.1\n      remote-port: {p}\n      volume-id: vol-dht\n      remote-brick: b{i}\n      ping-timeout: 2s\n      reconnect-max-interval: 200ms\n"
        ));
    }
    let mut group_names = Vec::new();
    for g in 0..groups {
        if replica > 1 {
            let members: Vec<String> = (0..replica)
                .map(|r| format!("test-client-{}", g * replica + r))
                .collect();
            vf.push_str(&format!(
                "  - name: test-replicate-{g}\n    type: cluster/replicate\n    subvolumes: [{}]\n",
                members.join(", ")
            ));
            group_names.push(format!("test-replicate-{g}"));
        } else {
            group_names.push(format!("test-client-{g}"));
        }
    }
    let mut opts = String::new();
    if !dht_opts.is_empty() {
        opts.push_str("    options:\n");
        for (k, v) in dht_opts {
            opts.push_str(&format!("      {k}: \"{v}\"\n"));
        }
    }
    vf.push_str(&format!(
        "  - name: test-dht\n    type: cluster/distribute\n{opts}    subvolumes: [{}]\n",
        group_names.join(", ")
    ));
    vf.push_str("  - name: test-io-stats\n    type: debug/io-stats\n    subvolumes: [test-dht]\n");
    vf
}

impl Dist {
    fn start(groups: usize, replica: usize) -> Dist {
        Dist::start_with(groups, replica, &[], |_, _| false)
    }

    /// `prepare(i, dir)` runs before brick i starts (to mount a small filesystem there);
    /// it returns true when it mounted something, which the test unmounts at the end.
    fn start_with(
        groups: usize,
        replica: usize,
        dht_opts: &[(&str, &str)],
        prepare: impl Fn(usize, &Path) -> bool,
    ) -> Dist {
        require_root();
        let tmp = tempfile::Builder::new()
            .prefix("cairn-dht-")
            .tempdir()
            .unwrap();
        let mut bricks = Vec::new();
        let mut dirs = Vec::new();
        let mut mounted = Vec::new();
        for i in 0..groups * replica {
            let d = tmp.path().join(format!("b{i}"));
            fs::create_dir_all(&d).unwrap();
            if prepare(i, &d) {
                mounted.push(d.clone());
            }
            bricks.push(BrickProc::start(
                &d,
                "vol-dht",
                &format!("b{i}"),
                "127.0.0.1:0",
            ));
            dirs.push(d);
        }
        let ports: Vec<u16> = bricks.iter().map(BrickProc::port).collect();
        let volfile = tmp.path().join("client.vol");
        fs::write(&volfile, volfile_text(&ports, groups, replica, dht_opts)).unwrap();
        let mnt = tmp.path().join("mnt");
        let mount = MountProc::start(
            &volfile,
            &mnt,
            &["--log-level", "info,cairn_translators::cluster::dht=debug"],
        );
        Dist {
            mount: Some(mount),
            bricks,
            dirs,
            volfile,
            mnt,
            groups,
            replica,
            mounted,
            tmp,
        }
    }

    /// The first brick of each group.
    fn group_dirs(&self) -> Vec<&Path> {
        (0..self.groups)
            .map(|g| self.dirs[g * self.replica].as_path())
            .collect()
    }

    /// The layout of directory `rel` as the bricks hold it.
    fn layout(&self, rel: &str) -> Layout {
        Layout::new(
            self.group_dirs()
                .iter()
                .map(|d| {
                    xattr(&d.join(rel), XATTR_LAYOUT).map(|raw| GroupLayout::decode(&raw).unwrap())
                })
                .collect(),
        )
    }

    /// Where `rel` is on the bricks: (group, is a linkto) for every group that has it.
    fn whereabouts(&self, rel: &str) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        for (g, d) in self.group_dirs().iter().enumerate() {
            let p = d.join(rel);
            if let Ok(m) = fs::symlink_metadata(&p) {
                out.push((g, is_linkto(&p, &m)));
            }
        }
        out
    }
}

impl Drop for Dist {
    fn drop(&mut self) {
        self.mount.take();
        for b in &mut self.bricks {
            b.stop();
        }
        for m in &self.mounted {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let _ = &self.tmp;
    }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn is_linkto(path: &Path, m: &fs::Metadata) -> bool {
    m.is_file()
        && m.mode() & 0o7777 == 0o1000
        && m.len() == 0
        && xattr(path, XATTR_LINKTO).is_some()
}

/// Every file below `root` (relative path → contents), skipping `.cairn` and linkto files.
fn data_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for ent in fs::read_dir(root.join(&rel)).unwrap() {
            let ent = ent.unwrap();
            if ent.file_name() == ".cairn" {
                continue;
            }
            let r = rel.join(ent.file_name());
            let p = root.join(&r);
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(r);
            } else if m.is_file() && !is_linkto(&p, &m) {
                out.insert(r.display().to_string(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Every linkto below `root`: relative path → the group name it points at.
fn linktos(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for ent in fs::read_dir(root.join(&rel)).unwrap() {
            let ent = ent.unwrap();
            if ent.file_name() == ".cairn" {
                continue;
            }
            let r = rel.join(ent.file_name());
            let p = root.join(&r);
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(r);
            } else if is_linkto(&p, &m) {
                let t = String::from_utf8(xattr(&p, XATTR_LINKTO).unwrap()).unwrap();
                out.insert(r.display().to_string(), t);
            }
        }
    }
    out
}

/// Relative paths of everything `find` lists below `root` (each once, or the test fails).
fn find(root: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(".")
        .arg("-mindepth")
        .arg("1")
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "find failed: {out:?}");
    let mut v: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect();
    v.sort();
    v
}

fn assert_listed_once(root: &Path, expect: &BTreeSet<String>) {
    let listed = find(root);
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), unique.len(), "find listed a name twice");
    assert_eq!(
        &unique, expect,
        "find lists exactly the names the volume holds"
    );
}

/// The namespace stays exact: every data file is in exactly one group, every linkto points
/// at a group that holds the file, and the data files are what the mount shows.
fn assert_consistent(d: &Dist, expect: &BTreeMap<String, Vec<u8>>) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (g, dir) in d.group_dirs().iter().enumerate() {
        for (rel, data) in data_files(dir) {
            assert!(
                seen.insert(rel.clone(), g).is_none(),
                "{rel} has data in two groups"
            );
            assert_eq!(expect.get(&rel), Some(&data), "{rel} on group {g}");
        }
    }
    assert_eq!(
        seen.keys().collect::<BTreeSet<_>>(),
        expect.keys().collect::<BTreeSet<_>>(),
        "the bricks hold exactly the files written"
    );
    for (g, dir) in d.group_dirs().iter().enumerate() {
        for (rel, target) in linktos(dir) {
            let holder = seen
                .get(&rel)
                .unwrap_or_else(|| panic!("stale linkto {rel} on group {g}"));
            let want = if d.replica > 1 {
                format!("test-replicate-{holder}")
            } else {
                format!("test-client-{holder}")
            };
            assert_eq!(
                target, want,
                "linkto {rel} on group {g} points at the holder"
            );
            assert_ne!(*holder, g, "a linkto next to its own data");
        }
    }
}

fn content(i: usize) -> Vec<u8> {
    pattern(1000 + (i * 37) % 5000, i as u64)
}

#[test]
fn files_are_placed_by_hash_and_listed_once() {
    let d = Dist::start(3, 1);
    let m = &d.mnt;
    let mut expect = BTreeMap::new();
    let mut names = BTreeSet::new();
    for s in 0..3 {
        let dir = format!("study{s}/series");
        fs::create_dir_all(m.join(&dir)).unwrap();
        names.insert(format!("study{s}"));
        names.insert(dir.clone());
        for i in 0..60 {
            let rel = format!("{dir}/img{i:04}.dcm");
            fs::write(m.join(&rel), content(s * 100 + i)).unwrap();
            names.insert(rel.clone());
            expect.insert(rel, content(s * 100 + i));
        }
    }
    assert_listed_once(m, &names);
    for (rel, data) in &expect {
        assert_eq!(&fs::read(m.join(rel)).unwrap(), data, "{rel} reads back");
    }
    // Every directory is on every group, with a complete, settled layout.
    for s in 0..3 {
        for rel in [format!("study{s}"), format!("study{s}/series")] {
            for g in d.group_dirs() {
                assert!(g.join(&rel).is_dir(), "{rel} exists on {}", g.display());
            }
            let l = d.layout(&rel);
            assert!(l.is_complete() && l.is_settled(), "layout of {rel}: {l:?}");
        }
    }
    // Every file is in its hashed group and nowhere else; all groups got some.
    let mut per_group = vec![0usize; 3];
    for rel in expect.keys() {
        let (dir, name) = rel.rsplit_once('/').unwrap();
        let h = d.layout(dir).group_for(name_hash(name, true)).unwrap();
        assert_eq!(d.whereabouts(rel), vec![(h, false)], "{rel}");
        per_group[h] += 1;
    }
    assert!(
        per_group.iter().all(|&n| n >= 20),
        "180 files spread over 3 groups: {per_group:?}"
    );
    assert_consistent(&d, &expect);
    // Remove everything: nothing is left on any brick.
    for rel in expect.keys() {
        fs::remove_file(m.join(rel)).unwrap();
    }
    for s in 0..3 {
        fs::remove_dir(m.join(format!("study{s}/series"))).unwrap();
        fs::remove_dir(m.join(format!("study{s}"))).unwrap();
    }
    assert!(find(m).is_empty());
    for g in d.group_dirs() {
        let left: Vec<_> = fs::read_dir(g)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != ".cairn")
            .collect();
        assert!(left.is_empty(), "{} still holds {left:?}", g.display());
    }
}

#[test]
fn renames_across_groups_keep_the_namespace_exact() {
    let d = Dist::start(3, 1);
    let m = &d.mnt;
    fs::create_dir_all(m.join("a")).unwrap();
    fs::create_dir_all(m.join("b")).unwrap();
    let mut expect: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..120 {
        let rel = format!("a/f{i}");
        fs::write(m.join(&rel), content(i)).unwrap();
        expect.insert(rel, content(i));
    }
    // Round 1: rename every file to a new name (most land in another group's range).
    for i in 0..120 {
        let (from, to) = (format!("a/f{i}"), format!("a/renamed-{i}"));
        fs::rename(m.join(&from), m.join(&to)).unwrap();
        let v = expect.remove(&from).unwrap();
        expect.insert(to, v);
    }
    assert_consistent(&d, &expect);
    let with_pointer = expect
        .keys()
        .filter(|rel| d.whereabouts(rel).iter().any(|(_, l)| *l))
        .count();
    assert!(
        with_pointer > 40,
        "renames across groups leave pointers ({with_pointer})"
    );
    // Round 2: move them to another directory, renaming again; every third overwrites an
    // existing file.
    for i in 0..40 {
        let rel = format!("b/target-{i}");
        fs::write(m.join(&rel), b"old").unwrap();
        expect.insert(rel, b"old".to_vec());
    }
    for i in 0..120 {
        let from = format!("a/renamed-{i}");
        let to = if i % 3 == 0 {
            format!("b/target-{}", i / 3)
        } else {
            format!("b/moved-{i}")
        };
        fs::rename(m.join(&from), m.join(&to)).unwrap();
        let v = expect.remove(&from).unwrap();
        expect.insert(to, v);
    }
    // Round 3: back to the original names (a pointer's data comes home).
    for i in 0..120 {
        if i % 3 == 0 {
            continue;
        }
        let (from, to) = (format!("b/moved-{i}"), format!("a/f{i}"));
        fs::rename(m.join(&from), m.join(&to)).unwrap();
        let v = expect.remove(&from).unwrap();
        expect.insert(to, v);
    }
    assert_consistent(&d, &expect);
    let mut names: BTreeSet<String> = expect.keys().cloned().collect();
    names.insert("a".into());
    names.insert("b".into());
    assert_listed_once(m, &names);
    for (rel, data) in &expect {
        assert_eq!(&fs::read(m.join(rel)).unwrap(), data, "{rel}");
    }
    // Directories rename on every group.
    fs::rename(m.join("b"), m.join("c")).unwrap();
    for g in d.group_dirs() {
        assert!(g.join("c").is_dir() && !g.join("b").exists());
    }
    let expect: BTreeMap<String, Vec<u8>> = expect
        .into_iter()
        .map(|(k, v)| (k.replacen("b/", "c/", 1), v))
        .collect();
    assert_consistent(&d, &expect);
    // Deleting through the mount removes data and pointers alike.
    for rel in expect.keys() {
        fs::remove_file(m.join(rel)).unwrap();
    }
    assert_consistent(&d, &BTreeMap::new());
    fs::remove_dir(m.join("a")).unwrap();
    fs::remove_dir(m.join("c")).unwrap();
    assert!(find(m).is_empty());
}

#[test]
fn a_nearly_full_group_gets_pointers_not_files() {
    // Group 0's brick is a 16 MiB tmpfs, filled to 95% before the test writes anything.
    // Equal ranges (weighted off), so that names do hash to the small group.
    let d = Dist::start_with(
        3,
        1,
        &[("min-free-disk", "10%"), ("weighted", "off")],
        |i, dir| {
            if i != 0 {
                return false;
            }
            let st = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
                .arg(dir)
                .status()
                .unwrap();
            assert!(st.success());
            true
        },
    );
    fs::write(
        d.dirs[0].join(".cairn/filler"),
        vec![7u8; 15 * 1024 * 1024 + 512 * 1024],
    )
    .unwrap();
    let m = &d.mnt;
    fs::create_dir(m.join("d")).unwrap();
    let mut expect = BTreeMap::new();
    for i in 0..90 {
        let rel = format!("d/n{i}");
        fs::write(m.join(&rel), content(i)).unwrap();
        expect.insert(rel, content(i));
    }
    let l = d.layout("d");
    let mut redirected = 0;
    for rel in expect.keys() {
        let name = rel.trim_start_matches("d/");
        let h = l.group_for(name_hash(name, true)).unwrap();
        let w = d.whereabouts(rel);
        if h == 0 {
            assert!(
                w.contains(&(0, true)),
                "{rel} hashed to the full group has a pointer: {w:?}"
            );
            assert_eq!(w.iter().filter(|(_, l)| !l).count(), 1);
            assert!(!w.contains(&(0, false)), "{rel}: no data on the full group");
            redirected += 1;
        } else {
            assert_eq!(w, vec![(h, false)], "{rel}");
        }
    }
    assert!(redirected > 0, "some names hash to group 0");
    assert_consistent(&d, &expect);
    let mut names: BTreeSet<String> = expect.keys().cloned().collect();
    names.insert("d".into());
    assert_listed_once(m, &names);
    for (rel, data) in &expect {
        assert_eq!(&fs::read(m.join(rel)).unwrap(), data);
    }
    for rel in expect.keys() {
        fs::remove_file(m.join(rel)).unwrap();
    }
    assert_consistent(&d, &BTreeMap::new());
}

#[test]
fn a_directory_made_while_a_group_was_down_is_created_there_on_lookup() {
    let mut d = Dist::start(3, 1);
    let m = d.mnt.clone();
    assert_eq!(fs::read_dir(&m).unwrap().count(), 0);
    let root = d.layout(".");
    assert!(root.is_complete(), "the root was laid out at first lookup");
    // Pick a name that hashes to group 0 or 1, then stop group 2's brick.
    let name = (0..)
        .map(|i| format!("dir{i}"))
        .find(|n| root.group_for(name_hash(n, true)) != Some(2))
        .unwrap();
    d.bricks[2].stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match fs::create_dir(m.join(&name)) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("mkdir with one group down: {e}"),
        }
    }
    fs::write(m.join(&name).join("x"), b"payload").ok();
    assert!(!d.dirs[2].join(&name).exists());
    d.bricks[2].restart();
    // The client notices the brick and the next lookups create the missing copy.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.dirs[2].join(&name).is_dir() {
        assert!(
            Instant::now() < deadline,
            "the missing copy was never created; mount log:\n{}",
            d.mount
                .as_ref()
                .map(MountProc::log_text)
                .unwrap_or_default()
        );
        // A lookup by name (a listing would refresh the kernel's entry instead).
        let _ = fs::metadata(m.join(&name));
        std::thread::sleep(Duration::from_millis(300));
    }
    let g0 = xattr(&d.dirs[0].join(&name), "trusted.cairn.gfid").unwrap();
    let g2 = xattr(&d.dirs[2].join(&name), "trusted.cairn.gfid").unwrap();
    assert_eq!(g0, g2, "the new copy has the directory's identity");
    assert_eq!(
        fs::metadata(d.dirs[2].join(&name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        fs::metadata(d.dirs[0].join(&name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    );
    assert!(d.layout(&name).is_complete());
}

#[test]
fn distributed_replicated_volume_keeps_each_file_in_one_replica_set() {
    let d = Dist::start(2, 2);
    let m = &d.mnt;
    fs::create_dir(m.join("s")).unwrap();
    let mut expect = BTreeMap::new();
    for i in 0..60 {
        let rel = format!("s/i{i}");
        fs::write(m.join(&rel), content(i)).unwrap();
        expect.insert(rel, content(i));
    }
    for rel in expect.keys() {
        let holders: Vec<usize> = (0..4).filter(|&b| d.dirs[b].join(rel).is_file()).collect();
        assert!(
            holders == vec![0, 1] || holders == vec![2, 3],
            "{rel} is on both bricks of one set: {holders:?}"
        );
    }
    // Both bricks of each set hold identical data.
    assert_eq!(data_files(&d.dirs[0]), data_files(&d.dirs[1]));
    assert_eq!(data_files(&d.dirs[2]), data_files(&d.dirs[3]));
    assert_consistent(&d, &expect);
    // statfs sums the sets.
    let vol = rustix::fs::statvfs(m.as_path()).unwrap();
    let brick = rustix::fs::statvfs(d.dirs[0].as_path()).unwrap();
    let vol_bytes = u128::from(vol.f_blocks) * u128::from(vol.f_frsize);
    let brick_bytes = u128::from(brick.f_blocks) * u128::from(brick.f_frsize);
    assert_eq!(
        vol_bytes,
        2 * brick_bytes,
        "two sets on one filesystem count twice"
    );
}

#[test]
fn a_client_with_a_stale_layout_is_refused_and_reloads_it() {
    let d = Dist::start(3, 1);
    let m = &d.mnt;
    fs::create_dir(m.join("d")).unwrap();
    fs::write(m.join("d/first"), b"1").unwrap();
    let old = d.layout("d");
    assert_eq!(old.generation(), 1);
    // Another party (a fix-layout) gives the whole ring to group 0, generation 2, behind
    // this client's back.
    let next = [
        GroupLayout {
            generation: 2,
            settled: false,
            range: Some(cairn_translators::cluster::dht::layout::Range {
                start: 0,
                end: u32::MAX,
            }),
        },
        GroupLayout {
            generation: 2,
            settled: false,
            range: None,
        },
        GroupLayout {
            generation: 2,
            settled: false,
            range: None,
        },
    ];
    for (g, dir) in d.group_dirs().iter().enumerate() {
        rustix::fs::lsetxattr(
            dir.join("d"),
            XATTR_LAYOUT,
            &next[g].encode(),
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    // The client still holds generation 1; the bricks refuse it, it reloads, and every new
    // name lands where generation 2 says: group 0.
    let mut expect = BTreeMap::new();
    expect.insert("d/first".to_string(), b"1".to_vec());
    for i in 0..30 {
        let rel = format!("d/new{i}");
        fs::write(m.join(&rel), content(i)).unwrap();
        assert_eq!(d.whereabouts(&rel), vec![(0, false)], "{rel}");
        expect.insert(rel, content(i));
    }
    // The layout is not settled, so the old file is still found wherever it is.
    assert_eq!(fs::read(m.join("d/first")).unwrap(), b"1");
    assert_consistent(&d, &expect);
}

/// A tree of this workspace's sources with links, an empty directory and odd modes.
fn source_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    sh(
        &workspace_root(),
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
fn tar_cp_rsync_and_git_work_on_a_distributed_replicated_volume() {
    let d = Dist::start(2, 2);
    let m = &d.mnt;
    let src = d.tmp.path().join("src");
    source_tree(&src);
    let tarball = d.tmp.path().join("src.tar");
    sh(&src, &format!("tar -cf '{}' .", tarball.display()));
    run(Command::new("cp").arg("-a").arg(&src).arg(m.join("by-cp")));
    fs::create_dir(m.join("by-tar")).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(m.join("by-tar"))
        .arg("-xf")
        .arg(&tarball));
    // rsync writes .NAME.XXXXXX and renames it: with rsync-hash the rename stays in-group.
    run(Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", src.display()))
        .arg(m.join("by-rsync")));
    for copy in ["by-cp", "by-tar", "by-rsync"] {
        let diffs = compare_trees(&src, &m.join(copy), &[]);
        assert!(diffs.is_empty(), "{copy}: {diffs:#?}");
    }
    let out = run(Command::new("rsync")
        .args(["-ai", "--dry-run"])
        .arg(format!("{}/", src.display()))
        .arg(m.join("by-rsync")));
    let changes = String::from_utf8_lossy(&out.stdout);
    assert!(
        changes.trim().is_empty(),
        "rsync would still change: {changes}"
    );
    let rsync_pointers =
        linktos(&d.dirs[0].join("by-rsync")).len() + linktos(&d.dirs[2].join("by-rsync")).len();
    assert_eq!(rsync_pointers, 0, "rsync's renames stayed in their groups");
    // Hard links stay hard links.
    let a = fs::metadata(m.join("by-cp/hardlinked.toml")).unwrap();
    let b = fs::metadata(m.join("by-cp/volfiles/Cargo.toml")).unwrap();
    assert_eq!(a.ino(), b.ino());
    // git: clone, status, commit, gc (renames, lock files, packs).
    let repo = d.tmp.path().join("repo");
    fs::rename(&src, &repo).unwrap();
    let git =
        "git -c user.name=Cairn -c user.email=cairn@example.invalid -c init.defaultBranch=main";
    sh(
        &repo,
        &format!("{git} init -q && {git} add -A && {git} commit -qm first"),
    );
    sh(m, &format!("{git} clone -q '{}' clone", repo.display()));
    let clone = m.join("clone");
    assert_eq!(sh(&clone, &format!("{git} status --porcelain")), "");
    sh(
        &clone,
        &format!("echo change >> volfiles/Cargo.toml && {git} commit -qam second && {git} gc -q"),
    );
    assert_eq!(sh(&clone, &format!("{git} status --porcelain")), "");
    sh(&clone, &format!("{git} fsck --strict --no-progress 2>&1"));
    // Both groups hold a share of the files.
    let g0 = data_files(&d.dirs[0]).len();
    let g1 = data_files(&d.dirs[2]).len();
    assert!(
        g0 > 100 && g1 > 100,
        "files spread over both sets: {g0} and {g1}"
    );
}
