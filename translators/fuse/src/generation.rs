//! Graph generations: the client graph a mount serves now, and the ones it served before
//! that are still in use.
//!
//! A mount starts with one [`Generation`]. [`GraphSwitcher::switch`] installs a new one
//! without unmounting:
//!
//! ```text
//!            ┌── current ──▶ Generation 2 (new graph) ◀── new lookups, opens, stats …
//!  Slot ─────┤
//!            └ (replaced)    Generation 1 (old graph) ◀── in-flight fops, files opened on it
//! ```
//!
//! - Every fop takes a clone of the current `Arc<Generation>` when it starts and keeps it
//!   until it has replied, so an operation never sees its graph stop under it.
//! - Every open file or directory keeps the generation it was opened on: its reads,
//!   writes, `readdir`s and its release go to the graph whose translators know its `Fd`.
//! - When the last clone goes away (the last in-flight fop replied and the last handle
//!   opened on it was released), the generation is dropped, which stops its graph on the
//!   runtime and then frees it. Nothing accumulates per switch.
//!
//! Node ids are derived from gfids, which are the same in every graph of a volume, so the
//! inode table is shared by all generations unchanged.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use cairn_translators::{Graph, XlatorRef};
use tokio::runtime::Handle as Runtime;
use tokio::sync::watch;

/// One graph serving the mount, from its switch-in until its last user is gone.
pub(crate) struct Generation {
    number: u64,
    top: XlatorRef,
    /// Taken by `drop`, which stops the graph.
    graph: Option<Graph>,
    /// Counts this generation as alive until its graph is stopped and freed.
    token: Option<LiveToken>,
    rt: Runtime,
}

impl Generation {
    fn new(number: u64, graph: Graph, live: &Arc<watch::Sender<usize>>, rt: Runtime) -> Self {
        Generation {
            number,
            top: Arc::clone(graph.top()),
            graph: Some(graph),
            token: Some(LiveToken::new(live)),
            rt,
        }
    }

    /// The top of this generation's graph.
    pub(crate) fn top(&self) -> &XlatorRef {
        &self.top
    }

    /// 1 for the graph the mount started with, then 2, 3, …
    pub(crate) fn number(&self) -> u64 {
        self.number
    }
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generation")
            .field("number", &self.number)
            .field("top", &self.top.base().name())
            .finish()
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        let Some(graph) = self.graph.take() else {
            return;
        };
        let token = self.token.take();
        let number = self.number;
        // Nobody is served by this graph any more: its brick connections closing is
        // expected, not something to warn about.
        graph.on_event(move |event| {
            tracing::debug!(generation = number, ?event, "event from a retired graph");
        });
        // If the runtime is shutting down the task is dropped unrun; the graph and the
        // token are then freed all the same.
        drop(self.rt.spawn(async move {
            graph.stop().await;
            tracing::debug!(generation = number, "graph stopped");
            drop(graph);
            drop(token);
        }));
    }
}

/// Adds one to the live count while it exists.
struct LiveToken(Arc<watch::Sender<usize>>);

impl LiveToken {
    fn new(live: &Arc<watch::Sender<usize>>) -> LiveToken {
        live.send_modify(|n| *n += 1);
        LiveToken(Arc::clone(live))
    }
}

impl Drop for LiveToken {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The current generation of one mount. The file system holds the only strong reference;
/// switchers hold weak ones, so the slot (and the current graph with it) goes away when
/// the FUSE session ends and its last fop has replied.
pub(crate) struct Slot {
    current: RwLock<Arc<Generation>>,
    numbers: AtomicU64,
    live: Arc<watch::Sender<usize>>,
    rt: Runtime,
}

impl Slot {
    /// A slot serving `graph` as generation 1.
    pub(crate) fn new(graph: Graph, rt: Runtime) -> Arc<Slot> {
        let (live, _) = watch::channel(0usize);
        let live = Arc::new(live);
        let first = Generation::new(1, graph, &live, rt.clone());
        Arc::new(Slot {
            current: RwLock::new(Arc::new(first)),
            numbers: AtomicU64::new(1),
            live,
            rt,
        })
    }

    /// The generation new operations go to.
    pub(crate) fn current(&self) -> Arc<Generation> {
        let guard = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }

    /// Makes `graph` the current generation; returns the number it got.
    fn install(&self, graph: Graph) -> u64 {
        let number = self.numbers.fetch_add(1, Ordering::Relaxed) + 1;
        let next = Arc::new(Generation::new(number, graph, &self.live, self.rt.clone()));
        let old = {
            let mut guard = self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::replace(&mut *guard, next)
        };
        tracing::debug!(
            from = old.number(),
            to = number,
            "switched graph generation"
        );
        // Dropped outside the lock: when nobody else holds it, this starts its stop.
        drop(old);
        number
    }

    /// A switcher for this slot.
    pub(crate) fn switcher(self: &Arc<Slot>) -> GraphSwitcher {
        GraphSwitcher {
            slot: Arc::downgrade(self),
            live: Arc::clone(&self.live),
            rt: self.rt.clone(),
        }
    }
}

/// Replaces the graph a mount serves, without unmounting ([`crate::MountHandle::switcher`]).
///
/// Cheap to clone; `Send` and `Sync`. New operations go to the new graph at once; fops in
/// flight and files already open stay on the graph they started on, which is stopped and
/// freed once the last of them is done.
#[derive(Clone)]
pub struct GraphSwitcher {
    slot: Weak<Slot>,
    live: Arc<watch::Sender<usize>>,
    rt: Runtime,
}

impl GraphSwitcher {
    /// Makes `graph` (already started, and normally up: see `Translator::is_up`) the one
    /// new operations go to. Returns the new generation's number (the mount started with
    /// 1), or `None` when the mount has ended: `graph` is then stopped and dropped.
    pub fn switch(&self, graph: Graph) -> Option<u64> {
        match self.slot.upgrade() {
            Some(slot) => Some(slot.install(graph)),
            None => {
                // Stopped through the same path as any retired generation.
                drop(Generation::new(0, graph, &self.live, self.rt.clone()));
                None
            }
        }
    }

    /// Generations whose graph has not been stopped and freed yet: the current one, plus
    /// each older one while an operation or an open file still uses it (or while it is
    /// stopping). 0 once the mount has ended and every graph is stopped.
    pub fn live_generations(&self) -> usize {
        *self.live.borrow()
    }

    /// The number of the generation new operations go to, or `None` after the mount ended.
    pub fn current_generation(&self) -> Option<u64> {
        self.slot.upgrade().map(|s| s.current().number())
    }

    /// Waits until no generation is alive: after the session has ended, when every graph
    /// has been stopped. Callers bound it with a timeout (an open file on a lazily detached
    /// mount keeps its generation until the process exits).
    pub async fn stopped(&self) {
        let mut rx = self.live.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

impl fmt::Debug for GraphSwitcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphSwitcher")
            .field("current", &self.current_generation())
            .field("live", &self.live_generations())
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use cairn_translators::graph::{BuildCtx, TranslatorType};
    use cairn_translators::testing::MockLeaf;
    use cairn_translators::{Registry, XlatorRef};
    use cairn_volfiles::{Arity, Maturity, Role, TypeDecl};

    use super::*;

    fn build_mock(_ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
        Ok(Arc::new(MockLeaf::new()))
    }

    /// A one-node graph over a mock leaf.
    pub(crate) fn graph() -> Graph {
        let mut registry = Registry::new();
        registry.register(TranslatorType {
            decl: TypeDecl {
                type_name: "test/mock",
                arity: Arity::Leaf,
                roles: &[Role::Client],
                maturity: Maturity::Stable,
                options: &[],
                doc: "A mock leaf.",
            },
            build: build_mock,
        });
        let vf = cairn_volfiles::parse(
            "version: 1\nvolume: t\nrole: client\ntop: mock\n\
             graph:\n  - {name: mock, type: test/mock}\n",
        )
        .unwrap();
        Graph::from_volfile(&vf, &registry).unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Runs the runtime until `n` generations are alive (retired ones stop in a task).
    fn settle(rt: &tokio::runtime::Runtime, sw: &GraphSwitcher, n: usize) {
        let mut rx = sw.live.subscribe();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|live| *live == n))
                .await
                .unwrap_or_else(|_| panic!("live generations stuck at {}", sw.live_generations()))
                .unwrap();
        });
    }

    #[test]
    fn switching_retires_the_old_generation_once_unused() {
        let rt = runtime();
        let slot = Slot::new(graph(), rt.handle().clone());
        let sw = slot.switcher();
        assert_eq!(sw.live_generations(), 1);
        assert_eq!(sw.current_generation(), Some(1));

        // Nobody holds generation 1: it stops as soon as it is replaced.
        assert_eq!(sw.switch(graph()), Some(2));
        assert_eq!(sw.current_generation(), Some(2));
        settle(&rt, &sw, 1);

        // An operation (or open file) holding generation 2 keeps it alive.
        let held = slot.current();
        assert_eq!(held.number(), 2);
        for expected in 3..=20 {
            assert_eq!(sw.switch(graph()), Some(expected));
        }
        settle(&rt, &sw, 2);
        assert_eq!(slot.current().number(), 20);
        drop(held);
        settle(&rt, &sw, 1);
    }

    #[test]
    fn the_end_of_the_mount_stops_everything() {
        let rt = runtime();
        let slot = Slot::new(graph(), rt.handle().clone());
        let sw = slot.switcher();
        let clone = sw.clone();
        drop(slot);
        settle(&rt, &sw, 0);
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), clone.stopped())
                .await
                .unwrap();
        });
        assert_eq!(sw.current_generation(), None);
        // A switch after the end stops the graph it was given.
        assert_eq!(sw.switch(graph()), None);
        settle(&rt, &sw, 0);
        assert!(format!("{sw:?}").contains("live: 0"));
    }

    #[test]
    fn switchers_are_send_and_sync() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<GraphSwitcher>();
        check::<Arc<Generation>>();
    }
}
