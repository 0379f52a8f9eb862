//! `cairn`: the command-line front end of Cairn.
//!
//! # Layout
//!
//! - [`cmd`]: one module per verb family (`peer`, `pool`, `volume`, `mount`), each a clap
//!   subcommand with its grammar checks and its run function.
//! - [`api`]: which `cairnd` to talk to and with which credentials, one call at a time,
//!   and how outcomes and errors are printed (text, or JSON with `--json`).
//! - [`render`]: pure functions from API types to the text people read.
//! - [`logging`]: log setup for `cairn mount`.
//!
//! The same binary is the `mount(8)` helper when started as `mount.cairn`
//! ([`cmd::mount::helper`]).
//!
//! Exit codes: 0 success, 1 the command failed, 2 bad arguments.

mod api;
mod cmd;
mod logging;
mod render;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

/// Top-level command line.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about = "Cairn distributed file system", long_about = None)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter such as
    /// `info,cairn_fuse=debug`.
    #[arg(
        long,
        global = true,
        default_value = "info",
        value_name = "LEVEL",
        value_parser = logging::parse_level
    )]
    pub log_level: String,

    /// The cairnd to talk to: HOST, HOST:PORT (default port 24007) or a Unix socket path.
    /// Default: the local socket <state-dir>/cairnd.sock if it exists, else
    /// 127.0.0.1:24007.
    #[arg(long, global = true, value_name = "ADDR")]
    pub server: Option<String>,

    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Where cairnd keeps its state (for the local socket and the pool secret).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = cairn_api::DEFAULT_STATE_DIR
    )]
    pub state_dir: PathBuf,

    /// Do not ask for confirmation (volume stop, volume delete).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,

    /// `script`: never ask for confirmation (like --yes).
    #[arg(long, global = true, value_name = "MODE", value_parser = ["script"])]
    pub mode: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage the trusted pool: peer probe HOST | status | detach HOST [force].
    #[command(subcommand)]
    Peer(cmd::peer::Peer),
    /// Show the trusted pool: pool list.
    #[command(subcommand)]
    Pool(cmd::pool::Pool),
    /// Manage volumes: create, start, stop, delete, info, list, status, set, get, reset, heal, bitrot, add-brick, remove-brick, rebalance, replace-brick, reset-brick.
    #[command(subcommand)]
    Volume(cmd::volume::Volume),
    /// Mount a volume with FUSE: HOST[:PORT]:/VOL MOUNTPOINT, or --volfile FILE MOUNTPOINT.
    Mount(cmd::mount::Mount),
}

impl Cli {
    /// The grammar checks clap cannot express (positional keywords, exactly one mount
    /// form). The error names the subcommand whose usage applies.
    fn validate(&self) -> Result<(), (Vec<&'static str>, String)> {
        match &self.command {
            Command::Volume(v) => v.validate().map_err(|e| (vec!["volume", verb(v)], e)),
            Command::Mount(m) => m.validate().map_err(|e| (vec!["mount"], e)),
            Command::Peer(_) | Command::Pool(_) => Ok(()),
        }
    }

    /// `--yes` or `--mode=script`.
    fn assume_yes(&self) -> bool {
        self.yes || self.mode.is_some()
    }
}

/// The clap name of a volume verb, for usage messages.
fn verb(v: &cmd::volume::Volume) -> &'static str {
    use cmd::volume::Volume as V;
    match v {
        V::Create { .. } => "create",
        V::Start { .. } => "start",
        V::Stop { .. } => "stop",
        V::Delete { .. } => "delete",
        V::Info { .. } => "info",
        V::List => "list",
        V::Status { .. } => "status",
        V::Set { .. } => "set",
        V::Get { .. } => "get",
        V::Reset { .. } => "reset",
        V::Heal { .. } => "heal",
        V::Bitrot { .. } => "bitrot",
        V::ReplaceBrick { .. } => "replace-brick",
        V::ResetBrick { .. } => "reset-brick",
        V::AddBrick { .. } => "add-brick",
        V::Rebalance { .. } => "rebalance",
        V::RemoveBrick { .. } => "remove-brick",
    }
}

/// Parses and checks a command line; usage errors are clap errors (exit 2).
pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    if let Err((path, msg)) = cli.validate() {
        // Built first, so the subcommand's usage line carries its full name.
        let mut command = Cli::command();
        command.build();
        for name in path {
            match command.find_subcommand(name) {
                Some(s) => command = s.clone(),
                None => break,
            }
        }
        return Err(command.error(ErrorKind::ValueValidation, msg));
    }
    Ok(cli)
}

/// A failed command: a message for the user, printed as `cairn: <message>`.
#[derive(Debug)]
pub struct Failure(pub String);

impl<T: std::fmt::Display> From<T> for Failure {
    fn from(msg: T) -> Failure {
        Failure(msg.to_string())
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if cmd::mount::helper::invoked_as_helper(args.first()) {
        return cmd::mount::helper::main(args, "info");
    }
    let cli = match parse_args(args) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let ctx = api::Ctx::new(
        cli.server.as_deref(),
        &cli.state_dir,
        cli.json,
        cli.assume_yes(),
    );
    match cli.command {
        Command::Peer(p) => p.run(&ctx),
        Command::Pool(p) => p.run(&ctx),
        Command::Volume(v) => v.run(&ctx),
        Command::Mount(m) => match m.run(&cli.log_level) {
            Ok(()) => ExitCode::SUCCESS,
            Err(Failure(msg)) => {
                eprintln!("cairn: {msg}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::peer::Peer;
    use crate::cmd::pool::Pool;
    use crate::cmd::volume::Volume;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        parse_args(std::iter::once("cairn").chain(line.split_whitespace()))
    }

    fn usage_error(line: &str) -> String {
        let e = parse(line).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{line}: {e}");
        e.to_string()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags() {
        let cli = parse("--server node2 --json --state-dir /tmp/s peer status").unwrap();
        assert_eq!(cli.server.as_deref(), Some("node2"));
        assert!(cli.json);
        assert_eq!(cli.state_dir, PathBuf::from("/tmp/s"));
        assert!(!cli.assume_yes());
        let cli = parse("volume stop pacs --mode=script").unwrap();
        assert!(cli.assume_yes());
        let cli = parse("--yes volume delete pacs").unwrap();
        assert!(cli.assume_yes());
        let cli = parse("pool list").unwrap();
        assert_eq!(cli.state_dir, PathBuf::from("/var/lib/cairn"));
        assert!(cli.server.is_none() && !cli.json);
        usage_error("--mode=interactive pool list");
    }

    #[test]
    fn peer_and_pool_grammar() {
        let p = |line: &str| match parse(line).unwrap().command {
            Command::Peer(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            p("peer probe node2"),
            Peer::Probe {
                host: "node2".into()
            }
        );
        assert_eq!(p("peer status"), Peer::Status);
        assert_eq!(
            p("peer detach node2"),
            Peer::Detach {
                host: "node2".into(),
                force: None
            }
        );
        assert_eq!(
            p("peer detach node2:24100 force"),
            Peer::Detach {
                host: "node2:24100".into(),
                force: Some("force".into())
            }
        );
        assert!(matches!(
            parse("pool list").unwrap().command,
            Command::Pool(Pool::List)
        ));
        usage_error("peer probe");
        usage_error("peer detach node2 now");
        usage_error("peer status extra");
        usage_error("pool");
    }

    #[test]
    fn volume_grammar() {
        let v = |line: &str| match parse(line).unwrap().command {
            Command::Volume(v) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            v("volume create pacs replica 3 arbiter 1 n1:/b n2:/b n3:/b force"),
            Volume::Create {
                name: "pacs".into(),
                words: "replica 3 arbiter 1 n1:/b n2:/b n3:/b force"
                    .split(' ')
                    .map(String::from)
                    .collect()
            }
        );
        assert_eq!(
            v("volume start pacs force"),
            Volume::Start {
                name: "pacs".into(),
                force: Some("force".into())
            }
        );
        assert_eq!(
            v("volume stop pacs"),
            Volume::Stop {
                name: "pacs".into(),
                force: None
            }
        );
        assert_eq!(
            v("volume delete pacs"),
            Volume::Delete {
                name: "pacs".into()
            }
        );
        assert_eq!(v("volume info"), Volume::Info { name: "all".into() });
        assert_eq!(
            v("volume info pacs"),
            Volume::Info {
                name: "pacs".into()
            }
        );
        assert_eq!(v("volume list"), Volume::List);
        assert_eq!(v("volume status"), Volume::Status { words: vec![] });
        assert_eq!(
            v("volume status pacs detail"),
            Volume::Status {
                words: vec!["pacs".into(), "detail".into()]
            }
        );
        assert_eq!(
            v("volume set pacs network.ping-timeout 5"),
            Volume::Set {
                name: "pacs".into(),
                key: Some("network.ping-timeout".into()),
                value: Some("5".into())
            }
        );
        assert_eq!(
            v("volume set pacs features.x -1"),
            Volume::Set {
                name: "pacs".into(),
                key: Some("features.x".into()),
                value: Some("-1".into())
            }
        );
        assert_eq!(
            v("volume set help"),
            Volume::Set {
                name: "help".into(),
                key: None,
                value: None
            }
        );
        assert_eq!(
            v("volume get pacs all"),
            Volume::Get {
                name: "pacs".into(),
                key: "all".into()
            }
        );
        assert_eq!(
            v("volume reset pacs"),
            Volume::Reset {
                name: "pacs".into(),
                key: None
            }
        );
        assert_eq!(
            v("volume reset pacs auth.allow"),
            Volume::Reset {
                name: "pacs".into(),
                key: Some("auth.allow".into())
            }
        );
    }

    #[test]
    fn volume_usage_errors_exit_2_with_a_clear_message() {
        let e = usage_error("volume create pacs replica n1:/b");
        assert!(
            e.contains("not a number") && e.contains("volume create"),
            "{e}"
        );
        assert!(
            usage_error("volume create pacs replica 3 arbiter 2 a:/b c:/d e:/f")
                .contains("must be 1")
        );
        assert!(
            usage_error("volume create pacs replica 2 arbiter 1 a:/b c:/d").contains("replica 3")
        );
        assert!(usage_error("volume create pacs force").contains("no bricks"));
        assert!(usage_error("volume create pacs n1:data").contains("absolute"));
        usage_error("volume create pacs");
        usage_error("volume create");
        usage_error("volume start pacs now");
        usage_error("volume stop");
        assert!(usage_error("volume status pacs inode").contains("detail or clients"));
        usage_error("volume status a b c");
        assert!(usage_error("volume set pacs").contains("missing KEY"));
        assert!(usage_error("volume set pacs k").contains("value of k"));
        usage_error("volume get pacs");
        usage_error("volume reset");
        usage_error("volume frobnicate");
    }

    #[test]
    fn mount_forms() {
        let m = |line: &str| match parse(line).unwrap().command {
            Command::Mount(m) => m,
            other => panic!("{other:?}"),
        };
        let server = m("mount node1:/pacs /mnt/pacs -o backup-volfile-servers=node2:node3");
        assert!(server.volfile.is_none());
        assert_eq!(
            server.args,
            [PathBuf::from("node1:/pacs"), PathBuf::from("/mnt/pacs")]
        );
        let file = m("mount --volfile v.yaml /mnt/pacs");
        assert_eq!(file.volfile, Some(PathBuf::from("v.yaml")));
        assert!(usage_error("mount /mnt/pacs").contains("HOST:/VOL"));
        assert!(usage_error("mount --volfile v.yaml node1:/pacs /mnt/pacs").contains("not both"));
        assert!(usage_error("mount node1 /mnt/pacs").contains("HOST[:PORT]:/VOLUME"));
        assert!(
            usage_error("mount --volfile v.yaml /mnt -o backup-volfile-servers=n2")
                .contains("HOST:/VOL mounts")
        );
        usage_error("mount node1:/pacs /mnt/pacs -o noatime");
        usage_error("mount node1:/pacs /mnt/pacs extra");
        usage_error("mount");
    }
}
