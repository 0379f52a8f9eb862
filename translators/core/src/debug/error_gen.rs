//! `debug/error-gen`: fails chosen fops with a chosen errno at a chosen rate. For tests.
//!
//! Fault injection is just another translator: put it above a `protocol/client` to make a
//! brick look broken, or above `storage/posix` to make a disk look full. Decisions come
//! from a seeded generator, so a run with a fixed `random-seed` fails the same calls again.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};

use crate::error::{ERRNO_NAMES, FopError, FopResult, errno_from_name};
use crate::fops::FopKind;
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::Cx;
use crate::wire::WireWalk;
use crate::xlator::{XlatorBase, XlatorRef};

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "failure",
        kind: OptionKind::Percent,
        default: None,
        doc: "Share of the enabled fops that fail, in percent (required).",
    },
    OptionSpec {
        key: "error-no",
        kind: OptionKind::Enum(ERRNO_NAMES),
        default: Some("EIO"),
        doc: "The errno the failed fops return.",
    },
    OptionSpec {
        key: "enable",
        kind: OptionKind::List(FopKind::NAMES),
        default: Some(""),
        doc: "Comma-separated fops to fail; empty means every fop.",
    },
    OptionSpec {
        key: "random-seed",
        kind: OptionKind::Int {
            min: 0,
            max: i64::MAX,
        },
        default: Some("0"),
        doc: "Seed of the failure decisions; 0 seeds from the clock.",
    },
];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "debug/error-gen",
        arity: Arity::One,
        roles: &[Role::Client, Role::Brick],
        maturity: Maturity::Testing,
        options: OPTIONS,
        doc: "Fails chosen fops with a chosen errno at a chosen rate (fault injection for tests).",
    },
    build,
};

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let o = ctx.options;
    let failure = o.percent("failure").map_err(|e| e.to_string())?;
    let errno_name = o.str("error-no").map_err(|e| e.to_string())?;
    let errno = errno_from_name(errno_name).ok_or_else(|| format!("unknown errno {errno_name}"))?;
    let enabled: Vec<FopKind> = o
        .list("enable")
        .map_err(|e| e.to_string())?
        .iter()
        .filter_map(|n| FopKind::from_name(n))
        .collect();
    let seed = o.int("random-seed").map_err(|e| e.to_string())?;
    Ok(Arc::new(ErrorGen::new(
        ctx.name,
        ctx.children,
        failure,
        errno,
        enabled,
        seed as u64,
    )))
}

/// The error-gen translator.
pub struct ErrorGen {
    base: XlatorBase,
    /// Failure threshold out of `u64::MAX`.
    threshold: u64,
    errno: i32,
    /// Empty: every fop.
    enabled: Vec<FopKind>,
    state: AtomicU64,
}

impl ErrorGen {
    /// An error-gen node failing `failure_percent` % of the `enabled` fops with `errno`.
    pub fn new(
        name: &str,
        children: Vec<XlatorRef>,
        failure_percent: f64,
        errno: i32,
        enabled: Vec<FopKind>,
        seed: u64,
    ) -> ErrorGen {
        let fraction = (failure_percent / 100.0).clamp(0.0, 1.0);
        let threshold = if fraction >= 1.0 {
            u64::MAX
        } else {
            (fraction * u64::MAX as f64) as u64
        };
        let seed = if seed == 0 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9E37_79B9_7F4A_7C15)
        } else {
            seed
        };
        ErrorGen {
            base: XlatorBase::new(name, TYPE.decl.type_name, children),
            threshold,
            errno,
            enabled,
            state: AtomicU64::new(seed),
        }
    }

    /// splitmix64 over an atomic counter: lock-free and reproducible for a given seed.
    fn next_random(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn should_fail(&self, kind: FopKind) -> bool {
        if !self.enabled.is_empty() && !self.enabled.contains(&kind) {
            return false;
        }
        if self.threshold == 0 {
            return false;
        }
        self.threshold == u64::MAX || self.next_random() < self.threshold
    }

    async fn around<T: Send + WireWalk>(
        &self,
        kind: FopKind,
        _cx: &Cx,
        _in_bytes: u64,
        call: impl Future<Output = FopResult<T>> + Send,
    ) -> FopResult<T> {
        if self.should_fail(kind) {
            tracing::debug!(
                xlator = self.base.name(),
                fop = kind.name(),
                errno = self.errno,
                "injected failure"
            );
            return Err(FopError::new(
                self.errno,
                format!("{kind} failed by error-gen '{}'", self.base.name()),
            ));
        }
        call.await
    }
}

crate::impl_wrapping_translator!(ErrorGen);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MockLeaf, conformance};
    use crate::types::{Gfid, Loc, Xdata};
    use crate::xlator::Translator;

    #[tokio::test]
    async fn error_gen_at_zero_percent_is_pass_through() {
        conformance(|child| Arc::new(ErrorGen::new("eg", vec![child], 0.0, libc::EIO, vec![], 1)))
            .await;
    }

    #[tokio::test]
    async fn fails_only_enabled_fops_with_the_chosen_errno() {
        let leaf = Arc::new(MockLeaf::new());
        let eg = ErrorGen::new(
            "eg",
            vec![leaf.clone()],
            100.0,
            libc::ENOSPC,
            vec![FopKind::Lookup],
            1,
        );
        let cx = Cx::default();
        let err = eg
            .lookup(&cx, Loc::inode(Gfid::ROOT), Xdata::new())
            .await
            .unwrap_err();
        assert_eq!(err.errno, libc::ENOSPC);
        assert!(
            leaf.calls().is_empty(),
            "a failed fop never reaches the child"
        );
        eg.statfs(&cx, Loc::inode(Gfid::ROOT), Xdata::new())
            .await
            .unwrap();
        assert_eq!(leaf.calls().len(), 1);
    }

    #[test]
    fn rate_is_close_to_the_option_and_reproducible() {
        let run = |seed| {
            let eg = ErrorGen::new("eg", vec![], 25.0, libc::EIO, vec![], seed);
            (0..10_000)
                .map(|_| eg.should_fail(FopKind::Read))
                .collect::<Vec<_>>()
        };
        let a = run(42);
        let failed = a.iter().filter(|f| **f).count();
        assert!(
            (2_200..2_800).contains(&failed),
            "25% of 10000, got {failed}"
        );
        assert!(a == run(42), "same seed, same decisions");
        assert!(a != run(43), "another seed, other decisions");
    }

    #[test]
    fn built_from_options() {
        use cairn_volfiles::parse_options;
        let mut given = std::collections::BTreeMap::new();
        given.insert("failure".to_string(), "100".to_string());
        given.insert("error-no".to_string(), "EROFS".to_string());
        given.insert("enable".to_string(), "write, create".to_string());
        let options = parse_options(OPTIONS, &given).unwrap();
        let leaf: XlatorRef = Arc::new(MockLeaf::new());
        let xl = build(BuildCtx {
            name: "eg",
            options: &options,
            children: vec![leaf],
            volume: "v",
            role: Role::Client,
        })
        .unwrap();
        let eg = xl.as_any().downcast_ref::<ErrorGen>().unwrap();
        assert_eq!(eg.errno, libc::EROFS);
        assert_eq!(eg.enabled, vec![FopKind::Write, FopKind::Create]);
        given.insert("error-no".to_string(), "EWHATEVER".to_string());
        assert!(parse_options(OPTIONS, &given).is_err());
        given.insert("error-no".to_string(), "EIO".to_string());
        given.insert("enable".to_string(), "wirte".to_string());
        assert!(
            parse_options(OPTIONS, &given).is_err(),
            "misspelt fop names are refused"
        );
    }
}
