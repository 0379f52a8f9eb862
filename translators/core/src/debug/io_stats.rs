//! `debug/io-stats`: counts every fop passing through, with latency and bytes.
//!
//! Pure pass-through: it changes nothing, so it can sit anywhere in a graph. Counters are
//! lock-free atomics; latencies go into power-of-two microsecond buckets, from which
//! percentiles are estimated. Each fop also gets a `tracing` event at debug level.
//! `volume profile` (a later issue) reads the same [`Stats`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};

use crate::error::FopResult;
use crate::fops::FopKind;
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::Cx;
use crate::wire::WireWalk;
use crate::xlator::{XlatorBase, XlatorRef};

const OPTIONS: &[OptionSpec] = &[OptionSpec {
    key: "latency-measurement",
    kind: OptionKind::Bool,
    default: Some("on"),
    doc: "Measure the latency of each fop (counts are always kept).",
}];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "debug/io-stats",
        arity: Arity::One,
        roles: &[Role::Client, Role::Brick],
        maturity: Maturity::Stable,
        options: OPTIONS,
        doc: "Counts fops, errors, bytes and latency; pass-through.",
    },
    build,
};

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let latency = ctx
        .options
        .bool("latency-measurement")
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(IoStats::new(ctx.name, ctx.children, latency)))
}

/// Latency buckets: bucket `i` counts calls that took `< 2^i` µs (the last one is open).
const BUCKETS: usize = 32;

#[derive(Default)]
struct FopCounters {
    calls: AtomicU64,
    errors: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

/// Counters for every fop of one io-stats node.
pub struct Stats {
    fops: Vec<FopCounters>,
    since: std::sync::Mutex<Instant>,
}

/// A point-in-time copy of one fop's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct FopSnapshot {
    /// The fop.
    pub fop: FopKind,
    /// Calls completed.
    pub calls: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Payload bytes sent down (writes).
    pub bytes_in: u64,
    /// Payload bytes returned (reads).
    pub bytes_out: u64,
    /// Mean latency in µs.
    pub avg_us: f64,
    /// Slowest call in µs.
    pub max_us: u64,
    /// Median latency estimate in µs (bucket upper bound).
    pub p50_us: u64,
    /// 99th-percentile latency estimate in µs (bucket upper bound).
    pub p99_us: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            fops: FopKind::ALL
                .iter()
                .map(|_| FopCounters::default())
                .collect(),
            since: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn counters(&self, kind: FopKind) -> Option<&FopCounters> {
        self.fops.get(kind as usize)
    }

    fn record(&self, kind: FopKind, ok: bool, us: Option<u64>, bytes_in: u64, bytes_out: u64) {
        let Some(c) = self.counters(kind) else { return };
        c.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        c.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        c.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        if let Some(us) = us {
            c.total_us.fetch_add(us, Ordering::Relaxed);
            c.max_us.fetch_max(us, Ordering::Relaxed);
            let bucket = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
            if let Some(b) = c.buckets.get(bucket) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Copies the counters of every fop that was called at least once.
    pub fn snapshot(&self) -> Vec<FopSnapshot> {
        FopKind::ALL
            .iter()
            .filter_map(|&fop| {
                let c = self.counters(fop)?;
                let calls = c.calls.load(Ordering::Relaxed);
                if calls == 0 {
                    return None;
                }
                let buckets: Vec<u64> = c
                    .buckets
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed))
                    .collect();
                let timed: u64 = buckets.iter().sum();
                Some(FopSnapshot {
                    fop,
                    calls,
                    errors: c.errors.load(Ordering::Relaxed),
                    bytes_in: c.bytes_in.load(Ordering::Relaxed),
                    bytes_out: c.bytes_out.load(Ordering::Relaxed),
                    avg_us: if timed == 0 {
                        0.0
                    } else {
                        c.total_us.load(Ordering::Relaxed) as f64 / timed as f64
                    },
                    max_us: c.max_us.load(Ordering::Relaxed),
                    p50_us: percentile(&buckets, timed, 0.50),
                    p99_us: percentile(&buckets, timed, 0.99),
                })
            })
            .collect()
    }

    /// Seconds since the counters started (or were last reset).
    pub fn elapsed_secs(&self) -> f64 {
        self.since
            .lock()
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or_default()
    }

    /// Zeroes every counter.
    pub fn reset(&self) {
        for c in &self.fops {
            for a in [
                &c.calls,
                &c.errors,
                &c.total_us,
                &c.max_us,
                &c.bytes_in,
                &c.bytes_out,
            ] {
                a.store(0, Ordering::Relaxed);
            }
            for b in &c.buckets {
                b.store(0, Ordering::Relaxed);
            }
        }
        if let Ok(mut s) = self.since.lock() {
            *s = Instant::now();
        }
    }
}

/// The upper bound (µs) of the bucket holding the `q` quantile.
fn percentile(buckets: &[u64], total: u64, q: f64) -> u64 {
    if total == 0 {
        return 0;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return 1u64 << i.min(63);
        }
    }
    u64::MAX
}

/// The io-stats translator.
pub struct IoStats {
    base: XlatorBase,
    stats: Arc<Stats>,
    latency: bool,
}

impl IoStats {
    /// An io-stats node over `children` (exactly one).
    pub fn new(name: &str, children: Vec<XlatorRef>, latency: bool) -> IoStats {
        IoStats {
            base: XlatorBase::new(name, TYPE.decl.type_name, children),
            stats: Arc::new(Stats::new()),
            latency,
        }
    }

    /// The counters, shared.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    async fn around<T: Send + WireWalk>(
        &self,
        kind: FopKind,
        cx: &Cx,
        in_bytes: u64,
        call: impl Future<Output = FopResult<T>> + Send,
    ) -> FopResult<T> {
        let start = self.latency.then(Instant::now);
        let result = call.await;
        let us = start.map(|s| u64::try_from(s.elapsed().as_micros()).unwrap_or(u64::MAX));
        let out_bytes = match &result {
            Ok(v) => crate::wire::payload_bytes(v),
            Err(_) => 0,
        };
        self.stats
            .record(kind, result.is_ok(), us, in_bytes, out_bytes);
        match &result {
            Ok(_) => tracing::debug!(
                xlator = self.base.name(),
                fop = kind.name(),
                pid = cx.pid,
                us,
                "ok"
            ),
            Err(e) => {
                tracing::debug!(xlator = self.base.name(), fop = kind.name(), pid = cx.pid, us, error = %e, "failed")
            }
        }
        result
    }
}

crate::impl_wrapping_translator!(IoStats);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MockLeaf, conformance};
    use crate::types::{Fd, Gfid, Loc, Payload, Xdata};
    use crate::xlator::Translator;

    #[tokio::test]
    async fn io_stats_passes_everything_through() {
        conformance(|child| Arc::new(IoStats::new("stats", vec![child], true))).await;
    }

    #[tokio::test]
    async fn counts_calls_errors_and_bytes() {
        let leaf = Arc::new(MockLeaf::new());
        let stats = IoStats::new("s", vec![leaf.clone()], true);
        let cx = Cx::default();
        stats
            .lookup(&cx, Loc::inode(Gfid::ROOT), Xdata::new())
            .await
            .unwrap();
        leaf.fail_next(libc::ENOENT);
        stats
            .lookup(&cx, Loc::inode(Gfid::ROOT), Xdata::new())
            .await
            .unwrap_err();
        let fd = Fd::new(Gfid::random(), 0);
        stats
            .write(
                &cx,
                fd.clone(),
                0,
                Payload::new(vec![0u8; 1000]),
                Xdata::new(),
            )
            .await
            .unwrap();
        let data = stats.read(&cx, fd, 0, 4096, Xdata::new()).await.unwrap();

        let snap = stats.stats().snapshot();
        let lookup = snap.iter().find(|s| s.fop == FopKind::Lookup).unwrap();
        assert_eq!((lookup.calls, lookup.errors), (2, 1));
        let write = snap.iter().find(|s| s.fop == FopKind::Write).unwrap();
        assert_eq!((write.calls, write.bytes_in, write.bytes_out), (1, 1000, 0));
        let read = snap.iter().find(|s| s.fop == FopKind::Read).unwrap();
        assert_eq!((read.bytes_in, read.bytes_out), (0, data.len() as u64));
        assert!(!data.is_empty());
        assert!(read.p99_us >= read.p50_us);
        assert!(
            snap.iter().all(|s| s.calls > 0),
            "only called fops are listed"
        );

        stats.stats().reset();
        assert!(stats.stats().snapshot().is_empty());
    }

    #[test]
    fn percentiles_come_from_buckets() {
        let mut b = vec![0u64; BUCKETS];
        b[3] = 98; // < 8 µs
        b[10] = 2; // < 1024 µs
        assert_eq!(percentile(&b, 100, 0.5), 8);
        assert_eq!(percentile(&b, 100, 0.99), 1024);
        assert_eq!(percentile(&b, 0, 0.5), 0);
    }
}
