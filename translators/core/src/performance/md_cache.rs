//! `performance/md-cache`: attributes and names kept for a moment, so that repeated
//! lookups and stats of the same objects cost no round trip.
//!
//! A viewer opening a study, a gateway answering NFS GETATTRs, a scanner walking a tree: each
//! asks for the same attributes again and again within a second. This translator keeps
//!
//! - **attributes** by gfid, from lookup, stat and readdirplus replies, and
//! - **names**: (directory, name) → gfid, from lookups by name and readdirplus,
//!
//! and answers a plain lookup (no extra keys asked for) or a stat from them while they are
//! younger than `timeout`.
//!
//! - **new directories**: a directory this client made holds, for `timeout` after its mkdir
//!   was sent, only the names this client put in it, as far as this client is concerned. A
//!   lookup there of any other name is answered "no such name" without a round trip. This
//!   is the kernel's lookup before each create of an ingest (`mkdir series`, then one image
//!   after another): it cost a round trip to every brick per image. Names are noted before
//!   the change that makes them goes down, so a name this client made is never reported
//!   missing; a name another client makes there is seen once `timeout` has passed, as any
//!   other change by another client. Otherwise nothing is kept for negative answers.
//!
//! Freshness:
//! - A change made through this graph drops what it touches *before* it goes down and again
//!   when it returns: the object's attributes (write, truncate, setattr, fallocate, xattr
//!   changes, an open with `O_TRUNC`), the parent directory's attributes and the name (create,
//!   mknod, mkdir, symlink, link, unlink, rmdir, rename, on both sides). So a stat on the
//!   same mount after a change never returns attributes from before it.
//! - A reply that was on its way while such a change happened is not kept: each entry
//!   remembers the moment it last changed, and a reply is kept only if it was asked for
//!   after that.
//! - A change made by another client is seen once the entry is older than `timeout`.
//!
//! Bounds: at most `entries` attributes and `entries` names; the oldest go first. Cairn's
//! own operations (pid 0: heal, rebalance, scrub) pass straight through and fill nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};

use crate::error::{FopError, FopResult};
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::{
    Cx, DirEntry, Entry, Fd, Gfid, Iatt, Loc, Payload, SetAttr, Target, XattropOp, Xdata,
};
use crate::wire::{Batch, CompoundResult, Request};
use crate::xlator::{Translator, XlatorBase, XlatorRef};

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "timeout",
        kind: OptionKind::Duration {
            min_ms: 0,
            max_ms: 60_000,
        },
        default: Some("1s"),
        doc: "How long attributes and names may answer lookups and stats before the bricks are asked again, and how long a directory this client made answers lookups of names it did not put there as missing (0: keep nothing).",
    },
    OptionSpec {
        key: "entries",
        kind: OptionKind::Int {
            min: 0,
            max: 16_777_216,
        },
        default: Some("65536"),
        doc: "Most objects whose attributes are kept, and most names; the oldest go first.",
    },
];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "performance/md-cache",
        arity: Arity::One,
        roles: &[Role::Client],
        maturity: Maturity::Stable,
        options: OPTIONS,
        doc: "Keeps attributes and names for a moment so repeated lookups and stats are answered in the client.",
    },
    build,
};

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let o = ctx.options;
    let cfg = Config {
        timeout: o.duration("timeout").map_err(|e| e.to_string())?,
        entries: usize::try_from(o.int("entries").map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?,
    };
    Ok(Arc::new(MdCache::new(ctx.name, ctx.children, cfg)))
}

/// Settings of one md-cache node.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// How long an entry answers.
    pub timeout: Duration,
    /// Most attributes kept, and most names.
    pub entries: usize,
}

/// One kept value, or the mark that it changed (`value: None`).
struct Slot<V> {
    value: Option<V>,
    at: Instant,
    /// The change counter when this slot was last written.
    changed: u64,
    /// Its key in the age order.
    tick: u64,
}

/// A bounded table whose entries remember when they last changed.
struct Table<K, V> {
    slots: HashMap<K, Slot<V>>,
    order: BTreeMap<u64, K>,
    /// The newest `changed` of a change mark pushed out by the bound: a reply asked for
    /// before it may be older than a change nobody remembers, so it is not kept.
    forgotten: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> Table<K, V> {
    fn new() -> Self {
        Table {
            slots: HashMap::new(),
            order: BTreeMap::new(),
            forgotten: 0,
        }
    }

    fn get(&self, k: &K, ttl: Duration) -> Option<V> {
        let s = self.slots.get(k)?;
        if s.at.elapsed() < ttl {
            s.value.clone()
        } else {
            None
        }
    }

    /// Writes `k`; `asked` is the change counter when the reply was asked for (`None` for a
    /// change mark, which always goes in).
    fn put(&mut self, k: K, value: Option<V>, asked: Option<u64>, now: u64, max: usize) {
        if let Some(asked) = asked {
            let newer = match self.slots.get(&k) {
                Some(s) => s.changed > asked,
                None => self.forgotten > asked,
            };
            if newer {
                return;
            }
        }
        if let Some(old) = self.slots.remove(&k) {
            self.order.remove(&old.tick);
        }
        while self.slots.len() >= max.max(1) {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            if let Some(v) = self.slots.remove(&victim)
                && v.value.is_none()
            {
                self.forgotten = self.forgotten.max(v.changed);
            }
        }
        self.order.insert(now, k.clone());
        self.slots.insert(
            k,
            Slot {
                value,
                at: Instant::now(),
                changed: now,
                tick: now,
            },
        );
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

struct State {
    inodes: Table<Gfid, Iatt>,
    names: Table<(Gfid, String), Gfid>,
    /// Directories this client made, by gfid: when their mkdir was sent, and the names this
    /// client has put in them since (or was about to).
    fresh: HashMap<Gfid, Fresh>,
    /// Counts every write to either table.
    clock: u64,
}

/// A directory this client made: see the module documentation.
struct Fresh {
    made: Instant,
    names: HashSet<String>,
}

/// What [`MdCache::counters`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Lookups answered from kept names and attributes.
    pub lookups_served: u64,
    /// Stats answered from kept attributes.
    pub stats_served: u64,
    /// Lookups of names in a directory this client just made, answered "no such name".
    pub misses_served: u64,
    /// Objects whose attributes are held (or marked changed) now.
    pub inodes: u64,
    /// Names held (or marked changed) now.
    pub names: u64,
}

/// The `performance/md-cache` translator. See the [module documentation](self).
pub struct MdCache {
    base: XlatorBase,
    cfg: Config,
    state: Mutex<State>,
    lookups_served: std::sync::atomic::AtomicU64,
    stats_served: std::sync::atomic::AtomicU64,
    misses_served: std::sync::atomic::AtomicU64,
}

/// Cairn's own work always asks the bricks.
fn internal(cx: &Cx) -> bool {
    cx.pid == 0
}

impl MdCache {
    /// An md-cache node named `name` over `children` (exactly one).
    pub fn new(name: &str, children: Vec<XlatorRef>, cfg: Config) -> MdCache {
        MdCache {
            base: XlatorBase::new(name, TYPE.decl.type_name, children),
            cfg,
            state: Mutex::new(State {
                inodes: Table::new(),
                names: Table::new(),
                fresh: HashMap::new(),
                clock: 0,
            }),
            lookups_served: Default::default(),
            stats_served: Default::default(),
            misses_served: Default::default(),
        }
    }

    /// What it has answered so far, and what it holds.
    pub fn counters(&self) -> Counters {
        let (inodes, names) = self
            .state
            .lock()
            .map(|s| (s.inodes.len() as u64, s.names.len() as u64))
            .unwrap_or_default();
        Counters {
            lookups_served: self
                .lookups_served
                .load(std::sync::atomic::Ordering::Relaxed),
            stats_served: self.stats_served.load(std::sync::atomic::Ordering::Relaxed),
            misses_served: self
                .misses_served
                .load(std::sync::atomic::Ordering::Relaxed),
            inodes,
            names,
        }
    }

    fn child(&self) -> FopResult<&XlatorRef> {
        self.base.child()
    }

    fn on(&self, cx: &Cx) -> bool {
        !self.cfg.timeout.is_zero() && self.cfg.entries > 0 && !internal(cx)
    }

    /// The change counter now: a reply to a call made after this may be kept.
    fn asked(&self) -> u64 {
        self.state.lock().map(|s| s.clock).unwrap_or(u64::MAX)
    }

    fn attrs(&self, gfid: Gfid) -> Option<Iatt> {
        let s = self.state.lock().ok()?;
        s.inodes.get(&gfid, self.cfg.timeout)
    }

    fn named(&self, parent: Gfid, name: &str) -> Option<Iatt> {
        let s = self.state.lock().ok()?;
        let gfid = s.names.get(&(parent, name.to_string()), self.cfg.timeout)?;
        s.inodes.get(&gfid, self.cfg.timeout)
    }

    /// True when `name` cannot be in `parent` as far as this client knows: `parent` is a
    /// directory it made less than `timeout` ago, and it put no such name there.
    fn known_missing(&self, parent: Gfid, name: &str) -> bool {
        if name == "." || name == ".." {
            return false;
        }
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        match s.fresh.get(&parent) {
            Some(f) if f.made.elapsed() < self.cfg.timeout => !f.names.contains(name),
            Some(_) => {
                s.fresh.remove(&parent);
                false
            }
            None => false,
        }
    }

    /// Notes a directory this client made, whose mkdir was sent at `sent`.
    fn made_dir(&self, gfid: Gfid, sent: Instant) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if s.fresh.len() >= self.cfg.entries.max(1) {
            let ttl = self.cfg.timeout;
            s.fresh.retain(|_, f| f.made.elapsed() < ttl);
            if s.fresh.len() >= self.cfg.entries.max(1) {
                s.fresh.clear();
            }
        }
        s.fresh.insert(
            gfid,
            Fresh {
                made: sent,
                names: HashSet::new(),
            },
        );
    }

    /// Keeps what a reply asked for at `asked` says.
    fn keep(&self, asked: u64, name: Option<(Gfid, &str)>, iatt: &Iatt) {
        if iatt.gfid.is_null() {
            return;
        }
        let max = self.cfg.entries;
        if let Ok(mut s) = self.state.lock() {
            s.clock += 1;
            let now = s.clock;
            s.inodes
                .put(iatt.gfid, Some(iatt.clone()), Some(asked), now, max);
            if let Some((p, n)) = name {
                s.names
                    .put((p, n.to_string()), Some(iatt.gfid), Some(asked), now, max);
            }
        }
    }

    /// Marks objects and names as changed: nothing kept for them answers any more, and no
    /// reply already on its way is kept.
    fn changed(&self, gfids: &[Option<Gfid>], names: &[NameRef<'_>]) {
        if self.cfg.entries == 0 || self.cfg.timeout.is_zero() {
            return;
        }
        let max = self.cfg.entries;
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.clock += 1;
        let now = s.clock;
        let mut gone = Vec::new();
        for (p, n) in names {
            if let (Some(p), Some(n)) = (p, n)
                && let Some(f) = s.fresh.get_mut(p)
            {
                // From now on this name may exist: lookups of it go down.
                f.names.insert((*n).to_string());
            }
            if let (Some(p), Some(n)) = (p, n) {
                let key = (*p, (*n).to_string());
                // The object the name pointed at changes too (its link count, its ctime).
                if let Some(Some(g)) = s.names.slots.get(&key).map(|s| s.value) {
                    gone.push(g);
                }
                s.names.put(key, None, None, now, max);
            }
        }
        for g in gfids.iter().flatten().chain(gone.iter()) {
            s.inodes.put(*g, None, None, now, max);
        }
    }

    /// Everything kept is dropped (a call whose effects are not known in detail).
    fn changed_all(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.clock += 1;
            let now = s.clock;
            s.inodes = Table::new();
            s.names = Table::new();
            s.fresh.clear();
            s.inodes.forgotten = now;
            s.names.forgotten = now;
        }
    }

    /// Runs `call`, a change of `gfids` and `names`, marking them changed before and after.
    async fn changing<T>(
        &self,
        gfids: &[Option<Gfid>],
        names: &[NameRef<'_>],
        call: impl std::future::Future<Output = T>,
    ) -> T {
        self.changed(gfids, names);
        let r = call.await;
        self.changed(gfids, names);
        r
    }
}

/// A name: its directory and itself, when known.
type NameRef<'a> = (Option<Gfid>, Option<&'a str>);

/// An entry operation on `loc` changes the parent directory, the name and the object.
fn entry_change(loc: &Loc) -> ([Option<Gfid>; 2], [NameRef<'_>; 1]) {
    ([loc.parent, loc.gfid], [(loc.parent, loc.name.as_deref())])
}

#[async_trait::async_trait]
impl Translator for MdCache {
    crate::xlator_base!();

    async fn lookup(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<Entry> {
        // A name this client did not put in a directory it just made: whatever was asked
        // for, the answer is that there is no such name.
        if self.on(cx)
            && let (Some(p), Some(n)) = (loc.parent, loc.name.as_deref())
            && self.known_missing(p, n)
        {
            self.misses_served
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(FopError::new(
                libc::ENOENT,
                format!("no {n} in directory {p}, which this client made just now"),
            ));
        }
        // Only plain lookups: a caller asking for more (content, xattrs) goes down.
        if !self.on(cx) || !xdata.is_empty() {
            return self.child()?.lookup(cx, loc, xdata).await;
        }
        let kept = match (loc.parent, loc.name.as_deref(), loc.gfid) {
            (Some(p), Some(n), _) => self.named(p, n),
            (None, None, Some(g)) => self.attrs(g),
            _ => None,
        };
        if let Some(iatt) = kept
            && loc.gfid.is_none_or(|g| g == iatt.gfid)
        {
            self.lookups_served
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(Entry {
                iatt,
                xdata: Xdata::new(),
            });
        }
        let asked = self.asked();
        let name = loc.parent.zip(loc.name.clone());
        let e = self.child()?.lookup(cx, loc, xdata).await?;
        self.keep(asked, name.as_ref().map(|(p, n)| (*p, n.as_str())), &e.iatt);
        Ok(e)
    }

    async fn stat(&self, cx: &Cx, target: Target, xdata: Xdata) -> FopResult<Iatt> {
        let gfid = target.gfid();
        if !self.on(cx) || !xdata.is_empty() {
            return self.child()?.stat(cx, target, xdata).await;
        }
        if let Some(iatt) = gfid.and_then(|g| self.attrs(g)) {
            self.stats_served
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(iatt);
        }
        let asked = self.asked();
        let ia = self.child()?.stat(cx, target, xdata).await?;
        if gfid == Some(ia.gfid) {
            self.keep(asked, None, &ia);
        }
        Ok(ia)
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
        let fill = plus && self.on(cx);
        let asked = self.asked();
        let dir = fd.gfid();
        let entries = self
            .child()?
            .readdir(cx, fd, offset, size, plus, xdata)
            .await?;
        if fill {
            for e in &entries {
                if e.name == "." || e.name == ".." {
                    continue;
                }
                if let Some(ia) = &e.iatt {
                    self.keep(asked, Some((dir, &e.name)), ia);
                }
            }
        }
        Ok(entries)
    }

    async fn setattr(
        &self,
        cx: &Cx,
        target: Target,
        attr: SetAttr,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        let g = [target.gfid()];
        self.changing(&g, &[], self.child()?.setattr(cx, target, attr, xdata))
            .await
    }

    async fn truncate(&self, cx: &Cx, target: Target, size: u64, xdata: Xdata) -> FopResult<Iatt> {
        let g = [target.gfid()];
        self.changing(&g, &[], self.child()?.truncate(cx, target, size, xdata))
            .await
    }

    async fn open(&self, cx: &Cx, loc: Loc, flags: i32, fd: Fd, xdata: Xdata) -> FopResult<()> {
        if flags & libc::O_TRUNC != 0 {
            let g = [Some(fd.gfid()), loc.gfid];
            return self
                .changing(&g, &[], self.child()?.open(cx, loc, flags, fd, xdata))
                .await;
        }
        self.child()?.open(cx, loc, flags, fd, xdata).await
    }

    async fn write(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        data: Payload,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        let g = [Some(fd.gfid())];
        self.changing(&g, &[], self.child()?.write(cx, fd, offset, data, xdata))
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
        let g = [Some(fd.gfid())];
        self.changing(
            &g,
            &[],
            self.child()?.fallocate(cx, fd, mode, offset, len, xdata),
        )
        .await
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
        let (mut g, n) = entry_change(&loc);
        // Without O_EXCL an existing file may be opened and emptied.
        g[1] = Some(fd.gfid());
        let call = self
            .child()?
            .create(cx, loc.clone(), flags, mode, umask, fd, xdata);
        let r = self.changing(&g, &n, call).await;
        if let Ok(e) = &r {
            self.changed(&[Some(e.iatt.gfid)], &[]);
        }
        r
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
        let (g, n) = entry_change(&loc);
        let call = self
            .child()?
            .mknod(cx, loc.clone(), mode, rdev, umask, xdata);
        self.changing(&g, &n, call).await
    }

    async fn mkdir(
        &self,
        cx: &Cx,
        loc: Loc,
        mode: u32,
        umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let (g, n) = entry_change(&loc);
        let sent = Instant::now();
        let call = self.child()?.mkdir(cx, loc.clone(), mode, umask, xdata);
        let r = self.changing(&g, &n, call).await;
        if let Ok(e) = &r
            && self.on(cx)
            && e.iatt.kind == crate::types::FileKind::Dir
        {
            self.made_dir(e.iatt.gfid, sent);
        }
        r
    }

    async fn unlink(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        let (g, n) = entry_change(&loc);
        let call = self.child()?.unlink(cx, loc.clone(), xdata);
        self.changing(&g, &n, call).await
    }

    async fn rmdir(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        let (g, n) = entry_change(&loc);
        let call = self.child()?.rmdir(cx, loc.clone(), xdata);
        self.changing(&g, &n, call).await
    }

    async fn symlink(
        &self,
        cx: &Cx,
        link_target: String,
        loc: Loc,
        umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let (g, n) = entry_change(&loc);
        let call = self
            .child()?
            .symlink(cx, link_target, loc.clone(), umask, xdata);
        self.changing(&g, &n, call).await
    }

    async fn rename(&self, cx: &Cx, old: Loc, new: Loc, flags: u32, xdata: Xdata) -> FopResult<()> {
        let g = [old.parent, old.gfid, new.parent, new.gfid];
        let n = [
            (old.parent, old.name.as_deref()),
            (new.parent, new.name.as_deref()),
        ];
        let call = self
            .child()?
            .rename(cx, old.clone(), new.clone(), flags, xdata);
        self.changing(&g, &n, call).await
    }

    async fn link(&self, cx: &Cx, old: Loc, new: Loc, xdata: Xdata) -> FopResult<Entry> {
        let g = [old.gfid, new.parent];
        let n = [(new.parent, new.name.as_deref())];
        let call = self.child()?.link(cx, old.clone(), new.clone(), xdata);
        self.changing(&g, &n, call).await
    }

    async fn setxattr(
        &self,
        cx: &Cx,
        target: Target,
        xattrs: Xdata,
        flags: i32,
        xdata: Xdata,
    ) -> FopResult<()> {
        let g = [target.gfid()];
        self.changing(
            &g,
            &[],
            self.child()?.setxattr(cx, target, xattrs, flags, xdata),
        )
        .await
    }

    async fn removexattr(
        &self,
        cx: &Cx,
        target: Target,
        name: String,
        xdata: Xdata,
    ) -> FopResult<()> {
        let g = [target.gfid()];
        self.changing(&g, &[], self.child()?.removexattr(cx, target, name, xdata))
            .await
    }

    async fn xattrop(
        &self,
        cx: &Cx,
        target: Target,
        op: XattropOp,
        xattrs: Xdata,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        let g = [target.gfid()];
        self.changing(
            &g,
            &[],
            self.child()?.xattrop(cx, target, op, xattrs, xdata),
        )
        .await
    }

    async fn compound(&self, cx: &Cx, ops: Batch<Request>) -> FopResult<Batch<CompoundResult>> {
        self.changed_all();
        let r = self.child()?.compound(cx, ops).await;
        self.changed_all();
        r
    }
}

#[cfg(test)]
mod tests;
