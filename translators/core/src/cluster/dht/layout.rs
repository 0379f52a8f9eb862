//! The elastic-hash layout of `cluster/distribute`: which group of bricks holds which name.
//!
//! Every basename hashes to a point of a ring of 2^32 points ([`name_hash`]). Each directory
//! has its own layout: every group (subvolume) owns at most one contiguous, inclusive
//! [`Range`] of the ring, and a new file goes to the group whose range holds its name's hash.
//!
//! Each group keeps its own slice of the layout in the [`XATTR_LAYOUT`] xattr on its copy of
//! the directory ([`GroupLayout`], 14 bytes). Reading the xattr from every group gives a
//! [`Layout`]; slices with an older generation than the newest one are stale and ignored, so a
//! fix-layout that only reached some groups leaves a layout that [`Layout::is_complete`]
//! reports as incomplete rather than one that silently overlaps.
//!
//! [`compute`] hands out a new layout, sized by capacity weight. Given the previous layout it
//! keeps the groups' ring order and places newcomers where they disturb the least, so that a
//! rebalance moves as little data as a one-range-per-group layout allows; [`moved`] measures
//! how much of the ring changes group.
//!
//! Everything here is pure: no I/O, no clocks, no randomness.

use xxhash_rust::xxh3::xxh3_64;

/// The xattr on each copy of a directory holding that group's slice of the layout
/// ([`GroupLayout::encode`]).
pub const XATTR_LAYOUT: &str = "trusted.cairn.dht.layout";

/// The xattr on a linkto pointer file: the name (UTF-8) of the group translator holding the
/// data.
pub const XATTR_LINKTO: &str = "trusted.cairn.dht.linkto";

/// The number of points of the hash ring (2^32).
pub const RING: u64 = 1 << 32;

/// The only format byte [`GroupLayout::encode`] writes and [`GroupLayout::decode`] accepts.
const FORMAT: u8 = 1;
/// Flag bit: every file of the directory is in its hashed group.
const FLAG_SETTLED: u8 = 0b01;
/// Flag bit: the slice has a range.
const FLAG_RANGE: u8 = 0b10;
/// The size of an encoded [`GroupLayout`].
const ENCODED_LEN: usize = 14;

/// The 32-bit hash of a basename: the high 32 bits of `xxh3_64` of the name's bytes.
///
/// With `rsync_friendly`, a temporary name in rsync's form `.NAME.XXXXXX` (a `.`, a
/// non-empty `NAME`, a `.`, then exactly six ASCII letters or digits, nothing else) hashes as
/// `NAME`, so the file is created where its final name will live after rsync's rename.
pub fn name_hash(name: &str, rsync_friendly: bool) -> u32 {
    let key = if rsync_friendly {
        rsync_final_name(name).unwrap_or(name)
    } else {
        name
    };
    let high = xxh3_64(key.as_bytes()) >> 32;
    u32::try_from(high).unwrap_or(u32::MAX)
}

/// `NAME` when `name` is an rsync temporary name `.NAME.XXXXXX`.
fn rsync_final_name(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?;
    // ".XXXXXX" is seven ASCII bytes at the end.
    let cut = rest.len().checked_sub(7)?;
    let (final_name, suffix) = rest.split_at_checked(cut)?;
    let random = suffix.strip_prefix('.')?;
    if final_name.is_empty()
        || random.len() != 6
        || !random.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    Some(final_name)
}

/// An inclusive range of the ring: `start..=end`, with `start <= end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// The first point of the range.
    pub start: u32,
    /// The last point of the range (inclusive).
    pub end: u32,
}

impl Range {
    /// The number of points in the range (1 to 2^32; 0 only for a malformed `start > end`).
    #[allow(clippy::len_without_is_empty)] // an inclusive range always holds a point
    pub fn len(&self) -> u64 {
        (u64::from(self.end) + 1).saturating_sub(u64::from(self.start))
    }

    /// Whether `h` lies in the range.
    pub fn contains(&self, h: u32) -> bool {
        self.start <= h && h <= self.end
    }

    /// The number of points `self` and `other` have in common.
    fn overlap(&self, other: &Range) -> u64 {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        Range { start, end }.len()
    }
}

/// One group's slice of a directory's layout, as stored in [`XATTR_LAYOUT`] on that group's
/// copies of the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupLayout {
    /// Bumped by every fix-layout; mkdir writes 1.
    pub generation: u32,
    /// Every file of the directory is in its hashed group, so a miss on the hashed group is
    /// definite (no need to look on the other groups).
    pub settled: bool,
    /// The group's range of the ring; `None`: the group takes no new files in this directory.
    pub range: Option<Range>,
}

impl GroupLayout {
    /// The xattr value: exactly 14 bytes, `[format = 1][flags][generation u32 BE][start u32
    /// BE][end u32 BE]`. Flags: bit 0 settled, bit 1 has a range. Without a range, start and
    /// end are written as 0.
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0;
        if self.settled {
            flags |= FLAG_SETTLED;
        }
        if self.range.is_some() {
            flags |= FLAG_RANGE;
        }
        let (start, end) = self.range.map_or((0, 0), |r| (r.start, r.end));
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.push(FORMAT);
        out.push(flags);
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.extend_from_slice(&start.to_be_bytes());
        out.extend_from_slice(&end.to_be_bytes());
        out
    }

    /// Parses an [`XATTR_LAYOUT`] value written by [`encode`](Self::encode).
    ///
    /// Rejects a wrong length, an unknown format byte, unknown flag bits, and a range whose
    /// start is after its end. Without the range flag, the start and end bytes are ignored.
    pub fn decode(raw: &[u8]) -> Result<GroupLayout, String> {
        let bytes: &[u8; ENCODED_LEN] = raw.try_into().map_err(|_| {
            format!(
                "dht layout xattr: expected {ENCODED_LEN} bytes, got {}",
                raw.len()
            )
        })?;
        let [
            format,
            flags,
            g0,
            g1,
            g2,
            g3,
            s0,
            s1,
            s2,
            s3,
            e0,
            e1,
            e2,
            e3,
        ] = *bytes;
        if format != FORMAT {
            return Err(format!(
                "dht layout xattr: unknown format {format} (expected {FORMAT})"
            ));
        }
        let unknown = flags & !(FLAG_SETTLED | FLAG_RANGE);
        if unknown != 0 {
            return Err(format!(
                "dht layout xattr: unknown flag bits {unknown:#04x} in flags {flags:#04x}"
            ));
        }
        let generation = u32::from_be_bytes([g0, g1, g2, g3]);
        let start = u32::from_be_bytes([s0, s1, s2, s3]);
        let end = u32::from_be_bytes([e0, e1, e2, e3]);
        let range = if flags & FLAG_RANGE != 0 {
            if start > end {
                return Err(format!(
                    "dht layout xattr: range start {start:#010x} is after its end {end:#010x}"
                ));
            }
            Some(Range { start, end })
        } else {
            None
        };
        Ok(GroupLayout {
            generation,
            settled: flags & FLAG_SETTLED != 0,
            range,
        })
    }
}

/// A directory's layout as assembled from every group.
///
/// Slot `i` is group `i`'s slice; `None` when the group has no layout xattr for the
/// directory (the directory is missing there, or was never laid out). Only the slots with the
/// highest generation count; older ones are stale.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// One entry per group, in group order.
    pub slots: Vec<Option<GroupLayout>>,
}

impl Layout {
    /// A layout from one slot per group.
    pub fn new(slots: Vec<Option<GroupLayout>>) -> Layout {
        Layout { slots }
    }

    /// The highest generation among the slots (0 if there are none).
    pub fn generation(&self) -> u32 {
        self.slots
            .iter()
            .flatten()
            .map(|s| s.generation)
            .max()
            .unwrap_or(0)
    }

    /// The slots at the highest generation, with their group index.
    fn current(&self) -> impl Iterator<Item = (usize, &GroupLayout)> {
        let generation = self.generation();
        self.slots.iter().enumerate().filter_map(move |(i, s)| {
            s.as_ref()
                .filter(|s| s.generation == generation)
                .map(|s| (i, s))
        })
    }

    /// The ranges of the slots at the highest generation, with their group index.
    fn current_ranges(&self) -> impl Iterator<Item = (usize, Range)> {
        self.current().filter_map(|(i, s)| s.range.map(|r| (i, r)))
    }

    /// True when the ranges of the slots at the highest generation cover the whole ring
    /// exactly once (no hole, no overlap). Stale slots (lower generation) and slots without a
    /// range are ignored. An empty layout is not complete.
    pub fn is_complete(&self) -> bool {
        let mut ranges: Vec<Range> = self.current_ranges().map(|(_, r)| r).collect();
        ranges.sort_by_key(|r| (r.start, r.end));
        let mut next: u64 = 0;
        for r in ranges {
            if u64::from(r.start) != next || r.start > r.end {
                return false;
            }
            next = u64::from(r.end) + 1;
        }
        next == RING
    }

    /// [`is_complete`](Self::is_complete), and every slot at the highest generation is
    /// settled (including slots without a range).
    pub fn is_settled(&self) -> bool {
        self.is_complete() && self.current().all(|(_, s)| s.settled)
    }

    /// The group whose range (at the highest generation) contains `hash`; `None` if no range
    /// does. Should ranges overlap (an incomplete layout), the lowest group index wins.
    pub fn group_for(&self, hash: u32) -> Option<usize> {
        self.current_ranges()
            .find(|(_, r)| r.contains(hash))
            .map(|(i, _)| i)
    }

    /// The slice of group `i` at the highest generation; `None` if its slot is absent, stale,
    /// has no range, or `i` is out of bounds.
    pub fn range_of(&self, i: usize) -> Option<Range> {
        let slot = self.slots.get(i)?.as_ref()?;
        if slot.generation == self.generation() {
            slot.range
        } else {
            None
        }
    }
}

/// Computes a new layout for `weights.len()` groups.
///
/// `weights[i]` is group `i`'s capacity weight (e.g. its size in bytes); 0 means the group
/// gets no range (it is leaving, or is down). Range sizes are proportional to weight: every
/// group but the last in ring order gets `floor(2^32 * w / total)` points, the last gets what
/// is left, so the whole ring is handed out. A group whose share rounds down to nothing still
/// gets one point, taken from the biggest range. Each group gets one contiguous range.
///
/// - If `prev` is `None` or not complete: a fresh layout. The groups with weight > 0 go
///   around the ring from point 0 in index order, rotated to start at the
///   `(seed % active)`-th of them, so different directories start on different groups.
/// - Otherwise the share of the ring that changes group is kept small: the groups that had
///   a range in `prev` and still have weight keep their ring order, groups with weight 0 drop
///   out, and each group that had no range is inserted, one at a time in index order, at the
///   position of the order that gives the largest total overlap with `prev` (the latest such
///   position on a tie). With unchanged groups and weights nothing moves. If no group of
///   `prev` remains, the layout is fresh.
///
/// Returns one [`GroupLayout`] per weight, each with `generation` and `settled`; groups with
/// weight 0 get range `None`. If every weight is 0, every range is `None`.
pub fn compute(
    weights: &[u64],
    prev: Option<&Layout>,
    seed: u32,
    generation: u32,
    settled: bool,
) -> Vec<GroupLayout> {
    let mut out = vec![
        GroupLayout {
            generation,
            settled,
            range: None,
        };
        weights.len()
    ];
    let active: Vec<usize> = (0..weights.len())
        .filter(|&i| weights.get(i).is_some_and(|&w| w > 0))
        .collect();
    if active.is_empty() {
        return out;
    }
    let order = match prev.filter(|p| p.is_complete()) {
        Some(prev) => relayout_order(weights, &active, prev, seed),
        None => fresh_order(&active, seed),
    };
    for (group, range) in place(&order, weights) {
        if let Some(slot) = out.get_mut(group) {
            slot.range = Some(range);
        }
    }
    out
}

/// The active groups in index order, rotated to start at the `seed % len`-th.
fn fresh_order(active: &[usize], seed: u32) -> Vec<usize> {
    let mut order = active.to_vec();
    let len = u64::try_from(order.len()).unwrap_or(u64::MAX);
    if len > 0 {
        let shift = usize::try_from(u64::from(seed) % len).unwrap_or(0);
        order.rotate_left(shift);
    }
    order
}

/// The ring order for a relayout over a complete `prev`: `prev`'s order for the groups that
/// stay, newcomers inserted greedily where they keep the most of `prev` in place.
fn relayout_order(weights: &[u64], active: &[usize], prev: &Layout, seed: u32) -> Vec<usize> {
    let mut kept: Vec<(u32, usize)> = prev
        .current_ranges()
        .filter(|&(i, _)| weights.get(i).is_some_and(|&w| w > 0))
        .map(|(i, r)| (r.start, i))
        .collect();
    kept.sort_unstable();
    let mut order: Vec<usize> = kept.into_iter().map(|(_, i)| i).collect();
    if order.is_empty() {
        return fresh_order(active, seed);
    }
    let newcomers: Vec<usize> = active
        .iter()
        .copied()
        .filter(|&i| prev.range_of(i).is_none())
        .collect();
    for (n, &group) in newcomers.iter().enumerate() {
        // Newcomers not yet placed wait at the end of the ring, so that sizes are final.
        let pending = newcomers.get(n + 1..).unwrap_or(&[]);
        let mut best: Option<(u64, usize)> = None;
        for pos in 0..=order.len() {
            let mut candidate = Vec::with_capacity(order.len() + 1 + pending.len());
            candidate.extend_from_slice(order.get(..pos).unwrap_or(&[]));
            candidate.push(group);
            candidate.extend_from_slice(order.get(pos..).unwrap_or(&[]));
            candidate.extend_from_slice(pending);
            let kept_points = overlap_with(prev, &place(&candidate, weights));
            if best.is_none_or(|(b, _)| kept_points >= b) {
                best = Some((kept_points, pos));
            }
        }
        let pos = best.map_or(order.len(), |(_, p)| p);
        let mut next = Vec::with_capacity(order.len() + 1);
        next.extend_from_slice(order.get(..pos).unwrap_or(&[]));
        next.push(group);
        next.extend_from_slice(order.get(pos..).unwrap_or(&[]));
        order = next;
    }
    order
}

/// The points that keep their group between `prev` and the placed ranges.
fn overlap_with(prev: &Layout, placed: &[(usize, Range)]) -> u64 {
    placed
        .iter()
        .filter_map(|(g, r)| prev.range_of(*g).map(|p| p.overlap(r)))
        .fold(0u64, u64::saturating_add)
}

/// `2^32 * w / total`, rounded down.
fn share(w: u64, total: u128) -> u64 {
    if total == 0 {
        return 0;
    }
    let points = u128::from(RING) * u128::from(w) / total;
    u64::try_from(points).unwrap_or(RING)
}

/// Lays out the groups of `order` around the ring from point 0, sized by weight.
fn place(order: &[usize], weights: &[u64]) -> Vec<(usize, Range)> {
    let weight_of = |g: usize| weights.get(g).copied().unwrap_or(0);
    let total = order
        .iter()
        .map(|&g| u128::from(weight_of(g)))
        .fold(0u128, u128::saturating_add);
    let mut sizes: Vec<u64> = order.iter().map(|&g| share(weight_of(g), total)).collect();
    // Rounding leftovers go to the last group in ring order.
    if let Some((last, others)) = sizes.split_last_mut() {
        let given = others.iter().fold(0u64, |a, &s| a.saturating_add(s));
        *last = RING.saturating_sub(given);
    }
    // A group whose share rounded down to nothing takes one point from the biggest range.
    for k in 0..sizes.len() {
        if sizes.get(k) != Some(&0) {
            continue;
        }
        let donor = sizes
            .iter()
            .enumerate()
            .filter(|&(_, &s)| s > 1)
            .max_by_key(|&(j, &s)| (s, std::cmp::Reverse(j)))
            .map(|(j, _)| j);
        if let Some(j) = donor {
            if let Some(s) = sizes.get_mut(j) {
                *s -= 1;
            }
            if let Some(s) = sizes.get_mut(k) {
                *s = 1;
            }
        }
    }
    let mut placed = Vec::with_capacity(order.len());
    let mut start: u64 = 0;
    for (&group, &size) in order.iter().zip(&sizes) {
        if size == 0 {
            continue;
        }
        let end = start.saturating_add(size - 1);
        placed.push((
            group,
            Range {
                start: u32::try_from(start).unwrap_or(u32::MAX),
                end: u32::try_from(end).unwrap_or(u32::MAX),
            },
        ));
        start = start.saturating_add(size);
    }
    placed
}

/// The number of ring points whose group differs between `prev` (at its highest generation)
/// and `next`. A point counts when it had a group in `prev` and has another group, or none,
/// in `next`; points without a group in `prev` never count.
pub fn moved(prev: &Layout, next: &[GroupLayout]) -> u64 {
    let next = Layout::new(next.iter().copied().map(Some).collect());
    let mut cuts: Vec<u64> = vec![0, RING];
    for (_, r) in prev.current_ranges().chain(next.current_ranges()) {
        cuts.push(u64::from(r.start));
        cuts.push(u64::from(r.end) + 1);
    }
    cuts.sort_unstable();
    cuts.dedup();
    // Group membership is constant between consecutive cuts: test one point per piece.
    let mut total: u64 = 0;
    for pair in cuts.windows(2) {
        let &[a, b] = pair else { continue };
        let Ok(point) = u32::try_from(a) else {
            continue;
        };
        let was = prev.group_for(point);
        if was.is_some() && was != next.group_for(point) {
            total = total.saturating_add(b - a);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layout_of(slices: &[GroupLayout]) -> Layout {
        Layout::new(slices.iter().copied().map(Some).collect())
    }

    fn slot(generation: u32, start: u32, end: u32) -> Option<GroupLayout> {
        Some(GroupLayout {
            generation,
            settled: true,
            range: Some(Range { start, end }),
        })
    }

    fn fraction(points: u64) -> f64 {
        points as f64 / RING as f64
    }

    /// Checks completeness and sizes of a compute() result against the weights.
    fn check_proportional(weights: &[u64], out: &[GroupLayout]) {
        assert_eq!(out.len(), weights.len());
        let active = weights.iter().filter(|&&w| w > 0).count() as u128;
        if active == 0 {
            assert!(out.iter().all(|g| g.range.is_none()));
            return;
        }
        assert!(layout_of(out).is_complete(), "{out:?}");
        let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
        let biggest = out
            .iter()
            .filter_map(|g| g.range.map(|r| r.len()))
            .max()
            .unwrap_or(0);
        for (g, w) in out.iter().zip(weights) {
            if *w == 0 {
                assert_eq!(g.range, None);
                continue;
            }
            let r = g.range.expect("active group has a range");
            // |size - share| <= 1, i.e. |size * total - RING * w| <= total.
            let size = u128::from(r.len()) * total;
            let ideal = u128::from(RING) * u128::from(*w);
            // The last group takes the rounding leftovers, the biggest one gives a point to
            // each group whose share rounds down to nothing.
            let donor = r.len() + active as u64 >= biggest;
            let slack = if r.end == u32::MAX || donor {
                active
            } else {
                1
            };
            assert!(
                size.abs_diff(ideal) <= slack * total,
                "range {r:?} weight {w} of {weights:?}"
            );
        }
    }

    // --- encoding ---

    #[test]
    fn encode_decode_round_trip() {
        let cases = [
            GroupLayout {
                generation: 1,
                settled: false,
                range: None,
            },
            GroupLayout {
                generation: 0,
                settled: true,
                range: None,
            },
            GroupLayout {
                generation: u32::MAX,
                settled: true,
                range: Some(Range {
                    start: 0,
                    end: u32::MAX,
                }),
            },
            GroupLayout {
                generation: 7,
                settled: false,
                range: Some(Range { start: 5, end: 5 }),
            },
        ];
        for case in cases {
            let raw = case.encode();
            assert_eq!(raw.len(), 14);
            assert_eq!(GroupLayout::decode(&raw), Ok(case));
        }
        let raw = GroupLayout {
            generation: 0x0102_0304,
            settled: true,
            range: Some(Range {
                start: 0x0a0b_0c0d,
                end: 0xf0f1_f2f3,
            }),
        }
        .encode();
        assert_eq!(
            raw,
            [
                1, 0b11, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0xf0, 0xf1, 0xf2, 0xf3
            ]
        );
        let none = GroupLayout {
            generation: 2,
            settled: false,
            range: None,
        }
        .encode();
        assert_eq!(none, [1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn decode_rejects_bad_values() {
        let good = GroupLayout {
            generation: 3,
            settled: true,
            range: Some(Range { start: 10, end: 20 }),
        }
        .encode();
        for len in [0, 1, 13, 15, 28] {
            let mut raw = good.clone();
            raw.resize(len, 0);
            let err = GroupLayout::decode(&raw).unwrap_err();
            assert!(err.contains("expected 14 bytes"), "{err}");
            assert!(err.contains(&format!("got {len}")), "{err}");
        }
        for format in [0u8, 2, 255] {
            let mut raw = good.clone();
            raw[0] = format;
            let err = GroupLayout::decode(&raw).unwrap_err();
            assert!(err.contains("unknown format"), "{err}");
        }
        for flags in [0b100u8, 0b1000_0011, 0xff] {
            let mut raw = good.clone();
            raw[1] = flags;
            let err = GroupLayout::decode(&raw).unwrap_err();
            assert!(err.contains("unknown flag bits"), "{err}");
        }
        let mut raw = good.clone();
        raw[6..10].copy_from_slice(&21u32.to_be_bytes());
        let err = GroupLayout::decode(&raw).unwrap_err();
        assert!(err.contains("is after its end"), "{err}");
        // Without the range flag the start/end bytes do not matter.
        raw[1] = FLAG_SETTLED;
        assert_eq!(
            GroupLayout::decode(&raw),
            Ok(GroupLayout {
                generation: 3,
                settled: true,
                range: None
            })
        );
    }

    // --- hashing ---

    fn plain(name: &str) -> u32 {
        (xxh3_64(name.as_bytes()) >> 32) as u32
    }

    #[test]
    fn name_hash_is_high_half_of_xxh3() {
        for name in ["", "a", "scan.dcm", "répertoire", ".hidden"] {
            assert_eq!(name_hash(name, false), plain(name));
            assert_eq!(name_hash(name, true), plain(name));
        }
    }

    #[test]
    fn name_hash_rsync_rule() {
        let tmp = ".scan.dcm.a1B2c3";
        assert_eq!(name_hash(tmp, true), plain("scan.dcm"));
        assert_eq!(name_hash(tmp, true), name_hash("scan.dcm", true));
        assert_eq!(name_hash(".x.abcdef", true), plain("x"));
        assert_eq!(name_hash(".é.ABC123", true), plain("é"));
        // Off: plain hash of the whole name.
        assert_eq!(name_hash(tmp, false), plain(tmp));
        assert_ne!(name_hash(tmp, false), plain("scan.dcm"));
        // Not rsync's form: plain hash.
        for name in [
            ".x.abc",     // suffix too short
            "..abcdef",   // empty NAME
            ".x.abcdefg", // suffix too long
            ".x.abc-ef",  // non-alphanumeric suffix
            "x.abcdef",   // no leading dot
            ".xabcdefg",  // no dot before the suffix
            ".x.abcdé",   // non-ASCII suffix
            ".x.abcdeé",  // non-ASCII suffix, cut inside a character
            ".abcdef",    // nothing but the suffix
            ".",
            "",
        ] {
            assert_eq!(name_hash(name, true), plain(name), "{name}");
        }
    }

    // --- ranges and layouts ---

    #[test]
    fn range_len_and_contains() {
        let whole = Range {
            start: 0,
            end: u32::MAX,
        };
        assert_eq!(whole.len(), RING);
        assert!(whole.contains(0) && whole.contains(u32::MAX));
        let r = Range { start: 10, end: 20 };
        assert_eq!(r.len(), 11);
        assert!(!r.contains(9) && r.contains(10) && r.contains(20) && !r.contains(21));
        assert_eq!(Range { start: 7, end: 7 }.len(), 1);
        assert_eq!(r.overlap(&Range { start: 15, end: 30 }), 6);
        assert_eq!(r.overlap(&Range { start: 21, end: 30 }), 0);
    }

    #[test]
    fn completeness() {
        let mid = 1u32 << 31;
        let full = Layout::new(vec![slot(2, 0, mid - 1), slot(2, mid, u32::MAX)]);
        assert!(full.is_complete());
        assert!(full.is_settled());
        assert_eq!(full.generation(), 2);

        // One group has the whole ring; others have no range or no slot.
        let single = Layout::new(vec![
            None,
            slot(1, 0, u32::MAX),
            Some(GroupLayout {
                generation: 1,
                settled: true,
                range: None,
            }),
        ]);
        assert!(single.is_complete());

        // Holes: at the start, in the middle, at the end.
        assert!(!Layout::new(vec![slot(1, 1, u32::MAX)]).is_complete());
        assert!(!Layout::new(vec![slot(1, 0, 9), slot(1, 11, u32::MAX)]).is_complete());
        assert!(!Layout::new(vec![slot(1, 0, u32::MAX - 1)]).is_complete());
        // Overlaps.
        assert!(!Layout::new(vec![slot(1, 0, 10), slot(1, 10, u32::MAX)]).is_complete());
        assert!(
            !Layout::new(vec![slot(1, 0, u32::MAX), slot(1, 5, 6)]).is_complete(),
            "nested range"
        );
        // Empty layouts.
        assert!(!Layout::default().is_complete());
        assert!(!Layout::new(vec![None, None]).is_complete());
        assert_eq!(Layout::default().generation(), 0);

        // A stale slot that overlaps is ignored.
        let stale_overlap = Layout::new(vec![
            slot(3, 0, mid - 1),
            slot(3, mid, u32::MAX),
            slot(2, 100, 200),
        ]);
        assert!(stale_overlap.is_complete());
        // A stale slot is not enough to fill a hole.
        let stale_hole = Layout::new(vec![slot(3, 0, mid - 1), slot(2, mid, u32::MAX)]);
        assert!(!stale_hole.is_complete());
        assert_eq!(stale_hole.generation(), 3);

        // Settled needs every current slot settled, stale ones do not count.
        let mut unsettled = full.clone();
        if let Some(Some(s)) = unsettled.slots.get_mut(1) {
            s.settled = false;
        }
        assert!(unsettled.is_complete() && !unsettled.is_settled());
        let mut stale_unsettled = stale_overlap.clone();
        if let Some(Some(s)) = stale_unsettled.slots.get_mut(2) {
            s.settled = false;
        }
        assert!(stale_unsettled.is_settled());
        let mut no_range_unsettled = single.clone();
        if let Some(Some(s)) = no_range_unsettled.slots.get_mut(2) {
            s.settled = false;
        }
        assert!(!no_range_unsettled.is_settled());
        assert!(!stale_hole.is_settled());
    }

    #[test]
    fn group_for_boundaries() {
        let layout = Layout::new(vec![
            slot(1, 1000, u32::MAX),
            None,
            slot(1, 0, 999),
            slot(0, 0, u32::MAX), // stale
        ]);
        assert_eq!(layout.group_for(0), Some(2));
        assert_eq!(layout.group_for(999), Some(2));
        assert_eq!(layout.group_for(1000), Some(0));
        assert_eq!(layout.group_for(u32::MAX), Some(0));
        assert_eq!(layout.group_for(u32::MAX - 1), Some(0));
        assert_eq!(
            layout.range_of(0),
            Some(Range {
                start: 1000,
                end: u32::MAX
            })
        );
        assert_eq!(layout.range_of(1), None);
        assert_eq!(layout.range_of(2), Some(Range { start: 0, end: 999 }));
        assert_eq!(layout.range_of(3), None, "stale");
        assert_eq!(layout.range_of(4), None, "out of bounds");

        let holey = Layout::new(vec![slot(1, 10, 20), slot(0, 0, u32::MAX)]);
        assert_eq!(holey.group_for(9), None);
        assert_eq!(holey.group_for(10), Some(0));
        assert_eq!(holey.group_for(20), Some(0));
        assert_eq!(holey.group_for(21), None);
        assert_eq!(holey.group_for(0), None);
        assert_eq!(holey.group_for(u32::MAX), None);
        assert_eq!(Layout::default().group_for(0), None);
    }

    // --- compute ---

    #[test]
    fn fresh_layouts_cover_the_ring_proportionally() {
        let cases: &[&[u64]] = &[
            &[1],
            &[1, 1],
            &[1, 1, 1],
            &[3, 1, 7],
            &[5, 0, 5, 0],
            &[u64::MAX, u64::MAX, u64::MAX],
            &[u64::MAX, 1 << 40, 12345],
            &[1_000_000_007, 999_999_937, 4_000_000_000_000, 2],
            &[1; 7],
        ];
        for weights in cases {
            for seed in [0, 1, 2, 5, u32::MAX] {
                let out = compute(weights, None, seed, 1, false);
                check_proportional(weights, &out);
                assert!(out.iter().all(|g| g.generation == 1 && !g.settled));
            }
        }
    }

    #[test]
    fn equal_weights_give_equal_ranges() {
        let out = compute(&[1, 1, 1], None, 0, 1, true);
        let sizes: Vec<u64> = out.iter().map(|g| g.range.unwrap().len()).collect();
        let third = RING / 3;
        assert_eq!(sizes, [third, third, RING - 2 * third]);
    }

    #[test]
    fn seed_rotates_the_first_group() {
        let first = |weights: &[u64], seed| {
            let out = compute(weights, None, seed, 1, true);
            layout_of(&out).group_for(0)
        };
        assert_eq!(first(&[1, 1, 1], 0), Some(0));
        assert_eq!(first(&[1, 1, 1], 1), Some(1));
        assert_eq!(first(&[1, 1, 1], 2), Some(2));
        assert_eq!(first(&[1, 1, 1], 4), Some(1));
        // Inactive groups are skipped: the active ones are 0 and 2.
        assert_eq!(first(&[1, 0, 1], 0), Some(0));
        assert_eq!(first(&[1, 0, 1], 1), Some(2));
        assert_eq!(first(&[1, 0, 1], 3), Some(2));
        // Order after the first group is index order, wrapping.
        let out = compute(&[1, 1, 1, 1], None, 2, 1, true);
        let layout = layout_of(&out);
        let order: Vec<usize> = [0, 1, 2, 3]
            .iter()
            .map(|q| layout.group_for((RING / 4 * q + 1) as u32).unwrap())
            .collect();
        assert_eq!(order, [2, 3, 0, 1]);
    }

    #[test]
    fn no_weight_no_range() {
        assert!(compute(&[], None, 0, 1, true).is_empty());
        let out = compute(&[0, 0, 0], None, 3, 4, true);
        assert_eq!(
            out,
            vec![
                GroupLayout {
                    generation: 4,
                    settled: true,
                    range: None
                };
                3
            ]
        );
        let prev = layout_of(&compute(&[1, 1], None, 0, 1, true));
        let out = compute(&[0, 0], Some(&prev), 0, 2, false);
        assert!(out.iter().all(|g| g.range.is_none() && g.generation == 2));
        assert_eq!(moved(&prev, &out), RING);
    }

    #[test]
    fn tiny_weight_still_gets_a_point() {
        let weights = [u64::MAX, 1, u64::MAX, 1];
        let out = compute(&weights, None, 0, 1, true);
        let layout = layout_of(&out);
        assert!(layout.is_complete());
        assert_eq!(out[1].range.unwrap().len(), 1);
        // The last group also takes the rounding leftovers.
        assert!((1..=4).contains(&out[3].range.unwrap().len()));
        check_proportional(&weights, &out);
        // And stays put in a relayout.
        let again = compute(&weights, Some(&layout), 9, 2, true);
        assert_eq!(moved(&layout, &again), 0);
    }

    #[test]
    fn two_to_three_equal_groups_moves_a_third() {
        let prev = layout_of(&compute(&[1, 1], None, 0, 1, true));
        let next = compute(&[1, 1, 1], Some(&prev), 0, 2, false);
        check_proportional(&[1, 1, 1], &next);
        let share = fraction(moved(&prev, &next));
        assert!((0.30..=0.37).contains(&share), "moved {share}");
        // Order A, NEW, B.
        let layout = layout_of(&next);
        assert_eq!(layout.group_for(0), Some(0));
        assert_eq!(layout.group_for(1 << 31), Some(2));
        assert_eq!(layout.group_for(u32::MAX), Some(1));
        assert!(next.iter().all(|g| g.generation == 2 && !g.settled));

        // Same whichever group started the ring.
        let prev = layout_of(&compute(&[1, 1], None, 1, 1, true));
        let next = compute(&[1, 1, 1], Some(&prev), 0, 2, false);
        let share = fraction(moved(&prev, &next));
        assert!((0.30..=0.37).contains(&share), "moved {share}");
    }

    #[test]
    fn three_to_four_equal_groups_moves_at_most_half() {
        for seed in 0..3 {
            let prev = layout_of(&compute(&[1, 1, 1], None, seed, 1, true));
            let next = compute(&[1, 1, 1, 1], Some(&prev), seed, 2, false);
            check_proportional(&[1, 1, 1, 1], &next);
            let share = fraction(moved(&prev, &next));
            assert!(share <= 0.5, "moved {share}");
        }
    }

    #[test]
    fn one_to_many_and_back() {
        let prev = layout_of(&compute(&[5], None, 0, 1, true));
        let next = compute(&[5, 5, 5, 5], Some(&prev), 0, 2, false);
        check_proportional(&[5, 5, 5, 5], &next);
        let share = fraction(moved(&prev, &next));
        assert!((0.74..=0.76).contains(&share), "moved {share}");
        let next_layout = layout_of(&next);
        let back = compute(&[5, 0, 0, 0], Some(&next_layout), 0, 3, false);
        assert_eq!(
            back[0].range,
            Some(Range {
                start: 0,
                end: u32::MAX
            })
        );
    }

    #[test]
    fn unchanged_input_moves_nothing() {
        let cases: &[&[u64]] = &[
            &[1],
            &[1, 1],
            &[3, 1, 7],
            &[5, 0, 5, 0, 2],
            &[u64::MAX, 7, 1 << 50],
        ];
        for weights in cases {
            for seed in [0, 1, 7] {
                let prev = layout_of(&compute(weights, None, seed, 1, true));
                let next = compute(weights, Some(&prev), seed.wrapping_add(1), 2, true);
                assert_eq!(moved(&prev, &next), 0, "{weights:?} seed {seed}");
                for (i, g) in next.iter().enumerate() {
                    assert_eq!(g.range, prev.range_of(i));
                }
            }
        }
        // Also after a relayout that added a group.
        let first = layout_of(&compute(&[1, 1], None, 0, 1, true));
        let second = layout_of(&compute(&[1, 1, 1], Some(&first), 0, 2, true));
        let third = compute(&[1, 1, 1], Some(&second), 0, 3, true);
        assert_eq!(moved(&second, &third), 0);
    }

    #[test]
    fn removing_a_group_moves_only_its_range() {
        let prev = layout_of(&compute(&[1, 1, 1], None, 0, 1, true));
        let gone = prev.range_of(1).unwrap();
        let next = compute(&[1, 0, 1], Some(&prev), 0, 2, false);
        check_proportional(&[1, 0, 1], &next);
        assert_eq!(next[1].range, None);
        assert_eq!(moved(&prev, &next), gone.len());
        // The others only grew.
        for i in [0, 2] {
            let (old, new) = (prev.range_of(i).unwrap(), next[i].range.unwrap());
            assert!(new.start <= old.start && old.end <= new.end);
        }
        // Removing a group at either end keeps the others' ring order.
        for leaving in [0, 2] {
            let mut weights = [1, 1, 1];
            weights[leaving] = 0;
            let next = compute(&weights, Some(&prev), 0, 2, false);
            check_proportional(&weights, &next);
            let m = moved(&prev, &next);
            assert!(m >= prev.range_of(leaving).unwrap().len());
            assert!(fraction(m) <= 0.51, "moved {}", fraction(m));
        }
    }

    #[test]
    fn incomplete_or_stale_prev_gives_a_fresh_layout() {
        let holey = Layout::new(vec![slot(1, 0, 100), slot(1, 200, u32::MAX)]);
        assert_eq!(
            compute(&[1, 1, 1], Some(&holey), 1, 2, true),
            compute(&[1, 1, 1], None, 1, 2, true)
        );
        // Group 1's slot is stale: it counts as a newcomer.
        let prev = Layout::new(vec![slot(2, 0, u32::MAX), slot(1, 0, u32::MAX)]);
        let next = compute(&[1, 1], Some(&prev), 0, 3, true);
        check_proportional(&[1, 1], &next);
        assert_eq!(layout_of(&next).group_for(0), Some(0));
        // More weights than slots and more slots than weights.
        let prev = layout_of(&compute(&[1, 1, 1], None, 0, 1, true));
        check_proportional(&[1, 1], &compute(&[1, 1], Some(&prev), 0, 2, true));
        check_proportional(&[1; 5], &compute(&[1; 5], Some(&prev), 0, 2, true));
        // No group of prev remains: fresh, rotated by the seed.
        let prev = layout_of(&compute(&[1, 1, 0, 0], None, 0, 1, true));
        assert_eq!(
            compute(&[0, 0, 1, 1], Some(&prev), 1, 2, true),
            compute(&[0, 0, 1, 1], None, 1, 2, true)
        );
    }

    #[test]
    fn moved_counts_only_points_that_had_a_group() {
        let prev = Layout::new(vec![slot(1, 0, 99), None, slot(1, 200, 299)]);
        let next = vec![
            GroupLayout {
                generation: 2,
                settled: true,
                range: Some(Range { start: 0, end: 99 }),
            },
            GroupLayout {
                generation: 2,
                settled: true,
                range: Some(Range {
                    start: 100,
                    end: 199,
                }),
            },
            GroupLayout {
                generation: 2,
                settled: true,
                range: Some(Range {
                    start: 200,
                    end: u32::MAX,
                }),
            },
        ];
        // The hole 100..=199 and 300.. had no group: filling them moves nothing.
        assert_eq!(moved(&prev, &next), 0);
        // Taking group 2's range away moves its 100 points.
        let mut without = next.clone();
        without[2].range = None;
        assert_eq!(moved(&prev, &without), 100);
        // Swapping groups 0 and 2 moves both.
        let mut swapped = next.clone();
        swapped[0].range = Some(Range {
            start: 200,
            end: 299,
        });
        swapped[2].range = Some(Range { start: 0, end: 99 });
        assert_eq!(moved(&prev, &swapped), 200);
        // An empty prev moves nothing; an empty next moves everything prev had.
        assert_eq!(moved(&Layout::default(), &next), 0);
        assert_eq!(moved(&prev, &[]), 200);
        let full = layout_of(&compute(&[1, 2], None, 0, 1, true));
        assert_eq!(moved(&full, &[]), RING);
    }

    // --- properties ---

    fn weight() -> impl Strategy<Value = u64> {
        prop_oneof![1 => Just(0u64), 3 => 1u64..1_000_000]
    }

    fn weights() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(weight(), 1..8)
    }

    fn any_weights() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(prop_oneof![Just(0u64), Just(1u64), any::<u64>()], 1..8)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_relayout_is_complete_and_proportional(
            w0 in weights(),
            w1 in weights(),
            w2 in weights(),
            s0 in any::<u32>(),
            s1 in any::<u32>(),
            s2 in any::<u32>(),
        ) {
            let first = layout_of(&compute(&w0, None, s0, 1, true));
            let second = compute(&w1, Some(&first), s1, 2, false);
            check_proportional(&w1, &second);
            prop_assert!(moved(&first, &second) <= RING);
            let second = layout_of(&second);
            let third = compute(&w2, Some(&second), s2, 3, true);
            check_proportional(&w2, &third);
            prop_assert!(moved(&second, &third) <= RING);
            prop_assert!(third.iter().all(|g| g.generation == 3 && g.settled));
            // Same weights again: nothing moves.
            let third = layout_of(&third);
            if w2.iter().any(|&w| w > 0) {
                prop_assert_eq!(moved(&third, &compute(&w2, Some(&third), s0, 4, true)), 0);
            }
        }

        #[test]
        fn prop_extreme_weights_are_complete(
            w0 in any_weights(),
            w1 in any_weights(),
            seed in any::<u32>(),
        ) {
            let first = compute(&w0, None, seed, 1, true);
            let first_layout = layout_of(&first);
            prop_assert_eq!(first_layout.is_complete(), w0.iter().any(|&w| w > 0));
            for (g, w) in first.iter().zip(&w0) {
                prop_assert_eq!(g.range.is_some(), *w > 0);
            }
            let second = compute(&w1, Some(&first_layout), seed, 2, true);
            prop_assert_eq!(layout_of(&second).is_complete(), w1.iter().any(|&w| w > 0));
            prop_assert!(moved(&first_layout, &second) <= RING);
        }

        #[test]
        fn prop_decode_never_panics(raw in prop::collection::vec(any::<u8>(), 0..20)) {
            if let Ok(g) = GroupLayout::decode(&raw) {
                prop_assert_eq!(GroupLayout::decode(&g.encode()), Ok(g));
            }
        }

        #[test]
        fn prop_name_hash_never_panics(name in "\\PC{0,12}", rsync in any::<bool>()) {
            let _ = name_hash(&name, rsync);
        }
    }
}
