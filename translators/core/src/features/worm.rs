//! `features/worm`: write once, read many, enforced on the brick.
//!
//! Two modes, both off by default (then every fop passes straight through):
//!
//! - **Volume-level** (`worm`): a file may be created and written through the descriptor that
//!   created it until that descriptor is released; after that it cannot be opened for
//!   writing, written, truncated, renamed or removed (`EROFS`), nor can its mode, owner or
//!   modification time change (`EPERM`).
//! - **File-level** (`worm-file-level`): a file is *committed* when its write bits are all
//!   removed (`chmod a-w`), when someone sets its retention date, or (lazily, when something
//!   next tries to change it or asks for its retention) once it has not been modified for
//!   `auto-commit-period`. A committed file never changes again: writes, truncation and
//!   renames fail with `EROFS`, mode, owner, times and user xattrs with `EPERM`. It cannot
//!   be removed (`EROFS`) before its retention date (`default-retention-period` after the
//!   commit unless set otherwise), nor while a legal hold is set, nor at all when
//!   `worm-files-deletable` is off. In `enterprise` mode a retention date can only be moved
//!   later; in `relax` mode it can be moved either way.
//!
//! The retention state lives in its own xattr on each copy, [`XATTR_WORM`], versioned text
//! `1:<committed at>:<retain until>` (Unix seconds), never in atime. A state this version
//! cannot read is treated as retained forever. Applications see and set the retention date
//! through the virtual xattr [`RETAIN_UNTIL`] (decimal Unix seconds) and a legal hold through
//! the real xattr [`LEGAL_HOLD`] (set: held; removed, or `0`: released).
//!
//! Cairn's own copies (self-heal repairing a copy, a rebalance moving a file, with the
//! internal context, pid 0) may write and set attributes, since they put back the bytes the
//! file already has; they may remove a committed file only when moving it (the request carries
//! [`MIGRATED_KEY`]). The FUSE and gateway edges never send pid 0.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};

use crate::error::{FopError, FopResult};
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::*;
use crate::xlator::{Translator, XlatorBase, XlatorRef};

/// The retention state of a committed file.
pub const XATTR_WORM: &str = "trusted.cairn.worm";
/// Virtual xattr: a file's retention date (decimal Unix seconds); set it to commit a file
/// with that date or to change the date.
pub const RETAIN_UNTIL: &str = "user.cairn.retain-until";
/// A legal hold: while set (to anything but `0`), the file cannot be removed.
pub const LEGAL_HOLD: &str = "user.cairn.legal-hold";
/// Xdata key on an internal unlink that removes the old copy of a moved file.
pub const MIGRATED_KEY: &str = "cairn.worm.migrated";

const FORMAT: &str = "1";

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "worm",
        kind: OptionKind::Bool,
        default: Some("off"),
        doc: "Volume-level WORM: a file can be written only through the descriptor that created it, until it is closed; then it can no longer be changed, renamed or removed.",
    },
    OptionSpec {
        key: "worm-file-level",
        kind: OptionKind::Bool,
        default: Some("off"),
        doc: "File-level WORM with retention: a file committed (chmod a-w, a retention date set, or no change for auto-commit-period) is immutable, and cannot be removed before its retention date.",
    },
    OptionSpec {
        key: "default-retention-period",
        kind: OptionKind::Duration {
            min_ms: 0,
            max_ms: 100 * 366 * 86_400_000,
        },
        default: Some("120s"),
        doc: "How long a file committed without an explicit date is retained.",
    },
    OptionSpec {
        key: "auto-commit-period",
        kind: OptionKind::Duration {
            min_ms: 0,
            max_ms: 100 * 366 * 86_400_000,
        },
        default: Some("180s"),
        doc: "A file not modified for this long is committed (0: only chmod a-w or a retention date commits).",
    },
    OptionSpec {
        key: "retention-mode",
        kind: OptionKind::Enum(&["relax", "enterprise"]),
        default: Some("relax"),
        doc: "relax: a retention date may be moved earlier or later; enterprise: only later.",
    },
    OptionSpec {
        key: "worm-files-deletable",
        kind: OptionKind::Bool,
        default: Some("on"),
        doc: "Whether a committed file can be removed once its retention date has passed.",
    },
];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "features/worm",
        arity: Arity::One,
        roles: &[Role::Brick],
        maturity: Maturity::Stable,
        options: OPTIONS,
        doc: "Write-once files and retention, enforced on the brick.",
    },
    build,
};

/// What the options say (the default: both modes off).
#[derive(Clone, Debug, Default)]
pub struct WormConfig {
    /// Volume-level WORM.
    pub volume: bool,
    /// File-level WORM with retention.
    pub file_level: bool,
    /// Retention of a file committed without a date.
    pub retention: Duration,
    /// Idle time after which a file is committed (zero: never automatically).
    pub auto_commit: Duration,
    /// Retention dates may only move later.
    pub enterprise: bool,
    /// Committed files may be removed after their retention date.
    pub deletable: bool,
}

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let o = ctx.options;
    let e = |e: cairn_volfiles::OptionError| e.to_string();
    let cfg = WormConfig {
        volume: o.bool("worm").map_err(e)?,
        file_level: o.bool("worm-file-level").map_err(e)?,
        retention: o.duration("default-retention-period").map_err(e)?,
        auto_commit: o.duration("auto-commit-period").map_err(e)?,
        enterprise: o.str("retention-mode").map_err(e)? == "enterprise",
        deletable: o.bool("worm-files-deletable").map_err(e)?,
    };
    Ok(Arc::new(Worm::new(ctx.name, ctx.children, cfg)))
}

/// A committed file's retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// When it was committed (Unix seconds).
    pub committed_at: u64,
    /// Until when it cannot be removed (Unix seconds).
    pub until: u64,
}

impl Retention {
    /// The xattr value.
    pub fn encode(&self) -> Vec<u8> {
        format!("{FORMAT}:{}:{}", self.committed_at, self.until).into_bytes()
    }

    /// Reads an xattr value; a value of another format is retained forever (never
    /// released by a misreading).
    pub fn decode(raw: &[u8]) -> Retention {
        let text = String::from_utf8_lossy(raw);
        let mut parts = text.trim().split(':');
        let parsed = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(FORMAT), Some(a), Some(u), None) => a.parse().ok().zip(u.parse().ok()),
            _ => None,
        };
        match parsed {
            Some((committed_at, until)) => Retention {
                committed_at,
                until,
            },
            None => Retention {
                committed_at: 0,
                until: u64::MAX,
            },
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn erofs(what: &str, why: impl std::fmt::Display) -> FopError {
    FopError::new(libc::EROFS, format!("{what}: {why}"))
}

fn eperm(what: &str, why: impl std::fmt::Display) -> FopError {
    FopError::new(libc::EPERM, format!("{what}: {why}"))
}

fn writes(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & (libc::O_TRUNC | libc::O_APPEND) != 0
}

/// A file WORM protects: a regular file that is not one of distribute's pointers (zero-byte
/// placeholders with mode `01000`, which distribute creates and removes as names move).
fn guarded(ia: &Iatt) -> bool {
    ia.kind == FileKind::File && ia.perm & 0o7777 != crate::cluster::dht::LINKTO_MODE
}

/// Cairn's own operations (heal, rebalance).
fn internal(cx: &Cx) -> bool {
    cx.pid == 0
}

/// Marks a descriptor that created its file (volume-level WORM).
struct Creator;

const FD_KEY: &str = "features/worm";

/// The WORM translator.
pub struct Worm {
    base: XlatorBase,
    cfg: WormConfig,
    /// Files still open through the descriptor that created them, with the count of such
    /// descriptors (volume-level WORM lets them be written).
    fresh: Mutex<HashMap<Gfid, usize>>,
}

impl Worm {
    /// A WORM node.
    pub fn new(name: &str, children: Vec<XlatorRef>, cfg: WormConfig) -> Worm {
        Worm {
            base: XlatorBase::new(name, TYPE.decl.type_name, children),
            cfg,
            fresh: Mutex::new(HashMap::new()),
        }
    }

    fn child(&self) -> FopResult<&XlatorRef> {
        self.base.child()
    }

    fn off(&self) -> bool {
        !self.cfg.volume && !self.cfg.file_level
    }

    fn is_fresh(&self, gfid: Gfid) -> bool {
        self.fresh.lock().is_ok_and(|f| f.contains_key(&gfid))
    }

    async fn iatt(&self, cx: &Cx, target: &Target) -> FopResult<Iatt> {
        self.child()?.stat(cx, target.clone(), Xdata::new()).await
    }

    async fn xattr(&self, cx: &Cx, gfid: Gfid, name: &str) -> FopResult<Option<Vec<u8>>> {
        match self
            .child()?
            .getxattr(
                cx,
                Target::Loc(Loc::inode(gfid)),
                Some(name.to_string()),
                Xdata::new(),
            )
            .await
        {
            Ok(x) => Ok(x.get(name).map(<[u8]>::to_vec)),
            Err(e) if e.errno == libc::ENODATA => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn store(&self, cx: &Cx, gfid: Gfid, r: Retention) -> FopResult<()> {
        let mut x = Xdata::new();
        x.set(XATTR_WORM, r.encode());
        self.child()?
            .setxattr(cx, Target::Loc(Loc::inode(gfid)), x, 0, Xdata::new())
            .await
    }

    /// Commits `ia` now, retained for the default period (or until `until`).
    async fn commit(&self, cx: &Cx, ia: &Iatt, until: Option<u64>) -> FopResult<Retention> {
        let at = now();
        let r = Retention {
            committed_at: at,
            until: until.unwrap_or_else(|| at.saturating_add(self.cfg.retention.as_secs())),
        };
        self.store(cx, ia.gfid, r).await?;
        tracing::info!(gfid = %ia.gfid, until = r.until, "WORM: file committed");
        Ok(r)
    }

    /// The retention of a regular file under file-level WORM, committing it first if it has
    /// been idle for the auto-commit period. `None`: not committed.
    async fn retention(&self, cx: &Cx, ia: &Iatt) -> FopResult<Option<Retention>> {
        if !self.cfg.file_level || !guarded(ia) {
            return Ok(None);
        }
        if let Some(raw) = self.xattr(cx, ia.gfid, XATTR_WORM).await? {
            return Ok(Some(Retention::decode(&raw)));
        }
        let idle = self.cfg.auto_commit.as_secs();
        let mtime = u64::try_from(ia.mtime.sec).unwrap_or(0);
        if !self.cfg.auto_commit.is_zero()
            && now().saturating_sub(mtime) >= idle
            && !self.is_fresh(ia.gfid)
        {
            return self.commit(cx, ia, None).await.map(Some);
        }
        Ok(None)
    }

    async fn held(&self, cx: &Cx, gfid: Gfid) -> FopResult<bool> {
        Ok(self
            .xattr(cx, gfid, LEGAL_HOLD)
            .await?
            .is_some_and(|v| v.as_slice() != b"0"))
    }

    /// Refuses a change to the contents or the name of `ia` (`EROFS`).
    async fn check_change(&self, cx: &Cx, ia: &Iatt, what: &str) -> FopResult<()> {
        if internal(cx) || !guarded(ia) {
            return Ok(());
        }
        if self.cfg.volume && !self.is_fresh(ia.gfid) {
            return Err(erofs(what, "the volume is WORM and the file is written"));
        }
        if let Some(r) = self.retention(cx, ia).await? {
            return Err(erofs(what, describe(&r)));
        }
        Ok(())
    }

    /// Refuses a change of metadata of `ia` (`EPERM`).
    async fn check_meta(&self, cx: &Cx, ia: &Iatt, what: &str) -> FopResult<()> {
        self.check_change(cx, ia, what)
            .await
            .map_err(|e| FopError::new(libc::EPERM, e.msg))
    }

    /// Refuses removing `ia` (or renaming over it).
    async fn check_remove(&self, cx: &Cx, ia: &Iatt, xdata: &Xdata, what: &str) -> FopResult<()> {
        if !guarded(ia) {
            return Ok(());
        }
        if internal(cx) && xdata.get(MIGRATED_KEY).is_some() {
            return Ok(());
        }
        if self.cfg.volume && !self.is_fresh(ia.gfid) {
            return Err(erofs(what, "the volume is WORM"));
        }
        if !self.cfg.file_level {
            return Ok(());
        }
        if self.held(cx, ia.gfid).await? {
            return Err(erofs(what, "the file is under legal hold"));
        }
        if let Some(r) = self.retention(cx, ia).await? {
            if now() < r.until {
                return Err(erofs(what, describe(&r)));
            }
            if !self.cfg.deletable {
                return Err(erofs(
                    what,
                    "the file is WORM and worm-files-deletable is off",
                ));
            }
        }
        Ok(())
    }

    async fn entry_iatt(&self, cx: &Cx, loc: &Loc) -> FopResult<Option<Iatt>> {
        match self.child()?.lookup(cx, loc.clone(), Xdata::new()).await {
            Ok(e) => Ok(Some(e.iatt)),
            Err(e) if e.errno == libc::ENOENT => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `setxattr` of [`RETAIN_UNTIL`]: commit with that date, or move the date.
    async fn set_retention(&self, cx: &Cx, target: &Target, value: &[u8]) -> FopResult<()> {
        if !self.cfg.file_level {
            return Err(FopError::new(
                libc::EOPNOTSUPP,
                "retention dates need features.worm-file-level on",
            ));
        }
        let until: u64 = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                FopError::invalid(format!(
                    "{RETAIN_UNTIL} takes a date in Unix seconds, not {:?}",
                    String::from_utf8_lossy(value)
                ))
            })?;
        let ia = self.iatt(cx, target).await?;
        if !guarded(&ia) {
            return Err(FopError::invalid(
                "only regular files have a retention date",
            ));
        }
        match self.retention(cx, &ia).await? {
            None => self.commit(cx, &ia, Some(until)).await.map(|_| ()),
            Some(r) if self.cfg.enterprise && until < r.until => Err(eperm(
                "shortening a retention",
                "retention-mode is enterprise: a retention date can only move later",
            )),
            Some(r) => {
                tracing::info!(gfid = %ia.gfid, from = r.until, to = until, "WORM: retention date changed");
                self.store(cx, ia.gfid, Retention { until, ..r }).await
            }
        }
    }
}

fn describe(r: &Retention) -> String {
    if r.until == u64::MAX {
        "the file is WORM-retained (state in an unknown format: kept forever)".to_string()
    } else if now() < r.until {
        format!("the file is WORM-retained until {} (Unix time)", r.until)
    } else {
        format!(
            "the file is WORM (retention ended at {} Unix time)",
            r.until
        )
    }
}

#[async_trait]
impl Translator for Worm {
    crate::xlator_base!();

    async fn open(&self, cx: &Cx, loc: Loc, flags: i32, fd: Fd, xdata: Xdata) -> FopResult<()> {
        if !self.off() && writes(flags) {
            let ia = self.iatt(cx, &Target::Loc(loc.clone())).await?;
            self.check_change(cx, &ia, "open for writing").await?;
        }
        self.child()?.open(cx, loc, flags, fd, xdata).await
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
        if self.off() {
            return self
                .child()?
                .create(cx, loc, flags, mode, umask, fd, xdata)
                .await;
        }
        // Without O_EXCL an existing file is opened: the same rules as open.
        let existing = if flags & libc::O_EXCL == 0 {
            let (parent, name) = loc.parent_and_name()?;
            self.entry_iatt(cx, &Loc::entry(parent, name)).await?
        } else {
            None
        };
        if let Some(ia) = &existing
            && writes(flags)
        {
            self.check_change(cx, ia, "open for writing").await?;
        }
        let e = self
            .child()?
            .create(cx, loc, flags, mode, umask, fd.clone(), xdata)
            .await?;
        if self.cfg.volume && existing.is_none() && guarded(&e.iatt) {
            if let Ok(mut f) = self.fresh.lock() {
                *f.entry(e.iatt.gfid).or_default() += 1;
            }
            fd.set_ctx(FD_KEY, Arc::new(Creator));
        }
        Ok(e)
    }

    async fn release(&self, cx: &Cx, fd: Fd) -> FopResult<()> {
        if fd.ctx::<Creator>(FD_KEY).is_some()
            && let Ok(mut f) = self.fresh.lock()
            && let Some(n) = f.get_mut(&fd.gfid())
        {
            *n -= 1;
            if *n == 0 {
                f.remove(&fd.gfid());
            }
        }
        self.child()?.release(cx, fd).await
    }

    async fn write(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        data: Payload,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        if !self.off() {
            let ia = self.iatt(cx, &Target::Fd(fd.clone())).await?;
            self.check_change(cx, &ia, "write").await?;
        }
        self.child()?.write(cx, fd, offset, data, xdata).await
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
        if !self.off() {
            let ia = self.iatt(cx, &Target::Fd(fd.clone())).await?;
            self.check_change(cx, &ia, "fallocate").await?;
        }
        self.child()?
            .fallocate(cx, fd, mode, offset, len, xdata)
            .await
    }

    async fn truncate(&self, cx: &Cx, target: Target, size: u64, xdata: Xdata) -> FopResult<Iatt> {
        if !self.off() {
            let ia = self.iatt(cx, &target).await?;
            self.check_change(cx, &ia, "truncate").await?;
        }
        self.child()?.truncate(cx, target, size, xdata).await
    }

    async fn setattr(
        &self,
        cx: &Cx,
        target: Target,
        attr: SetAttr,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        if self.off() || internal(cx) {
            return self.child()?.setattr(cx, target, attr, xdata).await;
        }
        if attr
            .perm
            .is_some_and(|p| p & 0o7777 == crate::cluster::dht::LINKTO_MODE)
        {
            // It would make the file look like a pointer, which WORM does not guard.
            return Err(eperm(
                "chmod 01000",
                "that mode is reserved for distribute's pointers on a WORM volume",
            ));
        }
        let ia = self.iatt(cx, &target).await?;
        if !guarded(&ia) {
            return self.child()?.setattr(cx, target, attr, xdata).await;
        }
        // Only an access time, or a mode that is already the file's, changes nothing
        // protected.
        let harmless = attr.uid.is_none_or(|u| u == ia.uid)
            && attr.gid.is_none_or(|g| g == ia.gid)
            && attr.mtime.is_none()
            && attr.perm.is_none_or(|p| p & 0o7777 == ia.perm & 0o7777);
        if !harmless {
            self.check_meta(cx, &ia, "change the attributes").await?;
        }
        let commits = self.cfg.file_level
            && attr.perm.is_some_and(|p| p & 0o222 == 0)
            && ia.perm & 0o222 != 0;
        let out = self.child()?.setattr(cx, target, attr, xdata).await?;
        if commits && self.retention(cx, &ia).await?.is_none() {
            self.commit(cx, &ia, None).await?;
        }
        Ok(out)
    }

    async fn unlink(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<()> {
        if !self.off()
            && let Some(ia) = self.entry_iatt(cx, &loc).await?
        {
            self.check_remove(cx, &ia, &xdata, "remove").await?;
        }
        self.child()?.unlink(cx, loc, xdata).await
    }

    async fn rename(&self, cx: &Cx, old: Loc, new: Loc, flags: u32, xdata: Xdata) -> FopResult<()> {
        if !self.off() {
            if let Some(ia) = self.entry_iatt(cx, &old).await? {
                self.check_change(cx, &ia, "rename").await?;
                if self.cfg.file_level
                    && guarded(&ia)
                    && !internal(cx)
                    && self.held(cx, ia.gfid).await?
                {
                    return Err(erofs("rename", "the file is under legal hold"));
                }
            }
            if let Some(ia) = self.entry_iatt(cx, &new).await? {
                self.check_remove(cx, &ia, &xdata, "rename over").await?;
            }
        }
        self.child()?.rename(cx, old, new, flags, xdata).await
    }

    async fn setxattr(
        &self,
        cx: &Cx,
        target: Target,
        xattrs: Xdata,
        flags: i32,
        xdata: Xdata,
    ) -> FopResult<()> {
        if xattrs.get(XATTR_WORM).is_some() && !internal(cx) {
            return Err(eperm(XATTR_WORM, "the retention state is set by WORM only"));
        }
        if let Some(v) = xattrs.get(RETAIN_UNTIL) {
            if xattrs.iter().count() != 1 {
                return Err(FopError::invalid(format!(
                    "{RETAIN_UNTIL} is set on its own"
                )));
            }
            return self.set_retention(cx, &target, v).await;
        }
        let hold_only = xattrs.iter().count() == 1 && xattrs.get(LEGAL_HOLD).is_some();
        if !self.off() && !hold_only {
            let ia = self.iatt(cx, &target).await?;
            self.check_meta(cx, &ia, "set an xattr").await?;
        }
        self.child()?
            .setxattr(cx, target, xattrs, flags, xdata)
            .await
    }

    async fn removexattr(
        &self,
        cx: &Cx,
        target: Target,
        name: String,
        xdata: Xdata,
    ) -> FopResult<()> {
        if (name == XATTR_WORM || name == RETAIN_UNTIL) && !internal(cx) {
            return Err(eperm(&name, "a retention cannot be removed"));
        }
        if !self.off() && name != LEGAL_HOLD {
            let ia = self.iatt(cx, &target).await?;
            self.check_meta(cx, &ia, "remove an xattr").await?;
        }
        self.child()?.removexattr(cx, target, name, xdata).await
    }

    async fn getxattr(
        &self,
        cx: &Cx,
        target: Target,
        name: Option<String>,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        if name.as_deref() == Some(RETAIN_UNTIL) {
            let ia = self.iatt(cx, &target).await?;
            return match self.retention(cx, &ia).await? {
                Some(r) => {
                    let mut x = Xdata::new();
                    x.set(RETAIN_UNTIL, r.until.to_string().into_bytes());
                    Ok(x)
                }
                None => Err(FopError::new(
                    libc::ENODATA,
                    "the file is not committed: it has no retention date",
                )),
            };
        }
        self.child()?.getxattr(cx, target, name, xdata).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::conformance;

    #[tokio::test]
    async fn with_both_modes_off_every_fop_passes_through() {
        conformance(|child| Arc::new(Worm::new("worm", vec![child], WormConfig::default()))).await;
    }

    #[test]
    fn retention_round_trips_and_unknown_formats_are_kept_forever() {
        let r = Retention {
            committed_at: 1_700_000_000,
            until: 1_900_000_000,
        };
        assert_eq!(r.encode(), b"1:1700000000:1900000000");
        assert_eq!(Retention::decode(&r.encode()), r);
        for bad in [
            &b""[..],
            b"2:1:2",
            b"1:1",
            b"1:x:2",
            b"1:1:2:3",
            b"\xff\xfe",
        ] {
            assert_eq!(
                Retention::decode(bad).until,
                u64::MAX,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn write_flags_are_recognised() {
        assert!(!writes(libc::O_RDONLY));
        assert!(writes(libc::O_WRONLY));
        assert!(writes(libc::O_RDWR));
        assert!(writes(libc::O_RDONLY | libc::O_TRUNC));
        assert!(writes(libc::O_RDONLY | libc::O_APPEND));
    }
}
