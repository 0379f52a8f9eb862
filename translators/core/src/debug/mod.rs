//! Debug translators: `debug/io-stats` (counters), `debug/error-gen` (fault injection) and
//! `debug/delay-gen` (slow bricks on demand).

pub mod delay_gen;
pub mod error_gen;
pub mod io_stats;
