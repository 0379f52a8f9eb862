//! `features/index`: the brick side of replication's bookkeeping.
//!
//! Replicate asks for it in a fop's xdata (`cairn.afr.dirty` = `d`, `m` or `e`): before the
//! fop runs, this translator adds one to the object's `trusted.cairn.afr.dirty` counter
//! (data, metadata or entry; entry fops mark the parent directory) and makes sure the
//! object has an entry in the index directory. If the fop then fails, the mark is taken
//! back. So the mark travels in the same request as the change: a crash of the client
//! between bricks always leaves a marked copy behind, and it costs no extra round trip.
//!
//! A data mark is made once per open file: later writes through the same fd find it
//! already set. The client clears marks with `xattrop` (batched), and records blame on a
//! brick that missed a change with `xattrop` too; after each `xattrop` on replication
//! counters this translator drops the object from the index when every counter is zero.
//!
//! The index (`INDEX_DIR/<gfid>`, empty files) is how self-heal finds its work without
//! crawling the volume. Two rules keep an object with a raised counter always listed:
//!
//! - the entry is made *before* a counter is raised, so a brick that dies between the two
//!   leaves at worst an entry for a clean object (heal looks, finds nothing, drops it);
//! - raising a counter (with its entry) and dropping an entry (after reading every counter
//!   clean) take the same per-object lock. Without it, a drop that read the counters just
//!   before another request raised one could remove the entry that request had relied on,
//!   leaving a dirty object heal would never visit.
//!
//! Under the same lock the translator remembers which entries it has made (a bounded set
//! per lock stripe), so marking a directory that is already listed, as every create in a
//! busy directory does, costs no `open` of the index file. The index directory belongs to
//! the brick process: entries removed behind its back are made again after a restart.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Mutex;

use async_trait::async_trait;
use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};

use crate::error::FopResult;
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::*;
use crate::xlator::{Translator, XlatorBase, XlatorRef};

/// Xdata key asking for a dirty mark; the value is [`DATA`], [`METADATA`] or [`ENTRY`].
pub const DIRTY_KEY: &str = "cairn.afr.dirty";
/// Data (file contents).
pub const DATA: u8 = b'd';
/// Metadata (mode, owner, times, xattrs).
pub const METADATA: u8 = b'm';
/// Entries (names in a directory).
pub const ENTRY: u8 = b'e';
/// The dirty counter xattr: three big-endian i64 (data, metadata, entry).
pub const XATTR_DIRTY: &str = "trusted.cairn.afr.dirty";
/// Prefix of every replication counter xattr (dirty and pending).
pub const AFR_PREFIX: &str = "trusted.cairn.afr.";

const OPTIONS: &[OptionSpec] = &[OptionSpec {
    key: "directory",
    kind: OptionKind::Path,
    default: None,
    doc: "The index directory (normally BRICK/.cairn/indices).",
}];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "features/index",
        arity: Arity::One,
        roles: &[Role::Brick],
        maturity: Maturity::Stable,
        options: OPTIONS,
        doc: "Marks objects dirty in the same request as a replicated change, and keeps the index of objects that need heal.",
    },
    build,
};

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let dir = PathBuf::from(ctx.options.str("directory").map_err(|e| e.to_string())?);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(Arc::new(Index::new(ctx.name, ctx.children, dir)))
}

/// The counter array for one kind of change.
pub fn counters(kind: u8, n: i64) -> Vec<u8> {
    let idx = match kind {
        DATA => 0,
        METADATA => 1,
        _ => 2,
    };
    let mut v = vec![0u8; 24];
    v[idx * 8..idx * 8 + 8].copy_from_slice(&n.to_be_bytes());
    v
}

/// Reads a counter array (missing or short parts are zero).
pub fn read_counters(raw: &[u8]) -> [i64; 3] {
    let mut out = [0i64; 3];
    for (i, chunk) in raw.chunks_exact(8).take(3).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        out[i] = i64::from_be_bytes(b);
    }
    out
}

const FD_KEY: &str = "features/index";

/// Per open file: whether this fd has set the data mark.
#[derive(Default)]
struct FdMark {
    marked: AtomicBool,
}

/// Lock stripes over objects (see the module documentation).
const STRIPES: usize = 64;
/// Entries remembered per stripe, at most; beyond, an entry is made with an `open` each time.
const KNOWN_PER_STRIPE: usize = 1024;

/// The index translator.
pub struct Index {
    base: XlatorBase,
    dir: PathBuf,
    /// Per stripe: held while raising a counter or dropping an entry; holds the entries this
    /// process made and has not removed (some of them, up to the bound).
    stripes: Vec<Mutex<HashSet<Gfid>>>,
}

impl Index {
    /// An index node keeping its entries in `dir`.
    pub fn new(name: &str, children: Vec<XlatorRef>, dir: PathBuf) -> Index {
        Index {
            base: XlatorBase::new(name, TYPE.decl.type_name, children),
            dir,
            stripes: (0..STRIPES).map(|_| Mutex::new(HashSet::new())).collect(),
        }
    }

    /// The objects the index holds (gfids needing a look by self-heal).
    pub fn entries(&self) -> Vec<Gfid> {
        std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| Gfid::parse(&e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn child(&self) -> FopResult<&XlatorRef> {
        self.base.child()
    }

    fn stripe(&self, gfid: Gfid) -> &Mutex<HashSet<Gfid>> {
        let h = xxhash_rust::xxh3::xxh3_64(&gfid.0);
        &self.stripes[(h % STRIPES as u64) as usize]
    }

    /// Makes `gfid`'s entry, under its stripe lock (`known`).
    fn add_entry(&self, known: &mut HashSet<Gfid>, gfid: Gfid) {
        if known.contains(&gfid) {
            return;
        }
        let path = self.dir.join(gfid.to_string());
        // Inline, like the brick's other filesystem calls (see storage/posix).
        let r = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path);
        match r {
            Ok(_) if known.len() < KNOWN_PER_STRIPE => {
                known.insert(gfid);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%gfid, error = %e, "cannot add an index entry"),
        }
    }

    /// Removes `gfid`'s entry, under its stripe lock (`known`).
    fn remove_entry(&self, known: &mut HashSet<Gfid>, gfid: Gfid) {
        known.remove(&gfid);
        let path = self.dir.join(gfid.to_string());
        let _ = std::fs::remove_file(path);
    }

    /// Adds `n` to one dirty counter of `gfid`.
    async fn mark(&self, cx: &Cx, gfid: Gfid, kind: u8, n: i64) -> FopResult<()> {
        let mut x = Xdata::new();
        x.set(XATTR_DIRTY, counters(kind, n));
        let target = Target::Loc(Loc::inode(gfid));
        if n > 0 {
            let op = self
                .child()?
                .xattrop(cx, target, XattropOp::AddArray64, x, Xdata::new());
            self.raise(cx, gfid, op).await.map(|_| ())
        } else {
            self.lower(cx, gfid, target, XattropOp::AddArray64, x, Xdata::new())
                .await
                .map(|_| ())
        }
    }

    /// Runs an xattrop that lowers counters of `gfid` and drops the object from the index
    /// when it leaves every counter clean, judged from the xattrop's own reply (the
    /// storage translator reports every replication counter after the change, under its
    /// lock), under the object's lock. Returns the changed names only, as asked.
    async fn lower(
        &self,
        cx: &Cx,
        gfid: Gfid,
        target: Target,
        op: XattropOp,
        xattrs: Xdata,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        let child = self.child()?;
        let mut asked = xdata;
        asked.set(
            XATTROP_REPORT_KEY,
            format!("{AFR_PREFIX}\0{}\0", crate::features::bitrot::XATTR_BAD).into_bytes(),
        );
        let mut known = self.stripe(gfid).lock().await;
        let mut all = child.xattrop(cx, target, op, xattrs.clone(), asked).await?;
        if all.remove(XATTROP_REPORT_KEY).is_none() {
            // A storage translator that does not report: read the counters again.
            drop(known);
            self.drop_if_clean(cx, gfid).await;
            return Ok(all);
        }
        if clean(&all) {
            self.remove_entry(&mut known, gfid);
        }
        let mut out = Xdata::new();
        for (name, _) in xattrs.iter() {
            if let Some(v) = all.remove(name) {
                out.set(name.clone(), v);
            }
        }
        Ok(out)
    }

    /// Runs `op`, which raises a counter of `gfid`, with the entry made first, under the
    /// object's lock. A failed raise changed nothing; the entry stays only if something
    /// else still needs it.
    async fn raise<T: Send>(
        &self,
        cx: &Cx,
        gfid: Gfid,
        op: impl std::future::Future<Output = FopResult<T>> + Send,
    ) -> FopResult<T> {
        let result = {
            let mut known = self.stripe(gfid).lock().await;
            self.add_entry(&mut known, gfid);
            op.await
        };
        if result.is_err() {
            self.drop_if_clean(cx, gfid).await;
        }
        result
    }

    /// Removes `gfid` from the index when none of its replication counters is set.
    async fn drop_if_clean(&self, cx: &Cx, gfid: Gfid) {
        let Ok(child) = self.child() else { return };
        let mut known = self.stripe(gfid).lock().await;
        let all = child
            .getxattr(cx, Target::Loc(Loc::inode(gfid)), None, Xdata::new())
            .await;
        let drop_it = match &all {
            Ok(x) => clean(x),
            // Gone (unlinked): nothing to heal.
            Err(e) => e.errno == libc::ENOENT || e.errno == libc::ESTALE,
        };
        if drop_it {
            self.remove_entry(&mut known, gfid);
        }
    }

    /// Runs `op` with a dirty mark on `gfid` when `xdata` asks for one.
    async fn marked<T: Send>(
        &self,
        cx: &Cx,
        xdata: &Xdata,
        gfid: Option<Gfid>,
        fd: Option<&Fd>,
        op: impl std::future::Future<Output = FopResult<T>> + Send,
    ) -> FopResult<T> {
        let kind = xdata.get(DIRTY_KEY).and_then(|v| v.first().copied());
        let (Some(kind), Some(gfid)) = (kind, gfid) else {
            return op.await;
        };
        // One data mark per open file.
        let fd_mark = fd.filter(|_| kind == DATA).map(|fd| {
            fd.ctx::<FdMark>(FD_KEY).unwrap_or_else(|| {
                let m = Arc::new(FdMark::default());
                fd.set_ctx(FD_KEY, Arc::clone(&m));
                m
            })
        });
        let already = fd_mark
            .as_ref()
            .is_some_and(|m| m.marked.load(Ordering::SeqCst));
        if !already {
            self.mark(cx, gfid, kind, 1).await?;
        }
        let result = op.await;
        match (&result, &fd_mark) {
            (Err(_), _) if !already => {
                // Nothing changed: take the mark back.
                let _ = self.mark(cx, gfid, kind, -1).await;
            }
            (Ok(_), Some(m)) => m.marked.store(true, Ordering::SeqCst),
            _ => {}
        }
        result
    }
}

/// True when `x` (an object's xattrs, or at least all of its replication counters and its
/// bitrot mark) leaves nothing for heal to do.
fn clean(x: &Xdata) -> bool {
    // A dirty counter below zero means a mark was settled by heal before its owner cleared
    // it: clean. A copy a scrub found damaged stays listed until heal has rebuilt it.
    if x.contains(crate::features::bitrot::XATTR_BAD) {
        return false;
    }
    x.iter()
        .filter(|(k, _)| k.starts_with(AFR_PREFIX))
        .all(|(k, v)| {
            let c = read_counters(v);
            if k == XATTR_DIRTY {
                c.iter().all(|n| *n <= 0)
            } else {
                c == [0, 0, 0]
            }
        })
}

fn entry_parent(loc: &Loc) -> Option<Gfid> {
    loc.parent
}

#[async_trait]
impl Translator for Index {
    crate::xlator_base!();

    async fn setattr(
        &self,
        cx: &Cx,
        target: Target,
        attr: SetAttr,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        let child = self.child()?;
        let fd = if let Target::Fd(fd) = &target {
            Some(fd.clone())
        } else {
            None
        };
        self.marked(
            cx,
            &xdata,
            target.gfid(),
            fd.as_ref(),
            child.setattr(cx, target.clone(), attr, xdata.clone()),
        )
        .await
    }

    async fn truncate(&self, cx: &Cx, target: Target, size: u64, xdata: Xdata) -> FopResult<Iatt> {
        let child = self.child()?;
        let fd = if let Target::Fd(fd) = &target {
            Some(fd.clone())
        } else {
            None
        };
        self.marked(
            cx,
            &xdata,
            target.gfid(),
            fd.as_ref(),
            child.truncate(cx, target.clone(), size, xdata.clone()),
        )
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
        let child = self.child()?;
        self.marked(
            cx,
            &xdata,
            Some(fd.gfid()),
            Some(&fd),
            child.write(cx, fd.clone(), offset, data, xdata.clone()),
        )
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
        let child = self.child()?;
        self.marked(
            cx,
            &xdata,
            Some(fd.gfid()),
            Some(&fd),
            child.fallocate(cx, fd.clone(), mode, offset, len, xdata.clone()),
        )
        .await
    }

    async fn setxattr(
        &self,
        cx: &Cx,
        target: Target,
        xattrs: Xdata,
        flags: i32,
        xdata: Xdata,
    ) -> FopResult<()> {
        let child = self.child()?;
        self.marked(
            cx,
            &xdata,
            target.gfid(),
            None,
            child.setxattr(cx, target.clone(), xattrs, flags, xdata.clone()),
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
        let child = self.child()?;
        self.marked(
            cx,
            &xdata,
            target.gfid(),
            None,
            child.removexattr(cx, target.clone(), name, xdata.clone()),
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
        let child = self.child()?;
        self.marked(
            cx,
            &xdata,
            entry_parent(&loc),
            None,
            child.create(cx, loc.clone(), flags, mode, umask, fd, xdata.clone()),
        )
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
        let child = self.child()?;
        self.marked(
            cx,
            &xdata,
            entry_parent(&loc),
            None,
            child.mknod(cx, loc.clone(), mode, rdev, umask, xdata.clone()),
        )
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
        let child = self.child()?;
        self.marked(
            cx,
            &xdata,
            entry_parent(&loc),
            None,
            child.mkdir(cx, loc.clone(), mode, umask, xdata.clone()),
        )
        .await
    }

    async fn symlink(
        &self,
        cx: &Cx,
        link_target: String,
        loc: Loc,
        umask: u32,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let child = self.child()?;
        self.marked(
            cx,
            &xdata,
            entry_parent(&loc),
            None,
            child.symlink(cx, link_target, loc.clone(), umask, xdata.clone()),
        )
        .await
    }

    async fn unlink(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        let child = self.child()?;
        self.marked(
            cx,
            &xdata,
            entry_parent(&loc),
            None,
            child.unlink(cx, loc.clone(), xdata.clone()),
        )
        .await
    }

    async fn rmdir(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        let child = self.child()?;
        self.marked(
            cx,
            &xdata,
            entry_parent(&loc),
            None,
            child.rmdir(cx, loc.clone(), xdata.clone()),
        )
        .await
    }

    async fn link(&self, cx: &Cx, old: Loc, new: Loc, xdata: Xdata) -> FopResult<Entry> {
        let child = self.child()?;
        self.marked(
            cx,
            &xdata,
            entry_parent(&new),
            None,
            child.link(cx, old, new.clone(), xdata.clone()),
        )
        .await
    }

    async fn rename(&self, cx: &Cx, old: Loc, new: Loc, flags: u32, xdata: Xdata) -> FopResult<()> {
        let child = self.child()?;
        // The source directory is marked; a cross-directory rename also marks the target.
        let (op, np) = (old.parent, new.parent);
        let second = if np != op { np } else { None };
        if let (Some(k), Some(g)) = (
            xdata.get(DIRTY_KEY).and_then(|v| v.first().copied()),
            second,
        ) {
            self.mark(cx, g, k, 1).await?;
            let r = self
                .marked(
                    cx,
                    &xdata,
                    op,
                    None,
                    child.rename(cx, old.clone(), new.clone(), flags, xdata.clone()),
                )
                .await;
            if r.is_err() {
                let _ = self.mark(cx, g, k, -1).await;
            }
            return r;
        }
        self.marked(
            cx,
            &xdata,
            op,
            None,
            child.rename(cx, old, new, flags, xdata.clone()),
        )
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
        let touches_afr = xattrs.iter().any(|(k, _)| k.starts_with(AFR_PREFIX));
        let raises = xattrs
            .iter()
            .filter(|(k, _)| k.starts_with(AFR_PREFIX))
            .any(|(_, v)| read_counters(v).iter().any(|c| *c > 0));
        let gfid = target.gfid();
        let child = self.child()?;
        match gfid {
            Some(g) if touches_afr && raises => {
                self.raise(cx, g, child.xattrop(cx, target, op, xattrs, xdata))
                    .await
            }
            Some(g) if touches_afr => self.lower(cx, g, target, op, xattrs, xdata).await,
            _ => child.xattrop(cx, target, op, xattrs, xdata).await,
        }
    }
}
