//! How replicate changes a group of bricks: locks, dirty marks, blame, and clearing.
//!
//! Three shapes, each with a fast path for the uncontended case:
//!
//! - **Data through an open file** (write, ftruncate, fallocate): an *eager lock*. The first
//!   change sends `[inodelk NoWait, change]` as one compound to every brick; the lock is
//!   then kept until the file is released or idle for `eager-lock-idle`. Later changes go
//!   out alone. Release sends `[unlock, clear dirty mark, release]` as one compound.
//! - **Metadata** (setattr, setxattr, removexattr, truncate by path): `[inodelk NoWait,
//!   change, unlock]` as one compound per brick: one round trip.
//! - **Entries** (create, mkdir, unlink, rename, ...): entry locks on every brick first (in
//!   parallel), then the change, then unlocks sent without waiting for them: the caller
//!   waits two round trips. Entries need the locks held on every brick before any brick
//!   changes, or two clients creating one name could leave different gfids on different
//!   bricks.
//!
//! When a lock is contended (another client holds it), the fast path stands back: locks
//! taken are released, then every brick's lock is taken in brick order, waiting, and the
//! change is applied on every brick again. Data and metadata changes are idempotent (writes
//! carry their offset; O_APPEND is not passed to bricks), so whichever client applies last
//! under the ordered locks decides the content on every brick alike.
//!
//! Every change carries a dirty-mark request that the brick's `features/index` honours
//! before applying it. Marks are cleared later, in batches (every `changelog-flush`), or at
//! release for data. A brick that missed a change is blamed on the bricks that have it
//! (`trusted.cairn.afr.pending.<brick>`), which is the only extra round trip, and only when
//! something failed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::join_all;

use crate::error::{FopError, FopResult};
use crate::features::index::{self, DIRTY_KEY, XATTR_DIRTY};
use crate::types::*;
use crate::wire::{Batch, CompoundResult, Reply, Request};
use crate::xlator::XlatorRef;

/// The lock domain replication uses on bricks.
pub const DOMAIN: &str = "cairn.afr";

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// A lock owner unique in this process (and, combined with the connection on the brick,
/// in the cluster).
pub fn new_owner() -> u64 {
    // High bit set: never equal to an fd-based owner.
    NEXT_OWNER.fetch_add(1, Ordering::Relaxed) | (1 << 63)
}

/// The caller's context with another lock owner.
pub fn with_owner(cx: &Cx, owner: u64) -> Cx {
    Cx {
        lk_owner: owner,
        ..cx.clone()
    }
}

/// Xdata asking the brick for a dirty mark of `kind`.
pub fn dirty(kind: u8) -> Xdata {
    let mut x = Xdata::new();
    x.set(DIRTY_KEY, vec![kind]);
    x
}

/// An inodelk request on the whole file.
pub fn inodelk(gfid: Gfid, wait: LockWait, kind: LockType) -> Request {
    Request::Inodelk {
        domain: DOMAIN.into(),
        target: Target::Loc(Loc::inode(gfid)),
        wait,
        lock: Flock::whole(kind),
        xdata: Xdata::new(),
    }
}

/// An entrylk request on one name.
pub fn entrylk(parent: Gfid, name: &str, wait: LockWait, kind: LockType) -> Request {
    Request::Entrylk {
        domain: DOMAIN.into(),
        loc: Loc::inode(parent),
        name: Some(name.to_string()),
        wait,
        kind,
        xdata: Xdata::new(),
    }
}

/// Takes the entry lock on `parent/name` on each of `targets`, one brick after the other in
/// brick order, waiting (the order every client uses, so two never wait for each other).
/// Returns the bricks locked and, for the others, why not.
pub async fn entrylk_in_order(
    children: &[XlatorRef],
    lcx: &Cx,
    parent: Gfid,
    name: &str,
    targets: &[usize],
) -> (Vec<usize>, Vec<(usize, FopResult<Reply>)>) {
    let mut locked = Vec::new();
    let mut failed = Vec::new();
    for &i in targets {
        let Some(c) = children.get(i) else {
            continue;
        };
        match crate::wire::dispatch(
            &**c,
            lcx,
            entrylk(parent, name, LockWait::Wait, LockType::Write),
        )
        .await
        {
            Ok(_) => locked.push(i),
            Err(e) => failed.push((i, Err(e))),
        }
    }
    (locked, failed)
}

/// Releases the entry lock on `parent/name` held by `lcx` on `locked`, in the background:
/// the caller does not wait for it.
pub fn entry_unlock_later(
    children: &[XlatorRef],
    lcx: &Cx,
    parent: Gfid,
    name: &str,
    locked: &[usize],
) {
    let unlock: Vec<(XlatorRef, Cx)> = locked
        .iter()
        .filter_map(|&i| children.get(i).cloned())
        .map(|c| (c, lcx.clone()))
        .collect();
    let name = name.to_string();
    tokio::spawn(async move {
        join_all(unlock.into_iter().map(|(c, lcx)| {
            let name = name.clone();
            async move {
                let _ = crate::wire::dispatch(
                    &*c,
                    &lcx,
                    entrylk(parent, &name, LockWait::NoWait, LockType::Unlock),
                )
                .await;
            }
        }))
        .await;
    });
}

/// A compound on one child, its results as a list.
pub async fn compound(child: &XlatorRef, cx: &Cx, ops: Vec<Request>) -> Vec<CompoundResult> {
    let n = ops.len();
    match child.compound(cx, Batch(ops)).await {
        Ok(Batch(r)) if r.len() == n => r,
        Ok(Batch(r)) => {
            let mut r = r;
            r.resize_with(n, || Err(FopError::eio("short compound reply")));
            r
        }
        Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
    }
}

/// True when an error means "someone else holds the lock".
pub fn contended(e: &FopError) -> bool {
    e.errno == libc::EAGAIN
}

/// Marks queued for one brick that is down, at most; beyond, self-heal settles them.
const QUEUE_MAX: usize = 100_000;

/// Clearing of dirty marks, batched per brick.
pub struct Changelog {
    children: Vec<XlatorRef>,
    /// Per child: (gfid, kind) → how many marks to clear.
    queues: Mutex<Vec<HashMap<(Gfid, u8), i64>>>,
}

impl Changelog {
    /// An empty changelog over `children`.
    pub fn new(children: Vec<XlatorRef>) -> Changelog {
        let n = children.len();
        Changelog {
            children,
            queues: Mutex::new(vec![HashMap::new(); n]),
        }
    }

    /// Queues `count` marks of `kind` on `gfid` at child `i` to be cleared.
    pub fn clear_later(&self, i: usize, gfid: Gfid, kind: u8, count: i64) {
        if let Ok(mut q) = self.queues.lock()
            && let Some(m) = q.get_mut(i)
        {
            *m.entry((gfid, kind)).or_default() += count;
        }
    }

    /// Number of marks waiting to be cleared (for tests and status).
    pub fn queued(&self) -> i64 {
        self.queues
            .lock()
            .map(|q| q.iter().flat_map(|m| m.values()).sum())
            .unwrap_or(0)
    }

    /// Sends every queued clear, one compound per brick (at most 256 per compound). The
    /// queue of a brick that is down is kept until it comes back: its marks are on its disk.
    pub async fn flush(&self) {
        let batches: Vec<Vec<((Gfid, u8), i64)>> = match self.queues.lock() {
            Ok(mut q) => q
                .iter_mut()
                .enumerate()
                .map(|(i, m)| {
                    let up = self.children.get(i).is_some_and(|c| c.is_up());
                    if up {
                        m.drain().collect()
                    } else {
                        if m.len() > QUEUE_MAX {
                            tracing::warn!(brick = i, queued = m.len(), "too many marks queued for a brick that is down; self-heal will settle them");
                            m.clear();
                        }
                        Vec::new()
                    }
                })
                .collect(),
            Err(_) => return,
        };
        let cx = Cx::internal();
        join_all(batches.into_iter().enumerate().map(|(i, items)| {
            let cx = &cx;
            async move {
                let Some(child) = self.children.get(i) else {
                    return;
                };
                if items.is_empty() || !child.is_up() {
                    // A brick that is down keeps its marks; self-heal reconciles them.
                    return;
                }
                for chunk in items.chunks(256) {
                    let ops: Vec<Request> = chunk
                        .iter()
                        .map(|((gfid, kind), n)| {
                            let mut x = Xdata::new();
                            x.set(XATTR_DIRTY, index::counters(*kind, -*n));
                            Request::Xattrop {
                                target: Target::Loc(Loc::inode(*gfid)),
                                op: XattropOp::AddArray64Floor,
                                xattrs: x,
                                xdata: Xdata::new(),
                            }
                        })
                        .collect();
                    // Failures (a file deleted meanwhile) are harmless: heal reconciles.
                    let _ = child.compound(cx, Batch(ops)).await;
                }
            }
        }))
        .await;
    }
}

/// What a change did on each brick it was sent to.
pub struct Outcome {
    /// (child, reply) for every brick where it succeeded.
    pub ok: Vec<(usize, Reply)>,
    /// (child, error) for every brick where it failed.
    pub failed: Vec<(usize, FopError)>,
}

impl Outcome {
    /// Sorts per-child results.
    pub fn from(results: Vec<(usize, FopResult<Reply>)>) -> Outcome {
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for (i, r) in results {
            match r {
                Ok(v) => ok.push((i, v)),
                Err(e) => failed.push((i, e)),
            }
        }
        Outcome { ok, failed }
    }

    /// The children where it succeeded.
    pub fn good(&self) -> Vec<usize> {
        self.ok.iter().map(|(i, _)| *i).collect()
    }

    /// The error to report when it succeeded nowhere: the most telling one. An answer about
    /// the request (`ENOENT`, `EROFS`, …) comes before `ESTALE` (that brick lacks the parent
    /// directory or the inode: a copy missing there, which heal restores), and that before
    /// "not connected".
    pub fn error(&self) -> FopError {
        let rank = |e: &FopError| match e.errno {
            libc::ENOTCONN => 2,
            libc::ESTALE => 1,
            _ => 0,
        };
        self.failed
            .iter()
            .map(|(_, e)| e)
            .min_by_key(|e| rank(e))
            .cloned()
            .unwrap_or_else(|| FopError::not_connected("no brick of the replica set is up"))
    }
}

/// Applies `op` (made fresh for each brick) on `targets` in parallel.
pub async fn fan(
    children: &[XlatorRef],
    cx: &Cx,
    targets: &[usize],
    op: &(dyn Fn(usize) -> Request + Sync),
) -> Vec<(usize, FopResult<Reply>)> {
    join_all(targets.iter().map(|&i| async move {
        let r = match children.get(i) {
            Some(c) => crate::wire::dispatch(&**c, cx, op(i)).await,
            None => Err(FopError::eio("no such child")),
        };
        (i, r)
    }))
    .await
}

/// The metadata shape: `[inodelk NoWait, op, unlock]` per brick; on contention, ordered
/// waiting locks on every brick and the op again everywhere. Returns the op's results and
/// how many times it was applied per brick (each application left one dirty mark).
pub async fn inode_change(
    children: &[XlatorRef],
    cx: &Cx,
    gfid: Gfid,
    targets: &[usize],
    op: &(dyn Fn(usize) -> Request + Sync),
) -> (Vec<(usize, FopResult<Reply>)>, HashMap<usize, i64>) {
    let owner = new_owner();
    let lcx = with_owner(cx, owner);
    let fast = join_all(targets.iter().map(|&i| {
        let lcx = &lcx;
        async move {
            let Some(c) = children.get(i) else {
                return (i, vec![Err(FopError::eio("no such child"))]);
            };
            let ops = vec![
                inodelk(gfid, LockWait::NoWait, LockType::Write),
                op(i),
                inodelk(gfid, LockWait::NoWait, LockType::Unlock),
            ];
            (i, compound(c, lcx, ops).await)
        }
    }))
    .await;
    let mut applied: HashMap<usize, i64> = HashMap::new();
    let mut results = Vec::new();
    let mut any_contended = false;
    for (i, r) in &fast {
        match r.first() {
            Some(Ok(_)) => {
                let res = r
                    .get(1)
                    .cloned()
                    .unwrap_or_else(|| Err(FopError::eio("short compound")));
                if res.is_ok() {
                    *applied.entry(*i).or_default() += 1;
                }
                results.push((*i, res));
            }
            Some(Err(e)) if contended(e) => any_contended = true,
            Some(Err(e)) => results.push((*i, Err(e.clone()))),
            None => results.push((*i, Err(FopError::eio("empty compound reply")))),
        }
    }
    if !any_contended {
        return (results, applied);
    }
    // Contended: take every brick's lock in order, waiting, then apply everywhere again.
    let mut locked = Vec::new();
    let mut results = Vec::new();
    for &i in targets {
        let Some(c) = children.get(i) else { continue };
        match crate::wire::dispatch(&**c, &lcx, inodelk(gfid, LockWait::Wait, LockType::Write))
            .await
        {
            Ok(_) => locked.push(i),
            Err(e) => results.push((i, Err(e))),
        }
    }
    let again = fan(children, cx, &locked, op).await;
    for (i, r) in &again {
        if r.is_ok() {
            *applied.entry(*i).or_default() += 1;
        }
    }
    results.extend(again);
    join_all(locked.iter().map(|&i| {
        let lcx = &lcx;
        async move {
            if let Some(c) = children.get(i) {
                let _ = crate::wire::dispatch(
                    &**c,
                    lcx,
                    inodelk(gfid, LockWait::NoWait, LockType::Unlock),
                )
                .await;
            }
        }
    }))
    .await;
    (results, applied)
}

/// The entry shape: entry locks on every target brick (parallel, not waiting; on contention
/// released and retaken in order, waiting), then `op` on the locked bricks, then unlocks
/// sent in the background. `locks` are (parent, name) pairs.
pub async fn entry_change(
    children: &[XlatorRef],
    cx: &Cx,
    locks: &[(Gfid, String)],
    targets: &[usize],
    op: &(dyn Fn(usize) -> Request + Sync),
) -> Vec<(usize, FopResult<Reply>)> {
    let owner = new_owner();
    let lcx = with_owner(cx, owner);
    let mut sorted: Vec<(Gfid, String)> = locks.to_vec();
    sorted.sort();
    sorted.dedup();
    let lock_ops = |wait| -> Vec<Request> {
        sorted
            .iter()
            .map(|(p, n)| entrylk(*p, n, wait, LockType::Write))
            .collect()
    };
    let unlock_ops = || -> Vec<Request> {
        sorted
            .iter()
            .map(|(p, n)| entrylk(*p, n, LockWait::NoWait, LockType::Unlock))
            .collect()
    };
    let fast = join_all(targets.iter().map(|&i| {
        let lcx = &lcx;
        let ops = lock_ops(LockWait::NoWait);
        async move {
            match children.get(i) {
                Some(c) => (i, compound(c, lcx, ops).await),
                None => (i, vec![Err(FopError::eio("no such child"))]),
            }
        }
    }))
    .await;
    let mut locked = Vec::new();
    let mut failed: Vec<(usize, FopResult<Reply>)> = Vec::new();
    let mut any_contended = false;
    let mut partially = Vec::new();
    for (i, r) in &fast {
        if r.iter().all(Result::is_ok) {
            locked.push(*i);
        } else if r.iter().any(|x| x.as_ref().err().is_some_and(contended)) {
            any_contended = true;
            partially.push(*i);
        } else {
            let e = r
                .iter()
                .find_map(|x| x.as_ref().err().cloned())
                .unwrap_or_else(|| FopError::eio("lock failed"));
            partially.push(*i);
            failed.push((*i, Err(e)));
        }
    }
    let release = |who: Vec<usize>| {
        let lcx = &lcx;
        join_all(who.into_iter().map(move |i| async move {
            if let Some(c) = children.get(i) {
                let _ = compound(c, lcx, unlock_ops()).await;
            }
        }))
    };
    if any_contended {
        let mut all_taken = locked.clone();
        all_taken.extend(partially.iter().copied());
        release(all_taken).await;
        locked.clear();
        failed.clear();
        'each: for &i in targets {
            let Some(c) = children.get(i) else { continue };
            for req in lock_ops(LockWait::Wait) {
                if let Err(e) = crate::wire::dispatch(&**c, &lcx, req).await {
                    let _ = compound(c, &lcx, unlock_ops()).await;
                    failed.push((i, Err(e)));
                    continue 'each;
                }
            }
            locked.push(i);
        }
    } else if !partially.is_empty() {
        release(partially).await;
    }
    let mut results = fan(children, cx, &locked, op).await;
    // Unlocks go out in the background: the caller does not wait for them.
    let children: Vec<XlatorRef> = children.to_vec();
    let ops = unlock_ops();
    tokio::spawn(async move {
        join_all(locked.into_iter().map(|i| {
            let (lcx, ops) = (lcx.clone(), ops.clone());
            let c = children.get(i).cloned();
            async move {
                if let Some(c) = c {
                    let _ = compound(&c, &lcx, ops).await;
                }
            }
        }))
        .await;
    });
    results.extend(failed);
    results
}

/// Records on every `good` brick that each `bad` brick missed a change of `kind` to `gfid`.
pub async fn blame(
    children: &[XlatorRef],
    names: &[String],
    gfid: Gfid,
    kind: u8,
    good: &[usize],
    bad: &[usize],
) {
    if bad.is_empty() || good.is_empty() {
        return;
    }
    record_blame(children, names, gfid, kind, good, bad).await;
    tracing::info!(%gfid, kind = %(kind as char), ?bad, "bricks missed a change; marked for heal");
}

/// [`blame`] without the log line: for heal, which marks the copies it is about to rewrite.
pub async fn record_blame(
    children: &[XlatorRef],
    names: &[String],
    gfid: Gfid,
    kind: u8,
    good: &[usize],
    bad: &[usize],
) {
    if bad.is_empty() || good.is_empty() {
        return;
    }
    let mut x = Xdata::new();
    for &b in bad {
        if let Some(n) = names.get(b) {
            x.set(pending_key(n), index::counters(kind, 1));
        }
    }
    let cx = Cx::internal();
    let results = join_all(good.iter().map(|&g| {
        let (x, cx) = (x.clone(), &cx);
        async move {
            match children.get(g) {
                Some(c) => c
                    .xattrop(
                        cx,
                        Target::Loc(Loc::inode(gfid)),
                        XattropOp::AddArray64,
                        x,
                        Xdata::new(),
                    )
                    .await
                    .map(|_| ()),
                None => Ok(()),
            }
        }
    }))
    .await;
    for r in results {
        if let Err(e) = r {
            tracing::warn!(%gfid, error = %e, "could not record which brick missed a change");
        }
    }
}

/// The xattr on a brick recording changes brick `name` missed.
pub fn pending_key(name: &str) -> String {
    format!("{}pending.{name}", index::AFR_PREFIX)
}

/// Shared handle to the changelog.
pub type SharedChangelog = Arc<Changelog>;

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(errnos: &[i32]) -> Outcome {
        Outcome {
            ok: vec![],
            failed: errnos
                .iter()
                .enumerate()
                .map(|(i, &n)| (i, FopError::new(n, "x")))
                .collect(),
        }
    }

    #[test]
    fn a_brick_missing_the_parent_does_not_hide_the_answer_of_the_others() {
        assert_eq!(
            failed(&[libc::ESTALE, libc::ENOENT, libc::ENOENT])
                .error()
                .errno,
            libc::ENOENT
        );
        assert_eq!(
            failed(&[libc::ENOTCONN, libc::ESTALE]).error().errno,
            libc::ESTALE
        );
        assert_eq!(
            failed(&[libc::ENOTCONN, libc::EROFS]).error().errno,
            libc::EROFS
        );
        assert_eq!(failed(&[libc::ENOTCONN]).error().errno, libc::ENOTCONN);
        assert_eq!(failed(&[]).error().errno, libc::ENOTCONN);
    }
}
