//! `cluster/distribute`: spreads files over redundancy groups by the hash of their names.
//!
//! - **Placement.** Every directory exists in every group and carries, on each group's
//!   copies, that group's slice of the 32-bit hash ring ([`layout`]). A file lives in the
//!   group whose slice holds the hash of its basename (its *hashed* group). A file kept
//!   elsewhere (renamed to a name that hashes elsewhere, placed away from a full group, or
//!   not yet moved after an expansion) is reached through a zero-byte *linkto* pointer on its
//!   hashed group: mode `01000`, xattr [`layout::XATTR_LINKTO`] naming the group holding it.
//! - **Lookup** asks only the hashed group. A miss there is definite when the directory's
//!   layout is *settled* (every file is where its hash says); otherwise every group is asked.
//!   Directories are looked up on every group at once; a copy missing on a group is created
//!   there, and a layout with holes is laid out again under a lock.
//! - **Stale layouts.** Entry-creating fops carry the layout generation the client used; a
//!   brick holding a newer layout refuses with `ESTALE`, and the client reloads the layout and
//!   tries again — so a file is never created where an up-to-date client would not look.
//! - **readdir** reads the groups in turn (the first batch of every group is asked for in
//!   parallel), hides linkto files, and lists a subdirectory only from its hashed group.
//! - **statfs** sums the groups. `min-free-disk` steers new files away from a nearly full
//!   group (the hashed group then gets a linkto).

pub mod layout;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};
use futures::future::join_all;

use crate::cluster::afr::txn::{new_owner, with_owner};
use crate::error::{FopError, FopResult};
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::*;
use crate::wire::{Batch, CompoundResult, Request};
use crate::xlator::{Event, Translator, XlatorBase, XlatorRef};
use layout::{GroupLayout, Layout, XATTR_LAYOUT, XATTR_LINKTO, name_hash};

/// The prefix of every xattr distribute keeps on bricks.
pub const DHT_PREFIX: &str = "trusted.cairn.dht.";
/// The lock domain distribute uses on bricks (never meets replicate's).
pub const DOMAIN: &str = "cairn.dht";
/// The mode bits of a linkto pointer file.
pub const LINKTO_MODE: u32 = 0o1000;
/// Reply xdata key of a lookup: the group (translator name) holding the file's data.
pub const CACHED_GROUP_KEY: &str = "cairn.dht.cached-group";
/// Request xdata key of lookup: return linkto files as they are instead of following them
/// (rebalance uses it).
pub const RAW_LINKTO_KEY: &str = "cairn.dht.raw";

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "min-free-disk",
        kind: OptionKind::Percent,
        default: Some("10%"),
        doc: "A group with less free space than this share goes no new files; they are placed in the emptiest group, with a linkto on the hashed one.",
    },
    OptionSpec {
        key: "weighted",
        kind: OptionKind::Bool,
        default: Some("on"),
        doc: "Size each group's hash range by its capacity (off: equal ranges).",
    },
    OptionSpec {
        key: "lookup-optimize",
        kind: OptionKind::Bool,
        default: Some("on"),
        doc: "Trust a miss on the hashed group when the directory's layout is settled (off: ask every group on every miss).",
    },
    OptionSpec {
        key: "rsync-hash",
        kind: OptionKind::Bool,
        default: Some("on"),
        doc: "Hash rsync's temporary names (.NAME.XXXXXX) as NAME, so the rename that finishes a copy moves nothing.",
    },
    OptionSpec {
        key: "decommissioned",
        kind: OptionKind::List(&[]),
        default: Some(""),
        doc: "Subvolumes being drained by a remove-brick: they get no hash range when directories are laid out, and no new files.",
    },
];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "cluster/distribute",
        arity: Arity::AtLeast(1),
        roles: &[Role::Client],
        maturity: Maturity::Stable,
        options: OPTIONS,
        doc: "Places each file in one subvolume by the hash of its name within its directory's layout; directories exist in every subvolume.",
    },
    build,
};

/// Settings.
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// Share of free space (0..=100) below which a group takes no new files.
    pub min_free_disk: f64,
    /// Ranges sized by capacity.
    pub weighted: bool,
    /// Trust misses in settled directories.
    pub lookup_optimize: bool,
    /// rsync temporary names hash as their final names.
    pub rsync_hash: bool,
    /// Names of the groups being drained (remove-brick): weight 0, no new files.
    pub decommissioned: Vec<String>,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            min_free_disk: 10.0,
            weighted: true,
            lookup_optimize: true,
            rsync_hash: true,
            decommissioned: Vec::new(),
        }
    }
}

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let o = ctx.options;
    let e = |e: cairn_volfiles::OptionError| e.to_string();
    if ctx.children.len() > 120 {
        return Err("distribute supports at most 120 subvolumes".into());
    }
    let cfg = DhtConfig {
        min_free_disk: o.percent("min-free-disk").map_err(e)?,
        weighted: o.bool("weighted").map_err(e)?,
        lookup_optimize: o.bool("lookup-optimize").map_err(e)?,
        rsync_hash: o.bool("rsync-hash").map_err(e)?,
        decommissioned: o
            .list("decommissioned")
            .map(<[String]>::to_vec)
            .unwrap_or_default(),
    };
    for d in &cfg.decommissioned {
        if !ctx.children.iter().any(|c| c.name() == d) {
            return Err(format!(
                "decommissioned: '{d}' is not a subvolume of this distribute"
            ));
        }
    }
    if ctx
        .children
        .iter()
        .all(|c| cfg.decommissioned.iter().any(|d| d == c.name()))
    {
        return Err("decommissioned: every subvolume is listed; at least one must stay".into());
    }
    Ok(Arc::new(Dht::new(ctx.name, ctx.children, cfg)))
}

/// What distribute knows about one inode.
#[derive(Clone, Debug)]
enum Node {
    /// A directory and its layout.
    Dir(Arc<Layout>),
    /// A file (or symlink, device) and the group holding it.
    File(usize),
}

const INODE_CACHE_MAX: usize = 400_000;
const FD_KEY: &str = "cluster/distribute";
const SPACE_TTL: Duration = Duration::from_secs(5);
/// Readdir offsets that do not fit the direct form are kept this many at most.
const COOKIE_TABLE_MAX: usize = 1 << 20;
/// Retries of an entry fop refused for a stale layout.
const STALE_RETRIES: usize = 4;

/// Distribute's state on an open file.
struct DhtFile {
    group: AtomicUsize,
    /// After the file moved to another group (rebalance) while open: that group and the
    /// file opened there.
    moved: Mutex<Option<(usize, Fd)>>,
    /// A change through this fd reported the file unlinked and it was found nowhere else:
    /// it really is an open, unlinked file (no need to look again).
    orphan: std::sync::atomic::AtomicBool,
}

/// Distribute's state on an open directory: one open directory per group.
struct DhtDir {
    fds: Vec<Option<Fd>>,
    layout: Arc<Layout>,
    /// First batches (offset 0) fetched in parallel, per group.
    prefetched: Mutex<HashMap<usize, FopResult<Vec<DirEntry>>>>,
}

/// Big readdir cookies, by token.
#[derive(Default)]
struct CookieTable {
    map: HashMap<u64, (usize, u64)>,
    order: std::collections::VecDeque<u64>,
}

/// What resolving a name found.
#[derive(Clone, Debug)]
struct Resolved {
    entry: Entry,
    /// The group holding the object (for a directory: the hashed group, or the first).
    cached: usize,
    /// The name's hashed group, when the parent's layout says.
    hashed: Option<usize>,
    /// A group holding a linkto for this name.
    linkto: Option<usize>,
}

/// What [`Dht::fix_layout`] did to one directory.
#[derive(Clone, Debug)]
pub struct Relayout {
    /// The layout was rewritten (a new generation).
    pub changed: bool,
    /// Ring points whose group changed (out of [`layout::RING`]).
    pub moved: u64,
    /// The directory's subdirectories, by name.
    pub subdirs: Vec<(String, Gfid)>,
}

/// The translator.
pub struct Dht {
    base: XlatorBase,
    children: Vec<XlatorRef>,
    names: Vec<String>,
    /// Per group: being drained (no range, no new files).
    leaving: Vec<bool>,
    cfg: DhtConfig,
    inodes: Mutex<HashMap<Gfid, Node>>,
    space: Mutex<Vec<Option<(Instant, Statfs)>>>,
    cookies: Mutex<CookieTable>,
    next_cookie: AtomicU64,
}

fn is_gone(e: &FopError) -> bool {
    e.errno == libc::ENOENT || e.errno == libc::ESTALE
}

/// A pointer (or a file being moved here by a rebalance, which points back at its source
/// until the copy is done): mode exactly `01000`. Lookups also check the linkto xattr.
fn is_linkto(e: &Entry) -> bool {
    e.iatt.kind == FileKind::File && e.iatt.perm & 0o7777 == LINKTO_MODE
}

fn strip(x: &mut Xdata) {
    let keys: Vec<String> = x
        .iter()
        .filter(|(k, _)| k.starts_with(DHT_PREFIX))
        .map(|(k, _)| k.clone())
        .collect();
    for k in keys {
        x.remove(&k);
    }
}

fn lookup_xdata(x: &Xdata) -> Xdata {
    let mut x = x.clone();
    add_lookup_prefix(&mut x, DHT_PREFIX);
    x
}

fn gen_xdata(x: &Xdata, layout: &Layout) -> Xdata {
    let mut x = x.clone();
    x.set(LAYOUT_GEN_KEY, layout.generation().to_be_bytes().to_vec());
    x
}

fn later(a: Timespec, b: Timespec) -> Timespec {
    if (b.sec, b.nsec) > (a.sec, a.nsec) {
        b
    } else {
        a
    }
}

impl Dht {
    /// A distribute over `children` (redundancy groups).
    pub fn new(name: &str, children: Vec<XlatorRef>, cfg: DhtConfig) -> Dht {
        let names: Vec<String> = children.iter().map(|c| c.name().to_string()).collect();
        let leaving = names
            .iter()
            .map(|n| cfg.decommissioned.contains(n))
            .collect();
        let n = children.len();
        Dht {
            base: XlatorBase::new(name, "cluster/distribute", children.clone()),
            children,
            names,
            leaving,
            cfg,
            inodes: Mutex::new(HashMap::new()),
            space: Mutex::new(vec![None; n]),
            cookies: Mutex::new(CookieTable::default()),
            next_cookie: AtomicU64::new(1),
        }
    }

    /// The groups, in volfile order.
    pub fn groups(&self) -> &[XlatorRef] {
        &self.children
    }

    /// The group names, in volfile order.
    pub fn group_names(&self) -> &[String] {
        &self.names
    }

    /// The settings.
    pub fn config(&self) -> &DhtConfig {
        &self.cfg
    }

    fn n(&self) -> usize {
        self.children.len()
    }

    /// Group `g` is being drained by a remove-brick.
    pub fn is_leaving(&self, g: usize) -> bool {
        self.leaving.get(g).copied().unwrap_or(false)
    }

    fn child(&self, g: usize) -> FopResult<&XlatorRef> {
        self.children
            .get(g)
            .ok_or_else(|| FopError::eio(format!("distribute has no group {g}")))
    }

    /// The groups that can serve now (a replica set as soon as it has quorum).
    fn up(&self) -> Vec<usize> {
        (0..self.n())
            .filter(|&g| self.children.get(g).is_some_and(|c| c.serves()))
            .collect()
    }

    /// Looks `loc` up on each of `groups` at once.
    async fn lookup_on(
        &self,
        cx: &Cx,
        groups: &[usize],
        loc: &Loc,
        x: &Xdata,
    ) -> Vec<(usize, FopResult<Entry>)> {
        join_all(groups.iter().map(|&g| async move {
            match self.children.get(g) {
                Some(c) => (g, c.lookup(cx, loc.clone(), x.clone()).await),
                None => (g, Err(FopError::eio("no such group"))),
            }
        }))
        .await
    }

    /// Runs `f` under distribute's layout lock on `dir` (an inodelk in the first up group,
    /// so that layout heals, fix-layouts and settling never interleave).
    async fn with_layout_lock<T>(
        &self,
        dir: Gfid,
        f: impl std::future::Future<Output = FopResult<T>>,
    ) -> FopResult<T> {
        let Some(&g) = self.up().first() else {
            return Err(FopError::not_connected("no group is up"));
        };
        let lcx = with_owner(&Cx::internal(), new_owner());
        let child = self.child(g)?;
        let lock = |kind| {
            child.inodelk(
                &lcx,
                DOMAIN.to_string(),
                Target::Loc(Loc::inode(dir)),
                LockWait::Wait,
                Flock::whole(kind),
                Xdata::new(),
            )
        };
        lock(LockType::Write).await?;
        let r = f.await;
        let _ = lock(LockType::Unlock).await;
        r
    }

    fn group_up(&self, g: usize) -> bool {
        self.up().contains(&g)
    }

    fn group_named(&self, name: &[u8]) -> Option<usize> {
        let name = std::str::from_utf8(name).ok()?;
        self.names.iter().position(|n| n == name)
    }

    fn hash(&self, name: &str) -> u32 {
        name_hash(name, self.cfg.rsync_hash)
    }

    fn remember(&self, gfid: Gfid, node: Node) {
        if let Ok(mut m) = self.inodes.lock() {
            if m.len() >= INODE_CACHE_MAX {
                m.clear();
            }
            m.insert(gfid, node);
        }
    }

    fn forget(&self, gfid: Gfid) {
        if let Ok(mut m) = self.inodes.lock() {
            m.remove(&gfid);
        }
    }

    fn known(&self, gfid: Gfid) -> Option<Node> {
        self.inodes.lock().ok().and_then(|m| m.get(&gfid).cloned())
    }

    /// The cached layout of a directory, if any.
    pub fn cached_layout(&self, dir: Gfid) -> Option<Arc<Layout>> {
        match self.known(dir) {
            Some(Node::Dir(l)) => Some(l),
            _ => None,
        }
    }

    /// The layout of directory `dir`, from the cache or by looking the directory up.
    pub async fn layout(&self, cx: &Cx, dir: Gfid) -> FopResult<Arc<Layout>> {
        if let Some(l) = self.cached_layout(dir) {
            return Ok(l);
        }
        self.lookup_dir(cx, &Loc::inode(dir), &Xdata::new(), None)
            .await?;
        self.cached_layout(dir)
            .ok_or_else(|| FopError::new(libc::ENOTDIR, format!("<{dir}> is not a directory")))
    }

    /// Reloads the layout of `dir` from the bricks.
    pub async fn reload_layout(&self, cx: &Cx, dir: Gfid) -> FopResult<Arc<Layout>> {
        self.forget(dir);
        self.layout(cx, dir).await
    }

    /// Free space per group, refreshed when older than a few seconds. Down groups: `None`.
    async fn space(&self, cx: &Cx) -> Vec<Option<Statfs>> {
        let now = Instant::now();
        let stale: Vec<usize> = {
            let s = self.space.lock().map(|s| s.clone()).unwrap_or_default();
            (0..self.n())
                .filter(|&g| {
                    s.get(g)
                        .and_then(|v| v.as_ref())
                        .is_none_or(|(at, _)| now.duration_since(*at) > SPACE_TTL)
                })
                .collect()
        };
        if !stale.is_empty() {
            let got = join_all(stale.iter().map(|&g| async move {
                let r = match self.children.get(g) {
                    Some(c) if self.group_up(g) => c
                        .statfs(cx, Loc::inode(Gfid::ROOT), Xdata::new())
                        .await
                        .ok(),
                    _ => None,
                };
                (g, r)
            }))
            .await;
            if let Ok(mut s) = self.space.lock() {
                for (g, r) in got {
                    if let Some(slot) = s.get_mut(g) {
                        *slot = r.map(|st| (now, st));
                    }
                }
            }
        }
        let up = self.up();
        let s = self.space.lock().map(|s| s.clone()).unwrap_or_default();
        (0..self.n())
            .map(|g| {
                if up.contains(&g) {
                    s.get(g).and_then(|v| v.map(|(_, st)| st))
                } else {
                    None
                }
            })
            .collect()
    }

    /// Layout weights of the groups: capacity (or 1) for up groups, 0 for down ones.
    pub async fn weights(&self, cx: &Cx) -> Vec<u64> {
        let space = self.space(cx).await;
        space
            .iter()
            .enumerate()
            .map(|(g, s)| match s {
                _ if self.is_leaving(g) => 0,
                None => 0,
                Some(st) if self.cfg.weighted => {
                    (st.blocks.saturating_mul(u64::from(st.frsize.max(1))) >> 20).max(1)
                }
                Some(_) => 1,
            })
            .collect()
    }

    fn is_full(&self, st: &Statfs) -> bool {
        if st.blocks == 0 {
            return false;
        }
        (st.bavail as f64) < (st.blocks as f64) * self.cfg.min_free_disk / 100.0
    }

    /// Where a new file hashed to group `h` goes: `h`, or the group with the most free
    /// space when `h` is nearly full or being drained (a directory a remove-brick has not
    /// laid out again yet still gives it a range).
    async fn placement(&self, cx: &Cx, h: usize) -> usize {
        let leaving = self.is_leaving(h);
        if self.cfg.min_free_disk <= 0.0 && !leaving {
            return h;
        }
        let space = self.space(cx).await;
        let full = space
            .get(h)
            .copied()
            .flatten()
            .is_some_and(|st| self.is_full(&st));
        if !full && !leaving {
            return h;
        }
        let free = |s: &Statfs| s.bavail as f64 / s.blocks.max(1) as f64;
        let best = space
            .iter()
            .enumerate()
            .filter(|(g, _)| !self.is_leaving(*g) && self.group_up(*g))
            .filter_map(|(g, s)| s.map(|s| (g, s)))
            .filter(|(_, s)| !self.is_full(s) || leaving)
            .max_by(|(_, a), (_, b)| free(a).total_cmp(&free(b)))
            .map(|(g, _)| g);
        best.unwrap_or(h)
    }

    // ---- directories -------------------------------------------------------------------

    /// Looks a directory up on every group; creates it where it is missing (when the name is
    /// known), lays it out when its layout has holes, and caches the layout.
    async fn lookup_dir(
        &self,
        cx: &Cx,
        loc: &Loc,
        xdata: &Xdata,
        first: Option<(usize, Entry)>,
    ) -> FopResult<Entry> {
        let up = self.up();
        let x = lookup_xdata(xdata);
        let mut found: Vec<(usize, Entry)> = Vec::new();
        let mut missing = Vec::new();
        let mut errors: Vec<FopError> = Vec::new();
        if let Some(f) = first {
            found.push(f);
        }
        let ask: Vec<usize> = up
            .iter()
            .copied()
            .filter(|g| !found.iter().any(|(f, _)| f == g))
            .collect();
        let results = self.lookup_on(cx, &ask, loc, &x).await;
        for (g, r) in results {
            match r {
                Ok(e) if e.iatt.kind == FileKind::Dir => found.push((g, e)),
                Ok(_) => errors.push(FopError::eio(format!(
                    "{loc} is a directory on some groups and not on {}",
                    self.names.get(g).map(String::as_str).unwrap_or("?")
                ))),
                Err(e) if is_gone(&e) => missing.push(g),
                Err(e) => errors.push(e),
            }
        }
        found.sort_by_key(|(g, _)| *g);
        tracing::debug!(%loc, found = found.len(), ?missing, errors = errors.len(), "directory lookup");
        let Some((_, head)) = found.first().cloned() else {
            if !missing.is_empty() {
                return Err(FopError::new(
                    libc::ENOENT,
                    format!("{loc}: no such file or directory"),
                ));
            }
            return Err(errors
                .into_iter()
                .next()
                .unwrap_or_else(|| FopError::not_connected("no group of the volume is up")));
        };
        let gfid = head.iatt.gfid;
        if let Some((_, other)) = found.iter().find(|(_, e)| e.iatt.gfid != gfid) {
            return Err(FopError::eio(format!(
                "directory {loc} has different identities on different groups ({gfid} and {})",
                other.iatt.gfid
            )));
        }
        let mut slots: Vec<Option<GroupLayout>> = vec![None; self.n()];
        for (g, e) in &found {
            if let Some(raw) = e.xdata.get(XATTR_LAYOUT) {
                match GroupLayout::decode(raw) {
                    Ok(gl) => {
                        if let Some(s) = slots.get_mut(*g) {
                            *s = Some(gl);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(dir = %gfid, group = %self.names[*g], error = %err, "ignoring a malformed layout")
                    }
                }
            }
        }
        // A down group's slice is unknown, not missing: keep what was known of it.
        let all_up = up.len() == self.n();
        if !all_up && let Some(Node::Dir(known)) = self.known(gfid) {
            for (g, slot) in slots.iter_mut().enumerate() {
                if !up.contains(&g) && slot.is_none() {
                    *slot = known.slots.get(g).copied().flatten();
                }
            }
        }
        let mut layout = Layout::new(slots);
        // Copies missing on up groups: create them (needs the name, or it is the root).
        if !missing.is_empty() && (loc.name.is_some() || gfid.is_root()) {
            layout = self
                .heal_missing_dirs(cx, loc, gfid, &head, &missing, layout)
                .await;
        }
        let healed = missing
            .iter()
            .all(|&g| layout.slots.get(g).is_some_and(Option::is_some));
        if !layout.is_complete() && all_up && errors.is_empty() && healed {
            match self.heal_layout(cx, gfid, &layout).await {
                Ok(l) => layout = l,
                Err(e) => {
                    tracing::warn!(dir = %gfid, error = %e, "could not lay the directory out")
                }
            }
        }
        self.remember(gfid, Node::Dir(Arc::new(layout)));
        let mut entry = head;
        for (_, e) in &found {
            entry.iatt.mtime = later(entry.iatt.mtime, e.iatt.mtime);
            entry.iatt.ctime = later(entry.iatt.ctime, e.iatt.ctime);
            entry.iatt.atime = later(entry.iatt.atime, e.iatt.atime);
        }
        strip(&mut entry.xdata);
        Ok(entry)
    }

    /// Creates a directory's copy on the groups that lack it, with no range (it takes new
    /// files only after the next fix-layout). Returns the layout with their slots.
    async fn heal_missing_dirs(
        &self,
        cx: &Cx,
        loc: &Loc,
        gfid: Gfid,
        like: &Entry,
        missing: &[usize],
        mut layout: Layout,
    ) -> Layout {
        let owner = Cx {
            uid: like.iatt.uid,
            gid: like.iatt.gid,
            ..cx.clone()
        };
        let slice = GroupLayout {
            generation: layout.generation().max(1),
            settled: layout.is_settled(),
            range: None,
        };
        let mut x = Xdata::new();
        x.set(
            format!("{SETXATTR_ON_CREATE}{XATTR_LAYOUT}"),
            slice.encode(),
        );
        let target = if gfid.is_root() {
            None
        } else {
            Some(loc.clone().with_gfid(gfid))
        };
        let Some(target) = target else {
            // The root exists on every brick from the start; only its layout can be missing.
            return layout;
        };
        let results = join_all(missing.iter().map(|&g| {
            let x = x.clone();
            let owner = owner.clone();
            let target = target.clone();
            async move {
                let r = match self.children.get(g) {
                    Some(c) => c.mkdir(&owner, target, like.iatt.perm, 0, x).await,
                    None => Err(FopError::eio("no such group")),
                };
                (g, r)
            }
        }))
        .await;
        for (g, r) in results {
            match r {
                Ok(_) => {
                    tracing::info!(dir = %loc, group = %self.names[g], "created a missing copy of a directory");
                    if let Some(s) = layout.slots.get_mut(g) {
                        *s = Some(slice);
                    }
                }
                Err(e) => {
                    tracing::warn!(dir = %loc, group = %self.names[g], error = %e, "could not create a missing copy of a directory")
                }
            }
        }
        layout
    }

    /// Lays out a directory whose layout has holes (a new volume's root, a directory made
    /// before the volume was distributed), under a lock. Settled only if it is empty.
    async fn heal_layout(&self, cx: &Cx, dir: Gfid, old: &Layout) -> FopResult<Layout> {
        let result = async {
            // Somebody may have done it while we waited.
            let current = self.read_layout(cx, dir).await?;
            if current.is_complete() {
                return Ok(current);
            }
            // Which groups hold entries here (files, and subdirectories not yet created
            // on every group).
            let listing = self.list_all(cx, dir).await?;
            let holders: Vec<usize> = listing
                .iter()
                .filter(|(_, es)| es.iter().any(|e| !is_linkto_entry(e)))
                .map(|(g, _)| *g)
                .collect();
            let weights = self.weights(cx).await;
            let prev = if old.is_complete() { Some(old) } else { None };
            let generation = current.generation().saturating_add(1);
            let next = match holders.as_slice() {
                // A directory from before the volume was distributed: its files are all in
                // one group, which keeps the whole ring (settled) until a fix-layout.
                [only] if prev.is_none() && !self.is_leaving(*only) => (0..self.n())
                    .map(|g| GroupLayout {
                        generation,
                        settled: true,
                        range: (g == *only).then_some(layout::Range {
                            start: 0,
                            end: u32::MAX,
                        }),
                    })
                    .collect(),
                _ => layout::compute(
                    &weights,
                    prev,
                    self.hash(&dir.to_string()),
                    generation,
                    holders.is_empty(),
                ),
            };
            self.write_layout(cx, dir, &next).await?;
            Ok(Layout::new(next.into_iter().map(Some).collect()))
        };
        let result = self.with_layout_lock(dir, result).await;
        if result.is_ok() {
            tracing::info!(dir = %dir, "laid out a directory");
        }
        result
    }

    /// The layout of a directory as the bricks hold it now (no cache, no heal).
    pub async fn read_layout(&self, cx: &Cx, dir: Gfid) -> FopResult<Layout> {
        let mut slots = vec![None; self.n()];
        let x = lookup_xdata(&Xdata::new());
        let up = self.up();
        let results = self.lookup_on(cx, &up, &Loc::inode(dir), &x).await;
        for (g, r) in results {
            match r {
                Ok(e) => {
                    if let Some(raw) = e.xdata.get(XATTR_LAYOUT)
                        && let Ok(gl) = GroupLayout::decode(raw)
                        && let Some(s) = slots.get_mut(g)
                    {
                        *s = Some(gl);
                    }
                }
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Layout::new(slots))
    }

    /// Writes a layout: each group's slice on that group's copies of the directory.
    pub async fn write_layout(&self, cx: &Cx, dir: Gfid, next: &[GroupLayout]) -> FopResult<()> {
        let results = join_all(next.iter().enumerate().map(|(g, gl)| async move {
            let Some(c) = self.children.get(g) else {
                return Ok(());
            };
            if !self.group_up(g) {
                return Err(FopError::not_connected(format!(
                    "group {} is down",
                    self.names[g]
                )));
            }
            let mut x = Xdata::new();
            x.set(XATTR_LAYOUT, gl.encode());
            c.setxattr(cx, Target::Loc(Loc::inode(dir)), x, 0, Xdata::new())
                .await
        }))
        .await;
        for r in results {
            r?;
        }
        self.remember(
            dir,
            Node::Dir(Arc::new(Layout::new(
                next.iter().copied().map(Some).collect(),
            ))),
        );
        Ok(())
    }

    /// Lays one directory out again over every group (fix-layout), under distribute's
    /// layout lock, moving as little of the ring as possible. The directory must have
    /// been looked up by name first (that creates it on groups that lack it). Returns what
    /// changed and the subdirectories to visit next.
    pub async fn fix_layout(&self, cx: &Cx, dir: Gfid) -> FopResult<Relayout> {
        if self.up().len() < self.n() {
            return Err(FopError::not_connected(
                "fix-layout needs every group up: a down group's share cannot be decided",
            ));
        }
        let result = async {
            let current = self.read_layout(cx, dir).await?;
            let listing = self.list_all(cx, dir).await?;
            let mut subdirs: Vec<(String, Gfid)> = Vec::new();
            let mut empty = true;
            for (_, entries) in &listing {
                for e in entries {
                    if e.kind == FileKind::Dir {
                        if !subdirs.iter().any(|(n, _)| n == &e.name) {
                            subdirs.push((e.name.clone(), e.gfid));
                        }
                    } else if !is_linkto_entry(e) {
                        empty = false;
                    }
                }
            }
            // Settled means every name is in its hashed group: a subdirectory counts only
            // once it exists in every group.
            let everywhere = subdirs
                .iter()
                .all(|(name, _)| dir_in_every_group(&listing, self.n(), name));
            let empty = empty && everywhere;
            let weights = self.weights(cx).await;
            let prev = current.is_complete().then_some(&current);
            let next = layout::compute(
                &weights,
                prev,
                self.hash(&dir.to_string()),
                current.generation().saturating_add(1),
                empty,
            );
            let same = current.is_complete()
                && (0..self.n()).all(|g| current.range_of(g) == next.get(g).and_then(|n| n.range));
            let moved = match prev {
                Some(p) => layout::moved(p, &next),
                None => layout::RING,
            };
            if !same {
                self.write_layout(cx, dir, &next).await?;
            }
            Ok(Relayout {
                changed: !same,
                moved,
                subdirs,
            })
        };
        self.with_layout_lock(dir, result).await
    }

    /// Every entry of `dir` on every up group (without `.`/`..`), read to the end.
    pub async fn list_all(&self, cx: &Cx, dir: Gfid) -> FopResult<Vec<(usize, Vec<DirEntry>)>> {
        self.list_on(cx, dir, &self.up()).await
    }

    /// Every entry of `dir` on each of `groups` (a group without the directory lists
    /// nothing), read to the end.
    pub async fn list_on(
        &self,
        cx: &Cx,
        dir: Gfid,
        groups: &[usize],
    ) -> FopResult<Vec<(usize, Vec<DirEntry>)>> {
        let results = join_all(groups.iter().map(|&g| async move {
            let r = async {
                let c = self.child(g)?;
                let fd = Fd::new(dir, libc::O_RDONLY);
                match c
                    .opendir(cx, Loc::inode(dir), fd.clone(), Xdata::new())
                    .await
                {
                    Ok(()) => {}
                    Err(e) if is_gone(&e) => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                }
                let mut out = Vec::new();
                let mut off = 0u64;
                let r = loop {
                    match c
                        .readdir(cx, fd.clone(), off, 64 * 1024, true, Xdata::new())
                        .await
                    {
                        Ok(batch) if batch.is_empty() => break Ok(()),
                        Ok(batch) => {
                            if let Some(last) = batch.last() {
                                off = last.offset;
                            }
                            out.extend(
                                batch
                                    .into_iter()
                                    .filter(|e| e.name != "." && e.name != ".."),
                            );
                        }
                        Err(e) => break Err(e),
                    }
                };
                let _ = c.releasedir(cx, fd).await;
                r.map(|()| out)
            }
            .await;
            (g, r)
        }))
        .await;
        let mut out = Vec::new();
        for (g, r) in results {
            out.push((g, r?));
        }
        Ok(out)
    }

    // ---- names ----------------------------------------------------------------------------

    /// Resolves `name` in `parent`: the hashed group first, then (when the layout is not
    /// settled or a linkto is stale) every group.
    async fn resolve(&self, cx: &Cx, loc: &Loc, xdata: &Xdata) -> FopResult<Resolved> {
        let (parent, _) = loc.parent_and_name()?;
        let mut tries = 0;
        loop {
            match self.resolve_once(cx, loc, xdata).await {
                // The hashed group holds a newer layout than ours: a miss there meant
                // nothing. Reload it and look again.
                Err(e) if e.errno == libc::ESTALE && tries < STALE_RETRIES => {
                    tries += 1;
                    self.reload_layout(cx, parent).await?;
                }
                other => return other,
            }
        }
    }

    async fn resolve_once(&self, cx: &Cx, loc: &Loc, xdata: &Xdata) -> FopResult<Resolved> {
        let (parent, name) = loc.parent_and_name()?;
        let layout = self.layout(cx, parent).await?;
        let hashed = layout.group_for(self.hash(name));
        let x = lookup_xdata(xdata);
        if let Some(h) = hashed {
            let c = self.child(h)?;
            // With a settled layout a miss is final: let the brick check it is current.
            let hx = if layout.is_settled() {
                gen_xdata(&x, &layout)
            } else {
                x.clone()
            };
            match c.lookup(cx, loc.clone(), hx).await {
                Ok(e) if e.iatt.kind == FileKind::Dir => {
                    let entry = self.lookup_dir(cx, loc, xdata, Some((h, e))).await?;
                    return Ok(Resolved {
                        entry,
                        cached: h,
                        hashed,
                        linkto: None,
                    });
                }
                Ok(e) if is_linkto(&e) && e.xdata.contains(XATTR_LINKTO) => {
                    if xdata.contains(RAW_LINKTO_KEY) {
                        return Ok(Resolved {
                            entry: e,
                            cached: h,
                            hashed,
                            linkto: Some(h),
                        });
                    }
                    let target = e.xdata.get(XATTR_LINKTO).and_then(|t| self.group_named(t));
                    if let Some(t) = target.filter(|&t| t != h)
                        && let Ok(found) = self.child(t)?.lookup(cx, loc.clone(), x.clone()).await
                        && found.iatt.gfid == e.iatt.gfid
                        && !is_linkto(&found)
                    {
                        return Ok(Resolved {
                            entry: found,
                            cached: t,
                            hashed,
                            linkto: Some(h),
                        });
                    }
                    // A stale pointer: look everywhere.
                    let mut r = self.resolve_everywhere(cx, loc, &x, hashed).await?;
                    r.linkto = Some(h);
                    return Ok(r);
                }
                Ok(e) => {
                    return Ok(Resolved {
                        entry: e,
                        cached: h,
                        hashed,
                        linkto: None,
                    });
                }
                Err(e) if e.errno == libc::ENOENT => {
                    if self.cfg.lookup_optimize && layout.is_settled() {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.resolve_everywhere(cx, loc, &x, hashed).await
    }

    async fn resolve_everywhere(
        &self,
        cx: &Cx,
        loc: &Loc,
        x: &Xdata,
        hashed: Option<usize>,
    ) -> FopResult<Resolved> {
        let up = self.up();
        let results = self.lookup_on(cx, &up, loc, x).await;
        let mut dir: Option<(usize, Entry)> = None;
        let mut file: Option<(usize, Entry)> = None;
        let mut linkto = None;
        let mut err: Option<FopError> = None;
        for (g, r) in results {
            match r {
                Ok(e) if e.iatt.kind == FileKind::Dir => {
                    if dir.is_none() {
                        dir = Some((g, e));
                    }
                }
                Ok(e) if is_linkto(&e) && e.xdata.contains(XATTR_LINKTO) => linkto = Some(g),
                Ok(e) => {
                    if file.is_none() || Some(g) == hashed {
                        file = Some((g, e));
                    }
                }
                Err(e) if is_gone(&e) => {}
                Err(e) => err = Some(e),
            }
        }
        if let Some((g, e)) = dir {
            let entry = self
                .lookup_dir(cx, loc, &Xdata::new(), Some((g, e)))
                .await?;
            return Ok(Resolved {
                entry,
                cached: g,
                hashed,
                linkto: None,
            });
        }
        if let Some((g, e)) = file {
            return Ok(Resolved {
                entry: e,
                cached: g,
                hashed,
                linkto,
            });
        }
        Err(err.unwrap_or_else(|| {
            FopError::new(libc::ENOENT, format!("{loc}: no such file or directory"))
        }))
    }

    /// The group holding file `gfid`: from the cache, or by asking every group.
    async fn group_of(&self, cx: &Cx, gfid: Gfid) -> FopResult<Node> {
        if let Some(n) = self.known(gfid) {
            return Ok(n);
        }
        self.find_inode(cx, gfid).await
    }

    async fn find_inode(&self, cx: &Cx, gfid: Gfid) -> FopResult<Node> {
        self.lookup_nameless(cx, gfid, &Xdata::new()).await?;
        self.known(gfid)
            .ok_or_else(|| FopError::new(libc::ESTALE, format!("<{gfid}> is gone")))
    }

    async fn lookup_nameless(&self, cx: &Cx, gfid: Gfid, xdata: &Xdata) -> FopResult<Entry> {
        let x = lookup_xdata(xdata);
        let up = self.up();
        let results = self.lookup_on(cx, &up, &Loc::inode(gfid), &x).await;
        let mut err = None;
        let mut file = None;
        for (g, r) in results {
            match r {
                Ok(e) if e.iatt.kind == FileKind::Dir => {
                    return self
                        .lookup_dir(cx, &Loc::inode(gfid), xdata, Some((g, e)))
                        .await;
                }
                Ok(e) if is_linkto(&e) && e.xdata.contains(XATTR_LINKTO) => {}
                Ok(e) => {
                    if file.is_none() {
                        file = Some((g, e));
                    }
                }
                Err(e) if is_gone(&e) => {}
                Err(e) => err = Some(e),
            }
        }
        match file {
            Some((g, mut e)) => {
                self.remember(gfid, Node::File(g));
                strip(&mut e.xdata);
                Ok(e)
            }
            None => Err(err.unwrap_or_else(|| {
                FopError::new(libc::ESTALE, format!("<{gfid}> no longer exists"))
            })),
        }
    }

    /// Runs `op` on the group holding `gfid`; if that group says the file is gone (it moved),
    /// finds it again and retries once.
    async fn on_inode<'b, T, F>(&'b self, cx: &'b Cx, gfid: Gfid, op: F) -> FopResult<T>
    where
        T: Send,
        F: Fn(XlatorRef, bool) -> futures::future::BoxFuture<'b, FopResult<T>> + Send + Sync,
    {
        match self.group_of(cx, gfid).await? {
            Node::Dir(_) => {
                let g = self.dir_read_group()?;
                op(self.child(g)?.clone(), true).await
            }
            Node::File(g) => match op(self.child(g)?.clone(), false).await {
                Err(e) if is_gone(&e) => match self.find_inode(cx, gfid).await {
                    Ok(Node::File(g2)) if g2 != g => op(self.child(g2)?.clone(), false).await,
                    _ => Err(e),
                },
                other => other,
            },
        }
    }

    /// The group that answers reads of directories: the first up.
    fn dir_read_group(&self) -> FopResult<usize> {
        self.up()
            .first()
            .copied()
            .ok_or_else(|| FopError::not_connected("no group of the volume is up"))
    }

    /// A change to a directory's inode on every group: the first up group first (its
    /// result is returned), then the others in parallel.
    async fn dir_change<'b, T, F>(&'b self, op: F) -> FopResult<T>
    where
        T: Send,
        F: Fn(XlatorRef) -> futures::future::BoxFuture<'b, FopResult<T>> + Send + Sync,
    {
        let up = self.up();
        let Some((&first, rest)) = up.split_first() else {
            return Err(FopError::not_connected("no group of the volume is up"));
        };
        let r = op(self.child(first)?.clone()).await?;
        let others = join_all(rest.iter().map(|&g| {
            let op = &op;
            async move {
                match self.children.get(g) {
                    Some(c) => (g, op(c.clone()).await),
                    None => (g, Err(FopError::eio("no such group"))),
                }
            }
        }))
        .await;
        for (g, o) in others {
            if let Err(e) = o
                && !is_gone(&e)
            {
                tracing::warn!(group = %self.names[g], error = %e, "a directory change failed on one group");
            }
        }
        Ok(r)
    }

    /// Runs an entry-creating fop on group `g` with the layout generation check, reloading
    /// the parent's layout and asking `pick` again when a brick says it changed.
    async fn create_placed<'b, T, F>(
        &'b self,
        cx: &'b Cx,
        loc: &Loc,
        xdata: &Xdata,
        op: F,
    ) -> FopResult<(usize, T)>
    where
        T: Send,
        F: Fn(XlatorRef, Xdata) -> futures::future::BoxFuture<'b, FopResult<T>> + Send + Sync,
    {
        let (parent, name) = loc.parent_and_name()?;
        let gfid = loc.require_gfid()?;
        let mut layout = self.layout(cx, parent).await?;
        let mut tries = 0;
        loop {
            let h = self.hashed_group(&layout, parent, name)?;
            let child = self.child(h)?;
            if !self.group_up(h) {
                return Err(FopError::not_connected(format!(
                    "{name:?} belongs to group {}, which is down",
                    self.names[h]
                )));
            }
            let target = self.placement(cx, h).await;
            let x = gen_xdata(xdata, &layout);
            let r = if target == h {
                op(child.clone(), x).await.map(|v| (h, v))
            } else {
                // Pointer first, so that the file is never unreachable.
                let mut lx = x.clone();
                lx.set(
                    format!("{SETXATTR_ON_CREATE}{XATTR_LINKTO}"),
                    self.names[target].as_bytes().to_vec(),
                );
                match child
                    .mknod(
                        cx,
                        loc.clone().with_gfid(gfid),
                        libc::S_IFREG | LINKTO_MODE,
                        0,
                        0,
                        lx,
                    )
                    .await
                {
                    Ok(_) => match op(self.child(target)?.clone(), x).await {
                        Ok(v) => Ok((target, v)),
                        Err(e) => {
                            let _ = child.unlink(cx, loc.clone(), Xdata::new()).await;
                            Err(e)
                        }
                    },
                    Err(e) => Err(e),
                }
            };
            match r {
                Err(e) if e.errno == libc::ESTALE && tries < STALE_RETRIES => {
                    tries += 1;
                    tracing::debug!(dir = %parent, "layout changed under a create; reloading it");
                    layout = self.reload_layout(cx, parent).await?;
                }
                Ok((g, v)) => {
                    self.remember(gfid, Node::File(g));
                    return Ok((g, v));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The hashed group of `name` in a directory with `layout`: `ENOTCONN` when the range
    /// holding it is unknown because a group is down, `EIO` when the layout has a hole.
    fn hashed_group(&self, layout: &Layout, parent: Gfid, name: &str) -> FopResult<usize> {
        layout.group_for(self.hash(name)).ok_or_else(|| {
            if self.up().len() < self.n() {
                FopError::not_connected(format!(
                    "the group holding {name:?} in <{parent}> is not known while a group is down"
                ))
            } else {
                FopError::eio(format!(
                    "the layout of directory <{parent}> has no range for {name:?}"
                ))
            }
        })
    }

    /// Takes distribute's entry lock on `parent/name` in group `g`; returns the lock owner's
    /// context for the unlock.
    async fn lock_name(&self, g: usize, parent: Gfid, name: &str) -> FopResult<Cx> {
        let lcx = with_owner(&Cx::internal(), new_owner());
        self.child(g)?
            .entrylk(
                &lcx,
                DOMAIN.to_string(),
                Loc::inode(parent),
                Some(name.to_string()),
                LockWait::Wait,
                LockType::Write,
                Xdata::new(),
            )
            .await?;
        Ok(lcx)
    }

    fn unlock_name(&self, lcx: Cx, g: usize, parent: Gfid, name: &str) {
        let Some(c) = self.children.get(g).cloned() else {
            return;
        };
        let name = name.to_string();
        tokio::spawn(async move {
            if let Err(e) = c
                .entrylk(
                    &lcx,
                    DOMAIN.to_string(),
                    Loc::inode(parent),
                    Some(name),
                    LockWait::Wait,
                    LockType::Unlock,
                    Xdata::new(),
                )
                .await
            {
                tracing::warn!(error = %e, "could not release a distribute entry lock");
            }
        });
    }

    async fn unlock_now(&self, lcx: &Cx, g: usize, parent: Gfid, name: &str) {
        if let Some(c) = self.children.get(g) {
            let _ = c
                .entrylk(
                    lcx,
                    DOMAIN.to_string(),
                    Loc::inode(parent),
                    Some(name.to_string()),
                    LockWait::Wait,
                    LockType::Unlock,
                    Xdata::new(),
                )
                .await;
        }
    }

    fn file_fd(&self, fd: &Fd, g: usize) {
        fd.set_ctx(
            FD_KEY,
            Arc::new(DhtFile {
                group: AtomicUsize::new(g),
                moved: Mutex::new(None),
                orphan: std::sync::atomic::AtomicBool::new(false),
            }),
        );
    }

    /// Where the fops of an open file go: its group and the fd to use there (the file may
    /// have been reopened in another group after a rebalance moved it).
    async fn fd_route(&self, cx: &Cx, fd: &Fd) -> FopResult<(usize, Fd)> {
        if let Some(f) = fd.ctx::<DhtFile>(FD_KEY) {
            if let Some((g, moved)) = f.moved.lock().ok().and_then(|m| m.clone()) {
                return Ok((g, moved));
            }
            return Ok((f.group.load(Ordering::SeqCst), fd.clone()));
        }
        match self.group_of(cx, fd.gfid()).await? {
            Node::File(g) => Ok((g, fd.clone())),
            Node::Dir(_) => Ok((self.dir_read_group()?, fd.clone())),
        }
    }

    /// A change through an open file answered with `nlink == 0`: either the file was
    /// unlinked (it stays an open orphan) or a rebalance moved it to another group while
    /// it was open. In the second case the file is opened there and the change must be
    /// made again there. Returns the new route.
    async fn follow_migration(
        &self,
        cx: &Cx,
        fd: &Fd,
        from: usize,
        after: &Iatt,
    ) -> FopResult<Option<(usize, Fd)>> {
        if after.nlink != 0 || after.kind != FileKind::File {
            return Ok(None);
        }
        let Some(f) = fd.ctx::<DhtFile>(FD_KEY) else {
            return Ok(None);
        };
        if f.orphan.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let gfid = fd.gfid();
        self.forget(gfid);
        let to = match self.find_inode(cx, gfid).await {
            Ok(Node::File(g)) if g != from => g,
            _ => {
                f.orphan.store(true, Ordering::SeqCst);
                return Ok(None);
            }
        };
        let flags = fd.flags() & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC);
        let nfd = Fd::new(gfid, flags);
        self.child(to)?
            .open(cx, Loc::inode(gfid), flags, nfd.clone(), Xdata::new())
            .await?;
        tracing::info!(%gfid, from = %self.names[from], to = %self.names[to], "an open file moved to another group; following it");
        let old = f
            .moved
            .lock()
            .ok()
            .and_then(|mut m| m.replace((to, nfd.clone())));
        if let Some((g, ofd)) = old
            && let Ok(c) = self.child(g)
        {
            let _ = c.release(cx, ofd).await;
        }
        Ok(Some((to, nfd)))
    }

    // ---- readdir cookies -------------------------------------------------------------------

    fn encode_cookie(&self, g: usize, cookie: u64) -> u64 {
        if cookie < (1 << 56) && g < 127 {
            return ((g as u64) << 56) | cookie;
        }
        let token = self.next_cookie.fetch_add(1, Ordering::Relaxed) & ((1 << 63) - 1);
        if let Ok(mut t) = self.cookies.lock() {
            t.map.insert(token, (g, cookie));
            t.order.push_back(token);
            while t.order.len() > COOKIE_TABLE_MAX {
                if let Some(old) = t.order.pop_front() {
                    t.map.remove(&old);
                }
            }
        }
        (1 << 63) | token
    }

    fn decode_cookie(&self, off: u64) -> FopResult<(usize, u64)> {
        if off & (1 << 63) == 0 {
            return Ok(((off >> 56) as usize, off & ((1 << 56) - 1)));
        }
        let token = off & !(1 << 63);
        self.cookies
            .lock()
            .ok()
            .and_then(|t| t.map.get(&token).copied())
            .ok_or_else(|| FopError::invalid("directory offset expired: list the directory again"))
    }
}

fn is_linkto_entry(e: &DirEntry) -> bool {
    e.kind == FileKind::File
        && e.iatt
            .as_ref()
            .is_some_and(|a| a.perm & 0o7777 == LINKTO_MODE)
}

/// True when every one of the `n` groups' listings holds directory `name`.
fn dir_in_every_group(listing: &[(usize, Vec<DirEntry>)], n: usize, name: &str) -> bool {
    listing.len() == n
        && listing
            .iter()
            .all(|(_, es)| es.iter().any(|e| e.name == name && e.kind == FileKind::Dir))
}

fn boxed<'a, T: Send + 'a>(
    f: impl std::future::Future<Output = FopResult<T>> + Send + 'a,
) -> futures::future::BoxFuture<'a, FopResult<T>> {
    Box::pin(f)
}

#[async_trait]
impl Translator for Dht {
    crate::xlator_base!();

    fn is_up(&self) -> bool {
        self.children.iter().any(|c| c.is_up())
    }

    fn notify(&self, event: &Event) {
        self.base.notify_parents(event)
    }

    async fn lookup(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<Entry> {
        if loc.name.is_none() {
            let gfid = loc.require_gfid()?;
            return match self.known(gfid) {
                Some(Node::Dir(_)) | None if gfid.is_root() => {
                    self.lookup_dir(cx, &loc, &xdata, None).await
                }
                Some(Node::Dir(_)) => self.lookup_dir(cx, &loc, &xdata, None).await,
                Some(Node::File(g)) => {
                    match self
                        .child(g)?
                        .lookup(cx, loc.clone(), lookup_xdata(&xdata))
                        .await
                    {
                        Ok(mut e) if !is_linkto(&e) => {
                            strip(&mut e.xdata);
                            Ok(e)
                        }
                        Ok(_) => self.lookup_nameless(cx, gfid, &xdata).await,
                        Err(e) if is_gone(&e) => self.lookup_nameless(cx, gfid, &xdata).await,
                        Err(e) => Err(e),
                    }
                }
                None => self.lookup_nameless(cx, gfid, &xdata).await,
            };
        }
        let r = self.resolve(cx, &loc, &xdata).await?;
        let mut entry = r.entry;
        if entry.iatt.kind != FileKind::Dir {
            self.remember(entry.iatt.gfid, Node::File(r.cached));
            let raw = xdata.contains(RAW_LINKTO_KEY);
            if !raw {
                strip(&mut entry.xdata);
            }
            if let Some(name) = self.names.get(r.cached) {
                entry.xdata.set(CACHED_GROUP_KEY, name.as_bytes().to_vec());
            }
        }
        Ok(entry)
    }

    async fn stat(&self, cx: &Cx, target: Target, xdata: Xdata) -> FopResult<Iatt> {
        if let Target::Fd(fd) = &target
            && fd.ctx::<DhtDir>(FD_KEY).is_none()
        {
            let (g, cfd) = self.fd_route(cx, fd).await?;
            return self.child(g)?.stat(cx, Target::Fd(cfd), xdata).await;
        }
        let gfid = target.gfid().unwrap_or(Gfid::NULL);
        if matches!(self.known(gfid), Some(Node::Dir(_))) || gfid.is_root() {
            let e = self.lookup_dir(cx, &Loc::inode(gfid), &xdata, None).await?;
            return Ok(e.iatt);
        }
        let t = Target::Loc(Loc::inode(gfid));
        self.on_inode(cx, gfid, |c, _| {
            let a1 = t.clone();
            let a2 = xdata.clone();
            boxed(async move { c.stat(cx, a1, a2).await })
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
        let gfid = target.gfid().unwrap_or(Gfid::NULL);
        match self.group_of(cx, gfid).await? {
            Node::Dir(_) => {
                let t = Target::Loc(Loc::inode(gfid));
                self.dir_change(|c| {
                    let a1 = t.clone();
                    let a2 = attr.clone();
                    let a3 = xdata.clone();
                    boxed(async move { c.setattr(cx, a1, a2, a3).await })
                })
                .await
            }
            Node::File(_) => {
                if let Target::Fd(fd) = &target {
                    let (g, cfd) = self.fd_route(cx, fd).await?;
                    let r = self
                        .child(g)?
                        .setattr(cx, Target::Fd(cfd), attr.clone(), xdata.clone())
                        .await?;
                    return match self.follow_migration(cx, fd, g, &r).await? {
                        Some((g2, nfd)) => {
                            self.child(g2)?
                                .setattr(cx, Target::Fd(nfd), attr, xdata)
                                .await
                        }
                        None => Ok(r),
                    };
                }
                self.on_inode(cx, gfid, |c, _| {
                    let a1 = target.clone();
                    let a2 = attr.clone();
                    let a3 = xdata.clone();
                    boxed(async move { c.setattr(cx, a1, a2, a3).await })
                })
                .await
            }
        }
    }

    async fn truncate(&self, cx: &Cx, target: Target, size: u64, xdata: Xdata) -> FopResult<Iatt> {
        if let Target::Fd(fd) = &target {
            let (g, cfd) = self.fd_route(cx, fd).await?;
            let r = self
                .child(g)?
                .truncate(cx, Target::Fd(cfd), size, xdata.clone())
                .await?;
            return match self.follow_migration(cx, fd, g, &r).await? {
                Some((g2, nfd)) => {
                    self.child(g2)?
                        .truncate(cx, Target::Fd(nfd), size, xdata)
                        .await
                }
                None => Ok(r),
            };
        }
        let gfid = target.gfid().unwrap_or(Gfid::NULL);
        self.on_inode(cx, gfid, |c, _| {
            let a1 = target.clone();
            let a3 = xdata.clone();
            boxed(async move { c.truncate(cx, a1, size, a3).await })
        })
        .await
    }

    async fn access(&self, cx: &Cx, loc: Loc, mask: u32, xdata: Xdata) -> FopResult<()> {
        let gfid = loc.require_gfid()?;
        self.on_inode(cx, gfid, |c, _| {
            let a1 = Loc::inode(gfid);
            let a3 = xdata.clone();
            boxed(async move { c.access(cx, a1, mask, a3).await })
        })
        .await
    }

    async fn readlink(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<String> {
        let gfid = loc.require_gfid()?;
        self.on_inode(cx, gfid, |c, _| {
            let a1 = Loc::inode(gfid);
            let a2 = xdata.clone();
            boxed(async move { c.readlink(cx, a1, a2).await })
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
        let l = loc.clone();
        let (_, e) = self
            .create_placed(cx, &loc, &xdata, |c, x| {
                let a1 = l.clone();
                boxed(async move { c.mknod(cx, a1, mode, rdev, umask, x).await })
            })
            .await?;
        Ok(e)
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
        let gfid = loc.require_gfid()?;
        let mut layout = self.layout(cx, parent).await?;
        let mut tries = 0;
        loop {
            let h = self.hashed_group(&layout, parent, name)?;
            if !self.group_up(h) {
                return Err(FopError::not_connected(format!(
                    "{name:?} belongs to group {}, which is down",
                    self.names[h]
                )));
            }
            let weights = self.weights(cx).await;
            let slices = layout::compute(&weights, None, self.hash(&gfid.to_string()), 1, true);
            let lcx = self.lock_name(h, parent, name).await?;
            let with_slice = |g: usize| {
                let mut x = gen_xdata(&xdata, &layout);
                if let Some(s) = slices.get(g) {
                    x.set(format!("{SETXATTR_ON_CREATE}{XATTR_LAYOUT}"), s.encode());
                }
                x
            };
            let first = self
                .child(h)?
                .mkdir(cx, loc.clone(), mode, umask, with_slice(h))
                .await;
            match first {
                Err(e) if e.errno == libc::ESTALE && tries < STALE_RETRIES => {
                    self.unlock_now(&lcx, h, parent, name).await;
                    tries += 1;
                    layout = self.reload_layout(cx, parent).await?;
                    continue;
                }
                Err(e) => {
                    self.unlock_name(lcx, h, parent, name);
                    return Err(e);
                }
                Ok(entry) => {
                    let others: Vec<usize> = self.up().into_iter().filter(|&g| g != h).collect();
                    let results = join_all(others.iter().map(|&g| {
                        let x = with_slice(g);
                        let l = loc.clone();
                        async move {
                            match self.children.get(g) {
                                Some(c) => (g, c.mkdir(cx, l, mode, umask, x).await),
                                None => (g, Err(FopError::eio("no such group"))),
                            }
                        }
                    }))
                    .await;
                    let mut got: Vec<Option<GroupLayout>> = vec![None; self.n()];
                    if let Some(s) = got.get_mut(h) {
                        *s = slices.get(h).copied();
                    }
                    for (g, r) in results {
                        match r {
                            Ok(_) => {
                                if let Some(s) = got.get_mut(g) {
                                    *s = slices.get(g).copied();
                                }
                            }
                            Err(e) => {
                                tracing::warn!(dir = %loc, group = %self.names[g], error = %e, "mkdir failed on one group; lookup will create it")
                            }
                        }
                    }
                    self.unlock_name(lcx, h, parent, name);
                    self.remember(gfid, Node::Dir(Arc::new(Layout::new(got))));
                    let mut entry = entry;
                    strip(&mut entry.xdata);
                    return Ok(entry);
                }
            }
        }
    }

    async fn unlink(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        self.do_unlink(cx, loc, xdata).await
    }

    async fn rmdir(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        let (parent, name) = loc.parent_and_name()?;
        let r = self.resolve(cx, &loc, &Xdata::new()).await?;
        if r.entry.iatt.kind != FileKind::Dir {
            return Err(FopError::new(
                libc::ENOTDIR,
                format!("{loc} is not a directory"),
            ));
        }
        let gfid = r.entry.iatt.gfid;
        let h = r.hashed.unwrap_or(r.cached);
        let lcx = self.lock_name(h, parent, name).await?;
        let result = async {
            let listing = self.list_all(cx, gfid).await?;
            if let Some((_, e)) = listing
                .iter()
                .flat_map(|(g, es)| es.iter().map(move |e| (g, e)))
                .find(|(_, e)| !is_linkto_entry(e))
            {
                return Err(FopError::new(
                    libc::ENOTEMPTY,
                    format!("{loc} is not empty (it holds {:?})", e.name),
                ));
            }
            // Only stale pointers are left: remove them.
            for (g, es) in &listing {
                for e in es {
                    let _ = self
                        .child(*g)?
                        .unlink(cx, Loc::entry(gfid, e.name.clone()), Xdata::new())
                        .await;
                }
            }
            let others: Vec<usize> = self.up().into_iter().filter(|&g| g != h).collect();
            let results = join_all(others.iter().map(|&g| {
                let l = loc.clone();
                let x = xdata.clone();
                async move {
                    match self.children.get(g) {
                        Some(c) => (g, c.rmdir(cx, l, x).await),
                        None => (g, Err(FopError::eio("no such group"))),
                    }
                }
            }))
            .await;
            for (g, r) in results {
                match r {
                    Ok(()) => {}
                    Err(e) if is_gone(&e) => {}
                    Err(e) => {
                        tracing::warn!(dir = %loc, group = %self.names[g], error = %e, "rmdir failed on one group");
                        return Err(e);
                    }
                }
            }
            match self.child(h)?.rmdir(cx, loc.clone(), xdata.clone()).await {
                Err(e) if is_gone(&e) => Ok(()),
                other => other,
            }
        }
        .await;
        self.unlock_name(lcx, h, parent, name);
        if result.is_ok() {
            self.forget(gfid);
        }
        result
    }

    async fn symlink(
        &self,
        cx: &Cx,
        link_target: String,
        loc: Loc,
        umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let l = loc.clone();
        let (_, e) = self
            .create_placed(cx, &loc, &xdata, |c, x| {
                let a1 = link_target.clone();
                let a2 = l.clone();
                boxed(async move { c.symlink(cx, a1, a2, umask, x).await })
            })
            .await?;
        Ok(e)
    }

    async fn rename(&self, cx: &Cx, old: Loc, new: Loc, flags: u32, xdata: Xdata) -> FopResult<()> {
        self.do_rename(cx, old, new, flags, xdata).await
    }

    async fn link(&self, cx: &Cx, old: Loc, new: Loc, xdata: Xdata) -> FopResult<Entry> {
        let gfid = old.require_gfid()?;
        let (np, nn) = new.parent_and_name()?;
        let src = match self.group_of(cx, gfid).await? {
            Node::File(g) => g,
            Node::Dir(_) => {
                return Err(FopError::new(
                    libc::EPERM,
                    "hard links to directories are not allowed",
                ));
            }
        };
        let layout = self.layout(cx, np).await?;
        let h = layout.group_for(self.hash(nn)).unwrap_or(src);
        let entry = self
            .child(src)?
            .link(cx, old.clone(), new.clone(), gen_xdata(&xdata, &layout))
            .await?;
        if h != src {
            let mut x = gen_xdata(&Xdata::new(), &layout);
            x.set(
                format!("{SETXATTR_ON_CREATE}{XATTR_LINKTO}"),
                self.names[src].as_bytes().to_vec(),
            );
            let target = Loc::entry(np, nn).with_gfid(gfid);
            if let Err(e) = self
                .child(h)?
                .mknod(cx, target, libc::S_IFREG | LINKTO_MODE, 0, 0, x)
                .await
            {
                // The pointer's gfid may already have a name on that group (the old name's
                // pointer): a lookup everywhere still finds the new name.
                tracing::debug!(error = %e, "no linkto for a hard link; lookups will search");
            }
        }
        let mut entry = entry;
        strip(&mut entry.xdata);
        Ok(entry)
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
        let l = loc.clone();
        let f = fd.clone();
        let (g, mut e) = self
            .create_placed(cx, &loc, &xdata, |c, x| {
                let a1 = l.clone();
                let a5 = f.clone();
                boxed(async move { c.create(cx, a1, flags, mode, umask, a5, x).await })
            })
            .await?;
        self.file_fd(&fd, g);
        strip(&mut e.xdata);
        Ok(e)
    }

    async fn open(&self, cx: &Cx, loc: Loc, flags: i32, fd: Fd, xdata: Xdata) -> FopResult<()> {
        let gfid = loc.require_gfid()?;
        let g = match self.group_of(cx, gfid).await? {
            Node::File(g) => g,
            Node::Dir(_) => {
                return Err(FopError::new(libc::EISDIR, format!("{loc} is a directory")));
            }
        };
        match self
            .child(g)?
            .open(cx, loc.clone(), flags, fd.clone(), xdata.clone())
            .await
        {
            Ok(()) => {
                self.file_fd(&fd, g);
                Ok(())
            }
            Err(e) if is_gone(&e) => match self.find_inode(cx, gfid).await? {
                Node::File(g2) if g2 != g => {
                    self.child(g2)?
                        .open(cx, loc, flags, fd.clone(), xdata)
                        .await?;
                    self.file_fd(&fd, g2);
                    Ok(())
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn read(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        size: u32,
        xdata: Xdata,
    ) -> FopResult<Payload> {
        let (g, fd) = self.fd_route(cx, &fd).await?;
        self.child(g)?.read(cx, fd, offset, size, xdata).await
    }

    async fn write(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        data: Payload,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        let (g, cfd) = self.fd_route(cx, &fd).await?;
        let r = self
            .child(g)?
            .write(cx, cfd, offset, data.clone(), xdata.clone())
            .await?;
        match self.follow_migration(cx, &fd, g, &r).await? {
            Some((g2, nfd)) => self.child(g2)?.write(cx, nfd, offset, data, xdata).await,
            None => Ok(r),
        }
    }

    async fn flush(&self, cx: &Cx, fd: Fd, xdata: Xdata) -> FopResult<()> {
        let (g, fd) = self.fd_route(cx, &fd).await?;
        self.child(g)?.flush(cx, fd, xdata).await
    }

    async fn fsync(&self, cx: &Cx, fd: Fd, datasync: bool, xdata: Xdata) -> FopResult<()> {
        let (g, fd) = self.fd_route(cx, &fd).await?;
        self.child(g)?.fsync(cx, fd, datasync, xdata).await
    }

    async fn release(&self, cx: &Cx, fd: Fd) -> FopResult<()> {
        let Some(f) = fd.take_ctx::<DhtFile>(FD_KEY) else {
            return Ok(());
        };
        if let Some((g, moved)) = f.moved.lock().ok().and_then(|mut m| m.take())
            && let Ok(c) = self.child(g)
        {
            let _ = c.release(cx, moved).await;
        }
        self.child(f.group.load(Ordering::SeqCst))?
            .release(cx, fd)
            .await
    }

    async fn opendir(&self, cx: &Cx, loc: Loc, fd: Fd, xdata: Xdata) -> FopResult<()> {
        let gfid = loc.require_gfid()?;
        let layout = match self.group_of(cx, gfid).await? {
            Node::Dir(l) => l,
            Node::File(_) => {
                return Err(FopError::new(
                    libc::ENOTDIR,
                    format!("{loc} is not a directory"),
                ));
            }
        };
        let up = self.up();
        let flags = fd.flags();
        let results = join_all(up.iter().map(|&g| {
            let x = xdata.clone();
            async move {
                let child_fd = Fd::new(gfid, flags);
                let r = match self.children.get(g) {
                    Some(c) => c.opendir(cx, Loc::inode(gfid), child_fd.clone(), x).await,
                    None => Err(FopError::eio("no such group")),
                };
                (g, r.map(|()| child_fd))
            }
        }))
        .await;
        let mut fds: Vec<Option<Fd>> = vec![None; self.n()];
        let mut err = None;
        for (g, r) in results {
            match r {
                Ok(f) => {
                    if let Some(s) = fds.get_mut(g) {
                        *s = Some(f);
                    }
                }
                Err(e) => err = Some(e),
            }
        }
        if fds.iter().all(Option::is_none) {
            return Err(err.unwrap_or_else(|| FopError::not_connected("no group is up")));
        }
        fd.set_ctx(
            FD_KEY,
            Arc::new(DhtDir {
                fds,
                layout,
                prefetched: Mutex::new(HashMap::new()),
            }),
        );
        Ok(())
    }

    async fn readdir(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        size: u32,
        plus: bool,
        xdata: Xdata,
    ) -> FopResult<Vec<DirEntry>> {
        let d = fd
            .ctx::<DhtDir>(FD_KEY)
            .ok_or_else(|| FopError::new(libc::EBADF, "directory is not open"))?;
        let first_open = d.fds.iter().position(Option::is_some).unwrap_or(0);
        let (mut g, mut cookie) = if offset == 0 {
            (first_open, 0)
        } else {
            self.decode_cookie(offset)?
        };
        if offset == 0 {
            // Ask every group for its first batch at once.
            let others: Vec<usize> = (0..self.n())
                .filter(|&o| o != first_open && d.fds.get(o).is_some_and(Option::is_some))
                .collect();
            let batches = join_all(others.iter().map(|&o| {
                let cfd = d.fds.get(o).cloned().flatten();
                let x = xdata.clone();
                async move {
                    let r = match (self.children.get(o), cfd) {
                        (Some(c), Some(cfd)) => c.readdir(cx, cfd, 0, size, true, x).await,
                        _ => Err(FopError::eio("no such group")),
                    };
                    (o, r)
                }
            }))
            .await;
            if let Ok(mut p) = d.prefetched.lock() {
                p.clear();
                p.extend(batches);
            }
        }
        loop {
            let Some(cfd) = d.fds.get(g) else {
                return Ok(Vec::new());
            };
            let Some(cfd) = cfd.clone() else {
                g += 1;
                cookie = 0;
                continue;
            };
            let pre = if cookie == 0 {
                d.prefetched.lock().ok().and_then(|mut p| p.remove(&g))
            } else {
                None
            };
            let batch = match pre {
                Some(r) => r?,
                None => {
                    self.child(g)?
                        .readdir(cx, cfd, cookie, size, true, xdata.clone())
                        .await?
                }
            };
            if batch.is_empty() {
                g += 1;
                cookie = 0;
                if g >= self.n() {
                    return Ok(Vec::new());
                }
                continue;
            }
            let mut out = Vec::with_capacity(batch.len());
            for mut e in batch {
                cookie = e.offset;
                let keep = if e.name == "." || e.name == ".." {
                    g == first_open
                } else if e.kind == FileKind::Dir {
                    match d.layout.group_for(self.hash(&e.name)) {
                        Some(h) if d.fds.get(h).is_some_and(Option::is_some) => h == g,
                        _ => g == first_open,
                    }
                } else {
                    !is_linkto_entry(&e)
                };
                if !keep {
                    continue;
                }
                e.offset = self.encode_cookie(g, cookie);
                if !plus {
                    e.iatt = None;
                }
                out.push(e);
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    async fn releasedir(&self, cx: &Cx, fd: Fd) -> FopResult<()> {
        let Some(d) = fd.take_ctx::<DhtDir>(FD_KEY) else {
            return Ok(());
        };
        for (g, f) in d.fds.iter().enumerate() {
            if let (Some(c), Some(f)) = (self.children.get(g), f) {
                let _ = c.releasedir(cx, f.clone()).await;
            }
        }
        Ok(())
    }

    async fn fsyncdir(&self, cx: &Cx, fd: Fd, datasync: bool, xdata: Xdata) -> FopResult<()> {
        let Some(d) = fd.ctx::<DhtDir>(FD_KEY) else {
            return Err(FopError::new(libc::EBADF, "directory is not open"));
        };
        for (g, f) in d.fds.iter().enumerate() {
            if let (Some(c), Some(f)) = (self.children.get(g), f) {
                c.fsyncdir(cx, f.clone(), datasync, xdata.clone()).await?;
            }
        }
        Ok(())
    }

    async fn statfs(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<Statfs> {
        let up = self.up();
        let results = join_all(up.iter().map(|&g| {
            let l = loc.clone();
            let x = xdata.clone();
            async move {
                match self.children.get(g) {
                    Some(c) => c.statfs(cx, l, x).await,
                    None => Err(FopError::eio("no such group")),
                }
            }
        }))
        .await;
        let mut total: Option<Statfs> = None;
        let mut err = None;
        for r in results {
            match r {
                Ok(s) => {
                    let t = total.get_or_insert(Statfs {
                        blocks: 0,
                        bfree: 0,
                        bavail: 0,
                        files: 0,
                        ffree: 0,
                        ..s
                    });
                    let scale = |v: u64| {
                        let bytes = u128::from(v) * u128::from(s.frsize.max(1));
                        u64::try_from(bytes / u128::from(t.frsize.max(1))).unwrap_or(u64::MAX)
                    };
                    t.blocks = t.blocks.saturating_add(scale(s.blocks));
                    t.bfree = t.bfree.saturating_add(scale(s.bfree));
                    t.bavail = t.bavail.saturating_add(scale(s.bavail));
                    t.files = t.files.saturating_add(s.files);
                    t.ffree = t.ffree.saturating_add(s.ffree);
                    t.namelen = t.namelen.min(s.namelen);
                }
                Err(e) => err = Some(e),
            }
        }
        total.ok_or_else(|| err.unwrap_or_else(|| FopError::not_connected("no group is up")))
    }

    async fn setxattr(
        &self,
        cx: &Cx,
        target: Target,
        xattrs: Xdata,
        flags: i32,
        xdata: Xdata,
    ) -> FopResult<()> {
        if xattrs.iter().any(|(k, _)| k.starts_with(DHT_PREFIX)) {
            return Err(FopError::new(
                libc::EPERM,
                "distribute's own xattrs cannot be set through the volume",
            ));
        }
        let gfid = target.gfid().unwrap_or(Gfid::NULL);
        match self.group_of(cx, gfid).await? {
            Node::Dir(_) => {
                let t = Target::Loc(Loc::inode(gfid));
                self.dir_change(|c| {
                    let a1 = t.clone();
                    let a2 = xattrs.clone();
                    let a4 = xdata.clone();
                    boxed(async move { c.setxattr(cx, a1, a2, flags, a4).await })
                })
                .await
            }
            Node::File(_) => {
                self.on_inode(cx, gfid, |c, _| {
                    let a1 = target.clone();
                    let a2 = xattrs.clone();
                    let a4 = xdata.clone();
                    boxed(async move { c.setxattr(cx, a1, a2, flags, a4).await })
                })
                .await
            }
        }
    }

    async fn getxattr(
        &self,
        cx: &Cx,
        target: Target,
        name: Option<String>,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        let gfid = target.gfid().unwrap_or(Gfid::NULL);
        let t = match self.group_of(cx, gfid).await? {
            Node::Dir(_) => Target::Loc(Loc::inode(gfid)),
            Node::File(_) => target,
        };
        let mut x = self
            .on_inode(cx, gfid, |c, _| {
                let a1 = t.clone();
                let a2 = name.clone();
                let a3 = xdata.clone();
                boxed(async move { c.getxattr(cx, a1, a2, a3).await })
            })
            .await?;
        strip(&mut x);
        Ok(x)
    }

    async fn removexattr(
        &self,
        cx: &Cx,
        target: Target,
        name: String,
        xdata: Xdata,
    ) -> FopResult<()> {
        if name.starts_with(DHT_PREFIX) {
            return Err(FopError::new(
                libc::EPERM,
                "distribute's own xattrs cannot be removed through the volume",
            ));
        }
        let gfid = target.gfid().unwrap_or(Gfid::NULL);
        match self.group_of(cx, gfid).await? {
            Node::Dir(_) => {
                let t = Target::Loc(Loc::inode(gfid));
                self.dir_change(|c| {
                    let a1 = t.clone();
                    let a2 = name.clone();
                    let a3 = xdata.clone();
                    boxed(async move { c.removexattr(cx, a1, a2, a3).await })
                })
                .await
            }
            Node::File(_) => {
                self.on_inode(cx, gfid, |c, _| {
                    let a1 = target.clone();
                    let a2 = name.clone();
                    let a3 = xdata.clone();
                    boxed(async move { c.removexattr(cx, a1, a2, a3).await })
                })
                .await
            }
        }
    }

    async fn xattrop(
        &self,
        cx: &Cx,
        target: Target,
        op: XattropOp,
        xattrs: Xdata,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        let gfid = target.gfid().unwrap_or(Gfid::NULL);
        self.on_inode(cx, gfid, |c, _| {
            let a1 = target.clone();
            let a3 = xattrs.clone();
            let a4 = xdata.clone();
            boxed(async move { c.xattrop(cx, a1, op, a3, a4).await })
        })
        .await
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
        let gfid = target.gfid().unwrap_or(Gfid::NULL);
        self.on_inode(cx, gfid, |c, _| {
            let a1 = domain.clone();
            let a2 = target.clone();
            let a5 = xdata.clone();
            boxed(async move { c.inodelk(cx, a1, a2, wait, lock, a5).await })
        })
        .await
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
        let g = self.dir_read_group()?;
        self.child(g)?
            .entrylk(cx, domain, loc, name, wait, kind, xdata)
            .await
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
        let (g, fd) = self.fd_route(cx, &fd).await?;
        self.child(g)?
            .fallocate(cx, fd, mode, offset, len, xdata)
            .await
    }

    async fn lseek(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        whence: Whence,
        xdata: Xdata,
    ) -> FopResult<u64> {
        let (g, fd) = self.fd_route(cx, &fd).await?;
        self.child(g)?.lseek(cx, fd, offset, whence, xdata).await
    }

    async fn compound(&self, cx: &Cx, ops: Batch<Request>) -> FopResult<Batch<CompoundResult>> {
        crate::wire::run_compound(self, cx, ops).await
    }
}

mod migrate;
mod rename;

pub use migrate::{Migrated, SettleOutcome};

impl Dht {
    async fn do_unlink(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        let (parent, _) = loc.parent_and_name()?;
        let mut tries = 0;
        loop {
            match self.unlink_once(cx, &loc, &xdata).await {
                // Our layout is older than the brick's: a rebalance may be moving the name.
                Err(e) if e.errno == libc::ESTALE && tries < STALE_RETRIES => {
                    tries += 1;
                    self.reload_layout(cx, parent).await?;
                }
                other => return other,
            }
        }
    }

    /// One unlink. In a directory that is not settled (a rebalance may be moving its files)
    /// it holds the name's entry lock in its hashed group, the lock a move takes, so the
    /// file cannot move between finding it and removing it (nor come back after it).
    async fn unlink_once(&self, cx: &Cx, loc: &Loc, xdata: &Xdata) -> FopResult<()> {
        let (parent, name) = loc.parent_and_name()?;
        let layout = self.layout(cx, parent).await?;
        let lock = match layout.group_for(self.hash(name)) {
            Some(h) if !layout.is_settled() => Some((self.lock_name(h, parent, name).await?, h)),
            _ => None,
        };
        let result = self.unlink_found(cx, loc, xdata, &layout).await;
        if let Some((lcx, h)) = lock {
            self.unlock_name(lcx, h, parent, name);
        }
        result
    }

    async fn unlink_found(
        &self,
        cx: &Cx,
        loc: &Loc,
        xdata: &Xdata,
        layout: &Layout,
    ) -> FopResult<()> {
        let (parent, name) = loc.parent_and_name()?;
        let r = self.resolve(cx, loc, &Xdata::new()).await?;
        if r.entry.iatt.kind == FileKind::Dir {
            return Err(FopError::new(libc::EISDIR, format!("{loc} is a directory")));
        }
        let l = Loc::entry(parent, name);
        self.child(r.cached)?
            .unlink(cx, l.clone(), gen_xdata(xdata, layout))
            .await?;
        if let Some(p) = r.linkto.filter(|&p| p != r.cached)
            && let Err(e) = self.child(p)?.unlink(cx, l, Xdata::new()).await
            && !is_gone(&e)
        {
            tracing::warn!(file = %loc, error = %e, "could not remove a linkto pointer");
        }
        if r.entry.iatt.nlink <= 1 {
            self.forget(r.entry.iatt.gfid);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
