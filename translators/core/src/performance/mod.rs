//! Performance translators of the client graph: `performance/quick-read` (small files whole
//! in one round trip, served from memory).

pub mod quick_read;
