//! `cairn volume bitrot`, with Gluster's positional keywords:
//!
//! ```text
//! volume bitrot VOL enable | disable
//! volume bitrot VOL signing-time SECONDS
//! volume bitrot VOL scrub-throttle lazy|normal|aggressive
//! volume bitrot VOL scrub-frequency hourly|daily|weekly|biweekly|monthly
//! volume bitrot VOL scrub pause | resume | status | ondemand
//! ```
//!
//! The settings are volume options (`features.bitrot`, `features.signing-time`,
//! `features.scrub-throttle`, `features.scrub-frequency`, `features.scrub`) set through the
//! same transaction as `volume set`.

use cairn_api::{Message, OptionSet, ScrubStatus, routes};

use crate::api::{self, CmdError, Ctx, Output};

/// A parsed `volume bitrot` command.
#[derive(Debug, PartialEq, Eq)]
pub enum Bitrot {
    /// A setting: the option and its value.
    Set(OptionSet),
    /// `scrub status`.
    Status,
    /// `scrub ondemand`.
    Ondemand,
}

const USAGE: &str = "usage: volume bitrot VOL {enable | disable | signing-time SECONDS | \
                     scrub-throttle lazy|normal|aggressive | \
                     scrub-frequency hourly|daily|weekly|biweekly|monthly | \
                     scrub pause|resume|status|ondemand}";

fn set(key: &str, value: &str) -> Bitrot {
    Bitrot::Set(OptionSet {
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// Parses the words after `volume bitrot VOL`.
pub fn parse(words: &[String]) -> Result<Bitrot, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["enable"] => Ok(set("features.bitrot", "on")),
        ["disable"] => Ok(set("features.bitrot", "off")),
        ["signing-time", n] => match n.parse::<u64>() {
            Ok(s) if (1..=86_400).contains(&s) => {
                Ok(set("features.signing-time", &format!("{s}s")))
            }
            _ => Err(format!(
                "signing-time takes whole seconds from 1 to 86400, not '{n}'"
            )),
        },
        ["scrub-throttle", t @ ("lazy" | "normal" | "aggressive")] => {
            Ok(set("features.scrub-throttle", t))
        }
        ["scrub-throttle", t] => Err(format!(
            "scrub-throttle is lazy, normal or aggressive, not '{t}'"
        )),
        [
            "scrub-frequency",
            f @ ("hourly" | "daily" | "weekly" | "biweekly" | "monthly"),
        ] => Ok(set("features.scrub-frequency", f)),
        ["scrub-frequency", f] => Err(format!(
            "scrub-frequency is hourly, daily, weekly, biweekly or monthly, not '{f}'"
        )),
        ["scrub", "pause"] => Ok(set("features.scrub", "paused")),
        ["scrub", "resume"] => Ok(set("features.scrub", "active")),
        ["scrub", "status"] => Ok(Bitrot::Status),
        ["scrub", "ondemand"] => Ok(Bitrot::Ondemand),
        _ => Err(USAGE.to_string()),
    }
}

fn when(secs: u64) -> String {
    if secs == 0 {
        "never".to_string()
    } else {
        format!("{secs} (epoch s)")
    }
}

/// `scrub status`: one block per node.
pub fn render_status(name: &str, list: &[ScrubStatus]) -> String {
    let mut out = format!("Volume name: {name}\n\n");
    for s in list {
        let progress = if s.state == "running" && s.files_previous_run > 0 {
            format!(
                " (about {}% of the last run's {} files)",
                (s.files * 100 / s.files_previous_run).min(99),
                s.files_previous_run
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "Node: {}\nState of scrub: {}\nScrub throttle: {}\nScrub frequency: {}\n\
             Runs completed: {}\nFiles scrubbed (this or last run): {}{progress}\n\
             Bytes scrubbed (this or last run): {}\nFiles skipped (being written, not yet signed): {}\n\
             Files signed by scrub: {}\nCorrupted objects found: {}\nRepaired: {}\n\
             Last run started: {}\nLast run ended: {}\nNext scheduled run: {}\n",
            s.host,
            s.state,
            s.throttle,
            s.frequency,
            s.runs,
            s.files,
            s.bytes,
            s.skipped,
            s.signed,
            s.corrupt,
            s.repaired,
            when(s.last_start),
            when(s.last_end),
            when(s.next_run),
        ));
        for f in &s.unrepaired {
            out.push_str(&format!(
                "NOT REPAIRED: {} (gfid {}) on {}: {}\n",
                f.path, f.gfid, f.brick, f.reason
            ));
        }
        out.push('\n');
    }
    out
}

/// Runs a `volume bitrot` command.
pub fn execute(ctx: &Ctx, name: &str, cmd: Bitrot) -> Result<Output, CmdError> {
    match cmd {
        Bitrot::Set(option) => {
            let path = routes::volume_sub(name, "options");
            let what = format!("{} = {}", option.key, option.value);
            let m: Message = ctx.run(true, |c| async move { c.post(&path, &option).await })?;
            Ok(Output::done(
                format!("volume bitrot: {name}: {what}: success"),
                &m.message,
            ))
        }
        Bitrot::Status => {
            let path = routes::volume_sub(name, "bitrot/status");
            let list: Vec<ScrubStatus> = ctx.run(false, |c| async move { c.get(&path).await })?;
            if ctx.json {
                api::json(&list)
            } else {
                Ok(Output::Print(render_status(name, &list)))
            }
        }
        Bitrot::Ondemand => {
            let path = routes::volume_sub(name, "bitrot/ondemand");
            let m: Message = ctx.run(true, |c| async move {
                c.post(&path, &serde_json::json!({})).await
            })?;
            Ok(Output::done(
                format!("volume bitrot: {name}: {}", m.message),
                &m.message,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn keywords_map_to_options_and_bad_ones_say_what_is_allowed() {
        assert_eq!(parse(&words("enable")), Ok(set("features.bitrot", "on")));
        assert_eq!(
            parse(&words("signing-time 5")),
            Ok(set("features.signing-time", "5s"))
        );
        assert_eq!(
            parse(&words("scrub pause")),
            Ok(set("features.scrub", "paused"))
        );
        assert_eq!(parse(&words("scrub status")), Ok(Bitrot::Status));
        assert_eq!(parse(&words("scrub ondemand")), Ok(Bitrot::Ondemand));
        let e = parse(&words("scrub-throttle fast")).unwrap_err();
        assert!(e.contains("lazy, normal or aggressive"), "{e}");
        let e = parse(&words("signing-time 0")).unwrap_err();
        assert!(e.contains("1 to 86400"), "{e}");
        assert!(parse(&words("scrub")).unwrap_err().starts_with("usage"));
        assert!(parse(&[]).unwrap_err().starts_with("usage"));
    }
}
