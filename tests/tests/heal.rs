//! Self-heal with real daemons, bricks, mounts and the CLI: a brick killed during an
//! ingest, two bricks down, split-brain and its policies, a wiped brick rebuilt, a brick
//! that hangs, and the dirty marks a restarted brick kept.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_tests::*;

struct Setup {
    nodes: Vec<DaemonProc>,
    bricks: Vec<PathBuf>,
    specs: Vec<String>,
    tmp: tempfile::TempDir,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.nodes[0].cli(&["volume", "stop", "h"]);
        for n in &mut self.nodes {
            n.stop();
        }
        kill_everything_under(self.tmp.path());
    }
}

/// A started replica-3 volume `h` on three daemons on 127.77.`net`.1-3.
fn setup(net: u8, options: &[(&str, &str)]) -> Setup {
    require_root();
    let tmp = tempfile::Builder::new()
        .prefix("cairn-heal-")
        .tempdir()
        .unwrap();
    let nodes: Vec<DaemonProc> = (1..=3)
        .map(|i| {
            DaemonProc::start(
                &tmp.path().join(format!("n{i}")),
                &format!("127.77.{net}.{i}"),
                None,
            )
        })
        .collect();
    for n in &nodes[1..] {
        nodes[0].ok(&["peer", "probe", &n.host]);
    }
    assert!(eventually(Duration::from_secs(15), || nodes[0]
        .ok(&["peer", "status"])
        .matches("(Connected)")
        .count()
        == 2));
    let bricks: Vec<PathBuf> = (0..3)
        .map(|i| tmp.path().join(format!("brick{i}")))
        .collect();
    let specs: Vec<String> = nodes
        .iter()
        .zip(&bricks)
        .map(|(n, b)| format!("{}:{}", n.host, b.display()))
        .collect();
    let mut args = vec!["volume", "create", "h", "replica", "3"];
    args.extend(specs.iter().map(String::as_str));
    args.push("force");
    nodes[0].ok(&args);
    for (k, v) in options {
        nodes[0].ok(&["volume", "set", "h", k, v]);
    }
    nodes[0].ok(&["volume", "start", "h"]);
    Setup {
        nodes,
        bricks,
        specs,
        tmp,
    }
}

/// Brings brick `i` back after `reset-brick ... start` (same path, `commit force`).
fn reset_brick_commit(s: &Setup, i: usize) {
    let spec = s.specs[i].clone();
    s.nodes[0].ok(&[
        "volume",
        "reset-brick",
        "h",
        &spec,
        &spec,
        "commit",
        "force",
    ]);
}

fn brick_pid(s: &Setup, i: usize) -> i32 {
    let out = s.nodes[0].ok(&["--json", "volume", "status", "h"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["bricks"][i]["pid"].as_i64().unwrap_or(0) as i32
}

fn pending(s: &Setup) -> usize {
    let (code, out, _) = s.nodes[0].cli(&["--json", "volume", "heal", "h", "info"]);
    if code != 0 {
        return usize::MAX;
    }
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|b| b["entries"].as_array().map(|e| e.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(usize::MAX)
}

fn healed_to_zero(s: &Setup, limit: Duration) -> bool {
    eventually(limit, || {
        let _ = s.nodes[0].cli(&["volume", "heal", "h"]);
        pending(s) == 0
    })
}

fn assert_identical(s: &Setup) {
    for b in &s.bricks[1..] {
        let d = compare_trees(&s.bricks[0], b, &[".cairn"]);
        assert!(
            d.is_empty(),
            "{} vs {}: {d:#?}",
            s.bricks[0].display(),
            b.display()
        );
    }
}

fn mount(s: &Setup) -> MountProc {
    mount_from_server(
        &format!("{}:/h", s.nodes[0].host),
        &s.tmp.path().join(format!("mnt-{}", std::process::id())),
        &[],
    )
    .unwrap()
}

#[test]
fn a_brick_killed_during_an_ingest_of_2000_files_is_healed_to_identical_trees() {
    let s = setup(11, &[("network.ping-timeout", "3s")]);
    let m = mount(&s);
    let root = m.path.clone();
    let writer = std::thread::spawn(move || {
        let mut errors = Vec::new();
        for series in 0..20 {
            let dir = root.join(format!(
                "2024/05/17/study-{}/series-{series:02}",
                series / 5
            ));
            if let Err(e) = fs::create_dir_all(&dir) {
                errors.push(format!("{}: {e}", dir.display()));
                continue;
            }
            for i in 0..100 {
                let p = dir.join(format!("IM{i:04}.dcm"));
                if let Err(e) = fs::write(
                    &p,
                    pattern(2048 + (i * 37) % 6000, (series * 100 + i) as u64),
                ) {
                    errors.push(format!("{}: {e}", p.display()));
                }
            }
        }
        errors
    });
    // A third of the way in, the third brick dies (supervision restarts it).
    assert!(eventually(Duration::from_secs(60), || fs::read_dir(
        s.bricks[0].join("2024/05/17")
    )
    .map(|d| d.count() >= 2)
    .unwrap_or(false)));
    let pid = brick_pid(&s, 2);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let errors = writer.join().unwrap();
    assert!(
        errors.is_empty(),
        "the ingest carries on without errors: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert!(
        eventually(Duration::from_secs(20), || brick_pid(&s, 2) > 0
            && brick_pid(&s, 2) != pid),
        "supervision restarted the brick"
    );
    // Every file reads back through the mount.
    for series in 0..20 {
        let dir = m.path.join(format!(
            "2024/05/17/study-{}/series-{series:02}",
            series / 5
        ));
        for i in (0..100).step_by(7) {
            assert_eq!(
                fs::read(dir.join(format!("IM{i:04}.dcm"))).unwrap(),
                pattern(2048 + (i * 37) % 6000, (series * 100 + i) as u64)
            );
        }
    }
    assert!(
        healed_to_zero(&s, Duration::from_secs(120)),
        "heal reaches zero pending; still {}\n{}",
        pending(&s),
        heal_diagnostics(&s)
    );
    assert_identical(&s);
    let stats = s.nodes[0].ok(&["volume", "heal", "h", "statistics"]);
    assert!(stats.contains("Heal passes"), "{stats}");
    drop(m);
}

#[test]
fn with_two_bricks_down_writes_fail_with_enotconn_and_reads_work() {
    let s = setup(12, &[("network.ping-timeout", "2s")]);
    let m = mount(&s);
    fs::write(m.path.join("kept.dcm"), b"before").unwrap();
    for i in [1, 2] {
        s.nodes[0].ok(&["volume", "reset-brick", "h", &s.specs[i], "start"]);
    }
    assert!(eventually(Duration::from_secs(20), || fs::write(
        m.path.join("probe"),
        b"x"
    )
    .is_err()));
    let err = fs::write(m.path.join("refused.dcm"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    assert_eq!(
        fs::read(m.path.join("kept.dcm")).unwrap(),
        b"before",
        "reads still work"
    );
    assert!(!s.bricks[0].join("refused.dcm").exists());
    for i in [1, 2] {
        reset_brick_commit(&s, i);
    }
    assert!(eventually(Duration::from_secs(20), || fs::write(
        m.path.join("after"),
        b"ok"
    )
    .is_ok()));
    assert!(healed_to_zero(&s, Duration::from_secs(60)));
    assert_identical(&s);
}

/// Makes the three copies of `name` differ and blame each other, and puts them in the index.
fn split(s: &Setup, name: &str, contents: [&[u8]; 3], mtimes: [i64; 3]) {
    for (i, b) in s.bricks.iter().enumerate() {
        let p = b.join(name);
        fs::write(&p, contents[i]).unwrap();
        let t = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: mtimes[i],
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: mtimes[i],
                tv_nsec: 0,
            },
        };
        rustix::fs::utimensat(rustix::fs::CWD, &p, &t, rustix::fs::AtFlags::empty()).unwrap();
        let blamed = format!("trusted.cairn.afr.pending.h-client-{}", (i + 1) % 3);
        let mut one = vec![0u8; 24];
        one[7] = 1;
        rustix::fs::lsetxattr(&p, blamed, &one, rustix::fs::XattrFlags::empty()).unwrap();
        let mut g = [0u8; 16];
        rustix::fs::lgetxattr(&p, "trusted.cairn.gfid", &mut g).unwrap();
        let gfid = cairn_translators::Gfid(g);
        fs::write(b.join(".cairn/indices").join(gfid.to_string()), b"").unwrap();
    }
}

#[test]
fn split_brain_is_reported_returns_eio_and_each_policy_resolves_it() {
    let s = setup(13, &[]);
    let m = mount(&s);
    for f in ["a", "b", "c", "d"] {
        fs::write(m.path.join(f), b"agreed").unwrap();
    }
    drop(m);
    split(
        &s,
        "a",
        [b"short", b"the longest of all", b"mid size"],
        [100, 200, 300],
    );
    split(&s, "b", [b"old", b"older", b"newest"], [1_000, 500, 2_000]);
    split(&s, "c", [b"zero", b"one", b"two"], [10, 10, 10]);
    split(&s, "d", [b"d-zero", b"d-one", b"d-two"], [10, 10, 10]);
    assert!(
        eventually(Duration::from_secs(30), || {
            let _ = s.nodes[0].cli(&["volume", "heal", "h"]);
            s.nodes[0]
                .ok(&["volume", "heal", "h", "info", "split-brain"])
                .matches("Is in split-brain")
                .count()
                + s.nodes[0]
                    .ok(&["volume", "heal", "h", "info"])
                    .matches("Is in split-brain")
                    .count()
                >= 4
        }),
        "heal info reports the split-brain: {}",
        s.nodes[0].ok(&["volume", "heal", "h", "info"])
    );
    let m = mount(&s);
    let err = fs::read(m.path.join("a")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    s.nodes[0].ok(&["volume", "heal", "h", "split-brain", "bigger-file", "/a"]);
    s.nodes[0].ok(&["volume", "heal", "h", "split-brain", "latest-mtime", "/b"]);
    s.nodes[0].ok(&[
        "volume",
        "heal",
        "h",
        "split-brain",
        "source-brick",
        &s.specs[1],
        "/c",
    ]);
    // Without a path: every split-brain entry, with the copy of a brick on another node.
    let out = s.nodes[0].ok(&[
        "volume",
        "heal",
        "h",
        "split-brain",
        "source-brick",
        &s.specs[2],
    ]);
    assert!(out.contains("healed"), "{out}");
    for (f, want) in [
        ("a", &b"the longest of all"[..]),
        ("b", b"newest"),
        ("c", b"one"),
        ("d", b"d-two"),
    ] {
        for b in &s.bricks {
            assert_eq!(fs::read(b.join(f)).unwrap(), want, "{f} on {}", b.display());
        }
    }
    drop(m);
    let m = mount(&s);
    assert_eq!(fs::read(m.path.join("a")).unwrap(), b"the longest of all");
    assert!(healed_to_zero(&s, Duration::from_secs(30)));
}

#[test]
fn a_wiped_brick_is_rebuilt_completely() {
    let s = setup(14, &[]);
    let m = mount(&s);
    let src = s.tmp.path().join("src");
    sh(
        &workspace_root(),
        &format!(
            "mkdir -p '{}' && tar -cf - --exclude=target translators/core/src volfiles | tar -C '{}' -xf -",
            src.display(),
            src.display()
        ),
    );
    run(std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(&m.path));
    std::os::unix::fs::symlink("translators/core/src/lib.rs", m.path.join("link")).unwrap();
    fs::hard_link(m.path.join("volfiles/Cargo.toml"), m.path.join("hard.toml")).unwrap();
    // The disk of the second brick is replaced: stop it, wipe it, bring it back.
    s.nodes[0].ok(&["volume", "reset-brick", "h", &s.specs[1], "start"]);
    assert!(eventually(Duration::from_secs(20), || brick_pid(&s, 1) == 0));
    fs::remove_dir_all(&s.bricks[1]).unwrap();
    fs::create_dir(&s.bricks[1]).unwrap();
    reset_brick_commit(&s, 1);
    assert!(
        eventually(Duration::from_secs(120), || compare_trees(
            &s.bricks[0],
            &s.bricks[1],
            &[".cairn"]
        )
        .is_empty()),
        "the wiped brick is rebuilt: {:#?}",
        compare_trees(&s.bricks[0], &s.bricks[1], &[".cairn"])
            .into_iter()
            .take(10)
            .collect::<Vec<_>>()
    );
    let a = fs::metadata(s.bricks[1].join("hard.toml")).unwrap();
    let b = fs::metadata(s.bricks[1].join("volfiles/Cargo.toml")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&a),
        std::os::unix::fs::MetadataExt::ino(&b),
        "hard links rebuilt as hard links"
    );
    assert_identical(&s);
    drop(m);
}

#[test]
fn a_brick_stopped_with_sigstop_does_not_hang_clients() {
    let s = setup(15, &[("network.ping-timeout", "2s")]);
    let m = mount(&s);
    fs::write(m.path.join("before"), b"x").unwrap();
    let pid = brick_pid(&s, 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let started = Instant::now();
    fs::write(m.path.join("during"), b"written while a brick hangs").unwrap();
    let took = started.elapsed();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    assert!(took < Duration::from_secs(20), "the write waited {took:?}");
    assert_eq!(
        fs::read(m.path.join("during")).unwrap(),
        b"written while a brick hangs"
    );
    assert!(healed_to_zero(&s, Duration::from_secs(60)));
    assert_identical(&s);
    let _ = Path::new("");
}

/// What a failed heal wait leaves for the reader: the heal info, the
/// changelog xattrs of every indexed entry on every brick, and the log.
fn heal_diagnostics(s: &Setup) -> String {
    let mut out = s.nodes[0].ok(&["volume", "heal", "h", "info"]);
    for b in &s.bricks {
        let Ok(entries) = fs::read_dir(b.join(".cairn/indices")) else {
            continue;
        };
        for e in entries.flatten() {
            let g = e.file_name().to_string_lossy().into_owned();
            let Some(gfid) = cairn_translators::Gfid::parse(&g) else {
                continue;
            };
            let h = cairn_bricks::layout::file_handle(b, gfid);
            let target = if h.exists() {
                h
            } else {
                cairn_bricks::layout::dir_handle(b, gfid)
            };
            let attrs = std::process::Command::new("getfattr")
                .args(["-d", "-m", "trusted.cairn.afr", "-e", "hex"])
                .arg(&target)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            out.push_str(&format!("{} {g}: {attrs}\n", b.display()));
        }
    }
    out.push_str(&s.nodes[0].log_text());
    out
}

/// Leaves on brick `i` a data dirty mark on `name` and its index entry, as a write whose
/// clear never reached that brick does. Returns the copy and the index entry.
fn leave_dirty_mark(s: &Setup, i: usize, name: &str) -> (PathBuf, PathBuf) {
    let copy = s.bricks[i].join(name);
    let mut one = vec![0u8; 24];
    one[7] = 1;
    rustix::fs::lsetxattr(
        &copy,
        "trusted.cairn.afr.dirty",
        &one,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let mut g = [0u8; 16];
    rustix::fs::lgetxattr(&copy, "trusted.cairn.gfid", &mut g).unwrap();
    let entry = s.bricks[i]
        .join(".cairn/indices")
        .join(cairn_translators::Gfid(g).to_string());
    fs::write(&entry, b"").unwrap();
    (copy, entry)
}

/// The dirty counters (data, metadata, entry) of a copy.
fn dirty_of(copy: &Path) -> [i64; 3] {
    let mut raw = [0u8; 24];
    match rustix::fs::lgetxattr(copy, "trusted.cairn.afr.dirty", &mut raw) {
        Ok(_) => cairn_translators::features::index::read_counters(&raw),
        Err(_) => [0; 3],
    }
}

/// Heal passes node 0's worker has finished.
fn heal_runs(s: &Setup) -> u64 {
    let out = s.nodes[0].ok(&["--json", "volume", "heal", "h", "statistics"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .and_then(|a| a.iter().find(|n| n["host"] == s.nodes[0].host.as_str()))
        .and_then(|n| n["runs"].as_u64())
        .unwrap_or(0)
}

#[test]
fn marks_a_brick_kept_from_before_its_restart_are_settled_at_once_and_fresh_ones_are_left() {
    let s = setup(16, &[]);
    let m = mount(&s);
    fs::write(m.path.join("orphan.dcm"), pattern(40_000, 1)).unwrap();
    fs::write(m.path.join("in-flight.dcm"), pattern(40_000, 2)).unwrap();
    drop(m);
    // A mark whose clear never came; then the brick dies (supervision restarts it).
    let orphan = leave_dirty_mark(&s, 0, "orphan.dcm");
    let pid = brick_pid(&s, 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || brick_pid(&s, 0) > 0
            && brick_pid(&s, 0) != pid),
        "supervision restarted the brick"
    );
    // A mark made on the brick's new process: a change in flight, for all heal knows.
    let fresh = leave_dirty_mark(&s, 0, "in-flight.dcm");
    let runs = heal_runs(&s);
    // Both marks are far younger than a minute (STALE_DIRTY), which is how long heal leaves
    // a mark to its owner; the orphan's owner is gone with the old process.
    assert!(
        eventually(Duration::from_secs(30), || {
            let _ = s.nodes[0].cli(&["volume", "heal", "h"]);
            !orphan.1.exists() && heal_runs(&s) >= runs + 2
        }),
        "the orphaned mark is settled by the next passes\n{}",
        heal_diagnostics(&s)
    );
    assert_eq!(dirty_of(&orphan.0), [0, 0, 0]);
    assert!(
        fresh.1.exists(),
        "a mark made on the current process stays listed"
    );
    assert_eq!(
        dirty_of(&fresh.0),
        [1, 0, 0],
        "and is left to its owner to clear"
    );
    assert_eq!(fs::read(&orphan.0).unwrap(), pattern(40_000, 1));
}

/// A brick killed inside a create, after the new file got its gfid but before its handle,
/// keeps a named copy that nothing can reach by gfid. Heal finds it through its directory
/// and makes it whole.
#[test]
fn a_copy_left_without_its_handle_by_a_killed_create_is_healed() {
    let s = setup(17, &[("network.ping-timeout", "2s")]);
    let m = mount(&s);
    let series = m.path.join("2024/05/17/study-1/series-01");
    fs::create_dir_all(&series).unwrap();
    fs::write(series.join("IM0000.dcm"), pattern(57_000, 0)).unwrap();
    s.nodes[0].ok(&["volume", "reset-brick", "h", &s.specs[2], "start"]);
    assert!(eventually(Duration::from_secs(20), || brick_pid(&s, 2) == 0));
    // Written while the brick is away: its copies blame it, and so does the directory.
    fs::write(series.join("IM0001.dcm"), pattern(57_000, 1)).unwrap();
    let rel = "2024/05/17/study-1/series-01/IM0001.dcm";
    let mut gfid = [0u8; 16];
    let n =
        rustix::fs::getxattr(s.bricks[0].join(rel), "trusted.cairn.gfid", &mut gfid[..]).unwrap();
    assert_eq!(n, 16);
    // What the killed create left on the stopped brick: the name, part of the contents, the
    // gfid, and no handle.
    let left = s.bricks[2].join(rel);
    fs::write(&left, &pattern(57_000, 1)[..4096]).unwrap();
    rustix::fs::setxattr(
        &left,
        "trusted.cairn.gfid",
        &gfid,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let g = cairn_translators::Gfid(gfid);
    let handle = cairn_bricks::layout::file_handle(&s.bricks[2], g);
    assert!(!handle.exists());
    reset_brick_commit(&s, 2);
    assert!(
        healed_to_zero(&s, Duration::from_secs(60)),
        "heal reaches zero pending; still {}\n{}",
        pending(&s),
        heal_diagnostics(&s)
    );
    assert_identical(&s);
    assert_eq!(fs::read(&left).unwrap(), pattern(57_000, 1));
    assert_eq!(
        fs::metadata(&handle).map(|h| h.ino()).ok(),
        fs::metadata(&left).map(|l| l.ino()).ok(),
        "the copy is reachable by gfid again"
    );
    drop(m);
}

/// `volume heal VOL` runs a pass now, even while a brick is down (when the worker's own
/// schedule waits for the brick to return).
#[test]
fn volume_heal_runs_a_pass_at_once_even_with_a_brick_down() {
    let s = setup(18, &[("network.ping-timeout", "2s")]);
    let m = mount(&s);
    s.nodes[0].ok(&["volume", "reset-brick", "h", &s.specs[2], "start"]);
    assert!(eventually(Duration::from_secs(20), || brick_pid(&s, 2) == 0));
    fs::write(m.path.join("while-away.dcm"), pattern(10_000, 3)).unwrap();
    assert!(
        pending(&s) > 0,
        "the write left entries for the missing brick"
    );
    // The worker's first pass (at start) is done, and whatever passes the brick's departure
    // started are over once the count holds still.
    assert!(eventually(Duration::from_secs(30), || heal_runs(&s) >= 1));
    let mut runs = heal_runs(&s);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_secs(3));
        let now = heal_runs(&s);
        if now == runs {
            break;
        }
        runs = now;
    }
    let (code, out, err) = s.nodes[0].cli(&["volume", "heal", "h"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        eventually(Duration::from_secs(10), || heal_runs(&s) > runs),
        "a pass ran on request (runs still {runs})"
    );
    assert!(pending(&s) > 0, "entries for the missing brick stay");
    drop(m);
}
