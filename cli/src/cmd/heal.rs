//! `cairn volume heal`, with Gluster's positional keywords:
//!
//! ```text
//! volume heal VOL                          heal what the bricks' indexes list, now
//! volume heal VOL full                     crawl the whole volume (rebuilds a wiped brick)
//! volume heal VOL info [summary|split-brain]
//! volume heal VOL statistics
//! volume heal VOL split-brain bigger-file PATH
//! volume heal VOL split-brain latest-mtime PATH
//! volume heal VOL split-brain source-brick HOST:/BRICK [PATH]
//! ```

use cairn_api::{BrickHealInfo, HealRequest, HealStats, Message, SplitBrainResolve, routes};

use crate::api::{self, CmdError, Ctx, Output};

/// A parsed `volume heal` command.
#[derive(Debug, PartialEq, Eq)]
pub enum Heal {
    /// `heal VOL [full]`.
    Start {
        /// Crawl everything.
        full: bool,
    },
    /// `heal VOL info [summary|split-brain]`.
    Info(InfoView),
    /// `heal VOL statistics`.
    Statistics,
    /// `heal VOL split-brain ...`.
    SplitBrain(SplitBrainResolve),
}

/// Which part of `heal info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfoView {
    /// Every entry.
    All,
    /// Counts only.
    Summary,
    /// Split-brain entries only.
    SplitBrain,
}

/// Parses the words after `volume heal VOL`.
pub fn parse(words: &[String]) -> Result<Heal, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        [] => Ok(Heal::Start { full: false }),
        ["full"] => Ok(Heal::Start { full: true }),
        ["info"] => Ok(Heal::Info(InfoView::All)),
        ["info", "summary"] => Ok(Heal::Info(InfoView::Summary)),
        ["info", "split-brain"] => Ok(Heal::Info(InfoView::SplitBrain)),
        ["statistics"] => Ok(Heal::Statistics),
        ["split-brain", "bigger-file", path] | ["split-brain", "latest-mtime", path] => {
            Ok(Heal::SplitBrain(SplitBrainResolve {
                policy: w[1].to_string(),
                path: Some(normalise(path)?),
                brick: None,
            }))
        }
        ["split-brain", "source-brick", brick] => Ok(Heal::SplitBrain(SplitBrainResolve {
            policy: "source-brick".into(),
            path: None,
            brick: Some(check_brick(brick)?),
        })),
        ["split-brain", "source-brick", brick, path] => Ok(Heal::SplitBrain(SplitBrainResolve {
            policy: "source-brick".into(),
            path: Some(normalise(path)?),
            brick: Some(check_brick(brick)?),
        })),
        _ => Err(
            "usage: volume heal VOL [full | info [summary|split-brain] | statistics | \
                  split-brain bigger-file PATH | split-brain latest-mtime PATH | \
                  split-brain source-brick HOST:/BRICK [PATH]]"
                .to_string(),
        ),
    }
}

fn normalise(path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        Ok(path.to_string())
    } else {
        Err(format!(
            "'{path}': give the file's path in the volume, from its root (/2024/...)"
        ))
    }
}

fn check_brick(b: &str) -> Result<String, String> {
    if b.contains(":/") {
        Ok(b.to_string())
    } else {
        Err(format!("'{b}' is not a brick: write HOST:/PATH"))
    }
}

/// `heal info` in Gluster's layout.
pub fn render_info(list: &[BrickHealInfo], view: InfoView) -> String {
    let mut out = String::new();
    for b in list {
        out.push_str(&format!("Brick {}\n", b.brick));
        let status = if b.connected {
            "Connected"
        } else {
            "Transport endpoint is not connected"
        };
        let sb = b.entries.iter().filter(|e| e.split_brain).count();
        match view {
            InfoView::All => {
                for e in &b.entries {
                    out.push_str(&e.path);
                    if e.split_brain {
                        out.push_str(" - Is in split-brain");
                    }
                    out.push('\n');
                }
                out.push_str(&format!(
                    "Status: {status}\nNumber of entries: {}\n\n",
                    b.entries.len()
                ));
            }
            InfoView::SplitBrain => {
                for e in b.entries.iter().filter(|e| e.split_brain) {
                    out.push_str(&format!("{}\n", e.path));
                }
                out.push_str(&format!(
                    "Status: {status}\nNumber of entries in split-brain: {sb}\n\n"
                ));
            }
            InfoView::Summary => {
                out.push_str(&format!(
                    "Status: {status}\nTotal Number of entries: {}\nNumber of entries in heal pending: {}\nNumber of entries in split-brain: {sb}\n\n",
                    b.entries.len(),
                    b.entries.len() - sb
                ));
            }
        }
    }
    out
}

/// `heal statistics`.
pub fn render_stats(list: &[HealStats]) -> String {
    let mut out = String::new();
    for s in list {
        out.push_str(&format!(
            "Node: {}\nHeal passes: {} ({})\nLast pass: started {} (epoch s), {} ms, {}\nHealed: {} objects, {} bytes\nFailed: {}\nPending entries on this node's bricks: {}\n",
            s.host,
            s.runs,
            if s.running { "one running now" } else { "idle" },
            s.last_start,
            s.last_duration_ms,
            if s.last_full { "full crawl" } else { "index" },
            s.healed,
            s.bytes,
            s.failed,
            s.pending
        ));
        for sb in &s.split_brain {
            out.push_str(&format!("Split-brain: {sb}\n"));
        }
        out.push('\n');
    }
    out
}

/// Runs a `volume heal` command.
pub fn execute(ctx: &Ctx, name: &str, heal: Heal) -> Result<Output, CmdError> {
    match heal {
        Heal::Start { full } => {
            let path = routes::volume_sub(name, "heal");
            let body = HealRequest { full };
            let m: Message = ctx.run(true, |c| async move { c.post(&path, &body).await })?;
            Ok(Output::done(
                format!("volume heal: {name}: {}", m.message),
                &m.message,
            ))
        }
        Heal::Info(view) => {
            let path = routes::volume_sub(name, "heal/info");
            let list: Vec<BrickHealInfo> = ctx.run(false, |c| async move { c.get(&path).await })?;
            if ctx.json {
                api::json(&list)
            } else {
                Ok(Output::Print(render_info(&list, view)))
            }
        }
        Heal::Statistics => {
            let path = routes::volume_sub(name, "heal/statistics");
            let list: Vec<HealStats> = ctx.run(false, |c| async move { c.get(&path).await })?;
            if ctx.json {
                api::json(&list)
            } else {
                Ok(Output::Print(render_stats(&list)))
            }
        }
        Heal::SplitBrain(body) => {
            let path = routes::volume_sub(name, "heal/split-brain");
            let m: Message = ctx.run(true, |c| async move { c.post(&path, &body).await })?;
            Ok(Output::done(
                format!("volume heal: {name}: {}", m.message),
                &m.message,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_api::HealEntry;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn grammar() {
        assert_eq!(parse(&w("")).unwrap(), Heal::Start { full: false });
        assert_eq!(parse(&w("full")).unwrap(), Heal::Start { full: true });
        assert_eq!(
            parse(&w("info summary")).unwrap(),
            Heal::Info(InfoView::Summary)
        );
        assert_eq!(
            parse(&w("info split-brain")).unwrap(),
            Heal::Info(InfoView::SplitBrain)
        );
        assert_eq!(parse(&w("statistics")).unwrap(), Heal::Statistics);
        let Heal::SplitBrain(r) = parse(&w("split-brain source-brick n1:/b /a/f")).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.policy.as_str(), r.brick.as_deref(), r.path.as_deref()),
            ("source-brick", Some("n1:/b"), Some("/a/f"))
        );
        let Heal::SplitBrain(r) = parse(&w("split-brain bigger-file /x")).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.policy.as_str(), r.path.as_deref()),
            ("bigger-file", Some("/x"))
        );
        for bad in [
            "fulll",
            "info everything",
            "split-brain bigger-file",
            "split-brain bigger-file relative",
            "split-brain source-brick nohost",
            "split-brain coin-toss /x",
        ] {
            assert!(parse(&w(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn info_renders_like_gluster() {
        let list = vec![BrickHealInfo {
            brick: "n1:/b".into(),
            connected: true,
            entries: vec![
                HealEntry {
                    gfid: "g1".into(),
                    path: "/2024/05".into(),
                    split_brain: false,
                },
                HealEntry {
                    gfid: "g2".into(),
                    path: "<gfid:g2>".into(),
                    split_brain: true,
                },
            ],
        }];
        let all = render_info(&list, InfoView::All);
        assert!(all.contains("Brick n1:/b\n/2024/05\n<gfid:g2> - Is in split-brain\nStatus: Connected\nNumber of entries: 2\n"), "{all}");
        let sum = render_info(&list, InfoView::Summary);
        assert!(
            sum.contains("Total Number of entries: 2")
                && sum.contains("in heal pending: 1")
                && sum.contains("in split-brain: 1"),
            "{sum}"
        );
        let sb = render_info(&list, InfoView::SplitBrain);
        assert!(
            sb.contains("<gfid:g2>\n") && !sb.contains("/2024/05"),
            "{sb}"
        );
    }
}
