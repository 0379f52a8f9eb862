//! The fault suite: a PACS ingest and series-read workload on a replica-3 volume whose three
//! nodes live in their own network namespaces, while faults are injected one after another:
//! a brick killed (-9), a brick hung with SIGSTOP past the ping timeout, a node's cairnd
//! killed (-9), a node cut off the network, a whole node lost (cairnd and bricks, -9), a
//! brick directory turned read-only, a brick's disk full, and a rolling restart of every
//! node.
//!
//! After the faults: heal reaches zero pending within a bound; every write acknowledged to
//! the workload (close returned 0) reads back with identical bytes through a fresh mount
//! and is identical on every brick; `find` lists each file once; no split-brain; the
//! workload's own mount still works (no remount); every failed operation failed with an
//! errno, none hung. The figures go to `target/fault-report.md` (see docs/reliability.md).
//!
//! Short form by default (one round of faults, about two minutes). Longer soak:
//! `CAIRN_FAULT_ROUNDS=10 cargo test -p cairn-tests --test faults -- --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_tests::*;

const VOL: &str = "faulty";
/// Longest a single operation may take before it counts as hung (the ping timeout is 3 s).
const HANG: Duration = Duration::from_secs(30);

struct Cluster {
    nodes: Vec<DaemonProc>,
    bricks: Vec<PathBuf>,
    net: Netns,
    tmp: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.stop();
        }
        // On failure, the daemons' and clients' logs go to target/fault-logs for a look.
        if std::thread::panicking() {
            let keep = workspace_root().join("target/fault-logs");
            let _ = fs::remove_dir_all(&keep);
            let _ = fs::create_dir_all(&keep);
            let _ = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "cd '{}' && find . -name '*.log' -not -path './brick*' -exec cp --parents {{}} '{}' \\;",
                    self.tmp.path().display(),
                    keep.display()
                ))
                .status();
        }
        // Also unmounts the small filesystem of the third brick.
        kill_everything_under(self.tmp.path());
    }
}

fn run_sh(cmd: &str) {
    let st = Command::new("bash").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

impl Cluster {
    fn start(rounds: usize) -> Cluster {
        require_root();
        let net = Netns::new("f30", "10.77.30", 3);
        let tmp = tempfile::Builder::new()
            .prefix("cairn-faults-")
            .tempdir()
            .unwrap();
        let bricks: Vec<PathBuf> = (0..3)
            .map(|i| tmp.path().join(format!("brick{i}")))
            .collect();
        // The third brick on a filesystem of its own, so it can be filled up. Its size leaves
        // room for every image a run ingests (under 1 GiB a round), so that only the disk-full
        // fault fills it: a brick left full would hold heal back for the rest of the run.
        fs::create_dir_all(&bricks[2]).unwrap();
        run_sh(&format!(
            "mount -t tmpfs -o size={}g cairn-fault-brick '{}'",
            2 + rounds,
            bricks[2].display()
        ));
        let nodes: Vec<DaemonProc> = (0..3)
            .map(|i| {
                DaemonProc::start(
                    &tmp.path().join(format!("n{i}")),
                    &net.addrs[i],
                    Some(&net.names[i]),
                )
            })
            .collect();
        pool_and_replica3(&nodes, VOL, &bricks);
        nodes[0].ok(&["volume", "set", VOL, "network.ping-timeout", "3"]);
        nodes[0].ok(&["volume", "set", VOL, "cluster.heal-interval", "5"]);
        nodes[0].ok(&["volume", "start", VOL]);
        Cluster {
            nodes,
            bricks,
            net,
            tmp,
        }
    }

    fn mount(&self, tag: &str) -> (MountProc, PathBuf) {
        let path = self.tmp.path().join(format!("mnt-{tag}"));
        let m = mount_from_server(&format!("{}:/{VOL}", self.nodes[0].host), &path, &[]).unwrap();
        (m, path)
    }

    fn brick_pid(&self, i: usize) -> i32 {
        let out = self.nodes[0].ok(&["--json", "volume", "status", VOL]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["bricks"][i]["pid"].as_i64().unwrap_or(0) as i32
    }

    fn bricks_up(&self) -> bool {
        (0..3).all(|i| self.brick_pid(i) > 0)
    }

    /// Heal entries pending and in split-brain, over every brick (None: a node did not
    /// answer).
    fn heal_state(&self) -> Option<(usize, usize)> {
        self.heal_entries()
            .map(|e| (e.len(), e.iter().filter(|(_, split)| *split).count()))
    }

    /// Waits, with writes going on, until no heal entry outlives the writes in flight: the
    /// index lists a file while a write to it is under way, so under load the pending list is
    /// rarely empty, but nothing stays in it across three samples two seconds apart.
    fn heal_settled_under_load(&self, limit: Duration) -> bool {
        let mut seen: Vec<BTreeSet<String>> = Vec::new();
        let mut stuck: Vec<String> = Vec::new();
        let ok = eventually(limit, || {
            let _ = self.nodes[0].cli(&["volume", "heal", VOL]);
            std::thread::sleep(Duration::from_secs(2));
            let Some(now) = self.heal_entries() else {
                seen.clear();
                return false;
            };
            if now.iter().any(|(_, split)| *split) {
                return false;
            }
            seen.push(now.into_iter().map(|(g, _)| g).collect());
            if seen.len() > 3 {
                seen.remove(0);
            }
            if seen.len() < 3 {
                return false;
            }
            stuck = seen[0]
                .iter()
                .filter(|g| seen[1].contains(*g) && seen[2].contains(*g))
                .cloned()
                .collect();
            stuck.is_empty()
        });
        if !ok {
            eprintln!("pending through the last three looks: {stuck:?}");
            eprintln!("still pending: {:?}", self.heal_entries());
            // Whether each node's heal worker is running a pass, and since when.
            let (_, stats, err) = self.nodes[0].cli(&["volume", "heal", VOL, "statistics"]);
            eprintln!("heal statistics:\n{stats}{err}");
        }
        ok
    }

    /// Every brick's heal entries: (gfid and path, in split-brain).
    fn heal_entries(&self) -> Option<Vec<(String, bool)>> {
        let (code, out, _) = self.nodes[0].cli(&["--json", "volume", "heal", VOL, "info"]);
        if code != 0 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let bricks = v.as_array()?;
        if bricks.iter().any(|b| b["connected"] != true) {
            return None;
        }
        let entries = bricks.iter().enumerate().flat_map(|(i, b)| {
            b["entries"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |e| (i, e))
        });
        Some(
            entries
                .map(|(i, e)| {
                    (
                        format!("brick {i}: {}", e["path"]),
                        e["split_brain"] == true,
                    )
                })
                .collect(),
        )
    }

    /// Waits until nothing is pending; how long it took.
    fn heal_to_zero(&self, limit: Duration) -> Option<Duration> {
        let t = Instant::now();
        let ok = eventually(limit, || {
            let _ = self.nodes[0].cli(&["volume", "heal", VOL]);
            self.heal_state() == Some((0, 0))
        });
        if !ok {
            eprintln!("still pending: {:?}", self.heal_entries());
        }
        ok.then(|| t.elapsed())
    }

    fn signal_brick(&self, i: usize, sig: nix::sys::signal::Signal) -> i32 {
        let pid = self.brick_pid(i);
        assert!(pid > 0, "brick {i} runs");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
        pid
    }
}

/// One acknowledged write: the file, and the seed and length of its contents.
#[derive(Clone)]
struct Ack {
    rel: String,
    seed: u64,
    len: usize,
}

#[derive(Default)]
struct Tally {
    acked: Vec<Ack>,
    /// Failed operations by errno (name).
    errors: BTreeMap<String, u64>,
    reads_ok: u64,
    /// Reads that returned bytes other than those acknowledged.
    corrupt_reads: Vec<String>,
    /// Operations that returned no errno at all.
    odd: Vec<String>,
}

struct Workload {
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    /// Per worker: when its current operation started (ms since `t0`, 0: idle).
    busy: Arc<Vec<AtomicU64>>,
    longest_ms: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What each brick holds of `rel` (beside the mount `mnt`), for the report of a wrong read:
/// size, whether it is right or how many zero bytes it has, and its cairn xattrs.
fn copies_on_bricks(mnt: &Path, rel: &str, want: &[u8]) -> String {
    let Some(top) = mnt.parent() else {
        return String::new();
    };
    (0..3)
        .map(|i| {
            let p = top.join(format!("brick{i}")).join(rel);
            let data = match fs::read(&p) {
                Ok(d) if d == want => "right".to_string(),
                Ok(d) => format!(
                    "{} bytes, {} zero",
                    d.len(),
                    d.iter().filter(|&&x| x == 0).count()
                ),
                Err(e) => format!("{e}"),
            };
            let mut names = vec![0u8; 4096];
            let n = rustix::fs::llistxattr(&p, &mut names).unwrap_or(0);
            let xattrs: Vec<String> = names[..n]
                .split(|&b| b == 0)
                .filter_map(|k| std::str::from_utf8(k).ok())
                .filter(|k| k.starts_with("trusted.cairn."))
                .map(|k| {
                    let mut v = vec![0u8; 256];
                    let m = rustix::fs::lgetxattr(&p, k, &mut v).unwrap_or(0);
                    let hex: String = v[..m].iter().map(|b| format!("{b:02x}")).collect();
                    format!("{k}={hex}")
                })
                .collect();
            format!("brick {i}: {data} {xattrs:?}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).to_string(),
        None => format!("no errno: {e}"),
    }
}

/// Writes a file and closes it, reporting the close's own error (an acknowledgement is a
/// successful close).
fn write_closed(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    nix::unistd::close(f.into_raw_fd()).map_err(|e| std::io::Error::from_raw_os_error(e as i32))
}

impl Workload {
    /// `writers` ingest series of MR- and small images; `readers` read back acknowledged ones.
    fn start(mnt: &Path, writers: usize, readers: usize) -> Workload {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let busy: Arc<Vec<AtomicU64>> = Arc::new(
            (0..writers + readers + 1)
                .map(|_| AtomicU64::new(0))
                .collect(),
        );
        let longest_ms = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let ms = move || t0.elapsed().as_millis() as u64 + 1;
        let mut threads = Vec::new();
        for w in 0..writers {
            let (tally, stop, busy, mnt) = (
                Arc::clone(&tally),
                Arc::clone(&stop),
                Arc::clone(&busy),
                mnt.to_path_buf(),
            );
            threads.push(std::thread::spawn(move || {
                let mut k = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let series = format!("study-{w}/series-{}", k / 50);
                    busy[w].store(ms(), Ordering::SeqCst);
                    let dir = fs::create_dir_all(mnt.join(&series));
                    let r = dir.and_then(|()| {
                        let rel = format!("{series}/img-{k}.dcm");
                        let seed = (w as u64) << 32 | k;
                        let len = if k.is_multiple_of(3) {
                            57 * 1024
                        } else {
                            9 * 1024 + k as usize % 4000
                        };
                        write_closed(&mnt.join(&rel), &pattern(len, seed)).map(|()| Ack {
                            rel,
                            seed,
                            len,
                        })
                    });
                    busy[w].store(0, Ordering::SeqCst);
                    let mut t = tally.lock().unwrap();
                    match r {
                        Ok(a) => t.acked.push(a),
                        Err(e) => {
                            if e.raw_os_error().is_none() {
                                t.odd.push(e.to_string());
                            }
                            *t.errors
                                .entry(format!("write {}", errno_name(&e)))
                                .or_default() += 1;
                            drop(t);
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                    k += 1;
                }
            }));
        }
        for r in 0..readers {
            let slot = writers + r;
            let (tally, stop, busy, mnt) = (
                Arc::clone(&tally),
                Arc::clone(&stop),
                Arc::clone(&busy),
                mnt.to_path_buf(),
            );
            threads.push(std::thread::spawn(move || {
                let mut i = r as u64;
                while !stop.load(Ordering::SeqCst) {
                    let pick = {
                        let t = tally.lock().unwrap();
                        if t.acked.is_empty() {
                            None
                        } else {
                            i = i
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                            Some(t.acked[(i >> 33) as usize % t.acked.len()].clone())
                        }
                    };
                    let Some(a) = pick else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    busy[slot].store(ms(), Ordering::SeqCst);
                    let got = fs::read(mnt.join(&a.rel));
                    busy[slot].store(0, Ordering::SeqCst);
                    let want = pattern(a.len, a.seed);
                    // What a wrong read looked like, and whether reading again fixes it.
                    let describe = |b: &[u8]| {
                        let first = b.iter().zip(&want).position(|(x, y)| x != y);
                        let zeros = b.iter().filter(|&&x| x == 0).count();
                        let again = fs::read(mnt.join(&a.rel)).map(|r| r == want);
                        format!(
                            "{}: {} bytes, first wrong byte at {first:?}, {zeros} zero bytes, read again right: {again:?}; copies: {}",
                            a.rel,
                            b.len(),
                            copies_on_bricks(&mnt, &a.rel, &want)
                        )
                    };
                    let got = got.map(|b| if b == want { Ok(()) } else { Err(describe(&b)) });
                    let mut t = tally.lock().unwrap();
                    match got {
                        Ok(Ok(())) => t.reads_ok += 1,
                        Ok(Err(what)) => t.corrupt_reads.push(what),
                        Err(e) => {
                            *t.errors
                                .entry(format!("read {}", errno_name(&e)))
                                .or_default() += 1;
                            drop(t);
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            }));
        }
        // The watchdog: the longest an operation has been in flight.
        {
            let (stop, busy, longest) = (
                Arc::clone(&stop),
                Arc::clone(&busy),
                Arc::clone(&longest_ms),
            );
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let now = ms();
                    for b in busy.iter() {
                        let since = b.load(Ordering::SeqCst);
                        if since > 0 {
                            longest.fetch_max(now.saturating_sub(since), Ordering::SeqCst);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }));
        }
        Workload {
            tally,
            stop,
            busy,
            longest_ms,
            threads,
        }
    }

    fn acked(&self) -> usize {
        self.tally.lock().unwrap().acked.len()
    }

    fn finish(self) -> (Tally, Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + HANG * 2;
        for t in self.threads {
            // A hung operation would keep its thread; the watchdog figure tells.
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        let _ = &self.busy;
        let tally = Arc::try_unwrap(self.tally)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_else(|a| std::mem::take(&mut *a.lock().unwrap()));
        (
            tally,
            Duration::from_millis(self.longest_ms.load(Ordering::SeqCst)),
        )
    }
}

/// One injected fault: what it did, and the workload's acknowledged writes meanwhile.
struct Row {
    fault: &'static str,
    secs: f64,
    acked_during: usize,
}

/// Lets the workload run `d` (with the fault in place).
fn hold(d: Duration) {
    std::thread::sleep(d);
}

/// The faults, by the key `CAIRN_FAULTS` selects them with.
const FAULTS: [(&str, &str); 8] = [
    ("brick-kill", "brick killed (-9)"),
    ("brick-hang", "brick hung (SIGSTOP) past the ping timeout"),
    ("cairnd-kill", "cairnd killed (-9)"),
    ("node-cut", "node cut off the network, then reconnected"),
    ("node-lost", "whole node lost (cairnd and bricks, -9)"),
    ("read-only", "brick directory read-only"),
    ("disk-full", "brick disk full"),
    ("rolling-restart", "rolling restart of every node"),
];

/// Runs the faults once, in order; each is undone before the next.
fn inject_round(c: &mut Cluster, w: &Workload, rows: &mut Vec<Row>) {
    use nix::sys::signal::Signal;
    // `CAIRN_FAULTS=disk-full,read-only` runs only those.
    let only = std::env::var("CAIRN_FAULTS").ok();
    let mut step = |name: &'static str, c: &mut Cluster, f: &mut dyn FnMut(&mut Cluster)| {
        let key = FAULTS
            .iter()
            .find(|(_, n)| *n == name)
            .map_or("", |(k, _)| *k);
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|k| k == key))
        {
            return;
        }
        let (t, before) = (Instant::now(), w.acked());
        f(c);
        // Each fault ends with every brick up and connected again.
        assert!(
            eventually(Duration::from_secs(60), || c.bricks_up()),
            "after {name}: every brick runs again"
        );
        rows.push(Row {
            fault: name,
            secs: t.elapsed().as_secs_f64(),
            acked_during: w.acked() - before,
        });
        eprintln!("fault done: {name}");
    };
    step("brick killed (-9)", c, &mut |c| {
        c.signal_brick(2, Signal::SIGKILL);
        // The supervisor restarts it (after 1 s).
        hold(Duration::from_secs(5));
    });
    step("brick hung (SIGSTOP) past the ping timeout", c, &mut |c| {
        let pid = c.signal_brick(1, Signal::SIGSTOP);
        hold(Duration::from_secs(7));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGCONT).unwrap();
        hold(Duration::from_secs(2));
    });
    step("cairnd killed (-9)", c, &mut |c| {
        c.nodes[2].kill();
        hold(Duration::from_secs(4));
        c.nodes[2].restart();
    });
    step("node cut off the network, then reconnected", c, &mut |c| {
        c.net.set_link(2, false);
        hold(Duration::from_secs(8));
        c.net.set_link(2, true);
        hold(Duration::from_secs(3));
    });
    step("whole node lost (cairnd and bricks, -9)", c, &mut |c| {
        let pid = c.brick_pid(1);
        c.nodes[1].kill();
        if pid > 0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        hold(Duration::from_secs(6));
        c.nodes[1].restart();
    });
    step("brick directory read-only", c, &mut |c| {
        // In the brick's own mount namespace (its node's `ip netns exec` made one). The
        // remount is refused while a write is open on the new mount, so it is retried.
        let (b, pid) = (c.bricks[0].display().to_string(), c.brick_pid(0));
        run_sh(&format!("nsenter -t {pid} -m -- mount --bind '{b}' '{b}'"));
        let ro = (0..100).any(|_| {
            let st = Command::new("nsenter")
                .args([
                    "-t",
                    &pid.to_string(),
                    "-m",
                    "--",
                    "mount",
                    "-o",
                    "remount,bind,ro",
                    &b,
                ])
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            st.success() || {
                std::thread::sleep(Duration::from_millis(50));
                false
            }
        });
        assert!(ro, "brick 0 turned read-only");
        hold(Duration::from_secs(6));
        run_sh(&format!("nsenter -t {pid} -m -- umount -l '{b}'"));
        hold(Duration::from_secs(2));
    });
    step("brick disk full", c, &mut |c| {
        // The brick's filesystem is filled up to its last blocks by files in its .cairn
        // (the workload keeps writing meanwhile, so fill in steps until little is left).
        let mut fills = Vec::new();
        for k in 0..64 {
            let free = nix::sys::statvfs::statvfs(&c.bricks[2]).unwrap();
            let room = free.blocks_available() as u64 * free.fragment_size() as u64;
            if room < 256 * 1024 {
                break;
            }
            let fill = c.bricks[2].join(format!(".cairn/fill-{k}"));
            let st = Command::new("fallocate")
                .args(["-l", &(room / 2 + room / 4).to_string()])
                .arg(&fill)
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            if st.success() {
                fills.push(fill);
            } else {
                let _ = fs::remove_file(&fill);
            }
        }
        let free = nix::sys::statvfs::statvfs(&c.bricks[2]).unwrap();
        assert!(
            free.blocks_available() as u64 * free.fragment_size() as u64 <= 256 * 1024,
            "brick 2 is full"
        );
        hold(Duration::from_secs(6));
        for f in fills {
            fs::remove_file(&f).unwrap();
        }
        hold(Duration::from_secs(2));
    });
    step("rolling restart of every node", c, &mut |c| {
        for i in 0..3 {
            let pid = c.brick_pid(i);
            c.nodes[i].stop();
            if pid > 0 {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
            }
            hold(Duration::from_secs(2));
            c.nodes[i].restart();
            assert!(
                eventually(Duration::from_secs(60), || c.bricks_up()),
                "node {i} back"
            );
            // The next node goes only once this one is whole again (as an upgrade would).
            assert!(
                c.heal_settled_under_load(Duration::from_secs(180)),
                "heal settles after restarting node {i}"
            );
        }
    });
}

#[test]
fn faults_under_load_lose_and_corrupt_nothing() {
    let rounds: usize = std::env::var("CAIRN_FAULT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let mut c = Cluster::start(rounds);
    let (mut m, mnt) = c.mount("work");
    let w = Workload::start(&mnt, 3, 2);
    hold(Duration::from_secs(3));
    let mut rows = Vec::new();
    for round in 0..rounds {
        eprintln!("fault round {}", round + 1);
        inject_round(&mut c, &w, &mut rows);
    }
    hold(Duration::from_secs(2));
    let (tally, longest) = w.finish();

    // Heal reaches zero within a bound once the faults stop.
    let heal = c.heal_to_zero(Duration::from_secs(180));
    // The workload's own mount still works.
    write_closed(&mnt.join("after-the-faults"), b"still here").unwrap();
    assert_eq!(
        fs::read(mnt.join("after-the-faults")).unwrap(),
        b"still here"
    );
    m.terminate();

    // Every acknowledged write reads back through a fresh mount, and find lists each once.
    let (mut m2, mnt2) = c.mount("check");
    let mut lost = Vec::new();
    let mut corrupt = Vec::new();
    for a in &tally.acked {
        match fs::read(mnt2.join(&a.rel)) {
            Ok(b) if b == pattern(a.len, a.seed) => {}
            Ok(b) => corrupt.push(format!("{}: {} bytes", a.rel, b.len())),
            Err(e) => lost.push(format!("{}: {e}", a.rel)),
        }
    }
    let listed = sh(&mnt2, "find . -type f | sort");
    let names: Vec<&str> = listed.lines().collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    let acked_names: BTreeSet<String> =
        tally.acked.iter().map(|a| format!("./{}", a.rel)).collect();
    let missing_from_listing: Vec<&String> = acked_names
        .iter()
        .filter(|n| !unique.contains(n.as_str()))
        .collect();
    m2.terminate();

    // The report (docs/reliability.md explains it).
    let mut report =
        String::from("| fault | seconds | writes acknowledged meanwhile |\n| --- | --- | --- |\n");
    for r in &rows {
        report.push_str(&format!(
            "| {} | {:.1} | {} |\n",
            r.fault, r.secs, r.acked_during
        ));
    }
    report.push_str(&format!(
        "\nrounds: {rounds}; writes acknowledged: {}; reads verified: {}; lost: {}; corrupted: {} (+{} corrupt reads during the run); \
         failed operations: {:?}; longest operation: {:.1} s; time to heal after the faults: {}\n",
        tally.acked.len(),
        tally.reads_ok,
        lost.len(),
        corrupt.len(),
        tally.corrupt_reads.len(),
        tally.errors,
        longest.as_secs_f64(),
        heal.map_or("did not reach zero".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
    ));
    let used = {
        let s = nix::sys::statvfs::statvfs(&c.bricks[2]).unwrap();
        (s.blocks() - s.blocks_free()) as u64 * s.fragment_size() as u64
    };
    report.push_str(&format!(
        "brick 2 (its own filesystem) used at the end: {} MiB\n",
        used >> 20
    ));
    eprintln!("{report}");
    let target = workspace_root().join("target");
    let _ = fs::create_dir_all(&target);
    let _ = fs::write(target.join("fault-report.md"), &report);
    // The workload's client log, for the errors it counted.
    let _ = fs::copy(
        mnt.with_extension("mount.log"),
        target.join("fault-client.log"),
    );

    assert!(
        heal.is_some(),
        "heal reaches zero pending, no split-brain: {report}"
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(
        corrupt.is_empty(),
        "acknowledged writes corrupted: {corrupt:?}"
    );
    assert!(
        tally.corrupt_reads.is_empty(),
        "wrong bytes read: {:?}",
        tally.corrupt_reads
    );
    assert!(
        tally.odd.is_empty(),
        "failures without an errno: {:?}",
        tally.odd
    );
    assert!(longest < HANG, "an operation hung for {longest:?}");
    assert_eq!(names.len(), unique.len(), "find lists a file twice");
    assert!(
        missing_from_listing.is_empty(),
        "acknowledged but not listed: {missing_from_listing:?}"
    );
    assert!(tally.acked.len() > 100, "the workload did work: {report}");
    // Every brick holds the same tree.
    for b in &c.bricks[1..] {
        let d = compare_trees(&c.bricks[0], b, &[".cairn"]);
        assert!(
            d.is_empty(),
            "{} vs {}: {d:#?}",
            c.bricks[0].display(),
            b.display()
        );
    }
}
