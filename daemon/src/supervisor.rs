//! Brick processes: start, watch, restart with backoff, stop, adopt.
//!
//! Each local brick of a started volume runs as its own `cairn-brickd`, in its own process
//! group (so it outlives a restart of `cairnd`), with a pid file. At start `cairnd` adopts
//! bricks that are still running — same pid, same volfile on the command line — instead of
//! starting duplicates. A brick that exits unexpectedly is restarted after 1, 2, 4 … 30
//! seconds; the delay resets once it has run for a minute. A brick whose generated volfile
//! changed (an option was set) is restarted to pick it up.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::write_atomic;

/// A brick this node should be running.
#[derive(Clone, Debug)]
pub struct Wanted {
    /// `volume/brick-id`.
    pub key: String,
    /// The volume.
    pub volume: String,
    /// The brick id.
    pub brick_id: String,
    /// The generated brick volfile (YAML).
    pub volfile: String,
}

struct Proc {
    pid: u32,
    child: Option<Child>,
    volfile_text: String,
    started: Instant,
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    next_try: Option<Instant>,
}

/// Paths of one brick's files.
pub struct BrickFiles {
    /// Its volfile.
    pub volfile: PathBuf,
    /// Its pid file.
    pub pid: PathBuf,
    /// Its client list.
    pub clients: PathBuf,
    /// Its log.
    pub log: PathBuf,
}

/// The supervisor of this node's bricks.
pub struct Supervisor {
    brickd: PathBuf,
    state_dir: PathBuf,
    log_dir: PathBuf,
    procs: Mutex<HashMap<String, Proc>>,
    backoff: Mutex<HashMap<String, Backoff>>,
    /// One reconciliation at a time (the periodic loop and commits both run it).
    reconciling: Mutex<()>,
}

fn file_key(volume: &str, brick_id: &str) -> String {
    format!("{volume}-{brick_id}")
}

fn cmdline(pid: u32) -> Option<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
}

fn process_alive(pid: u32) -> bool {
    // A zombie is not alive.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
    }
}

impl Supervisor {
    /// A supervisor starting `brickd`, keeping volfiles and pid files under `state_dir`
    /// and logs under `log_dir`.
    pub fn new(brickd: PathBuf, state_dir: &Path, log_dir: &Path) -> Supervisor {
        Supervisor {
            brickd,
            state_dir: state_dir.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            procs: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            reconciling: Mutex::new(()),
        }
    }

    /// Where a brick's files are.
    pub fn files(&self, volume: &str, brick_id: &str) -> BrickFiles {
        let k = file_key(volume, brick_id);
        BrickFiles {
            volfile: self
                .state_dir
                .join("vols")
                .join(volume)
                .join(format!("{brick_id}.vol")),
            pid: self.state_dir.join("run").join(format!("{k}.pid")),
            clients: self.state_dir.join("run").join(format!("{k}.clients")),
            log: self.log_dir.join("bricks").join(format!("{k}.log")),
        }
    }

    /// Adopts bricks left running by a previous `cairnd`: pid files whose process still
    /// runs this brick's volfile.
    pub fn adopt(&self, known: &[(String, String, String)]) {
        for (key, volume, brick_id) in known {
            let f = self.files(volume, brick_id);
            let Some(pid) = fs::read_to_string(&f.pid)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            else {
                continue;
            };
            let ours = process_alive(pid)
                && cmdline(pid).is_some_and(|c| c.contains(&f.volfile.display().to_string()));
            if ours {
                let text = fs::read_to_string(&f.volfile).unwrap_or_default();
                tracing::info!(brick = %key, pid, "adopted a running brick");
                if let Ok(mut p) = self.procs.lock() {
                    p.insert(
                        key.clone(),
                        Proc {
                            pid,
                            child: None,
                            volfile_text: text,
                            started: Instant::now(),
                        },
                    );
                }
            } else {
                let _ = fs::remove_file(&f.pid);
            }
        }
    }

    /// The pid of a running brick.
    pub fn pid(&self, key: &str) -> Option<u32> {
        let procs = self.procs.lock().ok()?;
        procs
            .get(key)
            .filter(|p| process_alive(p.pid))
            .map(|p| p.pid)
    }

    fn is_running(p: &mut Proc) -> bool {
        match &mut p.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => process_alive(p.pid),
        }
    }

    fn spawn(&self, w: &Wanted) -> Result<Proc, String> {
        let f = self.files(&w.volume, &w.brick_id);
        for dir in [f.volfile.parent(), f.pid.parent(), f.log.parent()]
            .into_iter()
            .flatten()
        {
            fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        write_atomic(&f.volfile, w.volfile.as_bytes(), 0o600)?;
        let _ = fs::remove_file(&f.pid);
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&f.log)
            .map_err(|e| format!("{}: {e}", f.log.display()))?;
        let child = Command::new(&self.brickd)
            .arg("--volfile")
            .arg(&f.volfile)
            .arg("--log-file")
            .arg(&f.log)
            .arg("--pid-file")
            .arg(&f.pid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.brickd.display()))?;
        tracing::info!(brick = %w.key, pid = child.id(), "brick started");
        Ok(Proc {
            pid: child.id(),
            child: Some(child),
            volfile_text: w.volfile.clone(),
            started: Instant::now(),
        })
    }

    fn stop_proc(key: &str, mut p: Proc) {
        signal(p.pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let gone = match &mut p.child {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => !process_alive(p.pid),
            };
            if gone {
                break;
            }
            if Instant::now() > deadline {
                tracing::warn!(brick = %key, pid = p.pid, "brick did not stop in 10 s; killing it");
                signal(p.pid, nix::sys::signal::Signal::SIGKILL);
                if let Some(c) = &mut p.child {
                    let _ = c.wait();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(brick = %key, pid = p.pid, "brick stopped");
    }

    /// Makes the running bricks match `wanted()`: starts missing ones (after their backoff),
    /// restarts those whose volfile changed, stops the others. Blocks while stopping.
    /// `wanted` is evaluated once no other reconciliation runs, so it is never stale.
    pub fn reconcile(&self, wanted: impl FnOnce() -> Vec<Wanted>) {
        let Ok(_one_at_a_time) = self.reconciling.lock() else {
            return;
        };
        let wanted = wanted();
        let wanted = &wanted;
        let wanted_map: BTreeMap<&str, &Wanted> =
            wanted.iter().map(|w| (w.key.as_str(), w)).collect();
        let mut to_stop = Vec::new();
        let mut to_start = Vec::new();
        {
            let Ok(mut procs) = self.procs.lock() else {
                return;
            };
            let Ok(mut backoff) = self.backoff.lock() else {
                return;
            };
            let keys: Vec<String> = procs.keys().cloned().collect();
            for key in keys {
                let Some(mut p) = procs.remove(&key) else {
                    continue;
                };
                match wanted_map.get(key.as_str()) {
                    None => to_stop.push((key, p)),
                    Some(w) if !Self::is_running(&mut p) => {
                        let b = backoff.entry(key.clone()).or_default();
                        if p.started.elapsed() > Duration::from_secs(60) {
                            b.failures = 0;
                        }
                        b.failures += 1;
                        let delay = Duration::from_secs((1u64 << (b.failures - 1).min(5)).min(30));
                        b.next_try = Some(Instant::now() + delay);
                        tracing::warn!(brick = %key, pid = p.pid, ?delay, "brick exited unexpectedly; restarting it");
                        let _ = w;
                    }
                    Some(w) if w.volfile != p.volfile_text => {
                        tracing::info!(brick = %key, "brick volfile changed; restarting the brick");
                        to_stop.push((key.clone(), p));
                        to_start.push((*w).clone());
                    }
                    Some(_) => {
                        procs.insert(key, p);
                    }
                }
            }
            for w in wanted {
                if procs.contains_key(&w.key) || to_start.iter().any(|s| s.key == w.key) {
                    continue;
                }
                let b = backoff.entry(w.key.clone()).or_default();
                if b.next_try.is_none_or(|t| Instant::now() >= t) {
                    to_start.push(w.clone());
                }
            }
        }
        for (key, p) in to_stop {
            Self::stop_proc(&key, p);
        }
        for w in to_start {
            match self.spawn(&w) {
                Ok(p) => {
                    if let Ok(mut procs) = self.procs.lock() {
                        procs.insert(w.key.clone(), p);
                    }
                }
                Err(e) => {
                    tracing::error!(brick = %w.key, error = %e, "cannot start brick");
                    if let Ok(mut backoff) = self.backoff.lock() {
                        let b = backoff.entry(w.key.clone()).or_default();
                        b.failures += 1;
                        b.next_try = Some(Instant::now() + Duration::from_secs(5));
                    }
                }
            }
        }
    }
}
