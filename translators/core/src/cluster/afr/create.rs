//! Creating a regular file in one round trip.
//!
//! A new image is the hot path of an archive, so `create` does not take the entry locks in a
//! round trip of their own. Each brick gets one compound, `[entrylk NoWait, create,
//! entrylk unlock]`, all in parallel. The lock in the compound makes the create wait for no
//! one but fail fast (`EAGAIN`) while a change that locks every brick first (a rename, an
//! unlink, self-heal of the directory) holds the name.
//!
//! Because each brick's lock lasts only for its own compound, two clients creating the same
//! name can reach the bricks in different orders and get different gfids from different
//! bricks. Every reply carries the gfid the brick ended up with, so this is seen at once:
//! the fast path is accepted only when every brick that answered agrees (all on one gfid,
//! or, for `O_EXCL`, all `EEXIST`). Anything else (contention or disagreement) takes the
//! slow path, which takes the entry lock on every brick in brick order, waiting, looks at
//! what each brick holds under the lock, settles on one gfid and makes every brick agree:
//!
//! - copies left by an unfinished create (ours, or a racing client's that is itself waiting
//!   for the lock) or by a brick that missed an unlink are removed when another gfid wins;
//! - the winner is the gfid most bricks hold, not counting bricks the directory's entry
//!   counters blame, ties going to the lowest brick. With client quorum an acknowledged
//!   create reached a majority, so it always wins;
//! - when an existing file wins, `O_EXCL` gets `EEXIST`; otherwise the file is opened on the
//!   bricks that hold it, and the others are blamed for heal to complete (heal copies the
//!   data, which a bare create could not).
//!
//! No client has been told about a create that is still being settled, so nothing
//! acknowledged is ever removed.

use std::collections::HashMap;

use futures::future::join_all;

use super::Afr;
use super::txn::{self, Outcome, compound, entrylk, pending_key};
use crate::error::{FopError, FopResult};
use crate::features::index::{AFR_PREFIX, read_counters};
use crate::types::*;
use crate::wire::{Reply, Request};

/// One create, as `Afr::create` hands it over.
pub(super) struct NewFile<'a> {
    pub parent: Gfid,
    pub name: &'a str,
    pub loc: &'a Loc,
    pub flags: i32,
    pub mode: u32,
    pub umask: u32,
    pub fd: &'a Fd,
    /// The caller's xdata with the entry dirty mark.
    pub xdata: &'a Xdata,
}

/// What the create did, per brick, and how many entry dirty marks each brick applied (all
/// of them to be cleared, whatever the outcome).
pub(super) struct Created {
    pub out: Outcome,
    pub applied: HashMap<usize, i64>,
}

impl NewFile<'_> {
    fn ours(&self) -> Option<Gfid> {
        self.loc.gfid
    }

    fn exclusive(&self) -> bool {
        self.flags & libc::O_EXCL != 0
    }

    fn request(&self, flags: i32, gfid: Gfid) -> Request {
        Request::Create {
            loc: Loc::entry(self.parent, self.name).with_gfid(gfid),
            flags,
            mode: self.mode,
            umask: self.umask,
            fd: self.fd.clone(),
            xdata: self.xdata.clone(),
        }
    }
}

fn gfid_of(r: &Reply) -> Option<Gfid> {
    match r {
        Reply::Create(e) | Reply::Lookup(e) => Some(e.iatt.gfid),
        _ => None,
    }
}

impl Afr {
    /// Creates and opens `f` on `targets`; see the module documentation.
    pub(super) async fn create_file(
        &self,
        cx: &Cx,
        targets: &[usize],
        f: &NewFile<'_>,
    ) -> FopResult<Created> {
        let ours = f
            .ours()
            .ok_or_else(|| FopError::invalid("create needs a gfid"))?;
        let lcx = txn::with_owner(cx, txn::new_owner());
        let fast = join_all(targets.iter().map(|&i| {
            let lcx = &lcx;
            async move {
                let Some(c) = self.children.get(i) else {
                    return (i, Err(FopError::eio("no such child")), false);
                };
                let ops = vec![
                    entrylk(f.parent, f.name, LockWait::NoWait, LockType::Write),
                    f.request(f.flags, ours),
                    entrylk(f.parent, f.name, LockWait::NoWait, LockType::Unlock),
                ];
                let r = compound(c, lcx, ops).await;
                let contended = r
                    .first()
                    .is_some_and(|x| x.as_ref().err().is_some_and(txn::contended));
                let created = match (r.first(), r.get(1)) {
                    (Some(Ok(_)), Some(res)) => res.clone(),
                    (Some(Err(e)), _) => Err(e.clone()),
                    _ => Err(FopError::eio("short compound reply")),
                };
                (i, created, contended)
            }
        }))
        .await;
        let contended = fast.iter().any(|(_, _, c)| *c);
        let gfids: Vec<Gfid> = fast
            .iter()
            .filter_map(|(_, r, _)| r.as_ref().ok().and_then(gfid_of))
            .collect();
        let eexist = fast
            .iter()
            .filter(|(_, r, _)| r.as_ref().err().is_some_and(|e| e.errno == libc::EEXIST))
            .count();
        let agree = gfids.windows(2).all(|w| w[0] == w[1]);
        if !contended && agree && (gfids.is_empty() || eexist == 0) {
            // The common case: one round trip.
            let results: Vec<(usize, FopResult<Reply>)> =
                fast.into_iter().map(|(i, r, _)| (i, r)).collect();
            let applied = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(i, _)| (*i, 1))
                .collect();
            return Ok(Created {
                out: Outcome::from(results),
                applied,
            });
        }
        tracing::debug!(parent = %f.parent, name = f.name, contended, agree, eexist, "create contended or disputed: settling under locks");
        // Close what the fast path opened; the slow path opens again.
        let mut applied: HashMap<usize, i64> = HashMap::new();
        let opened: Vec<usize> = fast
            .iter()
            .filter(|(_, r, _)| r.is_ok())
            .map(|(i, _, _)| *i)
            .collect();
        for &i in &opened {
            *applied.entry(i).or_default() += 1;
        }
        join_all(opened.iter().map(|&i| async move {
            if let Some(c) = self.children.get(i) {
                let _ =
                    crate::wire::dispatch(&**c, cx, Request::Release { fd: f.fd.clone() }).await;
            }
        }))
        .await;
        Ok(self
            .create_settled(cx, &lcx, targets, f, ours, applied)
            .await)
    }

    /// The slow path: under every brick's entry lock, make the bricks agree.
    async fn create_settled(
        &self,
        cx: &Cx,
        lcx: &Cx,
        targets: &[usize],
        f: &NewFile<'_>,
        ours: Gfid,
        mut applied: HashMap<usize, i64>,
    ) -> Created {
        let (locked, failed) =
            txn::entrylk_in_order(&self.children, lcx, f.parent, f.name, targets).await;
        let mut results = self.create_locked(cx, &locked, f, ours, &mut applied).await;
        // Unlocks go out in the background.
        txn::entry_unlock_later(&self.children, lcx, f.parent, f.name, &locked);
        results.extend(failed);
        Created {
            out: Outcome::from(results),
            applied,
        }
    }

    async fn create_locked(
        &self,
        cx: &Cx,
        locked: &[usize],
        f: &NewFile<'_>,
        ours: Gfid,
        applied: &mut HashMap<usize, i64>,
    ) -> Vec<(usize, FopResult<Reply>)> {
        if locked.is_empty() {
            return Vec::new();
        }
        // What each brick holds under the name, and whom the directory's counters blame.
        let mut probe = Xdata::new();
        add_lookup_prefix(&mut probe, AFR_PREFIX);
        let seen = join_all(locked.iter().map(|&i| {
            let probe = probe.clone();
            async move {
                let Some(c) = self.children.get(i) else {
                    return (i, None, None);
                };
                let r = compound(
                    c,
                    cx,
                    vec![
                        Request::Lookup {
                            loc: Loc::inode(f.parent),
                            xdata: probe,
                        },
                        Request::Lookup {
                            loc: Loc::entry(f.parent, f.name),
                            xdata: Xdata::new(),
                        },
                    ],
                )
                .await;
                let dir = match r.first() {
                    Some(Ok(Reply::Lookup(e))) => Some(e.xdata.clone()),
                    _ => None,
                };
                let held = match r.get(1) {
                    Some(Ok(reply)) => gfid_of(reply),
                    _ => None,
                };
                (i, dir, held)
            }
        }))
        .await;
        let mut blamed = 0u64;
        for (_, dir, _) in &seen {
            let Some(x) = dir else { continue };
            for (j, n) in self.names.iter().enumerate() {
                if x.get(&pending_key(n))
                    .is_some_and(|v| read_counters(v)[2] > 0)
                {
                    blamed |= 1 << j;
                }
            }
        }
        let held: Vec<(usize, Gfid)> = seen
            .iter()
            .filter_map(|(i, _, g)| g.map(|g| (*i, g)))
            .collect();
        let winner = choose(&held, blamed).unwrap_or(ours);
        // Remove every copy of a losing gfid (an unfinished create, or a stale name).
        let losers: Vec<usize> = held
            .iter()
            .filter(|(_, g)| *g != winner)
            .map(|(i, _)| *i)
            .collect();
        if !losers.is_empty() {
            tracing::info!(parent = %f.parent, name = f.name, %winner, ?losers, "create: removing copies of another gfid under the name");
        }
        let removed = txn::fan(&self.children, cx, &losers, &|_| Request::Unlink {
            loc: Loc::entry(f.parent, f.name),
            xdata: f.xdata.clone(),
        })
        .await;
        let mut results: Vec<(usize, FopResult<Reply>)> = Vec::new();
        for (i, r) in removed {
            match r {
                Ok(_) => *applied.entry(i).or_default() += 1,
                // The brick keeps a copy it should not: it fails (and is blamed) below.
                Err(e) => results.push((i, Err(e))),
            }
        }
        let clean: Vec<usize> = locked
            .iter()
            .copied()
            .filter(|i| !results.iter().any(|(j, _)| j == i))
            .collect();
        if winner == ours {
            // Ours (or nothing) everywhere: create where missing, open where present.
            let flags = f.flags & !libc::O_EXCL;
            let created = txn::fan(&self.children, cx, &clean, &|_| f.request(flags, ours)).await;
            for (i, r) in created {
                let r = match r {
                    Ok(reply) if gfid_of(&reply) != Some(ours) => Err(FopError::eio(format!(
                        "create of {} in {}: brick holds another gfid under the lock",
                        f.name, f.parent
                    ))),
                    other => other,
                };
                if r.is_ok() {
                    *applied.entry(i).or_default() += 1;
                }
                results.push((i, r));
            }
            return results;
        }
        // An existing file wins.
        if f.exclusive() {
            for &i in &clean {
                results.push((
                    i,
                    Err(FopError::new(
                        libc::EEXIST,
                        format!("{} exists in {}", f.name, f.parent),
                    )),
                ));
            }
            return results;
        }
        let holders: Vec<usize> = held
            .iter()
            .filter(|(i, g)| *g == winner && clean.contains(i))
            .map(|(i, _)| *i)
            .collect();
        let flags = f.flags & !libc::O_EXCL;
        let opened = txn::fan(&self.children, cx, &holders, &|_| f.request(flags, winner)).await;
        for (i, r) in opened {
            if r.is_ok() {
                *applied.entry(i).or_default() += 1;
            }
            results.push((i, r));
        }
        // Bricks without the file are not opened: they fail here and get blamed, so heal
        // brings them the whole file.
        for &i in clean.iter().filter(|i| !holders.contains(i)) {
            results.push((
                i,
                Err(FopError::eio(format!(
                    "{} in {} is missing on this brick; heal will copy it",
                    f.name, f.parent
                ))),
            ));
        }
        results
    }
}

/// The gfid that should hold a name: the one most bricks hold, not counting blamed bricks;
/// ties go to the lowest brick. `None` when no unblamed brick holds the name.
fn choose(held: &[(usize, Gfid)], blamed: u64) -> Option<Gfid> {
    let mut votes: Vec<(Gfid, usize, usize)> = Vec::new(); // (gfid, count, lowest brick)
    for &(i, g) in held.iter().filter(|(i, _)| blamed & (1 << i) == 0) {
        match votes.iter_mut().find(|(v, _, _)| *v == g) {
            Some(v) => {
                v.1 += 1;
                v.2 = v.2.min(i);
            }
            None => votes.push((g, 1, i)),
        }
    }
    votes
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
        .map(|(g, _, _)| g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gfid_most_unblamed_bricks_hold_wins() {
        let (a, b) = (Gfid::random(), Gfid::random());
        assert_eq!(choose(&[(0, a), (1, b), (2, b)], 0), Some(b));
        assert_eq!(choose(&[(0, a), (1, b)], 0), Some(a), "tie: lowest brick");
        assert_eq!(
            choose(&[(1, b), (0, a)], 0),
            Some(a),
            "order of replies is irrelevant"
        );
        assert_eq!(
            choose(&[(0, a), (1, b), (2, b)], 0b110),
            Some(a),
            "blamed bricks do not vote"
        );
        assert_eq!(choose(&[(2, b)], 0b100), None);
        assert_eq!(choose(&[], 0), None);
    }
}
