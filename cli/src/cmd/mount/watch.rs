//! The client volfile of a server-form mount: fetched from the first volfile server that
//! answers before mounting, then watched for changes for the life of the mount.
//!
//! The watch is a long poll: `GET …/volfile?role=client&wait_version=V` returns when the
//! configuration version differs from `V`, or with the same version after the daemon's
//! own timeout (about 25 s). A new client graph is built, started, given the connect
//! timeout to come up, and only then switched in; if it does not come up, the mount keeps
//! the graph it has and tries again at the next change. Unreachable or refusing servers
//! are rotated through with a growing pause. Nothing here ever ends the mount.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_api::{ApiError, Client, Endpoint, routes};
use cairn_fuse::GraphSwitcher;
use cairn_translators::Graph;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{listen, parse_client_volfile, registry, wait_up};

/// Per-call limit of a long poll (the daemon answers within about 25 s).
pub const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(40);
/// Shortest time between two polls that brought nothing new (a daemon that does not
/// hold the request must not be hammered).
const POLL_FLOOR: Duration = Duration::from_secs(5);
/// First and longest pause after a failed poll.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A client volfile as a server gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The YAML text.
    pub text: String,
    /// The configuration version it belongs to, when the server said.
    pub version: Option<u64>,
    /// Which of the servers answered (an index into the list).
    pub server: usize,
}

/// `/v1/volumes/VOL/volfile?role=client[&wait_version=V]`.
pub fn volfile_path(volume: &str, wait_version: Option<u64>) -> String {
    let base = format!("{}?role=client", routes::volume_sub(volume, "volfile"));
    match wait_version {
        Some(v) => format!("{base}&wait_version={v}"),
        None => base,
    }
}

fn client(server: &str, timeout: Duration) -> Client {
    Client::new(Endpoint::Tcp(server.to_string())).with_timeout(timeout)
}

/// Asks each server in turn for the volume's client volfile. A server that cannot be
/// reached is skipped; one that answers with an error (no such volume, not allowed by
/// `auth.allow`) ends the search with its message.
pub async fn fetch_first(
    servers: &[String],
    volume: &str,
    timeout: Duration,
) -> Result<Fetched, String> {
    let path = volfile_path(volume, None);
    let mut away = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        match client(server, timeout).get_text(&path).await {
            Ok((text, version)) => {
                if !away.is_empty() {
                    tracing::info!("volfile of {volume} fetched from {server}");
                }
                return Ok(Fetched {
                    text,
                    version,
                    server: i,
                });
            }
            Err(e) if e.is_unreachable() => {
                tracing::debug!("volfile server {server}: {e}");
                away.push(e.to_string());
            }
            Err(ApiError::Refused { message, .. }) => {
                return Err(format!("volfile server {server} refused: {message}"));
            }
            Err(e) => return Err(format!("volfile server {server}: {e}")),
        }
    }
    Err(format!(
        "no volfile server could be reached ({})",
        away.join("; ")
    ))
}

/// [`fetch_first`] from synchronous code (the checks before mounting).
pub fn fetch_first_blocking(
    servers: &[String],
    volume: &str,
    timeout: Duration,
) -> Result<Fetched, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    rt.block_on(fetch_first(servers, volume, timeout))
}

/// What a poll brought, compared with what the mount serves.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Same version, same graph: the long poll timed out.
    Nothing,
    /// A new version (another volume, or a change that does not touch clients) with the
    /// same client graph: remember the version, keep the graph.
    SameGraph,
    /// A different client graph.
    NewGraph,
}

/// Compares a poll's answer with the current volfile.
pub fn classify(current: &Fetched, text: &str, version: Option<u64>) -> Change {
    if text != current.text {
        Change::NewGraph
    } else if version != current.version {
        Change::SameGraph
    } else {
        Change::Nothing
    }
}

/// A configuration version for messages: the number, or `unknown`.
pub fn version_text(v: Option<u64>) -> String {
    v.map_or_else(|| "unknown".to_string(), |v| v.to_string())
}

/// Watches one mount's volfile.
pub struct Watcher {
    /// The volfile servers, `host:port`.
    pub servers: Vec<String>,
    /// The volume.
    pub volume: String,
    /// What the mount serves now (its version: the latest one with the same client graph).
    pub current: Fetched,
    /// How long a new graph may take to come up.
    pub connect_timeout: Duration,
    /// Switches the mount to a new graph.
    pub switcher: GraphSwitcher,
}

impl Watcher {
    /// Polls until the mount ends (or the task is aborted).
    pub async fn run(mut self) {
        if self.servers.is_empty() {
            return;
        }
        // The version waited on: the served one, or a newer one whose graph failed.
        let mut waiting = self.current.version;
        let mut at = self.current.server % self.servers.len();
        let mut backoff = BACKOFF_MIN;
        let mut failing = false;
        loop {
            if self.switcher.current_generation().is_none() {
                return; // the mount has ended
            }
            let server = self.servers[at].clone();
            let path = volfile_path(&self.volume, waiting);
            let asked = Instant::now();
            match client(&server, LONG_POLL_TIMEOUT).get_text(&path).await {
                Ok((text, version)) => {
                    if failing {
                        tracing::info!("volfile server {server} answers again");
                        failing = false;
                    }
                    backoff = BACKOFF_MIN;
                    let change = classify(&self.current, &text, version);
                    if change == Change::NewGraph && version.is_some() && version == waiting {
                        // The graph of this version already failed: wait for the next one.
                        tokio::time::sleep_until(asked + POLL_FLOOR).await;
                        continue;
                    }
                    waiting = version;
                    match change {
                        Change::Nothing => {
                            tokio::time::sleep_until(asked + POLL_FLOOR).await;
                        }
                        Change::SameGraph => {
                            tracing::debug!(
                                "configuration version {} → {}; the client graph of {} did not \
                                 change",
                                version_text(self.current.version),
                                version_text(version),
                                self.volume
                            );
                            self.current.version = version;
                            tokio::time::sleep_until(asked + Duration::from_millis(100)).await;
                        }
                        Change::NewGraph => {
                            let next = Fetched {
                                text,
                                version,
                                server: at,
                            };
                            if !self.apply(next).await {
                                return;
                            }
                        }
                    }
                }
                Err(e) => {
                    let next = (at + 1) % self.servers.len();
                    if !failing || !e.is_unreachable() {
                        tracing::warn!(
                            "watching the volfile of {}: {server}: {e}; trying {} in {} s",
                            self.volume,
                            self.servers[next],
                            backoff.as_secs()
                        );
                    } else {
                        tracing::debug!("watching the volfile: {server}: {e}");
                    }
                    failing = true;
                    at = next;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Builds, starts and switches to the graph of `next`. A graph that cannot come up
    /// is not retried before the next change (the caller waits on `next`'s version).
    /// False when the mount has ended.
    async fn apply(&mut self, next: Fetched) -> bool {
        let from = version_text(self.current.version);
        let to = version_text(next.version);
        match self.prepare(&next.text).await {
            Ok(graph) => match self.switcher.switch(graph) {
                Some(generation) => {
                    tracing::info!(
                        generation,
                        "switched the mount of {} from the client graph of configuration \
                         version {from} to version {to}",
                        self.volume
                    );
                    self.current = next;
                }
                None => return false,
            },
            Err(why) => {
                tracing::warn!(
                    "the client graph of {} at configuration version {to} is not used: {why}; \
                     the mount keeps version {from} until the next change",
                    self.volume
                );
            }
        }
        true
    }

    /// Parses, builds and starts a graph, and waits for it to come up.
    async fn prepare(&self, text: &str) -> Result<Graph, String> {
        let what = format!("new volfile of {}", self.volume);
        let vf = parse_client_volfile(text, &what, &self.volume)?;
        let graph = Graph::from_volfile(&vf, &registry()).map_err(|e| format!("{what}: {e}"))?;
        let up = Arc::new(Notify::new());
        let quiet = Arc::new(AtomicBool::new(false));
        listen(&graph, Arc::clone(&up), Arc::clone(&quiet));
        graph
            .start()
            .await
            .map_err(|e| format!("cannot start the new client graph: {e}"))?;
        if wait_up(&graph, &up, self.connect_timeout).await {
            return Ok(graph);
        }
        quiet.store(true, Ordering::Relaxed);
        graph.stop().await;
        Err(format!(
            "no brick of the new graph answered within {} s",
            self.connect_timeout.as_secs()
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn volfile_routes() {
        assert_eq!(
            volfile_path("pacs", None),
            "/v1/volumes/pacs/volfile?role=client"
        );
        assert_eq!(
            volfile_path("pacs", Some(42)),
            "/v1/volumes/pacs/volfile?role=client&wait_version=42"
        );
    }

    #[test]
    fn versions_read_well() {
        assert_eq!(version_text(Some(7)), "7");
        assert_eq!(version_text(None), "unknown");
    }

    #[test]
    fn changes_are_classified() {
        let cur = Fetched {
            text: "a".into(),
            version: Some(3),
            server: 0,
        };
        assert_eq!(classify(&cur, "a", Some(3)), Change::Nothing);
        assert_eq!(classify(&cur, "a", Some(4)), Change::SameGraph);
        assert_eq!(classify(&cur, "a", None), Change::SameGraph);
        assert_eq!(classify(&cur, "b", Some(4)), Change::NewGraph);
        assert_eq!(classify(&cur, "b", Some(3)), Change::NewGraph);
    }

    /// A one-shot-per-connection HTTP server answering every request with `status` and
    /// `body`, recording the request lines it saw.
    async fn http_server(status: u16, body: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    log.lock()
                        .unwrap()
                        .push(head.lines().next().unwrap_or_default().to_string());
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\
                         x-cairn-config-version: 7\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        (addr, seen)
    }

    /// An address where nothing listens.
    async fn dead_address() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        addr
    }

    #[tokio::test]
    async fn unreachable_servers_are_skipped() {
        let dead = dead_address().await;
        let (good, seen) = http_server(200, "version: 1\n").await;
        let servers = vec![dead.clone(), good.clone()];
        let got = fetch_first(&servers, "pacs", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            got,
            Fetched {
                text: "version: 1\n".into(),
                version: Some(7),
                server: 1
            }
        );
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            ["GET /v1/volumes/pacs/volfile?role=client HTTP/1.1"]
        );
        let e = fetch_first(
            &[dead.clone(), dead_address().await],
            "pacs",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(e.contains("no volfile server could be reached"), "{e}");
        assert!(e.contains(&dead), "{e}");
    }

    #[tokio::test]
    async fn a_refusing_server_ends_the_search() {
        let (refusing, _) = http_server(404, r#"{"error":"volume pacs does not exist"}"#).await;
        let (good, seen) = http_server(200, "x").await;
        let e = fetch_first(&[refusing.clone(), good], "pacs", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            format!("volfile server {refusing} refused: volume pacs does not exist")
        );
        assert!(seen.lock().unwrap().is_empty(), "the backup was not asked");
    }
}
