//! Bitrot detection on a replica-3 volume of three cairnd, through a real FUSE mount:
//! bricks sign quiet files, an on-demand scrub finds a copy damaged on disk, clients keep
//! reading the right bytes, the copy is rebuilt from a copy that verifies, and the status
//! counts it. A file damaged on every copy is reported and never "repaired" with wrong
//! bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_api::ScrubStatus;
use cairn_tests::*;

const SIGNATURE: &str = "trusted.cairn.bitrot.signature";
const BAD: &str = "trusted.cairn.bitrot.bad";

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// The scrub status of every node.
fn status(p: &Pool, vol: &str) -> Vec<ScrubStatus> {
    let out = p.nodes[0].ok(&["--json", "volume", "bitrot", vol, "scrub", "status"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn sum(list: &[ScrubStatus], f: impl Fn(&ScrubStatus) -> u64) -> u64 {
    list.iter().map(f).sum()
}

/// Flips `n` bytes of a brick's copy in place, from `at` (size, xattrs and name unchanged:
/// what a failing disk does).
fn damage(path: &Path, at: u64, n: usize) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut buf = vec![0u8; n];
    f.read_exact_at(&mut buf, at).unwrap();
    for b in &mut buf {
        *b ^= 0x5a;
    }
    f.write_all_at(&buf, at).unwrap();
    f.sync_all().unwrap();
}

/// Waits until every brick's copy of each file carries a signature.
fn wait_signed(dirs: &[PathBuf], names: &[String]) {
    assert!(
        eventually(Duration::from_secs(60), || {
            dirs.iter()
                .all(|d| names.iter().all(|n| xattr(&d.join(n), SIGNATURE).is_some()))
        }),
        "every copy is signed after signing-time"
    );
}

fn bitrot_volume(p: &Pool, name: &str) -> (MountProc, PathBuf, Vec<PathBuf>) {
    // Through the CLI, before the start (changing them later restarts the bricks).
    replica3_volume_with(p, name, |n| {
        n.ok(&["volume", "bitrot", name, "enable"]);
        n.ok(&["volume", "bitrot", name, "signing-time", "1"]);
        n.ok(&["volume", "bitrot", name, "scrub-throttle", "aggressive"]);
    })
}

#[test]
fn a_flipped_byte_is_found_by_an_ondemand_scrub_and_repaired_from_a_good_copy() {
    let p = pool(23);
    let (mut m, mnt, dirs) = bitrot_volume(&p, "scrubbed");
    let mut names = Vec::new();
    let mut contents = Vec::new();
    for i in 0..12u64 {
        let (name, size) = if i % 4 == 0 {
            (format!("ct-{i}.dcm"), 517 * 1024)
        } else {
            (format!("mr-{i}.dcm"), 57 * 1024)
        };
        let data = pattern(size, i);
        fs::write(mnt.join(&name), &data).unwrap();
        names.push(name);
        contents.push(data);
    }
    wait_signed(&dirs, &names);
    let sig = String::from_utf8(xattr(&dirs[0].join("ct-4.dcm"), SIGNATURE).unwrap()).unwrap();
    assert!(sig.starts_with("1:xxh3-128:1:"), "{sig}");

    // A rewritten file loses its signature before the change, and is signed again (version 2).
    let rewritten = pattern(57 * 1024, 99);
    fs::write(mnt.join("mr-1.dcm"), &rewritten).unwrap();
    contents[1] = rewritten;
    assert!(
        eventually(Duration::from_secs(30), || dirs.iter().all(|d| {
            xattr(&d.join("mr-1.dcm"), SIGNATURE).is_some_and(|s| s.starts_with(b"1:xxh3-128:2:"))
        })),
        "a modified file is signed again, covering version 2"
    );

    // Bit rot on the second node's copy of a CT image.
    let victim = dirs[1].join("ct-4.dcm");
    damage(&victim, 200_000, 3);
    p.nodes[0].ok(&["volume", "bitrot", "scrubbed", "scrub", "ondemand"]);
    assert!(
        eventually(Duration::from_secs(90), || {
            let s = status(&p, "scrubbed");
            s.len() == 3 && s.iter().all(|n| n.runs >= 1 && n.state != "running")
        }),
        "every node finishes its run: {:?}",
        status(&p, "scrubbed")
    );
    let s = status(&p, "scrubbed");
    assert_eq!(sum(&s, |n| n.corrupt), 1, "one damaged copy found: {s:?}");
    assert_eq!(sum(&s, |n| n.repaired), 1, "and repaired: {s:?}");
    assert!(s.iter().all(|n| n.unrepaired.is_empty()), "{s:?}");
    assert!(
        s.iter().all(|n| n.files >= 12),
        "each node checked every file of its brick: {s:?}"
    );
    let finder = s.iter().find(|n| n.corrupt == 1).unwrap();
    assert_eq!(finder.host, p.nodes[1].host, "found by the node holding it");

    // The copy on disk holds the right bytes again and its mark is gone; every read
    // through a fresh mount is right.
    assert_eq!(
        fs::read(&victim).unwrap(),
        contents[4],
        "the copy is rebuilt"
    );
    assert!(xattr(&victim, BAD).is_none(), "its bad mark is removed");
    m.terminate();
    let mnt2 = p.tmp.path().join("mnt-scrubbed-2");
    let _m2 = mount_from_server(&format!("{}:/scrubbed", p.nodes[2].host), &mnt2, &[]).unwrap();
    for (n, c) in names.iter().zip(&contents) {
        assert_eq!(&fs::read(mnt2.join(n)).unwrap(), c, "{n} reads back");
    }
    // The rebuilt copy is signed again.
    assert!(
        eventually(Duration::from_secs(30), || xattr(&victim, SIGNATURE)
            .is_some()),
        "the rebuilt copy is signed again"
    );

    // Settings land in the status; pause holds on-demand runs off.
    p.nodes[0].ok(&["volume", "bitrot", "scrubbed", "scrub-throttle", "lazy"]);
    p.nodes[0].ok(&["volume", "bitrot", "scrubbed", "scrub-frequency", "daily"]);
    p.nodes[0].ok(&["volume", "bitrot", "scrubbed", "scrub", "pause"]);
    assert!(
        eventually(Duration::from_secs(15), || status(&p, "scrubbed")
            .iter()
            .all(|n| {
                n.throttle == "lazy" && n.frequency == "daily" && n.state == "paused"
            })),
        "{:?}",
        status(&p, "scrubbed")
    );
    let (code, out, err) = p.nodes[0].cli(&["volume", "bitrot", "scrubbed", "scrub", "ondemand"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("paused"), "{err}");
    p.nodes[0].ok(&["volume", "bitrot", "scrubbed", "scrub", "resume"]);
    let (code, _, err) =
        p.nodes[0].cli(&["volume", "bitrot", "scrubbed", "scrub-throttle", "warp"]);
    assert_eq!(code, 2, "a bad keyword is a usage error: {err}");
}

#[test]
fn a_file_damaged_on_every_copy_is_reported_and_never_repaired_with_wrong_bytes() {
    let p = pool(24);
    let (mut m, mnt, dirs) = bitrot_volume(&p, "ruined");
    let data = pattern(57 * 1024, 7);
    fs::write(mnt.join("study.dcm"), &data).unwrap();
    fs::write(mnt.join("fine.dcm"), pattern(4096, 8)).unwrap();
    wait_signed(&dirs, &["study.dcm".into(), "fine.dcm".into()]);
    let mut damaged = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        damage(&d.join("study.dcm"), 1000 + 5000 * i as u64, 2);
        damaged.push(fs::read(d.join("study.dcm")).unwrap());
    }
    m.terminate();
    p.nodes[0].ok(&["volume", "bitrot", "ruined", "scrub", "ondemand"]);
    assert!(
        eventually(Duration::from_secs(90), || {
            let s = status(&p, "ruined");
            s.len() == 3 && s.iter().all(|n| n.runs >= 1 && n.state != "running")
        }),
        "every node finishes its run"
    );
    let s = status(&p, "ruined");
    assert_eq!(
        sum(&s, |n| n.corrupt),
        3,
        "each node reports its copy: {s:?}"
    );
    assert_eq!(sum(&s, |n| n.repaired), 0, "nothing is repaired: {s:?}");
    for n in &s {
        assert_eq!(n.unrepaired.len(), 1, "{s:?}");
        assert_eq!(n.unrepaired[0].path, "/study.dcm");
        assert!(
            n.unrepaired[0].reason.contains("no other copy verifies"),
            "{s:?}"
        );
    }
    // Every copy keeps its own damaged bytes: none was overwritten with another's.
    for (d, before) in dirs.iter().zip(&damaged) {
        assert_eq!(&fs::read(d.join("study.dcm")).unwrap(), before);
        assert!(xattr(&d.join("study.dcm"), BAD).is_some());
    }
    // Readers get EIO, never wrong bytes; the undamaged file reads normally.
    let mnt2 = p.tmp.path().join("mnt-ruined-2");
    let _m2 = mount_from_server(&format!("{}:/ruined", p.nodes[0].host), &mnt2, &[]).unwrap();
    let e = fs::read(mnt2.join("study.dcm")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert_eq!(fs::read(mnt2.join("fine.dcm")).unwrap(), pattern(4096, 8));
}
