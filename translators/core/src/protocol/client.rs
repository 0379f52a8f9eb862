//! `protocol/client`: the graph's leaf on the client side; every fop becomes one request
//! on the brick connection.
//!
//! A background task owns the connection's life: connect (with a timeout), handshake
//! (protocol version, volume id, brick id), serve, and on any failure fail the requests in
//! flight with `ENOTCONN`, report `ChildDown` up the graph, and reconnect with exponential
//! backoff. A ping every `ping-timeout / 4` and the rule "nothing received for
//! `ping-timeout`" catch a brick that hangs without closing its socket (SIGSTOP, a dead
//! host). Files open when a connection drops are reopened on the next connection, so an
//! application holding a file open survives a brick restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{FopError, FopResult};
use crate::fops::FopKind;
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::{Cx, Fd, Loc, Xdata};
use crate::wire::frame::{
    self, FrameError, FrameKind, decode_control, decode_reply, empty_frame, message_frame,
    read_frame, request_frame,
};
use crate::wire::{Hello, PROTOCOL_VERSION, Refusal, Reply, Request, RequestEnvelope, Welcome};
use crate::xlator::{Event, XlatorBase, XlatorRef};

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "remote-host",
        kind: OptionKind::Str,
        default: None,
        doc: "Host name or address of the brick's node.",
    },
    OptionSpec {
        key: "remote-port",
        kind: OptionKind::Int { min: 1, max: 65535 },
        default: None,
        doc: "TCP port of the brick process.",
    },
    OptionSpec {
        key: "volume-id",
        kind: OptionKind::Str,
        default: Some(""),
        doc: "Volume id the brick must belong to; the brick refuses a mismatch. Empty: not checked.",
    },
    OptionSpec {
        key: "remote-brick",
        kind: OptionKind::Str,
        default: Some(""),
        doc: "Brick id the client expects at that address. Empty: any brick of the volume.",
    },
    OptionSpec {
        key: "auth-secret",
        kind: OptionKind::Str,
        default: Some(""),
        doc: "The volume's secret, presented to the brick in the handshake (set by volgen).",
    },
    OptionSpec {
        key: "ping-timeout",
        kind: OptionKind::Duration {
            min_ms: 500,
            max_ms: 3_600_000,
        },
        default: Some("10s"),
        doc: "A brick that sends nothing for this long is declared down and its requests fail with ENOTCONN.",
    },
    OptionSpec {
        key: "connect-timeout",
        kind: OptionKind::Duration {
            min_ms: 100,
            max_ms: 600_000,
        },
        default: Some("5s"),
        doc: "Time allowed for one connection attempt, handshake included.",
    },
    OptionSpec {
        key: "frame-timeout",
        kind: OptionKind::Duration {
            min_ms: 1_000,
            max_ms: 86_400_000,
        },
        default: Some("1800s"),
        doc: "A request without a reply after this long fails with ETIMEDOUT.",
    },
    OptionSpec {
        key: "reconnect-max-interval",
        kind: OptionKind::Duration {
            min_ms: 50,
            max_ms: 600_000,
        },
        default: Some("3s"),
        doc: "Upper bound of the exponential backoff between reconnection attempts.",
    },
];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "protocol/client",
        arity: Arity::Leaf,
        roles: &[Role::Client],
        maturity: Maturity::Stable,
        options: OPTIONS,
        doc: "Connects to one brick and sends it every fop; reconnects, pings, reopens files.",
    },
    build,
};

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let o = ctx.options;
    let e = |e: cairn_volfiles::OptionError| e.to_string();
    let port = u16::try_from(o.int("remote-port").map_err(e)?).map_err(|x| x.to_string())?;
    let cfg = ClientConfig {
        host: o.str("remote-host").map_err(e)?.to_string(),
        port,
        volume_id: o.str("volume-id").map_err(e)?.to_string(),
        brick_id: o.str("remote-brick").map_err(e)?.to_string(),
        secret: o.str("auth-secret").map_err(e)?.to_string(),
        ping_timeout: o.duration("ping-timeout").map_err(e)?,
        connect_timeout: o.duration("connect-timeout").map_err(e)?,
        frame_timeout: o.duration("frame-timeout").map_err(e)?,
        reconnect_max: o.duration("reconnect-max-interval").map_err(e)?,
    };
    Ok(Arc::new(Client::new(ctx.name, cfg)))
}

/// How to reach a brick.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Brick host.
    pub host: String,
    /// Brick port.
    pub port: u16,
    /// Expected volume id (empty: not checked).
    pub volume_id: String,
    /// Expected brick id (empty: not checked).
    pub brick_id: String,
    /// The volume secret presented in the handshake.
    pub secret: String,
    /// Silence after which the brick is declared down.
    pub ping_timeout: Duration,
    /// Limit for connect + handshake.
    pub connect_timeout: Duration,
    /// Limit for one request.
    pub frame_timeout: Duration,
    /// Backoff ceiling.
    pub reconnect_max: Duration,
}

type ReplySlot = oneshot::Sender<FopResult<Reply>>;

/// One live connection.
struct Conn {
    queue: mpsc::Sender<frame::OutFrame>,
    pending: Mutex<HashMap<u64, ReplySlot>>,
}

impl Conn {
    fn take(&self, id: u64) -> Option<ReplySlot> {
        self.pending.lock().ok()?.remove(&id)
    }

    fn fail_all(&self, why: &str) {
        let slots: Vec<ReplySlot> = match self.pending.lock() {
            Ok(mut p) => p.drain().map(|(_, s)| s).collect(),
            Err(_) => Vec::new(),
        };
        for slot in slots {
            let _ = slot.send(Err(FopError::not_connected(why.to_string())));
        }
    }
}

/// A file this client has open on the brick, to reopen after a reconnection.
#[derive(Clone)]
struct OpenFile {
    fd: Fd,
    dir: bool,
}

struct Shared {
    name: String,
    cfg: ClientConfig,
    base: Arc<XlatorBase>,
    conn: RwLock<Option<Arc<Conn>>>,
    up: AtomicBool,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, OpenFile>>,
    shutdown: Notify,
    stopping: AtomicBool,
    client_uuid: String,
}

/// The client translator.
pub struct Client {
    base: Arc<XlatorBase>,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Client {
    /// A client node for the brick described by `cfg`. Nothing connects until `start`.
    pub fn new(name: &str, cfg: ClientConfig) -> Client {
        let base = Arc::new(XlatorBase::new(name, TYPE.decl.type_name, Vec::new()));
        Client {
            base: Arc::clone(&base),
            shared: Arc::new(Shared {
                name: name.to_string(),
                cfg,
                base,
                conn: RwLock::new(None),
                up: AtomicBool::new(false),
                next_id: AtomicU64::new(1),
                open: Mutex::new(HashMap::new()),
                shutdown: Notify::new(),
                stopping: AtomicBool::new(false),
                client_uuid: uuid::Uuid::new_v4().to_string(),
            }),
            task: Mutex::new(None),
        }
    }

    /// `host:port` of the brick.
    pub fn remote(&self) -> String {
        format!("{}:{}", self.shared.cfg.host, self.shared.cfg.port)
    }

    /// Number of files this client has open on the brick.
    pub fn open_files(&self) -> usize {
        self.shared.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    async fn call(&self, cx: &Cx, req: Request) -> FopResult<Reply> {
        self.shared.call(cx, req).await
    }

    /// Sends one request and checks that the reply answers the same fop.
    async fn roundtrip(&self, cx: &Cx, req: Request) -> FopResult<Reply> {
        let kind = req.kind();
        let effects = fd_effects(&req);
        let result = self.call(cx, req).await;
        self.shared.apply_fd_effects(&effects, &result);
        let reply = result?;
        if reply.kind() != kind {
            return Err(FopError::new(
                libc::EPROTO,
                format!(
                    "brick {} answered {kind} with {}",
                    self.remote(),
                    reply.kind()
                ),
            ));
        }
        Ok(reply)
    }
}

/// What a request does to the set of open files.
enum FdEffect {
    Open(OpenFile),
    Close(u64),
}

fn fd_effect(req: &Request) -> Option<FdEffect> {
    match req {
        Request::Create { fd, .. } | Request::Open { fd, .. } => Some(FdEffect::Open(OpenFile {
            fd: fd.clone(),
            dir: false,
        })),
        Request::Opendir { fd, .. } => Some(FdEffect::Open(OpenFile {
            fd: fd.clone(),
            dir: true,
        })),
        Request::Release { fd } | Request::Releasedir { fd } => Some(FdEffect::Close(fd.id())),
        _ => None,
    }
}

/// The fd effects of a request, one slot per fop (a compound has several).
fn fd_effects(req: &Request) -> Vec<Option<FdEffect>> {
    match req {
        Request::Compound { ops } => ops.0.iter().map(fd_effect).collect(),
        other => vec![fd_effect(other)],
    }
}

impl Shared {
    fn current(&self) -> FopResult<Arc<Conn>> {
        self.conn
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| {
                FopError::not_connected(format!(
                    "brick {}:{} ({}) is not connected",
                    self.cfg.host, self.cfg.port, self.name
                ))
            })
    }

    async fn call(&self, cx: &Cx, req: Request) -> FopResult<Reply> {
        let conn = self.current()?;
        self.call_on(&conn, cx, req).await
    }

    async fn call_on(&self, conn: &Conn, cx: &Cx, req: Request) -> FopResult<Reply> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kind = req.kind();
        let env = RequestEnvelope {
            cx: cx.clone(),
            req,
        };
        let out = request_frame(id, &env).map_err(|e| match e {
            FrameError::TooLarge { .. } => FopError::new(libc::E2BIG, e.to_string()),
            other => frame::fop_error(&other),
        })?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = conn.pending.lock() {
            p.insert(id, tx);
        }
        if conn.queue.send(out).await.is_err() {
            conn.take(id);
            return Err(FopError::not_connected(format!(
                "{}: connection closed",
                self.name
            )));
        }
        match tokio::time::timeout(self.cfg.frame_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(FopError::not_connected(format!(
                "{}: connection lost during {kind}",
                self.name
            ))),
            Err(_) => {
                conn.take(id);
                Err(FopError::new(
                    libc::ETIMEDOUT,
                    format!(
                        "{}: no reply to {kind} within {:?}",
                        self.name, self.cfg.frame_timeout
                    ),
                ))
            }
        }
    }

    fn apply_fd_effects(&self, effects: &[Option<FdEffect>], result: &FopResult<Reply>) {
        let per_op: Vec<bool> = match result {
            Ok(Reply::Compound(results)) => results.0.iter().map(Result::is_ok).collect(),
            Ok(_) => vec![true],
            Err(_) => vec![false; effects.len()],
        };
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        for (effect, ok) in effects
            .iter()
            .zip(per_op.iter().chain(std::iter::repeat(&false)))
        {
            match effect {
                Some(FdEffect::Open(f)) if *ok => {
                    open.insert(f.fd.id(), f.clone());
                }
                // A release frees the handle whatever the brick said.
                Some(FdEffect::Close(id)) => {
                    open.remove(id);
                }
                _ => {}
            }
        }
    }

    fn set_down(&self, reason: &str) {
        if let Ok(mut c) = self.conn.write()
            && let Some(conn) = c.take()
        {
            conn.fail_all(reason);
        }
        if self.up.swap(false, Ordering::SeqCst) {
            let brick = format!("{}:{}", self.cfg.host, self.cfg.port);
            if self.stopping.load(Ordering::SeqCst) {
                tracing::info!(client = %self.name, %brick, "disconnected from brick (client stopped)");
            } else {
                tracing::warn!(client = %self.name, %brick, %reason, "brick disconnected");
            }
            self.base.notify_parents(&Event::ChildDown {
                origin: self.name.clone(),
                reason: reason.to_string(),
            });
        }
    }

    /// Connects and shakes hands; returns the read half and the live connection.
    async fn connect(&self) -> Result<(OwnedReadHalf, Arc<Conn>, JoinHandle<()>, Welcome), String> {
        let addr = format!("{}:{}", self.cfg.host, self.cfg.port);
        let attempt = async {
            let stream = TcpStream::connect(&addr)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (mut rd, wr) = stream.into_split();
            let (queue, rx) = mpsc::channel(super::SEND_QUEUE);
            let writer = super::spawn_writer(wr, rx);
            let hello = Hello {
                protocol: PROTOCOL_VERSION,
                volume_id: self.cfg.volume_id.clone(),
                brick_id: self.cfg.brick_id.clone(),
                client_name: self.name.clone(),
                client_uuid: self.client_uuid.clone(),
                secret: self.cfg.secret.clone(),
            };
            let out = message_frame(FrameKind::Hello, 0, 0, &hello).map_err(|e| e.to_string())?;
            queue
                .send(out)
                .await
                .map_err(|_| format!("{addr}: connection closed during handshake"))?;
            let answer = read_frame(&mut rd)
                .await
                .map_err(|e| format!("{addr}: handshake failed: {e}"))?
                .ok_or_else(|| format!("{addr}: connection closed during handshake"))?;
            match answer.header.kind {
                FrameKind::Welcome => {
                    let welcome: Welcome = decode_control(&answer.control)
                        .map_err(|e| format!("{addr}: bad handshake answer: {e}"))?;
                    let conn = Arc::new(Conn {
                        queue,
                        pending: Mutex::new(HashMap::new()),
                    });
                    Ok((rd, conn, writer, welcome))
                }
                FrameKind::Refusal => {
                    writer.abort();
                    let refusal: Refusal = decode_control(&answer.control)
                        .map_err(|e| format!("{addr}: bad handshake answer: {e}"))?;
                    Err(format!(
                        "brick at {addr} refused the connection: {}",
                        refusal.reason
                    ))
                }
                other => {
                    writer.abort();
                    Err(format!(
                        "{addr}: unexpected {other:?} frame during handshake"
                    ))
                }
            }
        };
        match tokio::time::timeout(self.cfg.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer from {addr} within {:?}",
                self.cfg.connect_timeout
            )),
        }
    }

    /// Reads replies until the connection fails; returns why.
    async fn read_loop(
        &self,
        mut rd: OwnedReadHalf,
        conn: &Conn,
        last_rx: &Mutex<Instant>,
    ) -> String {
        loop {
            let frame = match read_frame(&mut rd).await {
                Ok(Some(f)) => f,
                Ok(None) => return "brick closed the connection".into(),
                Err(e) => return format!("receive failed: {e}"),
            };
            if let Ok(mut t) = last_rx.lock() {
                *t = Instant::now();
            }
            match frame.header.kind {
                FrameKind::Pong => {}
                FrameKind::Reply => {
                    let id = frame.header.id;
                    let result = match decode_reply(frame) {
                        Ok(r) => r,
                        Err(e) => return format!("malformed reply from brick: {e}"),
                    };
                    if let Some(slot) = conn.take(id) {
                        let _ = slot.send(result);
                    }
                }
                other => return format!("unexpected {other:?} frame from brick"),
            }
        }
    }

    /// Pings; returns when nothing has been received for `ping-timeout`.
    async fn ping_loop(&self, conn: &Conn, last_rx: &Mutex<Instant>) -> String {
        let period = (self.cfg.ping_timeout / 4).max(Duration::from_millis(100));
        let mut id = 0u64;
        loop {
            tokio::time::sleep(period).await;
            let silent = last_rx.lock().map(|t| t.elapsed()).unwrap_or_default();
            if silent >= self.cfg.ping_timeout {
                return format!(
                    "no answer from brick for {:.1}s (ping-timeout {:?})",
                    silent.as_secs_f64(),
                    self.cfg.ping_timeout
                );
            }
            id += 1;
            // A full queue means a lot is in flight; the silence rule still applies.
            let _ = conn.queue.try_send(empty_frame(FrameKind::Ping, id));
        }
    }

    /// Reopens the files that were open when the previous connection dropped.
    async fn reopen(&self, conn: &Conn) {
        let files: Vec<OpenFile> = match self.open.lock() {
            Ok(o) => o.values().cloned().collect(),
            Err(_) => return,
        };
        for f in files {
            let loc = Loc::inode(f.fd.gfid());
            let req = if f.dir {
                Request::Opendir {
                    loc,
                    fd: f.fd.clone(),
                    xdata: Xdata::new(),
                }
            } else {
                let flags = f.fd.flags() & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC);
                Request::Open {
                    loc,
                    flags,
                    fd: f.fd.clone(),
                    xdata: Xdata::new(),
                }
            };
            if let Err(e) = self.call_on(conn, &Cx::internal(), req).await {
                tracing::warn!(client = %self.name, fd = ?f.fd, error = %e, "could not reopen file after reconnect");
                if let Ok(mut o) = self.open.lock() {
                    o.remove(&f.fd.id());
                }
            }
        }
    }

    /// The connection's whole life, until `stop`.
    async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(50);
        let mut last_error = String::new();
        while !self.stopping.load(Ordering::SeqCst) {
            match self.connect().await {
                Ok((rd, conn, writer, welcome)) => {
                    backoff = Duration::from_millis(50);
                    last_error.clear();
                    let last_rx = Mutex::new(Instant::now());
                    if let Ok(mut c) = self.conn.write() {
                        *c = Some(Arc::clone(&conn));
                    }
                    let reason = tokio::select! {
                        r = self.read_loop(rd, &conn, &last_rx) => r,
                        r = self.ping_loop(&conn, &last_rx) => r,
                        r = async {
                            self.reopen(&conn).await;
                            self.up.store(true, Ordering::SeqCst);
                            tracing::info!(client = %self.name, brick = %welcome.brick_id, "connected to brick {}:{}", self.cfg.host, self.cfg.port);
                            self.base.notify_parents(&Event::ChildUp { origin: self.name.clone() });
                            std::future::pending::<String>().await
                        } => r,
                        _ = self.shutdown.notified() => "client stopped".to_string(),
                    };
                    writer.abort();
                    self.set_down(&reason);
                }
                Err(e) => {
                    if e != last_error {
                        tracing::warn!(client = %self.name, error = %e, "brick connection failed; retrying");
                        last_error = e;
                    }
                }
            }
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.notified() => break,
            }
            backoff = (backoff * 2).min(self.cfg.reconnect_max);
        }
        self.set_down("client stopped");
    }
}

macro_rules! impl_client_fops {
    ([$($extra:tt)*] $( $(#[$doc:meta])* fn $name:ident / $V:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        #[async_trait::async_trait]
        impl crate::xlator::Translator for Client {
            crate::xlator_base!();

            async fn start(&self) -> FopResult<()> {
                let mut task = self.task.lock().map_err(|_| FopError::eio("client state poisoned"))?;
                if task.is_none() {
                    self.shared.stopping.store(false, Ordering::SeqCst);
                    *task = Some(tokio::spawn(Arc::clone(&self.shared).run()));
                }
                Ok(())
            }

            async fn stop(&self) {
                self.shared.stopping.store(true, Ordering::SeqCst);
                self.shared.shutdown.notify_waiters();
                let task = self.task.lock().ok().and_then(|mut t| t.take());
                if let Some(task) = task {
                    let _ = task.await;
                }
            }

            fn is_up(&self) -> bool {
                self.shared.up.load(Ordering::SeqCst)
            }

            $(
                async fn $name(&self, cx: &Cx, $($arg: $ty),*) -> FopResult<$ret> {
                    match self.roundtrip(cx, Request::$V { $($arg),* }).await? {
                        Reply::$V(v) => Ok(v),
                        other => Err(FopError::new(libc::EPROTO, format!(
                            "brick answered {} with {}", FopKind::$V, other.kind()))),
                    }
                }
            )*
        }
    };
}

crate::with_fops!(impl_client_fops);
