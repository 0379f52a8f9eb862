//! `cairn`: the command-line front end of Cairn.
//!
//! Today it has one verb, `cairn mount`; `peer` and `volume` management come next, each as
//! one module under [`cmd`] and one variant of [`Command`].
//!
//! Exit codes: 0 success, 1 the command failed, 2 bad arguments (clap's own).

mod cmd;
mod logging;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount a volume with FUSE.
    Mount(cmd::mount::Mount),
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mount(m) => m.run(&cli.log_level),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("cairn: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
