//! The `Translator` trait: one async method per file operation, pass-through by default.
//!
//! A translator holds an [`XlatorBase`] (its name, children and parents) and overrides only
//! the fops it changes; every other fop goes to its single child unchanged. Translators that
//! fan out (distribute, replicate) implement every fop explicitly.
//!
//! Besides fops, the trait carries the graph's life cycle: `start` (children first), `stop`,
//! `notify` for events that travel up (a brick connected or went away), and `client_gone`,
//! which travels down a brick graph when a client disconnects so that its locks are freed.

use std::any::Any;
use std::sync::{Arc, RwLock, Weak};

use crate::error::{FopError, FopResult};
use crate::types::Cx;

/// A shared reference to a translator in a graph.
pub type XlatorRef = Arc<dyn Translator>;

/// Something that happened below a translator, travelling up the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A subvolume became usable (for `protocol/client`: connected and handshaken).
    ChildUp {
        /// The translator that reported it first.
        origin: String,
    },
    /// A subvolume stopped being usable.
    ChildDown {
        /// The translator that reported it first.
        origin: String,
        /// Why, for logs and status output.
        reason: String,
    },
}

type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// What every translator has: a name, a type, its children and (set by the graph builder)
/// its parents.
pub struct XlatorBase {
    name: String,
    type_name: &'static str,
    children: Vec<XlatorRef>,
    parents: RwLock<Vec<Weak<dyn Translator>>>,
    listener: RwLock<Option<Listener>>,
}

impl XlatorBase {
    /// A base for a translator called `name` of type `type_name` over `children`.
    pub fn new(name: impl Into<String>, type_name: &'static str, children: Vec<XlatorRef>) -> Self {
        XlatorBase {
            name: name.into(),
            type_name,
            children,
            parents: RwLock::new(Vec::new()),
            listener: RwLock::new(None),
        }
    }

    /// The node name from the volfile.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The translator type (`"debug/io-stats"`).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The subvolumes, in volfile order.
    pub fn children(&self) -> &[XlatorRef] {
        &self.children
    }

    /// The single child that pass-through fops go to.
    pub fn child(&self) -> FopResult<&XlatorRef> {
        self.children.first().ok_or_else(|| {
            FopError::unsupported(format!(
                "{} ({}) has no subvolume to pass this operation to",
                self.name, self.type_name
            ))
        })
    }

    /// Records a parent (done by the graph builder).
    pub fn add_parent(&self, parent: Weak<dyn Translator>) {
        if let Ok(mut p) = self.parents.write() {
            p.push(parent);
        }
    }

    /// Sets the function that receives events reaching the top of the graph.
    pub fn set_listener(&self, listener: Listener) {
        if let Ok(mut l) = self.listener.write() {
            *l = Some(listener);
        }
    }

    /// Delivers an event to every parent, or to the listener when this is the top.
    pub fn notify_parents(&self, event: &Event) {
        let parents: Vec<XlatorRef> = match self.parents.read() {
            Ok(p) => p.iter().filter_map(Weak::upgrade).collect(),
            Err(_) => Vec::new(),
        };
        if parents.is_empty() {
            let listener = self.listener.read().ok().and_then(|l| l.clone());
            if let Some(listener) = listener {
                listener(event);
            }
            return;
        }
        for parent in parents {
            parent.notify(event);
        }
    }
}

/// Implements `base()` and `as_any()` for a translator whose base is in field `base`.
#[macro_export]
macro_rules! xlator_base {
    () => {
        fn base(&self) -> &$crate::xlator::XlatorBase {
            &self.base
        }
        fn as_any(&self) -> &dyn ::std::any::Any {
            self
        }
    };
}

macro_rules! define_translator_trait {
    ([$($extra:tt)*] $( $(#[$doc:meta])* fn $name:ident / $V:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        /// A node of a translator graph. See the [module documentation](self).
        #[async_trait::async_trait]
        pub trait Translator: Send + Sync + 'static {
            /// Name, children and parents.
            fn base(&self) -> &XlatorBase;

            /// For callers that need the concrete type (status, statistics).
            fn as_any(&self) -> &dyn Any;

            /// The node name.
            fn name(&self) -> &str {
                self.base().name()
            }

            /// Starts background work (connections, listeners). Called children first.
            async fn start(&self) -> FopResult<()> {
                Ok(())
            }

            /// Stops background work. Called parents first.
            async fn stop(&self) {}

            /// True when this subtree can serve operations.
            fn is_up(&self) -> bool {
                self.base().children().first().is_none_or(|c| c.is_up())
            }

            /// True when this subtree can serve operations right now. Like [`is_up`], except
            /// that a translator may be stricter in `is_up` for mounting (replicate waits for
            /// every brick just after start) than for serving (quorum is enough).
            ///
            /// [`is_up`]: Translator::is_up
            fn serves(&self) -> bool {
                self.is_up()
            }

            /// An event from a child. The default passes it up unchanged.
            fn notify(&self, event: &Event) {
                self.base().notify_parents(event)
            }

            /// A brick's client disconnected: free what it held. Travels down the graph.
            fn client_gone(&self, client: u64) {
                for child in self.base().children() {
                    child.client_gone(client);
                }
            }

            $(
                $(#[$doc])*
                async fn $name(&self, cx: &Cx, $($arg: $ty),*) -> FopResult<$ret> {
                    self.base().child()?.$name(cx, $($arg),*).await
                }
            )*
        }
    };
}

crate::with_fops!(define_translator_trait);

/// Implements every fop of a translator that wraps each call to its single child, through
/// an inherent method
/// `async fn around<T: Send + WireWalk>(&self, kind: FopKind, cx: &Cx, in_bytes: u64, call: impl Future<Output = FopResult<T>> + Send) -> FopResult<T>`
/// (`in_bytes`: payload bytes in the arguments; `WireWalk` tells the bytes returned).
/// The type needs a field `base: XlatorBase`. Used by `debug/io-stats` and `debug/error-gen`.
#[macro_export]
macro_rules! impl_wrapping_translator {
    ($t:ty) => {
        $crate::with_fops!($crate::__impl_wrapping_translator, $t);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __impl_wrapping_translator {
    ([$t:ty] $( $(#[$doc:meta])* fn $name:ident / $V:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        #[async_trait::async_trait]
        impl $crate::xlator::Translator for $t {
            $crate::xlator_base!();
            $(
                async fn $name(&self, cx: &$crate::types::Cx, $($arg: $ty),*) -> $crate::error::FopResult<$ret> {
                    let child = ::std::sync::Arc::clone(self.base.child()?);
                    let in_bytes = 0u64 $( + $crate::wire::payload_bytes(&$arg) )*;
                    self.around($crate::fops::FopKind::$V, cx, in_bytes, async move {
                        child.$name(cx, $($arg),*).await
                    }).await
                }
            )*
        }
    };
}
