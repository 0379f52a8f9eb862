//! Pure parts of replicate; behaviour over real bricks is tested in
//! `bricks/tests/replicate.rs`.

use super::*;
use crate::testing::MockLeaf;

fn afr(n: usize, quorum: Quorum, arbiter: bool) -> Afr {
    let children: Vec<XlatorRef> = (0..n)
        .map(|_| Arc::new(MockLeaf::new()) as XlatorRef)
        .collect();
    Afr::new(
        "r",
        children,
        AfrConfig {
            arbiter,
            quorum,
            read_policy: ReadPolicy::FirstUp,
            eager_idle: Duration::from_secs(1),
            flush_every: Duration::from_secs(1),
            heal_on_access: false,
            favorite_child: heal::Resolve::None,
        },
    )
}

#[test]
fn quorum_rules() {
    let a = afr(3, Quorum::Auto, false);
    assert!(a.quorum_met(&[0, 1]));
    assert!(a.quorum_met(&[1, 2]));
    assert!(!a.quorum_met(&[2]));
    let b = afr(2, Quorum::Auto, false);
    assert!(b.quorum_met(&[0]), "half including the first brick");
    assert!(!b.quorum_met(&[1]));
    let f = afr(3, Quorum::Fixed(3), false);
    assert!(!f.quorum_met(&[0, 1]));
    assert!(f.quorum_met(&[0, 1, 2]));
    let none = afr(3, Quorum::None, false);
    assert!(none.quorum_met(&[2]));
    assert!(!none.quorum_met(&[]));
}

fn entry(pending: &[(&str, [i64; 3])]) -> Entry {
    let mut e = Entry::default();
    for (name, c) in pending {
        let mut raw = Vec::new();
        for v in c {
            raw.extend_from_slice(&v.to_be_bytes());
        }
        e.xdata.set(txn::pending_key(name), raw);
    }
    e
}

#[test]
fn blame_decides_which_copies_are_good() {
    let a = afr(3, Quorum::Auto, false);
    // Child 0 and 1 blame child 2 for data.
    let replies = vec![
        (0, entry(&[("mock", [0, 0, 0])])),
        (1, entry(&[])),
        (2, entry(&[])),
    ];
    // Names of MockLeaf children are all "mock": build explicit names instead.
    let mut a = a;
    a.names = vec!["c0".into(), "c1".into(), "c2".into()];
    let replies2 = vec![
        (0, entry(&[("c2", [1, 0, 0])])),
        (1, entry(&[("c2", [1, 0, 0])])),
        (2, entry(&[])),
    ];
    let ctx = a.judge(&replies2);
    assert_eq!(ctx.good, 0b011);
    assert!(!ctx.split_brain);
    let _ = replies;
    // Everyone blames someone: split-brain.
    let sb = vec![
        (0, entry(&[("c1", [1, 0, 0])])),
        (1, entry(&[("c0", [1, 0, 0])])),
    ];
    let ctx = a.judge(&sb);
    assert_eq!(ctx.good, 0);
    assert!(ctx.split_brain);
    // Zero counters blame nobody.
    let clean = vec![(0, entry(&[("c1", [0, 0, 0])])), (1, entry(&[]))];
    assert_eq!(a.judge(&clean).good, 0b11);
}

#[test]
fn arbiter_is_never_a_read_source() {
    let mut a = afr(3, Quorum::Auto, true);
    a.names = vec!["c0".into(), "c1".into(), "c2".into()];
    for u in &a.up {
        u.store(true, Ordering::SeqCst);
    }
    let g = Gfid::random();
    a.set_inode(
        g,
        InodeCtx {
            good: 0b111,
            split_brain: false,
        },
    );
    assert_eq!(a.read_order(g, None).unwrap(), vec![0, 1]);
    // Only the arbiter is good: that is a split-brain for data.
    let replies = vec![
        (0, entry(&[("c0", [0, 0, 0])])),
        (2, entry(&[("c0", [1, 0, 0])])),
    ];
    let ctx = a.judge(&replies);
    assert!(
        ctx.split_brain,
        "the arbiter can never be the only good copy"
    );
}
