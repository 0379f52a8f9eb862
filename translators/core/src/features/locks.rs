//! `features/locks`: the brick's internal lock manager (inodelk and entrylk).
//!
//! Cluster translators (replicate, distribute) serialise conflicting changes with these
//! locks. A lock belongs to an owner: the client connection plus the caller's lock owner,
//! so two fops of one owner never block each other. Locks live in domains (one per
//! translator that uses them), so replicate's and distribute's locks never meet.
//!
//! - inodelk: byte ranges of one inode; read locks share, write locks exclude.
//! - entrylk: one name in a directory, or the whole directory (no name).
//!
//! A blocking request waits in FIFO order: a waiter is granted only when it conflicts with
//! neither a granted lock nor an earlier waiter, so writers are not starved by readers.
//! When a client disconnects (`client_gone`) all its locks are released and its waiters
//! dropped, so a crashed client never wedges a brick. A lock request of that connection
//! still on its way through the brick (read before the disconnect, run after it) is refused:
//! granted, it would be held by nobody, for ever, and every later heal or writer of the
//! file would wait on it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cairn_volfiles::{Arity, Maturity, Role, TypeDecl};
use tokio::sync::oneshot;

use crate::error::{FopError, FopResult};
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::{Cx, Flock, Gfid, Loc, LockType, LockWait, Target, Xdata};
use crate::xlator::{Translator, XlatorBase, XlatorRef};

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "features/locks",
        arity: Arity::One,
        roles: &[Role::Brick],
        maturity: Maturity::Stable,
        options: &[],
        doc: "Internal inode and entry locks for cluster translators; freed when a client disconnects.",
    },
    build,
};

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    Ok(Arc::new(Locks::new(ctx.name, ctx.children)))
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Owner {
    client: u64,
    lk_owner: u64,
}

/// What a lock covers inside its resource.
#[derive(Clone, PartialEq, Eq, Debug)]
enum Span {
    /// Bytes `start..=end` of an inode.
    Range { start: u64, end: u64 },
    /// One name of a directory, or all of it.
    Name(Option<String>),
}

impl Span {
    fn overlaps(&self, other: &Span) -> bool {
        match (self, other) {
            (Span::Range { start: a, end: b }, Span::Range { start: c, end: d }) => {
                a <= d && c <= b
            }
            (Span::Name(a), Span::Name(b)) => a.is_none() || b.is_none() || a == b,
            _ => false,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
struct Held {
    owner: Owner,
    write: bool,
    span: Span,
}

impl Held {
    fn conflicts(&self, other: &Held) -> bool {
        self.owner != other.owner && (self.write || other.write) && self.span.overlaps(&other.span)
    }
}

struct Waiter {
    lock: Held,
    wake: oneshot::Sender<()>,
}

#[derive(Default)]
struct Resource {
    granted: Vec<Held>,
    waiting: VecDeque<Waiter>,
}

impl Resource {
    /// Grants waiters in order while they fit; a waiter that still conflicts blocks those
    /// behind it that conflict with it.
    fn grant_waiters(&mut self) {
        let mut still = VecDeque::with_capacity(self.waiting.len());
        while let Some(w) = self.waiting.pop_front() {
            let blocked = self.granted.iter().any(|g| g.conflicts(&w.lock))
                || still.iter().any(|s: &Waiter| s.lock.conflicts(&w.lock));
            if blocked {
                still.push_back(w);
                continue;
            }
            let lock = w.lock.clone();
            // A waiter whose request was cancelled has dropped its receiver: skip it.
            if w.wake.send(()).is_ok() {
                self.granted.push(lock);
            }
        }
        self.waiting = still;
    }

    fn is_idle(&self) -> bool {
        self.granted.is_empty() && self.waiting.is_empty()
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    Inode { domain: String, gfid: Gfid },
    Entry { domain: String, dir: Gfid },
}

/// A lock request waiting in a resource's queue; see [`Locks::abandon`].
struct Waiting<'a> {
    locks: &'a Locks,
    key: Key,
    lock: Held,
    rx: oneshot::Receiver<()>,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Closed first, so no grant can come after the look.
        self.rx.close();
        let granted = self.rx.try_recv().is_ok();
        self.locks.abandon(&self.key, &self.lock, granted);
    }
}

/// The locks translator.
pub struct Locks {
    base: XlatorBase,
    table: Mutex<HashMap<Key, Resource>>,
    /// Clients that disconnected, the latest [`GONE_KEPT`] (taken after `table`).
    gone: Mutex<Gone>,
}

/// How many disconnected clients are remembered. A request of one can only be on its way
/// for a moment after the disconnect, while this many other connections come and go.
const GONE_KEPT: usize = 4096;

#[derive(Default)]
struct Gone {
    set: std::collections::HashSet<u64>,
    order: VecDeque<u64>,
}

impl Gone {
    fn add(&mut self, client: u64) {
        if self.set.insert(client) {
            self.order.push_back(client);
            if self.order.len() > GONE_KEPT
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

impl Locks {
    /// A locks node over `children` (exactly one).
    pub fn new(name: &str, children: Vec<XlatorRef>) -> Locks {
        Locks {
            base: XlatorBase::new(name, TYPE.decl.type_name, children),
            table: Mutex::new(HashMap::new()),
            gone: Mutex::new(Gone::default()),
        }
    }

    fn table(&self) -> FopResult<std::sync::MutexGuard<'_, HashMap<Key, Resource>>> {
        self.table
            .lock()
            .map_err(|_| FopError::eio("lock table poisoned"))
    }

    /// Number of granted locks (for tests and status).
    pub fn granted_count(&self) -> usize {
        self.table
            .lock()
            .map(|t| t.values().map(|r| r.granted.len()).sum())
            .unwrap_or(0)
    }

    async fn acquire(&self, key: Key, lock: Held, wait: LockWait) -> FopResult<()> {
        let mut w = {
            let mut table = self.table()?;
            if self
                .gone
                .lock()
                .is_ok_and(|g| g.set.contains(&lock.owner.client))
            {
                return Err(FopError::not_connected(
                    "lock request of a client that has disconnected",
                ));
            }
            let res = table.entry(key.clone()).or_default();
            let conflict = res.granted.iter().any(|g| g.conflicts(&lock))
                || res.waiting.iter().any(|w| w.lock.conflicts(&lock));
            if !conflict {
                res.granted.push(lock);
                return Ok(());
            }
            if wait == LockWait::NoWait {
                if res.is_idle() {
                    table.remove(&key);
                }
                return Err(FopError::new(libc::EAGAIN, "lock is held by another owner"));
            }
            let (tx, rx) = oneshot::channel();
            res.waiting.push_back(Waiter {
                lock: lock.clone(),
                wake: tx,
            });
            Waiting {
                locks: self,
                key,
                lock,
                rx,
                done: false,
            }
        };
        let r = (&mut w.rx).await;
        w.done = true;
        r.map_err(|_| {
            FopError::new(
                libc::ENOTCONN,
                "lock request dropped: the requesting client disconnected",
            )
        })
    }

    /// A waiting request was dropped before it learnt its outcome: it leaves the queue, and
    /// a lock granted to it in the meantime is given back (nobody would ever unlock it).
    fn abandon(&self, key: &Key, lock: &Held, granted: bool) {
        let Ok(mut table) = self.table() else { return };
        let Some(res) = table.get_mut(key) else {
            return;
        };
        if granted && let Some(i) = res.granted.iter().position(|g| g == lock) {
            res.granted.remove(i);
        }
        // Its receiver is closed: a later grant would skip it, but until then it would
        // block requests that conflict with it.
        res.waiting.retain(|w| !w.wake.is_closed());
        res.grant_waiters();
        if res.is_idle() {
            table.remove(key);
        }
    }

    fn release(&self, key: &Key, owner: Owner, span: &Span) -> FopResult<()> {
        let mut table = self.table()?;
        let Some(res) = table.get_mut(key) else {
            return Ok(());
        };
        res.granted
            .retain(|g| !(g.owner == owner && g.span.overlaps(span)));
        res.grant_waiters();
        if res.is_idle() {
            table.remove(key);
        }
        Ok(())
    }

    async fn lock_or_unlock(
        &self,
        key: Key,
        owner: Owner,
        kind: LockType,
        span: Span,
        wait: LockWait,
    ) -> FopResult<()> {
        match kind {
            LockType::Unlock => self.release(&key, owner, &span),
            LockType::Read | LockType::Write => {
                let held = Held {
                    owner,
                    write: kind == LockType::Write,
                    span,
                };
                self.acquire(key, held, wait).await
            }
        }
    }
}

fn owner(cx: &Cx) -> Owner {
    Owner {
        client: cx.client,
        lk_owner: cx.lk_owner,
    }
}

fn range(lock: &Flock) -> FopResult<Span> {
    let end = if lock.len == 0 {
        u64::MAX
    } else {
        lock.start
            .checked_add(lock.len - 1)
            .ok_or_else(|| FopError::invalid("lock range overflows"))?
    };
    Ok(Span::Range {
        start: lock.start,
        end,
    })
}

#[async_trait]
impl Translator for Locks {
    crate::xlator_base!();

    fn client_gone(&self, client: u64) {
        if let Ok(mut table) = self.table.lock() {
            if let Ok(mut g) = self.gone.lock() {
                g.add(client);
            }
            for res in table.values_mut() {
                res.granted.retain(|g| g.owner.client != client);
                res.waiting.retain(|w| w.lock.owner.client != client);
                res.grant_waiters();
            }
            table.retain(|_, r| !r.is_idle());
        }
        for child in self.base.children() {
            child.client_gone(client);
        }
    }

    async fn inodelk(
        &self,
        cx: &Cx,
        domain: String,
        target: Target,
        wait: LockWait,
        lock: Flock,
        _xdata: Xdata,
    ) -> FopResult<()> {
        let gfid = target
            .gfid()
            .ok_or_else(|| FopError::invalid("inodelk needs a gfid"))?;
        let key = Key::Inode { domain, gfid };
        self.lock_or_unlock(key, owner(cx), lock.kind, range(&lock)?, wait)
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
        _xdata: Xdata,
    ) -> FopResult<()> {
        let dir = loc.require_gfid()?;
        let key = Key::Entry { domain, dir };
        self.lock_or_unlock(key, owner(cx), kind, Span::Name(name), wait)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fops::FopKind;
    use crate::testing::{MockLeaf, conformance_except};
    use std::time::Duration;

    fn cx(client: u64, lk_owner: u64) -> Cx {
        Cx {
            client,
            lk_owner,
            ..Cx::default()
        }
    }

    fn target() -> Target {
        Target::Loc(Loc::inode(Gfid([9; 16])))
    }

    fn lk(kind: LockType, start: u64, len: u64) -> Flock {
        Flock { kind, start, len }
    }

    fn locks() -> Arc<Locks> {
        Arc::new(Locks::new("locks", vec![Arc::new(MockLeaf::new())]))
    }

    async fn try_lock(l: &Locks, cx: &Cx, kind: LockType, start: u64, len: u64) -> FopResult<()> {
        l.inodelk(
            cx,
            "d".into(),
            target(),
            LockWait::NoWait,
            lk(kind, start, len),
            Xdata::new(),
        )
        .await
    }

    #[tokio::test]
    async fn every_other_fop_passes_through() {
        conformance_except(
            |child| Arc::new(Locks::new("locks", vec![child])),
            &[FopKind::Inodelk, FopKind::Entrylk],
        )
        .await;
    }

    #[tokio::test]
    async fn conflict_matrix() {
        let l = locks();
        let (a, b) = (cx(1, 1), cx(2, 1));
        try_lock(&l, &a, LockType::Read, 0, 100).await.unwrap();
        try_lock(&l, &b, LockType::Read, 50, 100).await.unwrap();
        assert_eq!(
            try_lock(&l, &b, LockType::Write, 0, 10)
                .await
                .unwrap_err()
                .errno,
            libc::EAGAIN
        );
        try_lock(&l, &b, LockType::Write, 200, 10).await.unwrap();
        // Same owner never conflicts with itself.
        try_lock(&l, &a, LockType::Write, 0, 10).await.unwrap();
        // Same lk_owner on another client is another owner.
        assert!(
            try_lock(&l, &cx(3, 1), LockType::Write, 0, 0)
                .await
                .is_err()
        );
        // A different domain is independent.
        l.inodelk(
            &b,
            "other".into(),
            target(),
            LockWait::NoWait,
            lk(LockType::Write, 0, 0),
            Xdata::new(),
        )
        .await
        .unwrap();
    }

    /// Spawns a waiting whole-file write lock request of `who` and returns once it is queued.
    async fn queue_writer(l: &Arc<Locks>, who: Cx) -> tokio::task::JoinHandle<FopResult<()>> {
        let waiting = tokio::spawn({
            let l = Arc::clone(l);
            async move {
                l.inodelk(
                    &who,
                    "d".into(),
                    target(),
                    LockWait::Wait,
                    lk(LockType::Write, 0, 0),
                    Xdata::new(),
                )
                .await
            }
        });
        while l
            .table
            .lock()
            .unwrap()
            .values()
            .all(|r| r.waiting.is_empty())
        {
            tokio::task::yield_now().await;
        }
        waiting
    }

    #[tokio::test]
    async fn a_waiter_dropped_after_its_grant_gives_the_lock_back() {
        let l = locks();
        let (a, b, c) = (cx(1, 1), cx(2, 1), cx(3, 1));
        try_lock(&l, &a, LockType::Write, 0, 0).await.unwrap();
        let waiting = queue_writer(&l, b).await;
        // The unlock grants the lock to the waiter, whose request is dropped (its task
        // cancelled) before it runs again to see the grant.
        l.inodelk(
            &a,
            "d".into(),
            target(),
            LockWait::NoWait,
            lk(LockType::Unlock, 0, 0),
            Xdata::new(),
        )
        .await
        .unwrap();
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        assert_eq!(
            l.granted_count(),
            0,
            "a lock nobody will unlock stayed held"
        );
        try_lock(&l, &c, LockType::Write, 0, 0).await.unwrap();
    }

    #[tokio::test]
    async fn a_waiter_dropped_before_its_grant_leaves_the_queue() {
        let l = locks();
        let (a, b, d) = (cx(1, 1), cx(2, 1), cx(4, 1));
        try_lock(&l, &a, LockType::Read, 0, 0).await.unwrap();
        let waiting = queue_writer(&l, b).await;
        // A queued writer keeps new readers out (no starvation)...
        assert_eq!(
            try_lock(&l, &d, LockType::Read, 0, 0)
                .await
                .unwrap_err()
                .errno,
            libc::EAGAIN
        );
        // ...until its request is dropped.
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        try_lock(&l, &d, LockType::Read, 0, 0).await.unwrap();
    }

    #[tokio::test]
    async fn unlock_wakes_waiters_in_order() {
        let l = locks();
        let (a, b, c) = (cx(1, 1), cx(2, 1), cx(3, 1));
        try_lock(&l, &a, LockType::Write, 0, 0).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (who, cxx) in [("b", b.clone()), ("c", c.clone())] {
            let (l, order) = (Arc::clone(&l), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                l.inodelk(
                    &cxx,
                    "d".into(),
                    target(),
                    LockWait::Wait,
                    lk(LockType::Write, 0, 0),
                    Xdata::new(),
                )
                .await
                .unwrap();
                order.lock().unwrap().push(who);
                l.inodelk(
                    &cxx,
                    "d".into(),
                    target(),
                    LockWait::Wait,
                    lk(LockType::Unlock, 0, 0),
                    Xdata::new(),
                )
                .await
                .unwrap();
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            order.lock().unwrap().is_empty(),
            "waiters wait while a holds the lock"
        );
        try_lock(&l, &a, LockType::Unlock, 0, 0).await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["b", "c"]);
        assert_eq!(l.granted_count(), 0);
    }

    #[tokio::test]
    async fn a_reader_queued_behind_a_writer_waits() {
        let l = locks();
        try_lock(&l, &cx(1, 1), LockType::Read, 0, 0).await.unwrap();
        let l2 = Arc::clone(&l);
        let writer = tokio::spawn(async move {
            l2.inodelk(
                &cx(2, 1),
                "d".into(),
                target(),
                LockWait::Wait,
                lk(LockType::Write, 0, 0),
                Xdata::new(),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            try_lock(&l, &cx(3, 1), LockType::Read, 0, 0)
                .await
                .unwrap_err()
                .errno,
            libc::EAGAIN,
            "a new reader may not overtake a waiting writer"
        );
        try_lock(&l, &cx(1, 1), LockType::Unlock, 0, 0)
            .await
            .unwrap();
        writer.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn disconnect_frees_locks_and_wakes_others() {
        let l = locks();
        try_lock(&l, &cx(1, 5), LockType::Write, 0, 0)
            .await
            .unwrap();
        let l2 = Arc::clone(&l);
        let waiter = tokio::spawn(async move {
            l2.inodelk(
                &cx(2, 1),
                "d".into(),
                target(),
                LockWait::Wait,
                lk(LockType::Write, 0, 0),
                Xdata::new(),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        l.client_gone(1);
        waiter.await.unwrap().unwrap();
        assert_eq!(l.granted_count(), 1);
        // A waiting client that disconnects gets ENOTCONN.
        let l3 = Arc::clone(&l);
        let doomed = tokio::spawn(async move {
            l3.inodelk(
                &cx(4, 1),
                "d".into(),
                target(),
                LockWait::Wait,
                lk(LockType::Read, 0, 0),
                Xdata::new(),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        l.client_gone(4);
        assert_eq!(doomed.await.unwrap().unwrap_err().errno, libc::ENOTCONN);
    }

    #[tokio::test]
    async fn a_request_that_runs_after_its_client_disconnected_is_refused() {
        let l = locks();
        l.client_gone(3);
        // Read from the connection before it closed, run after: never granted.
        for wait in [LockWait::NoWait, LockWait::Wait] {
            let err = l
                .inodelk(
                    &cx(3, 1),
                    "d".into(),
                    target(),
                    wait,
                    lk(LockType::Write, 0, 0),
                    Xdata::new(),
                )
                .await
                .unwrap_err();
            assert_eq!(err.errno, libc::ENOTCONN);
        }
        let err = l
            .entrylk(
                &cx(3, 1),
                "d".into(),
                Loc::inode(Gfid([9; 16])),
                None,
                LockWait::NoWait,
                LockType::Write,
                Xdata::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.errno, libc::ENOTCONN);
        assert_eq!(l.granted_count(), 0);
        // The lock stays free for the living.
        try_lock(&l, &cx(5, 1), LockType::Write, 0, 0)
            .await
            .unwrap();
    }

    #[test]
    fn disconnected_clients_are_remembered_within_a_bound() {
        let mut g = Gone::default();
        for c in 0..(GONE_KEPT as u64 + 10) {
            g.add(c);
        }
        assert_eq!(g.set.len(), GONE_KEPT);
        assert!(!g.set.contains(&0));
        assert!(g.set.contains(&(GONE_KEPT as u64 + 9)));
    }

    #[tokio::test]
    async fn entry_locks_cover_names_or_whole_directories() {
        let l = locks();
        let dir = Loc::inode(Gfid([4; 16]));
        let ent = |c: &Cx, name: Option<&str>, kind| {
            let l = Arc::clone(&l);
            let (c, dir) = (c.clone(), dir.clone());
            let name = name.map(str::to_string);
            async move {
                l.entrylk(
                    &c,
                    "dht".into(),
                    dir,
                    name,
                    LockWait::NoWait,
                    kind,
                    Xdata::new(),
                )
                .await
            }
        };
        ent(&cx(1, 1), Some("a"), LockType::Write).await.unwrap();
        ent(&cx(2, 1), Some("b"), LockType::Write).await.unwrap();
        assert!(ent(&cx(2, 1), Some("a"), LockType::Write).await.is_err());
        assert!(
            ent(&cx(3, 1), None, LockType::Write).await.is_err(),
            "whole-dir lock conflicts with any name"
        );
        ent(&cx(1, 1), Some("a"), LockType::Unlock).await.unwrap();
        ent(&cx(2, 1), Some("b"), LockType::Unlock).await.unwrap();
        ent(&cx(3, 1), None, LockType::Write).await.unwrap();
    }

    #[test]
    fn ranges() {
        assert_eq!(
            range(&lk(LockType::Read, 10, 0)).unwrap(),
            Span::Range {
                start: 10,
                end: u64::MAX
            }
        );
        assert_eq!(
            range(&lk(LockType::Read, 10, 5)).unwrap(),
            Span::Range { start: 10, end: 14 }
        );
        assert!(range(&lk(LockType::Read, u64::MAX, 5)).is_err());
        assert!(!Span::Range { start: 0, end: 9 }.overlaps(&Span::Range { start: 10, end: 20 }));
    }
}
