//! Every route of the management API.
//!
//! | method | path | body → reply | who |
//! | --- | --- | --- | --- |
//! | GET | `/v1/node` | → [`NodeStatus`](crate::NodeStatus) | anyone |
//! | GET | `/v1/pool` | → `Vec<`[`PoolEntry`](crate::PoolEntry)`>` | anyone |
//! | POST | `/v1/peers/probe` | [`PeerProbe`](crate::PeerProbe) → [`Message`](crate::Message) | admin |
//! | POST | `/v1/peers/detach` | [`PeerDetach`](crate::PeerDetach) → [`Message`](crate::Message) | admin |
//! | GET | `/v1/volumes` | → `Vec<`[`VolumeInfo`](crate::VolumeInfo)`>` | anyone |
//! | POST | `/v1/volumes` | [`VolumeCreate`](crate::VolumeCreate) → [`VolumeInfo`](crate::VolumeInfo) | admin |
//! | GET | `/v1/volumes/{name}` | → [`VolumeInfo`](crate::VolumeInfo) | anyone |
//! | DELETE | `/v1/volumes/{name}` | → [`Message`](crate::Message) | admin |
//! | POST | `/v1/volumes/{name}/start` | [`Force`](crate::Force) → [`Message`](crate::Message) | admin |
//! | POST | `/v1/volumes/{name}/stop` | [`Force`](crate::Force) → [`Message`](crate::Message) | admin |
//! | GET | `/v1/volumes/{name}/status` | `?detail=true&clients=true` → [`VolumeStatus`](crate::VolumeStatus) | anyone |
//! | GET | `/v1/volumes/{name}/options` | → `Vec<`[`OptionEntry`](crate::OptionEntry)`>` | anyone |
//! | GET | `/v1/volumes/{name}/options/{key}` | → [`OptionEntry`](crate::OptionEntry) | anyone |
//! | POST | `/v1/volumes/{name}/options` | [`OptionSet`](crate::OptionSet) → [`Message`](crate::Message) | admin |
//! | POST | `/v1/volumes/{name}/reset` | [`OptionReset`](crate::OptionReset) → [`Message`](crate::Message) | admin |
//! | GET | `/v1/volumes/{name}/volfile` | `?role=client&wait_version=N` → YAML text | `auth.allow` |
//! | GET | `/v1/options` | → `Vec<`[`OptionDecl`](crate::OptionDecl)`>` | anyone |
//! | POST | `/v1/volumes/{name}/rebalance` | [`RebalanceRequest`](crate::RebalanceRequest) → [`RebalanceStatus`](crate::RebalanceStatus) | admin |
//! | POST | `/v1/volumes/{name}/add-brick` | [`AddBrick`](crate::AddBrick) → [`Message`](crate::Message) | admin |
//! | POST | `/v1/volumes/{name}/replace-brick` | [`ReplaceBrick`](crate::ReplaceBrick) → [`Message`](crate::Message) | admin |
//! | POST | `/v1/volumes/{name}/reset-brick` | [`ResetBrick`](crate::ResetBrick) → [`Message`](crate::Message) | admin |
//! | POST | `/v1/volumes/{name}/heal` | [`HealRequest`](crate::HealRequest) → [`Message`](crate::Message) | admin |
//! | GET | `/v1/volumes/{name}/heal/info` | → `Vec<`[`BrickHealInfo`](crate::BrickHealInfo)`>` | anyone |
//! | GET | `/v1/volumes/{name}/heal/statistics` | → `Vec<`[`HealStats`](crate::HealStats)`>` | anyone |
//! | POST | `/v1/volumes/{name}/heal/split-brain` | [`SplitBrainResolve`](crate::SplitBrainResolve) → [`Message`](crate::Message) | admin |
//! | POST | `/v1/peer/heal-kick/{name}` | [`HealRequest`](crate::HealRequest) → [`Message`](crate::Message) | pool |
//! | GET | `/v1/peer/heal-info/{name}` | → `Vec<`[`BrickHealInfo`](crate::BrickHealInfo)`>` (this node's) | anyone |
//! | GET | `/v1/peer/heal-stats/{name}` | → [`HealStats`](crate::HealStats) (this node's) | anyone |
//! | POST | `/v1/peer/join` | [`JoinRequest`](crate::JoinRequest) → [`JoinReply`](crate::JoinReply) | a node joining a pool |
//! | GET | `/v1/peer/state` | → [`ClusterConfig`](crate::ClusterConfig) | pool |
//! | GET | `/v1/peer/bricks` | → `Vec<`[`BrickStatus`](crate::BrickStatus)`>` (this node's) | anyone |
//! | POST | `/v1/txn/lock` | [`TxnLock`](crate::TxnLock) → [`TxnLocked`](crate::TxnLocked) | pool |
//! | POST | `/v1/txn/stage` | [`TxnOp`](crate::TxnOp) → [`Message`](crate::Message) | pool |
//! | POST | `/v1/txn/commit` | [`TxnOp`](crate::TxnOp) → [`Message`](crate::Message) | pool |
//! | POST | `/v1/txn/unlock` | [`TxnLock`](crate::TxnLock) → [`Message`](crate::Message) | pool |
//!
//! "admin": the local CLI over the Unix socket, or a pool member with the pool secret.

/// This node.
pub const NODE: &str = "/v1/node";
/// The pool, this node included.
pub const POOL: &str = "/v1/pool";
/// Add a node to the pool.
pub const PEER_PROBE: &str = "/v1/peers/probe";
/// Remove a node from the pool.
pub const PEER_DETACH: &str = "/v1/peers/detach";
/// Volumes (list, create).
pub const VOLUMES: &str = "/v1/volumes";
/// The option table.
pub const OPTIONS: &str = "/v1/options";
/// A node asks to join (sent by the prober to the probed node).
pub const PEER_JOIN: &str = "/v1/peer/join";
/// The whole cluster configuration (for catching up).
pub const PEER_STATE: &str = "/v1/peer/state";
/// This node's bricks.
pub const PEER_BRICKS: &str = "/v1/peer/bricks";
/// Transaction phase: lock.
pub const TXN_LOCK: &str = "/v1/txn/lock";
/// Transaction phase: stage.
pub const TXN_STAGE: &str = "/v1/txn/stage";
/// Transaction phase: commit.
pub const TXN_COMMIT: &str = "/v1/txn/commit";
/// Transaction phase: unlock.
pub const TXN_UNLOCK: &str = "/v1/txn/unlock";

/// `/v1/peer/heal-kick/{name}`.
pub fn peer_heal_kick(name: &str) -> String {
    format!("/v1/peer/heal-kick/{}", encode(name))
}

/// `/v1/peer/heal-info/{name}`.
pub fn peer_heal_info(name: &str) -> String {
    format!("/v1/peer/heal-info/{}", encode(name))
}

/// `/v1/peer/heal-stats/{name}`.
pub fn peer_heal_stats(name: &str) -> String {
    format!("/v1/peer/heal-stats/{}", encode(name))
}

/// `/v1/peer/scrub-status/{name}`: this node's scrubber of a volume.
pub fn peer_scrub_status(name: &str) -> String {
    format!("/v1/peer/scrub-status/{}", encode(name))
}

/// `/v1/peer/scrub-kick/{name}`: start an on-demand scrub on this node.
pub fn peer_scrub_kick(name: &str) -> String {
    format!("/v1/peer/scrub-kick/{}", encode(name))
}

/// `/v1/peer/rebalance/{name}`: this node's rebalance or drain run of a volume.
pub fn peer_rebalance(name: &str) -> String {
    format!("/v1/peer/rebalance/{}", encode(name))
}

/// `/v1/volumes/{name}`.
pub fn volume(name: &str) -> String {
    format!("/v1/volumes/{}", encode(name))
}

/// `/v1/volumes/{name}/{what}`.
pub fn volume_sub(name: &str, what: &str) -> String {
    format!("/v1/volumes/{}/{what}", encode(name))
}

/// `/v1/volumes/{name}/options/{key}`.
pub fn volume_option(name: &str, key: &str) -> String {
    format!("/v1/volumes/{}/options/{}", encode(name), encode(key))
}

/// Percent-encodes a path segment (volume names and option keys are plain, but be safe).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
