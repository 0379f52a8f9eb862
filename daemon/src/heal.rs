//! The self-heal worker: one per replicated volume on each node, for that node's bricks.
//!
//! The worker holds its own client graph of the volume (from volgen, like a mount's) and
//! goes through the heal index of each of this node's bricks (`BRICK/.cairn/indices`): every
//! `cluster.heal-interval`, at once when asked (`volume heal`), and when a brick of the volume
//! comes back. Each entry is healed by the replica set's `cluster/replicate` (see
//! `translators/core/src/cluster/afr/heal.rs`), at most `cluster.heal-max-parallel` at a
//! time and `cluster.heal-bandwidth` bytes per second. A full heal (`volume heal VOL full`)
//! crawls the whole tree instead, which rebuilds a replaced or wiped brick.
//!
//! Dirty marks without blame belong to changes in flight; the worker treats them as stale
//! (and settles them) only once their index entry is older than [`STALE_DIRTY`], or older
//! than the brick's current process: a brick restarted mid-change keeps marks no one will
//! clear, and those are settled on the first pass after it is back.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cairn_api::{BrickHealInfo, HealEntry, HealStats, VolumeConfig, VolumeState};
use cairn_translators::cluster::afr::Afr;
use cairn_translators::cluster::afr::heal::{HealReport, Resolve, Throttle, merge};
use cairn_translators::{FileKind, Gfid, Graph, Loc, Registry};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::Daemon;
use crate::options;

/// A dirty mark older than this with no blame is settled by heal (compared, and healed if
/// the copies differ): its owner crashed or lost its connection. Younger marks belong to
/// changes in flight and are left to their owners.
pub const STALE_DIRTY: Duration = Duration::from_secs(60);

/// How often a worker checks whether a brick came back.
const POLL: Duration = Duration::from_secs(2);

/// How soon entries left by a pass are tried again (with every brick up).
const RETRY: Duration = Duration::from_secs(5);

/// Failed entries whose reason a pass logs at warn level (the rest go to debug).
const FAILURES_LOGGED: u64 = 3;

/// A heal of one entry still running after this long is logged (once): a pass waits for
/// each of its entries, so one that cannot finish (a lock nobody gives back, a brick that
/// never answers) holds every entry after it, and the log should say which.
const SLOW_HEAL: Duration = Duration::from_secs(30);

/// Runs `heal` (of `g`) to the end, logging a warning if it takes longer than
/// [`SLOW_HEAL`].
async fn watched<T>(volume: &str, g: Gfid, heal: impl std::future::Future<Output = T>) -> T {
    watched_after(SLOW_HEAL, volume, g, heal).await
}

/// [`watched`] with the time after which the heal is reported as slow. The heal is never
/// abandoned: a lock request given up on could still be granted later, and held forever.
async fn watched_after<T>(
    slow: Duration,
    volume: &str,
    g: Gfid,
    heal: impl std::future::Future<Output = T>,
) -> T {
    let mut heal = std::pin::pin!(heal);
    tokio::select! {
        r = &mut heal => return r,
        () = tokio::time::sleep(slow) => {}
    }
    tracing::warn!(volume = %volume, %g, secs = slow.as_secs_f64(), "heal of an entry still running; the pass waits for it");
    let started = Instant::now();
    let r = heal.await;
    tracing::warn!(volume = %volume, %g, more_secs = started.elapsed().as_secs_f64(), "slow heal of an entry ended");
    r
}

#[cfg(test)]
mod watch_tests {
    use super::*;

    /// A heal slower than the threshold is waited for to the end (only logged), and a
    /// quick one returns at once with its own result.
    #[tokio::test]
    async fn a_slow_heal_is_reported_but_never_abandoned() {
        let g = Gfid::random();
        let slow = watched_after(Duration::from_millis(20), "v", g, async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            7
        })
        .await;
        assert_eq!(slow, 7);
        let started = Instant::now();
        let quick = watched_after(Duration::from_secs(30), "v", g, async { 8 }).await;
        assert_eq!(quick, 8);
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}

/// One volume's worker on this node.
pub struct Worker {
    volume: String,
    trigger: Notify,
    full: AtomicBool,
    /// An operator asked for a pass (`volume heal VOL`): the next wake-up runs one, whatever
    /// the schedule says.
    asked: AtomicBool,
    stats: Mutex<HealStats>,
    graph: tokio::sync::Mutex<Option<(u64, Graph)>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// All workers of this node.
#[derive(Default)]
pub struct Workers {
    map: Mutex<HashMap<String, Arc<Worker>>>,
    /// Volumes whose next pass must be a full crawl (a brick was replaced or reset).
    pending_full: Mutex<BTreeSet<String>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Workers {
    /// Asks for a full heal of `volume` on this node (kept until its worker runs).
    pub fn request_full(&self, volume: &str) {
        if let Ok(mut p) = self.pending_full.lock() {
            p.insert(volume.to_string());
        }
        if let Some(w) = self.get(volume) {
            w.kick(true);
        }
    }

    fn take_full(&self, volume: &str) -> bool {
        self.pending_full
            .lock()
            .map(|mut p| p.remove(volume))
            .unwrap_or(false)
    }

    /// The worker of `volume`, if it runs here.
    pub fn get(&self, volume: &str) -> Option<Arc<Worker>> {
        self.map.lock().ok()?.get(volume).cloned()
    }
}

impl Worker {
    /// Asks for a pass now (`full`: crawl everything).
    pub fn kick(&self, full: bool) {
        if full {
            self.full.store(true, Ordering::SeqCst);
        }
        self.asked.store(true, Ordering::SeqCst);
        self.trigger.notify_one();
    }

    /// The worker's figures.
    pub fn stats(&self) -> HealStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Objects the last pass left in split-brain.
    pub fn split_brain(&self) -> BTreeSet<String> {
        self.stats().split_brain.into_iter().collect()
    }
}

/// A node's bricks of a volume: (replica set index, brick id, brick path).
fn local_sets(v: &VolumeConfig, host: &str) -> Vec<(usize, String, String)> {
    let r = v.replica.max(1) as usize;
    v.bricks
        .iter()
        .enumerate()
        .filter(|(_, b)| b.host == host)
        .map(|(i, b)| (i / r, b.id.clone(), b.path.clone()))
        .collect()
}

/// Index entries of a brick, with when each was made.
fn index_entries(brick: &Path) -> Vec<(Gfid, SystemTime)> {
    let Ok(rd) = std::fs::read_dir(brick.join(".cairn/indices")) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let g = Gfid::parse(&e.file_name().to_string_lossy())?;
            Some((g, e.metadata().ok()?.modified().ok()?))
        })
        .collect()
}

/// Which dirty marks of one brick heal may settle (see [`STALE_DIRTY`]).
struct Staleness {
    /// When the brick's current process started (its pid file was written), if known.
    brick_started: Option<SystemTime>,
}

impl Staleness {
    /// Whether an index entry made at `made` may hold marks whose owners are gone: it is
    /// older than [`STALE_DIRTY`], or older than the brick process itself. A restarted brick
    /// dropped every open file and connection, so the request that made such a mark is over:
    /// its clear went to the old process, or never came. A change still running marks again
    /// on the new process, and heal settles under the same lock its writer takes, so settling
    /// early never races it.
    fn stale(&self, made: SystemTime) -> bool {
        made.elapsed().unwrap_or_default() >= STALE_DIRTY
            || self.brick_started.is_some_and(|s| made < s)
    }
}

/// Whether `gfid` is a directory on `brick` (its handle is a directory symlink).
fn is_dir_on(brick: &Path, gfid: Gfid) -> bool {
    gfid.is_root()
        || std::fs::symlink_metadata(cairn_bricks::layout::dir_handle(brick, gfid)).is_ok()
}

/// The path of a directory on a brick, from its handle (files answer `<gfid:...>`).
pub fn describe(brick: &Path, gfid: Gfid) -> String {
    if gfid.is_root() {
        return "/".into();
    }
    let handle = cairn_bricks::layout::dir_handle(brick, gfid);
    match std::fs::canonicalize(&handle) {
        Ok(real) => {
            let root = std::fs::canonicalize(brick).unwrap_or_else(|_| brick.to_path_buf());
            match real.strip_prefix(&root) {
                Ok(rel) => format!("/{}", rel.display()),
                Err(_) => format!("<gfid:{gfid}>"),
            }
        }
        Err(_) => format!("<gfid:{gfid}>"),
    }
}

impl Daemon {
    /// Keeps one worker per replicated volume with bricks on this node.
    pub async fn heal_workers(self: Arc<Self>) {
        loop {
            self.reconcile_workers();
            tokio::time::sleep(POLL).await;
        }
    }

    fn reconcile_workers(self: &Arc<Self>) {
        let Ok(cfg) = self.config() else { return };
        let Ok(me) = self.me() else { return };
        let wanted: BTreeSet<String> = cfg
            .volumes
            .iter()
            .filter(|v| {
                v.state == VolumeState::Started
                    && v.replica > 1
                    && v.bricks.iter().any(|b| b.host == me.host)
            })
            .map(|v| v.name.clone())
            .collect();
        let Ok(mut map) = self.heal.map.lock() else {
            return;
        };
        map.retain(|name, w| {
            let keep = wanted.contains(name);
            if !keep && let Some(t) = w.task.lock().ok().and_then(|mut t| t.take()) {
                t.abort();
            }
            keep
        });
        for name in wanted {
            if map.contains_key(&name) {
                continue;
            }
            let w = Arc::new(Worker {
                volume: name.clone(),
                trigger: Notify::new(),
                asked: AtomicBool::new(false),
                full: AtomicBool::new(false),
                stats: Mutex::new(HealStats {
                    host: me.host.clone(),
                    ..HealStats::default()
                }),
                graph: tokio::sync::Mutex::new(None),
                task: Mutex::new(None),
            });
            let task = tokio::spawn(Arc::clone(self).run_worker(Arc::clone(&w)));
            if let Ok(mut t) = w.task.lock() {
                *t = Some(task);
            }
            tracing::info!(volume = %name, "heal worker started");
            map.insert(name, w);
        }
    }

    pub(crate) fn volume_config(&self, name: &str) -> Option<VolumeConfig> {
        self.config()
            .ok()?
            .volumes
            .into_iter()
            .find(|v| v.name == name)
    }

    /// The worker's client graph, rebuilt when the volume changed.
    async fn worker_graph<'a>(
        &self,
        w: &'a Worker,
        v: &VolumeConfig,
    ) -> Result<tokio::sync::MutexGuard<'a, Option<(u64, Graph)>>, String> {
        let mut g = w.graph.lock().await;
        if g.as_ref().is_none_or(|(ver, _)| *ver != v.version) {
            if let Some((_, old)) = g.take() {
                old.stop().await;
            }
            let vf = crate::volgen::client_volfile(v);
            let graph =
                Graph::from_volfile(&vf, &Registry::builtin()).map_err(|e| e.to_string())?;
            graph.start().await.map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while !graph.top().is_up() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            *g = Some((v.version, graph));
        }
        Ok(g)
    }

    async fn run_worker(self: Arc<Self>, w: Arc<Worker>) {
        let mut last_pass = Instant::now() - Duration::from_secs(86_400);
        let mut last_up: Vec<Vec<usize>> = Vec::new();
        loop {
            tokio::select! {
                _ = w.trigger.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            let Some(v) = self.volume_config(&w.volume) else {
                return;
            };
            let interval = options::effective(&v.options, "cluster.heal-interval")
                .and_then(|t| {
                    cairn_volfiles::OptionKind::Duration {
                        min_ms: 0,
                        max_ms: u64::MAX,
                    }
                    .parse(t)
                    .ok()
                })
                .and_then(|val| match val {
                    cairn_volfiles::OptionValue::Duration(d) => Some(d),
                    _ => None,
                })
                .unwrap_or(Duration::from_secs(600));
            let guard = match self.worker_graph(&w, &v).await {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(volume = %w.volume, error = %e, "heal worker cannot build its graph");
                    continue;
                }
            };
            let Some((_, graph)) = guard.as_ref() else {
                continue;
            };
            let afrs: Vec<&Afr> = graph.find::<Afr>().collect();
            let up: Vec<Vec<usize>> = afrs.iter().map(|a| a.up_set()).collect();
            let came_back = up
                .iter()
                .zip(last_up.iter())
                .any(|(now, before)| now.iter().any(|i| !before.contains(i)));
            last_up = up;
            let full = w.full.swap(false, Ordering::SeqCst) | self.heal.take_full(&w.volume);
            let due = last_pass.elapsed() >= interval;
            // Leftovers are retried soon only when every brick is up: with a brick down,
            // most entries wait for that brick, and its return starts a pass anyway.
            let all_up = afrs
                .iter()
                .zip(&last_up)
                .all(|(a, up)| up.len() == a.child_names().len());
            let has_work = all_up && self.local_pending(&v) > 0;
            let asked = w.asked.swap(false, Ordering::SeqCst);
            if !(full || asked || due || came_back || (has_work && last_pass.elapsed() >= RETRY)) {
                continue;
            }
            last_pass = Instant::now();
            self.pass(&w, &v, &afrs, full).await;
        }
    }

    fn local_pending(&self, v: &VolumeConfig) -> u64 {
        let Ok(me) = self.me() else { return 0 };
        local_sets(v, &me.host)
            .iter()
            .map(|(_, _, path)| index_entries(Path::new(path)).len() as u64)
            .sum()
    }

    /// One heal pass: the index of every local brick (or a full crawl).
    async fn pass(&self, w: &Worker, v: &VolumeConfig, afrs: &[&Afr], full: bool) {
        let started = Instant::now();
        if let Ok(mut s) = w.stats.lock() {
            s.running = true;
            s.last_start = now_secs();
            s.last_full = full;
        }
        let parallel = options::effective(&v.options, "cluster.heal-max-parallel")
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(4);
        let bandwidth = options::effective(&v.options, "cluster.heal-bandwidth")
            .and_then(|t| {
                match (cairn_volfiles::OptionKind::Size {
                    min: 0,
                    max: u64::MAX,
                })
                .parse(t)
                {
                    Ok(cairn_volfiles::OptionValue::Size(n)) => Some(n),
                    _ => None,
                }
            })
            .unwrap_or(0);
        let throttle = Throttle::new(bandwidth);
        let sem = Semaphore::new(parallel.max(1));
        let mut total = HealReport::default();
        let mut failed = 0u64;
        let mut healed = 0u64;
        let mut split = BTreeSet::new();
        let host = self.me().map(|m| m.host).unwrap_or_default();
        let sets = local_sets(v, &host);
        if full {
            // Crawl each local replica set's tree from the root.
            for (set, _, _) in &sets {
                let Some(afr) = afrs.get(*set) else { continue };
                let policy = afr.favorite_child().clone();
                let mut queue = VecDeque::from([Gfid::ROOT]);
                while let Some(dir) = queue.pop_front() {
                    match afr.heal_dir_full(dir, &policy, &throttle).await {
                        Ok((r, subdirs)) => {
                            healed += (r.data + r.metadata + r.entries) as u64;
                            if let Some(sb) = &r.split_brain {
                                split.insert(sb.clone());
                            }
                            merge(&mut total, r);
                            queue.extend(subdirs.into_iter().map(|(g, _)| g));
                        }
                        Err(e) => {
                            failed += 1;
                            tracing::warn!(volume = %v.name, %dir, error = %e, "full heal of a directory failed");
                        }
                    }
                }
            }
        } else {
            for (set, brick_id, path) in &sets {
                let Some(afr) = afrs.get(*set) else { continue };
                let policy = afr.favorite_child().clone();
                let staleness = Staleness {
                    brick_started: std::fs::metadata(self.supervisor.files(&v.name, brick_id).pid)
                        .and_then(|m| m.modified())
                        .ok(),
                };
                // Directories first: their entry heal creates the files a brick missed,
                // with their contents, and settles most of the files' own entries. Then
                // the index is read again for what is left.
                let brick = Path::new(path);
                let (dirs, _): (Vec<_>, Vec<_>) = index_entries(brick)
                    .into_iter()
                    .partition(|(g, _)| is_dir_on(brick, *g));
                let mut queue: VecDeque<(Gfid, bool)> = dirs
                    .into_iter()
                    .map(|(g, made)| (g, staleness.stale(made)))
                    .collect();
                let mut seen = BTreeSet::new();
                let mut files_listed = false;
                loop {
                    if queue.is_empty() {
                        if files_listed {
                            break;
                        }
                        files_listed = true;
                        queue.extend(
                            index_entries(brick)
                                .into_iter()
                                .filter(|(g, _)| !seen.contains(g))
                                .map(|(g, made)| (g, staleness.stale(made))),
                        );
                        continue;
                    }
                    let batch: Vec<(Gfid, bool)> =
                        queue.drain(..).filter(|(g, _)| seen.insert(*g)).collect();
                    let results = futures::future::join_all(batch.iter().map(|(g, stale)| {
                        let (sem, throttle, policy) = (&sem, &throttle, &policy);
                        async move {
                            let _permit = sem.acquire().await;
                            let heal = afr.heal(Loc::inode(*g), policy, *stale, throttle);
                            (*g, watched(&v.name, *g, heal).await)
                        }
                    }))
                    .await;
                    for (g, r) in results {
                        match r {
                            Ok(r) => {
                                if !r.clean {
                                    healed += 1;
                                }
                                if let Some(sb) = &r.split_brain {
                                    split.insert(sb.clone());
                                }
                                // Directories just created on a brick: heal them now,
                                // even if their own index entry was tried before.
                                for c in &r.children {
                                    seen.remove(c);
                                    queue.push_back((*c, false));
                                }
                                merge(
                                    &mut total,
                                    HealReport {
                                        children: Vec::new(),
                                        ..r
                                    },
                                );
                            }
                            Err(e) if e.errno == libc::ENOENT || e.errno == libc::ESTALE => {
                                // Deleted since it was indexed: nothing to heal.
                                let _ = std::fs::remove_file(
                                    Path::new(path).join(".cairn/indices").join(g.to_string()),
                                );
                            }
                            Err(e) => {
                                failed += 1;
                                // The first few reasons of each pass, so a stuck entry says
                                // why without flooding the log.
                                if failed <= FAILURES_LOGGED {
                                    tracing::warn!(volume = %v.name, %g, error = %e, "heal of an entry failed; it stays pending");
                                } else {
                                    tracing::debug!(volume = %v.name, %g, error = %e, "heal failed");
                                }
                            }
                        }
                    }
                }
            }
        }
        let pending = self.local_pending(v);
        if let Ok(mut s) = w.stats.lock() {
            s.running = false;
            s.runs += 1;
            s.last_duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            s.healed += healed;
            s.bytes += total.bytes;
            s.failed += failed;
            s.pending = pending;
            s.split_brain = split.into_iter().collect();
        }
        if healed > 0 || failed > 0 {
            tracing::info!(volume = %v.name, full, healed, failed, bytes = total.bytes, pending, ms = started.elapsed().as_millis() as u64, "heal pass");
        }
    }

    /// This node's part of `volume heal VOL info`.
    pub fn local_heal_info(&self, volume: &str) -> Vec<BrickHealInfo> {
        let Some(v) = self.volume_config(volume) else {
            return Vec::new();
        };
        let Ok(me) = self.me() else { return Vec::new() };
        let split = self
            .heal
            .get(volume)
            .map(|w| w.split_brain())
            .unwrap_or_default();
        v.bricks
            .iter()
            .filter(|b| b.host == me.host)
            .map(|b| {
                let path = Path::new(&b.path);
                let entries = index_entries(path)
                    .into_iter()
                    .map(|(g, _)| HealEntry {
                        gfid: g.to_string(),
                        path: describe(path, g),
                        split_brain: split.iter().any(|s| s.contains(&g.to_string())),
                    })
                    .collect();
                BrickHealInfo {
                    brick: b.spec(),
                    connected: true,
                    entries,
                }
            })
            .collect()
    }

    /// Resolves a split-brain on one file, or (no path, a source brick) on every file of
    /// `candidates` (the gfids the indices of that brick's replica set list) that is in
    /// split-brain.
    pub async fn resolve_split_brain(
        &self,
        volume: &str,
        policy: &str,
        path: Option<&str>,
        brick: Option<&str>,
        candidates: Vec<Gfid>,
    ) -> Result<String, String> {
        let v = self
            .volume_config(volume)
            .ok_or_else(|| format!("volume {volume} does not exist"))?;
        if v.replica < 2 {
            return Err(format!("volume {volume} is not replicated"));
        }
        let vf = crate::volgen::client_volfile(&v);
        let graph = Graph::from_volfile(&vf, &Registry::builtin()).map_err(|e| e.to_string())?;
        graph.start().await.map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !graph.top().is_up() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let result = self
            .resolve_in(&graph, &v, policy, path, brick, candidates)
            .await;
        graph.stop().await;
        result
    }

    async fn resolve_in(
        &self,
        graph: &Graph,
        v: &VolumeConfig,
        policy: &str,
        path: Option<&str>,
        brick: Option<&str>,
        candidates: Vec<Gfid>,
    ) -> Result<String, String> {
        let afrs: Vec<&Afr> = graph.find::<Afr>().collect();
        let r = v.replica as usize;
        let (set, resolve) = match policy {
            "bigger-file" => (None, Resolve::BiggerFile),
            "latest-mtime" => (None, Resolve::LatestMtime),
            "source-brick" => {
                let spec =
                    brick.ok_or("source-brick needs HOST:/PATH of the brick whose copy wins")?;
                let i = v
                    .bricks
                    .iter()
                    .position(|b| b.spec() == spec)
                    .ok_or_else(|| format!("{spec} is not a brick of volume {}", v.name))?;
                (Some(i / r), Resolve::Source(i % r))
            }
            other => {
                return Err(format!(
                    "unknown policy '{other}': use bigger-file, latest-mtime or source-brick"
                ));
            }
        };
        let throttle = Throttle::new(0);
        let targets: Vec<(usize, Loc)> = match path {
            Some(p) => {
                let gfid = self.resolve_path(graph, p).await?;
                let sets: Vec<usize> = match set {
                    Some(s) => vec![s],
                    None => (0..afrs.len()).collect(),
                };
                sets.into_iter().map(|s| (s, Loc::inode(gfid))).collect()
            }
            None => {
                // Every split-brain file the replica set's indices know.
                let s = set.ok_or("a path is needed for bigger-file and latest-mtime")?;
                candidates.into_iter().map(|g| (s, Loc::inode(g))).collect()
            }
        };
        let mut resolved = 0;
        let mut errors = Vec::new();
        for (s, loc) in targets {
            let Some(afr) = afrs.get(s) else { continue };
            match afr.heal(loc.clone(), &resolve, true, &throttle).await {
                Ok(r) if r.split_brain.is_none() => resolved += 1,
                Ok(r) => errors.push(r.split_brain.unwrap_or_default()),
                Err(e) if e.errno == libc::ENOENT => {}
                Err(e) => errors.push(format!("{loc}: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(format!("healed {resolved} file(s) with policy {policy}"))
        } else {
            Err(errors.join("; "))
        }
    }

    /// The gfid of a path in the volume (looked up from the root).
    async fn resolve_path(&self, graph: &Graph, path: &str) -> Result<Gfid, String> {
        let mut g = Gfid::ROOT;
        let cx = cairn_translators::Cx::internal();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let e = graph
                .top()
                .lookup(&cx, Loc::entry(g, part), cairn_translators::Xdata::new())
                .await
                .map_err(|e| format!("{path}: {e}"))?;
            g = e.iatt.gfid;
            if e.iatt.kind != FileKind::Dir
                && e.iatt.kind != FileKind::File
                && e.iatt.kind != FileKind::Symlink
            {
                break;
            }
        }
        Ok(g)
    }
}
