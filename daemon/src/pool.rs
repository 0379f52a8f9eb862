//! The trusted pool: probe, join, detach, and the monitor.
//!
//! **Probe** (on the node that received `peer probe HOST`): ask HOST who it is; lock every
//! current member; send HOST the pool's secret and configuration with HOST in it (HOST
//! refuses if it already belongs to another pool or has volumes); commit `AddNode` on every
//! current member; unlock.
//!
//! **Detach**: refused while the node holds bricks; with `force` a node that cannot be
//! reached is removed anyway. The detached node, if reachable, resets itself to a pool of
//! one.
//!
//! **Monitor**: every two seconds each node asks every peer for its config version. A peer
//! with a higher version has committed changes this node missed (it was down or cut off):
//! this node fetches the whole configuration from it and adopts it. So a node that returns
//! converges without anyone acting, and no node is special.

use std::sync::Arc;
use std::time::Duration;

use cairn_api::{
    ApiError, Client, ClusterConfig, Endpoint, JoinReply, JoinRequest, NodeInfo, NodeStatus, Op,
    TxnLock, TxnOp, routes,
};

use crate::Daemon;
use crate::store::Persisted;

const MONITOR_PERIOD: Duration = Duration::from_secs(2);

fn split_host_port(text: &str) -> (String, u16) {
    let full = cairn_api::client::with_default_port(text);
    match full.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().unwrap_or(cairn_api::DEFAULT_PORT),
        ),
        None => (full, cairn_api::DEFAULT_PORT),
    }
}

impl Daemon {
    fn peer_client(&self, addr: &str, timeout: Duration) -> Result<Client, String> {
        Ok(
            Client::new(Endpoint::Tcp(cairn_api::client::with_default_port(addr)))
                .with_token(self.pool_secret()?)
                .with_timeout(timeout),
        )
    }

    /// `peer probe HOST`.
    pub async fn probe(&self, host: &str) -> Result<String, String> {
        let (h, port) = split_host_port(host);
        let me = self.me()?;
        if (h == me.host || h == "localhost") && port == me.port {
            return Ok("probe on localhost not needed".into());
        }
        let config = self.config()?;
        if config.nodes.iter().any(|n| n.host == h && n.port == port) {
            return Ok(format!("host {h} port {port} already in peer list"));
        }
        let target =
            Client::new(Endpoint::Tcp(format!("{h}:{port}"))).with_timeout(Duration::from_secs(5));
        let status: NodeStatus = target.get(routes::NODE).await.map_err(|e| match e {
            e if e.is_unreachable() => {
                format!("probe returned with Transport endpoint is not connected: {e}")
            }
            e => e.to_string(),
        })?;
        if status.uuid == me.uuid {
            return Ok("probe on localhost not needed".into());
        }
        if config.nodes.iter().any(|n| n.uuid == status.uuid) {
            return Ok(format!(
                "{h} is already in the pool (under another address)"
            ));
        }
        if status.pool_size > 1 {
            return Err(format!("{h} is already part of another pool"));
        }
        let node = NodeInfo {
            uuid: status.uuid.clone(),
            host: h.clone(),
            port,
        };
        let nodes = self.participants()?;
        let lock = TxnLock {
            txn: uuid::Uuid::new_v4().to_string(),
            origin: me.clone(),
            what: format!("peer probe {h}"),
        };
        let version = self.lock_all(&nodes, &lock).await? + 1;
        let result = async {
            let t = TxnOp {
                txn: lock.txn.clone(),
                op: Op::AddNode(node.clone()),
                version,
                force: false,
            };
            // Everyone agrees first, then the new node joins, then everyone commits.
            self.stage_all(&nodes, &t).await?;
            let mut new_config = self.config()?;
            crate::ops::apply(&mut new_config, &t.op, version);
            let join = JoinRequest {
                from: me.clone(),
                pool_secret: self.pool_secret()?,
                your_host: h.clone(),
                config: new_config,
            };
            let _: JoinReply = target
                .post(routes::PEER_JOIN, &join)
                .await
                .map_err(|e| format!("{h} refused to join: {e}"))?;
            self.commit_all(&nodes, &t).await
        }
        .await;
        self.unlock_all(&nodes, &lock).await;
        result.map(|()| "success".to_string())
    }

    /// The probed node's side: adopt the pool.
    pub fn join(&self, req: JoinRequest) -> Result<JoinReply, String> {
        let st = self.snapshot()?;
        if st.config.nodes.len() > 1 {
            return Err(format!(
                "{} already belongs to a pool of {} nodes",
                st.node.host,
                st.config.nodes.len()
            ));
        }
        if !st.config.volumes.is_empty() {
            return Err(format!(
                "{} has volumes of its own; it cannot join another pool",
                st.node.host
            ));
        }
        if self.txn_busy() {
            return Err(crate::txn::BUSY.to_string());
        }
        let Some(me) = req
            .config
            .nodes
            .iter()
            .find(|n| n.uuid == st.node.uuid)
            .cloned()
        else {
            return Err("the join request does not include this node".into());
        };
        tracing::info!(pool_via = %req.from.host, as_host = %req.your_host, "joining a pool");
        self.commit_state(Persisted {
            format: st.format,
            node: me.clone(),
            pool_secret: req.pool_secret,
            config: req.config,
        })?;
        Ok(JoinReply { node: me })
    }

    /// `peer detach HOST [force]`.
    pub async fn detach(&self, host: &str, force: bool) -> Result<String, String> {
        let (h, port) = split_host_port(host);
        let me = self.me()?;
        let config = self.config()?;
        let with_port = host.contains(':') && !host.starts_with('[') || host.contains("]:");
        let target = config
            .nodes
            .iter()
            .find(|n| n.host == h && (!with_port || n.port == port))
            .cloned()
            .ok_or_else(|| format!("{h} is not a member of this pool"))?;
        if target.uuid == me.uuid {
            return Err(
                "a node cannot detach itself: run peer detach on another member of the pool".into(),
            );
        }
        let reachable = self.is_reachable(&target.uuid)
            || self
                .peer_client(&target.addr(), Duration::from_secs(3))?
                .get::<NodeStatus>(routes::NODE)
                .await
                .is_ok();
        let mut nodes = self.participants()?;
        if reachable {
            if !nodes.iter().any(|n| n.uuid == target.uuid) {
                nodes.push(target.clone());
            }
        } else if force {
            nodes.retain(|n| n.uuid != target.uuid);
        } else {
            return Err(format!(
                "{h} is not connected; use 'force' to detach it anyway"
            ));
        }
        let lock = TxnLock {
            txn: uuid::Uuid::new_v4().to_string(),
            origin: me,
            what: format!("peer detach {h}"),
        };
        let version = self.lock_all(&nodes, &lock).await? + 1;
        let t = TxnOp {
            txn: lock.txn.clone(),
            op: Op::RemoveNode {
                uuid: target.uuid.clone(),
            },
            version,
            force,
        };
        let result = self.stage_and_commit(&nodes, &t).await;
        self.unlock_all(&nodes, &lock).await;
        result.map(|()| "success".to_string())
    }

    /// Watches peers: reachability, and catching up with a peer that has a newer config.
    pub async fn monitor(self: Arc<Self>) {
        loop {
            if let Err(e) = self.monitor_once().await {
                tracing::warn!(error = %e, "peer monitor");
            }
            tokio::time::sleep(MONITOR_PERIOD).await;
        }
    }

    async fn monitor_once(&self) -> Result<(), String> {
        let me = self.me()?;
        let peers: Vec<NodeInfo> = self
            .config()?
            .nodes
            .into_iter()
            .filter(|n| n.uuid != me.uuid)
            .collect();
        let checks = futures::future::join_all(peers.iter().map(|n| async move {
            let c = self.peer_client(&n.addr(), Duration::from_secs(2))?;
            Ok::<_, String>((n.clone(), c.get::<NodeStatus>(routes::NODE).await))
        }))
        .await;
        for check in checks {
            let (node, status) = check?;
            let up = matches!(&status, Ok(s) if s.uuid == node.uuid);
            if self.set_reachable(&node.uuid, up) {
                if up {
                    tracing::info!(peer = %node.host, "peer connected");
                } else {
                    tracing::warn!(peer = %node.host, "peer disconnected");
                }
            }
            let Ok(status) = status else { continue };
            if up && status.config_version > self.config()?.version && !self.txn_busy() {
                let c = self.peer_client(&node.addr(), Duration::from_secs(10))?;
                match c.get::<ClusterConfig>(routes::PEER_STATE).await {
                    Ok(config) => self.adopt_config(config)?,
                    Err(ApiError::Refused { message, .. }) => {
                        tracing::warn!(peer = %node.host, %message, "peer refused to share its configuration")
                    }
                    Err(e) => {
                        tracing::warn!(peer = %node.host, error = %e, "cannot fetch the configuration")
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("n1"), ("n1".into(), 24007));
        assert_eq!(split_host_port("n1:9"), ("n1".into(), 9));
        assert_eq!(split_host_port("::1"), ("::1".into(), 24007));
        assert_eq!(split_host_port("[::1]:5"), ("::1".into(), 5));
    }
}
