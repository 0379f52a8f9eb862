//! Performance translators of the client graph: `performance/quick-read` (small files whole
//! in one round trip, served from memory), `performance/md-cache` (attributes and names
//! kept for a moment) and `performance/readdir-ahead` (listings in large batches, the next
//! one asked for ahead).

pub mod md_cache;
pub mod quick_read;
pub mod readdir_ahead;
