//! `cluster/replicate`: keeps the same files on every brick of a replica set.
//!
//! - **Writes** go to every brick in parallel, after a client-quorum check: without quorum a
//!   change fails with `ENOTCONN` and nothing is sent to the minority. How locks, dirty marks
//!   and blame keep round trips few is in [`txn`].
//! - **Reads** go to one brick that nobody blames (`read-policy`: first-up, hashed by gfid,
//!   or least-latency), failing over to another on `ENOTCONN`.
//! - **Lookups** ask every brick at once, with the replication counters in the same round
//!   trip; copies with different gfids are a split-brain (`EIO`); a copy another brick blames
//!   is not read from. What a lookup learns is kept per inode.
//! - **Arbiter** (`arbiter-count: 1`): the last brick keeps names and metadata only; it
//!   counts for quorum but never receives data and is never read from.

mod create;
pub mod heal;
mod remove;
pub mod txn;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};
use tokio::task::JoinHandle;

use crate::error::{FopError, FopResult};
use crate::features::bitrot::XATTR_BAD;
use crate::features::index::{AFR_PREFIX, DATA, ENTRY, METADATA, read_counters};
use crate::graph::{BuildCtx, TranslatorType};
use crate::performance::quick_read;
use crate::types::*;
use crate::wire::{Batch, CompoundResult, Reply, Request};
use crate::xlator::{Event, Translator, XlatorBase, XlatorRef};
use txn::{Changelog, Outcome, blame, dirty, entry_change, inode_change, pending_key};

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "arbiter-count",
        kind: OptionKind::Int { min: 0, max: 1 },
        default: Some("0"),
        doc: "1: the last subvolume is an arbiter (names and metadata only).",
    },
    OptionSpec {
        key: "quorum-type",
        kind: OptionKind::Enum(&["auto", "fixed", "none"]),
        default: Some("auto"),
        doc: "auto: a majority of the bricks must be up to change anything (with an even count, half including the first); fixed: quorum-count bricks; none: one brick.",
    },
    OptionSpec {
        key: "quorum-count",
        kind: OptionKind::Int { min: 1, max: 64 },
        default: Some("1"),
        doc: "Bricks that must be up to change anything, with quorum-type fixed.",
    },
    OptionSpec {
        key: "read-policy",
        kind: OptionKind::Enum(&["first-up", "hashed", "least-latency"]),
        default: Some("first-up"),
        doc: "Which good brick serves reads: the first up, one chosen by the file's gfid (spreads load), or the fastest lately.",
    },
    OptionSpec {
        key: "eager-lock-idle",
        kind: OptionKind::Duration {
            min_ms: 10,
            max_ms: 60_000,
        },
        default: Some("1s"),
        doc: "An open file keeps its write lock this long after its last write (so a second writer waits at most this long).",
    },
    OptionSpec {
        key: "heal-on-access",
        kind: OptionKind::Bool,
        default: Some("on"),
        doc: "A lookup that finds a copy blamed by others heals that file in the background (reads never wait for it).",
    },
    OptionSpec {
        key: "favorite-child-policy",
        kind: OptionKind::Enum(&["none", "size", "mtime", "majority"]),
        default: Some("none"),
        doc: "How heal settles a split-brain by itself: none (report it), size (biggest copy), mtime (newest copy), majority (the contents most copies agree on).",
    },
    OptionSpec {
        key: "changelog-flush",
        kind: OptionKind::Duration {
            min_ms: 10,
            max_ms: 60_000,
        },
        default: Some("500ms"),
        doc: "How often cleared dirty marks are sent to the bricks, in batches.",
    },
];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "cluster/replicate",
        arity: Arity::AtLeast(1),
        roles: &[Role::Client],
        maturity: Maturity::Stable,
        options: OPTIONS,
        doc: "Keeps a copy of every file on each subvolume: parallel writes under client quorum, reads from one good copy, dirty marks and blame for self-heal.",
    },
    build,
};

/// Client quorum rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    /// Majority (half including the first brick for even counts).
    Auto,
    /// At least this many.
    Fixed(usize),
    /// One is enough.
    None,
}

/// Read brick choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPolicy {
    /// The first good brick that is up.
    FirstUp,
    /// A good brick chosen from the gfid.
    Hashed,
    /// The good brick with the lowest recent read latency.
    LeastLatency,
}

/// Settings.
#[derive(Clone, Debug)]
pub struct AfrConfig {
    /// The last child is an arbiter.
    pub arbiter: bool,
    /// Client quorum.
    pub quorum: Quorum,
    /// Read brick choice.
    pub read_policy: ReadPolicy,
    /// Eager lock idle time.
    pub eager_idle: Duration,
    /// Batched clearing period.
    pub flush_every: Duration,
    /// Heal blamed files found by lookups.
    pub heal_on_access: bool,
    /// Split-brain policy.
    pub favorite_child: heal::Resolve,
}

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let o = ctx.options;
    let e = |e: cairn_volfiles::OptionError| e.to_string();
    let quorum = match o.str("quorum-type").map_err(e)? {
        "fixed" => Quorum::Fixed(usize::try_from(o.int("quorum-count").map_err(e)?).unwrap_or(1)),
        "none" => Quorum::None,
        _ => Quorum::Auto,
    };
    let read_policy = match o.str("read-policy").map_err(e)? {
        "hashed" => ReadPolicy::Hashed,
        "least-latency" => ReadPolicy::LeastLatency,
        _ => ReadPolicy::FirstUp,
    };
    let arbiter = o.int("arbiter-count").map_err(e)? == 1;
    if arbiter && ctx.children.len() < 3 {
        return Err("an arbiter needs at least three subvolumes".into());
    }
    let cfg = AfrConfig {
        arbiter,
        quorum,
        read_policy,
        eager_idle: o.duration("eager-lock-idle").map_err(e)?,
        flush_every: o.duration("changelog-flush").map_err(e)?,
        heal_on_access: o.bool("heal-on-access").map_err(e)?,
        favorite_child: match o.str("favorite-child-policy").map_err(e)? {
            "size" => heal::Resolve::BiggerFile,
            "mtime" => heal::Resolve::LatestMtime,
            "majority" => heal::Resolve::Majority,
            _ => heal::Resolve::None,
        },
    };
    Ok(Afr::new_shared(ctx.name, ctx.children, cfg))
}

/// What replicate knows about one inode.
#[derive(Clone, Copy, Debug, Default)]
struct InodeCtx {
    /// Children holding a good copy (bit i = child i).
    good: u64,
    /// Every copy is blamed by another: nothing can be read until heal decides.
    split_brain: bool,
}

const INODE_CACHE_MAX: usize = 200_000;

/// Replicate's state on an open file or directory.
struct AfrFd {
    /// Opened on child i.
    opened: Vec<AtomicBool>,
    /// Why opening on child i failed (errno, 0: it did not).
    open_errno: Vec<AtomicI32>,
    /// Child i holds a data dirty mark for this fd (to clear at release).
    marked: Vec<AtomicBool>,
    /// An open on child i was tried after the fd's open (see `fix_open`).
    reopen_tried: Vec<AtomicBool>,
    /// The eager lock: held on every opened child.
    lock: tokio::sync::Mutex<bool>,
    /// Lock owner of the eager lock.
    owner: u64,
    /// Changes in flight through this fd.
    inflight: AtomicUsize,
    /// Last change, for the idle unlock.
    last_change: Mutex<Instant>,
    /// The idle-unlock task.
    idle: Mutex<Option<JoinHandle<()>>>,
    /// When the eager lock was taken (it is given up after a while even when busy).
    locked_at: Mutex<Option<Instant>>,
    /// For directories: the child readdir reads from.
    read_child: AtomicUsize,
}

const FD_KEY: &str = "cluster/replicate";

/// The replicate translator.
pub struct Afr {
    base: XlatorBase,
    children: Vec<XlatorRef>,
    names: Vec<String>,
    up: Vec<AtomicBool>,
    cfg: AfrConfig,
    inodes: Mutex<HashMap<Gfid, InodeCtx>>,
    changelog: Arc<Changelog>,
    started: Mutex<Option<Instant>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    latency_us: Vec<AtomicU64>,
    was_up: AtomicBool,
    /// This translator, for background heals.
    me: std::sync::Weak<Afr>,
    /// Inodes being healed in the background (each once).
    healing: Mutex<std::collections::HashSet<Gfid>>,
    /// Open files holding their eager lock, by inode: a metadata change from this client
    /// releases them first instead of waiting for them to go idle.
    eager: Mutex<HashMap<Gfid, Vec<std::sync::Weak<AfrFd>>>>,
}

/// Background heals one client runs at once.
const HEAL_ON_ACCESS_MAX: usize = 4;

/// How long after start replicate waits for every brick before it serves with a quorum.
const STARTUP_GRACE: Duration = Duration::from_secs(5);

impl Afr {
    /// A shared replicate node over `children` (it can start background heals).
    pub fn new_shared(name: &str, children: Vec<XlatorRef>, cfg: AfrConfig) -> Arc<Afr> {
        Arc::new_cyclic(|me| {
            let mut a = Afr::new(name, children, cfg);
            a.me = me.clone();
            a
        })
    }

    /// A replicate node over `children`.
    pub fn new(name: &str, children: Vec<XlatorRef>, cfg: AfrConfig) -> Afr {
        let names: Vec<String> = children.iter().map(|c| c.name().to_string()).collect();
        let n = children.len();
        Afr {
            base: XlatorBase::new(name, TYPE.decl.type_name, children.clone()),
            changelog: Arc::new(Changelog::new(children.clone())),
            children,
            names,
            up: (0..n).map(|_| AtomicBool::new(false)).collect(),
            cfg,
            inodes: Mutex::new(HashMap::new()),
            started: Mutex::new(None),
            flusher: Mutex::new(None),
            latency_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
            was_up: AtomicBool::new(false),
            me: std::sync::Weak::new(),
            healing: Mutex::new(std::collections::HashSet::new()),
            eager: Mutex::new(HashMap::new()),
        }
    }

    fn note_eager(&self, gfid: Gfid, a: &Arc<AfrFd>) {
        if let Ok(mut m) = self.eager.lock() {
            let v = m.entry(gfid).or_default();
            v.retain(|w| w.strong_count() > 0);
            v.push(Arc::downgrade(a));
        }
    }

    /// Releases the eager locks this client's open files hold on `gfid` (when no write is
    /// in flight through them), so that a metadata change of the same client (`cp -a`'s
    /// `fchmod`/`futimens` right after its writes) does not wait for them to go idle.
    async fn yield_eager(&self, gfid: Gfid) {
        let fds: Vec<Arc<AfrFd>> = match self.eager.lock() {
            Ok(mut m) => m
                .remove(&gfid)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|w| w.upgrade())
                .collect(),
            Err(_) => return,
        };
        for a in fds {
            let mut held = a.lock.lock().await;
            if !*held {
                continue;
            }
            if a.inflight.load(Ordering::SeqCst) != 0 {
                // Still writing: leave it; the change waits for the lock as it would for
                // another client's.
                drop(held);
                self.note_eager(gfid, &a);
                continue;
            }
            let cx = txn::with_owner(&Cx::internal(), a.owner);
            futures::future::join_all(self.children.iter().enumerate().map(|(i, c)| {
                let (a, cx) = (&a, &cx);
                async move {
                    if a.opened.get(i).is_some_and(|o| o.load(Ordering::SeqCst)) {
                        let _ = crate::wire::dispatch(
                            &**c,
                            cx,
                            txn::inodelk(gfid, LockWait::NoWait, LockType::Unlock),
                        )
                        .await;
                    }
                }
            }))
            .await;
            *held = false;
            if let Some(t) = a.idle.lock().ok().and_then(|mut t| t.take()) {
                t.abort();
            }
        }
    }

    /// A lock (or unlock) on every up brick. A waiting lock is first tried on all bricks at
    /// once without waiting; if another owner holds it somewhere, what was taken is given
    /// back and the lock is taken brick after brick in brick order — two clients locking
    /// in parallel could otherwise each hold some bricks and wait for the other's forever.
    async fn lock_everywhere(
        &self,
        cx: &Cx,
        up: &[usize],
        wait: LockWait,
        kind: LockType,
        req: &(dyn Fn(LockWait, LockType) -> Request + Sync),
    ) -> FopResult<()> {
        let done = |out: Outcome| {
            if out.ok.is_empty() {
                Err(out.error())
            } else {
                Ok(())
            }
        };
        if kind == LockType::Unlock || wait == LockWait::NoWait {
            return done(Outcome::from(
                txn::fan(&self.children, cx, up, &|_| req(wait, kind)).await,
            ));
        }
        let fast = txn::fan(&self.children, cx, up, &|_| req(LockWait::NoWait, kind)).await;
        if !fast
            .iter()
            .any(|(_, r)| r.as_ref().err().is_some_and(txn::contended))
        {
            return done(Outcome::from(fast));
        }
        let got: Vec<usize> = fast
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| *i)
            .collect();
        txn::fan(&self.children, cx, &got, &|_| {
            req(LockWait::NoWait, LockType::Unlock)
        })
        .await;
        let mut results = Vec::new();
        for &i in up {
            if let Some(c) = self.children.get(i) {
                results.push((
                    i,
                    crate::wire::dispatch(&**c, cx, req(LockWait::Wait, kind)).await,
                ));
            }
        }
        done(Outcome::from(results))
    }

    /// Takes a write inodelk in `domain` on every up brick, one brick after the other in
    /// brick order (the order replicate's own contended changes use, so the two never
    /// deadlock). Returns the bricks locked; on failure nothing stays locked.
    pub async fn lock_ordered(&self, cx: &Cx, domain: &str, gfid: Gfid) -> FopResult<Vec<usize>> {
        let mut locked = Vec::new();
        for i in self.up_children() {
            let Some(c) = self.children.get(i) else {
                continue;
            };
            let r = c
                .inodelk(
                    cx,
                    domain.to_string(),
                    Target::Loc(Loc::inode(gfid)),
                    LockWait::Wait,
                    Flock::whole(LockType::Write),
                    Xdata::new(),
                )
                .await;
            match r {
                Ok(()) => locked.push(i),
                Err(e) => {
                    self.unlock_bricks(cx, domain, gfid, &locked).await;
                    return Err(e);
                }
            }
        }
        if !self.quorum_met(&locked) {
            self.unlock_bricks(cx, domain, gfid, &locked).await;
            return Err(FopError::not_connected(format!(
                "could not lock a quorum of {}",
                self.base.name()
            )));
        }
        Ok(locked)
    }

    /// Releases what [`Afr::lock_ordered`] took.
    pub async fn unlock_bricks(&self, cx: &Cx, domain: &str, gfid: Gfid, bricks: &[usize]) {
        for &i in bricks {
            if let Some(c) = self.children.get(i) {
                let _ = c
                    .inodelk(
                        cx,
                        domain.to_string(),
                        Target::Loc(Loc::inode(gfid)),
                        LockWait::Wait,
                        Flock::whole(LockType::Unlock),
                        Xdata::new(),
                    )
                    .await;
            }
        }
    }

    /// The split-brain policy from the options.
    pub fn favorite_child(&self) -> &heal::Resolve {
        &self.cfg.favorite_child
    }

    /// Which children are up.
    pub fn up_set(&self) -> Vec<usize> {
        self.up_children()
    }

    /// The child names (the keys of the blame counters).
    pub fn child_names(&self) -> &[String] {
        &self.names
    }

    /// Starts a background heal of `gfid` (at most a few at once, each inode once).
    fn heal_in_background(&self, gfid: Gfid) {
        if !self.cfg.heal_on_access {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        {
            let Ok(mut h) = self.healing.lock() else {
                return;
            };
            if h.len() >= HEAL_ON_ACCESS_MAX || !h.insert(gfid) {
                return;
            }
        }
        tokio::spawn(async move {
            let throttle = heal::Throttle::new(0);
            let policy = me.cfg.favorite_child.clone();
            match me.heal(Loc::inode(gfid), &policy, false, &throttle).await {
                Ok(r) if !r.clean => tracing::info!(%gfid, ?r, "healed on access"),
                Ok(_) => {}
                Err(e) => tracing::debug!(%gfid, error = %e, "heal on access did not complete"),
            }
            if let Ok(mut h) = me.healing.lock() {
                h.remove(&gfid);
            }
        });
    }

    fn n(&self) -> usize {
        self.children.len()
    }

    fn is_arbiter(&self, i: usize) -> bool {
        self.cfg.arbiter && i + 1 == self.n()
    }

    fn child_up(&self, i: usize) -> bool {
        self.up.get(i).is_some_and(|u| u.load(Ordering::SeqCst))
            || self.children.get(i).is_some_and(|c| c.is_up())
    }

    fn up_children(&self) -> Vec<usize> {
        (0..self.n()).filter(|&i| self.child_up(i)).collect()
    }

    /// Whether `set` (children) satisfies client quorum.
    pub fn quorum_met(&self, set: &[usize]) -> bool {
        let n = self.n();
        match self.cfg.quorum {
            Quorum::None => !set.is_empty(),
            Quorum::Fixed(k) => set.len() >= k.min(n),
            Quorum::Auto => set.len() * 2 > n || (set.len() * 2 == n && set.contains(&0)),
        }
    }

    /// The up children, or `ENOTCONN` when they are not a quorum.
    fn quorum(&self, what: &str) -> FopResult<Vec<usize>> {
        let up = self.up_children();
        if self.quorum_met(&up) {
            Ok(up)
        } else {
            Err(FopError::not_connected(format!(
                "{what} refused: only {} of {} bricks of {} are up (client quorum not met); nothing was changed",
                up.len(),
                self.n(),
                self.base.name()
            )))
        }
    }

    fn inode(&self, gfid: Gfid) -> Option<InodeCtx> {
        self.inodes.lock().ok()?.get(&gfid).copied()
    }

    /// Forgets what lookups learnt about which copies of each file are good, as happens
    /// when the bounded table fills up; reads judge the copies again first.
    pub fn forget_verdicts(&self) {
        if let Ok(mut m) = self.inodes.lock() {
            m.clear();
        }
    }

    fn set_inode(&self, gfid: Gfid, ctx: InodeCtx) {
        if let Ok(mut m) = self.inodes.lock() {
            if m.len() >= INODE_CACHE_MAX {
                m.clear();
            }
            m.insert(gfid, ctx);
        }
    }

    /// Children `bad` no longer hold a good copy of `gfid`.
    fn demote(&self, gfid: Gfid, bad: &[usize]) {
        if let Ok(mut m) = self.inodes.lock() {
            let e = m.entry(gfid).or_insert(InodeCtx {
                good: u64::MAX,
                split_brain: false,
            });
            for &b in bad {
                e.good &= !(1u64 << b);
            }
        }
    }

    /// Children to read `gfid` from, best first.
    /// The copy a lookup asks for a file's content: where reads of it would go when its
    /// gfid is known, else one chosen by the name's hash, so that lookups of many files
    /// spread over the copies.
    fn content_child(&self, loc: &Loc, up: &[usize]) -> Option<usize> {
        if let Some(g) = loc.gfid
            && let Ok(order) = self.read_order(g, None)
        {
            return order.into_iter().find(|i| up.contains(i));
        }
        let data: Vec<usize> = up
            .iter()
            .copied()
            .filter(|&i| !self.is_arbiter(i))
            .collect();
        if data.is_empty() {
            return None;
        }
        let h = loc
            .name
            .as_deref()
            .map_or(0, |n| xxhash_rust::xxh3::xxh3_64(n.as_bytes()));
        data.get((h % data.len() as u64) as usize).copied()
    }

    fn read_order(&self, gfid: Gfid, among: Option<&[bool]>) -> FopResult<Vec<usize>> {
        let ctx = self.inode(gfid).unwrap_or(InodeCtx {
            good: u64::MAX,
            split_brain: false,
        });
        if ctx.split_brain {
            return Err(FopError::eio(format!(
                "{gfid} is in split-brain in {}: every copy is blamed by another; resolve it with volume heal ... split-brain",
                self.base.name()
            )));
        }
        let mut order: Vec<usize> = (0..self.n())
            .filter(|&i| !self.is_arbiter(i))
            .filter(|&i| ctx.good & (1u64 << i) != 0)
            .filter(|&i| among.is_none_or(|a| a.get(i).copied().unwrap_or(false)))
            .filter(|&i| self.child_up(i))
            .collect();
        if order.is_empty() {
            return Err(FopError::not_connected(format!(
                "no brick holding a good copy of {gfid} is up in {}",
                self.base.name()
            )));
        }
        match self.cfg.read_policy {
            ReadPolicy::FirstUp => {}
            ReadPolicy::Hashed => {
                let k = (gfid.ino() as usize) % order.len();
                order.rotate_left(k);
            }
            ReadPolicy::LeastLatency => {
                order.sort_by_key(|&i| {
                    self.latency_us
                        .get(i)
                        .map(|l| l.load(Ordering::Relaxed))
                        .unwrap_or(0)
                });
            }
        }
        Ok(order)
    }

    fn note_latency(&self, i: usize, took: Duration) {
        if let Some(l) = self.latency_us.get(i) {
            let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            let old = l.load(Ordering::Relaxed);
            l.store(
                if old == 0 { us } else { (old * 7 + us) / 8 },
                Ordering::Relaxed,
            );
        }
    }

    /// Runs a read-only fop on good copies until one answers.
    async fn read_from<'a, T: Send>(
        &'a self,
        gfid: Gfid,
        among: Option<&[bool]>,
        f: impl Fn(&'a XlatorRef) -> futures::future::BoxFuture<'a, FopResult<T>> + Send + Sync,
    ) -> FopResult<T> {
        if gfid != Gfid::NULL && self.inode(gfid).is_none() {
            // What a lookup learnt about which copies are good is gone (the table is
            // bounded, and a client may read through an fd long after its lookup): judge
            // the copies again rather than read one nobody judged.
            let _ = Translator::lookup(self, &Cx::internal(), Loc::inode(gfid), Xdata::new()).await;
        }
        let mut last = None;
        for i in self.read_order(gfid, among)? {
            let Some(c) = self.children.get(i) else {
                continue;
            };
            let start = Instant::now();
            match f(c).await {
                Ok(v) => {
                    self.note_latency(i, start.elapsed());
                    return Ok(v);
                }
                Err(e) if e.errno == libc::ENOTCONN => last = Some(e),
                // A copy that cannot be read (a damaged copy, a failing disk): another
                // copy may be whole. It serves no more reads of this file until a lookup
                // or heal says otherwise.
                Err(e) if e.errno == libc::EIO => {
                    tracing::warn!(%gfid, brick = %self.names.get(i).map_or("?", String::as_str), error = %e, "read failed on one copy; trying another");
                    self.demote(gfid, &[i]);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| FopError::not_connected("no good copy answered")))
    }

    fn afr_fd(&self, fd: &Fd) -> Arc<AfrFd> {
        fd.ctx::<AfrFd>(FD_KEY).unwrap_or_else(|| {
            let n = self.n();
            let a = Arc::new(AfrFd {
                opened: (0..n).map(|_| AtomicBool::new(false)).collect(),
                open_errno: (0..n).map(|_| AtomicI32::new(0)).collect(),
                marked: (0..n).map(|_| AtomicBool::new(false)).collect(),
                reopen_tried: (0..n).map(|_| AtomicBool::new(false)).collect(),
                lock: tokio::sync::Mutex::new(false),
                owner: fd.id() & !(1 << 63),
                inflight: AtomicUsize::new(0),
                last_change: Mutex::new(Instant::now()),
                idle: Mutex::new(None),
                locked_at: Mutex::new(None),
                read_child: AtomicUsize::new(usize::MAX),
            });
            fd.set_ctx(FD_KEY, Arc::clone(&a));
            a
        })
    }

    fn opened_flags(a: &AfrFd) -> Vec<bool> {
        a.opened.iter().map(|o| o.load(Ordering::SeqCst)).collect()
    }

    /// After a change: record blame for bricks that missed it, and queue the clearing of
    /// the dirty marks it left. `expected` are the children that should have applied it.
    async fn settle(
        &self,
        gfid: Gfid,
        kind: u8,
        expected: &[usize],
        out: &Outcome,
        applied: &HashMap<usize, i64>,
        clear_now: bool,
    ) {
        let good = out.good();
        let bad: Vec<usize> = expected
            .iter()
            .copied()
            .chain((0..self.n()).filter(|i| !expected.contains(i)))
            .filter(|i| !good.contains(i))
            .filter(|&i| !(kind == DATA && self.is_arbiter(i)))
            .collect();
        if !good.is_empty() && !bad.is_empty() {
            blame(&self.children, &self.names, gfid, kind, &good, &bad).await;
            self.demote(gfid, &bad);
        }
        if clear_now {
            for &g in &good {
                let n = applied.get(&g).copied().unwrap_or(1);
                self.changelog.clear_later(g, gfid, kind, n);
            }
        }
    }

    /// A data change through an open file, under the eager lock.
    async fn data_change(
        &self,
        cx: &Cx,
        fd: &Fd,
        op: &(dyn Fn(usize) -> Request + Sync),
    ) -> FopResult<Reply> {
        let up = self.quorum("write")?;
        let a = self.afr_fd(fd);
        let gfid = fd.gfid();
        let lcx = txn::with_owner(cx, a.owner);
        let mut targets = Vec::new();
        let results = {
            let mut held = a.lock.lock().await;
            if !*held {
                // Not locked yet, so a brick opened now is locked with the others.
                self.fix_open(cx, fd, &a, &up).await;
            }
            targets.extend(
                up.iter()
                    .copied()
                    .filter(|&i| a.opened.get(i).is_some_and(|o| o.load(Ordering::SeqCst)))
                    .filter(|&i| !self.is_arbiter(i)),
            );
            if targets.is_empty() {
                return Err(FopError::not_connected(
                    "the file is not open on any brick that is up",
                ));
            }
            a.inflight.fetch_add(1, Ordering::SeqCst);
            if *held {
                drop(held);
                txn::fan(&self.children, cx, &targets, op).await
            } else {
                // First change through this fd: lock and change in one round trip.
                let fast = futures::future::join_all(targets.iter().map(|&i| {
                    let lcx = &lcx;
                    async move {
                        let Some(c) = self.children.get(i) else {
                            return (i, vec![Err(FopError::eio("no such child"))]);
                        };
                        let ops =
                            vec![txn::inodelk(gfid, LockWait::NoWait, LockType::Write), op(i)];
                        (i, txn::compound(c, lcx, ops).await)
                    }
                }))
                .await;
                let contended = fast.iter().any(|(_, r)| {
                    r.first()
                        .is_some_and(|x| x.as_ref().err().is_some_and(txn::contended))
                });
                let results = if contended {
                    for (i, r) in &fast {
                        if r.first().is_some_and(Result::is_ok)
                            && let Some(c) = self.children.get(*i)
                        {
                            let _ = crate::wire::dispatch(
                                &**c,
                                &lcx,
                                txn::inodelk(gfid, LockWait::NoWait, LockType::Unlock),
                            )
                            .await;
                        }
                    }
                    for &i in &targets {
                        if let Some(c) = self.children.get(i) {
                            let _ = crate::wire::dispatch(
                                &**c,
                                &lcx,
                                txn::inodelk(gfid, LockWait::Wait, LockType::Write),
                            )
                            .await;
                        }
                    }
                    txn::fan(&self.children, cx, &targets, op).await
                } else {
                    fast.into_iter()
                        .map(|(i, r)| match r.first() {
                            Some(Ok(_)) => (
                                i,
                                r.get(1)
                                    .cloned()
                                    .unwrap_or_else(|| Err(FopError::eio("short compound"))),
                            ),
                            Some(Err(e)) => (i, Err(e.clone())),
                            None => (i, Err(FopError::eio("empty compound reply"))),
                        })
                        .collect()
                };
                *held = true;
                drop(held);
                if let Ok(mut t) = a.locked_at.lock() {
                    *t = Some(Instant::now());
                }
                self.note_eager(gfid, &a);
                self.arm_idle_unlock(fd, &a);
                results
            }
        };
        a.inflight.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut t) = a.last_change.lock() {
            *t = Instant::now();
        }
        let out = Outcome::from(results);
        for &g in &out.good() {
            if let Some(m) = a.marked.get(g) {
                m.store(true, Ordering::SeqCst);
            }
        }
        self.settle(gfid, DATA, &targets, &out, &HashMap::new(), false)
            .await;
        // Bricks that are up but could not open the file missed the change too.
        let mut counted = Outcome {
            ok: out.ok.clone(),
            failed: out.failed.clone(),
        };
        for &i in up.iter().filter(|i| !targets.contains(i)) {
            let errno = a.open_errno.get(i).map_or(0, |n| n.load(Ordering::SeqCst));
            if errno > 0 {
                counted.failed.push((
                    i,
                    FopError::new(errno, "the file could not be opened on this brick"),
                ));
            }
        }
        self.acknowledged(&counted, true)?;
        match out.ok.first() {
            Some((_, r)) => Ok(r.clone()),
            None => Err(out.error()),
        }
    }

    /// Opens `fd` on the bricks that are up but were not opened when the file was (the
    /// file was missing there then: a create racing another client's, or a brick that
    /// came back), once per brick and fd, so the fd's writes reach every copy instead of
    /// leaving one for heal. The open carries no truncating or creating flag.
    async fn fix_open(&self, cx: &Cx, fd: &Fd, a: &AfrFd, up: &[usize]) {
        let missing: Vec<usize> = up
            .iter()
            .copied()
            .filter(|&i| !self.is_arbiter(i))
            .filter(|&i| a.opened.get(i).is_some_and(|o| !o.load(Ordering::SeqCst)))
            .filter(|&i| {
                a.reopen_tried
                    .get(i)
                    .is_some_and(|t| !t.swap(true, Ordering::SeqCst))
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        let flags = fd.flags() & !(libc::O_APPEND | libc::O_TRUNC | libc::O_CREAT | libc::O_EXCL);
        let results = txn::fan(&self.children, cx, &missing, &|_| Request::Open {
            loc: Loc::inode(fd.gfid()),
            flags,
            fd: fd.clone(),
            xdata: Xdata::new(),
        })
        .await;
        for (i, r) in results {
            match r {
                Ok(_) => {
                    if let Some(o) = a.opened.get(i) {
                        tracing::debug!(gfid = %fd.gfid(), brick = %self.names.get(i).map_or("?", String::as_str), "opened a file on a brick it was missing from at open");
                        o.store(true, Ordering::SeqCst);
                    }
                }
                Err(e) => {
                    if let Some(n) = a.open_errno.get(i) {
                        n.store(e.errno, Ordering::SeqCst);
                    }
                }
            }
        }
    }

    /// Releases the eager lock of `fd` once it has been idle for `eager-lock-idle`.
    fn arm_idle_unlock(&self, fd: &Fd, a: &Arc<AfrFd>) {
        let idle = self.cfg.eager_idle;
        let children = self.children.clone();
        let a2 = Arc::clone(a);
        let gfid = fd.gfid();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(idle).await;
                // Released when idle, and also after being held a while even by a busy
                // writer, so that others waiting for the lock (another client, a
                // rebalance moving the file) get their turn between two writes.
                let quiet = a2
                    .last_change
                    .lock()
                    .map(|t| t.elapsed() >= idle)
                    .unwrap_or(true)
                    || a2
                        .locked_at
                        .lock()
                        .ok()
                        .and_then(|t| *t)
                        .is_some_and(|t| t.elapsed() >= idle * 2);
                if !quiet {
                    continue;
                }
                let mut held = a2.lock.lock().await;
                if a2.inflight.load(Ordering::SeqCst) != 0 {
                    continue;
                }
                if *held {
                    let cx = txn::with_owner(&Cx::internal(), a2.owner);
                    for (i, c) in children.iter().enumerate() {
                        if a2.opened.get(i).is_some_and(|o| o.load(Ordering::SeqCst)) {
                            let _ = crate::wire::dispatch(
                                &**c,
                                &cx,
                                txn::inodelk(gfid, LockWait::NoWait, LockType::Unlock),
                            )
                            .await;
                        }
                    }
                    *held = false;
                    if let Ok(mut t) = a2.locked_at.lock() {
                        *t = None;
                    }
                }
                break;
            }
        });
        if let Ok(mut t) = a.idle.lock()
            && let Some(old) = t.replace(task)
        {
            old.abort();
        }
    }

    /// A metadata (or path truncate) change on `gfid`.
    async fn meta_change(
        &self,
        cx: &Cx,
        gfid: Gfid,
        kind: u8,
        what: &str,
        op: &(dyn Fn(usize) -> Request + Sync),
    ) -> FopResult<Reply> {
        let up = self.quorum(what)?;
        let targets: Vec<usize> = up
            .into_iter()
            .filter(|&i| !(kind == DATA && self.is_arbiter(i)))
            .collect();
        self.yield_eager(gfid).await;
        let (results, applied) = inode_change(&self.children, cx, gfid, &targets, op).await;
        let out = Outcome::from(results);
        self.settle(gfid, kind, &targets, &out, &applied, true)
            .await;
        self.acknowledged(&out, kind == DATA)?;
        self.first_ok(out)
    }

    /// A change is acknowledged only when the bricks it succeeded on still make a client
    /// quorum (DESIGN.md §8): when bricks that were up refused it (a read-only or full
    /// disk) or went away meanwhile, it fails with their error. The copies that took it
    /// keep it and blame the others, so heal spreads it; the application, told it failed,
    /// writes again. `data`: an arbiter takes no data, so an up arbiter counts.
    fn acknowledged(&self, out: &Outcome, data: bool) -> FopResult<()> {
        let mut counted = out.good();
        if data {
            counted.extend((0..self.n()).filter(|&i| self.is_arbiter(i) && self.child_up(i)));
        }
        if out.ok.is_empty() || self.quorum_met(&counted) {
            return Ok(());
        }
        let e = out.error();
        Err(FopError::new(
            e.errno,
            format!(
                "{} (the change reached {} of {} bricks of {}, short of quorum)",
                e.msg,
                out.ok.len(),
                self.n(),
                self.base.name()
            ),
        ))
    }

    fn first_ok(&self, out: Outcome) -> FopResult<Reply> {
        // Prefer a data brick's reply (sizes on an arbiter are not real).
        let best = out
            .ok
            .iter()
            .find(|(i, _)| !self.is_arbiter(*i))
            .or_else(|| out.ok.first())
            .map(|(_, r)| r.clone());
        best.ok_or_else(|| out.error())
    }

    /// An entry change under `parent`: entry locks on `locks`, dirty marks on the parents.
    async fn entry_op(
        &self,
        cx: &Cx,
        what: &str,
        parents: &[Gfid],
        locks: &[(Gfid, String)],
        op: &(dyn Fn(usize) -> Request + Sync),
    ) -> FopResult<Outcome> {
        let targets = self.quorum(what)?;
        let results = entry_change(&self.children, cx, locks, &targets, op).await;
        let out = Outcome::from(results);
        if out.ok.is_empty() {
            return Err(out.error());
        }
        for &p in parents {
            self.settle(p, ENTRY, &targets, &out, &HashMap::new(), true)
                .await;
        }
        self.acknowledged(&out, false)?;
        Ok(out)
    }

    /// Reads the replication counters returned with a lookup: who blames whom.
    /// Which copies are good, from the blame the copies hold (and bitrot's marks). A
    /// directory whose copies only blame each other for entries (names one copy missed) is
    /// not a split-brain: its attributes are read from a copy nobody blames for metadata,
    /// and heal merges the names.
    fn judge(&self, replies: &[(usize, Entry)]) -> InodeCtx {
        let blame = |kinds: &[usize]| {
            let mut blamed = 0u64;
            for (i, e) in replies {
                for (j, name) in self.names.iter().enumerate() {
                    if j == *i {
                        continue;
                    }
                    if let Some(v) = e.xdata.get(&pending_key(name)) {
                        let c = read_counters(v);
                        if kinds.iter().any(|k| c.get(*k).is_some_and(|n| *n != 0)) {
                            blamed |= 1 << j;
                        }
                    }
                }
            }
            // A copy a scrub found damaged serves no reads until heal rewrites it.
            for (i, e) in replies {
                if e.xdata.contains(XATTR_BAD) {
                    blamed |= 1 << i;
                }
            }
            blamed
        };
        let present: u64 = replies.iter().fold(0, |m, (i, _)| m | (1 << i));
        let has_data = |good: u64| {
            (0..self.n())
                .filter(|&i| !self.is_arbiter(i))
                .any(|i| good & (1 << i) != 0)
        };
        let mut good = present & !blame(&[0, 1, 2]);
        let is_dir = replies.iter().any(|(_, e)| e.iatt.kind == FileKind::Dir);
        if is_dir && !has_data(good) {
            good = present & !blame(&[1]);
        }
        InodeCtx {
            good,
            split_brain: present != 0
                && !has_data(good)
                && replies.iter().any(|(i, _)| !self.is_arbiter(*i)),
        }
    }

    fn refresh_up(&self) {
        for (i, c) in self.children.iter().enumerate() {
            if let Some(u) = self.up.get(i) {
                u.store(c.is_up(), Ordering::SeqCst);
            }
        }
    }
}

fn reply_entry(r: Reply) -> FopResult<Entry> {
    match r {
        Reply::Lookup(e)
        | Reply::Create(e)
        | Reply::Mkdir(e)
        | Reply::Mknod(e)
        | Reply::Symlink(e)
        | Reply::Link(e) => Ok(e),
        other => Err(FopError::eio(format!("unexpected reply {}", other.kind()))),
    }
}

fn reply_iatt(r: Reply) -> FopResult<Iatt> {
    match r {
        Reply::Write(i) | Reply::Truncate(i) | Reply::Setattr(i) | Reply::Stat(i) => Ok(i),
        other => Err(FopError::eio(format!("unexpected reply {}", other.kind()))),
    }
}

fn with_dirty(mut x: Xdata, kind: u8) -> Xdata {
    for (k, v) in dirty(kind).iter() {
        x.set(k.clone(), v.clone());
    }
    x
}

#[async_trait]
impl Translator for Afr {
    crate::xlator_base!();

    async fn start(&self) -> FopResult<()> {
        if let Ok(mut s) = self.started.lock() {
            *s = Some(Instant::now());
        }
        let changelog = Arc::clone(&self.changelog);
        let every = self.cfg.flush_every;
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                changelog.flush().await;
            }
        });
        if let Ok(mut f) = self.flusher.lock() {
            *f = Some(task);
        }
        Ok(())
    }

    async fn stop(&self) {
        if let Some(t) = self.flusher.lock().ok().and_then(|mut f| f.take()) {
            t.abort();
        }
        self.changelog.flush().await;
    }

    /// Up when every brick is up, or — after a short grace at start — when a quorum is.
    fn is_up(&self) -> bool {
        let up = self.up_children();
        let in_grace = self
            .started
            .lock()
            .ok()
            .and_then(|s| *s)
            .is_some_and(|s| s.elapsed() < STARTUP_GRACE);
        if in_grace {
            up.len() == self.n()
        } else {
            self.quorum_met(&up)
        }
    }

    fn serves(&self) -> bool {
        self.quorum_met(&self.up_children())
    }

    fn notify(&self, event: &Event) {
        self.refresh_up();
        let now_up = self.quorum_met(&self.up_children());
        let was = self.was_up.swap(now_up, Ordering::SeqCst);
        match event {
            Event::ChildDown { origin, reason } => {
                tracing::warn!(replica = self.base.name(), brick = %origin, %reason, up = self.up_children().len(), "a brick of the replica set went down");
            }
            Event::ChildUp { origin } => {
                tracing::info!(replica = self.base.name(), brick = %origin, up = self.up_children().len(), "a brick of the replica set is up");
                // While this client could not reach it, others may have changed files
                // without it (it is blamed on their bricks, not in this client's verdicts).
                // Reads judge the copies again first, as after the table was emptied; a
                // lookup replaces a verdict the same way.
                self.forget_verdicts();
            }
        }
        if now_up != was {
            let ev = if now_up {
                Event::ChildUp {
                    origin: self.base.name().to_string(),
                }
            } else {
                Event::ChildDown {
                    origin: self.base.name().to_string(),
                    reason: "client quorum lost".into(),
                }
            };
            self.base.notify_parents(&ev);
        }
    }

    async fn lookup(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<Entry> {
        let up = self.up_children();
        if up.is_empty() {
            return Err(FopError::not_connected(format!(
                "no brick of {} is up",
                self.base.name()
            )));
        }
        let mut x = xdata.clone();
        add_lookup_prefix(&mut x, AFR_PREFIX);
        add_lookup_prefix(&mut x, XATTR_BAD);
        // Content (quick-read) is asked of one copy only: the one reads would go to.
        let want = x.remove(quick_read::WANT_KEY);
        let content_from = want.as_ref().and_then(|_| self.content_child(&loc, &up));
        let results = txn::fan(&self.children, cx, &up, &|i| {
            let mut x = x.clone();
            if let (Some(w), true) = (&want, content_from == Some(i)) {
                x.set(quick_read::WANT_KEY, w.clone());
            }
            Request::Lookup {
                loc: loc.clone(),
                xdata: x,
            }
        })
        .await;
        let mut found: Vec<(usize, Entry)> = Vec::new();
        let mut errors = Vec::new();
        for (i, r) in results {
            match r.and_then(reply_entry) {
                Ok(e) => found.push((i, e)),
                Err(e) => errors.push((i, e)),
            }
        }
        if found.is_empty() {
            return Err(Outcome {
                ok: vec![],
                failed: errors,
            }
            .error());
        }
        let gfid = found[0].1.iatt.gfid;
        if let Some((_, other)) = found.iter().find(|(_, e)| e.iatt.gfid != gfid) {
            return Err(FopError::eio(format!(
                "gfid split-brain on {loc}: bricks of {} hold different files ({gfid} and {})",
                self.base.name(),
                other.iatt.gfid
            )));
        }
        let ctx = self.judge(&found);
        self.set_inode(gfid, ctx);
        let present = found.iter().fold(0u64, |m, (i, _)| m | (1 << i));
        // (A directory whose copies blame each other for names only is readable, and heal
        // merges it.)
        let pending = pending_key("");
        let blamed = found.iter().any(|(_, e)| {
            e.xdata
                .iter()
                .any(|(k, v)| k.starts_with(&pending) && read_counters(v).iter().any(|c| *c != 0))
        });
        if (ctx.good != present || blamed) && !ctx.split_brain {
            self.heal_in_background(gfid);
        }
        let pick = found
            .iter()
            .find(|(i, _)| content_from == Some(*i) && ctx.good & (1 << i) != 0)
            .or_else(|| {
                found
                    .iter()
                    .find(|(i, _)| ctx.good & (1 << i) != 0 && !self.is_arbiter(*i))
            })
            .or_else(|| found.iter().find(|(i, _)| !self.is_arbiter(*i)))
            .or_else(|| found.first());
        let Some((picked, entry)) = pick else {
            return Err(FopError::eio("lookup found nothing usable"));
        };
        let mut entry = entry.clone();
        // Content read from a copy that is not good must not be served.
        if ctx.good & (1 << picked) == 0 || self.is_arbiter(*picked) {
            entry.xdata.remove(quick_read::CONTENT_KEY);
        }
        let afr_keys: Vec<String> = entry
            .xdata
            .iter()
            .filter(|(k, _)| k.starts_with(AFR_PREFIX) || k.as_str() == XATTR_BAD)
            .map(|(k, _)| k.clone())
            .collect();
        for k in afr_keys {
            entry.xdata.remove(&k);
        }
        Ok(entry)
    }

    async fn stat(&self, cx: &Cx, target: Target, xdata: Xdata) -> FopResult<Iatt> {
        let gfid = target.gfid().unwrap_or(Gfid::NULL);
        let among = match &target {
            Target::Fd(fd) => Some(Self::opened_flags(&self.afr_fd(fd))),
            Target::Loc(_) => None,
        };
        self.read_from(gfid, among.as_deref(), |c| {
            let (t, x) = (target.clone(), xdata.clone());
            Box::pin(async move { c.stat(cx, t, x).await })
        })
        .await
    }

    async fn setattr(
        &self,
        cx: &Cx,
        target: Target,
        attr: SetAttr,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        let gfid = target
            .gfid()
            .ok_or_else(|| FopError::invalid("setattr needs a gfid"))?;
        let x = with_dirty(xdata, METADATA);
        let r = self
            .meta_change(cx, gfid, METADATA, "setattr", &|_| Request::Setattr {
                target: target.clone(),
                attr: attr.clone(),
                xdata: x.clone(),
            })
            .await?;
        reply_iatt(r)
    }

    async fn truncate(&self, cx: &Cx, target: Target, size: u64, xdata: Xdata) -> FopResult<Iatt> {
        let x = with_dirty(xdata, DATA);
        let r = match &target {
            Target::Fd(fd) => {
                self.data_change(cx, fd, &|_| Request::Truncate {
                    target: target.clone(),
                    size,
                    xdata: x.clone(),
                })
                .await?
            }
            Target::Loc(loc) => {
                let gfid = loc.require_gfid()?;
                self.meta_change(cx, gfid, DATA, "truncate", &|_| Request::Truncate {
                    target: target.clone(),
                    size,
                    xdata: x.clone(),
                })
                .await?
            }
        };
        reply_iatt(r)
    }

    async fn access(&self, cx: &Cx, loc: Loc, mask: u32, xdata: Xdata) -> FopResult<()> {
        let gfid = loc.gfid.unwrap_or(Gfid::NULL);
        self.read_from(gfid, None, |c| {
            let (l, x) = (loc.clone(), xdata.clone());
            Box::pin(async move { c.access(cx, l, mask, x).await })
        })
        .await
    }

    async fn readlink(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<String> {
        let gfid = loc.gfid.unwrap_or(Gfid::NULL);
        self.read_from(gfid, None, |c| {
            let (l, x) = (loc.clone(), xdata.clone());
            Box::pin(async move { c.readlink(cx, l, x).await })
        })
        .await
    }

    async fn mknod(
        &self,
        cx: &Cx,
        loc: Loc,
        mode: u32,
        rdev: u64,
        umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let (parent, name) = loc.parent_and_name()?;
        let loc = if loc.gfid.is_some() {
            loc.clone()
        } else {
            loc.clone().with_gfid(Gfid::random())
        };
        let x = with_dirty(xdata, ENTRY);
        let out = self
            .entry_op(
                cx,
                "mknod",
                &[parent],
                &[(parent, name.to_string())],
                &|_| Request::Mknod {
                    loc: loc.clone(),
                    mode,
                    rdev,
                    umask,
                    xdata: x.clone(),
                },
            )
            .await?;
        reply_entry(self.first_ok(out)?)
    }

    async fn mkdir(
        &self,
        cx: &Cx,
        loc: Loc,
        mode: u32,
        umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let (parent, name) = loc.parent_and_name()?;
        let loc = if loc.gfid.is_some() {
            loc.clone()
        } else {
            loc.clone().with_gfid(Gfid::random())
        };
        let x = with_dirty(xdata, ENTRY);
        let out = self
            .entry_op(
                cx,
                "mkdir",
                &[parent],
                &[(parent, name.to_string())],
                &|_| Request::Mkdir {
                    loc: loc.clone(),
                    mode,
                    umask,
                    xdata: x.clone(),
                },
            )
            .await?;
        let e = reply_entry(self.first_ok(out)?)?;
        Ok(e)
    }

    async fn unlink(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        let (parent, _) = loc.parent_and_name()?;
        let x = with_dirty(xdata, ENTRY);
        let targets = self.quorum("unlink")?;
        // One round trip unless the name is contended (see remove.rs).
        let removed = self.remove_name(cx, &targets, &loc, &x).await?;
        for (&i, &n) in removed.applied.iter().filter(|(_, n)| **n > 0) {
            self.changelog.clear_later(i, parent, ENTRY, n);
        }
        let out = Outcome::from(removed.results);
        if out.ok.is_empty() {
            return Err(out.error());
        }
        self.settle(parent, ENTRY, &targets, &out, &HashMap::new(), false)
            .await;
        self.acknowledged(&out, false)?;
        Ok(())
    }

    async fn rmdir(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        let (parent, name) = loc.parent_and_name()?;
        let x = with_dirty(xdata, ENTRY);
        self.entry_op(
            cx,
            "rmdir",
            &[parent],
            &[(parent, name.to_string())],
            &|_| Request::Rmdir {
                loc: loc.clone(),
                xdata: x.clone(),
            },
        )
        .await
        .map(|_| ())
    }

    async fn symlink(
        &self,
        cx: &Cx,
        link_target: String,
        loc: Loc,
        umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let (parent, name) = loc.parent_and_name()?;
        let loc = if loc.gfid.is_some() {
            loc.clone()
        } else {
            loc.clone().with_gfid(Gfid::random())
        };
        let x = with_dirty(xdata, ENTRY);
        let out = self
            .entry_op(
                cx,
                "symlink",
                &[parent],
                &[(parent, name.to_string())],
                &|_| Request::Symlink {
                    link_target: link_target.clone(),
                    loc: loc.clone(),
                    umask,
                    xdata: x.clone(),
                },
            )
            .await?;
        reply_entry(self.first_ok(out)?)
    }

    async fn rename(&self, cx: &Cx, old: Loc, new: Loc, flags: u32, xdata: Xdata) -> FopResult<()> {
        let (op, on) = old.parent_and_name()?;
        let (np, nn) = new.parent_and_name()?;
        let x = with_dirty(xdata, ENTRY);
        let parents: Vec<Gfid> = if op == np { vec![op] } else { vec![op, np] };
        self.entry_op(
            cx,
            "rename",
            &parents,
            &[(op, on.to_string()), (np, nn.to_string())],
            &|_| Request::Rename {
                old: old.clone(),
                new: new.clone(),
                flags,
                xdata: x.clone(),
            },
        )
        .await
        .map(|_| ())
    }

    async fn link(&self, cx: &Cx, old: Loc, new: Loc, xdata: Xdata) -> FopResult<Entry> {
        let (np, nn) = new.parent_and_name()?;
        let x = with_dirty(xdata, ENTRY);
        let out = self
            .entry_op(cx, "link", &[np], &[(np, nn.to_string())], &|_| {
                Request::Link {
                    old: old.clone(),
                    new: new.clone(),
                    xdata: x.clone(),
                }
            })
            .await?;
        reply_entry(self.first_ok(out)?)
    }

    async fn create(
        &self,
        cx: &Cx,
        loc: Loc,
        flags: i32,
        mode: u32,
        umask: u32,
        fd: Fd,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let (parent, name) = loc.parent_and_name()?;
        let loc = if loc.gfid.is_some() {
            loc.clone()
        } else {
            loc.clone().with_gfid(Gfid::random())
        };
        let brick_flags = flags & !(libc::O_APPEND | libc::O_TRUNC);
        let x = with_dirty(xdata, ENTRY);
        let a = self.afr_fd(&fd);
        let targets = self.quorum("create")?;
        let created = self
            .create_file(
                cx,
                &targets,
                &create::NewFile {
                    parent,
                    name,
                    loc: &loc,
                    flags: brick_flags,
                    mode,
                    umask,
                    fd: &fd,
                    xdata: &x,
                },
            )
            .await?;
        for (&i, &n) in &created.applied {
            self.changelog.clear_later(i, parent, ENTRY, n);
        }
        let out = created.out;
        if out.ok.is_empty() {
            return Err(out.error());
        }
        self.settle(parent, ENTRY, &targets, &out, &HashMap::new(), false)
            .await;
        for &g in &out.good() {
            if let Some(o) = a.opened.get(g) {
                o.store(true, Ordering::SeqCst);
            }
        }
        if let Err(e) = self.acknowledged(&out, false) {
            // The caller never gets this fd: close it where it was opened.
            let _ = Translator::release(self, cx, fd).await;
            return Err(e);
        }
        let e = reply_entry(self.first_ok(out)?)?;
        let good = a.opened.iter().enumerate().fold(0u64, |m, (i, o)| {
            if o.load(Ordering::SeqCst) {
                m | (1 << i)
            } else {
                m
            }
        });
        self.set_inode(
            e.iatt.gfid,
            InodeCtx {
                good,
                split_brain: false,
            },
        );
        Ok(e)
    }

    async fn open(&self, cx: &Cx, loc: Loc, flags: i32, fd: Fd, xdata: Xdata) -> FopResult<()> {
        let up = self.up_children();
        let brick_flags = flags & !(libc::O_APPEND | libc::O_TRUNC);
        let a = self.afr_fd(&fd);
        let results = txn::fan(&self.children, cx, &up, &|_| Request::Open {
            loc: loc.clone(),
            flags: brick_flags,
            fd: fd.clone(),
            xdata: xdata.clone(),
        })
        .await;
        let out = Outcome::from(results);
        if out.ok.is_empty() {
            return Err(out.error());
        }
        for &g in &out.good() {
            if let Some(o) = a.opened.get(g) {
                o.store(true, Ordering::SeqCst);
            }
        }
        for (i, e) in &out.failed {
            if let Some(n) = a.open_errno.get(*i) {
                n.store(e.errno, Ordering::SeqCst);
            }
        }
        if flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
            self.truncate(cx, Target::Fd(fd), 0, Xdata::new()).await?;
        }
        Ok(())
    }

    async fn read(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        size: u32,
        xdata: Xdata,
    ) -> FopResult<Payload> {
        let among = Self::opened_flags(&self.afr_fd(&fd));
        self.read_from(fd.gfid(), Some(&among), |c| {
            let (f, x) = (fd.clone(), xdata.clone());
            Box::pin(async move { c.read(cx, f, offset, size, x).await })
        })
        .await
    }

    async fn write(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        data: Payload,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        let x = with_dirty(xdata, DATA);
        let r = self
            .data_change(cx, &fd, &|_| Request::Write {
                fd: fd.clone(),
                offset,
                data: data.clone(),
                xdata: x.clone(),
            })
            .await?;
        reply_iatt(r)
    }

    /// Answered here: bricks keep no per-descriptor state a flush would settle, and every
    /// write was already acknowledged by the bricks.
    async fn flush(&self, _cx: &Cx, _fd: Fd, _xdata: Xdata) -> FopResult<()> {
        Ok(())
    }

    async fn fsync(&self, cx: &Cx, fd: Fd, datasync: bool, xdata: Xdata) -> FopResult<()> {
        let a = self.afr_fd(&fd);
        let targets: Vec<usize> = self
            .up_children()
            .into_iter()
            .filter(|&i| a.opened.get(i).is_some_and(|o| o.load(Ordering::SeqCst)))
            .collect();
        let results = txn::fan(&self.children, cx, &targets, &|_| Request::Fsync {
            fd: fd.clone(),
            datasync,
            xdata: xdata.clone(),
        })
        .await;
        let out = Outcome::from(results);
        // A brick whose fsync failed may have lost acknowledged writes: it is blamed.
        self.settle(fd.gfid(), DATA, &targets, &out, &HashMap::new(), false)
            .await;
        if !self.quorum_met(&out.good()) {
            return Err(out.error());
        }
        Ok(())
    }

    async fn release(&self, cx: &Cx, fd: Fd) -> FopResult<()> {
        let a = self.afr_fd(&fd);
        if let Some(t) = a.idle.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
        let held = *a.lock.lock().await;
        let gfid = fd.gfid();
        let lcx = txn::with_owner(cx, a.owner);
        futures::future::join_all(self.children.iter().enumerate().map(|(i, c)| {
            let (a, lcx, fd) = (&a, &lcx, fd.clone());
            async move {
                if !a.opened.get(i).is_some_and(|o| o.load(Ordering::SeqCst)) {
                    return;
                }
                let mut ops = Vec::new();
                if held {
                    ops.push(txn::inodelk(gfid, LockWait::NoWait, LockType::Unlock));
                }
                if a.marked.get(i).is_some_and(|m| m.load(Ordering::SeqCst)) {
                    let mut x = Xdata::new();
                    x.set(
                        crate::features::index::XATTR_DIRTY,
                        crate::features::index::counters(DATA, -1),
                    );
                    ops.push(Request::Xattrop {
                        target: Target::Loc(Loc::inode(gfid)),
                        op: XattropOp::AddArray64Floor,
                        xattrs: x,
                        xdata: Xdata::new(),
                    });
                }
                ops.push(Request::Release { fd });
                let _ = txn::compound(c, lcx, ops).await;
            }
        }))
        .await;
        fd.take_ctx::<AfrFd>(FD_KEY);
        Ok(())
    }

    async fn opendir(&self, cx: &Cx, loc: Loc, fd: Fd, xdata: Xdata) -> FopResult<()> {
        let up = self.up_children();
        let a = self.afr_fd(&fd);
        let results = txn::fan(&self.children, cx, &up, &|_| Request::Opendir {
            loc: loc.clone(),
            fd: fd.clone(),
            xdata: xdata.clone(),
        })
        .await;
        let out = Outcome::from(results);
        if out.ok.is_empty() {
            return Err(out.error());
        }
        for &g in &out.good() {
            if let Some(o) = a.opened.get(g) {
                o.store(true, Ordering::SeqCst);
            }
        }
        let among = Self::opened_flags(&a);
        let first = self
            .read_order(fd.gfid(), Some(&among))
            .ok()
            .and_then(|o| o.first().copied())
            .or_else(|| out.good().first().copied());
        if let Some(f) = first {
            a.read_child.store(f, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Lists from one brick; cookies belong to that brick, so a listing that started on one
    /// brick stays on it.
    async fn readdir(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        size: u32,
        plus: bool,
        xdata: Xdata,
    ) -> FopResult<Vec<DirEntry>> {
        let a = self.afr_fd(&fd);
        let mut i = a.read_child.load(Ordering::SeqCst);
        if offset == 0 && !self.child_up(i) {
            let among = Self::opened_flags(&a);
            if let Some(&f) = self.read_order(fd.gfid(), Some(&among))?.first() {
                a.read_child.store(f, Ordering::SeqCst);
                i = f;
            }
        }
        let c = self
            .children
            .get(i)
            .ok_or_else(|| FopError::not_connected("the directory is not open on any brick"))?;
        c.readdir(cx, fd, offset, size, plus, xdata).await
    }

    async fn releasedir(&self, cx: &Cx, fd: Fd) -> FopResult<()> {
        let a = self.afr_fd(&fd);
        let targets: Vec<usize> = (0..self.n())
            .filter(|&i| a.opened.get(i).is_some_and(|o| o.load(Ordering::SeqCst)))
            .collect();
        let _ = txn::fan(&self.children, cx, &targets, &|_| Request::Releasedir {
            fd: fd.clone(),
        })
        .await;
        fd.take_ctx::<AfrFd>(FD_KEY);
        Ok(())
    }

    async fn fsyncdir(&self, cx: &Cx, fd: Fd, datasync: bool, xdata: Xdata) -> FopResult<()> {
        let a = self.afr_fd(&fd);
        let targets: Vec<usize> = (0..self.n())
            .filter(|&i| a.opened.get(i).is_some_and(|o| o.load(Ordering::SeqCst)))
            .collect();
        let out = Outcome::from(
            txn::fan(&self.children, cx, &targets, &|_| Request::Fsyncdir {
                fd: fd.clone(),
                datasync,
                xdata: xdata.clone(),
            })
            .await,
        );
        if out.ok.is_empty() {
            Err(out.error())
        } else {
            Ok(())
        }
    }

    /// The smallest capacity of the bricks that are up: what the replica set can hold.
    async fn statfs(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<Statfs> {
        let up: Vec<usize> = self
            .up_children()
            .into_iter()
            .filter(|&i| !self.is_arbiter(i))
            .collect();
        let out = Outcome::from(
            txn::fan(&self.children, cx, &up, &|_| Request::Statfs {
                loc: loc.clone(),
                xdata: xdata.clone(),
            })
            .await,
        );
        let mut best: Option<Statfs> = None;
        for (_, r) in out.ok.iter() {
            if let Reply::Statfs(s) = r {
                best = Some(match best {
                    None => *s,
                    Some(b)
                        if s.bavail.saturating_mul(u64::from(s.frsize))
                            < b.bavail.saturating_mul(u64::from(b.frsize)) =>
                    {
                        *s
                    }
                    Some(b) => b,
                });
            }
        }
        best.ok_or_else(|| out.error())
    }

    async fn setxattr(
        &self,
        cx: &Cx,
        target: Target,
        xattrs: Xdata,
        flags: i32,
        xdata: Xdata,
    ) -> FopResult<()> {
        let gfid = target
            .gfid()
            .ok_or_else(|| FopError::invalid("setxattr needs a gfid"))?;
        let x = with_dirty(xdata, METADATA);
        self.meta_change(cx, gfid, METADATA, "setxattr", &|_| Request::Setxattr {
            target: target.clone(),
            xattrs: xattrs.clone(),
            flags,
            xdata: x.clone(),
        })
        .await
        .map(|_| ())
    }

    async fn getxattr(
        &self,
        cx: &Cx,
        target: Target,
        name: Option<String>,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        let gfid = target.gfid().unwrap_or(Gfid::NULL);
        let among = match &target {
            Target::Fd(fd) => Some(Self::opened_flags(&self.afr_fd(fd))),
            Target::Loc(_) => None,
        };
        self.read_from(gfid, among.as_deref(), |c| {
            let (t, n, x) = (target.clone(), name.clone(), xdata.clone());
            Box::pin(async move { c.getxattr(cx, t, n, x).await })
        })
        .await
    }

    async fn removexattr(
        &self,
        cx: &Cx,
        target: Target,
        name: String,
        xdata: Xdata,
    ) -> FopResult<()> {
        let gfid = target
            .gfid()
            .ok_or_else(|| FopError::invalid("removexattr needs a gfid"))?;
        let x = with_dirty(xdata, METADATA);
        self.meta_change(cx, gfid, METADATA, "removexattr", &|_| {
            Request::Removexattr {
                target: target.clone(),
                name: name.clone(),
                xdata: x.clone(),
            }
        })
        .await
        .map(|_| ())
    }

    async fn xattrop(
        &self,
        cx: &Cx,
        target: Target,
        op: XattropOp,
        xattrs: Xdata,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        let up = self.up_children();
        let out = Outcome::from(
            txn::fan(&self.children, cx, &up, &|_| Request::Xattrop {
                target: target.clone(),
                op,
                xattrs: xattrs.clone(),
                xdata: xdata.clone(),
            })
            .await,
        );
        match self.first_ok(out)? {
            Reply::Xattrop(x) => Ok(x),
            other => Err(FopError::eio(format!("unexpected reply {}", other.kind()))),
        }
    }

    async fn inodelk(
        &self,
        cx: &Cx,
        domain: String,
        target: Target,
        wait: LockWait,
        lock: Flock,
        xdata: Xdata,
    ) -> FopResult<()> {
        let up = self.up_children();
        let req = |w: LockWait, k: LockType| Request::Inodelk {
            domain: domain.clone(),
            target: target.clone(),
            wait: w,
            lock: Flock { kind: k, ..lock },
            xdata: xdata.clone(),
        };
        self.lock_everywhere(cx, &up, wait, lock.kind, &req).await
    }

    async fn entrylk(
        &self,
        cx: &Cx,
        domain: String,
        loc: Loc,
        name: Option<String>,
        wait: LockWait,
        kind: LockType,
        xdata: Xdata,
    ) -> FopResult<()> {
        let up = self.up_children();
        let req = |w: LockWait, k: LockType| Request::Entrylk {
            domain: domain.clone(),
            loc: loc.clone(),
            name: name.clone(),
            wait: w,
            kind: k,
            xdata: xdata.clone(),
        };
        self.lock_everywhere(cx, &up, wait, kind, &req).await
    }

    async fn fallocate(
        &self,
        cx: &Cx,
        fd: Fd,
        mode: i32,
        offset: u64,
        len: u64,
        xdata: Xdata,
    ) -> FopResult<()> {
        let x = with_dirty(xdata, DATA);
        self.data_change(cx, &fd, &|_| Request::Fallocate {
            fd: fd.clone(),
            mode,
            offset,
            len,
            xdata: x.clone(),
        })
        .await
        .map(|_| ())
    }

    async fn lseek(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        whence: Whence,
        xdata: Xdata,
    ) -> FopResult<u64> {
        let among = Self::opened_flags(&self.afr_fd(&fd));
        self.read_from(fd.gfid(), Some(&among), |c| {
            let (f, x) = (fd.clone(), xdata.clone());
            Box::pin(async move { c.lseek(cx, f, offset, whence, x).await })
        })
        .await
    }

    async fn compound(&self, cx: &Cx, ops: Batch<Request>) -> FopResult<Batch<CompoundResult>> {
        crate::wire::run_compound(self, cx, ops).await
    }
}

#[cfg(test)]
mod tests;
