//! `performance/quick-read`: a small file is read whole in the round trip that finds it.
//!
//! Reading an image the plain way costs three round trips one after another: lookup, open
//! (on every copy), read, and a release after. This translator cuts that to one:
//!
//! - **Lookup** asks the bricks for the content of regular files up to `lookup-size` bytes
//!   (key [`WANT_KEY`]); replicate asks one good copy only, and the brick answers under
//!   [`CONTENT_KEY`] when the file is small enough. The content is kept, keyed by gfid, with
//!   the size, mtime and ctime it was read with.
//! - **Open** for reading only of a file whose content is held and fresh is answered here,
//!   without going down. A file seen by lookup to be larger than `lookup-size` but no larger
//!   than `max-file-size` is fetched whole by one nameless lookup instead of an open, and is
//!   answered the same way.
//! - **Read** on such a descriptor is served from the content; **flush** and **release** go
//!   no further; fstat and fgetxattr go down by inode. Anything else done with the
//!   descriptor (a write, fsync, a lock, setting an xattr, or a read after the content went
//!   stale) first opens the file for real below (open-behind), then goes down like any
//!   other call.
//!
//! Cairn's own operations (pid 0: heal, rebalance, scrub) pass straight through.
//!
//! Freshness: content serves an open for `cache-timeout` after it was read, and a read for
//! the same time after that; past it, the read goes to the bricks. Any change made through
//! this graph to the file (write, truncate, setattr, fallocate, an open for writing) drops its
//! content at once, and marks it stale for descriptors still holding it, so a reader on the
//! same mount never sees data older than the writer's close. A lookup that reports another
//! size, mtime or ctime than the content was read with drops it too: changes made by other
//! clients are seen within `cache-timeout`. The cache holds at most `cache-size` bytes; the
//! least recently used content goes first.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};

use crate::error::FopResult;
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::{
    Cx, Entry, Fd, FileKind, Flock, Gfid, Iatt, Loc, LockWait, Payload, SetAttr, Target, Timespec,
    Whence, XattropOp, Xdata,
};
use crate::xlator::{Translator, XlatorBase, XlatorRef};

/// Request key: the largest file whose content the lookup should carry (big-endian u64).
pub const WANT_KEY: &str = "cairn.quick-read.want";
/// Reply key: the content of the file.
pub const CONTENT_KEY: &str = "cairn.quick-read.content";

/// Key of this translator's context on an fd.
const FD_KEY: &str = "performance/quick-read";

/// Size hints kept before the table is cleared (a hint is ~40 bytes).
const HINTS_MAX: usize = 262_144;

/// The largest file the translator will fetch whole.
pub const MAX_FILE_SIZE_LIMIT: u64 = 16 << 20;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "lookup-size",
        kind: OptionKind::Size {
            min: 0,
            max: MAX_FILE_SIZE_LIMIT,
        },
        default: Some("64KiB"),
        doc: "Lookups carry the content of regular files up to this size (0: never).",
    },
    OptionSpec {
        key: "max-file-size",
        kind: OptionKind::Size {
            min: 0,
            max: MAX_FILE_SIZE_LIMIT,
        },
        default: Some("1MiB"),
        doc: "Opens for reading of files up to this size fetch the whole file in one round trip and serve reads from memory (0: never).",
    },
    OptionSpec {
        key: "cache-timeout",
        kind: OptionKind::Duration {
            min_ms: 0,
            max_ms: 60_000,
        },
        default: Some("1s"),
        doc: "How long fetched content may serve opens and reads before the bricks are asked again.",
    },
    OptionSpec {
        key: "read-ahead",
        kind: OptionKind::Int { min: 0, max: 64 },
        default: Some("8"),
        doc: "When files of one directory are opened for reading in numbered order (IM-0001, IM-0002, ...), fetch this many next ones ahead, content included (0: never). Lookups alone (a stat, a delete) fetch nothing.",
    },
    OptionSpec {
        key: "cache-size",
        kind: OptionKind::Size {
            min: 0,
            max: 64 << 30,
        },
        default: Some("128MiB"),
        doc: "Most content bytes held; the least recently used goes first.",
    },
];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "performance/quick-read",
        arity: Arity::One,
        roles: &[Role::Client],
        maturity: Maturity::Stable,
        options: OPTIONS,
        doc: "Reads small files whole in the lookup or open round trip and serves them from memory.",
    },
    build,
};

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let o = ctx.options;
    let cfg = Config {
        lookup_size: o.size("lookup-size").map_err(|e| e.to_string())?,
        max_file_size: o.size("max-file-size").map_err(|e| e.to_string())?,
        timeout: o.duration("cache-timeout").map_err(|e| e.to_string())?,
        cache_size: o.size("cache-size").map_err(|e| e.to_string())?,
        read_ahead: u32::try_from(o.int("read-ahead").map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?,
    };
    Ok(Arc::new(QuickRead::new(ctx.name, ctx.children, cfg)))
}

/// Settings of one quick-read node.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Lookups ask for content up to this size.
    pub lookup_size: u64,
    /// Opens fetch files up to this size whole.
    pub max_file_size: u64,
    /// How long content stays fresh.
    pub timeout: Duration,
    /// Most bytes held.
    pub cache_size: u64,
    /// Numbered names fetched ahead of a reader going through them in order.
    pub read_ahead: u32,
}

/// A file's content, as one brick read it.
struct Content {
    data: Bytes,
    size: u64,
    mtime: Timespec,
    ctime: Timespec,
    fetched: Instant,
    /// Set when a change through this graph made it wrong.
    stale: AtomicBool,
}

impl Content {
    fn fresh(&self, ttl: Duration) -> bool {
        !self.stale.load(Ordering::Acquire) && self.fetched.elapsed() < ttl
    }

    fn matches(&self, ia: &Iatt) -> bool {
        self.size == ia.size && self.mtime == ia.mtime && self.ctime == ia.ctime
    }
}

#[derive(Default)]
struct Cache {
    files: HashMap<Gfid, (Arc<Content>, u64)>,
    /// Use order: tick → gfid.
    order: BTreeMap<u64, Gfid>,
    tick: u64,
    bytes: u64,
    /// Sizes of regular files seen by lookups, to know which opens to answer by fetching.
    sizes: HashMap<Gfid, u64>,
    /// Counts changes through this graph.
    clock: u64,
    /// When each file last changed through this graph (by `clock`).
    changed: HashMap<Gfid, u64>,
    /// The newest change forgotten when `changed` was cleared.
    forgotten: u64,
}

impl Cache {
    fn remove(&mut self, gfid: Gfid) -> Option<Arc<Content>> {
        let (c, tick) = self.files.remove(&gfid)?;
        self.order.remove(&tick);
        self.bytes = self.bytes.saturating_sub(cost(&c));
        Some(c)
    }

    fn touch(&mut self, gfid: Gfid) -> Option<Arc<Content>> {
        self.tick += 1;
        let tick = self.tick;
        let (c, old) = self.files.get_mut(&gfid)?;
        let c = Arc::clone(c);
        let was = std::mem::replace(old, tick);
        self.order.remove(&was);
        self.order.insert(tick, gfid);
        Some(c)
    }

    fn insert(&mut self, gfid: Gfid, c: Arc<Content>, limit: u64, ttl: Duration) {
        if let Some(old) = self.remove(gfid) {
            old.stale.store(true, Ordering::Release);
        }
        // Content past its timeout serves nothing: the least recently used goes first
        // when it is (a few at a time, so an insert stays cheap).
        for _ in 0..8 {
            let expired = self
                .order
                .first_key_value()
                .and_then(|(_, g)| self.files.get(g))
                .is_some_and(|(old, _)| old.fetched.elapsed() >= ttl);
            if !expired {
                break;
            }
            if let Some((_, victim)) = self.order.pop_first()
                && let Some((v, _)) = self.files.remove(&victim)
            {
                self.bytes = self.bytes.saturating_sub(cost(&v));
            }
        }
        let len = cost(&c);
        if len > limit {
            return;
        }
        while self.bytes + len > limit {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            if let Some((v, _)) = self.files.remove(&victim) {
                self.bytes = self.bytes.saturating_sub(cost(&v));
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, gfid);
        self.files.insert(gfid, (c, self.tick));
        self.bytes += len;
    }

    /// Records a change of `gfid` through this graph.
    fn change(&mut self, gfid: Gfid) {
        self.clock += 1;
        if self.changed.len() >= HINTS_MAX && !self.changed.contains_key(&gfid) {
            self.changed.clear();
            self.forgotten = self.clock;
        }
        self.changed.insert(gfid, self.clock);
    }

    /// True when `gfid` may have changed after a reply asked for at `asked` was read: what
    /// the reply says is older than that change.
    fn changed_since(&self, gfid: Gfid, asked: u64) -> bool {
        self.forgotten > asked || self.changed.get(&gfid).is_some_and(|&c| c > asked)
    }

    fn hint(&mut self, gfid: Gfid, size: u64) {
        if self.sizes.len() >= HINTS_MAX && !self.sizes.contains_key(&gfid) {
            self.sizes.clear();
        }
        self.sizes.insert(gfid, size);
    }
}

/// What one held file counts against `cache-size`: its bytes and the bookkeeping around
/// them (so a million empty files cannot fill memory while the byte count stays at zero).
fn cost(c: &Content) -> u64 {
    c.data.len() as u64 + ENTRY_OVERHEAD
}

/// Bytes of bookkeeping per held file (the content record, its table slots, its place in
/// the use order), as counted against `cache-size`.
const ENTRY_OVERHEAD: u64 = 256;

/// A descriptor answered here: the content it reads, and how to open it for real.
struct QrFd {
    content: Arc<Content>,
    loc: Loc,
    xdata: Xdata,
    opened: AtomicBool,
    opening: tokio::sync::Mutex<()>,
}

/// Entries read ahead, and lookups in flight, kept before the tables are cleared.
const AHEAD_MAX: usize = 4096;
/// Read-ahead lookups in flight at most, over all directories.
const AHEAD_INFLIGHT_MAX: usize = 64;

/// A name with a number in it: `IM-0042.dcm` is `IM-`, 42 (4 digits), `.dcm`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Numbered {
    prefix: String,
    number: u64,
    width: usize,
    suffix: String,
}

impl Numbered {
    /// The last run of digits in `name` (at most 18 of them).
    fn parse(name: &str) -> Option<Numbered> {
        let b = name.as_bytes();
        let end = b.iter().rposition(u8::is_ascii_digit)? + 1;
        let start = b[..end]
            .iter()
            .rposition(|c| !c.is_ascii_digit())
            .map_or(0, |i| i + 1);
        let digits = name.get(start..end)?;
        if digits.len() > 18 {
            return None;
        }
        Some(Numbered {
            prefix: name.get(..start)?.to_string(),
            number: digits.parse().ok()?,
            width: digits.len(),
            suffix: name.get(end..)?.to_string(),
        })
    }

    fn follows(&self, prev: &Numbered) -> bool {
        self.prefix == prev.prefix
            && self.suffix == prev.suffix
            && self.width == prev.width
            && self.number == prev.number.wrapping_add(1)
    }

    /// The name `k` further on, or `None` past the width.
    fn plus(&self, k: u64) -> Option<String> {
        let n = self.number.checked_add(k)?;
        let text = format!("{n:0w$}", w = self.width);
        (text.len() == self.width).then(|| format!("{}{text}{}", self.prefix, self.suffix))
    }
}

/// Series read-ahead state.
#[derive(Default)]
struct Ahead {
    /// Per directory, the last numbered name opened for reading.
    last: HashMap<Gfid, Numbered>,
    /// The numbered names files were last looked up by: an open comes by gfid, and its
    /// name tells where the series goes on.
    names: HashMap<Gfid, (Gfid, String)>,
    /// What read-ahead found: (directory, name) → attributes and when.
    entries: HashMap<(Gfid, String), (Iatt, Instant)>,
    /// The names of those entries by gfid, to drop them when the file changes.
    by_gfid: HashMap<Gfid, (Gfid, String)>,
    /// Lookups in flight.
    inflight: std::collections::HashSet<(Gfid, String)>,
    /// Bumped by every name change through this graph: a read-ahead that started before
    /// one keeps nothing it found.
    generation: u64,
}

impl Ahead {
    fn forget_name(&mut self, parent: Gfid, name: &str) {
        if let Some((ia, _)) = self.entries.remove(&(parent, name.to_string())) {
            self.by_gfid.remove(&ia.gfid);
        }
    }

    fn forget_gfid(&mut self, gfid: Gfid) {
        self.names.remove(&gfid);
        if let Some(key) = self.by_gfid.remove(&gfid) {
            self.entries.remove(&key);
        }
    }
}

/// What [`QuickRead::counters`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Opens answered without going down.
    pub opens_served: u64,
    /// Opens answered by fetching the whole file with one lookup.
    pub opens_fetched: u64,
    /// Reads served from memory.
    pub reads_served: u64,
    /// Descriptors that had to be opened below after all.
    pub opened_behind: u64,
    /// Content dropped because a change or a lookup showed it was old.
    pub invalidated: u64,
    /// Files fetched ahead of a reader (series read-ahead).
    pub read_ahead: u64,
    /// Lookups answered from what read-ahead fetched.
    pub lookups_served: u64,
    /// What the held files count against `cache-size` now (content plus bookkeeping).
    pub bytes: u64,
    /// Files whose content is held now.
    pub files: u64,
}

#[derive(Default)]
struct Stats {
    opens_served: std::sync::atomic::AtomicU64,
    opens_fetched: std::sync::atomic::AtomicU64,
    reads_served: std::sync::atomic::AtomicU64,
    opened_behind: std::sync::atomic::AtomicU64,
    invalidated: std::sync::atomic::AtomicU64,
    read_ahead: std::sync::atomic::AtomicU64,
    lookups_served: std::sync::atomic::AtomicU64,
}

/// The `performance/quick-read` translator. See the [module documentation](self).
pub struct QuickRead {
    base: XlatorBase,
    s: Arc<Shared>,
}

/// What the translator and its read-ahead tasks share.
struct Shared {
    cfg: Config,
    cache: Mutex<Cache>,
    stats: Stats,
    ahead: Mutex<Ahead>,
}

/// Cairn's own work (heal, rebalance, scrub: pid 0) always reads the bricks: it must see
/// the newest data, never content fetched a moment ago.
fn internal(cx: &Cx) -> bool {
    cx.pid == 0
}

fn read_only(flags: i32) -> bool {
    flags & libc::O_ACCMODE == libc::O_RDONLY && flags & libc::O_TRUNC == 0
}

impl QuickRead {
    /// A quick-read node named `name` over `children` (exactly one).
    pub fn new(name: &str, children: Vec<XlatorRef>, cfg: Config) -> QuickRead {
        QuickRead {
            base: XlatorBase::new(name, TYPE.decl.type_name, children),
            s: Arc::new(Shared {
                cfg,
                cache: Mutex::new(Cache::default()),
                stats: Stats::default(),
                ahead: Mutex::new(Ahead::default()),
            }),
        }
    }

    /// What it has done so far, and what it holds.
    pub fn counters(&self) -> Counters {
        let (bytes, files) = self
            .s
            .cache
            .lock()
            .map(|c| (c.bytes, c.files.len() as u64))
            .unwrap_or_default();
        let s = &self.s.stats;
        Counters {
            opens_served: s.opens_served.load(Ordering::Relaxed),
            opens_fetched: s.opens_fetched.load(Ordering::Relaxed),
            reads_served: s.reads_served.load(Ordering::Relaxed),
            opened_behind: s.opened_behind.load(Ordering::Relaxed),
            invalidated: s.invalidated.load(Ordering::Relaxed),
            read_ahead: s.read_ahead.load(Ordering::Relaxed),
            lookups_served: s.lookups_served.load(Ordering::Relaxed),
            bytes,
            files,
        }
    }

    fn child(&self) -> FopResult<&XlatorRef> {
        self.base.child()
    }
}

impl Shared {
    /// The change counter now, to pass to [`Shared::learn`] for a reply asked for after it.
    fn asked(&self) -> u64 {
        self.cache.lock().map(|c| c.clock).unwrap_or(u64::MAX)
    }

    /// Takes in what a lookup reply asked for at `asked` says about a file: its size, and
    /// its content if it came along. Returns the content when it was kept. A reply that
    /// was on its way while the file changed through this graph is not taken in (its
    /// content could be from before the change).
    fn learn(&self, ia: &Iatt, content: Option<Bytes>, asked: u64) -> Option<Arc<Content>> {
        if ia.kind != FileKind::File {
            return None;
        }
        let Ok(mut cache) = self.cache.lock() else {
            return None;
        };
        if cache.changed_since(ia.gfid, asked) {
            return None;
        }
        cache.hint(ia.gfid, ia.size);
        match content {
            Some(data) if data.len() as u64 == ia.size => {
                let c = Arc::new(Content {
                    data,
                    size: ia.size,
                    mtime: ia.mtime,
                    ctime: ia.ctime,
                    fetched: Instant::now(),
                    stale: AtomicBool::new(false),
                });
                cache.insert(
                    ia.gfid,
                    Arc::clone(&c),
                    self.cfg.cache_size,
                    self.cfg.timeout,
                );
                Some(c)
            }
            _ => {
                let old = cache
                    .files
                    .get(&ia.gfid)
                    .is_some_and(|(c, _)| !c.matches(ia));
                if old && let Some(c) = cache.remove(ia.gfid) {
                    c.stale.store(true, Ordering::Release);
                    self.stats.invalidated.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
        }
    }

    /// The size a change through this graph left a file with: the next open for reading
    /// may fetch it whole.
    fn note_size(&self, ia: &Iatt) {
        if ia.kind == FileKind::File
            && let Ok(mut cache) = self.cache.lock()
        {
            cache.hint(ia.gfid, ia.size);
        }
    }

    /// A change through this graph: the content held for `gfid` is wrong from now on.
    fn invalidate(&self, gfid: Gfid) {
        if let Ok(mut a) = self.ahead.lock() {
            a.forget_gfid(gfid);
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache.change(gfid);
            if let Some(c) = cache.remove(gfid) {
                c.stale.store(true, Ordering::Release);
                self.stats.invalidated.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A name of `parent` changed through this graph (created, removed, renamed).
    fn name_changed(&self, parent: Option<Gfid>, name: Option<&str>) {
        if let (Some(p), Some(n)) = (parent, name)
            && let Ok(mut a) = self.ahead.lock()
        {
            a.generation += 1;
            a.forget_name(p, n);
        }
    }

    /// The entry read-ahead fetched for `name` in `parent`, if still fresh (taken: each
    /// serves one lookup).
    fn take_ahead(&self, parent: Gfid, name: &str) -> Option<Iatt> {
        let mut a = self.ahead.lock().ok()?;
        let (ia, at) = a.entries.remove(&(parent, name.to_string()))?;
        a.by_gfid.remove(&ia.gfid);
        (at.elapsed() < self.cfg.timeout).then_some(ia)
    }

    /// Remembers the name `gfid` was looked up by, when it is numbered (see `opened`).
    fn named(&self, gfid: Gfid, parent: Gfid, name: &str) {
        if self.cfg.read_ahead == 0 || Numbered::parse(name).is_none() {
            return;
        }
        if let Ok(mut a) = self.ahead.lock() {
            if a.names.len() >= AHEAD_MAX {
                a.names.clear();
            }
            a.names.insert(gfid, (parent, name.to_string()));
        }
    }

    /// Called when `gfid` is opened for reading: when its name follows, in number, the last
    /// name opened in its directory, the next `read-ahead` names are fetched in the
    /// background. Opens, not lookups, drive it: a scan that only looks names up (a stat of
    /// every image, a delete) must not fetch the content of what follows.
    fn opened(self: &Arc<Self>, child: &XlatorRef, cx: &Cx, gfid: Gfid) {
        let named = self
            .ahead
            .lock()
            .ok()
            .and_then(|a| a.names.get(&gfid).cloned());
        if let Some((parent, name)) = named {
            self.read_ahead(child, cx, parent, &name);
        }
    }

    /// After `name` of `parent` was opened for reading: fetches the next names when it
    /// follows the directory's last one (see `opened`).
    fn read_ahead(self: &Arc<Self>, child: &XlatorRef, cx: &Cx, parent: Gfid, name: &str) {
        let k = u64::from(self.cfg.read_ahead);
        if k == 0 || self.cfg.timeout.is_zero() {
            return;
        }
        let Some(this) = Numbered::parse(name) else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut wanted = Vec::new();
        let generation;
        {
            let Ok(mut a) = self.ahead.lock() else {
                return;
            };
            if a.last.len() >= AHEAD_MAX {
                a.last.clear();
            }
            generation = a.generation;
            let sequential = a.last.get(&parent).is_some_and(|prev| this.follows(prev));
            a.last.insert(parent, this.clone());
            if !sequential {
                return;
            }
            if a.entries.len() >= AHEAD_MAX {
                a.entries.clear();
                a.by_gfid.clear();
            }
            for i in 1..=k {
                let Some(next) = this.plus(i) else { break };
                let key = (parent, next);
                if a.inflight.len() >= AHEAD_INFLIGHT_MAX {
                    break;
                }
                if a.entries.contains_key(&key) || a.inflight.contains(&key) {
                    continue;
                }
                a.inflight.insert(key.clone());
                wanted.push(key.1);
            }
        }
        let want = self.cfg.lookup_size.max(self.cfg.max_file_size);
        for next in wanted {
            let (s, child, cx) = (Arc::clone(self), Arc::clone(child), cx.clone());
            rt.spawn(async move {
                let mut x = Xdata::new();
                if want > 0 {
                    x.set_u64(WANT_KEY, want);
                }
                let asked = s.asked();
                let r = child.lookup(&cx, Loc::entry(parent, next.clone()), x).await;
                let found = match r {
                    Ok(mut e) if e.iatt.kind == FileKind::File => {
                        let content = e.xdata.remove(CONTENT_KEY);
                        s.learn(&e.iatt, content, asked);
                        s.stats.read_ahead.fetch_add(1, Ordering::Relaxed);
                        Some(e.iatt)
                    }
                    _ => None,
                };
                // The entry too is kept only if the file did not change meanwhile (a
                // writer on this mount may be filling it right now).
                let unchanged = found.as_ref().is_some_and(|ia| {
                    s.cache
                        .lock()
                        .is_ok_and(|c| !c.changed_since(ia.gfid, asked))
                });
                if let Ok(mut a) = s.ahead.lock() {
                    let key = (parent, next);
                    a.inflight.remove(&key);
                    if let Some(ia) = found
                        && unchanged
                        && a.generation == generation
                    {
                        a.by_gfid.insert(ia.gfid, key.clone());
                        a.entries.insert(key, (ia, Instant::now()));
                    }
                }
            });
        }
    }

    fn fresh(&self, gfid: Gfid) -> Option<Arc<Content>> {
        let mut cache = self.cache.lock().ok()?;
        let c = cache.touch(gfid)?;
        c.fresh(self.cfg.timeout).then_some(c)
    }

    fn fetchable(&self, gfid: Gfid) -> bool {
        let max = self.cfg.max_file_size;
        max > 0
            && !self.cfg.timeout.is_zero()
            && self
                .cache
                .lock()
                .ok()
                .and_then(|c| c.sizes.get(&gfid).copied())
                .is_some_and(|s| s > 0 && s <= max)
    }
}

impl QuickRead {
    /// Makes sure `fd` is open below (it may have been answered here), before a call that
    /// needs it to be.
    async fn open_behind(&self, cx: &Cx, fd: &Fd) -> FopResult<()> {
        let Some(q) = fd.ctx::<QrFd>(FD_KEY) else {
            return Ok(());
        };
        if q.opened.load(Ordering::Acquire) {
            return Ok(());
        }
        let _g = q.opening.lock().await;
        if q.opened.load(Ordering::Acquire) {
            return Ok(());
        }
        self.child()?
            .open(cx, q.loc.clone(), fd.flags(), fd.clone(), q.xdata.clone())
            .await?;
        q.opened.store(true, Ordering::Release);
        tracing::trace!(gfid = %fd.gfid(), "opened behind");
        self.s.stats.opened_behind.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn target_behind(&self, cx: &Cx, target: &Target) -> FopResult<()> {
        match target {
            Target::Fd(fd) => self.open_behind(cx, fd).await,
            Target::Loc(_) => Ok(()),
        }
    }

    /// Runs `call`, a change of name `name` in `parent`, with read-ahead told before and
    /// after (so no read-ahead that overlaps it keeps what it found).
    async fn naming<T>(
        &self,
        parent: Option<Gfid>,
        name: Option<String>,
        call: impl std::future::Future<Output = T>,
    ) -> T {
        self.s.name_changed(parent, name.as_deref());
        let r = call.await;
        self.s.name_changed(parent, name.as_deref());
        r
    }

    /// Serves an open from `content`: the descriptor stays here until something needs it
    /// below.
    fn answer_open(&self, loc: Loc, fd: &Fd, xdata: Xdata, content: Arc<Content>) {
        fd.set_ctx(
            FD_KEY,
            Arc::new(QrFd {
                content,
                loc,
                xdata,
                opened: AtomicBool::new(false),
                opening: tokio::sync::Mutex::new(()),
            }),
        );
    }

    /// True when `fd` is answered here and has not been opened below.
    fn held_here(fd: &Fd) -> bool {
        fd.ctx::<QrFd>(FD_KEY)
            .is_some_and(|q| !q.opened.load(Ordering::Acquire))
    }
}

#[async_trait::async_trait]
impl Translator for QuickRead {
    crate::xlator_base!();

    async fn lookup(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<Entry> {
        // A caller above that asked for content itself gets it as it came.
        let ours = self.s.cfg.lookup_size > 0 && !internal(cx) && !xdata.contains(WANT_KEY);
        let mut x = xdata;
        if ours {
            x.set_u64(WANT_KEY, self.s.cfg.lookup_size);
        }
        // A plain lookup by name (what FUSE and NFS send) may be answered from read-ahead.
        let named = match (loc.parent, loc.name.as_deref()) {
            (Some(p), Some(n)) if ours && x.0.len() == 1 => Some((p, n.to_string())),
            _ => None,
        };
        if let Some((p, n)) = &named
            && let Some(iatt) = self.s.take_ahead(*p, n)
        {
            self.s.stats.lookups_served.fetch_add(1, Ordering::Relaxed);
            self.s.named(iatt.gfid, *p, n);
            return Ok(Entry {
                iatt,
                xdata: Xdata::new(),
            });
        }
        let asked = self.s.asked();
        let mut e = self.child()?.lookup(cx, loc, x).await?;
        let content = if ours {
            e.xdata.remove(CONTENT_KEY)
        } else {
            None
        };
        self.s.learn(&e.iatt, content, asked);
        if let Some((p, n)) = &named
            && e.iatt.kind == FileKind::File
        {
            self.s.named(e.iatt.gfid, *p, n);
        }
        Ok(e)
    }

    async fn open(&self, cx: &Cx, loc: Loc, flags: i32, fd: Fd, xdata: Xdata) -> FopResult<()> {
        let gfid = fd.gfid();
        if !read_only(flags) {
            self.s.invalidate(gfid);
            return self.child()?.open(cx, loc, flags, fd, xdata).await;
        }
        if internal(cx) {
            return self.child()?.open(cx, loc, flags, fd, xdata).await;
        }
        self.s.opened(self.child()?, cx, gfid);
        if let Some(c) = self.s.fresh(gfid) {
            tracing::trace!(%gfid, "open answered from held content");
            self.s.stats.opens_served.fetch_add(1, Ordering::Relaxed);
            self.answer_open(loc, &fd, xdata, c);
            return Ok(());
        }
        if self.s.fetchable(gfid) {
            let mut x = Xdata::new();
            x.set_u64(WANT_KEY, self.s.cfg.max_file_size);
            let asked = self.s.asked();
            match self.child()?.lookup(cx, Loc::inode(gfid), x).await {
                Ok(mut e) if e.iatt.gfid == gfid => {
                    let content = e.xdata.remove(CONTENT_KEY);
                    if let Some(c) = self.s.learn(&e.iatt, content, asked) {
                        tracing::trace!(%gfid, "open answered by fetching the file");
                        self.s.stats.opens_fetched.fetch_add(1, Ordering::Relaxed);
                        self.answer_open(loc, &fd, xdata, c);
                        return Ok(());
                    }
                }
                Ok(_) => {}
                // The open below would fail the same way.
                Err(e) if e.errno == libc::ENOENT || e.errno == libc::ESTALE => {
                    self.s.invalidate(gfid);
                    return Err(e);
                }
                Err(_) => {}
            }
        }
        self.child()?.open(cx, loc, flags, fd, xdata).await
    }

    async fn read(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        size: u32,
        xdata: Xdata,
    ) -> FopResult<Payload> {
        if let Some(q) = fd.ctx::<QrFd>(FD_KEY)
            && !q.opened.load(Ordering::Acquire)
            && q.content.fresh(self.s.cfg.timeout)
        {
            self.s.stats.reads_served.fetch_add(1, Ordering::Relaxed);
            let data = &q.content.data;
            let len = data.len() as u64;
            let start = offset.min(len);
            let end = offset.saturating_add(u64::from(size)).min(len);
            return Ok(Payload::new(data.slice(start as usize..end as usize)));
        }
        self.open_behind(cx, &fd).await?;
        self.child()?.read(cx, fd, offset, size, xdata).await
    }

    async fn write(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        data: Payload,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        self.s.invalidate(fd.gfid());
        self.open_behind(cx, &fd).await?;
        let r = self
            .child()?
            .write(cx, fd.clone(), offset, data, xdata)
            .await;
        // A read racing the write may have fetched the old content meanwhile.
        self.s.invalidate(fd.gfid());
        if let Ok(ia) = &r {
            self.s.note_size(ia);
        }
        r
    }

    async fn flush(&self, cx: &Cx, fd: Fd, xdata: Xdata) -> FopResult<()> {
        if Self::held_here(&fd) {
            return Ok(());
        }
        self.child()?.flush(cx, fd, xdata).await
    }

    async fn release(&self, cx: &Cx, fd: Fd) -> FopResult<()> {
        if let Some(q) = fd.take_ctx::<QrFd>(FD_KEY) {
            // Whoever opens it below holds `opening`; wait for that to finish.
            let _g = q.opening.lock().await;
            if !q.opened.load(Ordering::Acquire) {
                return Ok(());
            }
        }
        self.child()?.release(cx, fd).await
    }

    async fn fsync(&self, cx: &Cx, fd: Fd, datasync: bool, xdata: Xdata) -> FopResult<()> {
        self.open_behind(cx, &fd).await?;
        self.child()?.fsync(cx, fd, datasync, xdata).await
    }

    async fn stat(&self, cx: &Cx, target: Target, xdata: Xdata) -> FopResult<Iatt> {
        // fstat(2) of a descriptor answered here (every `read a whole file` does one) asks
        // by inode instead: same answer, no open below.
        let target = match target {
            Target::Fd(fd) if Self::held_here(&fd) => Target::Loc(Loc::inode(fd.gfid())),
            t => t,
        };
        self.child()?.stat(cx, target, xdata).await
    }

    async fn setattr(
        &self,
        cx: &Cx,
        target: Target,
        attr: SetAttr,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        if let Some(g) = target.gfid() {
            self.s.invalidate(g);
        }
        self.target_behind(cx, &target).await?;
        let ia = self.child()?.setattr(cx, target, attr, xdata).await?;
        self.s.invalidate(ia.gfid);
        self.s.note_size(&ia);
        Ok(ia)
    }

    async fn truncate(&self, cx: &Cx, target: Target, size: u64, xdata: Xdata) -> FopResult<Iatt> {
        if let Some(g) = target.gfid() {
            self.s.invalidate(g);
        }
        self.target_behind(cx, &target).await?;
        let ia = self.child()?.truncate(cx, target, size, xdata).await?;
        self.s.invalidate(ia.gfid);
        self.s.note_size(&ia);
        Ok(ia)
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
        self.s.name_changed(loc.parent, loc.name.as_deref());
        let (p, n) = (loc.parent, loc.name.clone());
        let r = self
            .child()?
            .create(cx, loc, flags, mode, umask, fd, xdata)
            .await;
        self.s.name_changed(p, n.as_deref());
        let e = r?;
        // Without O_EXCL an existing file may have been opened and emptied.
        self.s.invalidate(e.iatt.gfid);
        self.s.note_size(&e.iatt);
        Ok(e)
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
        let (p, n) = (loc.parent, loc.name.clone());
        self.naming(p, n, self.child()?.mknod(cx, loc, mode, rdev, umask, xdata))
            .await
    }

    async fn mkdir(
        &self,
        cx: &Cx,
        loc: Loc,
        mode: u32,
        umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let (p, n) = (loc.parent, loc.name.clone());
        self.naming(p, n, self.child()?.mkdir(cx, loc, mode, umask, xdata))
            .await
    }

    async fn unlink(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        let (p, n) = (loc.parent, loc.name.clone());
        self.naming(p, n, self.child()?.unlink(cx, loc, xdata))
            .await
    }

    async fn rmdir(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        let (p, n) = (loc.parent, loc.name.clone());
        self.naming(p, n, self.child()?.rmdir(cx, loc, xdata)).await
    }

    async fn symlink(
        &self,
        cx: &Cx,
        link_target: String,
        loc: Loc,
        umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let (p, n) = (loc.parent, loc.name.clone());
        self.naming(
            p,
            n,
            self.child()?.symlink(cx, link_target, loc, umask, xdata),
        )
        .await
    }

    async fn rename(&self, cx: &Cx, old: Loc, new: Loc, flags: u32, xdata: Xdata) -> FopResult<()> {
        let names = [
            (old.parent, old.name.clone()),
            (new.parent, new.name.clone()),
        ];
        for (p, n) in &names {
            self.s.name_changed(*p, n.as_deref());
        }
        let r = self.child()?.rename(cx, old, new, flags, xdata).await;
        for (p, n) in &names {
            self.s.name_changed(*p, n.as_deref());
        }
        r
    }

    async fn link(&self, cx: &Cx, old: Loc, new: Loc, xdata: Xdata) -> FopResult<Entry> {
        let (p, n) = (new.parent, new.name.clone());
        self.naming(p, n, self.child()?.link(cx, old, new, xdata))
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
        self.s.invalidate(fd.gfid());
        self.open_behind(cx, &fd).await?;
        let r = self
            .child()?
            .fallocate(cx, fd.clone(), mode, offset, len, xdata)
            .await;
        self.s.invalidate(fd.gfid());
        r
    }

    async fn lseek(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        whence: Whence,
        xdata: Xdata,
    ) -> FopResult<u64> {
        self.open_behind(cx, &fd).await?;
        self.child()?.lseek(cx, fd, offset, whence, xdata).await
    }

    async fn setxattr(
        &self,
        cx: &Cx,
        target: Target,
        xattrs: Xdata,
        flags: i32,
        xdata: Xdata,
    ) -> FopResult<()> {
        self.target_behind(cx, &target).await?;
        self.child()?
            .setxattr(cx, target, xattrs, flags, xdata)
            .await
    }

    async fn getxattr(
        &self,
        cx: &Cx,
        target: Target,
        name: Option<String>,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        let target = match target {
            Target::Fd(fd) if Self::held_here(&fd) => Target::Loc(Loc::inode(fd.gfid())),
            t => t,
        };
        self.child()?.getxattr(cx, target, name, xdata).await
    }

    async fn removexattr(
        &self,
        cx: &Cx,
        target: Target,
        name: String,
        xdata: Xdata,
    ) -> FopResult<()> {
        self.target_behind(cx, &target).await?;
        self.child()?.removexattr(cx, target, name, xdata).await
    }

    async fn xattrop(
        &self,
        cx: &Cx,
        target: Target,
        op: XattropOp,
        xattrs: Xdata,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        self.target_behind(cx, &target).await?;
        self.child()?.xattrop(cx, target, op, xattrs, xdata).await
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
        self.target_behind(cx, &target).await?;
        self.child()?
            .inodelk(cx, domain, target, wait, lock, xdata)
            .await
    }
}

#[cfg(test)]
mod tests;
