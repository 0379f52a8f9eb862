//! The NFS gateways of this node: for every started volume with `nfs.enable on`, an
//! NFSv3 gateway ([`cairn_nfs::Gateway`]) over a client graph of the volume, on
//! `nfs.port` of the node's address.
//!
//! A gateway is rebuilt when anything it depends on changes (the client graph, port,
//! address lists); its handles do not change with it, so clients carry on after the
//! reconnect. A gateway that cannot start (port taken, say) is retried every few seconds
//! and the reason logged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_api::{VolumeConfig, VolumeState};
use cairn_nfs::{Gateway, GatewayConfig};
use cairn_translators::{Graph, Registry};

use crate::{Daemon, options, volgen};

/// How often gateways are reconciled besides configuration changes.
const POLL: Duration = Duration::from_secs(3);
/// Longest a new graph is given to reach its bricks before the gateway starts anyway
/// (operations fail with `NFS3ERR_JUKEBOX` until it does, and clients retry).
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// Most descriptors a gateway keeps open.
const MAX_FDS: usize = 4096;
/// How long an unused descriptor stays open (a file written through NFS counts as closed,
/// for WORM, this long after its last write).
const FD_IDLE: Duration = Duration::from_secs(5);

/// What a gateway is built from; a change rebuilds it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Spec {
    volfile: cairn_volfiles::Volfile,
    bind: SocketAddr,
    export: String,
    allow: Vec<String>,
    reject: Vec<String>,
    generation: u64,
}

struct Running {
    spec: Spec,
    gateway: Gateway,
    graph: Graph,
}

/// This node's gateways, by volume.
#[derive(Default)]
pub struct Gateways {
    running: tokio::sync::Mutex<HashMap<String, Running>>,
    /// Volumes whose gateway failed to start, with the reason, so that a failure is logged
    /// once rather than on every retry.
    failed: std::sync::Mutex<HashMap<String, String>>,
}

impl Gateways {
    /// Stops every gateway (cairnd is stopping).
    pub async fn stop_all(&self) {
        let all: Vec<Running> = self.running.lock().await.drain().map(|(_, r)| r).collect();
        for r in all {
            r.gateway.stop().await;
            r.graph.stop().await;
        }
    }
}

fn spec(d: &Daemon, v: &VolumeConfig) -> Option<Spec> {
    let port = options::effective(&v.options, "nfs.port")?
        .parse::<u16>()
        .ok()?;
    let ip = d.cfg.bind.ip();
    let volfile = volgen::client_volfile(v);
    Some(Spec {
        volfile,
        bind: SocketAddr::new(ip, port),
        export: format!("/{}", v.name),
        allow: options::list(&v.options, "nfs.rpc-auth-allow"),
        reject: options::list(&v.options, "nfs.rpc-auth-reject"),
        generation: cairn_nfs::generation_for(&v.id),
    })
}

impl Daemon {
    /// Keeps this node's gateways in line with the configuration.
    pub async fn nfs_gateways(self: Arc<Self>) {
        let mut version = self.watch_version();
        loop {
            self.reconcile_nfs().await;
            tokio::select! {
                _ = version.changed() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn reconcile_nfs(&self) {
        let Ok(cfg) = self.config() else { return };
        let wanted: HashMap<String, Spec> = cfg
            .volumes
            .iter()
            .filter(|v| v.state == VolumeState::Started && options::flag(&v.options, "nfs.enable"))
            .filter_map(|v| Some((v.name.clone(), spec(self, v)?)))
            .collect();
        let mut running = self.nfs.running.lock().await;
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, r)| wanted.get(*name) != Some(&r.spec))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = running.remove(&name) {
                tracing::info!(volume = %name, "stopping the NFS gateway");
                r.gateway.stop().await;
                r.graph.stop().await;
            }
        }
        if let Ok(mut f) = self.nfs.failed.lock() {
            f.retain(|name, _| wanted.contains_key(name));
        }
        for (name, spec) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            match start_gateway(&spec).await {
                Ok((gateway, graph)) => {
                    if let Ok(mut f) = self.nfs.failed.lock() {
                        f.remove(&name);
                    }
                    running.insert(
                        name,
                        Running {
                            spec,
                            gateway,
                            graph,
                        },
                    );
                }
                Err(e) => {
                    let first = self
                        .nfs
                        .failed
                        .lock()
                        .map(|mut f| f.insert(name.clone(), e.clone()) != Some(e.clone()))
                        .unwrap_or(true);
                    if first {
                        tracing::error!(volume = %name, addr = %spec.bind, error = %e, "the NFS gateway cannot start; retrying");
                    }
                }
            }
        }
    }
}

async fn start_gateway(spec: &Spec) -> Result<(Gateway, Graph), String> {
    let graph =
        Graph::from_volfile(&spec.volfile, &Registry::builtin()).map_err(|e| e.to_string())?;
    graph.start().await.map_err(|e| e.to_string())?;
    let deadline = Instant::now() + CONNECT_WAIT;
    while !graph.top().is_up() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cfg = GatewayConfig {
        bind: spec.bind,
        export: spec.export.clone(),
        allow: spec.allow.clone(),
        reject: spec.reject.clone(),
        generation: spec.generation,
        max_fds: MAX_FDS,
        fd_idle: FD_IDLE,
    };
    match Gateway::start(cfg, Arc::clone(graph.top())).await {
        Ok(g) => Ok((g, graph)),
        Err(e) => {
            graph.stop().await;
            Err(format!("cannot serve NFS on {}: {e}", spec.bind))
        }
    }
}
