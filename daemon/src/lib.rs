//! `cairnd`, the management daemon: one per node, all equal.
//!
//! # Layout
//!
//! - [`store`]: the node's persistent state (identity, pool secret, cluster configuration),
//!   versioned and written atomically.
//! - [`options`]: the volume option table.
//! - [`volgen`]: brick and client volfiles from a volume's configuration.
//! - [`ops`]: building, checking and applying configuration changes.
//! - [`txn`]: the cluster-wide transaction: lock → stage → commit on every node → unlock.
//! - [`pool`]: probe, join, detach, and the peer monitor that catches a returning node up.
//! - [`supervisor`]: this node's brick processes.
//! - [`smb`]: Samba shares of volumes with `smb.enable on`.
//! - [`nfs`]: the NFSv3 gateways of volumes with `nfs.enable on`.
//! - [`heal`]: the self-heal worker of each replicated volume, for this node's bricks.
//! - [`http`]: the management API (TCP for peers, clients and remote reads; a Unix socket
//!   for the local CLI).
//!
//! The daemon's state lives in [`Daemon`]; locks are never held across an `await`.

pub mod heal;
pub mod http;
pub mod nfs;
pub mod ops;
pub mod options;
pub mod pool;
pub mod rebalance;
pub mod scrub;
pub mod smb;
pub mod store;
pub mod supervisor;
pub mod txn;
pub mod volgen;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_api::{ClusterConfig, NodeInfo, Op, VolumeConfig, VolumeState};
use tokio::sync::{Notify, watch};

use crate::ops::PortRange;
use crate::store::{Persisted, Store};
use crate::supervisor::{Supervisor, Wanted};

/// How the daemon was started.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Address for the management API.
    pub bind: SocketAddr,
    /// The host name peers and clients use for this node.
    pub host: String,
    /// State directory.
    pub state_dir: PathBuf,
    /// Log directory (brick logs go to `bricks/` below it).
    pub log_dir: PathBuf,
    /// Ports handed out to bricks.
    pub brick_ports: PortRange,
    /// The `cairn-brickd` executable.
    pub brickd: PathBuf,
    /// Samba's configuration and the mounts SMB shares are made of.
    pub smb: smb::SmbPaths,
}

/// A running daemon.
pub struct Daemon {
    /// Startup configuration.
    pub cfg: DaemonConfig,
    store: Store,
    state: Mutex<Persisted>,
    txn: Mutex<Option<txn::Held>>,
    /// This node's bricks.
    pub supervisor: Supervisor,
    version: watch::Sender<u64>,
    reconcile: Notify,
    reachable: Mutex<HashMap<String, bool>>,
    /// Self-heal workers.
    pub heal: heal::Workers,
    /// Rebalance runs started on this node.
    pub rebalance: Arc<rebalance::Rebalances>,
    /// Bitrot scrubbers.
    pub scrub: scrub::Scrubbers,
    /// NFS gateways.
    pub nfs: nfs::Gateways,
}

impl Daemon {
    /// Loads (or creates) the state and builds the daemon. Nothing runs yet.
    pub fn open(cfg: DaemonConfig) -> Result<Arc<Daemon>, String> {
        let store = Store::open(&cfg.state_dir)?;
        let port = cfg.bind.port();
        let state = match store.load()? {
            Some(mut s) => {
                if s.node.host != cfg.host || s.node.port != port {
                    tracing::warn!(old = %s.node.addr(), new = %format!("{}:{port}", cfg.host), "this node's address changed");
                    let uuid = s.node.uuid.clone();
                    s.node.host = cfg.host.clone();
                    s.node.port = port;
                    for n in s.config.nodes.iter_mut().filter(|n| n.uuid == uuid) {
                        n.host = cfg.host.clone();
                        n.port = port;
                    }
                }
                s
            }
            None => {
                let node = NodeInfo {
                    uuid: uuid::Uuid::new_v4().to_string(),
                    host: cfg.host.clone(),
                    port,
                };
                tracing::info!(uuid = %node.uuid, "new node");
                Persisted::standalone(node)
            }
        };
        store.save(&state)?;
        let supervisor = Supervisor::new(cfg.brickd.clone(), &cfg.state_dir, &cfg.log_dir);
        let version = watch::channel(state.config.version).0;
        let daemon = Arc::new(Daemon {
            cfg,
            store,
            state: Mutex::new(state),
            txn: Mutex::new(None),
            supervisor,
            version,
            reconcile: Notify::new(),
            reachable: Mutex::new(HashMap::new()),
            heal: heal::Workers::default(),
            rebalance: Arc::new(rebalance::Rebalances::default()),
            scrub: scrub::Scrubbers::default(),
            nfs: nfs::Gateways::default(),
        });
        let known: Vec<(String, String, String)> = daemon
            .local_bricks()
            .into_iter()
            .map(|(v, b)| (format!("{}/{}", v.name, b), v.name.clone(), b))
            .collect();
        daemon.supervisor.adopt(&known);
        Ok(daemon)
    }

    fn state(&self) -> Result<MutexGuard<'_, Persisted>, String> {
        self.state
            .lock()
            .map_err(|_| "daemon state poisoned".to_string())
    }

    /// A copy of the persistent state.
    pub fn snapshot(&self) -> Result<Persisted, String> {
        Ok(self.state()?.clone())
    }

    /// This node.
    pub fn me(&self) -> Result<NodeInfo, String> {
        Ok(self.state()?.node.clone())
    }

    /// The cluster configuration.
    pub fn config(&self) -> Result<ClusterConfig, String> {
        Ok(self.state()?.config.clone())
    }

    /// The pool secret.
    pub fn pool_secret(&self) -> Result<String, String> {
        Ok(self.state()?.pool_secret.clone())
    }

    /// The IP bricks of this node listen on.
    pub fn listen_ip(&self) -> String {
        self.cfg.bind.ip().to_string()
    }

    /// A receiver that sees every new configuration version.
    pub fn watch_version(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Whether a peer answered the last check.
    pub fn is_reachable(&self, uuid: &str) -> bool {
        self.reachability(uuid).unwrap_or(false)
    }

    /// What the last check of a peer said; `None` before the first check (a node that just
    /// joined).
    pub fn reachability(&self, uuid: &str) -> Option<bool> {
        self.reachable.lock().ok()?.get(uuid).copied()
    }

    fn set_reachable(&self, uuid: &str, up: bool) -> bool {
        match self.reachable.lock() {
            Ok(mut r) => r.insert(uuid.to_string(), up) != Some(up),
            Err(_) => false,
        }
    }

    /// (volume, brick id) of every brick of this node.
    fn local_bricks(&self) -> Vec<(VolumeConfig, String)> {
        let Ok(st) = self.state() else {
            return Vec::new();
        };
        let host = st.node.host.clone();
        st.config
            .volumes
            .iter()
            .flat_map(|v| {
                v.bricks
                    .iter()
                    .filter(|b| b.host == host)
                    .map(|b| (v.clone(), b.id.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Replaces the state and persists it; wakes long polls and the supervisor.
    fn commit_state(&self, new: Persisted) -> Result<(), String> {
        self.store.save(&new)?;
        let version = new.config.version;
        *self.state()? = new;
        self.version.send_replace(version);
        self.reconcile.notify_one();
        Ok(())
    }

    /// Applies a committed op on this node: configuration, disk, processes.
    pub fn apply_op(&self, op: &Op, version: u64) -> Result<(), String> {
        let mut st = self.snapshot()?;
        if version <= st.config.version {
            // Already applied (a retried commit).
            return Ok(());
        }
        let me = st.node.clone();
        if let Op::RemoveNode { uuid } = op
            && *uuid == me.uuid
        {
            tracing::warn!("this node was detached from its pool; it is on its own now");
            // The transaction that detached it cannot unlock it any more (the pool's secret
            // is no longer this node's): release its lock here.
            if let Ok(mut held) = self.txn.lock() {
                *held = None;
            }
            return self.commit_state(Persisted::standalone(me));
        }
        ops::apply(&mut st.config, op, version);
        match op {
            Op::CreateVolume(v) => self.prepare_local_bricks(v)?,
            Op::AddBrick { name, bricks } => {
                let v = st.config.volumes.iter().find(|v| &v.name == name).cloned();
                if let Some(v) = v {
                    for b in bricks.iter().filter(|b| b.host == me.host) {
                        self.prepare_brick(&v.id, b)?;
                    }
                }
            }
            Op::ReplaceBrick { name, new, .. } if new.host == me.host => {
                let v = st.config.volumes.iter().find(|v| &v.name == name).cloned();
                if let Some(v) = v {
                    self.prepare_brick(&v.id, new)?;
                }
                self.heal.request_full(name);
            }
            Op::ResetBrick {
                name,
                brick_id,
                commit: true,
            } => {
                // Only the brick's node knows whether its directory was wiped (no identity):
                // then it crawls the volume to rebuild it. A brick restarted intact (for an
                // upgrade, say) needs only the index heal its return triggers anyway.
                let v = st.config.volumes.iter().find(|v| &v.name == name).cloned();
                if let Some(v) = v
                    && let Some(b) = v
                        .bricks
                        .iter()
                        .find(|b| &b.id == brick_id && b.host == me.host)
                {
                    let root = Path::new(&b.path);
                    let wiped = !matches!(cairn_bricks::layout::read_identity(root), Ok(Some(_)))
                        || !root.join(".cairn/format").exists();
                    self.prepare_brick(&v.id, b)?;
                    if wiped {
                        tracing::info!(volume = %name, brick = %b.spec(), "brick re-initialised; a full heal rebuilds it");
                        self.heal.request_full(name);
                    }
                }
            }
            Op::ReplaceBrick { name, .. } => self.heal.request_full(name),
            Op::RemoveBrickStop { name } | Op::RemoveBrickCommit { name } => {
                // A drain running here ends; it is not resumed.
                self.rebalance.abandon(name, &self.cfg.state_dir);
            }
            _ => {}
        }
        if let Op::DeleteVolume { name } = op {
            let _ = std::fs::remove_dir_all(self.cfg.state_dir.join("vols").join(name));
        }
        self.commit_state(st)
    }

    /// Resumes the rebalance runs an earlier `cairnd` on this node left unfinished.
    pub fn resume_rebalances(&self) {
        let Ok(cfg) = self.config() else { return };
        let started: Vec<cairn_api::VolumeConfig> = cfg
            .volumes
            .into_iter()
            .filter(|v| v.state == cairn_api::VolumeState::Started)
            .collect();
        self.rebalance
            .resume(&started, &self.cfg.host, &self.cfg.state_dir, |v| {
                rebalance::parallel_for(
                    options::effective(&v.options, "cluster.rebal-throttle").unwrap_or("normal"),
                )
            });
    }

    /// Creates and stamps this node's bricks of a new volume.
    fn prepare_local_bricks(&self, v: &VolumeConfig) -> Result<(), String> {
        let me = self.me()?;
        for b in v.bricks.iter().filter(|b| b.host == me.host) {
            self.prepare_brick(&v.id, b)?;
        }
        Ok(())
    }

    /// Creates a brick directory if needed and stamps its identity (a new, replaced or
    /// wiped brick).
    fn prepare_brick(&self, volume_id: &str, b: &cairn_api::BrickConfig) -> Result<(), String> {
        let path = Path::new(&b.path);
        std::fs::create_dir_all(path).map_err(|e| format!("brick {}: {e}", b.spec()))?;
        let id = cairn_bricks::layout::Identity {
            volume_id: volume_id.to_string(),
            brick_id: b.id.clone(),
        };
        cairn_bricks::layout::prepare(path, &id, true)
            .map_err(|e| format!("brick {}: {e}", b.spec()))
    }

    /// Adopts a newer configuration from a peer (catching up after an absence).
    pub fn adopt_config(&self, config: ClusterConfig) -> Result<(), String> {
        let mut st = self.snapshot()?;
        if config.version <= st.config.version {
            return Ok(());
        }
        if !config.nodes.iter().any(|n| n.uuid == st.node.uuid) {
            tracing::warn!(
                "this node is no longer in its pool's configuration; it is on its own now"
            );
            return self.commit_state(Persisted::standalone(st.node.clone()));
        }
        let new_volumes: Vec<VolumeConfig> = config
            .volumes
            .iter()
            .filter(|v| !st.config.volumes.iter().any(|o| o.id == v.id))
            .cloned()
            .collect();
        for v in &new_volumes {
            self.prepare_local_bricks(v)?;
        }
        tracing::info!(
            from = st.config.version,
            to = config.version,
            "caught up with the pool's configuration"
        );
        st.config = config;
        self.commit_state(st)
    }

    /// The bricks this node should run now.
    pub(crate) fn wanted_bricks(&self) -> Vec<Wanted> {
        let listen = self.listen_ip();
        self.local_bricks()
            .into_iter()
            .filter(|(v, _)| v.state == VolumeState::Started)
            .filter(|(v, id)| !v.bricks.iter().any(|b| &b.id == id && b.disabled))
            .filter_map(|(v, brick_id)| {
                let b = v.bricks.iter().find(|b| b.id == brick_id)?;
                let files = self.supervisor.files(&v.name, &brick_id);
                let vf = volgen::brick_volfile(&v, b, &listen, &files.clients);
                let text = cairn_volfiles::emit(&vf).ok()?;
                Some(Wanted {
                    key: format!("{}/{}", v.name, brick_id),
                    volume: v.name.clone(),
                    brick_id,
                    volfile: text,
                })
            })
            .collect()
    }

    /// Runs the supervisor: on every configuration change, and every second to restart
    /// crashed bricks.
    pub async fn supervise(self: Arc<Self>) {
        loop {
            let me = Arc::clone(&self);
            let _ =
                tokio::task::spawn_blocking(move || me.supervisor.reconcile(|| me.wanted_bricks()))
                    .await;
            tokio::select! {
                _ = self.reconcile.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
