//! The brick protocol: what travels between `protocol/client` and `protocol/server`.
//!
//! - [`Request`] and [`Reply`] have one variant per fop, generated from the fop table, so the
//!   protocol can never fall behind the `Translator` trait.
//! - [`dispatch`] turns a decoded request into a call on a translator.
//! - [`frame`] is the byte format: a fixed header, a bincode control part and raw payload
//!   bytes, with every length checked before anything is allocated.
//! - A compound request ([`Request::Compound`]) carries several fops in one round trip.

pub mod frame;

use std::cell::Cell;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{FopError, FopResult};
use crate::fops::FopKind;
use crate::types::*;
use crate::xlator::Translator;

/// The protocol version this release speaks; sent in every frame header and the handshake.
pub const PROTOCOL_VERSION: u8 = 1;

/// The outcome of one fop inside a compound request.
pub type CompoundResult = Result<Reply, FopError>;

macro_rules! define_wire {
    ([$($extra:tt)*] $( $(#[$doc:meta])* fn $name:ident / $V:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        /// One fop with its arguments, as it travels to a brick.
        #[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
        pub enum Request {
            $( $(#[$doc])* $V { $( #[allow(missing_docs)] $arg: $ty ),* } ),*
        }

        /// The successful result of one fop.
        #[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
        pub enum Reply {
            $( $(#[$doc])* $V($ret) ),*
        }

        impl Request {
            /// Which fop this is.
            pub fn kind(&self) -> FopKind {
                match self { $( Request::$V { .. } => FopKind::$V ),* }
            }

            fn visit_payloads(&self, f: &mut dyn FnMut(&Payload)) {
                match self { $( Request::$V { $($arg),* } => { $( $arg.each_payload(f); )* } ),* }
            }

            fn visit_payloads_mut(&mut self, f: &mut dyn FnMut(&mut Payload)) {
                match self { $( Request::$V { $($arg),* } => { $( $arg.each_payload_mut(f); )* } ),* }
            }

            fn visit_fds_mut(&mut self, f: &mut dyn FnMut(&mut Fd)) {
                match self { $( Request::$V { $($arg),* } => { $( $arg.each_fd_mut(f); )* } ),* }
            }
        }

        impl Reply {
            /// Which fop this answers.
            pub fn kind(&self) -> FopKind {
                match self { $( Reply::$V(_) => FopKind::$V ),* }
            }

            fn visit_payloads(&self, f: &mut dyn FnMut(&Payload)) {
                match self { $( Reply::$V(v) => v.each_payload(f) ),* }
            }

            fn visit_payloads_mut(&mut self, f: &mut dyn FnMut(&mut Payload)) {
                match self { $( Reply::$V(v) => v.each_payload_mut(f) ),* }
            }
        }

        /// Calls the fop a request names on `xl`.
        pub async fn dispatch(xl: &dyn Translator, cx: &Cx, req: Request) -> FopResult<Reply> {
            match req {
                $( Request::$V { $($arg),* } => xl.$name(cx, $($arg),*).await.map(Reply::$V) ),*
            }
        }
    };
}

crate::with_fops!(define_wire);

/// True for the steps of a compound that run even after an earlier step failed: unlocks
/// and releases, so that a failed compound never leaves a lock held or a file open.
pub fn is_cleanup(req: &Request) -> bool {
    match req {
        Request::Inodelk { lock, .. } => lock.kind == LockType::Unlock,
        Request::Entrylk { kind, .. } => *kind == LockType::Unlock,
        Request::Release { .. } | Request::Releasedir { .. } => true,
        _ => false,
    }
}

/// Runs the fops of a compound request in order on `xl`, stopping at the first failure
/// (except for cleanup steps, see [`is_cleanup`]).
///
/// A leaf translator (storage/posix) implements `compound` with this; translators that fan
/// out run compounds through their own fops with it too.
pub async fn run_compound(
    xl: &dyn Translator,
    cx: &Cx,
    ops: Batch<Request>,
) -> FopResult<Batch<CompoundResult>> {
    let mut results = Vec::with_capacity(ops.0.len());
    let mut failed = false;
    for op in ops.0 {
        if failed && !is_cleanup(&op) {
            results.push(Err(FopError::new(
                libc::ECANCELED,
                "not run: an earlier fop in the compound failed",
            )));
            continue;
        }
        let result = if op.kind() == FopKind::Compound {
            Err(FopError::invalid("compound requests cannot be nested"))
        } else {
            dispatch(xl, cx, op).await
        };
        failed = result.is_err();
        results.push(result);
    }
    Ok(Batch(results))
}

thread_local! {
    static BATCH_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// The list inside a compound request or reply.
///
/// Decoding refuses a batch inside a batch, so a hostile frame cannot nest compound
/// requests deeply enough to exhaust the decoder's stack.
#[derive(Clone, PartialEq, Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Batch<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Batch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DepthGuard;
        impl Drop for DepthGuard {
            fn drop(&mut self) {
                BATCH_DEPTH.with(|c| c.set(c.get().saturating_sub(1)));
            }
        }
        let depth = BATCH_DEPTH.with(|c| {
            let v = c.get() + 1;
            c.set(v);
            v
        });
        let _guard = DepthGuard;
        if depth > 1 {
            return Err(serde::de::Error::custom(
                "compound requests cannot be nested",
            ));
        }
        Vec::<T>::deserialize(d).map(Batch)
    }
}

/// Walks the parts of a value the wire layer treats specially: [`Payload`]s (whose bytes
/// travel outside serde, in the order this walk visits them) and [`Fd`]s (which a server
/// maps to its own open files).
///
/// Implemented for every type a fop takes or returns, so a new fop argument type fails to
/// compile until it says whether it carries either.
pub trait WireWalk {
    /// Calls `f` on each payload.
    fn each_payload(&self, _f: &mut dyn FnMut(&Payload)) {}
    /// Calls `f` on each payload, mutably.
    fn each_payload_mut(&mut self, _f: &mut dyn FnMut(&mut Payload)) {}
    /// Calls `f` on each open-file handle, mutably.
    fn each_fd_mut(&mut self, _f: &mut dyn FnMut(&mut Fd)) {}
}

macro_rules! no_payload {
    ($($t:ty),* $(,)?) => { $( impl WireWalk for $t {} )* };
}

no_payload!(
    (),
    bool,
    u32,
    u64,
    i32,
    String,
    Option<String>,
    Loc,
    Xdata,
    Iatt,
    Entry,
    DirEntry,
    SetAttr,
    Statfs,
    LockWait,
    LockType,
    Flock,
    XattropOp,
    Whence,
);

impl WireWalk for Fd {
    fn each_fd_mut(&mut self, f: &mut dyn FnMut(&mut Fd)) {
        f(self)
    }
}

impl WireWalk for Target {
    fn each_fd_mut(&mut self, f: &mut dyn FnMut(&mut Fd)) {
        if let Target::Fd(fd) = self {
            f(fd)
        }
    }
}

impl WireWalk for Payload {
    fn each_payload(&self, f: &mut dyn FnMut(&Payload)) {
        f(self)
    }
    fn each_payload_mut(&mut self, f: &mut dyn FnMut(&mut Payload)) {
        f(self)
    }
}

impl<T: WireWalk> WireWalk for Vec<T> {
    fn each_payload(&self, f: &mut dyn FnMut(&Payload)) {
        self.iter().for_each(|v| v.each_payload(f))
    }
    fn each_payload_mut(&mut self, f: &mut dyn FnMut(&mut Payload)) {
        self.iter_mut().for_each(|v| v.each_payload_mut(f))
    }
    fn each_fd_mut(&mut self, f: &mut dyn FnMut(&mut Fd)) {
        self.iter_mut().for_each(|v| v.each_fd_mut(f))
    }
}

impl<T: WireWalk> WireWalk for Batch<T> {
    fn each_payload(&self, f: &mut dyn FnMut(&Payload)) {
        self.0.each_payload(f)
    }
    fn each_payload_mut(&mut self, f: &mut dyn FnMut(&mut Payload)) {
        self.0.each_payload_mut(f)
    }
    fn each_fd_mut(&mut self, f: &mut dyn FnMut(&mut Fd)) {
        self.0.each_fd_mut(f)
    }
}

impl WireWalk for Request {
    fn each_payload(&self, f: &mut dyn FnMut(&Payload)) {
        self.visit_payloads(f)
    }
    fn each_payload_mut(&mut self, f: &mut dyn FnMut(&mut Payload)) {
        self.visit_payloads_mut(f)
    }
    fn each_fd_mut(&mut self, f: &mut dyn FnMut(&mut Fd)) {
        self.visit_fds_mut(f)
    }
}

impl WireWalk for Reply {
    fn each_payload(&self, f: &mut dyn FnMut(&Payload)) {
        self.visit_payloads(f)
    }
    fn each_payload_mut(&mut self, f: &mut dyn FnMut(&mut Payload)) {
        self.visit_payloads_mut(f)
    }
}

impl<T: WireWalk, E> WireWalk for Result<T, E> {
    fn each_payload(&self, f: &mut dyn FnMut(&Payload)) {
        if let Ok(v) = self {
            v.each_payload(f)
        }
    }
    fn each_payload_mut(&mut self, f: &mut dyn FnMut(&mut Payload)) {
        if let Ok(v) = self {
            v.each_payload_mut(f)
        }
    }
}

/// A request as it travels: the caller's context and the fop.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// Who is calling.
    pub cx: Cx,
    /// The fop.
    pub req: Request,
}

/// The first frame a client sends on a new connection.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Hello {
    /// The client's protocol version.
    pub protocol: u8,
    /// The volume id the client expects the brick to belong to.
    pub volume_id: String,
    /// The brick id the client expects (empty: any brick of the volume).
    pub brick_id: String,
    /// The client's translator name, for logs and `volume status clients`.
    pub client_name: String,
    /// A per-process id of the client, for logs.
    pub client_uuid: String,
    /// The volume's secret, as the client got it with its volfile (empty: none).
    pub secret: String,
}

/// The server's answer to an accepted [`Hello`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Welcome {
    /// The server's protocol version.
    pub protocol: u8,
    /// The brick's id.
    pub brick_id: String,
    /// The brick's volume id.
    pub volume_id: String,
}

/// The server's answer to a refused [`Hello`]; the connection closes after it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Refusal {
    /// Why, in words the operator can act on.
    pub reason: String,
}

/// Total payload bytes inside a value (data written or read).
pub fn payload_bytes<T: WireWalk>(v: &T) -> u64 {
    let mut n = 0u64;
    v.each_payload(&mut |p| n += p.len() as u64);
    n
}

/// Collects the payload bytes of a message in wire order.
pub fn collect_payloads<T: WireWalk>(msg: &T) -> Vec<Bytes> {
    let mut out = Vec::new();
    msg.each_payload(&mut |p| out.push(p.bytes().clone()));
    out
}

/// Fills the payload placeholders of a decoded message from the frame's payload section.
/// The announced lengths must account for the section exactly.
pub fn fill_payloads<T: WireWalk>(msg: &mut T, mut section: Bytes) -> Result<(), String> {
    let mut problem = None;
    msg.each_payload_mut(&mut |p| {
        if problem.is_some() {
            return;
        }
        let want = p.wire_len();
        match usize::try_from(want) {
            Ok(n) if n <= section.len() => p.fill(section.split_to(n)),
            _ => {
                problem = Some(format!(
                    "payload of {want} bytes announced but only {} left in the frame",
                    section.len()
                ))
            }
        }
    });
    if let Some(p) = problem {
        return Err(p);
    }
    if !section.is_empty() {
        return Err(format!(
            "{} payload bytes in the frame that no field claims",
            section.len()
        ));
    }
    Ok(())
}
