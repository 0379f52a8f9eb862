//! `cairn-brickd`: serves one brick directory to Cairn clients.
//!
//! Either from a brick volfile (what the management daemon generates), or from flags that
//! describe the default brick graph. On SIGTERM or SIGINT it closes every client connection
//! and exits 0. It prints one line, `listening on ADDR`, once it accepts connections.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use cairn_bricks::brickgraph::{BrickSpec, brick_volfile};
use cairn_translators::Graph;
use cairn_translators::protocol::server::Server;
use cairn_volfiles::{Role, Volfile};
use clap::Parser;

/// Serve one brick directory to Cairn clients (normally started by cairnd; by hand for tests and the quickstart).
#[derive(Parser, Debug)]
#[command(name = "cairn-brickd", version, long_about = None)]
struct Args {
    /// A brick volfile to serve (the other graph flags are then not allowed).
    #[arg(long, conflicts_with_all = ["directory", "listen", "init"])]
    volfile: Option<PathBuf>,

    /// The brick directory.
    #[arg(long, required_unless_present = "volfile")]
    directory: Option<PathBuf>,

    /// Address to accept clients on, HOST:PORT (port 0 picks a free port).
    #[arg(long, required_unless_present = "volfile")]
    listen: Option<String>,

    /// The volume name.
    #[arg(long, default_value = "cairn")]
    volume: String,

    /// The volume id (stamped on the brick with --init, checked otherwise).
    #[arg(long, default_value = "")]
    volume_id: String,

    /// The brick id (stamped on the brick with --init, checked otherwise).
    #[arg(long, default_value = "")]
    brick_id: String,

    /// Make DIRECTORY a new brick if it has no identity yet.
    #[arg(long)]
    init: bool,

    /// Print the brick volfile these flags describe and exit.
    #[arg(long)]
    print_volfile: bool,

    /// Append logs to this file instead of standard error.
    #[arg(long)]
    log_file: Option<PathBuf>,

    /// Log level: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, default_value = "info")]
    log_level: String,

    /// Write the process id to this file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

fn volfile_from(args: &Args) -> Result<Volfile, String> {
    if let Some(path) = &args.volfile {
        return cairn_volfiles::read_file(path).map_err(|e| e.to_string());
    }
    let (Some(directory), Some(listen)) = (&args.directory, &args.listen) else {
        return Err("--directory and --listen are required without --volfile".into());
    };
    Ok(brick_volfile(&BrickSpec {
        volume: &args.volume,
        volume_id: &args.volume_id,
        brick_id: &args.brick_id,
        directory,
        listen,
        init: args.init,
    }))
}

fn init_logging(args: &Args) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .map_err(|e| format!("--log-level {}: {e}", args.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match &args.log_file {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

async fn serve(vf: Volfile) -> Result<(), String> {
    let graph = Graph::from_volfile(&vf, &cairn_bricks::registry()).map_err(|e| e.to_string())?;
    if graph.role() != Role::Brick {
        return Err(format!("the volfile's role is {}, not brick", graph.role()));
    }
    graph.start().await.map_err(|e| e.to_string())?;
    let addr = graph
        .find::<Server>()
        .next()
        .and_then(Server::local_addr)
        .map(|a| a.to_string())
        .unwrap_or_else(|| "nowhere (no protocol/server in the graph)".into());
    tracing::info!(volume = graph.volume(), %addr, "brick started");
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    graph.stop().await;
    // Let connection tasks see the stop and close their sockets.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    tracing::info!(volume = graph.volume(), "brick stopped");
    Ok(())
}

/// The threads the brick runs: its storage translator's `io-threads` (filesystem calls run
/// inline on them, see `storage/posix`). An unreadable value is left for the graph's own
/// option check to report.
fn io_threads(vf: &Volfile) -> usize {
    let decl = &cairn_bricks::posix::TYPE.decl;
    let given = vf
        .graph
        .iter()
        .find(|n| n.type_name == decl.type_name)
        .and_then(|n| n.options.get("io-threads"));
    // The option's own spec: its range checks the given value, its default stands in for
    // a missing or bad one.
    let spec = decl.options.iter().find(|s| s.key == "io-threads");
    let parse = |text: &str| match spec.map(|s| s.kind.parse(text)) {
        Some(Ok(cairn_volfiles::OptionValue::Int(n))) => usize::try_from(n).ok(),
        _ => None,
    };
    given
        .and_then(|t| parse(t))
        .or_else(|| spec.and_then(|s| s.default).and_then(parse))
        .unwrap_or(1)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let vf = match volfile_from(&args) {
        Ok(vf) => vf,
        Err(e) => {
            eprintln!("cairn-brickd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.print_volfile {
        return match cairn_volfiles::emit(&vf) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cairn-brickd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = init_logging(&args) {
        eprintln!("cairn-brickd: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(pid_file) = &args.pid_file
        && let Err(e) = std::fs::write(pid_file, format!("{}\n", std::process::id()))
    {
        eprintln!("cairn-brickd: {}: {e}", pid_file.display());
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads(&vf))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn-brickd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(vf)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if args.log_file.is_some() {
                tracing::error!("{e}");
            }
            eprintln!("cairn-brickd: {e}");
            ExitCode::FAILURE
        }
    }
}
