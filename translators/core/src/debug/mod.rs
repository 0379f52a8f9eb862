//! Debug translators: `debug/io-stats` (counters) and `debug/error-gen` (fault injection).

pub mod error_gen;
pub mod io_stats;
