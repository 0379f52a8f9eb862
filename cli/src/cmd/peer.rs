//! `cairn peer probe HOST | peer status | peer detach HOST [force]`.

use std::process::ExitCode;

use cairn_api::{Message, PeerDetach, PeerProbe, PoolEntry, routes};

use crate::api::{self, CmdError, Ctx, Output};
use crate::render;

/// The `peer` verbs.
#[derive(clap::Subcommand, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Add HOST (host or host:port) to this node's pool.
    Probe {
        /// The node to add.
        #[arg(value_name = "HOST")]
        host: String,
    },
    /// Show the other members of the pool and whether they are connected.
    Status,
    /// Remove HOST from the pool (`force`: even if it cannot be reached).
    Detach {
        /// The node to remove.
        #[arg(value_name = "HOST")]
        host: String,
        /// `force`.
        #[arg(value_name = "force", value_parser = ["force"])]
        force: Option<String>,
    },
}

impl Peer {
    /// The label of error messages (`peer probe: failed: ...`).
    pub fn label(&self) -> &'static str {
        match self {
            Peer::Probe { .. } => "peer probe",
            Peer::Status => "peer status",
            Peer::Detach { .. } => "peer detach",
        }
    }

    /// Runs the verb and prints its outcome.
    pub fn run(self, ctx: &Ctx) -> ExitCode {
        let label = self.label();
        api::finish(label, ctx.json, self.execute(ctx))
    }

    fn execute(self, ctx: &Ctx) -> Result<Output, CmdError> {
        match self {
            Peer::Probe { host } => {
                let body = PeerProbe { host };
                let m: Message =
                    ctx.run(
                        true,
                        |c| async move { c.post(routes::PEER_PROBE, &body).await },
                    )?;
                Ok(success("peer probe", &m))
            }
            Peer::Detach { host, force } => {
                let body = PeerDetach {
                    host,
                    force: force.is_some(),
                };
                let m: Message =
                    ctx.run(
                        true,
                        |c| async move { c.post(routes::PEER_DETACH, &body).await },
                    )?;
                Ok(success("peer detach", &m))
            }
            Peer::Status => {
                let pool: Vec<PoolEntry> =
                    ctx.run(false, |c| async move { c.get(routes::POOL).await })?;
                if ctx.json {
                    api::json(&pool)
                } else {
                    Ok(Output::Print(render::peer_status(&pool)))
                }
            }
        }
    }
}

/// `peer probe: success`, or the daemon's own message when it has one (for example that
/// the host is already in the pool).
pub fn success(label: &str, m: &Message) -> Output {
    let message = m.message.trim();
    if message.is_empty() {
        Output::done(format!("{label}: success"), "")
    } else {
        Output::done(format!("{label}: success: {message}"), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_lines() {
        assert_eq!(
            success("peer probe", &Message::new("")),
            Output::Done {
                text: "peer probe: success".into(),
                message: "peer probe: success".into()
            }
        );
        assert_eq!(
            success(
                "peer probe",
                &Message::new("node2 is already in the pool\n")
            ),
            Output::Done {
                text: "peer probe: success: node2 is already in the pool".into(),
                message: "node2 is already in the pool".into()
            }
        );
    }
}
