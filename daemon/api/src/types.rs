//! Request and reply types of the management API.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A short human message (the reply of most changes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// What happened.
    pub message: String,
}

impl Message {
    /// A message.
    pub fn new(m: impl Into<String>) -> Message {
        Message { message: m.into() }
    }
}

/// This node, as `GET /v1/node` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's uuid.
    pub uuid: String,
    /// The host name or address other nodes and clients use.
    pub host: String,
    /// The management port.
    pub port: u16,
    /// The cluster configuration version this node has.
    pub config_version: u64,
    /// Nodes in its pool, itself included.
    pub pool_size: usize,
}

/// A node of the pool, with whether this node can reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolEntry {
    /// The node's uuid.
    pub uuid: String,
    /// Its host.
    pub host: String,
    /// Its management port.
    pub port: u16,
    /// Reachable from the node that answered.
    pub connected: bool,
    /// The node that answered.
    pub is_self: bool,
}

/// `peer probe HOST[:PORT]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerProbe {
    /// `host` or `host:port`.
    pub host: String,
}

/// `peer detach HOST[:PORT] [force]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerDetach {
    /// `host` or `host:port`.
    pub host: String,
    /// Remove the node even if it cannot be reached.
    pub force: bool,
}

/// `force` for start/stop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Force {
    /// Skip checks that can be skipped.
    #[serde(default)]
    pub force: bool,
}

/// `volume create`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeCreate {
    /// The volume name.
    pub name: String,
    /// Copies of each file (1: no replication).
    pub replica: u32,
    /// The last brick of each replica set keeps names and metadata only (replica 3).
    pub arbiter: bool,
    /// `HOST:/PATH`, in order; consecutive bricks form the replica sets.
    pub bricks: Vec<String>,
    /// Accept what is refused by default (replica bricks on one host, bricks on the root
    /// filesystem).
    pub force: bool,
}

/// Whether a volume is serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeState {
    /// Created, never started.
    Created,
    /// Bricks are running.
    Started,
    /// Bricks were stopped.
    Stopped,
}

impl fmt::Display for VolumeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VolumeState::Created => "Created",
            VolumeState::Started => "Started",
            VolumeState::Stopped => "Stopped",
        })
    }
}

/// How files are spread over bricks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeKind {
    /// One copy of each file; files hashed over the bricks.
    Distribute,
    /// One replica set.
    Replicate,
    /// Several replica sets; files hashed over the sets.
    DistributedReplicate,
}

impl fmt::Display for VolumeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VolumeKind::Distribute => "Distribute",
            VolumeKind::Replicate => "Replicate",
            VolumeKind::DistributedReplicate => "Distributed-Replicate",
        })
    }
}

/// A brick of a volume, as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrickConfig {
    /// Unique within the volume (`brick-0`, `brick-1`, ...).
    pub id: String,
    /// The node's host.
    pub host: String,
    /// The brick directory on that node.
    pub path: String,
    /// The TCP port its brick process listens on (fixed at creation).
    pub port: u16,
    /// Holds names and metadata only.
    pub arbiter: bool,
    /// Stopped for maintenance (`volume reset-brick ... start`).
    #[serde(default)]
    pub disabled: bool,
}

impl BrickConfig {
    /// `HOST:/PATH`.
    pub fn spec(&self) -> String {
        format!("{}:{}", self.host, self.path)
    }
}

/// A volume's whole configuration, as every node stores it (with its secret: never sent to
/// anyone outside the pool except inside a client volfile).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeConfig {
    /// The name.
    pub name: String,
    /// A uuid, stamped on every brick.
    pub id: String,
    /// Copies per replica set.
    pub replica: u32,
    /// Replica sets end with an arbiter brick.
    pub arbiter: bool,
    /// The bricks, replica sets consecutive.
    pub bricks: Vec<BrickConfig>,
    /// Serving or not.
    pub state: VolumeState,
    /// Options set by the operator (key → value); the rest are defaults.
    pub options: BTreeMap<String, String>,
    /// Shared by the bricks and the clients that fetched the volfile.
    pub secret: String,
    /// The configuration version of the last change to this volume (clients watch it).
    pub version: u64,
    /// Bricks (ids, whole replica sets) a `remove-brick start` is draining: they take no new
    /// files, and their files move to the other sets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<String>,
}

impl VolumeConfig {
    /// How the volume spreads files.
    pub fn kind(&self) -> VolumeKind {
        let groups = self.bricks.len() / (self.replica.max(1) as usize);
        match (self.replica > 1, groups > 1) {
            (false, _) => VolumeKind::Distribute,
            (true, false) => VolumeKind::Replicate,
            (true, true) => VolumeKind::DistributedReplicate,
        }
    }

    /// What `volume info` shows.
    pub fn info(&self) -> VolumeInfo {
        VolumeInfo {
            name: self.name.clone(),
            id: self.id.clone(),
            kind: self.kind(),
            state: self.state,
            replica: self.replica,
            arbiter: self.arbiter,
            bricks: self.bricks.clone(),
            options: self.options.clone(),
            removing: self.removing.clone(),
        }
    }
}

/// `volume info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// The name.
    pub name: String,
    /// The volume id.
    pub id: String,
    /// Distribute / Replicate / Distributed-Replicate.
    pub kind: VolumeKind,
    /// Created / Started / Stopped.
    pub state: VolumeState,
    /// Copies per replica set.
    pub replica: u32,
    /// With arbiter bricks.
    pub arbiter: bool,
    /// The bricks.
    pub bricks: Vec<BrickConfig>,
    /// Options changed from their defaults.
    pub options: BTreeMap<String, String>,
    /// Bricks (ids) a remove-brick is draining.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<String>,
}

/// `volume set`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionSet {
    /// The option key (`network.ping-timeout`).
    pub key: String,
    /// The new value.
    pub value: String,
}

/// `volume reset VOL [KEY]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionReset {
    /// One key, or all options when `None`.
    pub key: Option<String>,
}

/// One option of a volume (`volume get`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionEntry {
    /// The key.
    pub key: String,
    /// The value in effect.
    pub value: String,
    /// The default.
    pub default: String,
    /// True when the value is the default (not set).
    pub is_default: bool,
    /// What it does.
    pub doc: String,
}

/// A declared volume option (`GET /v1/options`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionDecl {
    /// The key.
    pub key: String,
    /// Its type and range, in words.
    pub kind: String,
    /// The default.
    pub default: String,
    /// What it does.
    pub doc: String,
    /// The translator it configures (`protocol/client`, ...), or `cairnd`.
    pub translator: String,
}

/// Disk figures of a brick (`volume status VOL detail`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrickDetail {
    /// Filesystem size in bytes.
    pub total_bytes: u64,
    /// Free bytes.
    pub free_bytes: u64,
    /// Total inodes.
    pub total_inodes: u64,
    /// Free inodes.
    pub free_inodes: u64,
}

/// The state of one brick process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrickStatus {
    /// Its volume.
    pub volume: String,
    /// Its id.
    pub brick_id: String,
    /// Its node's host.
    pub host: String,
    /// Its directory.
    pub path: String,
    /// Its port.
    pub port: u16,
    /// The process id, when running.
    pub pid: Option<u32>,
    /// Running and accepting connections.
    pub online: bool,
    /// With `detail`.
    pub detail: Option<BrickDetail>,
    /// Client connections, with `clients` (address of each).
    pub clients: Option<Vec<String>>,
}

/// `volume status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeStatus {
    /// The volume.
    pub name: String,
    /// Its state.
    pub state: VolumeState,
    /// Every brick; bricks of unreachable nodes are shown offline.
    pub bricks: Vec<BrickStatus>,
}

/// A node's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its uuid (generated once, at first start).
    pub uuid: String,
    /// Host name or address.
    pub host: String,
    /// Management port.
    pub port: u16,
}

impl NodeInfo {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Everything the pool agrees on, versioned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Incremented by every committed change; a node that was away catches up from a peer
    /// with a higher version.
    pub version: u64,
    /// Every node of the pool.
    pub nodes: Vec<NodeInfo>,
    /// Every volume.
    pub volumes: Vec<VolumeConfig>,
}

/// Sent by a prober to the node it adds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The prober.
    pub from: NodeInfo,
    /// The pool's secret, which the new node adopts.
    pub pool_secret: String,
    /// The host name the prober used to reach the new node (the new node's address in the pool).
    pub your_host: String,
    /// The pool's configuration, with the new node already in `nodes`.
    pub config: ClusterConfig,
}

/// The joining node's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinReply {
    /// The joining node.
    pub node: NodeInfo,
}

/// Transaction lock request and release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnLock {
    /// The transaction's id.
    pub txn: String,
    /// The node driving it.
    pub origin: NodeInfo,
    /// What it does, for "another transaction is in progress" messages.
    pub what: String,
}

/// A granted lock, with the version the node has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnLocked {
    /// The node.
    pub node: NodeInfo,
    /// Its configuration version.
    pub version: u64,
}

/// One change to the cluster configuration. Every node applies the same op the same way,
/// so all identifiers (volume id, secret, brick ids, ports) are chosen by the node that
/// drives the transaction and travel inside the op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A node joined.
    AddNode(NodeInfo),
    /// A node left.
    RemoveNode {
        /// Its uuid.
        uuid: String,
    },
    /// A new volume.
    CreateVolume(VolumeConfig),
    /// Start a volume's bricks.
    StartVolume {
        /// The volume.
        name: String,
        /// Start even if already started (restarts missing bricks).
        force: bool,
    },
    /// Stop a volume's bricks.
    StopVolume {
        /// The volume.
        name: String,
        /// Stop even if some node fails to.
        force: bool,
    },
    /// Remove a stopped volume.
    DeleteVolume {
        /// The volume.
        name: String,
    },
    /// A brick moves to a new host or directory (keeping its id); heal rebuilds it.
    ReplaceBrick {
        /// The volume.
        name: String,
        /// The brick's id.
        brick_id: String,
        /// Its new place.
        new: BrickConfig,
    },
    /// A brick is stopped for maintenance (`start`) or re-initialised and started again
    /// (`commit`); heal rebuilds it.
    ResetBrick {
        /// The volume.
        name: String,
        /// The brick's id.
        brick_id: String,
        /// True: commit (re-initialise and start); false: start (stop the brick).
        commit: bool,
    },
    /// New bricks (whole replica sets) join a volume; distribute gives them new files once
    /// directories are laid out again (`rebalance fix-layout`).
    AddBrick {
        /// The volume.
        name: String,
        /// The new bricks, ids and ports chosen.
        bricks: Vec<BrickConfig>,
    },
    /// `remove-brick start`: whole replica sets start draining (they take no new files; a
    /// drain run moves their files to the other sets).
    RemoveBrickStart {
        /// The volume.
        name: String,
        /// The ids of the leaving bricks.
        bricks: Vec<String>,
    },
    /// `remove-brick stop`: the draining sets stay and take new files again.
    RemoveBrickStop {
        /// The volume.
        name: String,
    },
    /// `remove-brick commit`: the drained sets leave the volume (their directories stay on
    /// disk, untouched).
    RemoveBrickCommit {
        /// The volume.
        name: String,
    },
    /// Set or reset options.
    SetOptions {
        /// The volume.
        name: String,
        /// Options to set.
        set: BTreeMap<String, String>,
        /// Options to reset to their defaults (all when `reset_all`).
        reset: Vec<String>,
        /// Reset every option.
        reset_all: bool,
    },
}

impl Op {
    /// A short description for logs and lock messages.
    pub fn describe(&self) -> String {
        match self {
            Op::AddNode(n) => format!("peer probe {}", n.host),
            Op::RemoveNode { uuid } => format!("peer detach {uuid}"),
            Op::CreateVolume(v) => format!("volume create {}", v.name),
            Op::StartVolume { name, .. } => format!("volume start {name}"),
            Op::StopVolume { name, .. } => format!("volume stop {name}"),
            Op::DeleteVolume { name } => format!("volume delete {name}"),
            Op::SetOptions { name, .. } => format!("volume set/reset {name}"),
            Op::ReplaceBrick { name, brick_id, .. } => {
                format!("volume replace-brick {name} {brick_id}")
            }
            Op::ResetBrick { name, brick_id, .. } => {
                format!("volume reset-brick {name} {brick_id}")
            }
            Op::AddBrick { name, bricks } => {
                format!("volume add-brick {name} ({} bricks)", bricks.len())
            }
            Op::RemoveBrickStart { name, bricks } => {
                format!("volume remove-brick {name} {} start", bricks.join(" "))
            }
            Op::RemoveBrickStop { name } => format!("volume remove-brick {name} stop"),
            Op::RemoveBrickCommit { name } => format!("volume remove-brick {name} commit"),
        }
    }
}

/// A transaction phase carrying its op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOp {
    /// The transaction id.
    pub txn: String,
    /// The change.
    pub op: Op,
    /// The version the configuration gets when this commits.
    pub version: u64,
    /// The operator's `force`: skips the checks that may be skipped (e.g. bricks on the
    /// root filesystem).
    pub force: bool,
}

/// `volume heal VOL [full]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealRequest {
    /// Crawl the whole volume instead of the index.
    #[serde(default)]
    pub full: bool,
}

/// One entry waiting for heal on a brick.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealEntry {
    /// The object's gfid.
    pub gfid: String,
    /// Its path in the volume when the brick can tell (directories), else `<gfid:...>`.
    pub path: String,
    /// The last heal found its copies in split-brain.
    pub split_brain: bool,
}

/// Heal state of one brick (`volume heal VOL info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrickHealInfo {
    /// `host:/path`.
    pub brick: String,
    /// Whether its node answered.
    pub connected: bool,
    /// Entries in its index.
    pub entries: Vec<HealEntry>,
}

/// Heal figures of one node's worker for a volume (`volume heal VOL statistics`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealStats {
    /// The node.
    pub host: String,
    /// Heal passes run.
    pub runs: u64,
    /// Is a pass running now.
    pub running: bool,
    /// Start of the last pass (seconds since the epoch).
    pub last_start: u64,
    /// Length of the last pass in milliseconds.
    pub last_duration_ms: u64,
    /// Last pass was a full crawl.
    pub last_full: bool,
    /// Objects healed (all passes).
    pub healed: u64,
    /// Bytes copied (all passes).
    pub bytes: u64,
    /// Heals that failed (all passes).
    pub failed: u64,
    /// Index entries left on this node's bricks after the last pass.
    pub pending: u64,
    /// Objects the last pass found in split-brain.
    pub split_brain: Vec<String>,
}

/// A file a scrub found damaged and could not repair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubFinding {
    /// Its path in the volume.
    pub path: String,
    /// Its gfid.
    pub gfid: String,
    /// The brick holding the damaged copy (`host:/path`).
    pub brick: String,
    /// Why it is not repaired (yet).
    pub reason: String,
}

/// One node's scrubber for a volume (`volume bitrot VOL scrub status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubStatus {
    /// The node.
    pub host: String,
    /// `running`, `idle`, `paused` or `disabled`.
    pub state: String,
    /// `features.scrub-throttle` in effect.
    pub throttle: String,
    /// `features.scrub-frequency` in effect.
    pub frequency: String,
    /// Completed runs.
    pub runs: u64,
    /// Files checked in the current (or last) run.
    pub files: u64,
    /// Bytes read in the current (or last) run.
    pub bytes: u64,
    /// Files the last complete run checked (what the current run's progress is measured
    /// against; 0 before the first).
    pub files_previous_run: u64,
    /// Files signed by scrubs (quiet files found without a signature), all runs.
    pub signed: u64,
    /// Files skipped because they were being written or not yet signed, current run.
    pub skipped: u64,
    /// Damaged copies found, all runs.
    pub corrupt: u64,
    /// Damaged copies rebuilt from a good copy, all runs.
    pub repaired: u64,
    /// Damaged files not (yet) repaired.
    pub unrepaired: Vec<ScrubFinding>,
    /// Start of the current or last run (seconds since the epoch; 0: never).
    pub last_start: u64,
    /// End of the last run (0: never).
    pub last_end: u64,
    /// When the next scheduled run starts.
    pub next_run: u64,
}

/// `volume heal VOL split-brain ...`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitBrainResolve {
    /// `bigger-file`, `latest-mtime` or `source-brick`.
    pub policy: String,
    /// The file, as a path in the volume (required but for source-brick).
    pub path: Option<String>,
    /// `HOST:/PATH` of the brick whose copy wins (source-brick).
    pub brick: Option<String>,
}

/// `volume add-brick VOL [replica N [arbiter 1]] HOST:/PATH... [force]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddBrick {
    /// The replica count the command gave (it must be the volume's), if any.
    pub replica: Option<u32>,
    /// `HOST:/PATH`, in order; every `replica` consecutive bricks form a new set.
    pub bricks: Vec<String>,
    /// Accept what is refused by default (as for create).
    pub force: bool,
}

/// `volume replace-brick VOL OLD NEW commit force`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceBrick {
    /// `HOST:/PATH` of the brick to replace.
    pub old: String,
    /// `HOST:/PATH` of its replacement.
    pub new: String,
}

/// `volume reset-brick VOL BRICK start` / `... BRICK BRICK commit [force]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetBrick {
    /// `HOST:/PATH` of the brick.
    pub brick: String,
    /// `start` (stop it for maintenance) or `commit` (re-initialise and start it).
    pub commit: bool,
    /// Accept a brick directory on the root filesystem.
    #[serde(default)]
    pub force: bool,
}

/// `volume rebalance VOL fix-layout start | start | stop | status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalanceRequest {
    /// `fix-layout-start`, `start`, `stop` or `status`.
    pub action: String,
}

/// `volume remove-brick VOL HOST:/PATH... start | status | stop | commit [force]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveBrick {
    /// The leaving bricks, `HOST:/PATH` (whole replica sets).
    pub bricks: Vec<String>,
    /// `start`, `status`, `stop` or `commit`.
    pub action: String,
    /// `commit force`: commit although the drain did not finish (files still on the
    /// leaving bricks are no longer part of the volume).
    #[serde(default)]
    pub force: bool,
}

/// What `volume remove-brick` answers: a message and the drain's status on every node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoveBrickReply {
    /// What happened.
    pub message: String,
    /// The drain run, per node.
    pub nodes: Vec<RebalanceStatus>,
}

/// The state of a rebalance run, as the node that runs it reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RebalanceStatus {
    /// The volume.
    pub volume: String,
    /// The node running it.
    pub node: String,
    /// `fix-layout`, `rebalance` (fix-layout and migration of files) or `remove-brick`
    /// (a drain of leaving replica sets).
    pub kind: String,
    /// `not started`, `in progress`, `completed`, `stopped` or `failed`.
    pub state: String,
    /// Directories visited.
    pub dirs_scanned: u64,
    /// Directories whose layout was rewritten.
    pub dirs_changed: u64,
    /// Directories that could not be laid out.
    pub failures: u64,
    /// Share of the hash ring that changed group, averaged over the directories rewritten.
    pub moved_share: f64,
    /// Files looked at (rebalance start).
    #[serde(default)]
    pub files_scanned: u64,
    /// Files moved to their new replica set.
    #[serde(default)]
    pub files_migrated: u64,
    /// Files left where they are (hard links, symlinks, busy names), still reachable.
    #[serde(default)]
    pub files_skipped: u64,
    /// Files that could not be moved (errors; see the log).
    #[serde(default)]
    pub files_failed: u64,
    /// Bytes of contents moved.
    #[serde(default)]
    pub bytes_migrated: u64,
    /// Rough seconds left, from the share of directories done (0 when unknown).
    #[serde(default)]
    pub estimate_secs: f64,
    /// Seconds since the run started (until it ended).
    pub elapsed_secs: f64,
    /// What went wrong, or a note.
    pub message: String,
    /// Share of the directory tree walked (0..=1; the tree's size is learnt as it goes).
    #[serde(default)]
    pub progress: f64,
    /// A remove-brick drain: the leaving bricks (ids) it emptied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bricks: Vec<String>,
    /// A remove-brick drain: files still on the leaving bricks when it ended.
    #[serde(default)]
    pub files_remaining: u64,
}
