//! Self-heal: making every copy of one inode whole again.
//!
//! For an inode (found in a brick's index, or by a lookup that saw blame), heal:
//! 1. takes the same locks writers take (the inode lock; the directory's entry lock for a
//!    directory), so no change runs meanwhile;
//! 2. reads every copy's replication counters and decides, per kind (data, metadata,
//!    entries): *sources* are copies no other copy blames, *sinks* are copies some source
//!    blames. Copies that blame each other with no source left are a split-brain: nothing
//!    is copied unless a policy (`favorite-child-policy`, or the operator's choice) picks a
//!    source;
//! 3. heals entries (a directory: names missing on a sink are created with the same gfid,
//!    contents and owner; names a sink kept after they were deleted are removed), then data
//!    (contents copied, holes kept), then metadata (mode, owner, times, user xattrs);
//! 4. subtracts from the counters exactly what it saw. Counters are additive, so blame added
//!    by a change that raced with heal survives it.
//!
//! A dirty mark with no blame belongs to a change in flight (an open file) and is left to its
//! owner, unless the caller says the mark is stale (its index entry is old): then the copies
//! are compared and, if they differ, the newest (or biggest, by policy) is taken as source.

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Afr;
use super::txn::{self, pending_key};
use crate::error::{FopError, FopResult};
use crate::features::bitrot::{
    self, HASH_KEY, SCRUB_KEY, ScrubReply, Signature, Verdict, XATTR_BAD, XATTR_SIGNATURE,
};
use crate::features::index::{
    AFR_PREFIX, DATA, ENTRY, METADATA, XATTR_DIRTY, counters, read_counters,
};
use crate::types::*;
use crate::xlator::XlatorRef;

/// Lock domain heal shares with writers.
const DOMAIN: &str = txn::DOMAIN;

/// How a split-brain may be settled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolve {
    /// Leave it (report it).
    None,
    /// The biggest copy wins (data).
    BiggerFile,
    /// The most recently modified copy wins.
    LatestMtime,
    /// The contents most copies agree on win.
    Majority,
    /// The copy on this child (index) wins.
    Source(usize),
}

/// What heal did to one inode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealReport {
    /// Data copied to this many copies.
    pub data: usize,
    /// Metadata set on this many copies.
    pub metadata: usize,
    /// Names created or removed on sinks.
    pub entries: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Split-brain found and not resolved (what and why).
    pub split_brain: Option<String>,
    /// Nothing was pending any more.
    pub clean: bool,
    /// Inodes met in a directory that were healed too.
    pub children: Vec<Gfid>,
    /// A copy damaged (found by a scrub) that could not be rebuilt: no other copy verifies.
    #[serde(default)]
    pub corrupt: Option<String>,
}

/// One copy as heal sees it.
#[derive(Clone, Debug)]
struct Copy {
    iatt: Iatt,
    dirty: [i64; 3],
    /// Counter of changes child j missed, recorded here (keyed by child index).
    blame: HashMap<usize, [i64; 3]>,
    /// A scrub found this copy damaged.
    bad: bool,
    /// Its bitrot signature.
    signature: Option<Signature>,
}

fn kind_index(kind: u8) -> usize {
    match kind {
        DATA => 0,
        METADATA => 1,
        _ => 2,
    }
}

/// Throttle for heal's data copies.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: u64,
    window: std::sync::Mutex<(Instant, u64)>,
}

impl Throttle {
    /// At most `bytes_per_sec` (0: no limit).
    pub fn new(bytes_per_sec: u64) -> Throttle {
        Throttle {
            bytes_per_sec,
            window: std::sync::Mutex::new((Instant::now(), 0)),
        }
    }

    /// Waits as needed before copying `n` more bytes.
    pub async fn take(&self, n: u64) {
        if self.bytes_per_sec == 0 {
            return;
        }
        // Paced: the bytes taken since `origin` are due at `origin + bytes / rate`; a caller
        // ahead of that waits. After a pause (more than a second behind) pacing starts
        // afresh, so idle time is not saved up for a burst.
        let wait = match self.window.lock() {
            Ok(mut w) => {
                let now = Instant::now();
                let due = w.0 + Duration::from_secs_f64(w.1 as f64 / self.bytes_per_sec as f64);
                if due + Duration::from_secs(1) < now {
                    *w = (now, n);
                    Duration::ZERO
                } else {
                    w.1 += n;
                    due.saturating_duration_since(now)
                }
            }
            Err(_) => Duration::ZERO,
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Afr {
    fn child_ref(&self, i: usize) -> FopResult<&XlatorRef> {
        self.children
            .get(i)
            .ok_or_else(|| FopError::eio(format!("no child {i}")))
    }

    /// Looks up `gfid` on every up child, with counters.
    async fn survey(&self, cx: &Cx, loc: &Loc) -> HashMap<usize, Copy> {
        let up = self.up_children();
        let mut x = Xdata::new();
        add_lookup_prefix(&mut x, AFR_PREFIX);
        add_lookup_prefix(&mut x, bitrot::PREFIX);
        let results = txn::fan(&self.children, cx, &up, &|_| crate::wire::Request::Lookup {
            loc: loc.clone(),
            xdata: x.clone(),
        })
        .await;
        let mut out = HashMap::new();
        for (i, r) in results {
            let Ok(crate::wire::Reply::Lookup(e)) = r else {
                continue;
            };
            let dirty = e
                .xdata
                .get(XATTR_DIRTY)
                .map(read_counters)
                .unwrap_or([0; 3]);
            let mut blame = HashMap::new();
            for (j, name) in self.names.iter().enumerate() {
                if let Some(v) = e.xdata.get(&pending_key(name)) {
                    blame.insert(j, read_counters(v));
                }
            }
            out.insert(
                i,
                Copy {
                    iatt: e.iatt,
                    dirty,
                    blame,
                    bad: e.xdata.contains(XATTR_BAD),
                    signature: e.xdata.get(XATTR_SIGNATURE).and_then(Signature::decode),
                },
            );
        }
        out
    }

    /// Sources and sinks of one kind among `copies`.
    fn judge_kind(&self, copies: &HashMap<usize, Copy>, kind: u8) -> (Vec<usize>, Vec<usize>) {
        let k = kind_index(kind);
        let eligible = |i: &usize| !(kind == DATA && self.is_arbiter(*i));
        let accused: Vec<usize> = copies
            .keys()
            .copied()
            .filter(|j| {
                copies
                    .iter()
                    .any(|(i, c)| i != j && c.blame.get(j).is_some_and(|v| v[k] > 0))
            })
            .collect();
        let mut sources: Vec<usize> = copies
            .keys()
            .copied()
            .filter(|i| !accused.contains(i))
            .filter(eligible)
            .collect();
        sources.sort_unstable();
        let mut sinks: Vec<usize> = accused.into_iter().filter(eligible).collect();
        sinks.sort_unstable();
        (sources, sinks)
    }

    /// Picks a source among copies when blame gives none (split-brain) or only dirty marks
    /// say something happened.
    async fn pick_by_policy(
        &self,
        cx: &Cx,
        gfid: Gfid,
        copies: &HashMap<usize, Copy>,
        kind: u8,
        policy: &Resolve,
    ) -> Option<usize> {
        let candidates = || {
            copies
                .iter()
                .filter(|(i, _)| !(kind == DATA && self.is_arbiter(**i)))
        };
        match policy {
            Resolve::None => None,
            Resolve::Majority => {
                // Group copies by what they hold; the biggest group wins if it is a majority.
                let mut groups: BTreeMap<(u32, u32, u32, u64), Vec<usize>> = BTreeMap::new();
                for (i, c) in candidates() {
                    let sum = if kind == DATA {
                        self.checksum(cx, gfid, *i).await.unwrap_or(0)
                    } else {
                        0
                    };
                    let key = if kind == DATA {
                        (sum, 0, 0, c.iatt.size)
                    } else {
                        (c.iatt.perm, c.iatt.uid, c.iatt.gid, 0)
                    };
                    groups.entry(key).or_default().push(*i);
                }
                let total: usize = groups.values().map(Vec::len).sum();
                groups
                    .into_values()
                    .max_by_key(Vec::len)
                    .filter(|g| g.len() * 2 > total)
                    .and_then(|g| g.first().copied())
            }
            Resolve::Source(i) => copies.contains_key(i).then_some(*i),
            Resolve::BiggerFile => candidates()
                .max_by_key(|(_, c)| c.iatt.size)
                .map(|(i, _)| *i),
            Resolve::LatestMtime => candidates()
                .max_by_key(|(_, c)| c.iatt.mtime)
                .map(|(i, _)| *i),
        }
    }

    /// Subtracts the counters `copies` showed for `kind`: blame of `healed` on every copy,
    /// the blame a healed copy held against `source` (it now holds the source's contents,
    /// so its old grievances are void), and (when `clear_dirty`) the dirty marks.
    #[allow(clippy::too_many_arguments)]
    async fn clear_counters(
        &self,
        cx: &Cx,
        gfid: Gfid,
        copies: &HashMap<usize, Copy>,
        kind: u8,
        source: usize,
        healed: &[usize],
        clear_dirty: bool,
    ) {
        let k = kind_index(kind);
        for (i, c) in copies {
            let mut x = Xdata::new();
            for (j, v) in &c.blame {
                let settled = healed.contains(j) || (healed.contains(i) && *j == source);
                if settled
                    && v[k] > 0
                    && let Some(name) = self.names.get(*j)
                {
                    x.set(pending_key(name), counters(kind, -v[k]));
                }
            }
            if clear_dirty && c.dirty[k] > 0 {
                x.set(XATTR_DIRTY, counters(kind, -c.dirty[k]));
            }
            if x.is_empty() {
                continue;
            }
            if let Ok(child) = self.child_ref(*i) {
                let _ = child
                    .xattrop(
                        cx,
                        Target::Loc(Loc::inode(gfid)),
                        XattropOp::AddArray64Floor,
                        x,
                        Xdata::new(),
                    )
                    .await;
            }
        }
    }

    /// Heals one inode. `loc` names it (by gfid, or parent and name when it may be missing
    /// on some copies). `stale_dirty`: dirty marks without blame may be settled too.
    pub async fn heal(
        &self,
        loc: Loc,
        policy: &Resolve,
        stale_dirty: bool,
        throttle: &Throttle,
    ) -> FopResult<HealReport> {
        let cx = Cx::internal();
        let probe = self.survey(&cx, &loc).await;
        let Some((_, first)) = probe.iter().next() else {
            return Err(FopError::new(
                libc::ENOENT,
                format!("{loc} is on no brick that is up"),
            ));
        };
        let gfid = first.iatt.gfid;
        let is_dir = first.iatt.kind == FileKind::Dir;
        if let Some((_, other)) = probe.iter().find(|(_, c)| c.iatt.gfid != gfid) {
            return Ok(HealReport {
                split_brain: Some(format!(
                    "{loc}: copies have different gfids ({gfid}, {})",
                    other.iatt.gfid
                )),
                ..HealReport::default()
            });
        }
        let up = self.up_children();
        if up.len() < 2 {
            return Err(FopError::not_connected("heal needs at least two bricks up"));
        }
        // Every up brick has it and no counter is set: nothing to do, no lock needed (an
        // index entry healed meanwhile, for example by its directory's heal).
        let quiet =
            |c: &Copy| !c.bad && c.dirty == [0; 3] && c.blame.values().all(|v| *v == [0; 3]);
        if up.iter().all(|i| probe.get(i).is_some_and(quiet)) {
            // A no-op change of the counters lets each brick's index drop a stale entry.
            for &i in &up {
                let mut x = Xdata::new();
                x.set(XATTR_DIRTY, vec![0u8; 24]);
                if let Ok(child) = self.child_ref(i) {
                    let _ = child
                        .xattrop(
                            &cx,
                            Target::Loc(Loc::inode(gfid)),
                            XattropOp::AddArray64Floor,
                            x,
                            Xdata::new(),
                        )
                        .await;
                }
            }
            return Ok(HealReport {
                clean: true,
                ..HealReport::default()
            });
        }
        // Only dirty marks, and young ones: changes in flight, which their owners settle.
        // Do not take their locks.
        let blamed = probe
            .values()
            .any(|c| c.bad || c.blame.values().any(|v| v.iter().any(|n| *n > 0)));
        if !stale_dirty && !blamed && up.iter().all(|i| probe.contains_key(i)) {
            return Ok(HealReport {
                clean: true,
                ..HealReport::default()
            });
        }
        // Lock like a writer, in brick order, waiting.
        let owner = txn::new_owner();
        let lcx = txn::with_owner(&cx, owner);
        let mut locked = Vec::new();
        for &i in &up {
            let child = self.child_ref(i)?;
            let ok = child
                .inodelk(
                    &lcx,
                    DOMAIN.into(),
                    Target::Loc(Loc::inode(gfid)),
                    LockWait::Wait,
                    Flock::whole(LockType::Write),
                    Xdata::new(),
                )
                .await;
            if ok.is_ok() {
                locked.push(i);
            }
            if is_dir {
                let _ = child
                    .entrylk(
                        &lcx,
                        DOMAIN.into(),
                        Loc::inode(gfid),
                        None,
                        LockWait::Wait,
                        LockType::Write,
                        Xdata::new(),
                    )
                    .await;
            }
        }
        let mut result = self
            .heal_locked(&cx, gfid, is_dir, policy, stale_dirty, throttle)
            .await;
        // A blamed brick that is up but cannot find the object by gfid: its copy is missing
        // (or unreachable), and only its directory's entry heal, which knows the name, can
        // make it. Not clean, so the entry stays and the pass reports why.
        let missing: Vec<&str> = up
            .iter()
            .filter(|i| !probe.contains_key(i))
            .filter(|i| {
                probe
                    .values()
                    .any(|c| c.blame.get(i).is_some_and(|v| v.iter().any(|n| *n > 0)))
            })
            .filter_map(|i| self.names.get(*i).map(String::as_str))
            .collect();
        if result.is_ok() && !missing.is_empty() {
            result = Err(FopError::new(
                libc::EAGAIN,
                format!(
                    "{gfid}: blamed brick(s) {} are up but hold no copy; the entry heal of \
                     its directory makes one",
                    missing.join(", ")
                ),
            ));
        }
        for &i in &locked {
            if let Ok(child) = self.child_ref(i) {
                if is_dir {
                    let _ = child
                        .entrylk(
                            &lcx,
                            DOMAIN.into(),
                            Loc::inode(gfid),
                            None,
                            LockWait::NoWait,
                            LockType::Unlock,
                            Xdata::new(),
                        )
                        .await;
                }
                let _ = child
                    .inodelk(
                        &lcx,
                        DOMAIN.into(),
                        Target::Loc(Loc::inode(gfid)),
                        LockWait::NoWait,
                        Flock::whole(LockType::Unlock),
                        Xdata::new(),
                    )
                    .await;
            }
        }
        result
    }

    async fn heal_locked(
        &self,
        cx: &Cx,
        gfid: Gfid,
        is_dir: bool,
        policy: &Resolve,
        stale_dirty: bool,
        throttle: &Throttle,
    ) -> FopResult<HealReport> {
        let mut copies = self.survey(cx, &Loc::inode(gfid)).await;
        let mut report = HealReport::default();
        let kinds: &[u8] = if is_dir {
            &[ENTRY, METADATA]
        } else {
            &[DATA, METADATA]
        };
        let mut any = false;
        for &kind in kinds {
            let k = kind_index(kind);
            let (mut sources, mut sinks) = self.judge_kind(&copies, kind);
            if kind == DATA && copies.values().any(|c| c.bad) {
                // Damaged copies are rebuilt, only from copies that verify.
                match self
                    .verified_sources(cx, gfid, &copies, &sources, &sinks)
                    .await
                {
                    Ok(verified) => {
                        sources = verified;
                        for (i, c) in &copies {
                            if c.bad && !sinks.contains(i) {
                                sinks.push(*i);
                            }
                        }
                        sinks.sort_unstable();
                    }
                    Err(why) => {
                        tracing::error!(%gfid, "{why}");
                        report.corrupt = Some(why);
                        continue;
                    }
                }
            }
            let dirty_only = sinks.is_empty() && copies.values().any(|c| c.dirty[k] > 0);
            if sources.is_empty() && !sinks.is_empty() {
                // Everyone is blamed: a split-brain, unless a policy settles it.
                let chosen = self.pick_by_policy(cx, gfid, &copies, kind, policy).await;
                if chosen.is_none() && kind == ENTRY {
                    // Names only: every copy gets every name (a conservative merge).
                    any = true;
                    let healed = self
                        .merge_entries(cx, gfid, &copies, throttle, &mut report)
                        .await;
                    let all = healed.len() == copies.len();
                    self.clear_counters(cx, gfid, &copies, kind, usize::MAX, &healed, all)
                        .await;
                    if !healed.is_empty() {
                        self.demote_clear(gfid, &healed);
                    }
                    continue;
                }
                match chosen {
                    Some(s) => {
                        sources = vec![s];
                        sinks = copies
                            .keys()
                            .copied()
                            .filter(|i| *i != s)
                            .filter(|i| !(kind == DATA && self.is_arbiter(*i)))
                            .collect();
                        tracing::warn!(%gfid, kind = %(kind as char), source = s, ?policy, "split-brain resolved by policy");
                    }
                    None => {
                        report.split_brain = Some(format!(
                            "{gfid}: {} split-brain: every copy is blamed by another",
                            match kind {
                                DATA => "data",
                                METADATA => "metadata",
                                _ => "entry",
                            }
                        ));
                        continue;
                    }
                }
            }
            let mut clear_dirty = false;
            if dirty_only {
                if !stale_dirty {
                    // A change in flight; its owner clears the mark.
                    continue;
                }
                clear_dirty = true;
                if kind != ENTRY && !self.copies_agree(cx, gfid, &copies, kind).await {
                    let chosen = match self.pick_by_policy(cx, gfid, &copies, kind, policy).await {
                        Some(s) => Some(s),
                        None => {
                            self.pick_by_policy(cx, gfid, &copies, kind, &Resolve::LatestMtime)
                                .await
                        }
                    };
                    if let Some(s) = chosen {
                        sources = vec![s];
                        sinks = copies
                            .keys()
                            .copied()
                            .filter(|i| *i != s)
                            .filter(|i| !(kind == DATA && self.is_arbiter(*i)))
                            .collect();
                        // No counter blames these sinks yet, so a lookup would judge them
                        // good while they are rewritten (a data heal empties a copy and
                        // fills it again). Blame them on the source first; the blame is
                        // settled with the others once they are healed.
                        self.blame_before_heal(gfid, kind, s, &sinks, &mut copies)
                            .await;
                    }
                }
            }
            if sinks.is_empty() && !clear_dirty {
                continue;
            }
            any = true;
            let Some(&source) = sources.first() else {
                continue;
            };
            let mut healed = Vec::new();
            for &sink in &sinks {
                let r = match kind {
                    DATA => match self.heal_data(cx, gfid, source, sink, throttle).await {
                        Ok(n) => {
                            report.data += 1;
                            report.bytes += n;
                            if copies.get(&sink).is_some_and(|c| c.bad) {
                                self.unmark_bad(cx, gfid, sink).await
                            } else {
                                Ok(())
                            }
                        }
                        Err(e) => Err(e),
                    },
                    METADATA => self
                        .heal_metadata(cx, gfid, &copies, source, sink)
                        .await
                        .map(|()| report.metadata += 1),
                    _ => {
                        self.heal_entries(cx, gfid, source, sink, throttle, &mut report)
                            .await
                    }
                };
                match r {
                    Ok(()) => healed.push(sink),
                    Err(e) => {
                        tracing::warn!(%gfid, sink, error = %e, "heal of one copy failed; it stays marked")
                    }
                }
            }
            // Once every sink is healed the copies agree: the marks of that kind are settled
            // too. A mark whose owner clears it later meets a counter already at zero; clears
            // are floored there (`AddArray64Floor`), so no counter drifts below zero.
            self.clear_counters(
                cx,
                gfid,
                &copies,
                kind,
                source,
                &healed,
                healed.len() == sinks.len(),
            )
            .await;
            if !healed.is_empty() {
                self.demote_clear(gfid, &healed);
            }
        }
        // Metadata after data: copying data changed the sinks' times.
        if report.data > 0 {
            let again = self.survey(cx, &Loc::inode(gfid)).await;
            if let Some(&source) = self.judge_kind(&again, DATA).0.first() {
                for &i in again.keys().filter(|i| **i != source) {
                    let _ = self.heal_metadata(cx, gfid, &again, source, i).await;
                }
            }
        }
        report.clean = !any && report.split_brain.is_none() && report.corrupt.is_none();
        Ok(report)
    }

    /// The sources a damaged copy may be rebuilt from: copies not damaged themselves that
    /// verify against their own signature, or that hold exactly what a damaged copy's
    /// signature describes. When the damaged copy is also blamed (it missed changes, so its
    /// signature is of older contents), blame's sources serve unless they are found damaged.
    /// Each candidate is checked on its own brick (a scrub of that copy). No source: the
    /// reason, to be reported.
    async fn verified_sources(
        &self,
        cx: &Cx,
        gfid: Gfid,
        copies: &HashMap<usize, Copy>,
        sources: &[usize],
        sinks: &[usize],
    ) -> Result<Vec<usize>, String> {
        let expected: Vec<u128> = copies
            .values()
            .filter(|c| c.bad)
            .filter_map(|c| c.signature.map(|s| s.hash))
            .collect();
        let blamed_too = copies.iter().any(|(i, c)| c.bad && sinks.contains(i));
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for &i in sources {
            if copies.get(&i).is_none_or(|c| c.bad) {
                continue;
            }
            let Ok(child) = self.child_ref(i) else {
                continue;
            };
            let mut want = Xdata::new();
            want.set(HASH_KEY, vec![1]);
            let reply = child
                .getxattr(
                    cx,
                    Target::Loc(Loc::inode(gfid)),
                    Some(SCRUB_KEY.to_string()),
                    want,
                )
                .await
                .ok()
                .and_then(|x| x.get(SCRUB_KEY).and_then(ScrubReply::decode));
            let name = self.names.get(i).map_or("?", String::as_str);
            let Some(r) = reply else {
                seen.push(format!("{name}: no answer"));
                continue;
            };
            seen.push(format!("{name}: {}", r.verdict.as_str()));
            let matches = r.hash.is_some_and(|h| expected.contains(&h));
            let ok = match r.verdict {
                Verdict::Ok => true,
                Verdict::Corrupt | Verdict::Bad => false,
                _ => matches || blamed_too,
            };
            if ok {
                out.push(i);
            }
        }
        if out.is_empty() {
            return Err(format!(
                "{gfid}: a copy failed its bitrot check and no other copy verifies ({}); \
                 the file is not repaired and its damaged copies serve no reads",
                if !seen.is_empty() {
                    seen.join(", ")
                } else if copies.values().all(|c| c.bad) {
                    "every copy is marked damaged".to_string()
                } else {
                    "no other copy is up".to_string()
                }
            ));
        }
        Ok(out)
    }

    /// Removes the damaged mark of a copy heal has rewritten.
    async fn unmark_bad(&self, cx: &Cx, gfid: Gfid, i: usize) -> FopResult<()> {
        self.child_ref(i)?
            .removexattr(
                cx,
                Target::Loc(Loc::inode(gfid)),
                XATTR_BAD.to_string(),
                Xdata::new(),
            )
            .await
            .or_else(|e| {
                if e.errno == libc::ENODATA {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        tracing::info!(%gfid, brick = %self.names.get(i).map_or("?", String::as_str), "copy that failed its bitrot check rebuilt from a verified copy");
        Ok(())
    }

    /// Records on `source` that `sinks` missed a change of `kind`, and notes it in `copies`
    /// so that [`Self::clear_counters`] takes it back once they are healed.
    async fn blame_before_heal(
        &self,
        gfid: Gfid,
        kind: u8,
        source: usize,
        sinks: &[usize],
        copies: &mut HashMap<usize, Copy>,
    ) {
        if sinks.is_empty() {
            return;
        }
        txn::record_blame(&self.children, &self.names, gfid, kind, &[source], sinks).await;
        self.demote(gfid, sinks);
        if let Some(c) = copies.get_mut(&source) {
            let k = kind_index(kind);
            for &j in sinks {
                if let Some(v) = c.blame.entry(j).or_insert([0; 3]).get_mut(k) {
                    *v += 1;
                }
            }
        }
    }

    /// Takes back one data blame of `sink` recorded on `source` (floored at zero).
    async fn unblame(&self, cx: &Cx, gfid: Gfid, source: usize, sink: usize) {
        let (Ok(child), Some(name)) = (self.child_ref(source), self.names.get(sink)) else {
            return;
        };
        let mut x = Xdata::new();
        x.set(pending_key(name), counters(DATA, -1));
        let _ = child
            .xattrop(
                cx,
                Target::Loc(Loc::inode(gfid)),
                XattropOp::AddArray64Floor,
                x,
                Xdata::new(),
            )
            .await;
    }

    /// Marks healed copies good again in the inode cache.
    fn demote_clear(&self, gfid: Gfid, healed: &[usize]) {
        if let Ok(mut m) = self.inodes.lock()
            && let Some(e) = m.get_mut(&gfid)
        {
            for &h in healed {
                e.good |= 1 << h;
            }
            e.split_brain = false;
        }
    }

    /// True when every data copy has the same size and contents (metadata: the same mode,
    /// owner and times).
    async fn copies_agree(
        &self,
        cx: &Cx,
        gfid: Gfid,
        copies: &HashMap<usize, Copy>,
        kind: u8,
    ) -> bool {
        let data: Vec<(&usize, &Copy)> = copies
            .iter()
            .filter(|(i, _)| !self.is_arbiter(**i))
            .collect();
        if kind == METADATA {
            let key = |c: &Copy| (c.iatt.perm, c.iatt.uid, c.iatt.gid);
            return data.windows(2).all(|w| key(w[0].1) == key(w[1].1));
        }
        if data
            .windows(2)
            .any(|w| w[0].1.iatt.size != w[1].1.iatt.size)
        {
            return false;
        }
        let mut sums = Vec::new();
        for (i, _) in &data {
            match self.checksum(cx, gfid, **i).await {
                Ok(s) => sums.push(s),
                Err(_) => return false,
            }
        }
        sums.windows(2).all(|w| w[0] == w[1])
    }

    async fn checksum(&self, cx: &Cx, gfid: Gfid, i: usize) -> FopResult<u32> {
        let child = self.child_ref(i)?;
        let fd = Fd::new(gfid, libc::O_RDONLY);
        child
            .open(
                cx,
                Loc::inode(gfid),
                libc::O_RDONLY,
                fd.clone(),
                Xdata::new(),
            )
            .await?;
        let mut h = crc32fast::Hasher::new();
        let mut off = 0u64;
        let r = loop {
            match child.read(cx, fd.clone(), off, 1 << 20, Xdata::new()).await {
                Ok(p) if p.is_empty() => break Ok(h.clone().finalize()),
                Ok(p) => {
                    h.update(p.bytes());
                    off += p.len() as u64;
                }
                Err(e) => break Err(e),
            }
        };
        let _ = child.release(cx, fd).await;
        r
    }

    /// Copies the contents of `gfid` from `source` to `sink`, keeping holes.
    async fn heal_data(
        &self,
        cx: &Cx,
        gfid: Gfid,
        source: usize,
        sink: usize,
        throttle: &Throttle,
    ) -> FopResult<u64> {
        let (src, dst) = (self.child_ref(source)?, self.child_ref(sink)?);
        let rfd = Fd::new(gfid, libc::O_RDONLY);
        src.open(
            cx,
            Loc::inode(gfid),
            libc::O_RDONLY,
            rfd.clone(),
            Xdata::new(),
        )
        .await?;
        let wfd = Fd::new(gfid, libc::O_WRONLY);
        if let Err(e) = dst
            .open(
                cx,
                Loc::inode(gfid),
                libc::O_WRONLY,
                wfd.clone(),
                rewrite_xdata(),
            )
            .await
        {
            let _ = src.release(cx, rfd).await;
            return Err(e);
        }
        let r = self.copy_contents(cx, src, dst, &rfd, &wfd, throttle).await;
        let r = finish_rewrite(cx, dst, &wfd, r).await;
        let _ = src.release(cx, rfd).await;
        let _ = dst.release(cx, wfd).await;
        r
    }

    async fn copy_contents(
        &self,
        cx: &Cx,
        src: &XlatorRef,
        dst: &XlatorRef,
        rfd: &Fd,
        wfd: &Fd,
        throttle: &Throttle,
    ) -> FopResult<u64> {
        let size = src
            .stat(cx, Target::Fd(rfd.clone()), Xdata::new())
            .await?
            .size;
        dst.truncate(cx, Target::Fd(wfd.clone()), 0, Xdata::new())
            .await?;
        dst.truncate(cx, Target::Fd(wfd.clone()), size, Xdata::new())
            .await?;
        let mut copied = 0u64;
        let mut pos = 0u64;
        while pos < size {
            // Skip holes: the sink was truncated to zeros already.
            let data_at = match src
                .lseek(cx, rfd.clone(), pos, Whence::Data, Xdata::new())
                .await
            {
                Ok(d) => d,
                Err(e) if e.errno == libc::ENXIO => break,
                Err(_) => pos,
            };
            let hole_at = src
                .lseek(cx, rfd.clone(), data_at, Whence::Hole, Xdata::new())
                .await
                .unwrap_or(size)
                .min(size);
            let mut off = data_at;
            while off < hole_at {
                let n = (hole_at - off).min(1 << 20) as u32;
                let chunk = src.read(cx, rfd.clone(), off, n, Xdata::new()).await?;
                if chunk.is_empty() {
                    break;
                }
                throttle.take(chunk.len() as u64).await;
                let len = chunk.len() as u64;
                dst.write(cx, wfd.clone(), off, chunk, Xdata::new()).await?;
                off += len;
                copied += len;
            }
            pos = hole_at.max(data_at + 1);
        }
        dst.fsync(cx, wfd.clone(), false, Xdata::new()).await?;
        Ok(copied)
    }

    /// Copies mode, owner, times and user xattrs of `gfid` from `source` to `sink`.
    async fn heal_metadata(
        &self,
        cx: &Cx,
        gfid: Gfid,
        copies: &HashMap<usize, Copy>,
        source: usize,
        sink: usize,
    ) -> FopResult<()> {
        let Some(src) = copies.get(&source) else {
            return Ok(());
        };
        let (s, d) = (self.child_ref(source)?, self.child_ref(sink)?);
        let t = Target::Loc(Loc::inode(gfid));
        let is_link = src.iatt.kind == FileKind::Symlink;
        let attr = SetAttr {
            perm: (!is_link).then_some(src.iatt.perm),
            uid: Some(src.iatt.uid),
            gid: Some(src.iatt.gid),
            atime: Some(TimeSet::At(src.iatt.atime)),
            mtime: Some(TimeSet::At(src.iatt.mtime)),
        };
        d.setattr(cx, t.clone(), attr, Xdata::new()).await?;
        if is_link {
            return Ok(());
        }
        let want = user_xattrs(
            s.getxattr(cx, t.clone(), None, Xdata::new())
                .await
                .unwrap_or_default(),
        );
        let have = user_xattrs(
            d.getxattr(cx, t.clone(), None, Xdata::new())
                .await
                .unwrap_or_default(),
        );
        for (k, v) in &want {
            if have.get(k) != Some(v) {
                let mut x = Xdata::new();
                x.set(k.clone(), v.clone());
                d.setxattr(cx, t.clone(), x, 0, Xdata::new()).await?;
            }
        }
        for k in have.keys().filter(|k| !want.contains_key(*k)) {
            let _ = d.removexattr(cx, t.clone(), k.clone(), Xdata::new()).await;
        }
        Ok(())
    }

    /// Merges directory `dir`, whose copies all blame each other for entries (each missed
    /// a name change another made, as when a change reached only some bricks while others
    /// were away): every name some copy holds is created, with its contents, on the copies
    /// that lack it, and nothing is removed. A name deleted on one side and kept on another
    /// comes back, which loses nothing; a name that is a different object on different
    /// copies is left as it is and reported. Returns the copies that now hold every name.
    async fn merge_entries(
        &self,
        cx: &Cx,
        dir: Gfid,
        copies: &HashMap<usize, Copy>,
        throttle: &Throttle,
        report: &mut HealReport,
    ) -> Vec<usize> {
        let mut order: Vec<usize> = copies.keys().copied().collect();
        // Names come from a data brick when one has them.
        order.sort_by_key(|i| (self.is_arbiter(*i), *i));
        let mut lists = Vec::new();
        for &i in &order {
            let listed = match self.child_ref(i) {
                Ok(c) => list_dir(c, cx, dir).await,
                Err(e) => Err(e),
            };
            match listed {
                Ok(l) => lists.push((i, l)),
                Err(e) => {
                    tracing::warn!(%dir, brick = i, error = %e, "cannot list a copy to merge it")
                }
            }
        }
        // Every name, with the first copy holding it; names that differ between copies.
        let mut union: BTreeMap<&str, (usize, &DirEntry)> = BTreeMap::new();
        let mut conflicts = Vec::new();
        for (i, l) in &lists {
            for (name, e) in l {
                match union.get(name.as_str()) {
                    Some((_, u)) if u.gfid != e.gfid => conflicts.push(name.as_str()),
                    Some(_) => {}
                    None => {
                        union.insert(name.as_str(), (*i, e));
                    }
                }
            }
        }
        conflicts.sort_unstable();
        conflicts.dedup();
        let mut healed = Vec::new();
        for (sink, have) in &lists {
            let mut whole = true;
            for (name, (source, e)) in &union {
                if have.contains_key(*name) || conflicts.contains(name) {
                    continue;
                }
                if let Err(err) = self
                    .create_copy(cx, dir, name, e, *source, *sink, throttle, report)
                    .await
                {
                    tracing::warn!(%dir, name, sink, error = %err, "merging a directory: a name could not be created");
                    whole = false;
                }
            }
            if whole && conflicts.is_empty() {
                healed.push(*sink);
            }
        }
        if conflicts.is_empty() {
            tracing::info!(%dir, names = union.len(), "directory copies merged");
        } else {
            report.split_brain = Some(format!(
                "{dir}: entry split-brain: {} name(s) are different objects on different copies: {}",
                conflicts.len(),
                conflicts
                    .iter()
                    .take(5)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        healed
    }

    /// Makes directory `dir` on `sink` hold the same names as on `source`.
    async fn heal_entries(
        &self,
        cx: &Cx,
        dir: Gfid,
        source: usize,
        sink: usize,
        throttle: &Throttle,
        report: &mut HealReport,
    ) -> FopResult<()> {
        let (src, dst) = (self.child_ref(source)?, self.child_ref(sink)?);
        let want = list_dir(src, cx, dir).await?;
        let have = list_dir(dst, cx, dir).await?;
        for (name, e) in &have {
            match want.get(name) {
                Some(w) if w.gfid == e.gfid => {}
                // Deleted while the sink was away, or replaced by another object.
                _ => {
                    remove_tree(dst, cx, dir, name, e).await?;
                    report.entries += 1;
                }
            }
        }
        for (name, e) in &want {
            if have.get(name).is_some_and(|h| h.gfid == e.gfid) {
                continue;
            }
            self.create_copy(cx, dir, name, e, source, sink, throttle, report)
                .await?;
        }
        Ok(())
    }

    /// Creates on `sink` the object `e`, named `name` in `dir`, as it is on `source`: same
    /// gfid, owner, mode, times, xattrs, and contents for a file.
    async fn create_copy(
        &self,
        cx: &Cx,
        dir: Gfid,
        name: &str,
        e: &DirEntry,
        source: usize,
        sink: usize,
        throttle: &Throttle,
        report: &mut HealReport,
    ) -> FopResult<()> {
        let (src, dst) = (self.child_ref(source)?, self.child_ref(sink)?);
        let Some(ia) = &e.iatt else { return Ok(()) };
        let owner = Cx {
            uid: ia.uid,
            gid: ia.gid,
            ..Cx::internal()
        };
        let loc = Loc::entry(dir, name).with_gfid(e.gfid);
        // A hard link of an object the sink already has elsewhere.
        if ia.kind != FileKind::Dir
            && dst
                .stat(cx, Target::Loc(Loc::inode(e.gfid)), Xdata::new())
                .await
                .is_ok()
        {
            dst.link(cx, Loc::inode(e.gfid), Loc::entry(dir, name), Xdata::new())
                .await?;
            report.entries += 1;
            return Ok(());
        }
        match ia.kind {
            FileKind::Dir => {
                dst.mkdir(&owner, loc, ia.perm, 0, Xdata::new()).await?;
                report.children.push(e.gfid);
            }
            FileKind::Symlink => {
                let target = src.readlink(cx, Loc::inode(e.gfid), Xdata::new()).await?;
                dst.symlink(&owner, target, loc, 0, Xdata::new()).await?;
            }
            FileKind::File => {
                // Under the file's own lock (when free) the copy is exact, so the blame its
                // other copies hold against the sink can be settled here and the file is
                // not copied a second time by its own index entry.
                let guard = self.try_lock_file(cx, e.gfid, sink).await;
                // Until its contents are copied the new copy holds zeros. A copy missing
                // from a replaced or wiped brick is not blamed by the others, so blame it
                // now, or a lookup would judge it good meanwhile. Settled below with the
                // rest once the copy is exact, else by the heal of its index entry.
                if !self.is_arbiter(sink) {
                    txn::record_blame(
                        &self.children,
                        &self.names,
                        e.gfid,
                        DATA,
                        &[source],
                        &[sink],
                    )
                    .await;
                    self.demote(e.gfid, &[sink]);
                }
                let before = match &guard {
                    Some(_) => Some(self.survey(cx, &Loc::inode(e.gfid)).await),
                    None => None,
                };
                let wfd = Fd::new(e.gfid, libc::O_WRONLY);
                let made = dst
                    .create(
                        &owner,
                        loc,
                        libc::O_WRONLY | libc::O_EXCL,
                        ia.perm,
                        0,
                        wfd.clone(),
                        // (An arbiter's copy holds no contents to refuse.)
                        if self.is_arbiter(sink) {
                            Xdata::new()
                        } else {
                            rewrite_xdata()
                        },
                    )
                    .await;
                if let Err(err) = made {
                    // Made by another healer meanwhile (or not at all): take back the
                    // blame added above; that healer's own blame covers its copy.
                    if !self.is_arbiter(sink) {
                        self.unblame(cx, e.gfid, source, sink).await;
                    }
                    if let Some(g) = guard {
                        self.unlock_file(cx, e.gfid, g).await;
                    }
                    return Err(err);
                }
                // The arbiter keeps names only: it gets no contents, and gives none (the
                // contents come from a data brick then).
                let content_from = if self.is_arbiter(source) {
                    self.data_holder(cx, e.gfid, sink).await
                } else {
                    Some(source)
                };
                let copied = match content_from.and_then(|i| self.children.get(i)) {
                    Some(src) if !self.is_arbiter(sink) => {
                        let rfd = Fd::new(e.gfid, libc::O_RDONLY);
                        match src
                            .open(
                                cx,
                                Loc::inode(e.gfid),
                                libc::O_RDONLY,
                                rfd.clone(),
                                Xdata::new(),
                            )
                            .await
                        {
                            Ok(()) => {
                                let r =
                                    self.copy_contents(cx, src, dst, &rfd, &wfd, throttle).await;
                                let r = finish_rewrite(cx, dst, &wfd, r).await;
                                let _ = src.release(cx, rfd).await;
                                r
                            }
                            Err(e) => Err(e),
                        }
                    }
                    _ => Ok(0),
                };
                let _ = dst.release(cx, wfd).await;
                let copied = match copied {
                    Ok(n) => n,
                    Err(err) => {
                        if let Some(g) = guard {
                            self.unlock_file(cx, e.gfid, g).await;
                        }
                        return Err(err);
                    }
                };
                report.bytes += copied;
                if !self.is_arbiter(sink) {
                    report.data += 1;
                }
                if let (Some(g), Some(before)) = (guard, before) {
                    if content_from == Some(source) || self.is_arbiter(sink) {
                        self.settle_new_copy(cx, e.gfid, &before, source, sink, ia)
                            .await;
                    }
                    self.unlock_file(cx, e.gfid, g).await;
                }
            }
            other => {
                dst.mknod(
                    &owner,
                    loc,
                    other.mode_bits() | ia.perm,
                    ia.rdev,
                    0,
                    Xdata::new(),
                )
                .await?;
            }
        }
        // Times and xattrs of the new copy.
        let mut copies = HashMap::new();
        copies.insert(
            source,
            Copy {
                iatt: ia.clone(),
                dirty: [0; 3],
                blame: HashMap::new(),
                bad: false,
                signature: None,
            },
        );
        let _ = self.heal_metadata(cx, e.gfid, &copies, source, sink).await;
        report.entries += 1;
        Ok(())
    }

    /// An up data brick other than `sink` that holds `gfid`.
    async fn data_holder(&self, cx: &Cx, gfid: Gfid, sink: usize) -> Option<usize> {
        for i in self.up_children() {
            if i == sink || self.is_arbiter(i) {
                continue;
            }
            let c = self.children.get(i)?;
            if c.stat(cx, Target::Loc(Loc::inode(gfid)), Xdata::new())
                .await
                .is_ok()
            {
                return Some(i);
            }
        }
        None
    }

    /// Takes the inode lock of `gfid` on every up child but `sink` (which has no copy yet),
    /// without waiting: `None` when a writer holds it somewhere.
    async fn try_lock_file(&self, cx: &Cx, gfid: Gfid, sink: usize) -> Option<(Cx, Vec<usize>)> {
        let lcx = txn::with_owner(cx, txn::new_owner());
        let targets: Vec<usize> = self
            .up_children()
            .into_iter()
            .filter(|&i| i != sink)
            .collect();
        let got = futures::future::join_all(targets.iter().map(|&i| {
            let lcx = &lcx;
            async move {
                let ok = match self.children.get(i) {
                    Some(c) => c
                        .inodelk(
                            lcx,
                            DOMAIN.into(),
                            Target::Loc(Loc::inode(gfid)),
                            LockWait::NoWait,
                            Flock::whole(LockType::Write),
                            Xdata::new(),
                        )
                        .await
                        .is_ok(),
                    None => false,
                };
                (i, ok)
            }
        }))
        .await;
        let locked: Vec<usize> = got.iter().filter(|(_, ok)| *ok).map(|(i, _)| *i).collect();
        if locked.len() == targets.len() {
            Some((lcx, locked))
        } else {
            self.unlock_file(cx, gfid, (lcx, locked)).await;
            None
        }
    }

    async fn unlock_file(&self, _cx: &Cx, gfid: Gfid, (lcx, locked): (Cx, Vec<usize>)) {
        futures::future::join_all(locked.iter().map(|&i| {
            let lcx = &lcx;
            async move {
                if let Some(c) = self.children.get(i) {
                    let _ = c
                        .inodelk(
                            lcx,
                            DOMAIN.into(),
                            Target::Loc(Loc::inode(gfid)),
                            LockWait::NoWait,
                            Flock::whole(LockType::Unlock),
                            Xdata::new(),
                        )
                        .await;
                }
            }
        }))
        .await;
    }

    /// After an exact copy of file `gfid` from `source` to `sink` under the file's lock:
    /// if `source` was a good copy for data and metadata (`before`, seen under the lock),
    /// the blame the other copies held against `sink` is settled.
    async fn settle_new_copy(
        &self,
        cx: &Cx,
        gfid: Gfid,
        before: &HashMap<usize, Copy>,
        source: usize,
        sink: usize,
        copied: &Iatt,
    ) {
        let Some(src) = before.get(&source) else {
            return;
        };
        // The source must be a source for both kinds, and unchanged since it was listed.
        if src.iatt.size != copied.size || src.iatt.mtime != copied.mtime {
            return;
        }
        for kind in [DATA, METADATA] {
            let (sources, _) = self.judge_kind(before, kind);
            if !sources.contains(&source) {
                return;
            }
        }
        let Some(name) = self.names.get(sink) else {
            return;
        };
        let key = pending_key(name);
        for (i, c) in before {
            let Some(v) = c.blame.get(&sink) else {
                continue;
            };
            if v[0] <= 0 && v[1] <= 0 {
                continue;
            }
            let mut raw = Vec::with_capacity(24);
            for (k, n) in v.iter().enumerate() {
                let sub = if k < 2 { -(*n).max(0) } else { 0 };
                raw.extend_from_slice(&sub.to_be_bytes());
            }
            let mut x = Xdata::new();
            x.set(key.clone(), raw);
            if let Some(child) = self.children.get(*i) {
                let _ = child
                    .xattrop(
                        cx,
                        Target::Loc(Loc::inode(gfid)),
                        XattropOp::AddArray64Floor,
                        x,
                        Xdata::new(),
                    )
                    .await;
            }
        }
    }

    /// Full heal of one directory: every name some brick has and another lacks is created
    /// where it is missing (a replaced or wiped brick is rebuilt this way; nothing is
    /// deleted without blame), then the directory itself is healed by its counters.
    /// Returns the report, whose `children` are the subdirectories to visit next.
    pub async fn heal_dir_full(
        &self,
        dir: Gfid,
        policy: &Resolve,
        throttle: &Throttle,
    ) -> FopResult<(HealReport, Vec<(Gfid, FileKind)>)> {
        let cx = Cx::internal();
        let up = self.up_children();
        if up.len() < 2 {
            return Err(FopError::not_connected("heal needs at least two bricks up"));
        }
        let owner = txn::new_owner();
        let lcx = txn::with_owner(&cx, owner);
        let mut locked = Vec::new();
        for &i in &up {
            let child = self.child_ref(i)?;
            if child
                .entrylk(
                    &lcx,
                    DOMAIN.into(),
                    Loc::inode(dir),
                    None,
                    LockWait::Wait,
                    LockType::Write,
                    Xdata::new(),
                )
                .await
                .is_ok()
            {
                locked.push(i);
            }
        }
        let mut report = HealReport::default();
        let mut listings: BTreeMap<usize, BTreeMap<String, DirEntry>> = BTreeMap::new();
        for &i in &locked {
            if let Ok(l) = list_dir(self.child_ref(i)?, &cx, dir).await {
                listings.insert(i, l);
            }
        }
        let mut objects: BTreeMap<Gfid, FileKind> = BTreeMap::new();
        let names: std::collections::BTreeSet<String> =
            listings.values().flat_map(|l| l.keys().cloned()).collect();
        for name in names {
            let holders: Vec<(usize, &DirEntry)> = listings
                .iter()
                .filter_map(|(i, l)| l.get(&name).map(|e| (*i, e)))
                .collect();
            let Some(&(source, entry)) = holders
                .iter()
                .find(|(i, _)| !self.is_arbiter(*i))
                .or_else(|| holders.first())
            else {
                continue;
            };
            if holders.iter().any(|(_, e)| e.gfid != entry.gfid) {
                report.split_brain = Some(format!(
                    "{dir}/{name}: bricks hold different files under one name"
                ));
                continue;
            }
            objects.insert(entry.gfid, entry.kind);
            for &sink in listings.keys() {
                if holders.iter().any(|(i, _)| *i == sink) {
                    continue;
                }
                if let Err(e) = self
                    .create_copy(&cx, dir, &name, entry, source, sink, throttle, &mut report)
                    .await
                {
                    tracing::warn!(%dir, %name, sink, error = %e, "full heal could not create a missing entry");
                }
            }
        }
        for &i in &locked {
            if let Ok(child) = self.child_ref(i) {
                let _ = child
                    .entrylk(
                        &lcx,
                        DOMAIN.into(),
                        Loc::inode(dir),
                        None,
                        LockWait::NoWait,
                        LockType::Unlock,
                        Xdata::new(),
                    )
                    .await;
            }
        }
        // Counters of the directory itself and of everything in it.
        let mut all: Vec<(Gfid, FileKind)> = objects.into_iter().collect();
        if let Ok(r) = self.heal(Loc::inode(dir), policy, false, throttle).await {
            merge(&mut report, r);
        }
        for (g, k) in &all {
            if *k != FileKind::Dir
                && let Ok(r) = self.heal(Loc::inode(*g), policy, false, throttle).await
            {
                merge(&mut report, r);
            }
        }
        all.retain(|(_, k)| *k == FileKind::Dir);
        Ok((report, all))
    }
}

/// Adds one report to another.
pub fn merge(into: &mut HealReport, r: HealReport) {
    into.data += r.data;
    into.metadata += r.metadata;
    into.entries += r.entries;
    into.bytes += r.bytes;
    if r.split_brain.is_some() {
        into.split_brain = r.split_brain;
    }
    if r.corrupt.is_some() {
        into.corrupt = r.corrupt;
    }
    into.children.extend(r.children);
}

fn user_xattrs(x: Xdata) -> BTreeMap<String, Bytes> {
    x.iter()
        .filter(|(k, _)| k.starts_with("user."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Every name of a directory on one brick (without `.` and `..`), with attributes.
pub async fn list_dir(
    child: &XlatorRef,
    cx: &Cx,
    dir: Gfid,
) -> FopResult<BTreeMap<String, DirEntry>> {
    let fd = Fd::new(dir, libc::O_RDONLY);
    child
        .opendir(cx, Loc::inode(dir), fd.clone(), Xdata::new())
        .await?;
    let mut out = BTreeMap::new();
    let mut offset = 0;
    let r = loop {
        match child
            .readdir(cx, fd.clone(), offset, 256 * 1024, true, Xdata::new())
            .await
        {
            Ok(batch) if batch.is_empty() => break Ok(()),
            Ok(batch) => {
                for e in batch {
                    offset = e.offset;
                    if e.name != "." && e.name != ".." {
                        out.insert(e.name.clone(), e);
                    }
                }
            }
            Err(e) => break Err(e),
        }
    };
    let _ = child.releasedir(cx, fd).await;
    r.map(|()| out)
}

/// Removes a name from one brick, a directory with everything below it.
async fn remove_tree(
    child: &XlatorRef,
    cx: &Cx,
    parent: Gfid,
    name: &str,
    e: &DirEntry,
) -> FopResult<()> {
    if e.kind == FileKind::Dir {
        let inside = list_dir(child, cx, e.gfid).await?;
        for (n, sub) in &inside {
            Box::pin(remove_tree(child, cx, e.gfid, n, sub)).await?;
        }
        child
            .rmdir(cx, Loc::entry(parent, name), Xdata::new())
            .await
    } else {
        child
            .unlink(cx, Loc::entry(parent, name), Xdata::new())
            .await
    }
}

/// Xdata of the open (or create) of a copy heal rewrites in place: the brick serves no
/// content of it until the copy is whole again ([`crate::types::REWRITE_KEY`]).
fn rewrite_xdata() -> Xdata {
    let mut x = Xdata::new();
    x.set(crate::types::REWRITE_KEY, Vec::new());
    x
}

/// After a copy into `wfd` (opened with [`rewrite_xdata`]): when it succeeded, tells the
/// sink's brick the copy is whole ([`crate::types::REWRITE_DONE_KEY`]); until then, and for
/// good if it failed, the brick serves none of it.
async fn finish_rewrite(
    cx: &Cx,
    dst: &XlatorRef,
    wfd: &Fd,
    copied: FopResult<u64>,
) -> FopResult<u64> {
    let n = copied?;
    let mut x = Xdata::new();
    x.set(crate::types::REWRITE_DONE_KEY, Vec::new());
    dst.flush(cx, wfd.clone(), x).await?;
    Ok(n)
}
