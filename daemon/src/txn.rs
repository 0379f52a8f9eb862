//! The cluster-wide transaction: lock → stage → commit on every node → unlock.
//!
//! The node that received the command drives it; every node (the driver included) answers
//! the same four calls, so no node is special.
//!
//! - **lock**: each node accepts one transaction at a time; a second gets "another
//!   transaction is in progress" naming the first. A lock older than [`LOCK_STALE`] is
//!   taken over (its driver died). The lock reply carries each node's config version; the
//!   new version is one more than the highest.
//! - **stage**: each node checks the op against its configuration and its own disks. One
//!   refusal, or one unreachable node, aborts the transaction: nothing changed anywhere.
//! - **commit**: each node applies the op and persists it. A node that cannot be reached
//!   now catches up later, from a peer with a higher version.
//! - **unlock**.

use std::time::{Duration, Instant};

use cairn_api::{
    ApiError, ClusterConfig, Message, NodeInfo, Op, TxnLock, TxnLocked, TxnOp, routes,
};
use futures::future::join_all;

use crate::Daemon;
use crate::ops;

/// A lock held longer than this is considered abandoned.
pub const LOCK_STALE: Duration = Duration::from_secs(120);

/// Time allowed for one node to answer a lock request: a node that does not answer this
/// fast is treated as cut off.
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Time allowed for one node to stage or commit.
const PHASE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a commit that starts bricks waits for them to listen (within PHASE_TIMEOUT).
const BRICK_LISTEN_WAIT: Duration = Duration::from_secs(10);

/// The transaction holding this node's lock.
#[derive(Clone, Debug)]
pub struct Held {
    /// Its id.
    pub txn: String,
    /// Its driver.
    pub origin: NodeInfo,
    /// What it does.
    pub what: String,
    /// When it took the lock.
    pub since: Instant,
}

/// A refusal that should reach the operator as a conflict (HTTP 409).
pub const BUSY: &str = "another transaction is in progress";

impl Daemon {
    /// Takes this node's lock for `req`.
    pub fn txn_lock(&self, req: &TxnLock) -> Result<TxnLocked, String> {
        let mut held = self
            .txn
            .lock()
            .map_err(|_| "lock state poisoned".to_string())?;
        if let Some(h) = held.as_ref()
            && h.txn != req.txn
        {
            if h.since.elapsed() < LOCK_STALE {
                return Err(format!(
                    "{BUSY} on {}: '{}' driven by {} for {} s; try again when it finishes",
                    self.me()?.host,
                    h.what,
                    h.origin.host,
                    h.since.elapsed().as_secs()
                ));
            }
            tracing::warn!(txn = %h.txn, what = %h.what, "taking over an abandoned transaction lock");
        }
        *held = Some(Held {
            txn: req.txn.clone(),
            origin: req.origin.clone(),
            what: req.what.clone(),
            since: Instant::now(),
        });
        Ok(TxnLocked {
            node: self.me()?,
            version: self.config()?.version,
        })
    }

    /// Releases this node's lock if `txn` holds it.
    pub fn txn_unlock(&self, txn: &str) {
        if let Ok(mut held) = self.txn.lock()
            && held.as_ref().is_some_and(|h| h.txn == txn)
        {
            *held = None;
        }
    }

    /// True while any transaction holds this node's lock.
    pub fn txn_busy(&self) -> bool {
        self.txn.lock().map(|h| h.is_some()).unwrap_or(true)
    }

    fn check_holder(&self, txn: &str) -> Result<(), String> {
        let held = self
            .txn
            .lock()
            .map_err(|_| "lock state poisoned".to_string())?;
        match held.as_ref() {
            Some(h) if h.txn == txn => Ok(()),
            _ => Err(format!(
                "transaction {txn} does not hold the lock on this node"
            )),
        }
    }

    /// Stage: checks the op against this node's configuration and disks.
    pub fn txn_stage(&self, t: &TxnOp) -> Result<(), String> {
        self.check_holder(&t.txn)?;
        let config = self.config()?;
        ops::check(&config, &t.op)?;
        ops::check_local(&config, &t.op, &self.me()?, &self.listen_ip(), t.force)
    }

    /// Commit: applies the op; a start, stop or option change returns once this node's
    /// bricks follow it.
    pub async fn txn_commit(&self, t: &TxnOp) -> Result<(), String> {
        self.check_holder(&t.txn)?;
        tracing::info!(op = %t.op.describe(), version = t.version, "committing");
        self.apply_op(&t.op, t.version)?;
        if matches!(
            t.op,
            Op::StartVolume { .. } | Op::StopVolume { .. } | Op::SetOptions { .. }
        ) {
            tokio::task::block_in_place(|| self.supervisor.reconcile(|| self.wanted_bricks()));
            self.wait_bricks_listening(BRICK_LISTEN_WAIT).await;
        }
        Ok(())
    }

    /// Waits until every running local brick accepts connections, so that a `volume start`
    /// that returns success is followed by a status showing its bricks online. A brick
    /// that does not listen within `limit` (a crash loop, a full disk) is left to `volume
    /// status` to report.
    async fn wait_bricks_listening(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let waiting = self
                .local_brick_status(false, false)
                .await
                .into_iter()
                .filter(|b| b.pid.is_some() && !b.online)
                .count();
            if waiting == 0 || tokio::time::Instant::now() >= deadline {
                if waiting > 0 {
                    tracing::warn!(waiting, "bricks not yet accepting connections");
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Calls `path` on `node` with `body` (locally when it is this node).
    async fn phase<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        node: &NodeInfo,
        path: &str,
        body: &B,
    ) -> Result<T, String> {
        let timeout = if path == routes::TXN_LOCK || path == routes::TXN_UNLOCK {
            LOCK_TIMEOUT
        } else {
            PHASE_TIMEOUT
        };
        let client = cairn_api::Client::new(cairn_api::Endpoint::Tcp(node.addr()))
            .with_token(self.pool_secret()?)
            .with_timeout(timeout);
        client.post(path, body).await.map_err(|e| match e {
            ApiError::Refused { message, .. } => message,
            other if other.is_unreachable() => {
                format!("peer {} is not connected ({other})", node.host)
            }
            other => other.to_string(),
        })
    }

    /// Locks `nodes` one after the other in uuid order, so that of two concurrent
    /// transactions one wins; on a failure releases what it took and returns why.
    pub async fn lock_all(&self, nodes: &[NodeInfo], lock: &TxnLock) -> Result<u64, String> {
        let me = self.me()?;
        let mut order: Vec<&NodeInfo> = nodes.iter().collect();
        order.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        let mut version = 0;
        let mut locked = Vec::new();
        for n in order {
            let r = if n.uuid == me.uuid {
                self.txn_lock(lock)
            } else {
                self.phase::<_, TxnLocked>(n, routes::TXN_LOCK, lock).await
            };
            match r {
                Ok(l) => {
                    version = version.max(l.version);
                    locked.push(n.clone());
                }
                Err(e) => {
                    self.unlock_all(&locked, lock).await;
                    return Err(e);
                }
            }
        }
        Ok(version)
    }

    /// Unlocks `nodes` (best effort).
    pub async fn unlock_all(&self, nodes: &[NodeInfo], lock: &TxnLock) {
        let Ok(me) = self.me() else { return };
        join_all(nodes.iter().map(|n| async {
            if n.uuid == me.uuid {
                self.txn_unlock(&lock.txn);
            } else if let Err(e) = self.phase::<_, Message>(n, routes::TXN_UNLOCK, lock).await {
                tracing::warn!(peer = %n.host, error = %e, "unlock failed; the lock expires by itself");
            }
        }))
        .await;
    }

    /// Runs one phase (stage or commit) on every node; returns the failures by host.
    pub(crate) async fn all(
        &self,
        nodes: &[NodeInfo],
        path: &str,
        t: &TxnOp,
    ) -> Vec<(String, String)> {
        let Ok(me) = self.me() else {
            return vec![("this node".into(), "state unavailable".into())];
        };
        let results = join_all(nodes.iter().map(|n| async {
            let r = if n.uuid == me.uuid {
                if path == routes::TXN_STAGE {
                    self.txn_stage(t)
                } else {
                    self.txn_commit(t).await
                }
            } else {
                self.phase::<_, Message>(n, path, t).await.map(|_| ())
            };
            (n.host.clone(), r)
        }))
        .await;
        results
            .into_iter()
            .filter_map(|(h, r)| r.err().map(|e| (h, e)))
            .collect()
    }

    /// Stages on every node; the error names each node that refused.
    pub async fn stage_all(&self, nodes: &[NodeInfo], t: &TxnOp) -> Result<(), String> {
        let failed = self.all(nodes, routes::TXN_STAGE, t).await;
        if failed.is_empty() {
            return Ok(());
        }
        let why: Vec<String> = failed
            .iter()
            .map(|(h, e)| format!("staging failed on {h}: {e}"))
            .collect();
        Err(why.join("; "))
    }

    /// Commits on every node; the error names each node that failed.
    pub async fn commit_all(&self, nodes: &[NodeInfo], t: &TxnOp) -> Result<(), String> {
        let failed = self.all(nodes, routes::TXN_COMMIT, t).await;
        if !failed.is_empty() {
            let why: Vec<String> = failed
                .iter()
                .map(|(h, e)| format!("commit failed on {h}: {e}"))
                .collect();
            return Err(format!(
                "{} (the other nodes committed; the failed ones catch up when they are reachable)",
                why.join("; ")
            ));
        }
        Ok(())
    }

    /// Stages on every node, then commits on every node.
    pub async fn stage_and_commit(&self, nodes: &[NodeInfo], t: &TxnOp) -> Result<(), String> {
        self.stage_all(nodes, t).await?;
        self.commit_all(nodes, t).await
    }

    /// The nodes a transaction runs on: this node and every peer not known to be down,
    /// provided they are a majority of the pool (server quorum), so a node cut off from the
    /// others cannot change the configuration alone. Nodes left out catch up by version
    /// later; a node that is included but does not answer fails the transaction by name.
    pub fn participants(&self) -> Result<Vec<NodeInfo>, String> {
        let me = self.me()?;
        let all = self.config()?.nodes;
        let up: Vec<NodeInfo> = all
            .iter()
            .filter(|n| n.uuid == me.uuid || self.reachability(&n.uuid) != Some(false))
            .cloned()
            .collect();
        if up.len() * 2 <= all.len() {
            let down: Vec<&str> = all
                .iter()
                .filter(|n| !up.iter().any(|u| u.uuid == n.uuid))
                .map(|n| n.host.as_str())
                .collect();
            return Err(format!(
                "only {} of {} nodes are connected (not connected: {}): configuration changes need a majority",
                up.len(),
                all.len(),
                down.join(", ")
            ));
        }
        Ok(up)
    }

    /// Runs a whole transaction over the connected nodes of the pool. `build` makes the op
    /// from the locked configuration and the new version.
    pub async fn transact(
        &self,
        what: String,
        force: bool,
        build: impl FnOnce(&ClusterConfig, u64) -> Result<Op, String>,
    ) -> Result<(), String> {
        let nodes = self.participants()?;
        let lock = TxnLock {
            txn: uuid::Uuid::new_v4().to_string(),
            origin: self.me()?,
            what,
        };
        let version = self.lock_all(&nodes, &lock).await? + 1;
        let result = async {
            let op = build(&self.config()?, version)?;
            let new_bricks = match &op {
                Op::CreateVolume(v) => v.bricks.as_slice(),
                Op::AddBrick { bricks, .. } => bricks.as_slice(),
                _ => &[],
            };
            if let Some(b) = new_bricks
                .iter()
                .find(|b| !nodes.iter().any(|n| n.host == b.host))
            {
                return Err(format!(
                    "host {} of brick {} is not connected",
                    b.host,
                    b.spec()
                ));
            }
            let t = TxnOp {
                txn: lock.txn.clone(),
                op,
                version,
                force,
            };
            self.stage_and_commit(&nodes, &t).await
        }
        .await;
        self.unlock_all(&nodes, &lock).await;
        result
    }
}
