//! Pure parts of distribute; behaviour over real bricks is tested in
//! `tests/tests/distribute.rs`.

use super::*;
use crate::testing::MockLeaf;

fn dht(n: usize) -> Dht {
    let children: Vec<XlatorRef> = (0..n)
        .map(|_| Arc::new(MockLeaf::new()) as XlatorRef)
        .collect();
    Dht::new("d", children, DhtConfig::default())
}

#[test]
fn small_readdir_cookies_are_encoded_in_place() {
    let d = dht(3);
    for (g, c) in [(0usize, 0u64), (1, 5), (2, (1 << 56) - 1)] {
        let off = d.encode_cookie(g, c);
        assert_eq!(off & (1 << 63), 0);
        assert_eq!(d.decode_cookie(off).unwrap(), (g, c));
    }
}

#[test]
fn big_readdir_cookies_go_through_the_table() {
    let d = dht(2);
    let big = 0x7fff_ffff_ffff_fff0u64;
    let off = d.encode_cookie(1, big);
    assert_ne!(off & (1 << 63), 0, "a 63-bit cookie cannot be packed");
    assert_eq!(d.decode_cookie(off).unwrap(), (1, big));
    let unknown = (1u64 << 63) | 0x1234_5678;
    assert_eq!(d.decode_cookie(unknown).unwrap_err().errno, libc::EINVAL);
}

#[test]
fn linkto_files_are_recognised_by_their_mode() {
    let mut iatt = Iatt {
        kind: FileKind::File,
        perm: LINKTO_MODE,
        ..Iatt::default()
    };
    let e = DirEntry {
        name: "x".into(),
        offset: 1,
        gfid: Gfid::random(),
        kind: FileKind::File,
        iatt: Some(iatt.clone()),
    };
    assert!(is_linkto_entry(&e));
    // A file being moved here by a rebalance has data but is still hidden.
    iatt.size = 1;
    assert!(is_linkto_entry(&DirEntry {
        iatt: Some(iatt.clone()),
        ..e.clone()
    }));
    iatt.size = 0;
    iatt.perm = 0o1644;
    assert!(!is_linkto_entry(&DirEntry {
        iatt: Some(iatt),
        ..e
    }));
}

#[test]
fn dht_xattrs_are_stripped_from_replies() {
    let mut x = Xdata::new();
    x.set(XATTR_LAYOUT, vec![1]);
    x.set("user.keep", vec![2]);
    strip(&mut x);
    assert!(!x.contains(XATTR_LAYOUT));
    assert!(x.contains("user.keep"));
}

#[test]
fn one_group_to_two_moves_half_the_ring() {
    let prev = Layout::new(vec![
        Some(GroupLayout {
            generation: 1,
            settled: true,
            range: Some(layout::Range {
                start: 0,
                end: u32::MAX,
            }),
        }),
        Some(GroupLayout {
            generation: 1,
            settled: true,
            range: None,
        }),
    ]);
    assert!(prev.is_complete());
    let next = layout::compute(&[100, 100], Some(&prev), 7, 2, false);
    assert_eq!(layout::moved(&prev, &next), 1 << 31);
}
