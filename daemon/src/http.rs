//! The management API over HTTP (routes in `cairn_api::routes`).
//!
//! Two listeners share one router: TCP (`--bind`) and the Unix socket in the state
//! directory (mode 0600). Who may do what:
//! - reads: anyone (secrets never appear in them);
//! - configuration changes: the Unix socket (the local root CLI), or a caller presenting the
//!   pool secret (a pool member);
//! - peer calls (transactions, state): the pool secret;
//! - a client volfile (which carries the volume secret): addresses admitted by the volume's
//!   `auth.allow` / `auth.reject`.
//!
//! Every refusal is logged with the caller's address.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cairn_api::*;
use serde::Deserialize;

use crate::Daemon;
use crate::options;

/// Where a request came from.
#[derive(Clone, Debug)]
pub enum Access {
    /// The Unix socket: the local CLI.
    Local,
    /// TCP from this address.
    Remote(SocketAddr),
}

/// An error reply: a status and a message.
#[derive(Debug)]
pub struct ApiErr {
    status: StatusCode,
    message: String,
}

impl ApiErr {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiErr {
        ApiErr {
            status,
            message: message.into(),
        }
    }

    /// Maps a daemon error message to a status.
    fn from_msg(message: String) -> ApiErr {
        let status = if message.contains(crate::txn::BUSY) {
            StatusCode::CONFLICT
        } else if message.contains("does not exist") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiErr { status, message }
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

type Res<T> = Result<Json<T>, ApiErr>;
type D = State<Arc<Daemon>>;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn is_pool_member(d: &Daemon, headers: &HeaderMap) -> bool {
    match (bearer(headers), d.pool_secret()) {
        (Some(t), Ok(s)) => constant_time_eq(t.as_bytes(), s.as_bytes()),
        _ => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Configuration changes: the local CLI or a pool member.
fn require_admin(d: &Daemon, access: &Access, headers: &HeaderMap) -> Result<(), ApiErr> {
    match access {
        Access::Local => Ok(()),
        Access::Remote(_) if is_pool_member(d, headers) => Ok(()),
        Access::Remote(addr) => {
            tracing::warn!(%addr, "refused a configuration change from outside the pool");
            Err(ApiErr::new(
                StatusCode::FORBIDDEN,
                "configuration changes are accepted only from the local CLI (cairnd's Unix socket) or from pool members",
            ))
        }
    }
}

/// Peer calls: pool members (or the local socket).
fn require_peer(d: &Daemon, access: &Access, headers: &HeaderMap) -> Result<(), ApiErr> {
    match access {
        Access::Local => Ok(()),
        Access::Remote(_) if is_pool_member(d, headers) => Ok(()),
        Access::Remote(addr) => {
            tracing::warn!(%addr, "refused a peer call without the pool secret");
            Err(ApiErr::new(
                StatusCode::FORBIDDEN,
                "this call is for members of the pool",
            ))
        }
    }
}

fn ok_msg(m: impl Into<String>) -> Res<Message> {
    Ok(Json(Message::new(m)))
}

fn e500(e: String) -> ApiErr {
    ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, e)
}

/// The router, before the access layer.
pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route(routes::NODE, get(node))
        .route(routes::POOL, get(pool))
        .route(routes::PEER_PROBE, post(probe))
        .route(routes::PEER_DETACH, post(detach))
        .route(routes::VOLUMES, get(volumes).post(create))
        .route("/v1/volumes/{name}", get(volume).delete(delete))
        .route("/v1/volumes/{name}/start", post(start))
        .route("/v1/volumes/{name}/stop", post(stop))
        .route("/v1/volumes/{name}/status", get(status))
        .route(
            "/v1/volumes/{name}/options",
            get(options_all).post(set_option),
        )
        .route("/v1/volumes/{name}/options/{key}", get(option_one))
        .route("/v1/volumes/{name}/reset", post(reset))
        .route("/v1/volumes/{name}/volfile", get(volfile))
        .route("/v1/volumes/{name}/add-brick", post(add_brick))
        .route("/v1/volumes/{name}/rebalance", post(rebalance))
        .route("/v1/volumes/{name}/remove-brick", post(remove_brick))
        .route("/v1/volumes/{name}/replace-brick", post(replace_brick))
        .route("/v1/volumes/{name}/reset-brick", post(reset_brick))
        .route("/v1/volumes/{name}/heal", post(heal))
        .route("/v1/volumes/{name}/heal/info", get(heal_info))
        .route("/v1/volumes/{name}/heal/statistics", get(heal_stats))
        .route("/v1/volumes/{name}/heal/split-brain", post(split_brain))
        .route("/v1/peer/heal-kick/{name}", post(peer_heal_kick))
        .route("/v1/peer/heal-info/{name}", get(peer_heal_info))
        .route("/v1/peer/heal-stats/{name}", get(peer_heal_stats))
        .route("/v1/peer/rebalance/{name}", get(peer_rebalance))
        .route("/v1/volumes/{name}/bitrot/status", get(scrub_status))
        .route("/v1/volumes/{name}/bitrot/ondemand", post(scrub_ondemand))
        .route("/v1/peer/scrub-status/{name}", get(peer_scrub_status))
        .route("/v1/peer/scrub-kick/{name}", post(peer_scrub_kick))
        .route(routes::OPTIONS, get(option_table))
        .route(routes::PEER_JOIN, post(join))
        .route(routes::PEER_STATE, get(peer_state))
        .route(routes::PEER_BRICKS, get(peer_bricks))
        .route(routes::TXN_LOCK, post(txn_lock))
        .route(routes::TXN_STAGE, post(txn_stage))
        .route(routes::TXN_COMMIT, post(txn_commit))
        .route(routes::TXN_UNLOCK, post(txn_unlock))
        .with_state(d)
}

async fn tag_remote(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    req.extensions_mut().insert(Access::Remote(addr));
    next.run(req).await
}

/// Serves the API on TCP and on the Unix socket until the process ends.
pub async fn serve(
    d: Arc<Daemon>,
    tcp: tokio::net::TcpListener,
    unix: tokio::net::UnixListener,
) -> Result<(), String> {
    let tcp_app = router(Arc::clone(&d)).layer(axum::middleware::from_fn(tag_remote));
    let unix_app = router(d).layer(Extension(Access::Local));
    let tcp = axum::serve(
        tcp,
        tcp_app.into_make_service_with_connect_info::<SocketAddr>(),
    );
    let unix = axum::serve(unix, unix_app.into_make_service());
    tokio::select! {
        r = tcp.into_future() => r.map_err(|e| format!("management API (TCP): {e}")),
        r = unix.into_future() => r.map_err(|e| format!("management API (socket): {e}")),
    }
}

async fn node(State(d): D) -> Res<NodeStatus> {
    let st = d.snapshot().map_err(e500)?;
    Ok(Json(NodeStatus {
        uuid: st.node.uuid.clone(),
        host: st.node.host.clone(),
        port: st.node.port,
        config_version: st.config.version,
        pool_size: st.config.nodes.len(),
    }))
}

async fn pool(State(d): D) -> Res<Vec<PoolEntry>> {
    let st = d.snapshot().map_err(e500)?;
    Ok(Json(
        st.config
            .nodes
            .iter()
            .map(|n| PoolEntry {
                uuid: n.uuid.clone(),
                host: n.host.clone(),
                port: n.port,
                is_self: n.uuid == st.node.uuid,
                connected: n.uuid == st.node.uuid || d.is_reachable(&n.uuid),
            })
            .collect(),
    ))
}

async fn probe(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Json(req): Json<PeerProbe>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    d.probe(&req.host)
        .await
        .map(Message::new)
        .map(Json)
        .map_err(ApiErr::from_msg)
}

async fn detach(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Json(req): Json<PeerDetach>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    d.detach(&req.host, req.force)
        .await
        .map(Message::new)
        .map(Json)
        .map_err(ApiErr::from_msg)
}

fn find_volume(d: &Daemon, name: &str) -> Result<VolumeConfig, ApiErr> {
    d.config()
        .map_err(e500)?
        .volumes
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| {
            ApiErr::new(
                StatusCode::NOT_FOUND,
                format!("volume {name} does not exist"),
            )
        })
}

async fn volumes(State(d): D) -> Res<Vec<VolumeInfo>> {
    Ok(Json(
        d.config()
            .map_err(e500)?
            .volumes
            .iter()
            .map(VolumeConfig::info)
            .collect(),
    ))
}

async fn volume(State(d): D, Path(name): Path<String>) -> Res<VolumeInfo> {
    Ok(Json(find_volume(&d, &name)?.info()))
}

async fn create(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Json(req): Json<VolumeCreate>,
) -> Res<VolumeInfo> {
    require_admin(&d, &a, &h)?;
    let ports = d.cfg.brick_ports;
    let what = format!("volume create {}", req.name);
    let r = req.clone();
    d.transact(what, req.force, move |cfg, version| {
        crate::ops::build_create(cfg, &r, ports, version).map(Op::CreateVolume)
    })
    .await
    .map_err(ApiErr::from_msg)?;
    tracing::info!(volume = %req.name, "volume created");
    Ok(Json(find_volume(&d, &req.name)?.info()))
}

async fn simple_op(d: &Daemon, what: String, force: bool, op: Op) -> Res<Message> {
    d.transact(what, force, move |_, _| Ok(op))
        .await
        .map_err(ApiErr::from_msg)?;
    ok_msg("success")
}

async fn start(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(f): Json<Force>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    simple_op(
        &d,
        format!("volume start {name}"),
        f.force,
        Op::StartVolume {
            name,
            force: f.force,
        },
    )
    .await
}

async fn stop(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(f): Json<Force>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    simple_op(
        &d,
        format!("volume stop {name}"),
        f.force,
        Op::StopVolume {
            name,
            force: f.force,
        },
    )
    .await
}

async fn delete(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    simple_op(
        &d,
        format!("volume delete {name}"),
        false,
        Op::DeleteVolume { name },
    )
    .await
}

async fn set_option(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<OptionSet>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    // Checked here too, so a typo gets its message without a transaction.
    options::validate(&req.key, &req.value).map_err(ApiErr::from_msg)?;
    let mut set = BTreeMap::new();
    set.insert(req.key.clone(), req.value.clone());
    let op = Op::SetOptions {
        name: name.clone(),
        set,
        reset: vec![],
        reset_all: false,
    };
    simple_op(&d, format!("volume set {name} {}", req.key), false, op).await
}

async fn reset(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<OptionReset>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    let op = Op::SetOptions {
        name: name.clone(),
        set: BTreeMap::new(),
        reset: req.key.iter().cloned().collect(),
        reset_all: req.key.is_none(),
    };
    if let Some(k) = &req.key
        && options::find(k).is_none()
    {
        return Err(ApiErr::from_msg(format!("option '{k}' does not exist")));
    }
    simple_op(&d, format!("volume reset {name}"), false, op).await
}

fn option_entry(v: &VolumeConfig, o: &options::VolOption) -> OptionEntry {
    let set = v.options.get(o.key);
    OptionEntry {
        key: o.key.to_string(),
        value: set.cloned().unwrap_or_else(|| o.default.to_string()),
        default: o.default.to_string(),
        is_default: set.is_none(),
        doc: o.doc.to_string(),
    }
}

async fn options_all(State(d): D, Path(name): Path<String>) -> Res<Vec<OptionEntry>> {
    let v = find_volume(&d, &name)?;
    Ok(Json(
        options::OPTIONS
            .iter()
            .map(|o| option_entry(&v, o))
            .collect(),
    ))
}

async fn option_one(State(d): D, Path((name, key)): Path<(String, String)>) -> Res<OptionEntry> {
    let v = find_volume(&d, &name)?;
    let o = options::find(&key)
        .ok_or_else(|| ApiErr::from_msg(format!("option '{key}' does not exist")))?;
    Ok(Json(option_entry(&v, o)))
}

async fn option_table() -> Res<Vec<OptionDecl>> {
    Ok(Json(
        options::OPTIONS
            .iter()
            .map(|o| OptionDecl {
                key: o.key.to_string(),
                kind: o.kind.describe(),
                default: o.default.to_string(),
                doc: o.doc.to_string(),
                translator: o
                    .targets
                    .iter()
                    .map(|t| match t {
                        options::Target::Client { xlator, .. }
                        | options::Target::Brick { xlator, .. } => (*xlator).to_string(),
                        options::Target::Daemon => "cairnd".to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct VolfileQuery {
    role: Option<String>,
    wait_version: Option<u64>,
}

/// How long a volfile request waits for a change before answering with the same version.
const LONG_POLL: Duration = Duration::from_secs(25);

async fn volfile(
    State(d): D,
    Extension(a): Extension<Access>,
    Path(name): Path<String>,
    Query(q): Query<VolfileQuery>,
) -> Result<Response, ApiErr> {
    if q.role.as_deref().unwrap_or("client") != "client" {
        return Err(ApiErr::new(
            StatusCode::BAD_REQUEST,
            "only role=client volfiles are served",
        ));
    }
    let mut v = find_volume(&d, &name)?;
    if let Access::Remote(addr) = &a {
        let allow: Vec<String> =
            split_list(options::effective(&v.options, "auth.allow").unwrap_or("*"));
        let reject: Vec<String> =
            split_list(options::effective(&v.options, "auth.reject").unwrap_or(""));
        if !cairn_translators::protocol::auth::admitted(addr.ip(), &allow, &reject) {
            tracing::warn!(%addr, volume = %name, "refused a volfile request (auth.allow / auth.reject)");
            return Err(ApiErr::new(
                StatusCode::FORBIDDEN,
                format!(
                    "address {} is not allowed to mount volume {name} (auth.allow / auth.reject)",
                    addr.ip()
                ),
            ));
        }
    }
    if let Some(wait) = q.wait_version {
        let mut rx = d.watch_version();
        let deadline = tokio::time::Instant::now() + LONG_POLL;
        while v.version == wait {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => v = find_volume(&d, &name)?,
                _ => break,
            }
        }
    }
    if v.state != VolumeState::Started {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            format!("volume {name} is not started"),
        ));
    }
    let text = cairn_volfiles::emit(&crate::volgen::client_volfile(&v))
        .map_err(|e| e500(e.to_string()))?;
    let mut resp = text.into_response();
    if let Ok(val) = HeaderValue::from_str(&v.version.to_string()) {
        resp.headers_mut().insert(VERSION_HEADER, val);
    }
    Ok(resp)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

#[derive(Deserialize, Default)]
struct StatusQuery {
    #[serde(default)]
    detail: bool,
    #[serde(default)]
    clients: bool,
}

async fn status(
    State(d): D,
    Path(name): Path<String>,
    Query(q): Query<StatusQuery>,
) -> Res<VolumeStatus> {
    let v = find_volume(&d, &name)?;
    let me = d.me().map_err(e500)?;
    let nodes = d.config().map_err(e500)?.nodes;
    let query = format!(
        "{}?detail={}&clients={}",
        routes::PEER_BRICKS,
        q.detail,
        q.clients
    );
    let mut all: Vec<BrickStatus> = Vec::new();
    let reports = futures::future::join_all(
        nodes
            .iter()
            .filter(|n| v.bricks.iter().any(|b| b.host == n.host))
            .map(|n| {
                let d = Arc::clone(&d);
                let query = query.clone();
                let is_me = n.uuid == me.uuid;
                let n = n.clone();
                async move {
                    if is_me {
                        Ok(d.local_brick_status(q.detail, q.clients).await)
                    } else {
                        let c = cairn_api::Client::new(Endpoint::Tcp(n.addr()))
                            .with_timeout(Duration::from_secs(3));
                        c.get::<Vec<BrickStatus>>(&query)
                            .await
                            .map_err(|e| e.to_string())
                    }
                }
            }),
    )
    .await;
    for r in reports.into_iter().flatten() {
        all.extend(r);
    }
    let bricks = v
        .bricks
        .iter()
        .map(|b| {
            all.iter()
                .find(|s| s.volume == v.name && s.brick_id == b.id)
                .cloned()
                .unwrap_or(BrickStatus {
                    volume: v.name.clone(),
                    brick_id: b.id.clone(),
                    host: b.host.clone(),
                    path: b.path.clone(),
                    port: b.port,
                    pid: None,
                    online: false,
                    detail: None,
                    clients: None,
                })
        })
        .collect();
    Ok(Json(VolumeStatus {
        name: v.name.clone(),
        state: v.state,
        bricks,
    }))
}

async fn peer_bricks(State(d): D, Query(q): Query<StatusQuery>) -> Res<Vec<BrickStatus>> {
    Ok(Json(d.local_brick_status(q.detail, q.clients).await))
}

async fn join(
    State(d): D,
    Extension(a): Extension<Access>,
    Json(req): Json<JoinRequest>,
) -> Res<JoinReply> {
    tracing::info!(from = %req.from.host, access = ?a, "join request");
    d.join(req).map(Json).map_err(ApiErr::from_msg)
}

async fn peer_state(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
) -> Res<ClusterConfig> {
    require_peer(&d, &a, &h)?;
    d.config().map(Json).map_err(e500)
}

async fn txn_lock(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Json(req): Json<TxnLock>,
) -> Res<TxnLocked> {
    require_peer(&d, &a, &h)?;
    d.txn_lock(&req).map(Json).map_err(ApiErr::from_msg)
}

async fn txn_unlock(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Json(req): Json<TxnLock>,
) -> Res<Message> {
    require_peer(&d, &a, &h)?;
    d.txn_unlock(&req.txn);
    ok_msg("unlocked")
}

async fn txn_stage(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Json(t): Json<TxnOp>,
) -> Res<Message> {
    require_peer(&d, &a, &h)?;
    d.txn_stage(&t).map_err(ApiErr::from_msg)?;
    ok_msg("staged")
}

async fn txn_commit(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Json(t): Json<TxnOp>,
) -> Res<Message> {
    require_peer(&d, &a, &h)?;
    d.txn_commit(&t).await.map_err(ApiErr::from_msg)?;
    ok_msg("committed")
}

impl Daemon {
    /// The state of this node's bricks.
    pub async fn local_brick_status(&self, detail: bool, clients: bool) -> Vec<BrickStatus> {
        let Ok(st) = self.snapshot() else {
            return Vec::new();
        };
        let listen = self.listen_ip();
        let connect_ip = if listen == "0.0.0.0" || listen == "::" {
            "127.0.0.1".to_string()
        } else {
            listen
        };
        let mut out = Vec::new();
        for v in &st.config.volumes {
            for b in v.bricks.iter().filter(|b| b.host == st.node.host) {
                let key = format!("{}/{}", v.name, b.id);
                let pid = self.supervisor.pid(&key);
                let online = pid.is_some()
                    && tokio::time::timeout(
                        Duration::from_millis(500),
                        tokio::net::TcpStream::connect((connect_ip.as_str(), b.port)),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok());
                let detail = detail
                    .then(|| rustix::fs::statvfs(b.path.as_str()).ok())
                    .flatten()
                    .map(|s| BrickDetail {
                        total_bytes: s.f_blocks * s.f_frsize,
                        free_bytes: s.f_bavail * s.f_frsize,
                        total_inodes: s.f_files,
                        free_inodes: s.f_ffree,
                    });
                let clients = clients.then(|| {
                    std::fs::read_to_string(self.supervisor.files(&v.name, &b.id).clients)
                        .unwrap_or_default()
                        .lines()
                        .filter_map(|l| l.split('\t').next().map(str::to_string))
                        .filter(|a| !a.is_empty())
                        .collect()
                });
                out.push(BrickStatus {
                    volume: v.name.clone(),
                    brick_id: b.id.clone(),
                    host: b.host.clone(),
                    path: b.path.clone(),
                    port: b.port,
                    pid,
                    online,
                    detail,
                    clients,
                });
            }
        }
        out
    }
}

fn require_replicated(d: &Daemon, name: &str) -> Result<VolumeConfig, ApiErr> {
    let v = find_volume(d, name)?;
    if v.replica < 2 {
        return Err(ApiErr::from_msg(format!(
            "volume {name} is not replicated: there is nothing to heal"
        )));
    }
    if v.state != VolumeState::Started {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            format!("volume {name} is not started"),
        ));
    }
    Ok(v)
}

/// The other nodes holding bricks of `v`.
fn brick_peers(d: &Daemon, v: &VolumeConfig) -> Result<Vec<NodeInfo>, ApiErr> {
    let me = d.me().map_err(e500)?;
    Ok(d.config()
        .map_err(e500)?
        .nodes
        .into_iter()
        .filter(|n| n.uuid != me.uuid && v.bricks.iter().any(|b| b.host == n.host))
        .collect())
}

async fn heal(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<HealRequest>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    let v = require_replicated(&d, &name)?;
    if let Some(w) = d.heal.get(&name) {
        w.kick(req.full);
    }
    let secret = d.pool_secret().map_err(e500)?;
    let mut failed = Vec::new();
    for n in brick_peers(&d, &v)? {
        let c = cairn_api::Client::new(Endpoint::Tcp(n.addr()))
            .with_token(secret.clone())
            .with_timeout(Duration::from_secs(5));
        if let Err(e) = c
            .post::<_, Message>(&routes::peer_heal_kick(&name), &req)
            .await
        {
            failed.push(format!("{}: {e}", n.host));
        }
    }
    let what = if req.full {
        "full self heal"
    } else {
        "index self heal"
    };
    if failed.is_empty() {
        ok_msg(format!(
            "launching heal operation to perform {what} on volume {name} has been successful"
        ))
    } else {
        Err(ApiErr::from_msg(format!(
            "heal launched, but not on: {}",
            failed.join("; ")
        )))
    }
}

async fn peer_heal_kick(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<HealRequest>,
) -> Res<Message> {
    require_peer(&d, &a, &h)?;
    match d.heal.get(&name) {
        Some(w) => {
            w.kick(req.full);
            ok_msg("heal started")
        }
        None => ok_msg("no bricks of this volume here"),
    }
}

async fn heal_info(State(d): D, Path(name): Path<String>) -> Res<Vec<BrickHealInfo>> {
    let v = require_replicated(&d, &name)?;
    Ok(Json(gather_heal_info(&d, &v).await?))
}

/// The heal index of every brick of `v`, asked of each brick's node, in brick order.
async fn gather_heal_info(d: &Daemon, v: &VolumeConfig) -> Result<Vec<BrickHealInfo>, ApiErr> {
    let name = &v.name;
    let mut all = d.local_heal_info(name);
    for n in brick_peers(d, v)? {
        let c =
            cairn_api::Client::new(Endpoint::Tcp(n.addr())).with_timeout(Duration::from_secs(10));
        match c
            .get::<Vec<BrickHealInfo>>(&routes::peer_heal_info(name))
            .await
        {
            Ok(list) => all.extend(list),
            Err(_) => {
                all.extend(
                    v.bricks
                        .iter()
                        .filter(|b| b.host == n.host)
                        .map(|b| BrickHealInfo {
                            brick: b.spec(),
                            connected: false,
                            entries: Vec::new(),
                        }),
                )
            }
        }
    }
    // In volume brick order.
    all.sort_by_key(|i| {
        v.bricks
            .iter()
            .position(|b| b.spec() == i.brick)
            .unwrap_or(usize::MAX)
    });
    Ok(all)
}

async fn peer_heal_info(State(d): D, Path(name): Path<String>) -> Res<Vec<BrickHealInfo>> {
    Ok(Json(d.local_heal_info(&name)))
}

async fn heal_stats(State(d): D, Path(name): Path<String>) -> Res<Vec<HealStats>> {
    let v = require_replicated(&d, &name)?;
    let mut all = Vec::new();
    if let Some(w) = d.heal.get(&name) {
        all.push(w.stats());
    }
    for n in brick_peers(&d, &v)? {
        let c =
            cairn_api::Client::new(Endpoint::Tcp(n.addr())).with_timeout(Duration::from_secs(5));
        if let Ok(s) = c.get::<HealStats>(&routes::peer_heal_stats(&name)).await {
            all.push(s);
        }
    }
    Ok(Json(all))
}

async fn peer_heal_stats(State(d): D, Path(name): Path<String>) -> Res<HealStats> {
    Ok(Json(
        d.heal.get(&name).map(|w| w.stats()).unwrap_or_default(),
    ))
}

/// The volume, which must have bitrot detection on.
fn require_bitrot(d: &Daemon, name: &str) -> Result<VolumeConfig, ApiErr> {
    let v = d
        .volume_config(name)
        .ok_or_else(|| ApiErr::from_msg(format!("volume {name} does not exist")))?;
    if options::effective(&v.options, "features.bitrot") != Some("on") {
        return Err(ApiErr::from_msg(format!(
            "bitrot detection is not enabled on volume {name}: volume bitrot {name} enable"
        )));
    }
    Ok(v)
}

async fn scrub_status(State(d): D, Path(name): Path<String>) -> Res<Vec<ScrubStatus>> {
    let v = require_bitrot(&d, &name)?;
    let mut all = Vec::new();
    if let Some(w) = d.scrub.get(&name) {
        all.push(w.status());
    }
    for n in brick_peers(&d, &v)? {
        let c =
            cairn_api::Client::new(Endpoint::Tcp(n.addr())).with_timeout(Duration::from_secs(5));
        match c
            .get::<ScrubStatus>(&routes::peer_scrub_status(&name))
            .await
        {
            Ok(s) => all.push(s),
            Err(_) => all.push(ScrubStatus {
                host: n.host.clone(),
                state: "unreachable".into(),
                ..ScrubStatus::default()
            }),
        }
    }
    Ok(Json(all))
}

async fn peer_scrub_status(State(d): D, Path(name): Path<String>) -> Res<ScrubStatus> {
    Ok(Json(d.scrub.get(&name).map(|w| w.status()).unwrap_or_else(
        || ScrubStatus {
            host: d.cfg.host.clone(),
            state: "starting".into(),
            ..ScrubStatus::default()
        },
    )))
}

async fn scrub_ondemand(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    let v = require_bitrot(&d, &name)?;
    if options::effective(&v.options, "features.scrub") == Some("paused") {
        return Err(ApiErr::from_msg(format!(
            "the scrubber of volume {name} is paused: volume bitrot {name} scrub resume"
        )));
    }
    d.scrub.request_ondemand(&name);
    let secret = d.pool_secret().map_err(e500)?;
    let mut failed = Vec::new();
    for n in brick_peers(&d, &v)? {
        let c = cairn_api::Client::new(Endpoint::Tcp(n.addr()))
            .with_token(secret.clone())
            .with_timeout(Duration::from_secs(5));
        if let Err(e) = c
            .post::<_, Message>(&routes::peer_scrub_kick(&name), &serde_json::json!({}))
            .await
        {
            failed.push(format!("{}: {e}", n.host));
        }
    }
    if failed.is_empty() {
        ok_msg(format!(
            "scrubber of volume {name} started on every node with its bricks"
        ))
    } else {
        Err(ApiErr::from_msg(format!(
            "scrub started, but not on: {}",
            failed.join("; ")
        )))
    }
}

async fn peer_scrub_kick(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Res<Message> {
    require_peer(&d, &a, &h)?;
    d.scrub.request_ondemand(&name);
    ok_msg("scrub started")
}

async fn split_brain(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<SplitBrainResolve>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    let v = require_replicated(&d, &name)?;
    // Without a path: every entry the indices of the source brick's replica set list (they
    // live on the bricks' own nodes).
    let candidates = match (&req.path, &req.brick) {
        (None, Some(spec)) => {
            let r = v.replica.max(1) as usize;
            let set = v
                .bricks
                .iter()
                .position(|b| &b.spec() == spec)
                .map(|i| i / r)
                .ok_or_else(|| {
                    ApiErr::from_msg(format!("{spec} is not a brick of volume {name}"))
                })?;
            let members: Vec<String> = v
                .bricks
                .iter()
                .skip(set * r)
                .take(r)
                .map(|b| b.spec())
                .collect();
            let mut gfids: Vec<cairn_translators::Gfid> = gather_heal_info(&d, &v)
                .await?
                .into_iter()
                .filter(|i| members.contains(&i.brick))
                .flat_map(|i| i.entries)
                .filter_map(|e| cairn_translators::Gfid::parse(&e.gfid))
                .collect();
            gfids.sort();
            gfids.dedup();
            gfids
        }
        _ => Vec::new(),
    };
    let m = d
        .resolve_split_brain(
            &name,
            &req.policy,
            req.path.as_deref(),
            req.brick.as_deref(),
            candidates,
        )
        .await
        .map_err(ApiErr::from_msg)?;
    tracing::info!(volume = %name, policy = %req.policy, path = ?req.path, brick = ?req.brick, "split-brain resolved by the operator");
    ok_msg(m)
}

async fn add_brick(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<cairn_api::AddBrick>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    let ports = d.cfg.brick_ports;
    let n = name.clone();
    let r = req.clone();
    d.transact(
        format!("volume add-brick {name}"),
        req.force,
        move |cfg, _| crate::ops::build_add_brick(cfg, &n, &r, ports),
    )
    .await
    .map_err(ApiErr::from_msg)?;
    tracing::info!(volume = %name, bricks = ?req.bricks, "bricks added");
    ok_msg(format!(
        "add-brick operation successful: {} brick(s) added; run 'volume rebalance {name} fix-layout start' so that existing directories give them new files",
        req.bricks.len()
    ))
}

async fn rebalance(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<cairn_api::RebalanceRequest>,
) -> Res<Vec<RebalanceStatus>> {
    let v = find_volume(&d, &name)?;
    match req.action.as_str() {
        "status" => {}
        "fix-layout-start" | "start" => {
            require_admin(&d, &a, &h)?;
            if v.state != cairn_api::VolumeState::Started {
                return Err(ApiErr::from_msg(format!("volume {name} is not started")));
            }
            if !v.removing.is_empty() {
                return Err(ApiErr::from_msg(format!(
                    "a remove-brick of volume {name} is in progress: commit or stop it first"
                )));
            }
            refuse_if_running_elsewhere(&d, &name).await?;
            let kind = if req.action == "start" {
                crate::rebalance::Kind::Migrate
            } else {
                crate::rebalance::Kind::FixLayout
            };
            start_run(&d, v, kind)?;
            tracing::info!(volume = %name, action = %req.action, "rebalance started");
        }
        "stop" => {
            require_admin(&d, &a, &h)?;
            d.rebalance
                .stop(&name, &d.cfg.state_dir)
                .map_err(ApiErr::from_msg)?;
        }
        other => {
            return Err(ApiErr::from_msg(format!(
                "unknown rebalance action '{other}': fix-layout-start, start, stop or status"
            )));
        }
    }
    Ok(Json(gather_rebalance(&d, &name).await?))
}

/// Starts a rebalance or drain run of `v` on this node, throttled by the volume's option.
fn start_run(d: &Daemon, v: VolumeConfig, kind: crate::rebalance::Kind) -> Result<(), ApiErr> {
    let parallel = crate::rebalance::parallel_for(
        crate::options::effective(&v.options, "cluster.rebal-throttle").unwrap_or("normal"),
    );
    d.rebalance
        .start(v, &d.cfg.host, kind, &d.cfg.state_dir, parallel)
        .map_err(ApiErr::from_msg)
}

/// Refuses a new run of `name` while one goes on anywhere in the pool.
async fn refuse_if_running_elsewhere(d: &Daemon, name: &str) -> Result<(), ApiErr> {
    if let Some(s) = gather_rebalance(d, name)
        .await?
        .into_iter()
        .find(|s| s.state == "in progress")
    {
        return Err(ApiErr::from_msg(format!(
            "a {} of volume {name} is running on {}: wait for it or stop it first",
            s.kind, s.node
        )));
    }
    Ok(())
}

/// The rebalance (or drain) run of `name` on every node of the pool, this one first; a
/// node that does not answer is shown `unreachable`.
async fn gather_rebalance(d: &Daemon, name: &str) -> Result<Vec<RebalanceStatus>, ApiErr> {
    let me = d.me().map_err(e500)?;
    let mut all = vec![d.rebalance.status(name, &d.cfg.host, &d.cfg.state_dir)];
    let peers: Vec<NodeInfo> = d
        .config()
        .map_err(e500)?
        .nodes
        .into_iter()
        .filter(|n| n.uuid != me.uuid)
        .collect();
    let answers = futures::future::join_all(peers.iter().map(|n| async move {
        let c =
            cairn_api::Client::new(Endpoint::Tcp(n.addr())).with_timeout(Duration::from_secs(5));
        (
            n,
            c.get::<RebalanceStatus>(&routes::peer_rebalance(name))
                .await,
        )
    }))
    .await;
    for (n, r) in answers {
        all.push(r.unwrap_or_else(|e| {
            let mut s = crate::rebalance::blank(name, &n.host, "rebalance", "unreachable");
            s.message = e.to_string();
            s
        }));
    }
    Ok(all)
}

async fn peer_rebalance(State(d): D, Path(name): Path<String>) -> Res<RebalanceStatus> {
    Ok(Json(d.rebalance.status(
        &name,
        &d.cfg.host,
        &d.cfg.state_dir,
    )))
}

async fn remove_brick(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<cairn_api::RemoveBrick>,
) -> Res<RemoveBrickReply> {
    let v = find_volume(&d, &name)?;
    let config = d.config().map_err(e500)?;
    let leaving = crate::ops::leaving_specs;
    let message = match req.action.as_str() {
        "status" => {
            crate::ops::check_removing(&config, &name, &req.bricks).map_err(ApiErr::from_msg)?;
            String::new()
        }
        "start" => {
            require_admin(&d, &a, &h)?;
            if v.state != cairn_api::VolumeState::Started {
                return Err(ApiErr::from_msg(format!("volume {name} is not started")));
            }
            refuse_if_running_elsewhere(&d, &name).await?;
            // Started before (a drain that failed or was interrupted): drain again.
            let again = !v.removing.is_empty()
                && crate::ops::check_removing(&config, &name, &req.bricks).is_ok();
            if !again {
                let (n, specs) = (name.clone(), req.bricks.clone());
                d.transact(
                    format!("volume remove-brick {name} start"),
                    false,
                    move |cfg, _| crate::ops::build_remove_brick_start(cfg, &n, &specs),
                )
                .await
                .map_err(ApiErr::from_msg)?;
            }
            let v = find_volume(&d, &name)?;
            start_run(&d, v.clone(), crate::rebalance::Kind::Drain)?;
            tracing::info!(volume = %name, bricks = %leaving(&v), "remove-brick started: draining");
            format!(
                "remove-brick started: {} take no new files and their files move to the other replica sets; watch it with 'volume remove-brick {name} {} status', then commit",
                leaving(&v),
                req.bricks.join(" ")
            )
        }
        "stop" => {
            require_admin(&d, &a, &h)?;
            crate::ops::check_removing(&config, &name, &req.bricks).map_err(ApiErr::from_msg)?;
            let _ = simple_op(
                &d,
                format!("volume remove-brick {name} stop"),
                false,
                Op::RemoveBrickStop { name: name.clone() },
            )
            .await?;
            tracing::info!(volume = %name, bricks = %leaving(&v), "remove-brick stopped");
            format!(
                "remove-brick stopped: {} stay in the volume; files already moved stay where they are, and 'volume rebalance {name} fix-layout start' gives the bricks new files again",
                leaving(&v)
            )
        }
        "commit" => {
            require_admin(&d, &a, &h)?;
            crate::ops::check_removing(&config, &name, &req.bricks).map_err(ApiErr::from_msg)?;
            if !req.force {
                let runs = gather_rebalance(&d, &name).await?;
                let mut want = v.removing.clone();
                want.sort();
                let drained = runs.iter().any(|s| {
                    let mut b = s.bricks.clone();
                    b.sort();
                    s.kind == "remove-brick" && s.state == "completed" && b == want
                });
                if !drained {
                    let why = runs
                        .iter()
                        .find(|s| s.kind == "remove-brick")
                        .map(|s| {
                            format!(
                                "{} on {}{}",
                                s.state,
                                s.node,
                                if s.message.is_empty() {
                                    String::new()
                                } else {
                                    format!(": {}", s.message)
                                }
                            )
                        })
                        .unwrap_or_else(|| "no drain has run".into());
                    return Err(ApiErr::from_msg(format!(
                        "the bricks are not drained yet ({why}); wait until 'volume remove-brick {name} {} status' says completed, or use 'commit force' to drop what is still on them",
                        req.bricks.join(" ")
                    )));
                }
            }
            let _ = simple_op(
                &d,
                format!("volume remove-brick {name} commit"),
                false,
                Op::RemoveBrickCommit { name: name.clone() },
            )
            .await?;
            tracing::info!(volume = %name, bricks = %leaving(&v), force = req.force, "remove-brick committed");
            format!(
                "remove-brick commit successful: {} left volume {name}; their directories are untouched on disk (check them for stray files before reusing them)",
                leaving(&v)
            )
        }
        other => {
            return Err(ApiErr::from_msg(format!(
                "unknown remove-brick action '{other}': start, status, stop or commit"
            )));
        }
    };
    Ok(Json(RemoveBrickReply {
        message,
        nodes: gather_rebalance(&d, &name).await?,
    }))
}

async fn replace_brick(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<ReplaceBrick>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    let ports = d.cfg.brick_ports;
    let (old, new) = (req.old.clone(), req.new.clone());
    let n = name.clone();
    d.transact(
        format!("volume replace-brick {name}"),
        true,
        move |cfg, _| crate::ops::build_replace(cfg, &n, &old, &new, ports),
    )
    .await
    .map_err(ApiErr::from_msg)?;
    tracing::info!(volume = %name, old = %req.old, new = %req.new, "brick replaced; a full heal rebuilds it");
    ok_msg(format!(
        "replace-brick commit force operation successful; heal rebuilds {}",
        req.new
    ))
}

async fn reset_brick(
    State(d): D,
    Extension(a): Extension<Access>,
    h: HeaderMap,
    Path(name): Path<String>,
    Json(req): Json<ResetBrick>,
) -> Res<Message> {
    require_admin(&d, &a, &h)?;
    let (brick, commit) = (req.brick.clone(), req.commit);
    let n = name.clone();
    d.transact(
        format!("volume reset-brick {name}"),
        req.force,
        move |cfg, _| crate::ops::build_reset(cfg, &n, &brick, commit),
    )
    .await
    .map_err(ApiErr::from_msg)?;
    ok_msg(if req.commit {
        format!(
            "reset-brick commit operation successful; heal rebuilds {}",
            req.brick
        )
    } else {
        format!(
            "reset-brick start operation successful: {} is stopped",
            req.brick
        )
    })
}
