//! [`Gateway`]: an NFSv3 listener for one volume, with its address check.
//!
//! `nfs3_server` accepts every connection it is offered, so the gateway puts its own
//! listener in front: a connection from an address the allow and reject lists do not admit
//! is closed at once (and logged); an admitted one is joined to the `nfs3_server` listener
//! on the loopback interface. Stopping the gateway closes the listener and every client
//! connection, and releases the descriptors it held.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_translators::XlatorRef;
use nfs3_server::tcp::{NFSTcp, NFSTcpListener};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::fs::CairnNfs;

/// How a gateway serves.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The address clients connect to (NFS, MOUNT and portmap all on this port).
    pub bind: SocketAddr,
    /// The export path clients mount (`/VOL`).
    pub export: String,
    /// Client addresses admitted (`auth.allow` forms: `*`, addresses, wildcards, CIDR).
    pub allow: Vec<String>,
    /// Client addresses refused even when admitted.
    pub reject: Vec<String>,
    /// The generation in every handle ([`crate::generation_for`] of the volume id).
    pub generation: u64,
    /// Most descriptors kept open.
    pub max_fds: usize,
    /// How long an unused descriptor stays open.
    pub fd_idle: Duration,
}

/// A running gateway.
pub struct Gateway {
    local: SocketAddr,
    fs: CairnNfs,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Starts serving `top` as configured. Fails when an address cannot be bound.
    pub async fn start(cfg: GatewayConfig, top: XlatorRef) -> std::io::Result<Gateway> {
        let fs = CairnNfs::new(top, cfg.generation, cfg.max_fds, cfg.fd_idle);
        let loopback = if cfg.bind.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let mut inner =
            NFSTcpListener::bind_with_generation(loopback, fs.clone(), cfg.generation).await?;
        inner.with_export_name(cfg.export.trim_matches('/'));
        let inner_addr = SocketAddr::new(inner.get_listen_ip(), inner.get_listen_port());
        let outer = TcpListener::bind(cfg.bind).await?;
        let local = outer.local_addr()?;
        let serve = tokio::spawn(async move {
            if let Err(e) = inner.handle_forever().await {
                tracing::error!(error = %e, "the NFS server stopped");
            }
        });
        let accept = tokio::spawn(accept_loop(outer, inner_addr, cfg.allow, cfg.reject));
        let sweeper = {
            let fs = fs.clone();
            let every =
                (fs.fd_idle() / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    fs.sweep(false).await;
                }
            })
        };
        tracing::info!(addr = %local, export = %cfg.export, "NFS gateway serving");
        Ok(Gateway {
            local,
            fs,
            tasks: vec![accept, serve, sweeper],
        })
    }

    /// Stops listening, closes every client connection and releases every descriptor.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        // Requests still running hold their descriptors; give them a moment.
        for _ in 0..20 {
            self.fs.sweep(true).await;
            if self.fs.open_fds() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(addr = %self.local, "NFS gateway stopped");
    }
}

/// Accepts clients, drops those not admitted, and joins the rest to the NFS server. The
/// connections live in a set this task owns, so aborting it closes them all.
async fn accept_loop(
    outer: TcpListener,
    inner: SocketAddr,
    allow: Vec<String>,
    reject: Vec<String>,
) {
    let allow = Arc::new(allow);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = outer.accept() => {
                let (sock, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "NFS accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let ip = peer.ip().to_canonical();
                if !cairn_translators::protocol::auth::admitted(ip, &allow, &reject) {
                    tracing::warn!(client = %peer, "NFS client refused by nfs.rpc-auth-allow/reject");
                    drop(sock);
                    continue;
                }
                tracing::debug!(client = %peer, "NFS client connected");
                conns.spawn(join(sock, inner));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Copies bytes both ways between a client and the NFS server until either side closes.
async fn join(mut client: TcpStream, inner: SocketAddr) {
    let _ = client.set_nodelay(true);
    let mut server = match TcpStream::connect(inner).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot reach the NFS server on the loopback interface");
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
