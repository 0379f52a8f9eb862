//! Rebalance runs: `volume rebalance VOL fix-layout start` walks every directory of a
//! distributed volume through a client graph of its own and lays each one out again over
//! the volume's current groups (after `add-brick`), moving as little of the hash ring as
//! possible. Runs on the node that received the command; `status` asks that node.
//!
//! Migration of existing files to their new hashed groups (`rebalance VOL start`) is not
//! built yet: after a fix-layout, files stay where they are and are found by lookups that
//! ask every group for names whose directory layout is not settled.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_api::{RebalanceStatus, VolumeConfig};
use cairn_translators::cluster::dht::Dht;
use cairn_translators::cluster::dht::layout::RING;
use cairn_translators::{Cx, Gfid, Graph, Loc, Registry, Translator, Xdata};

/// One run.
struct Run {
    status: Mutex<RebalanceStatus>,
    started: Instant,
    stop: AtomicBool,
}

/// The runs of this node, by volume.
#[derive(Default)]
pub struct Rebalances {
    runs: Mutex<HashMap<String, Arc<Run>>>,
}

impl Rebalances {
    /// The status of `volume`'s run on this node.
    pub fn status(&self, volume: &str, node: &str) -> RebalanceStatus {
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
            None => RebalanceStatus {
                volume: volume.to_string(),
                node: node.to_string(),
                kind: "fix-layout".into(),
                state: "not started".into(),
                dirs_scanned: 0,
                dirs_changed: 0,
                failures: 0,
                moved_share: 0.0,
                elapsed_secs: 0.0,
                message: String::new(),
            },
        }
    }

    /// Asks a running run to stop.
    pub fn stop(&self, volume: &str) -> Result<(), String> {
        let run = self.runs.lock().ok().and_then(|r| r.get(volume).cloned());
        match run {
            Some(r)
                if r.status
                    .lock()
                    .map(|s| s.state == "in progress")
                    .unwrap_or(false) =>
            {
                r.stop.store(true, Ordering::SeqCst);
                Ok(())
            }
            _ => Err(format!(
                "no rebalance of volume {volume} is running on this node"
            )),
        }
    }

    /// Starts a fix-layout of `v` in the background.
    pub fn start_fix_layout(&self, v: VolumeConfig, node: &str) -> Result<(), String> {
        if v.bricks.len() <= v.replica.max(1) as usize {
            return Err(format!(
                "volume {} has a single replica set: there is nothing to distribute over",
                v.name
            ));
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
        let run = Arc::new(Run {
            status: Mutex::new(RebalanceStatus {
                volume: v.name.clone(),
                node: node.to_string(),
                kind: "fix-layout".into(),
                state: "in progress".into(),
                dirs_scanned: 0,
                dirs_changed: 0,
                failures: 0,
                moved_share: 0.0,
                elapsed_secs: 0.0,
                message: String::new(),
            }),
            started: Instant::now(),
            stop: AtomicBool::new(false),
        });
        runs.insert(v.name.clone(), Arc::clone(&run));
        drop(runs);
        tokio::spawn(async move {
            let result = fix_layout(&v, &run).await;
            let elapsed = run.started.elapsed().as_secs_f64();
            if let Ok(mut s) = run.status.lock() {
                s.elapsed_secs = elapsed;
                match result {
                    Ok(()) if run.stop.load(Ordering::SeqCst) => s.state = "stopped".into(),
                    Ok(()) if s.failures > 0 => {
                        s.state = "failed".into();
                        s.message = format!(
                            "{} directories could not be laid out (see the cairnd log); run it again",
                            s.failures
                        );
                    }
                    Ok(()) => s.state = "completed".into(),
                    Err(e) => {
                        s.state = "failed".into();
                        s.message = e;
                    }
                }
                tracing::info!(volume = %s.volume, state = %s.state, dirs = s.dirs_scanned, changed = s.dirs_changed, "fix-layout ended");
            }
        });
        Ok(())
    }
}

async fn fix_layout(v: &VolumeConfig, run: &Run) -> Result<(), String> {
    let vf = crate::volgen::client_volfile(v);
    let graph = Graph::from_volfile(&vf, &Registry::builtin()).map_err(|e| e.to_string())?;
    graph.start().await.map_err(|e| e.to_string())?;
    let result = walk(&graph, run).await;
    graph.stop().await;
    result
}

async fn walk(graph: &Graph, run: &Run) -> Result<(), String> {
    let dht = graph
        .find::<Dht>()
        .next()
        .ok_or("the volume's graph has no cluster/distribute")?;
    // Every group must be reachable: a down group's share cannot be decided.
    let deadline = Instant::now() + Duration::from_secs(30);
    while dht.groups().iter().any(|g| !g.is_up()) {
        if Instant::now() > deadline {
            return Err(
                "not every replica set is reachable (each needs quorum): fix-layout needs them all"
                    .into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cx = Cx::internal();
    let mut queue: VecDeque<Loc> = VecDeque::from([Loc::inode(Gfid::ROOT)]);
    let mut moved_sum = 0f64;
    while let Some(loc) = queue.pop_front() {
        if run.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        // A lookup by name first: it creates the directory on groups that lack it.
        let gfid = match dht.lookup(&cx, loc.clone(), Xdata::new()).await {
            Ok(e) => e.iatt.gfid,
            Err(e) => {
                tracing::warn!(dir = %loc, error = %e, "fix-layout: lookup failed");
                bump(run, |s| s.failures += 1);
                continue;
            }
        };
        match dht.fix_layout(&cx, gfid).await {
            Ok(r) => {
                if r.changed {
                    moved_sum += r.moved as f64 / RING as f64;
                }
                bump(run, |s| {
                    s.dirs_scanned += 1;
                    if r.changed {
                        s.dirs_changed += 1;
                        s.moved_share = moved_sum / s.dirs_changed as f64;
                    }
                });
                for (name, _) in r.subdirs {
                    queue.push_back(Loc::entry(gfid, name));
                }
            }
            Err(e) => {
                tracing::warn!(dir = %loc, error = %e, "fix-layout: could not lay a directory out");
                bump(run, |s| {
                    s.dirs_scanned += 1;
                    s.failures += 1;
                });
            }
        }
    }
    Ok(())
}

fn bump(run: &Run, f: impl FnOnce(&mut RebalanceStatus)) {
    if let Ok(mut s) = run.status.lock() {
        f(&mut s);
    }
}
