//! `protocol/server`: the top of a brick graph; accepts client connections and dispatches
//! their requests into the graph below.
//!
//! Per connection: the first frame must be a `Hello` whose protocol version, volume id and
//! brick id match, or the client gets a `Refusal` saying why. After that, each request runs
//! as its own task (at most `max-inflight` at once per connection), so one slow fop never
//! blocks the others. A frame that breaks the protocol — bad magic, absurd length, garbage,
//! truncation — closes only that connection and is logged; the brick keeps serving
//! everyone else. When a connection ends, its open files are closed and `client_gone` frees
//! its locks.
//!
//! The client names its open files with its own ids; the server keeps a per-connection
//! table from those ids to its own `Fd`s, which is what lets a compound request create a
//! file and write to it in one round trip.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::{FopError, FopResult};
use crate::fops::FopKind;
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::{Cx, Fd};
use crate::wire::frame::{
    FrameKind, OutFrame, decode_control, decode_request, empty_frame, message_frame, read_frame,
    reply_frame,
};
use crate::wire::{
    Batch, CompoundResult, Hello, PROTOCOL_VERSION, Refusal, Reply, Request, Welcome, WireWalk,
    dispatch,
};
use crate::xlator::{Translator, XlatorBase, XlatorRef};

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "listen",
        kind: OptionKind::ListenAddr,
        default: None,
        doc: "Address and port to accept client connections on (port 0 picks a free one).",
    },
    OptionSpec {
        key: "volume-id",
        kind: OptionKind::Str,
        default: Some(""),
        doc: "This brick's volume id; clients that expect another volume are refused.",
    },
    OptionSpec {
        key: "brick-id",
        kind: OptionKind::Str,
        default: Some(""),
        doc: "This brick's id; clients that expect another brick are refused.",
    },
    OptionSpec {
        key: "auth-secret",
        kind: OptionKind::Str,
        default: Some(""),
        doc: "The volume's secret; clients that do not present it are refused. Empty: no secret required.",
    },
    OptionSpec {
        key: "auth-allow",
        kind: OptionKind::List(&[]),
        default: Some("*"),
        doc: "Client addresses admitted: '*', addresses, wildcards like 10.1.*.*, CIDR blocks like 10.0.0.0/8.",
    },
    OptionSpec {
        key: "auth-reject",
        kind: OptionKind::List(&[]),
        default: Some(""),
        doc: "Client addresses refused even if auth-allow admits them (same forms).",
    },
    OptionSpec {
        key: "status-file",
        kind: OptionKind::Str,
        default: Some(""),
        doc: "A file where the brick keeps the list of connected clients (address and name, one per line), for volume status clients.",
    },
    OptionSpec {
        key: "max-inflight",
        kind: OptionKind::Int { min: 1, max: 65536 },
        default: Some("256"),
        doc: "Requests executed at once per client connection; further requests wait.",
    },
    OptionSpec {
        key: "handshake-timeout",
        kind: OptionKind::Duration {
            min_ms: 100,
            max_ms: 600_000,
        },
        default: Some("10s"),
        doc: "A new connection that does not complete its handshake in this time is closed.",
    },
];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "protocol/server",
        arity: Arity::One,
        roles: &[Role::Brick],
        maturity: Maturity::Stable,
        options: OPTIONS,
        doc: "Accepts client connections to a brick and dispatches their fops into the brick graph.",
    },
    build,
};

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let o = ctx.options;
    let e = |e: cairn_volfiles::OptionError| e.to_string();
    let cfg = ServerConfig {
        listen: o.str("listen").map_err(e)?.to_string(),
        volume_id: o.str("volume-id").map_err(e)?.to_string(),
        brick_id: o.str("brick-id").map_err(e)?.to_string(),
        secret: o.str("auth-secret").map_err(e)?.to_string(),
        allow: o.list("auth-allow").map_err(e)?.to_vec(),
        reject: o.list("auth-reject").map_err(e)?.to_vec(),
        status_file: o.opt_str("status-file").map(std::path::PathBuf::from),
        max_inflight: usize::try_from(o.int("max-inflight").map_err(e)?).unwrap_or(256),
        handshake_timeout: o.duration("handshake-timeout").map_err(e)?,
    };
    for rule in cfg.allow.iter().chain(cfg.reject.iter()) {
        super::auth::check_rule(rule)
            .map_err(|e| format!("option 'auth-allow'/'auth-reject': {e}"))?;
    }
    Ok(Arc::new(Server::new(ctx.name, ctx.children, cfg)))
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `host:port` to listen on.
    pub listen: String,
    /// This brick's volume id.
    pub volume_id: String,
    /// This brick's id.
    pub brick_id: String,
    /// The volume secret clients must present (empty: none).
    pub secret: String,
    /// Admitted client addresses (see [`super::auth`]).
    pub allow: Vec<String>,
    /// Refused client addresses.
    pub reject: Vec<String>,
    /// Where to keep the list of connected clients.
    pub status_file: Option<std::path::PathBuf>,
    /// Concurrent requests per connection.
    pub max_inflight: usize,
    /// Limit for the handshake.
    pub handshake_timeout: Duration,
}

struct State {
    name: String,
    cfg: ServerConfig,
    child: XlatorRef,
    next_conn: AtomicU64,
    next_fd: AtomicU64,
    connections: AtomicU64,
    stopping: watch::Receiver<bool>,
    /// Live connections: id → (address, client name), mirrored to `status_file`.
    clients: Mutex<std::collections::BTreeMap<u64, (SocketAddr, String)>>,
}

impl State {
    fn client_joined(&self, id: u64, peer: SocketAddr, name: &str) {
        if let Ok(mut c) = self.clients.lock() {
            c.insert(id, (peer, name.to_string()));
        }
        self.write_status();
    }

    fn client_left(&self, id: u64) {
        if let Ok(mut c) = self.clients.lock() {
            c.remove(&id);
        }
        self.write_status();
    }

    /// Rewrites the status file atomically: one `address<TAB>client name` line per client.
    fn write_status(&self) {
        let Some(path) = &self.cfg.status_file else {
            return;
        };
        let text: String = match self.clients.lock() {
            Ok(c) => c.values().map(|(a, n)| format!("{a}\t{n}\n")).collect(),
            Err(_) => return,
        };
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the brick status file");
        }
    }
}

/// The server translator.
pub struct Server {
    base: XlatorBase,
    cfg: ServerConfig,
    task: Mutex<Option<JoinHandle<()>>>,
    bound: Mutex<Option<SocketAddr>>,
    stop_tx: Mutex<Option<watch::Sender<bool>>>,
}

impl Server {
    /// A server over the brick graph below it.
    pub fn new(name: &str, children: Vec<XlatorRef>, cfg: ServerConfig) -> Server {
        Server {
            base: XlatorBase::new(name, TYPE.decl.type_name, children),
            cfg,
            task: Mutex::new(None),
            bound: Mutex::new(None),
            stop_tx: Mutex::new(None),
        }
    }

    /// The address actually listened on, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.lock().ok().and_then(|b| *b)
    }
}

#[async_trait::async_trait]
impl Translator for Server {
    crate::xlator_base!();

    async fn start(&self) -> FopResult<()> {
        let child = Arc::clone(self.base.child()?);
        let listener = TcpListener::bind(&self.cfg.listen)
            .await
            .map_err(|e| FopError::io(&e, format!("cannot listen on {}", self.cfg.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| FopError::io(&e, "listener address"))?;
        if let Ok(mut b) = self.bound.lock() {
            *b = Some(addr);
        }
        let (stop_tx, stopping) = watch::channel(false);
        if let Ok(mut s) = self.stop_tx.lock() {
            *s = Some(stop_tx);
        }
        let state = Arc::new(State {
            name: self.base.name().to_string(),
            cfg: self.cfg.clone(),
            child,
            next_conn: AtomicU64::new(1),
            next_fd: AtomicU64::new(1),
            connections: AtomicU64::new(0),
            stopping,
            clients: Mutex::new(std::collections::BTreeMap::new()),
        });
        state.write_status();
        tracing::info!(server = %state.name, %addr, "brick listening");
        let task = tokio::spawn(accept_loop(listener, state));
        if let Ok(mut t) = self.task.lock() {
            *t = Some(task);
        }
        Ok(())
    }

    /// Stops accepting and closes every client connection.
    async fn stop(&self) {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            task.abort();
        }
        if let Some(tx) = self.stop_tx.lock().ok().and_then(|mut s| s.take()) {
            let _ = tx.send(true);
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(Arc::clone(&state), stream, peer));
            }
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin.
                tracing::warn!(server = %state.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Checks a client's hello against this brick; the error is the refusal reason.
fn check_hello(cfg: &ServerConfig, hello: &Hello) -> Result<(), String> {
    if hello.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "client speaks protocol {}, this brick speaks {PROTOCOL_VERSION}",
            hello.protocol
        ));
    }
    if !hello.volume_id.is_empty() && !cfg.volume_id.is_empty() && hello.volume_id != cfg.volume_id
    {
        return Err(format!(
            "client expects volume id {}, this brick belongs to volume id {}",
            hello.volume_id, cfg.volume_id
        ));
    }
    if !cfg.secret.is_empty() && hello.secret != cfg.secret {
        return Err(if hello.secret.is_empty() {
            "authentication failed: the client presented no volume secret (fetch the volfile from a pool member)".to_string()
        } else {
            "authentication failed: the client's volume secret is wrong".to_string()
        });
    }
    if !hello.brick_id.is_empty() && !cfg.brick_id.is_empty() && hello.brick_id != cfg.brick_id {
        return Err(format!(
            "client expects brick {}, this is brick {}",
            hello.brick_id, cfg.brick_id
        ));
    }
    Ok(())
}

/// The open files of one connection: client fd id → this brick's fd.
#[derive(Default)]
struct FdTable {
    map: Mutex<HashMap<u64, Fd>>,
}

impl FdTable {
    fn get(&self, client_id: u64) -> Option<Fd> {
        self.map.lock().ok()?.get(&client_id).cloned()
    }
    fn insert(&self, client_id: u64, fd: Fd) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(client_id, fd);
        }
    }
    fn remove(&self, client_id: u64) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&client_id);
        }
    }
    fn clear(&self) {
        if let Ok(mut m) = self.map.lock() {
            m.clear();
        }
    }
}

struct ConnCtx {
    state: Arc<State>,
    id: u64,
    fds: FdTable,
    queue: mpsc::Sender<OutFrame>,
}

async fn serve_connection(state: Arc<State>, stream: TcpStream, peer: SocketAddr) {
    let (mut rd, wr) = stream.into_split();
    let (queue, rx) = mpsc::channel(super::SEND_QUEUE);
    let writer = super::spawn_writer(wr, rx);

    // Handshake.
    let hello = match tokio::time::timeout(state.cfg.handshake_timeout, read_frame(&mut rd)).await {
        Err(_) => {
            tracing::warn!(server = %state.name, %peer, "closing connection: no handshake within {:?}", state.cfg.handshake_timeout);
            writer.abort();
            return;
        }
        Ok(Ok(Some(f))) if f.header.kind == FrameKind::Hello => {
            match decode_control::<Hello>(&f.control) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(server = %state.name, %peer, error = %e, "closing connection: malformed hello");
                    writer.abort();
                    return;
                }
            }
        }
        Ok(Ok(Some(f))) => {
            tracing::warn!(server = %state.name, %peer, kind = ?f.header.kind, "closing connection: expected a hello frame first");
            writer.abort();
            return;
        }
        Ok(Ok(None)) => {
            writer.abort();
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(server = %state.name, %peer, error = %e, "closing connection: bad frame during handshake");
            writer.abort();
            return;
        }
    };
    let admitted = super::auth::admitted(peer.ip(), &state.cfg.allow, &state.cfg.reject);
    let verdict = if admitted {
        check_hello(&state.cfg, &hello)
    } else {
        Err(format!(
            "address {} is not admitted by auth.allow / auth.reject",
            peer.ip()
        ))
    };
    if let Err(reason) = verdict {
        tracing::warn!(server = %state.name, %peer, client = %hello.client_name, %reason, "refused client");
        if let Ok(f) = message_frame(FrameKind::Refusal, 0, 0, &Refusal { reason }) {
            let _ = queue.send(f).await;
        }
        drop(queue);
        let _ = writer.await;
        return;
    }
    let welcome = Welcome {
        protocol: PROTOCOL_VERSION,
        brick_id: state.cfg.brick_id.clone(),
        volume_id: state.cfg.volume_id.clone(),
    };
    let Ok(f) = message_frame(FrameKind::Welcome, 0, 0, &welcome) else {
        writer.abort();
        return;
    };
    if queue.send(f).await.is_err() {
        writer.abort();
        return;
    }

    let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let live = state.connections.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::info!(server = %state.name, %peer, client = %hello.client_name, conn = id, live, "client connected");
    state.client_joined(id, peer, &hello.client_name);
    let ctx = Arc::new(ConnCtx {
        state: Arc::clone(&state),
        id,
        fds: FdTable::default(),
        queue,
    });
    let inflight = Arc::new(Semaphore::new(state.cfg.max_inflight));

    let mut stopping = state.stopping.clone();
    let why = loop {
        let next = tokio::select! {
            r = read_frame(&mut rd) => r,
            _ = stopping.changed() => break None,
        };
        let frame = match next {
            Ok(Some(f)) => f,
            Ok(None) => break None,
            Err(e) => break Some(e.to_string()),
        };
        match frame.header.kind {
            FrameKind::Ping => {
                if ctx
                    .queue
                    .send(empty_frame(FrameKind::Pong, frame.header.id))
                    .await
                    .is_err()
                {
                    break None;
                }
            }
            FrameKind::Request => {
                let rid = frame.header.id;
                let opcode = frame.header.opcode;
                let env = match decode_request(frame) {
                    Ok(env) => env,
                    Err(e) => break Some(e.to_string()),
                };
                let Ok(permit) = Arc::clone(&inflight).acquire_owned().await else {
                    break None;
                };
                let ctx = Arc::clone(&ctx);
                tokio::spawn(async move {
                    let mut cx = env.cx;
                    cx.client = ctx.id;
                    let result = ctx.handle(&cx, env.req).await;
                    let out = match reply_frame(rid, opcode, &result) {
                        Ok(f) => Some(f),
                        Err(e) => reply_frame(
                            rid,
                            opcode,
                            &Err(FopError::eio(format!("reply cannot be sent: {e}"))),
                        )
                        .ok(),
                    };
                    if let Some(out) = out {
                        let _ = ctx.queue.send(out).await;
                    }
                    drop(permit);
                });
            }
            other => break Some(format!("unexpected {other:?} frame from a client")),
        }
    };
    match &why {
        Some(reason) => {
            tracing::warn!(server = %state.name, %peer, conn = id, %reason, "closing client connection after a protocol error")
        }
        None => tracing::info!(server = %state.name, %peer, conn = id, "client disconnected"),
    }
    ctx.fds.clear();
    state.client_left(id);
    state.child.client_gone(id);
    state.connections.fetch_sub(1, Ordering::Relaxed);
    // The writer ends once every in-flight task has dropped its queue handle.
    drop(ctx);
    drop(writer);
}

impl ConnCtx {
    async fn handle(&self, cx: &Cx, req: Request) -> FopResult<Reply> {
        match req {
            Request::Compound { ops } => {
                let mut results: Vec<CompoundResult> = Vec::with_capacity(ops.0.len());
                let mut failed = false;
                for op in ops.0 {
                    let r = if failed && !crate::wire::is_cleanup(&op) {
                        Err(FopError::new(
                            libc::ECANCELED,
                            "not run: an earlier fop in the compound failed",
                        ))
                    } else if op.kind() == FopKind::Compound {
                        Err(FopError::invalid("compound requests cannot be nested"))
                    } else {
                        self.handle_one(cx, op).await
                    };
                    failed |= r.is_err();
                    results.push(r);
                }
                Ok(Reply::Compound(Batch(results)))
            }
            other => self.handle_one(cx, other).await,
        }
    }

    /// Maps the request's fds to this brick's, runs it, and keeps the fd table current.
    async fn handle_one(&self, cx: &Cx, mut req: Request) -> FopResult<Reply> {
        let kind = req.kind();
        let opens = matches!(kind, FopKind::Create | FopKind::Open | FopKind::Opendir);
        let closes = matches!(kind, FopKind::Release | FopKind::Releasedir);
        let mut client_ids = Vec::new();
        let mut missing = None;
        req.each_fd_mut(&mut |fd: &mut Fd| {
            let client_id = fd.id();
            client_ids.push(client_id);
            if opens {
                let mine = Fd::with_id(
                    self.state.next_fd.fetch_add(1, Ordering::Relaxed),
                    fd.gfid(),
                    fd.flags(),
                );
                self.fds.insert(client_id, mine.clone());
                *fd = mine;
            } else {
                match self.fds.get(client_id) {
                    Some(mine) => *fd = mine,
                    None => missing = Some(client_id),
                }
            }
        });
        if let Some(client_id) = missing {
            return Err(FopError::new(
                libc::EBADF,
                format!("{kind}: file handle {client_id} is not open on this connection"),
            ));
        }
        let result = dispatch(&*self.state.child, cx, req).await;
        if (opens && result.is_err()) || closes {
            for client_id in client_ids {
                self.fds.remove(client_id);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ServerConfig {
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            volume_id: "vol-1".into(),
            brick_id: "b1".into(),
            secret: String::new(),
            allow: vec![],
            reject: vec![],
            status_file: None,
            max_inflight: 4,
            handshake_timeout: Duration::from_secs(1),
        }
    }

    fn hello(volume_id: &str, brick_id: &str) -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            volume_id: volume_id.into(),
            brick_id: brick_id.into(),
            client_name: "c".into(),
            client_uuid: "u".into(),
            secret: String::new(),
        }
    }

    #[test]
    fn hello_checks() {
        check_hello(&cfg(), &hello("vol-1", "b1")).unwrap();
        check_hello(&cfg(), &hello("", "")).unwrap();
        let e = check_hello(&cfg(), &hello("vol-2", "b1")).unwrap_err();
        assert!(e.contains("vol-2") && e.contains("vol-1"), "{e}");
        let e = check_hello(&cfg(), &hello("vol-1", "b9")).unwrap_err();
        assert!(e.contains("b9"), "{e}");
        let mut h = hello("vol-1", "b1");
        h.protocol = 99;
        assert!(check_hello(&cfg(), &h).unwrap_err().contains("protocol 99"));
        let mut with_secret = cfg();
        with_secret.secret = "s3cret".into();
        assert!(
            check_hello(&with_secret, &hello("vol-1", "b1"))
                .unwrap_err()
                .contains("no volume secret")
        );
        let mut h = hello("vol-1", "b1");
        h.secret = "guess".into();
        assert!(check_hello(&with_secret, &h).unwrap_err().contains("wrong"));
        h.secret = "s3cret".into();
        check_hello(&with_secret, &h).unwrap();
    }
}
