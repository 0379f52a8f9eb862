//! The bytes of benchmark image `i`: pseudo-random (so nothing compresses or deduplicates
//! them), the same in every benchmark binary, so one can read and verify what another wrote.

/// `size` bytes of image `i`.
pub fn content(i: usize, size: usize) -> Vec<u8> {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}
