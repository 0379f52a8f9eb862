//! `cairn pool list`.

use std::process::ExitCode;

use cairn_api::{PoolEntry, routes};

use crate::api::{self, CmdError, Ctx, Output};
use crate::render;

/// The `pool` verbs.
#[derive(clap::Subcommand, Debug, PartialEq, Eq)]
pub enum Pool {
    /// Every member of the pool, this node included (as `localhost`).
    List,
}

impl Pool {
    /// Runs the verb and prints its outcome.
    pub fn run(self, ctx: &Ctx) -> ExitCode {
        api::finish("pool list", ctx.json, self.execute(ctx))
    }

    fn execute(self, ctx: &Ctx) -> Result<Output, CmdError> {
        match self {
            Pool::List => {
                let pool: Vec<PoolEntry> =
                    ctx.run(false, |c| async move { c.get(routes::POOL).await })?;
                if ctx.json {
                    api::json(&pool)
                } else {
                    Ok(Output::Print(render::pool_list(&pool)))
                }
            }
        }
    }
}
