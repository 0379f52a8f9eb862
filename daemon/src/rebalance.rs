//! Rebalance runs, on the node that received the command, each with a client graph of its
//! own:
//!
//! - `volume rebalance VOL fix-layout start` walks every directory breadth-first and lays
//!   it out again over the volume's current replica sets (after `add-brick`), moving as
//!   little of the hash ring as possible;
//! - `volume rebalance VOL start` does the same and then moves every file of the directory
//!   whose hashed set changed ([`Dht::migrate_file`]: online, under locks, open files
//!   followed), removes pointers no lookup uses any more, and marks the directory settled
//!   when every file is where its hash says.
//!
//! - `volume remove-brick VOL BRICK... start` drains leaving replica sets: their
//!   distribute is told they are leaving (weight 0, no new files), the same walk lays every
//!   directory out over the staying sets and moves the files, and a sweep of the leaving
//!   sets' own directory trees then moves whatever the walk could not see (a file created in
//!   a directory the walk had passed by a client still on the old graph). The drain is
//!   complete only when that sweep finds no file on the leaving sets.
//!
//! `cluster.rebal-throttle` sets how many files move at once (lazy 1, normal 2, aggressive
//! 4). A checkpoint (`STATE_DIR/rebalance/VOL.json`: the directories finished) is written
//! as the run goes; a `cairnd` that restarts during a run resumes it, skipping what is done.
//! Every step is idempotent, so running it again is always safe.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_api::{RebalanceStatus, VolumeConfig};
use cairn_translators::cluster::dht::layout::RING;
use cairn_translators::cluster::dht::{Dht, Migrated, SettleOutcome};
use cairn_translators::{Cx, FileKind, Gfid, Graph, Loc, Registry, Translator, Xdata};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Layouts only.
    FixLayout,
    /// Layouts and files.
    Migrate,
    /// Layouts and files, off the leaving sets, then a sweep of the leaving sets.
    Drain,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::FixLayout => "fix-layout",
            Kind::Migrate => "rebalance",
            Kind::Drain => "remove-brick",
        }
    }
}

/// The checkpoint of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    kind: Option<Kind>,
    /// Still to be finished (a restarted cairnd resumes it).
    running: bool,
    /// Directories (gfid) finished.
    done: BTreeSet<String>,
    /// How the last run ended (what `status` shows after a restart).
    #[serde(default)]
    last: Option<RebalanceStatus>,
}

/// One run.
struct Run {
    status: Mutex<RebalanceStatus>,
    started: Instant,
    stop: AtomicBool,
    kind: Kind,
}

/// A drain run's sweep of the leaving sets: files moved, files left there.
#[derive(Default)]
struct Swept {
    moved: u64,
    remaining: u64,
}

/// The runs of this node, by volume.
#[derive(Default)]
pub struct Rebalances {
    runs: Mutex<HashMap<String, Arc<Run>>>,
    /// Set when cairnd stops: runs end without recording an end, so the next cairnd
    /// resumes them.
    shutting_down: AtomicBool,
}

/// A status with nothing done yet.
pub fn blank(volume: &str, node: &str, kind: &str, state: &str) -> RebalanceStatus {
    RebalanceStatus {
        volume: volume.to_string(),
        node: node.to_string(),
        kind: kind.to_string(),
        state: state.to_string(),
        dirs_scanned: 0,
        dirs_changed: 0,
        failures: 0,
        moved_share: 0.0,
        files_scanned: 0,
        files_migrated: 0,
        files_skipped: 0,
        files_failed: 0,
        bytes_migrated: 0,
        estimate_secs: 0.0,
        elapsed_secs: 0.0,
        message: String::new(),
        progress: 0.0,
        bricks: Vec::new(),
        files_remaining: 0,
    }
}

fn checkpoint_path(state_dir: &Path, volume: &str) -> PathBuf {
    state_dir.join("rebalance").join(format!("{volume}.json"))
}

fn load_checkpoint(path: &Path) -> Checkpoint {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_checkpoint(path: &Path, c: &Checkpoint) {
    let Ok(bytes) = serde_json::to_vec(c) else {
        return;
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, bytes).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Files moved at once for a `cluster.rebal-throttle` value.
pub fn parallel_for(throttle: &str) -> usize {
    match throttle {
        "lazy" => 1,
        "aggressive" => 4,
        _ => 2,
    }
}

impl Rebalances {
    /// The status of `volume`'s run on this node (after a restart, how the last one
    /// ended).
    pub fn status(&self, volume: &str, node: &str, state_dir: &Path) -> RebalanceStatus {
        let run = self.runs.lock().ok().and_then(|r| r.get(volume).cloned());
        match run {
            Some(r) => {
                let mut s = r
                    .status
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or_else(|e| e.into_inner().clone());
                if s.state == "in progress" {
                    s.elapsed_secs = r.started.elapsed().as_secs_f64();
                }
                s
            }
            None => load_checkpoint(&checkpoint_path(state_dir, volume))
                .last
                .filter(|l| l.volume == volume)
                .unwrap_or_else(|| blank(volume, node, "rebalance", "not started")),
        }
    }

    /// Whether a run of `volume` is going on here.
    pub fn running(&self, volume: &str) -> bool {
        self.runs
            .lock()
            .ok()
            .and_then(|r| r.get(volume).cloned())
            .is_some_and(|r| {
                r.status
                    .lock()
                    .map(|s| s.state == "in progress")
                    .unwrap_or(false)
            })
    }

    /// Asks a running run to stop (its checkpoint is kept: `start` again resumes it).
    pub fn stop(&self, volume: &str, state_dir: &Path) -> Result<(), String> {
        let run = self.runs.lock().ok().and_then(|r| r.get(volume).cloned());
        match run {
            Some(r)
                if r.status
                    .lock()
                    .map(|s| s.state == "in progress")
                    .unwrap_or(false) =>
            {
                r.stop.store(true, Ordering::SeqCst);
                let path = checkpoint_path(state_dir, volume);
                let mut c = load_checkpoint(&path);
                c.running = false;
                save_checkpoint(&path, &c);
                Ok(())
            }
            _ => Err(format!(
                "no rebalance of volume {volume} is running on this node"
            )),
        }
    }

    /// cairnd is stopping: every run stops where it is and its checkpoint stays
    /// unfinished, so the next cairnd resumes it (errors seen while the process winds
    /// down, such as connections closing, are not the run's result).
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        if let Ok(runs) = self.runs.lock() {
            for r in runs.values() {
                r.stop.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Stops `volume`'s run if one is going on, and forgets an unfinished one, so that it
    /// is not resumed (a remove-brick stopped or committed).
    pub fn abandon(&self, volume: &str, state_dir: &Path) {
        if let Some(r) = self.runs.lock().ok().and_then(|r| r.get(volume).cloned()) {
            r.stop.store(true, Ordering::SeqCst);
        }
        let path = checkpoint_path(state_dir, volume);
        let mut c = load_checkpoint(&path);
        if c.running {
            c.running = false;
            save_checkpoint(&path, &c);
        }
    }

    /// Starts a run of `v` in the background (resuming its checkpoint, if any).
    pub fn start(
        self: &Arc<Self>,
        v: VolumeConfig,
        node: &str,
        kind: Kind,
        state_dir: &Path,
        parallel: usize,
    ) -> Result<(), String> {
        if v.bricks.len() <= v.replica.max(1) as usize {
            return Err(format!(
                "volume {} has a single replica set: there is nothing to distribute over",
                v.name
            ));
        }
        if kind == Kind::Drain && v.removing.is_empty() {
            return Err(format!("volume {} has no bricks being removed", v.name));
        }
        let mut runs = self
            .runs
            .lock()
            .map_err(|_| "rebalance state poisoned".to_string())?;
        if let Some(r) = runs.get(&v.name)
            && r.status
                .lock()
                .map(|s| s.state == "in progress")
                .unwrap_or(false)
        {
            return Err(format!(
                "a rebalance of volume {} is already running",
                v.name
            ));
        }
        let mut first = blank(&v.name, node, kind.name(), "in progress");
        if kind == Kind::Drain {
            first.bricks = v.removing.clone();
        }
        let run = Arc::new(Run {
            status: Mutex::new(first),
            started: Instant::now(),
            stop: AtomicBool::new(false),
            kind,
        });
        runs.insert(v.name.clone(), Arc::clone(&run));
        drop(runs);
        let path = checkpoint_path(state_dir, &v.name);
        let mut cp = load_checkpoint(&path);
        if cp.kind != Some(kind) || !cp.running {
            // A new run (not the resumption of an interrupted one of the same kind).
            cp = Checkpoint {
                kind: Some(kind),
                running: true,
                done: BTreeSet::new(),
                last: None,
            };
        }
        save_checkpoint(&path, &cp);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let result = execute(&v, &run, cp, &path, parallel.max(1)).await;
            if me.shutting_down.load(Ordering::SeqCst) {
                tracing::info!(volume = %v.name, "cairnd stops: the rebalance will resume at its next start");
                return;
            }
            let elapsed = run.started.elapsed().as_secs_f64();
            let stopped = run.stop.load(Ordering::SeqCst);
            let mut last = None;
            if let Ok(mut s) = run.status.lock() {
                s.elapsed_secs = elapsed;
                s.estimate_secs = 0.0;
                match result {
                    Ok(()) if stopped => s.state = "stopped".into(),
                    Ok(()) if s.files_remaining > 0 => {
                        s.state = "failed".into();
                        s.message = format!(
                            "{} files are still on the leaving bricks (hard links, devices, fifos, sockets or errors: see the cairnd log); move them by hand and start again, or commit force to leave them behind",
                            s.files_remaining
                        );
                    }
                    Ok(()) if s.failures > 0 || s.files_failed > 0 => {
                        s.state = "failed".into();
                        s.message = format!(
                            "{} directories and {} files failed (see the cairnd log); start it again to retry them",
                            s.failures, s.files_failed
                        );
                    }
                    Ok(()) => {
                        s.state = "completed".into();
                        s.progress = 1.0;
                    }
                    Err(e) => {
                        s.state = "failed".into();
                        s.message = e;
                    }
                }
                tracing::info!(volume = %s.volume, kind = %s.kind, state = %s.state, dirs = s.dirs_scanned, migrated = s.files_migrated, "rebalance ended");
                last = Some(s.clone());
            }
            let mut c = load_checkpoint(&path);
            if !stopped {
                c.running = false;
            }
            c.last = last;
            save_checkpoint(&path, &c);
        });
        Ok(())
    }

    /// Resumes the runs a previous `cairnd` left unfinished (called at start).
    pub fn resume(
        self: &Arc<Self>,
        volumes: &[VolumeConfig],
        node: &str,
        state_dir: &Path,
        parallel: impl Fn(&VolumeConfig) -> usize,
    ) {
        for v in volumes {
            let cp = load_checkpoint(&checkpoint_path(state_dir, &v.name));
            if let (true, Some(kind)) = (cp.running, cp.kind) {
                if kind == Kind::Drain && v.removing.is_empty() {
                    continue;
                }
                tracing::info!(volume = %v.name, kind = kind.name(), done = cp.done.len(), "resuming an interrupted rebalance");
                if let Err(e) = self.start(v.clone(), node, kind, state_dir, parallel(v)) {
                    tracing::warn!(volume = %v.name, error = %e, "could not resume the rebalance");
                }
            }
        }
    }
}

async fn execute(
    v: &VolumeConfig,
    run: &Run,
    cp: Checkpoint,
    path: &Path,
    parallel: usize,
) -> Result<(), String> {
    let vf = crate::volgen::client_volfile(v);
    let graph = Graph::from_volfile(&vf, &Registry::builtin()).map_err(|e| e.to_string())?;
    graph.start().await.map_err(|e| e.to_string())?;
    let result = async {
        let dht = walk(&graph, run, cp, path, parallel).await?;
        if run.kind == Kind::Drain && !run.stop.load(Ordering::SeqCst) {
            // Passes until one moves nothing (files created meanwhile where the walk had
            // been), at most three.
            let mut remaining = 0;
            for _ in 0..3 {
                let swept = sweep_leaving(dht, run, parallel).await;
                remaining = swept.remaining;
                if swept.moved == 0 || run.stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            bump(run, |s| s.files_remaining = remaining);
        }
        Ok(())
    }
    .await;
    graph.stop().await;
    result
}

/// The walk of every directory; returns the graph's distribute.
async fn walk<'g>(
    graph: &'g Graph,
    run: &Run,
    mut cp: Checkpoint,
    path: &Path,
    parallel: usize,
) -> Result<&'g Dht, String> {
    let dht = graph
        .find::<Dht>()
        .next()
        .ok_or("the volume's graph has no cluster/distribute")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while dht.groups().iter().any(|g| !g.is_up()) {
        if Instant::now() > deadline {
            return Err(
                "not every replica set is reachable (each needs quorum): rebalance needs them all"
                    .into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cx = Cx::internal();
    let mut queue: VecDeque<Loc> = VecDeque::from([Loc::inode(Gfid::ROOT)]);
    let mut moved_sum = 0f64;
    let mut seen_dirs = 0u64;
    let mut last_save = Instant::now();
    while let Some(loc) = queue.pop_front() {
        if run.stop.load(Ordering::SeqCst) {
            save_checkpoint(path, &cp);
            return Ok(dht);
        }
        seen_dirs += 1;
        // A lookup by name first: it creates the directory on sets that lack it.
        let gfid = match dht.lookup(&cx, loc.clone(), Xdata::new()).await {
            Ok(e) => e.iatt.gfid,
            Err(e) => {
                tracing::warn!(dir = %loc, error = %e, "rebalance: lookup failed");
                bump(run, |s| s.failures += 1);
                continue;
            }
        };
        let key = gfid.to_string();
        let relayout = match dht.fix_layout(&cx, gfid).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(dir = %loc, error = %e, "rebalance: could not lay a directory out");
                bump(run, |s| {
                    s.dirs_scanned += 1;
                    s.failures += 1;
                });
                continue;
            }
        };
        if relayout.changed {
            moved_sum += relayout.moved as f64 / RING as f64;
        }
        bump(run, |s| {
            s.dirs_scanned += 1;
            if relayout.changed {
                s.dirs_changed += 1;
                s.moved_share = moved_sum / s.dirs_changed as f64;
            }
        });
        for (name, _) in &relayout.subdirs {
            queue.push_back(Loc::entry(gfid, name.clone()));
        }
        if run.kind != Kind::FixLayout && !cp.done.contains(&key) {
            let clean = migrate_dir(dht, &cx, gfid, run, parallel).await;
            // Settling checks every name again and removes the pointers no lookup uses any
            // more, so it runs even when a file was skipped (one renamed away meanwhile
            // leaves nothing to settle, and a rename finished under the old layout just
            // before it left a pointer that only this removes).
            match dht.settle_dir(&cx, gfid).await {
                Ok(SettleOutcome::Settled) => {}
                Ok(SettleOutcome::Unsettled(why)) => {
                    tracing::info!(dir = %loc, why = %why, "directory left unsettled")
                }
                Err(e) => {
                    tracing::warn!(dir = %loc, error = %e, "could not settle a directory")
                }
            }
            if clean {
                cp.done.insert(key);
            }
        }
        let queued = queue.len() as u64;
        let elapsed = run.started.elapsed().as_secs_f64();
        bump(run, |s| {
            s.estimate_secs = if seen_dirs > 0 {
                elapsed / seen_dirs as f64 * queued as f64
            } else {
                0.0
            };
            s.progress = seen_dirs as f64 / (seen_dirs + queued).max(1) as f64;
        });
        if last_save.elapsed() > Duration::from_secs(2) {
            save_checkpoint(path, &cp);
            last_save = Instant::now();
        }
    }
    save_checkpoint(path, &cp);
    Ok(dht)
}

/// Walks the directory trees of the leaving groups and moves every file found there (after
/// laying its directory out again, in case it was made after the walk passed).
async fn sweep_leaving(dht: &Dht, run: &Run, parallel: usize) -> Swept {
    let cx = Cx::internal();
    let leaving: Vec<usize> = (0..dht.groups().len())
        .filter(|&g| dht.is_leaving(g))
        .collect();
    let mut swept = Swept::default();
    let mut queue: VecDeque<Gfid> = VecDeque::from([Gfid::ROOT]);
    let mut seen = BTreeSet::new();
    while let Some(dir) = queue.pop_front() {
        if run.stop.load(Ordering::SeqCst) || !seen.insert(dir) {
            continue;
        }
        let listing = match dht.list_on(&cx, dir, &leaving).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(dir = %dir, error = %e, "remove-brick: could not list a leaving directory");
                swept.remaining += 1;
                continue;
            }
        };
        let mut files = BTreeSet::new();
        for (_, entries) in listing {
            for e in entries {
                if e.kind == FileKind::Dir {
                    queue.push_back(e.gfid);
                } else if !is_pointer(&e) {
                    files.insert(e.name);
                }
            }
        }
        if files.is_empty() {
            continue;
        }
        if let Err(e) = dht.fix_layout(&cx, dir).await {
            tracing::warn!(dir = %dir, error = %e, "remove-brick: could not lay a directory out");
            swept.remaining += files.len() as u64;
            continue;
        }
        let cx = &cx;
        let results: Vec<(String, Result<Migrated, cairn_translators::FopError>)> =
            futures::stream::iter(files.into_iter().map(|name| async move {
                let r = dht.migrate_file(cx, dir, &name).await;
                (name, r)
            }))
            .buffer_unordered(parallel)
            .collect()
            .await;
        for (name, r) in results {
            match r {
                Ok(Migrated::Moved { bytes }) => {
                    swept.moved += 1;
                    bump(run, |s| {
                        s.files_migrated += 1;
                        s.bytes_migrated += bytes;
                    });
                }
                other => {
                    tracing::warn!(dir = %dir, file = %name, result = ?other, "remove-brick: a file stays on a leaving brick");
                    swept.remaining += 1;
                }
            }
        }
    }
    swept
}

/// A linkto pointer (or a file being moved in: same mode).
fn is_pointer(e: &cairn_translators::DirEntry) -> bool {
    e.iatt
        .as_ref()
        .is_some_and(|a| a.perm & 0o7777 == cairn_translators::cluster::dht::LINKTO_MODE)
}

/// Moves the files of one directory; true when none failed or was skipped.
async fn migrate_dir(dht: &Dht, cx: &Cx, dir: Gfid, run: &Run, parallel: usize) -> bool {
    let listing = match dht.list_all(cx, dir).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(dir = %dir, error = %e, "rebalance: could not list a directory");
            bump(run, |s| s.failures += 1);
            return false;
        }
    };
    let mut names = BTreeSet::new();
    for (_, entries) in listing {
        for e in entries {
            if e.kind != FileKind::Dir && !is_pointer(&e) {
                names.insert(e.name);
            }
        }
    }
    let results: Vec<(String, Result<Migrated, cairn_translators::FopError>)> =
        futures::stream::iter(names.into_iter().map(|name| async move {
            if run.stop.load(Ordering::SeqCst) {
                return (name, Ok(Migrated::Skipped("stopped".into())));
            }
            let r = dht.migrate_file(cx, dir, &name).await;
            (name, r)
        }))
        .buffer_unordered(parallel)
        .collect()
        .await;
    let mut clean = true;
    for (name, r) in results {
        bump(run, |s| s.files_scanned += 1);
        match r {
            Ok(Migrated::Moved { bytes }) => bump(run, |s| {
                s.files_migrated += 1;
                s.bytes_migrated += bytes;
            }),
            Ok(Migrated::InPlace) => {}
            Ok(Migrated::Skipped(why)) => {
                clean = false;
                tracing::info!(dir = %dir, file = %name, why = %why, "rebalance: file skipped");
                bump(run, |s| s.files_skipped += 1);
            }
            Err(e) => {
                clean = false;
                tracing::warn!(dir = %dir, file = %name, error = %e, "rebalance: could not move a file");
                bump(run, |s| s.files_failed += 1);
            }
        }
    }
    clean
}

fn bump(run: &Run, f: impl FnOnce(&mut RebalanceStatus)) {
    if let Ok(mut s) = run.status.lock() {
        f(&mut s);
    }
}
