//! The scrubber: on each node, one worker per volume with `features.bitrot on` and bricks
//! here.
//!
//! A run walks every local brick's tree (readdirplus through the worker's own client graph,
//! straight to that brick) and asks the brick to check each regular file against its
//! signature (`features/bitrot`, [`SCRUB_KEY`]): the reading and the checksum happen on the
//! brick, the worker only paces them to `features.scrub-throttle` bytes per second. A copy
//! found damaged is marked bad by its brick (so no client reads it), counted and logged; the
//! worker then asks the replica set's `cluster/replicate` to heal it, which rebuilds it from
//! a copy that verifies, never from one that does not. What cannot be repaired (every copy
//! damaged, or the good copies down) is listed in the status and tried again at the next run
//! (the brick's heal index lists it too).
//!
//! Runs start on the `features.scrub-frequency` schedule, counted from the end of the last
//! run, or at once on `volume bitrot VOL scrub ondemand`. `features.scrub paused` stops a
//! run where it is; the directories still to visit are kept (in the volume's state
//! directory, with the counters), so a resumed or restarted worker continues the run.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cairn_api::{ScrubFinding, ScrubStatus, VolumeConfig, VolumeState};
use cairn_translators::cluster::afr::Afr;
use cairn_translators::cluster::afr::heal::{Resolve, Throttle, list_dir};
use cairn_translators::cluster::dht::LINKTO_MODE;
use cairn_translators::features::bitrot::{SCRUB_KEY, ScrubReply, Verdict, XATTR_BAD};
use cairn_translators::types::add_lookup_prefix;
use cairn_translators::{Cx, FileKind, Gfid, Graph, Loc, Registry, Target, Xdata, XlatorRef};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::Daemon;
use crate::options;

/// How often a worker looks at its schedule and options.
const POLL: Duration = Duration::from_secs(2);

/// How often a run looks at `features.scrub` (in files).
const CHECK_EVERY: u64 = 64;

/// Read-rate caps of `features.scrub-throttle`, bytes per second.
pub fn throttle_rate(level: &str) -> u64 {
    match level {
        "aggressive" => 160 << 20,
        "normal" => 40 << 20,
        _ => 10 << 20,
    }
}

/// The period of `features.scrub-frequency`.
pub fn frequency_period(f: &str) -> Duration {
    let day = 86_400;
    Duration::from_secs(match f {
        "hourly" => 3_600,
        "daily" => day,
        "weekly" => 7 * day,
        "monthly" => 30 * day,
        _ => 14 * day,
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What survives a restart of `cairnd`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Saved {
    status: ScrubStatus,
    /// When this node first scrubbed-enabled the volume (the schedule's origin before the
    /// first run).
    since: u64,
    /// A run in progress: per local brick (by id), the directories still to visit.
    cursor: Option<Cursor>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Cursor {
    /// Bricks finished.
    done: Vec<String>,
    /// The brick being walked and its queue of `(gfid, path)` directories.
    brick: Option<String>,
    queue: Vec<(String, String)>,
}

/// One volume's scrubber on this node.
pub struct Scrubber {
    volume: String,
    ondemand: AtomicBool,
    trigger: Notify,
    saved: Mutex<Saved>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// All scrubbers of this node.
#[derive(Default)]
pub struct Scrubbers {
    map: Mutex<HashMap<String, Arc<Scrubber>>>,
    /// On-demand runs asked for before the volume's scrubber started here.
    pending: Mutex<std::collections::BTreeSet<String>>,
}

impl Scrubbers {
    /// Starts a run of `volume`'s scrubber now, or as soon as it starts.
    pub fn request_ondemand(&self, volume: &str) {
        match self.get(volume) {
            Some(w) => w.ondemand(),
            None => {
                if let Ok(mut p) = self.pending.lock() {
                    p.insert(volume.to_string());
                }
            }
        }
    }

    /// The scrubber of `volume`, if it runs here.
    pub fn get(&self, volume: &str) -> Option<Arc<Scrubber>> {
        self.map.lock().ok()?.get(volume).cloned()
    }
}

impl Scrubber {
    /// Starts a run now (unless one is running).
    pub fn ondemand(&self) {
        self.ondemand.store(true, Ordering::SeqCst);
        self.trigger.notify_one();
    }

    /// The worker's status.
    pub fn status(&self) -> ScrubStatus {
        self.saved
            .lock()
            .map(|s| s.status.clone())
            .unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Saved)) {
        if let Ok(mut s) = self.saved.lock() {
            f(&mut s);
        }
    }
}

/// What a run does with one file's verdict.
enum Outcome {
    Checked,
    Skipped,
}

/// The local bricks of `v` on `host`: `(brick id, host:/path, client translator name)`.
fn local_bricks(v: &VolumeConfig, host: &str) -> Vec<(String, String, String)> {
    v.bricks
        .iter()
        .enumerate()
        .filter(|(_, b)| b.host == host)
        .map(|(i, b)| {
            let n =
                b.id.strip_prefix("brick-")
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(i);
            (b.id.clone(), b.spec(), format!("{}-client-{n}", v.name))
        })
        .collect()
}

impl Daemon {
    fn scrub_file(&self, volume: &str) -> PathBuf {
        self.cfg
            .state_dir
            .join("vols")
            .join(volume)
            .join("scrub.json")
    }

    /// Keeps one scrubber per volume with bitrot on and bricks on this node.
    pub async fn scrub_workers(self: Arc<Self>) {
        loop {
            self.reconcile_scrubbers();
            tokio::time::sleep(POLL).await;
        }
    }

    fn reconcile_scrubbers(self: &Arc<Self>) {
        let Ok(cfg) = self.config() else { return };
        let Ok(me) = self.me() else { return };
        let wanted: Vec<String> = cfg
            .volumes
            .iter()
            .filter(|v| {
                v.state == VolumeState::Started
                    && options::effective(&v.options, "features.bitrot") == Some("on")
                    && v.bricks.iter().any(|b| b.host == me.host)
            })
            .map(|v| v.name.clone())
            .collect();
        let Ok(mut map) = self.scrub.map.lock() else {
            return;
        };
        map.retain(|name, w| {
            let keep = wanted.contains(name);
            if !keep && let Some(t) = w.task.lock().ok().and_then(|mut t| t.take()) {
                t.abort();
                tracing::info!(volume = %name, "scrubber stopped");
            }
            keep
        });
        for name in wanted {
            if map.contains_key(&name) {
                continue;
            }
            let mut saved: Saved = std::fs::read(self.scrub_file(&name))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            saved.status.host = me.host.clone();
            if saved.since == 0 {
                saved.since = now_secs();
            }
            let asked = self
                .scrub
                .pending
                .lock()
                .map(|mut p| p.remove(&name))
                .unwrap_or(false);
            let w = Arc::new(Scrubber {
                volume: name.clone(),
                ondemand: AtomicBool::new(asked),
                trigger: Notify::new(),
                saved: Mutex::new(saved),
                task: Mutex::new(None),
            });
            self.save_scrub(&w);
            let task = tokio::spawn(Arc::clone(self).run_scrubber(Arc::clone(&w)));
            if let Ok(mut t) = w.task.lock() {
                *t = Some(task);
            }
            tracing::info!(volume = %name, "scrubber started");
            map.insert(name, w);
        }
    }

    fn save_scrub(&self, w: &Scrubber) {
        let Ok(bytes) = w.saved.lock().map(|s| serde_json::to_vec_pretty(&*s)) else {
            return;
        };
        let path = self.scrub_file(&w.volume);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = bytes
            .map_err(|e| e.to_string())
            .and_then(|b| crate::store::write_atomic(&path, &b, 0o600))
        {
            tracing::warn!(volume = %w.volume, error = %e, "cannot save the scrubber's state");
        }
    }

    async fn run_scrubber(self: Arc<Self>, w: Arc<Scrubber>) {
        loop {
            let Some(v) = self.volume_config(&w.volume) else {
                return;
            };
            let throttle = options::effective(&v.options, "features.scrub-throttle")
                .unwrap_or("lazy")
                .to_string();
            let frequency = options::effective(&v.options, "features.scrub-frequency")
                .unwrap_or("biweekly")
                .to_string();
            let paused = options::effective(&v.options, "features.scrub") == Some("paused");
            let (origin, resuming) = w
                .saved
                .lock()
                .map(|s| {
                    (
                        if s.status.last_end > 0 {
                            s.status.last_end
                        } else {
                            s.since
                        },
                        s.cursor.is_some(),
                    )
                })
                .unwrap_or((now_secs(), false));
            let next = origin.saturating_add(frequency_period(&frequency).as_secs());
            w.update(|s| {
                s.status.throttle = throttle.clone();
                s.status.frequency = frequency.clone();
                s.status.next_run = next;
                s.status.state = if paused { "paused" } else { "idle" }.into();
            });
            let asked = w.ondemand.swap(false, Ordering::SeqCst);
            if !paused
                && (asked || resuming || now_secs() >= next)
                && self.scrub_run(&w, &v, throttle_rate(&throttle)).await
            {
                continue;
            }
            if asked && paused {
                tracing::info!(volume = %w.volume, "on-demand scrub ignored: the scrubber is paused");
            }
            tokio::select! {
                _ = w.trigger.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// The worker's client graph of the volume.
    async fn scrub_graph(&self, v: &VolumeConfig) -> Result<Graph, String> {
        let vf = crate::volgen::client_volfile(v);
        let graph = Graph::from_volfile(&vf, &Registry::builtin()).map_err(|e| e.to_string())?;
        graph.start().await.map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !graph.top().is_up() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(graph)
    }

    /// One run over every local brick (or the rest of an interrupted one). True when it
    /// reached the end.
    async fn scrub_run(&self, w: &Scrubber, v: &VolumeConfig, rate: u64) -> bool {
        let Ok(me) = self.me() else { return false };
        let graph = match self.scrub_graph(v).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(volume = %v.name, error = %e, "scrubber cannot build its graph");
                return false;
            }
        };
        let mut cursor = w
            .saved
            .lock()
            .ok()
            .and_then(|s| s.cursor.clone())
            .unwrap_or_default();
        let fresh = cursor.brick.is_none() && cursor.done.is_empty();
        w.update(|s| {
            s.status.state = "running".into();
            if fresh {
                s.status.last_start = now_secs();
                s.status.files = 0;
                s.status.bytes = 0;
                s.status.skipped = 0;
            }
        });
        tracing::info!(volume = %v.name, resumed = !fresh, "scrub run started");
        let throttle = Throttle::new(rate);
        // Leftovers of earlier runs first.
        self.retry_unrepaired(w, v, &graph).await;
        let mut complete = true;
        for (id, spec, client_name) in local_bricks(v, &me.host) {
            if cursor.done.contains(&id) {
                continue;
            }
            let Some(client) = graph.node(&client_name).cloned() else {
                continue;
            };
            if cursor.brick.as_deref() != Some(id.as_str()) {
                cursor.brick = Some(id.clone());
                cursor.queue = vec![(Gfid::ROOT.to_string(), String::new())];
            }
            if !self
                .scrub_brick(w, v, &graph, &client, &spec, &mut cursor, &throttle)
                .await
            {
                complete = false;
                break;
            }
            cursor.done.push(id);
            cursor.brick = None;
            cursor.queue.clear();
        }
        w.update(|s| {
            if complete {
                s.cursor = None;
                s.status.runs += 1;
                s.status.last_end = now_secs();
                s.status.files_previous_run = s.status.files;
                s.status.state = "idle".into();
            } else {
                s.cursor = Some(cursor.clone());
                s.status.state = "paused".into();
            }
        });
        self.save_scrub(w);
        graph.stop().await;
        let st = w.status();
        tracing::info!(volume = %v.name, complete, files = st.files, bytes = st.bytes, corrupt = st.corrupt, repaired = st.repaired, unrepaired = st.unrepaired.len(), "scrub run ended");
        complete
    }

    /// Walks one brick from the cursor. False when paused (or the volume went away) before
    /// the end.
    #[allow(clippy::too_many_arguments)]
    async fn scrub_brick(
        &self,
        w: &Scrubber,
        v: &VolumeConfig,
        graph: &Graph,
        client: &XlatorRef,
        spec: &str,
        cursor: &mut Cursor,
        throttle: &Throttle,
    ) -> bool {
        let cx = Cx::internal();
        let mut queue: VecDeque<(String, String)> = cursor.queue.drain(..).collect();
        let mut since_check = 0u64;
        while let Some((g, dir_path)) = queue.front().cloned() {
            let Some(dir) = Gfid::parse(&g) else {
                queue.pop_front();
                continue;
            };
            let entries = match list_dir(client, &cx, dir).await {
                Ok(e) => e,
                Err(e) if e.errno == libc::ENOENT || e.errno == libc::ESTALE => BTreeMap::new(),
                Err(e) => {
                    tracing::warn!(volume = %v.name, brick = spec, dir = %dir_path, error = %e, "scrub cannot list a directory; it is skipped this run");
                    BTreeMap::new()
                }
            };
            for (name, e) in entries {
                if dir.is_root() && name == ".cairn" {
                    continue;
                }
                let path = format!("{dir_path}/{name}");
                if e.kind == FileKind::Dir {
                    queue.push_back((e.gfid.to_string(), path));
                    continue;
                }
                let linkto = e
                    .iatt
                    .as_ref()
                    .is_some_and(|ia| ia.perm & 0o7777 == LINKTO_MODE && ia.size == 0);
                if e.kind != FileKind::File || linkto {
                    continue;
                }
                let outcome = self
                    .scrub_one(w, v, graph, client, spec, e.gfid, &path, throttle)
                    .await;
                w.update(|s| match outcome {
                    Outcome::Checked => s.status.files += 1,
                    Outcome::Skipped => s.status.skipped += 1,
                });
                since_check += 1;
                if since_check >= CHECK_EVERY {
                    since_check = 0;
                    let stop = match self.volume_config(&v.name) {
                        Some(now) => {
                            options::effective(&now.options, "features.scrub") == Some("paused")
                                || options::effective(&now.options, "features.bitrot") != Some("on")
                        }
                        None => true,
                    };
                    if stop {
                        // Resume at this directory: its files are checked again, which
                        // costs a little and misses nothing.
                        cursor.queue = queue.into_iter().collect();
                        tracing::info!(volume = %v.name, brick = spec, "scrub paused");
                        return false;
                    }
                    let at = Cursor {
                        queue: queue.iter().cloned().collect(),
                        ..cursor.clone()
                    };
                    w.update(|s| s.cursor = Some(at));
                    self.save_scrub(w);
                }
            }
            queue.pop_front();
        }
        true
    }

    /// Checks one copy, and repairs it when damaged.
    #[allow(clippy::too_many_arguments)]
    async fn scrub_one(
        &self,
        w: &Scrubber,
        v: &VolumeConfig,
        graph: &Graph,
        client: &XlatorRef,
        spec: &str,
        gfid: Gfid,
        path: &str,
        throttle: &Throttle,
    ) -> Outcome {
        let reply = client
            .getxattr(
                &Cx::internal(),
                Target::Loc(Loc::inode(gfid)),
                Some(SCRUB_KEY.to_string()),
                Xdata::new(),
            )
            .await;
        let r = match reply {
            Ok(x) => match x.get(SCRUB_KEY).and_then(ScrubReply::decode) {
                Some(r) => r,
                None => {
                    tracing::warn!(volume = %v.name, brick = spec, path, "scrub: the brick's answer is unreadable");
                    return Outcome::Skipped;
                }
            },
            Err(e) => {
                if e.errno != libc::ENOENT && e.errno != libc::ESTALE {
                    tracing::warn!(volume = %v.name, brick = spec, path, error = %e, "scrub of a file failed");
                }
                return Outcome::Skipped;
            }
        };
        w.update(|s| s.status.bytes += r.bytes);
        throttle.take(r.bytes).await;
        match r.verdict {
            Verdict::Ok => Outcome::Checked,
            Verdict::Signed => {
                w.update(|s| s.status.signed += 1);
                Outcome::Checked
            }
            Verdict::Corrupt | Verdict::Bad => {
                // A copy marked bad elsewhere (heal checking it as a source) is news here
                // unless this worker already listed it.
                let known = w
                    .status()
                    .unrepaired
                    .iter()
                    .any(|f| f.gfid == gfid.to_string() && f.brick == spec);
                if r.verdict == Verdict::Corrupt || !known {
                    tracing::error!(volume = %v.name, brick = spec, path, %gfid, "scrub: a copy does not match its signature (bit rot); it is marked bad and will be repaired from a good copy");
                    w.update(|s| s.status.corrupt += 1);
                }
                let finding = ScrubFinding {
                    path: path.to_string(),
                    gfid: gfid.to_string(),
                    brick: spec.to_string(),
                    reason: String::new(),
                };
                self.repair(w, v, graph, client, finding).await;
                Outcome::Checked
            }
            Verdict::Busy | Verdict::Unsigned | Verdict::Unknown | Verdict::Skipped => {
                Outcome::Skipped
            }
        }
    }

    /// Heals a damaged copy through its replica set, and records the outcome.
    async fn repair(
        &self,
        w: &Scrubber,
        v: &VolumeConfig,
        graph: &Graph,
        client: &XlatorRef,
        mut finding: ScrubFinding,
    ) {
        let Some(gfid) = Gfid::parse(&finding.gfid) else {
            return;
        };
        let client_name = client.name().to_string();
        let afr = graph
            .find::<Afr>()
            .find(|a| a.child_names().contains(&client_name));
        let reason = match afr {
            None => Some("the volume keeps one copy: nothing to repair it from".to_string()),
            Some(afr) => {
                let heal_throttle = Throttle::new(0);
                match afr
                    .heal(Loc::inode(gfid), &Resolve::None, false, &heal_throttle)
                    .await
                {
                    Ok(r) => r.corrupt.or(r.split_brain),
                    Err(e) => Some(format!("heal failed: {e}")),
                }
            }
        };
        // Repaired when the copy no longer carries its bad mark.
        let mut x = Xdata::new();
        add_lookup_prefix(&mut x, XATTR_BAD);
        let still_bad = match client.lookup(&Cx::internal(), Loc::inode(gfid), x).await {
            Ok(e) => e.xdata.contains(XATTR_BAD),
            Err(e) => e.errno != libc::ENOENT && e.errno != libc::ESTALE,
        };
        let gone = !still_bad && reason.is_none();
        w.update(|s| {
            s.status
                .unrepaired
                .retain(|f| f.gfid != finding.gfid || f.brick != finding.brick);
            if still_bad {
                finding.reason = reason.unwrap_or_else(|| "heal left it marked".to_string());
                s.status.unrepaired.push(finding.clone());
            } else {
                s.status.repaired += 1;
            }
        });
        if still_bad {
            tracing::error!(volume = %v.name, brick = %finding.brick, path = %finding.path, reason = %finding.reason, "scrub: damaged copy NOT repaired");
        } else {
            tracing::info!(volume = %v.name, brick = %finding.brick, path = %finding.path, healed_now = gone, "scrub: damaged copy repaired");
        }
        self.save_scrub(w);
    }

    /// Tries again the damaged copies earlier runs could not repair.
    async fn retry_unrepaired(&self, w: &Scrubber, v: &VolumeConfig, graph: &Graph) {
        let Ok(me) = self.me() else { return };
        let bricks = local_bricks(v, &me.host);
        for f in w.status().unrepaired {
            let Some((_, _, client_name)) = bricks.iter().find(|(_, spec, _)| *spec == f.brick)
            else {
                continue;
            };
            if let Some(client) = graph.node(client_name).cloned() {
                self.repair(w, v, graph, &client, f).await;
            }
        }
    }
}
