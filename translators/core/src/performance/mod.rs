//! Performance translators of the client graph: `performance/quick-read` (small files whole
//! in one round trip, served from memory) and `performance/md-cache` (attributes and names
//! kept for a moment).

pub mod md_cache;
pub mod quick_read;
