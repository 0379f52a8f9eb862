//! Removing a file's name in one round trip.
//!
//! Deleting an archive's expired studies removes millions of names, so `unlink` does not
//! take the entry locks in a round trip of their own. Each brick gets one compound,
//! `[entrylk NoWait, lookup, unlink, entrylk unlock]`, all in parallel. The lock makes the
//! unlink wait for no one but fail fast (`EAGAIN`) while a change that locks every brick
//! first (a rename, a create settling a dispute, self-heal of the directory) holds the name;
//! the lookup says which file the brick removed.
//!
//! When no brick was busy, that is the whole unlink: each brick removed the name, or said
//! why not, under its own lock, and no locking change was half-way through it.
//!
//! When some brick was busy, the slow path takes the entry lock on every brick in brick
//! order, waiting, and then:
//!
//! - if some brick removed a file in the fast path, every brick that still holds a file
//!   removed somewhere removes it too. Anything else under the name was put by the change
//!   that held the lock, after the unlink had removed the name on the bricks it reached, so
//!   it is left: the unlink is ordered before that change on every brick;
//! - if no brick removed anything, the unlink runs on every brick under the locks, as every
//!   other entry change does.
//!
//! Either way all bricks end up agreeing on what the name holds.

use std::collections::HashMap;

use futures::future::join_all;

use super::Afr;
use super::txn::{self, compound, contended, entrylk};
use crate::error::{FopError, FopResult};
use crate::types::*;
use crate::wire::{Reply, Request};

/// What an unlink did, per brick, and how many entry dirty marks each brick applied (all of
/// them to be cleared, whatever the outcome).
pub(super) struct Removed {
    pub results: Vec<(usize, FopResult<Reply>)>,
    pub applied: HashMap<usize, i64>,
}

/// One brick's fast-path answer.
struct Fast {
    brick: usize,
    /// The file the brick held under the name, if it found one.
    held: Option<Gfid>,
    /// The unlink's result (or the lock's or lookup's error that stopped it).
    result: FopResult<Reply>,
    /// The brick's lock was held by someone else: nothing was tried there.
    busy: bool,
}

impl Afr {
    /// Unlinks `loc` (a parent and a name) on `targets`; `xdata` carries the entry dirty
    /// mark. See the module documentation.
    pub(super) async fn remove_name(
        &self,
        cx: &Cx,
        targets: &[usize],
        loc: &Loc,
        xdata: &Xdata,
    ) -> FopResult<Removed> {
        let (parent, name) = loc.parent_and_name()?;
        let lcx = txn::with_owner(cx, txn::new_owner());
        let unlink = || Request::Unlink {
            loc: loc.clone(),
            xdata: xdata.clone(),
        };
        let fast: Vec<Fast> = join_all(targets.iter().map(|&i| {
            let (lcx, unlink) = (&lcx, &unlink);
            async move {
                let Some(c) = self.children.get(i) else {
                    return Fast {
                        brick: i,
                        held: None,
                        result: Err(FopError::eio("no such child")),
                        busy: false,
                    };
                };
                let ops = vec![
                    entrylk(parent, name, LockWait::NoWait, LockType::Write),
                    Request::Lookup {
                        loc: Loc::entry(parent, name),
                        xdata: Xdata::new(),
                    },
                    unlink(),
                    entrylk(parent, name, LockWait::NoWait, LockType::Unlock),
                ];
                let r = compound(c, lcx, ops).await;
                let busy = r
                    .first()
                    .is_some_and(|x| x.as_ref().err().is_some_and(contended));
                let held = match r.get(1) {
                    Some(Ok(Reply::Lookup(e))) => Some(e.iatt.gfid),
                    _ => None,
                };
                // The first failure is the one that says why (later ops were not run).
                let result = match r.iter().take(3).find_map(|x| x.as_ref().err()) {
                    Some(e) => Err(e.clone()),
                    None => r
                        .get(2)
                        .cloned()
                        .unwrap_or_else(|| Err(FopError::eio("short compound reply"))),
                };
                Fast {
                    brick: i,
                    held,
                    result,
                    busy,
                }
            }
        }))
        .await;
        let mut applied: HashMap<usize, i64> = HashMap::new();
        for f in fast.iter().filter(|f| f.result.is_ok()) {
            applied.insert(f.brick, 1);
        }
        if !fast.iter().any(|f| f.busy) {
            // The common case: one round trip.
            let results = fast.into_iter().map(|f| (f.brick, f.result)).collect();
            return Ok(Removed { results, applied });
        }
        tracing::debug!(%parent, name, "unlink contended: settling under locks");
        // The files the fast path removed somewhere.
        let victims: Vec<Gfid> = fast
            .iter()
            .filter(|f| f.result.is_ok())
            .filter_map(|f| f.held)
            .collect();
        let (locked, mut results) =
            txn::entrylk_in_order(&self.children, &lcx, parent, name, targets).await;
        let settled = if victims.is_empty() {
            // Nothing removed yet: the unlink runs everywhere, under every lock.
            txn::fan(&self.children, cx, &locked, &|_| unlink()).await
        } else {
            // Under every lock, each brick that still holds a file removed somewhere loses
            // it too. Looking at every brick, not only the busy ones, also covers a change
            // that ran between this unlink's visits to two bricks.
            // A brick that removed the name before it could not be locked keeps its answer.
            results.retain(|(i, _)| !fast.iter().any(|f| f.brick == *i && f.result.is_ok()));
            let mut out: HashMap<usize, FopResult<Reply>> = fast
                .iter()
                .filter(|f| !results.iter().any(|(i, _)| *i == f.brick))
                .map(|f| (f.brick, f.result.clone()))
                .collect();
            let seen = txn::fan(&self.children, cx, &locked, &|_| Request::Lookup {
                loc: Loc::entry(parent, name),
                xdata: Xdata::new(),
            })
            .await;
            for (i, r) in seen {
                let busy = fast.iter().any(|f| f.brick == i && f.busy);
                match r {
                    Ok(Reply::Lookup(e)) if victims.contains(&e.iatt.gfid) => {
                        let Some(c) = self.children.get(i) else {
                            continue;
                        };
                        let r = crate::wire::dispatch(&**c, cx, unlink()).await;
                        if r.is_ok() {
                            *applied.entry(i).or_default() += 1;
                        }
                        out.insert(i, r);
                    }
                    // Another file now, or none, on a brick this unlink had not reached: the
                    // change that held the lock put it there, after this unlink. Nothing was
                    // marked on this brick.
                    Ok(_) if busy => {
                        out.insert(i, Ok(Reply::Unlink(())));
                    }
                    Err(e) if busy && e.errno == libc::ENOENT => {
                        out.insert(i, Ok(Reply::Unlink(())));
                    }
                    Err(e) if busy => {
                        out.insert(i, Err(e));
                    }
                    // A brick the fast path reached keeps its answer.
                    _ => {}
                }
            }
            out.into_iter().collect::<Vec<_>>()
        };
        if victims.is_empty() {
            // Every brick's result is from the locked unlink: one mark where it succeeded.
            applied = settled
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(i, _)| (*i, 1))
                .collect();
        }
        results.extend(settled);
        // Unlocks go out in the background.
        txn::entry_unlock_later(&self.children, &lcx, parent, name, &locked);
        Ok(Removed { results, applied })
    }
}
