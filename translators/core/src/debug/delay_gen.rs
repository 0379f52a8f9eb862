//! `debug/delay-gen`: delays chosen fops by a chosen time. For tests.
//!
//! Put it above one brick's `protocol/client` to make that brick slow for one client only:
//! two clients with different slow bricks reach the bricks in opposite orders, which is how
//! tests force the races replication must settle.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};

use crate::error::FopResult;
use crate::fops::FopKind;
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::Cx;
use crate::wire::WireWalk;
use crate::xlator::{XlatorBase, XlatorRef};

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "delay-duration",
        kind: OptionKind::Duration {
            min_ms: 0,
            max_ms: 60_000,
        },
        default: Some("0"),
        doc: "How long a delayed fop waits before it goes down.",
    },
    OptionSpec {
        key: "delay-percentage",
        kind: OptionKind::Percent,
        default: Some("100"),
        doc: "Share of the enabled fops that are delayed, in percent (every n-th, evenly spread).",
    },
    OptionSpec {
        key: "enable",
        kind: OptionKind::List(FopKind::NAMES),
        default: Some(""),
        doc: "Comma-separated fops to delay; empty means every fop.",
    },
];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "debug/delay-gen",
        arity: Arity::One,
        roles: &[Role::Client, Role::Brick],
        maturity: Maturity::Testing,
        options: OPTIONS,
        doc: "Delays chosen fops by a chosen time (to force races in tests).",
    },
    build,
};

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let o = ctx.options;
    let delay = o.duration("delay-duration").map_err(|e| e.to_string())?;
    let percent = o.percent("delay-percentage").map_err(|e| e.to_string())?;
    let enabled: Vec<FopKind> = o
        .list("enable")
        .map_err(|e| e.to_string())?
        .iter()
        .filter_map(|n| FopKind::from_name(n))
        .collect();
    Ok(Arc::new(DelayGen::new(
        ctx.name,
        ctx.children,
        delay,
        percent,
        enabled,
    )))
}

/// The delay-gen translator.
pub struct DelayGen {
    base: XlatorBase,
    delay: Duration,
    /// Delayed fops per 10,000 enabled ones.
    per_10k: u64,
    enabled: Vec<FopKind>,
    seen: AtomicU64,
}

impl DelayGen {
    /// A delay-gen node delaying `percent` % of the `enabled` fops by `delay`.
    pub fn new(
        name: &str,
        children: Vec<XlatorRef>,
        delay: Duration,
        percent: f64,
        enabled: Vec<FopKind>,
    ) -> DelayGen {
        DelayGen {
            base: XlatorBase::new(name, TYPE.decl.type_name, children),
            delay,
            per_10k: (percent.clamp(0.0, 100.0) * 100.0).round() as u64,
            enabled,
            seen: AtomicU64::new(0),
        }
    }

    fn should_delay(&self, kind: FopKind) -> bool {
        if self.delay.is_zero() || (!self.enabled.is_empty() && !self.enabled.contains(&kind)) {
            return false;
        }
        // Evenly spread: the n-th call is delayed when the running share falls short.
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        (n + 1) * self.per_10k / 10_000 > n * self.per_10k / 10_000
    }

    async fn around<T: Send + WireWalk>(
        &self,
        kind: FopKind,
        _cx: &Cx,
        _in_bytes: u64,
        call: impl Future<Output = FopResult<T>> + Send,
    ) -> FopResult<T> {
        if self.should_delay(kind) {
            tokio::time::sleep(self.delay).await;
        }
        call.await
    }
}

crate::impl_wrapping_translator!(DelayGen);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MockLeaf, conformance};

    #[tokio::test]
    async fn delay_gen_is_pass_through() {
        conformance(|child| {
            Arc::new(DelayGen::new(
                "dg",
                vec![child],
                Duration::from_millis(1),
                100.0,
                vec![],
            ))
        })
        .await;
    }

    #[test]
    fn delays_the_chosen_share_of_enabled_fops_only() {
        let leaf: XlatorRef = Arc::new(MockLeaf::new());
        let dg = DelayGen::new(
            "dg",
            vec![leaf],
            Duration::from_millis(5),
            25.0,
            vec![FopKind::Create],
        );
        let delayed = (0..100)
            .filter(|_| dg.should_delay(FopKind::Create))
            .count();
        assert_eq!(delayed, 25);
        assert!(!dg.should_delay(FopKind::Write), "not enabled");
        let none = DelayGen::new("dg", vec![], Duration::ZERO, 100.0, vec![]);
        assert!(!none.should_delay(FopKind::Read), "no duration, no delay");
    }
}
