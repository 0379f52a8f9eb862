//! `cairn volume create|start|stop|delete|info|list|status|set|get|reset|heal`, with Gluster's
//! positional keywords:
//!
//! ```text
//! volume create VOL [replica N [arbiter 1]] HOST:/PATH... [force]
//! volume start VOL [force] · stop VOL [force] · delete VOL
//! volume info [VOL|all] · list · status [VOL|all] [detail|clients]
//! volume set VOL KEY VALUE · set help · get VOL KEY|all · reset VOL [KEY]
//! ```
//!
//! The keyword grammar is checked by [`Volume::validate`] right after clap has parsed the
//! words, so a malformed command is an argument error (exit 2) before anything is sent.

use std::collections::HashSet;
use std::process::ExitCode;

use cairn_api::{
    Force, Message, OptionDecl, OptionEntry, OptionReset, OptionSet, VolumeCreate, VolumeInfo,
    VolumeState, VolumeStatus, routes,
};

use crate::api::{self, CmdError, Ctx, Output};
use crate::render::{self, StatusView};

/// The `volume` verbs.
#[derive(clap::Subcommand, Debug, PartialEq, Eq)]
pub enum Volume {
    /// Create a volume: VOL [replica N [arbiter 1]] HOST:/PATH... [force].
    ///
    /// Consecutive bricks form the replica sets; more bricks than the replica count make
    /// several sets, and files are distributed over them by the hash of their names
    /// (without `replica`, each brick is its own set). `force` accepts what is refused by
    /// default (several bricks of a set on one host, bricks on the root filesystem).
    Create {
        /// The new volume's name.
        #[arg(value_name = "VOL")]
        name: String,
        /// `[replica N [arbiter 1]] HOST:/PATH... [force]`.
        #[arg(
            value_name = "[replica N [arbiter 1]] HOST:/PATH... [force]",
            required = true,
            num_args = 1..
        )]
        words: Vec<String>,
    },
    /// Start a volume's bricks (`force`: also restart bricks that are down).
    Start {
        /// The volume.
        #[arg(value_name = "VOL")]
        name: String,
        /// `force`.
        #[arg(value_name = "force", value_parser = ["force"])]
        force: Option<String>,
    },
    /// Stop a volume's bricks; clients lose access (asks first on a terminal).
    Stop {
        /// The volume.
        #[arg(value_name = "VOL")]
        name: String,
        /// `force`: stop even if some node cannot.
        #[arg(value_name = "force", value_parser = ["force"])]
        force: Option<String>,
    },
    /// Delete a stopped volume's configuration; brick data stays on disk (asks first on a
    /// terminal).
    Delete {
        /// The volume.
        #[arg(value_name = "VOL")]
        name: String,
    },
    /// Show the configuration of one volume or of all.
    Info {
        /// A volume, or `all`.
        #[arg(value_name = "VOL|all", default_value = "all")]
        name: String,
    },
    /// List the volumes' names.
    List,
    /// Show brick processes: [VOL|all] [detail|clients].
    Status {
        /// `[VOL|all] [detail|clients]`.
        #[arg(value_name = "[VOL|all] [detail|clients]", num_args = 0..=2)]
        words: Vec<String>,
    },
    /// Set an option: VOL KEY VALUE; `volume set help` lists every option.
    Set {
        /// The volume, or `help`.
        #[arg(value_name = "VOL|help")]
        name: String,
        /// The option key, e.g. network.ping-timeout.
        #[arg(value_name = "KEY")]
        key: Option<String>,
        /// The new value.
        #[arg(value_name = "VALUE", allow_hyphen_values = true)]
        value: Option<String>,
    },
    /// Show options in effect: VOL KEY|all.
    Get {
        /// The volume.
        #[arg(value_name = "VOL")]
        name: String,
        /// One key, or `all`.
        #[arg(value_name = "KEY|all")]
        key: String,
    },
    /// Reset one option (or every option) to its default.
    Reset {
        /// The volume.
        #[arg(value_name = "VOL")]
        name: String,
        /// The option; all options when left out.
        #[arg(value_name = "KEY")]
        key: Option<String>,
    },
    /// Add bricks: VOL [replica N [arbiter 1]] HOST:/PATH... [force].
    ///
    /// Whole replica sets of the volume's replica count. Clients switch to the larger volume
    /// without unmounting; directories are created on the new sets as they are looked up, and
    /// existing directories give the new sets files after `volume rebalance VOL fix-layout
    /// start`; new directories use every set at once.
    #[command(name = "add-brick")]
    AddBrick {
        /// The volume.
        #[arg(value_name = "VOL")]
        name: String,
        /// `[replica N [arbiter 1]] HOST:/PATH... [force]`.
        #[arg(value_name = "[replica N] HOST:/PATH... [force]", num_args = 1.., required = true)]
        words: Vec<String>,
    },
    /// Rebalance: VOL fix-layout start | start | stop | status.
    ///
    /// `fix-layout start` lays every directory out again over the volume's replica sets
    /// (after add-brick), moving as little of the hash ring as possible; `start` does that
    /// and moves every file whose replica set changed, online (throttled by
    /// cluster.rebal-throttle; resumed after a cairnd restart). Both run in the background
    /// on the node that receives the command; `status` shows every node's run, `stop`
    /// stops it (start again to resume).
    Rebalance {
        /// The volume.
        #[arg(value_name = "VOL")]
        name: String,
        /// `fix-layout start`, `start`, `stop` or `status`.
        #[arg(value_name = "fix-layout start | start | stop | status", num_args = 1..=2, required = true)]
        words: Vec<String>,
        /// With `status` (or `start`): follow the run with a progress bar until it ends.
        #[arg(long)]
        watch: bool,
    },
    /// Remove bricks: VOL HOST:/PATH... start | status | stop | commit [force].
    ///
    /// Whole replica sets. `start` drains them: they take no new files, and their files
    /// move online to the other sets (in the background on the node that receives the
    /// command; resumed after a cairnd restart). `status` shows the drain, `stop` keeps the
    /// bricks. `commit` takes them out of the volume once the drain has completed (`commit
    /// force` does it anyway: what is still on them is no longer in the volume). The brick
    /// directories are left on disk as they are.
    #[command(name = "remove-brick")]
    RemoveBrick {
        /// The volume.
        #[arg(value_name = "VOL")]
        name: String,
        /// `HOST:/PATH... start | status | stop | commit [force]`.
        #[arg(value_name = "HOST:/PATH... start|status|stop|commit [force]", num_args = 2.., required = true)]
        words: Vec<String>,
        /// With `status` (or `start`): follow the drain with a progress bar until it ends.
        #[arg(long)]
        watch: bool,
    },
    /// Replace a brick: VOL OLD-HOST:/PATH NEW-HOST:/PATH commit force; heal rebuilds it.
    #[command(name = "replace-brick")]
    ReplaceBrick {
        /// The volume.
        #[arg(value_name = "VOL")]
        name: String,
        /// The brick to replace, HOST:/PATH.
        #[arg(value_name = "OLD")]
        old: String,
        /// Its replacement, HOST:/PATH.
        #[arg(value_name = "NEW")]
        new: String,
        /// `commit force`.
        #[arg(value_name = "commit force", num_args = 2)]
        words: Vec<String>,
    },
    /// Stop a brick for maintenance (VOL BRICK start), or re-initialise a wiped brick and
    /// start it again (VOL BRICK BRICK commit [force]); heal rebuilds it.
    #[command(name = "reset-brick")]
    ResetBrick {
        /// The volume.
        #[arg(value_name = "VOL")]
        name: String,
        /// `BRICK start` or `BRICK BRICK commit [force]`.
        #[arg(value_name = "BRICK start | BRICK BRICK commit [force]", num_args = 2..=4)]
        words: Vec<String>,
    },
    /// Self-heal: VOL [full | info [summary|split-brain] | statistics | split-brain POLICY ...].
    ///
    /// `heal VOL` heals what the bricks' indexes list now; `full` crawls the whole volume
    /// (a replaced or wiped brick is rebuilt this way). `split-brain bigger-file PATH`,
    /// `split-brain latest-mtime PATH` and `split-brain source-brick HOST:/BRICK [PATH]`
    /// settle a split-brain.
    Heal {
        /// The volume.
        #[arg(value_name = "VOL")]
        name: String,
        /// `[full | info [summary|split-brain] | statistics | split-brain POLICY ...]`.
        #[arg(value_name = "WORDS", num_args = 0..=4, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Bitrot detection: VOL enable | disable | signing-time SECONDS | scrub-throttle T |
    /// scrub-frequency F | scrub pause|resume|status|ondemand.
    ///
    /// Bricks sign files once closed and quiet; each node scrubs its bricks on a schedule
    /// (hourly, daily, weekly, biweekly, monthly) at a capped read rate (lazy, normal,
    /// aggressive), and a damaged copy is rebuilt from a copy that verifies.
    Bitrot {
        /// The volume.
        #[arg(value_name = "VOL")]
        name: String,
        /// `enable | disable | signing-time N | scrub-throttle T | scrub-frequency F | scrub ACTION`.
        #[arg(value_name = "WORDS", num_args = 1..=2)]
        words: Vec<String>,
    },
}

/// `volume set` after its keyword check.
#[derive(Debug, PartialEq, Eq)]
pub enum SetRequest {
    /// `volume set help`.
    Help,
    /// `volume set VOL KEY VALUE`.
    Set {
        /// The volume.
        volume: String,
        /// What to set.
        option: OptionSet,
    },
}

/// Checks `add-brick VOL [replica N [arbiter 1]] HOST:/PATH... [force]` (the same grammar
/// as create's brick list).
pub fn parse_add_brick(name: &str, words: &[String]) -> Result<cairn_api::AddBrick, String> {
    let replica_given = words.first().map(String::as_str) == Some("replica");
    let c = parse_create(name, words)?;
    Ok(cairn_api::AddBrick {
        replica: replica_given.then_some(c.replica),
        bricks: c.bricks,
        force: c.force,
    })
}

/// Checks `rebalance VOL fix-layout start | start | stop | status` and names the action.
pub fn parse_rebalance(words: &[String]) -> Result<&'static str, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["fix-layout", "start"] => Ok("fix-layout-start"),
        ["start"] | ["start", "force"] => Ok("start"),
        ["stop"] => Ok("stop"),
        ["status"] => Ok("status"),
        _ => Err(format!(
            "unknown rebalance command '{}': use fix-layout start, start, stop or status",
            w.join(" ")
        )),
    }
}

/// Checks `remove-brick VOL HOST:/PATH... start | status | stop | commit [force]`.
pub fn parse_remove_brick(words: &[String]) -> Result<cairn_api::RemoveBrick, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let (bricks, action, force) = match w.as_slice() {
        [bricks @ .., "commit", "force"] => (bricks, "commit", true),
        [bricks @ .., a @ ("start" | "status" | "stop" | "commit")] => (bricks, *a, false),
        _ => {
            return Err(
                "remove-brick needs HOST:/PATH... then start, status, stop, commit or commit force"
                    .into(),
            );
        }
    };
    if bricks.is_empty() {
        return Err("no bricks given: list the leaving bricks as HOST:/PATH".into());
    }
    if let Some(b) = bricks.iter().find(|b| {
        b.split_once(":/")
            .is_none_or(|(h, _)| h.is_empty() || h.contains('/'))
    }) {
        return Err(format!("'{b}' is not a brick: write HOST:/ABSOLUTE/PATH"));
    }
    Ok(cairn_api::RemoveBrick {
        bricks: bricks.iter().map(|b| b.to_string()).collect(),
        action: action.to_string(),
        force,
    })
}

/// A text progress bar of `width` cells for a share `p` (0..=1).
fn bar(p: f64, width: usize) -> String {
    let p = if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let full = (p * width as f64).round() as usize;
    format!(
        "[{}{}]",
        "#".repeat(full),
        ".".repeat(width - full.min(width))
    )
}

/// The table of a rebalance or drain, one row per node, with a progress bar under each
/// running one.
pub fn render_runs(runs: &[cairn_api::RebalanceStatus]) -> String {
    let mut text = format!(
        "{:<16} {:>9} {:>9} {:>8} {:>9} {:>8} {:>8} {:>11} {:>8} {:>10} {:>9}  {}\n",
        "Node",
        "dirs",
        "changed",
        "files",
        "migrated",
        "skipped",
        "failed",
        "size",
        "ring",
        "run time",
        "left",
        "status"
    );
    for st in runs {
        text.push_str(&format!(
            "{:<16} {:>9} {:>9} {:>8} {:>9} {:>8} {:>8} {:>11} {:>7.1}% {:>9.1}s {:>8.0}s  {}{}\n",
            st.node,
            st.dirs_scanned,
            st.dirs_changed,
            st.files_scanned,
            st.files_migrated,
            st.files_skipped,
            st.files_failed + st.failures,
            crate::render::human_size(st.bytes_migrated),
            st.moved_share * 100.0,
            st.elapsed_secs,
            st.estimate_secs,
            if st.state == "not started" {
                String::new()
            } else {
                format!("{} ", st.kind)
            },
            st.state
        ));
        if st.state == "in progress" {
            text.push_str(&format!(
                "{:<16} {} {:>3.0}% of the directory tree\n",
                "",
                bar(st.progress, 40),
                st.progress * 100.0
            ));
        }
        if st.files_remaining > 0 {
            text.push_str(&format!(
                "{:<16} {} files still on the leaving bricks\n",
                "", st.files_remaining
            ));
        }
        if !st.message.is_empty() {
            text.push_str(&format!("{:<16} {}\n", "", st.message));
        }
    }
    text
}

/// Polls `fetch` once a second, drawing a progress bar (on a terminal), until no node is
/// running; returns the last answer.
fn watch_runs(
    ctx: &Ctx,
    mut last: Vec<cairn_api::RebalanceStatus>,
    fetch: impl Fn(&Ctx) -> Result<Vec<cairn_api::RebalanceStatus>, CmdError>,
) -> Result<Vec<cairn_api::RebalanceStatus>, CmdError> {
    let pb = indicatif::ProgressBar::new(1000);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {percent:>3}% {msg}")
    {
        pb.set_style(style.progress_chars("#>."));
    }
    while let Some(r) = last.iter().find(|s| s.state == "in progress") {
        pb.set_position((r.progress.clamp(0.0, 1.0) * 1000.0) as u64);
        pb.set_message(format!(
            "{} on {}: {} files moved ({}), {} directories, about {:.0}s left",
            r.kind,
            r.node,
            r.files_migrated,
            crate::render::human_size(r.bytes_migrated),
            r.dirs_scanned,
            r.estimate_secs
        ));
        std::thread::sleep(std::time::Duration::from_secs(1));
        last = fetch(ctx)?;
    }
    pb.finish_and_clear();
    Ok(last)
}

/// Checks `replace-brick VOL OLD NEW commit force`.
pub fn parse_replace(
    old: &str,
    new: &str,
    words: &[String],
) -> Result<cairn_api::ReplaceBrick, String> {
    check_brick(old)?;
    check_brick(new)?;
    if words != ["commit", "force"] {
        return Err("replace-brick is done with 'commit force': volume replace-brick VOL OLD NEW commit force".into());
    }
    Ok(cairn_api::ReplaceBrick {
        old: old.to_string(),
        new: new.to_string(),
    })
}

/// Checks `reset-brick VOL BRICK start` / `reset-brick VOL BRICK BRICK commit [force]`.
pub fn parse_reset(words: &[String]) -> Result<cairn_api::ResetBrick, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        [b, "start"] => {
            check_brick(b)?;
            Ok(cairn_api::ResetBrick { brick: b.to_string(), commit: false, force: false })
        }
        [a, b, "commit"] | [a, b, "commit", "force"] => {
            check_brick(a)?;
            if a != b {
                return Err("reset-brick commit takes the same brick twice: VOL BRICK BRICK commit [force] (use replace-brick to move a brick)".into());
            }
            Ok(cairn_api::ResetBrick { brick: a.to_string(), commit: true, force: w.len() == 4 })
        }
        _ => Err("usage: volume reset-brick VOL BRICK start | volume reset-brick VOL BRICK BRICK commit [force]".into()),
    }
}

/// The most bricks per replica set accepted on the command line (the daemon may refuse
/// fewer).
const MAX_REPLICA: u32 = 16;

/// Parses the words after `volume create VOL`.
pub fn parse_create(name: &str, words: &[String]) -> Result<VolumeCreate, String> {
    check_volume_name(name)?;
    let mut rest: &[String] = words;
    let mut replica = 1;
    let mut arbiter = false;
    if let Some(first) = rest.first().map(String::as_str) {
        match first {
            "replica" => {
                let n = rest.get(1).ok_or("`replica` needs a count: replica N")?;
                replica = n
                    .parse::<u32>()
                    .map_err(|_| format!("replica count '{n}' is not a number"))?;
                if !(2..=MAX_REPLICA).contains(&replica) {
                    return Err(format!(
                        "replica count must be 2 to {MAX_REPLICA} (leave `replica` out for a \
                         distributed volume), not {replica}"
                    ));
                }
                rest = &rest[2..];
                if rest.first().map(String::as_str) == Some("arbiter") {
                    match rest.get(1).map(String::as_str) {
                        Some("1") => {}
                        Some(other) => {
                            return Err(format!("arbiter count must be 1, not '{other}'"));
                        }
                        None => return Err("`arbiter` needs a count: arbiter 1".to_string()),
                    }
                    if replica != 3 {
                        return Err(format!(
                            "arbiter 1 needs replica 3 (two data bricks and an arbiter per set), \
                             not replica {replica}"
                        ));
                    }
                    arbiter = true;
                    rest = &rest[2..];
                }
            }
            "arbiter" => return Err("arbiter needs `replica 3` before it".to_string()),
            "disperse" | "redundancy" | "disperse-data" => {
                return Err("disperse volumes are not supported yet".to_string());
            }
            "stripe" => return Err("striped volumes are not supported".to_string()),
            _ => {}
        }
    }
    let force = rest.last().map(String::as_str) == Some("force");
    if force {
        rest = &rest[..rest.len() - 1];
    }
    if rest.is_empty() {
        return Err("no bricks given: list them as HOST:/PATH".to_string());
    }
    let mut seen = HashSet::new();
    for brick in rest {
        check_brick(brick)?;
        if !seen.insert(brick.as_str()) {
            return Err(format!("brick {brick} is given twice"));
        }
    }
    let per_set = replica as usize;
    if !rest.len().is_multiple_of(per_set) {
        return Err(format!(
            "{} bricks cannot form sets of {per_set} (replica {replica}): give a multiple of \
             {per_set}",
            rest.len()
        ));
    }
    Ok(VolumeCreate {
        name: name.to_string(),
        replica,
        arbiter,
        bricks: rest.to_vec(),
        force,
    })
}

/// `HOST:/ABSOLUTE/PATH`.
pub fn check_brick(brick: &str) -> Result<(), String> {
    let bad = |why: &str| format!("brick '{brick}': {why} (expected HOST:/PATH)");
    let Some(at) = brick.find(":/") else {
        return Err(if brick.contains(':') {
            bad("the path must be absolute")
        } else {
            bad("no host")
        });
    };
    let (host, path) = (&brick[..at], &brick[at + 1..]);
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c == '/' || c == ',')
    {
        return Err(bad("not a host name"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(bad("the path must not contain '..'"));
    }
    Ok(())
}

/// Volume names go into paths, URLs and volfile node names.
pub fn check_volume_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.starts_with('-')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        || name == "all"
        || name == "help"
    {
        return Err(format!(
            "'{name}' is not a usable volume name (letters, digits, '-', '_' and '.'; not \
             `all` or `help`)"
        ));
    }
    Ok(())
}

/// Parses `[VOL|all] [detail|clients]`: the volume (`None`: all) and the view. A single
/// `detail` or `clients` means all volumes.
pub fn parse_status(words: &[String]) -> Result<(Option<String>, StatusView), String> {
    let view = |w: &str| match w {
        "detail" => Some(StatusView::Detail),
        "clients" => Some(StatusView::Clients),
        _ => None,
    };
    let volume = |w: &str| (w != "all").then(|| w.to_string());
    match words {
        [] => Ok((None, StatusView::Plain)),
        [one] => match view(one) {
            Some(v) => Ok((None, v)),
            None => Ok((volume(one), StatusView::Plain)),
        },
        [vol, what] => match view(what) {
            Some(v) => Ok((volume(vol), v)),
            None => Err(format!("'{what}' is not a status view (detail or clients)")),
        },
        _ => Err("too many words: volume status [VOL|all] [detail|clients]".to_string()),
    }
}

/// Checks `volume set VOL KEY VALUE` / `volume set help`.
pub fn parse_set(name: &str, key: Option<&str>, value: Option<&str>) -> Result<SetRequest, String> {
    match (name, key, value) {
        ("help", None, None) => Ok(SetRequest::Help),
        (volume, Some(key), Some(value)) => Ok(SetRequest::Set {
            volume: volume.to_string(),
            option: OptionSet {
                key: key.to_string(),
                value: value.to_string(),
            },
        }),
        (_, None, _) => Err("missing KEY and VALUE: volume set VOL KEY VALUE".to_string()),
        (_, Some(key), None) => Err(format!(
            "missing the value of {key}: volume set VOL KEY VALUE"
        )),
    }
}

/// The status route with its view.
pub fn status_path(volume: &str, view: StatusView) -> String {
    let base = routes::volume_sub(volume, "status");
    match view {
        StatusView::Plain => base,
        StatusView::Detail => format!("{base}?detail=true"),
        StatusView::Clients => format!("{base}?clients=true"),
    }
}

impl Volume {
    /// Checks the keyword grammar (exit 2 on error, before anything is sent).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Volume::Create { name, words } => parse_create(name, words).map(|_| ()),
            Volume::Status { words } => parse_status(words).map(|_| ()),
            Volume::Set { name, key, value } => {
                parse_set(name, key.as_deref(), value.as_deref()).map(|_| ())
            }
            Volume::Heal { words, .. } => super::heal::parse(words).map(|_| ()),
            Volume::Bitrot { words, .. } => super::bitrot::parse(words).map(|_| ()),
            Volume::ReplaceBrick {
                old, new, words, ..
            } => parse_replace(old, new, words).map(|_| ()),
            Volume::ResetBrick { words, .. } => parse_reset(words).map(|_| ()),
            Volume::AddBrick { name, words } => parse_add_brick(name, words).map(|_| ()),
            Volume::Rebalance { words, .. } => parse_rebalance(words).map(|_| ()),
            Volume::RemoveBrick { words, .. } => parse_remove_brick(words).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The label of messages: `volume create: pacs`, `volume set`, ...
    pub fn label(&self) -> String {
        match self {
            Volume::Create { name, .. } => format!("volume create: {name}"),
            Volume::Start { name, .. } => format!("volume start: {name}"),
            Volume::Stop { name, .. } => format!("volume stop: {name}"),
            Volume::Delete { name } => format!("volume delete: {name}"),
            Volume::Info { .. } => "volume info".to_string(),
            Volume::List => "volume list".to_string(),
            Volume::Status { .. } => "volume status".to_string(),
            Volume::Set { .. } => "volume set".to_string(),
            Volume::Get { .. } => "volume get".to_string(),
            Volume::Reset { .. } => "volume reset".to_string(),
            Volume::Heal { name, .. } => format!("volume heal: {name}"),
            Volume::Bitrot { name, .. } => format!("volume bitrot: {name}"),
            Volume::ReplaceBrick { name, .. } => format!("volume replace-brick: {name}"),
            Volume::ResetBrick { name, .. } => format!("volume reset-brick: {name}"),
            Volume::AddBrick { name, .. } => format!("volume add-brick: {name}"),
            Volume::Rebalance { name, .. } => format!("volume rebalance: {name}"),
            Volume::RemoveBrick { name, .. } => format!("volume remove-brick: {name}"),
        }
    }

    /// Runs the verb and prints its outcome.
    pub fn run(self, ctx: &Ctx) -> ExitCode {
        let label = self.label();
        api::finish(&label, ctx.json, self.execute(ctx))
    }

    fn execute(self, ctx: &Ctx) -> Result<Output, CmdError> {
        match self {
            Volume::Create { name, words } => {
                let body = parse_create(&name, &words).map_err(CmdError::Usage)?;
                let _: VolumeInfo =
                    ctx.run(
                        true,
                        |c| async move { c.post(routes::VOLUMES, &body).await },
                    )?;
                Ok(Output::done(
                    format!(
                        "volume create: {name}: success: please start the volume to access data"
                    ),
                    "",
                ))
            }
            Volume::Start { name, force } => {
                let body = Force {
                    force: force.is_some(),
                };
                let path = routes::volume_sub(&name, "start");
                let m: Message = ctx.run(true, |c| async move { c.post(&path, &body).await })?;
                Ok(Output::done(
                    format!("volume start: {name}: success"),
                    &m.message,
                ))
            }
            Volume::Stop { name, force } => {
                let question = format!(
                    "Stopping volume {name} takes it away from every client until it is started \
                     again."
                );
                if !ctx.confirm(&question) {
                    return Err(CmdError::Failed("cancelled".to_string()));
                }
                let body = Force {
                    force: force.is_some(),
                };
                let path = routes::volume_sub(&name, "stop");
                let m: Message = ctx.run(true, |c| async move { c.post(&path, &body).await })?;
                Ok(Output::done(
                    format!("volume stop: {name}: success"),
                    &m.message,
                ))
            }
            Volume::Delete { name } => {
                let question = format!(
                    "Deleting volume {name} removes its configuration from every node (the files \
                     stay on the bricks)."
                );
                if !ctx.confirm(&question) {
                    return Err(CmdError::Failed("cancelled".to_string()));
                }
                let path = routes::volume(&name);
                let m: Message = ctx.run(true, |c| async move { c.delete(&path).await })?;
                Ok(Output::done(
                    format!("volume delete: {name}: success"),
                    &m.message,
                ))
            }
            Volume::Info { name } => {
                let volumes: Vec<VolumeInfo> = if name == "all" {
                    ctx.run(false, |c| async move { c.get(routes::VOLUMES).await })?
                } else {
                    let path = routes::volume(&name);
                    let one: VolumeInfo = ctx.run(false, |c| async move { c.get(&path).await })?;
                    if ctx.json {
                        return api::json(&one);
                    }
                    vec![one]
                };
                if ctx.json {
                    api::json(&volumes)
                } else {
                    Ok(Output::Print(render::volume_info(&volumes)))
                }
            }
            Volume::List => {
                let volumes: Vec<VolumeInfo> =
                    ctx.run(false, |c| async move { c.get(routes::VOLUMES).await })?;
                if ctx.json {
                    api::json(&volumes)
                } else {
                    Ok(Output::Print(render::volume_list(&volumes)))
                }
            }
            Volume::Status { words } => {
                let (volume, view) = parse_status(&words).map_err(CmdError::Usage)?;
                match volume {
                    Some(volume) => {
                        let path = status_path(&volume, view);
                        let s: VolumeStatus =
                            ctx.run(false, |c| async move { c.get(&path).await })?;
                        if ctx.json {
                            api::json(&s)
                        } else {
                            Ok(Output::Print(render::volume_status(&s, view)))
                        }
                    }
                    None => {
                        let all: Vec<VolumeStatus> = ctx.run(false, |c| async move {
                            let volumes: Vec<VolumeInfo> = c.get(routes::VOLUMES).await?;
                            let mut out = Vec::with_capacity(volumes.len());
                            for v in volumes {
                                // A volume that is not started has no brick processes to
                                // ask about; it is shown as such.
                                if v.state != VolumeState::Started {
                                    out.push(VolumeStatus {
                                        name: v.name,
                                        state: v.state,
                                        bricks: Vec::new(),
                                    });
                                    continue;
                                }
                                out.push(c.get(&status_path(&v.name, view)).await?);
                            }
                            Ok(out)
                        })?;
                        if ctx.json {
                            api::json(&all)
                        } else {
                            Ok(Output::Print(render::volume_statuses(&all, view)))
                        }
                    }
                }
            }
            Volume::Set { name, key, value } => {
                match parse_set(&name, key.as_deref(), value.as_deref()).map_err(CmdError::Usage)? {
                    SetRequest::Help => {
                        let decls: Vec<OptionDecl> =
                            ctx.run(false, |c| async move { c.get(routes::OPTIONS).await })?;
                        if ctx.json {
                            api::json(&decls)
                        } else {
                            Ok(Output::Print(render::option_decls(&decls)))
                        }
                    }
                    SetRequest::Set { volume, option } => {
                        let path = routes::volume_sub(&volume, "options");
                        let m: Message =
                            ctx.run(true, |c| async move { c.post(&path, &option).await })?;
                        Ok(Output::done("volume set: success", &m.message))
                    }
                }
            }
            Volume::Get { name, key } => {
                if key == "all" {
                    let path = routes::volume_sub(&name, "options");
                    let entries: Vec<OptionEntry> =
                        ctx.run(false, |c| async move { c.get(&path).await })?;
                    if ctx.json {
                        api::json(&entries)
                    } else {
                        Ok(Output::Print(render::option_entries(&entries)))
                    }
                } else {
                    let path = routes::volume_option(&name, &key);
                    let entry: OptionEntry =
                        ctx.run(false, |c| async move { c.get(&path).await })?;
                    if ctx.json {
                        api::json(&entry)
                    } else {
                        Ok(Output::Print(render::option_entries(std::slice::from_ref(
                            &entry,
                        ))))
                    }
                }
            }
            Volume::Reset { name, key } => {
                let path = routes::volume_sub(&name, "reset");
                let body = OptionReset { key };
                let m: Message = ctx.run(true, |c| async move { c.post(&path, &body).await })?;
                Ok(Output::done("volume reset: success", &m.message))
            }
            Volume::Heal { name, words } => {
                let heal = super::heal::parse(&words).map_err(CmdError::Usage)?;
                super::heal::execute(ctx, &name, heal)
            }
            Volume::Bitrot { name, words } => {
                let cmd = super::bitrot::parse(&words).map_err(CmdError::Usage)?;
                super::bitrot::execute(ctx, &name, cmd)
            }
            Volume::ReplaceBrick {
                name,
                old,
                new,
                words,
            } => {
                let body = parse_replace(&old, &new, &words).map_err(CmdError::Usage)?;
                let path = routes::volume_sub(&name, "replace-brick");
                let m: Message = ctx.run(true, |c| async move { c.post(&path, &body).await })?;
                Ok(Output::done(
                    format!("volume replace-brick: {name}: success: {}", m.message),
                    &m.message,
                ))
            }
            Volume::AddBrick { name, words } => {
                let body = parse_add_brick(&name, &words).map_err(CmdError::Usage)?;
                let path = routes::volume_sub(&name, "add-brick");
                let m: Message = ctx.run(true, |c| async move { c.post(&path, &body).await })?;
                Ok(Output::done(
                    format!("volume add-brick: {name}: success: {}", m.message),
                    &m.message,
                ))
            }
            Volume::Rebalance { name, words, watch } => {
                let action = parse_rebalance(&words).map_err(CmdError::Usage)?;
                let path = routes::volume_sub(&name, "rebalance");
                let call = |ctx: &Ctx, action: &str| {
                    let body = cairn_api::RebalanceRequest {
                        action: action.to_string(),
                    };
                    let path = path.clone();
                    ctx.run(action != "status", |c| async move {
                        c.post::<_, Vec<cairn_api::RebalanceStatus>>(&path, &body)
                            .await
                    })
                };
                let mut runs = call(ctx, action)?;
                if watch {
                    runs = watch_runs(ctx, runs, |ctx| call(ctx, "status"))?;
                }
                if ctx.json {
                    return api::json(&runs);
                }
                let mut text = render_runs(&runs);
                if action == "fix-layout-start" || action == "start" {
                    let what = if action == "start" {
                        "rebalance"
                    } else {
                        "fix-layout"
                    };
                    text = format!(
                        "volume rebalance: {name}: success: {what} started; watch it with 'volume rebalance {name} status --watch'\n{text}"
                    );
                }
                let state = runs
                    .iter()
                    .find(|s| s.state != "not started")
                    .map_or("not started", |s| s.state.as_str());
                Ok(Output::done(text.trim_end().to_string(), state))
            }
            Volume::RemoveBrick { name, words, watch } => {
                let body = parse_remove_brick(&words).map_err(CmdError::Usage)?;
                let path = routes::volume_sub(&name, "remove-brick");
                let call = |ctx: &Ctx, body: cairn_api::RemoveBrick| {
                    let path = path.clone();
                    ctx.run(body.action != "status", |c| async move {
                        c.post::<_, cairn_api::RemoveBrickReply>(&path, &body).await
                    })
                };
                let mut reply = call(ctx, body.clone())?;
                if watch {
                    let status = cairn_api::RemoveBrick {
                        action: "status".into(),
                        force: false,
                        ..body.clone()
                    };
                    reply.nodes = watch_runs(ctx, reply.nodes, |ctx| {
                        call(ctx, status.clone()).map(|r| r.nodes)
                    })?;
                }
                if ctx.json {
                    return api::json(&reply);
                }
                let mut text = String::new();
                if !reply.message.is_empty() {
                    text.push_str(&format!(
                        "volume remove-brick: {name}: success: {}\n",
                        reply.message
                    ));
                }
                if body.action != "commit" {
                    text.push_str(&render_runs(&reply.nodes));
                }
                Ok(Output::done(text.trim_end().to_string(), &reply.message))
            }
            Volume::ResetBrick { name, words } => {
                let body = parse_reset(&words).map_err(CmdError::Usage)?;
                let path = routes::volume_sub(&name, "reset-brick");
                let m: Message = ctx.run(true, |c| async move { c.post(&path, &body).await })?;
                Ok(Output::done(
                    format!("volume reset-brick: {name}: success: {}", m.message),
                    &m.message,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    fn create(text: &str) -> Result<VolumeCreate, String> {
        parse_create("pacs", &words(text))
    }

    #[test]
    fn remove_brick_grammar() {
        let w = words;
        let r = parse_remove_brick(&w("a:/1 b:/1 c:/1 start")).unwrap();
        assert_eq!(
            (r.bricks.len(), r.action.as_str(), r.force),
            (3, "start", false)
        );
        let r = parse_remove_brick(&w("a:/1 commit force")).unwrap();
        assert_eq!((r.action.as_str(), r.force), ("commit", true));
        assert_eq!(
            parse_remove_brick(&w("a:/1 status")).unwrap().action,
            "status"
        );
        assert!(parse_remove_brick(&w("a:/1 begin")).is_err());
        assert!(parse_remove_brick(&w("start")).is_err());
        assert!(parse_remove_brick(&w("a:relative stop")).is_err());
        assert!(parse_remove_brick(&w("a:/1 start force")).is_err());
    }

    #[test]
    fn progress_bars_are_clamped() {
        assert_eq!(bar(0.5, 4), "[##..]");
        assert_eq!(bar(2.0, 4), "[####]");
        assert_eq!(bar(f64::NAN, 4), "[....]");
    }

    #[test]
    fn add_brick_and_rebalance_grammar() {
        let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let a = parse_add_brick("v", &w("replica 3 a:/1 b:/1 c:/1 force")).unwrap();
        assert_eq!(a.replica, Some(3));
        assert_eq!(a.bricks.len(), 3);
        assert!(a.force);
        let a = parse_add_brick("v", &w("a:/2")).unwrap();
        assert_eq!((a.replica, a.force), (None, false));
        assert!(parse_add_brick("v", &w("replica 3 a:/1 b:/1")).is_err());
        assert!(parse_add_brick("v", &w("a:relative")).is_err());
        assert_eq!(
            parse_rebalance(&w("fix-layout start")).unwrap(),
            "fix-layout-start"
        );
        assert_eq!(parse_rebalance(&w("status")).unwrap(), "status");
        assert!(parse_rebalance(&w("fix-layout")).is_err());
        assert!(parse_rebalance(&w("migrate-data start")).is_err());
    }

    #[test]
    fn create_distribute_replicate_arbiter_force() {
        let v = create("n1:/data/b1 n2:/data/b2 n3:/data/b3").unwrap();
        assert_eq!(
            v,
            VolumeCreate {
                name: "pacs".into(),
                replica: 1,
                arbiter: false,
                bricks: words("n1:/data/b1 n2:/data/b2 n3:/data/b3"),
                force: false,
            }
        );
        let v = create("replica 3 n1:/b n2:/b n3:/b").unwrap();
        assert_eq!(
            (v.replica, v.arbiter, v.force, v.bricks.len()),
            (3, false, false, 3)
        );
        let v = create("replica 3 arbiter 1 n1:/b n2:/b n3:/b n4:/b n5:/b n6:/b force").unwrap();
        assert_eq!(
            (v.replica, v.arbiter, v.force, v.bricks.len()),
            (3, true, true, 6)
        );
        let v = create("replica 2 n1:/b n1:/c force").unwrap();
        assert_eq!((v.replica, v.force), (2, true));
        assert_eq!(v.bricks, ["n1:/b", "n1:/c"]);
        let v = create("[fe80::1]:/data/b 10.0.0.2:/data/b").unwrap();
        assert_eq!(v.bricks.len(), 2);
    }

    #[test]
    fn create_errors_say_what_is_wrong() {
        let err = |text: &str| create(text).unwrap_err();
        assert!(err("replica").contains("needs a count"));
        assert!(err("replica n1:/b").contains("not a number"));
        assert!(err("replica 1 n1:/b").contains("2 to 16"));
        assert!(err("replica 0 n1:/b").contains("2 to 16"));
        assert!(err("replica 3 arbiter 2 n1:/b n2:/b n3:/b").contains("must be 1"));
        assert!(err("replica 3 arbiter").contains("arbiter 1"));
        assert!(err("replica 2 arbiter 1 n1:/b n2:/b").contains("needs replica 3"));
        assert!(err("arbiter 1 n1:/b n2:/b n3:/b").contains("replica 3"));
        assert!(err("disperse 3 redundancy 1 n1:/b").contains("not supported"));
        assert!(err("").contains("no bricks"));
        assert!(err("force").contains("no bricks"));
        assert!(err("replica 3").contains("no bricks"));
        assert!(err("replica 3 arbiter 1 force").contains("no bricks"));
        assert!(err("n1:data/b1").contains("absolute"));
        assert!(err("/data/b1").contains("no host"));
        assert!(err(":/data/b1").contains("no host"));
        assert!(err("n1").contains("no host"));
        assert!(err("n1:/a/../b").contains(".."));
        assert!(err("n1:/b n1:/b").contains("twice"));
        assert!(err("replica 3 n1:/b n2:/b").contains("multiple of 3"));
        assert!(
            err("n1:/b force n2:/c").contains("'force'"),
            "force only at the end"
        );
        assert!(
            parse_create("all", &words("n1:/b"))
                .unwrap_err()
                .contains("volume name")
        );
        assert!(
            parse_create("a/b", &words("n1:/b"))
                .unwrap_err()
                .contains("volume name")
        );
        assert!(parse_create("", &words("n1:/b")).is_err());
    }

    #[test]
    fn status_words() {
        let ok = |text: &str| parse_status(&words(text)).unwrap();
        assert_eq!(ok(""), (None, StatusView::Plain));
        assert_eq!(ok("all"), (None, StatusView::Plain));
        assert_eq!(ok("pacs"), (Some("pacs".into()), StatusView::Plain));
        assert_eq!(ok("detail"), (None, StatusView::Detail));
        assert_eq!(ok("clients"), (None, StatusView::Clients));
        assert_eq!(ok("all detail"), (None, StatusView::Detail));
        assert_eq!(
            ok("pacs clients"),
            (Some("pacs".into()), StatusView::Clients)
        );
        assert_eq!(
            ok("detail detail"),
            (Some("detail".into()), StatusView::Detail)
        );
        assert!(
            parse_status(&words("pacs mem"))
                .unwrap_err()
                .contains("'mem'")
        );
        assert!(parse_status(&words("a b c")).is_err());
    }

    #[test]
    fn status_routes() {
        assert_eq!(
            status_path("pacs", StatusView::Plain),
            "/v1/volumes/pacs/status"
        );
        assert_eq!(
            status_path("pacs", StatusView::Detail),
            "/v1/volumes/pacs/status?detail=true"
        );
        assert_eq!(
            status_path("pacs", StatusView::Clients),
            "/v1/volumes/pacs/status?clients=true"
        );
    }

    #[test]
    fn set_words() {
        assert_eq!(parse_set("help", None, None), Ok(SetRequest::Help));
        assert_eq!(
            parse_set("pacs", Some("network.ping-timeout"), Some("5")),
            Ok(SetRequest::Set {
                volume: "pacs".into(),
                option: OptionSet {
                    key: "network.ping-timeout".into(),
                    value: "5".into()
                }
            })
        );
        assert!(
            parse_set("pacs", None, None)
                .unwrap_err()
                .contains("missing KEY")
        );
        assert!(
            parse_set("pacs", Some("k"), None)
                .unwrap_err()
                .contains("value of k")
        );
        assert!(parse_set("help", Some("k"), None).is_err());
    }
}
