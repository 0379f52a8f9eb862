//! Test support: a recording leaf translator and the pass-through conformance suite.
//!
//! [`conformance`] runs every fop of the table through a translator stacked on a
//! [`MockLeaf`] and checks that the request reaches the leaf unchanged, that the leaf's reply
//! and errors come back unchanged, that events travel up and that `client_gone` travels
//! down. Every pass-through translator runs it; because the fop list comes from the fop
//! table, a new fop is covered without touching the suite.
//!
//! Available to other crates' tests with the `testing` feature.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::error::{FopError, FopResult};
use crate::fops::FopKind;
use crate::types::*;
use crate::wire::{Batch, CompoundResult, Reply, Request, dispatch};
use crate::xlator::{Event, Translator, XlatorBase, XlatorRef};

/// Values that tests can make up deterministically from a seed.
pub trait Sample {
    /// A value derived from `n`; different `n` give different values where the type allows.
    fn sample(n: u64) -> Self;
}

impl Sample for () {
    fn sample(_: u64) {}
}
impl Sample for bool {
    fn sample(n: u64) -> bool {
        n % 2 == 1
    }
}
impl Sample for u32 {
    fn sample(n: u64) -> u32 {
        (n as u32).wrapping_mul(31).wrapping_add(5)
    }
}
impl Sample for i32 {
    fn sample(n: u64) -> i32 {
        (n as i32).wrapping_mul(17).wrapping_add(2)
    }
}
impl Sample for u64 {
    fn sample(n: u64) -> u64 {
        n.wrapping_mul(1_000_003).wrapping_add(11)
    }
}
impl Sample for String {
    fn sample(n: u64) -> String {
        format!("name-{n}")
    }
}
impl Sample for Option<String> {
    fn sample(n: u64) -> Option<String> {
        Some(String::sample(n))
    }
}
impl Sample for Gfid {
    fn sample(n: u64) -> Gfid {
        let mut g = [0u8; 16];
        g[..8].copy_from_slice(&n.to_be_bytes());
        g[8..].copy_from_slice(&(!n).to_be_bytes());
        Gfid(g)
    }
}
impl Sample for Loc {
    fn sample(n: u64) -> Loc {
        Loc::entry(Gfid::sample(n), String::sample(n)).with_gfid(Gfid::sample(n + 1))
    }
}
impl Sample for Fd {
    fn sample(n: u64) -> Fd {
        Fd::with_id(n + 100, Gfid::sample(n), libc::O_RDWR)
    }
}
impl Sample for Target {
    fn sample(n: u64) -> Target {
        if n.is_multiple_of(2) {
            Target::Loc(Loc::sample(n))
        } else {
            Target::Fd(Fd::sample(n))
        }
    }
}
impl Sample for Xdata {
    fn sample(n: u64) -> Xdata {
        let mut x = Xdata::new();
        x.set_u64(format!("cairn.test.{n}"), n);
        x
    }
}
impl Sample for Payload {
    fn sample(n: u64) -> Payload {
        Payload::new(Bytes::from(vec![n as u8; (n as usize % 7) * 100 + 3]))
    }
}
impl Sample for Timespec {
    fn sample(n: u64) -> Timespec {
        Timespec {
            sec: 1_700_000_000 + n as i64,
            nsec: (n % 1000) as u32,
        }
    }
}
impl Sample for Iatt {
    fn sample(n: u64) -> Iatt {
        Iatt {
            gfid: Gfid::sample(n),
            kind: FileKind::File,
            perm: 0o640,
            nlink: 1,
            uid: 1000 + n as u32,
            gid: 100,
            rdev: 0,
            size: n * 4096,
            blocks: n * 8,
            blksize: 4096,
            atime: Timespec::sample(n),
            mtime: Timespec::sample(n + 1),
            ctime: Timespec::sample(n + 2),
        }
    }
}
impl Sample for Entry {
    fn sample(n: u64) -> Entry {
        Entry {
            iatt: Iatt::sample(n),
            xdata: Xdata::sample(n),
        }
    }
}
impl Sample for Vec<DirEntry> {
    fn sample(n: u64) -> Vec<DirEntry> {
        (0..3)
            .map(|i| DirEntry {
                name: String::sample(n + i),
                offset: i + 1,
                gfid: Gfid::sample(n + i),
                kind: FileKind::File,
                iatt: Some(Iatt::sample(n + i)),
            })
            .collect()
    }
}
impl Sample for SetAttr {
    fn sample(n: u64) -> SetAttr {
        SetAttr {
            perm: Some(0o600),
            uid: Some(n as u32),
            gid: None,
            atime: Some(TimeSet::Now),
            mtime: Some(TimeSet::At(Timespec::sample(n))),
        }
    }
}
impl Sample for Statfs {
    fn sample(n: u64) -> Statfs {
        Statfs {
            blocks: n * 1000,
            bfree: n * 500,
            bavail: n * 400,
            files: n * 100,
            ffree: n * 50,
            bsize: 4096,
            frsize: 4096,
            namelen: 255,
        }
    }
}
impl Sample for LockWait {
    fn sample(n: u64) -> LockWait {
        if n.is_multiple_of(2) {
            LockWait::Wait
        } else {
            LockWait::NoWait
        }
    }
}
impl Sample for LockType {
    fn sample(n: u64) -> LockType {
        if n.is_multiple_of(2) {
            LockType::Write
        } else {
            LockType::Read
        }
    }
}
impl Sample for Flock {
    fn sample(n: u64) -> Flock {
        Flock {
            kind: LockType::sample(n),
            start: n,
            len: 10,
        }
    }
}
impl Sample for XattropOp {
    fn sample(n: u64) -> XattropOp {
        if n.is_multiple_of(2) {
            XattropOp::AddArray64
        } else {
            XattropOp::AddArray64Floor
        }
    }
}
impl Sample for Whence {
    fn sample(n: u64) -> Whence {
        if n.is_multiple_of(2) {
            Whence::Data
        } else {
            Whence::Hole
        }
    }
}
impl Sample for Batch<Request> {
    fn sample(n: u64) -> Batch<Request> {
        Batch(vec![
            sample_request(FopKind::Create, n),
            sample_request(FopKind::Write, n + 1),
            sample_request(FopKind::Release, n + 2),
        ])
    }
}
impl Sample for Batch<CompoundResult> {
    fn sample(n: u64) -> Batch<CompoundResult> {
        Batch(vec![
            Ok(sample_reply(FopKind::Create, n)),
            Err(FopError::new(libc::ENOSPC, "full")),
            Err(FopError::new(libc::ECANCELED, "not run")),
        ])
    }
}

macro_rules! define_samples {
    ([$($extra:tt)*] $( $(#[$doc:meta])* fn $name:ident / $V:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        /// A request for fop `kind` with sample arguments from seed `n`.
        pub fn sample_request(kind: FopKind, n: u64) -> Request {
            match kind {
                $( FopKind::$V => Request::$V { $( $arg: <$ty as Sample>::sample(n) ),* } ),*
            }
        }

        /// A reply for fop `kind` with a sample value from seed `n`.
        pub fn sample_reply(kind: FopKind, n: u64) -> Reply {
            match kind {
                $( FopKind::$V => Reply::$V(<$ret as Sample>::sample(n)) ),*
            }
        }

        #[async_trait::async_trait]
        impl Translator for MockLeaf {
            crate::xlator_base!();

            fn client_gone(&self, client: u64) {
                self.gone.lock().unwrap().push(client);
            }

            $(
                async fn $name(&self, cx: &Cx, $($arg: $ty),*) -> FopResult<$ret> {
                    self.calls.lock().unwrap().push((cx.clone(), Request::$V { $($arg),* }));
                    if let Some(errno) = self.fail_next.lock().unwrap().take() {
                        return Err(FopError::new(errno, "mock failure"));
                    }
                    Ok(<$ret as Sample>::sample(MOCK_SEED))
                }
            )*
        }
    };
}

/// The seed of every reply a [`MockLeaf`] gives.
pub const MOCK_SEED: u64 = 7;

/// A leaf that records every call and answers with `sample_reply(kind, MOCK_SEED)`.
pub struct MockLeaf {
    base: XlatorBase,
    calls: Mutex<Vec<(Cx, Request)>>,
    fail_next: Mutex<Option<i32>>,
    gone: Mutex<Vec<u64>>,
}

crate::with_fops!(define_samples);

impl Default for MockLeaf {
    fn default() -> Self {
        MockLeaf::new()
    }
}

impl MockLeaf {
    /// A fresh mock.
    pub fn new() -> MockLeaf {
        MockLeaf {
            base: XlatorBase::new("mock", "test/mock", Vec::new()),
            calls: Mutex::new(Vec::new()),
            fail_next: Mutex::new(None),
            gone: Mutex::new(Vec::new()),
        }
    }

    /// The next call fails with `errno`.
    pub fn fail_next(&self, errno: i32) {
        *self.fail_next.lock().unwrap() = Some(errno);
    }

    /// Every call received so far, with its caller context.
    pub fn calls(&self) -> Vec<(Cx, Request)> {
        self.calls.lock().unwrap().clone()
    }

    /// Forgets recorded calls.
    pub fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }

    /// Clients reported gone.
    pub fn gone(&self) -> Vec<u64> {
        self.gone.lock().unwrap().clone()
    }
}

/// Runs the conformance suite on translators made by `make` over a mock leaf.
pub async fn conformance(make: impl Fn(XlatorRef) -> XlatorRef) {
    conformance_except(make, &[]).await
}

/// Like [`conformance`], skipping fops the translator deliberately handles itself.
pub async fn conformance_except(make: impl Fn(XlatorRef) -> XlatorRef, skip: &[FopKind]) {
    let cx = Cx {
        uid: 1000,
        gid: 100,
        pid: 4242,
        lk_owner: 77,
        client: 3,
    };
    for &kind in FopKind::ALL {
        if skip.contains(&kind) {
            continue;
        }
        let leaf = Arc::new(MockLeaf::new());
        let xl = make(leaf.clone());
        let req = sample_request(kind, 3);

        let got = dispatch(&*xl, &cx, req.clone()).await;
        assert_eq!(
            got,
            Ok(sample_reply(kind, MOCK_SEED)),
            "{kind}: the reply changed on the way up"
        );
        assert_eq!(
            leaf.calls(),
            vec![(cx.clone(), req.clone())],
            "{kind}: the request changed on the way down"
        );

        leaf.fail_next(libc::ESTALE);
        let err = dispatch(&*xl, &cx, req).await.unwrap_err();
        assert_eq!(
            err.errno,
            libc::ESTALE,
            "{kind}: the error changed on the way up"
        );
    }

    // Events travel up, client_gone travels down.
    let leaf = Arc::new(MockLeaf::new());
    let xl = make(leaf.clone());
    leaf.base().add_parent(Arc::downgrade(&xl));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    xl.base().set_listener(Arc::new(move |e: &Event| {
        sink.lock().unwrap().push(e.clone())
    }));
    let up = Event::ChildUp {
        origin: "mock".into(),
    };
    leaf.base().notify_parents(&up);
    assert_eq!(*seen.lock().unwrap(), vec![up], "events must travel up");
    xl.client_gone(99);
    assert_eq!(leaf.gone(), vec![99], "client_gone must travel down");
}
