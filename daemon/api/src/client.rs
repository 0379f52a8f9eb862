//! A small HTTP/1.1 JSON client for the management API, over TCP or a Unix socket.
//!
//! One connection per request: management traffic is rare, and this keeps a dead peer from
//! poisoning a pooled connection.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::DEFAULT_PORT;

/// Largest reply accepted (a volfile or a long volume list is far smaller).
const MAX_REPLY: usize = 16 << 20;

/// Where a daemon listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port`.
    Tcp(String),
    /// A Unix socket path (the local CLI socket).
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses `host`, `host:port`, `[v6]:port`, or a socket path (anything with a `/`).
    pub fn parse(text: &str) -> Endpoint {
        if text.contains('/') {
            return Endpoint::Unix(PathBuf::from(text));
        }
        Endpoint::Tcp(with_default_port(text))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => f.write_str(a),
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// `host` → `host:24007`; `host:port` and `[v6]:port` unchanged; a bare IPv6 gets brackets.
pub fn with_default_port(host: &str) -> String {
    if host.starts_with('[') {
        if host.contains("]:") {
            host.to_string()
        } else {
            format!("{host}:{DEFAULT_PORT}")
        }
    } else if host.matches(':').count() > 1 {
        format!("[{host}]:{DEFAULT_PORT}")
    } else if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{DEFAULT_PORT}")
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The daemon could not be reached.
    #[error("cannot reach cairnd at {endpoint}: {reason}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// No answer in time.
    #[error("cairnd at {endpoint} did not answer within {secs} s")]
    Timeout {
        /// Where.
        endpoint: String,
        /// The limit.
        secs: u64,
    },
    /// The daemon answered with an error.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The daemon's message.
        message: String,
    },
    /// The answer could not be understood.
    #[error("unexpected answer from cairnd at {endpoint}: {reason}")]
    Protocol {
        /// Where.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
}

impl ApiError {
    /// True when the daemon could not be reached at all (so another may be tried).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ApiError::Connect { .. } | ApiError::Timeout { .. })
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: String,
}

/// A raw reply.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The config version header, when present.
    pub version: Option<u64>,
    /// The body.
    pub body: Bytes,
}

/// A management API client.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    token: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
}

impl Client {
    /// A client for `endpoint`, 30 s per call.
    pub fn new(endpoint: Endpoint) -> Client {
        Client {
            endpoint,
            token: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Sets the time allowed to establish the connection (a host that drops packets is
    /// given up on this fast, whatever the call's own limit).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Client {
        self.connect_timeout = timeout;
        self
    }

    /// Sends `Authorization: Bearer <token>` (the pool secret) with every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// Sets the per-call time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// GET returning JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let r = self.call("GET", path, None).await?;
        self.json(r)
    }

    /// POST JSON returning JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let bytes = serde_json::to_vec(body).map_err(|e| self.protocol(e.to_string()))?;
        let r = self.call("POST", path, Some(bytes)).await?;
        self.json(r)
    }

    /// DELETE returning JSON.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let r = self.call("DELETE", path, None).await?;
        self.json(r)
    }

    /// GET returning text and the config version header.
    pub async fn get_text(&self, path: &str) -> Result<(String, Option<u64>), ApiError> {
        let r = self.call("GET", path, None).await?;
        let r = self.check(r)?;
        let text = String::from_utf8(r.body.to_vec()).map_err(|e| self.protocol(e.to_string()))?;
        Ok((text, r.version))
    }

    fn protocol(&self, reason: String) -> ApiError {
        ApiError::Protocol {
            endpoint: self.endpoint.to_string(),
            reason,
        }
    }

    fn check(&self, r: Reply) -> Result<Reply, ApiError> {
        if (200..300).contains(&r.status) {
            return Ok(r);
        }
        let message = serde_json::from_slice::<ErrorBody>(&r.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&r.body).trim().to_string());
        Err(ApiError::Refused {
            status: r.status,
            message,
        })
    }

    fn json<T: DeserializeOwned>(&self, r: Reply) -> Result<T, ApiError> {
        let r = self.check(r)?;
        serde_json::from_slice(&r.body).map_err(|e| self.protocol(e.to_string()))
    }

    /// One request on a fresh connection.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ApiError> {
        let endpoint = self.endpoint.to_string();
        let secs = self.timeout.as_secs();
        match tokio::time::timeout(self.timeout, self.call_inner(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::Timeout { endpoint, secs }),
        }
    }

    async fn call_inner(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ApiError> {
        let connect = |reason: String| ApiError::Connect {
            endpoint: self.endpoint.to_string(),
            reason,
        };
        let host = match &self.endpoint {
            Endpoint::Tcp(a) => a.clone(),
            Endpoint::Unix(_) => "localhost".to_string(),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("accept", "application/json");
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        if let Some(t) = &self.token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.protocol(e.to_string()))?;
        let resp = match &self.endpoint {
            Endpoint::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| connect(e.to_string()))?;
                let _ = stream.set_nodelay(true);
                send(TokioIo::new(stream), req).await
            }
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| connect(e.to_string()))?;
                send(TokioIo::new(stream), req).await
            }
        }
        .map_err(|e| connect(e.to_string()))?;
        let status = resp.status().as_u16();
        let version = resp
            .headers()
            .get(crate::VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = Limited::new(resp.into_body(), MAX_REPLY)
            .collect()
            .await
            .map_err(|e| self.protocol(format!("reading the reply: {e}")))?
            .to_bytes();
        Ok(Reply {
            status,
            version,
            body,
        })
    }
}

async fn send<I>(
    io: I,
    req: Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("node1"),
            Endpoint::Tcp("node1:24007".into())
        );
        assert_eq!(
            Endpoint::parse("10.0.0.1:9000"),
            Endpoint::Tcp("10.0.0.1:9000".into())
        );
        assert_eq!(Endpoint::parse("::1"), Endpoint::Tcp("[::1]:24007".into()));
        assert_eq!(Endpoint::parse("[::1]:5"), Endpoint::Tcp("[::1]:5".into()));
        assert_eq!(
            Endpoint::parse("[::1]"),
            Endpoint::Tcp("[::1]:24007".into())
        );
        assert_eq!(
            Endpoint::parse("/var/lib/cairn/cairnd.sock"),
            Endpoint::Unix("/var/lib/cairn/cairnd.sock".into())
        );
    }
}
