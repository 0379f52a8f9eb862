//! `cairnd`: the management daemon. One per node; several may run on one machine bound to
//! different addresses (127.0.0.1, 127.0.0.2, ...), each with its own state directory.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use cairn_daemon::ops::PortRange;
use cairn_daemon::{Daemon, DaemonConfig};
use clap::Parser;

/// The Cairn management daemon: trusted pool, volumes, brick supervision.
#[derive(Parser, Debug)]
#[command(name = "cairnd", version, long_about = None)]
struct Args {
    /// Address of the management API (peers, clients, remote CLI reads).
    #[arg(long, default_value = "0.0.0.0:24007")]
    bind: SocketAddr,

    /// State directory: configuration, brick volfiles and pid files, the local CLI socket.
    #[arg(long, default_value = cairn_api::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,

    /// Log directory: cairnd.log, and bricks/ for brick logs.
    #[arg(long, default_value = "/var/log/cairn")]
    log_dir: PathBuf,

    /// The name peers and clients use for this node (default: the bind address, or the
    /// machine's host name when binding to all addresses).
    #[arg(long)]
    hostname: Option<String>,

    /// Ports for bricks, FIRST-LAST.
    #[arg(long, default_value = "24010-24999")]
    brick_ports: String,

    /// The cairn-brickd executable (default: next to cairnd).
    #[arg(long)]
    brickd: Option<PathBuf>,

    /// The node's Samba configuration, which shares of volumes with smb.enable on are
    /// included into.
    #[arg(long, default_value = "/etc/samba/smb.conf")]
    smb_conf: PathBuf,

    /// Where volumes shared over SMB are mounted (DIR/VOL).
    #[arg(long, default_value = "/run/cairn/smb")]
    smb_mounts: PathBuf,

    /// The cairn executable, for those mounts (default: next to cairnd).
    #[arg(long)]
    cairn: Option<PathBuf>,

    /// Log level or tracing filter.
    #[arg(long, default_value = "info")]
    log_level: String,

    /// Log to standard error instead of LOG_DIR/cairnd.log.
    #[arg(long)]
    log_stderr: bool,
}

fn ports(text: &str) -> Result<PortRange, String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| format!("--brick-ports {text}: write FIRST-LAST, e.g. 24010-24999"))?;
    let first: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("--brick-ports {text}: '{a}' is not a port"))?;
    let last: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("--brick-ports {text}: '{b}' is not a port"))?;
    if first == 0 || first > last {
        return Err(format!("--brick-ports {text}: the range is empty"));
    }
    Ok(PortRange { first, last })
}

fn config(args: &Args) -> Result<DaemonConfig, String> {
    let host = match &args.hostname {
        Some(h) => h.clone(),
        None if args.bind.ip().is_unspecified() => nix::unistd::gethostname()
            .map_err(|e| format!("cannot read the host name: {e}; pass --hostname"))?
            .to_string_lossy()
            .into_owned(),
        None => args.bind.ip().to_string(),
    };
    let brickd = match &args.brickd {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("cairn-brickd"),
    };
    if !brickd.exists() {
        return Err(format!("{} not found (pass --brickd)", brickd.display()));
    }
    let cairn = match &args.cairn {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("cairn"),
    };
    Ok(DaemonConfig {
        bind: args.bind,
        host,
        state_dir: args.state_dir.clone(),
        log_dir: args.log_dir.clone(),
        brick_ports: ports(&args.brick_ports)?,
        brickd,
        smb: cairn_daemon::smb::SmbPaths {
            conf: args.smb_conf.clone(),
            mounts: args.smb_mounts.clone(),
            cairn,
        },
    })
}

fn init_logging(args: &Args) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .map_err(|e| format!("--log-level {}: {e}", args.log_level))?;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if args.log_stderr {
        b.with_writer(std::io::stderr).init();
        return Ok(());
    }
    std::fs::create_dir_all(&args.log_dir)
        .map_err(|e| format!("{}: {e}", args.log_dir.display()))?;
    let path = args.log_dir.join("cairnd.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    b.with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
    Ok(())
}

async fn run(cfg: DaemonConfig) -> Result<(), String> {
    let tcp = tokio::net::TcpListener::bind(cfg.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.bind))?;
    let sock_path = cfg.state_dir.join(cairn_api::SOCKET_NAME);
    let daemon = Daemon::open(cfg)?;
    let _ = std::fs::remove_file(&sock_path);
    let unix = tokio::net::UnixListener::bind(&sock_path)
        .map_err(|e| format!("cannot listen on {}: {e}", sock_path.display()))?;
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", sock_path.display()))?;
    let me = daemon.me()?;
    tracing::info!(uuid = %me.uuid, host = %me.host, port = me.port, "cairnd started");
    println!("cairnd {} listening on {}", me.host, daemon.cfg.bind);
    tokio::spawn(Daemon::supervise(std::sync::Arc::clone(&daemon)));
    tokio::spawn(Daemon::monitor(std::sync::Arc::clone(&daemon)));
    tokio::spawn(Daemon::heal_workers(std::sync::Arc::clone(&daemon)));
    tokio::spawn(Daemon::scrub_workers(std::sync::Arc::clone(&daemon)));
    tokio::spawn(Daemon::nfs_gateways(std::sync::Arc::clone(&daemon)));
    tokio::spawn(Daemon::smb_shares(std::sync::Arc::clone(&daemon)));
    daemon.resume_rebalances();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        r = cairn_daemon::http::serve(std::sync::Arc::clone(&daemon), tcp, unix) => r?,
        _ = term.recv() => tracing::info!("SIGTERM: cairnd stops; bricks keep running"),
        _ = int.recv() => tracing::info!("SIGINT: cairnd stops; bricks keep running"),
    }
    daemon.rebalance.shutdown();
    daemon.nfs.stop_all().await;
    let _ = std::fs::remove_file(&sock_path);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cairnd: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&args) {
        eprintln!("cairnd: {e}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairnd: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("cairnd: {e}");
            ExitCode::FAILURE
        }
    }
}
