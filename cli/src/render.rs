//! What people read: pure functions from API types to text, in the layouts Gluster
//! operators know. Nothing here talks to the daemon, so every layout is unit-tested.

use std::fmt::Write as _;

use cairn_api::{
    BrickStatus, OptionDecl, OptionEntry, PoolEntry, VolumeInfo, VolumeState, VolumeStatus,
};

/// The width of the dashed rule under `volume status` tables, at least.
const RULE_MIN: usize = 40;

/// Columns separated by at least two spaces, left-aligned; `rule` draws a dashed line
/// under the header. No trailing blanks.
pub fn table(header: &[&str], rows: &[Vec<String>], rule: bool) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < columns {
                let pad = widths[i] - cell.chars().count() + 2;
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            } else {
                out.push_str(cell);
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(&mut header.iter().copied());
    out.push('\n');
    if rule {
        let total: usize = widths.iter().sum::<usize>() + 2 * columns.saturating_sub(1);
        out.push_str(&"-".repeat(total.max(RULE_MIN)));
        out.push('\n');
    }
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str).take(columns)));
        out.push('\n');
    }
    out
}

/// Bytes in binary units with one decimal: `512B`, `1.5KB`, `12.3GB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    // 1023.96 KB would print as "1024.0KB": move up a unit before rounding does.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// `host`, or `host:port` when the port is not the default one (`[v6]:port` for IPv6).
pub fn host_port(host: &str, port: u16) -> String {
    if port == cairn_api::DEFAULT_PORT {
        host.to_string()
    } else if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `Number of Bricks:` of `volume info`: `3`; `1 x 3 = 3`; `2 x 3 = 6`; with arbiters
/// `1 x (2 + 1) = 3`.
pub fn brick_count(v: &VolumeInfo) -> String {
    let n = v.bricks.len();
    let replica = v.replica.max(1) as usize;
    if replica <= 1 {
        return n.to_string();
    }
    let sets = n / replica;
    if v.arbiter {
        format!("{sets} x ({} + 1) = {n}", replica - 1)
    } else {
        format!("{sets} x {replica} = {n}")
    }
}

/// `peer status`: the other members of the pool.
pub fn peer_status(pool: &[PoolEntry]) -> String {
    let peers: Vec<&PoolEntry> = pool.iter().filter(|p| !p.is_self).collect();
    let mut out = format!("Number of Peers: {}\n", peers.len());
    for p in peers {
        let _ = write!(
            out,
            "\nHostname: {}\nUuid: {}\nState: Peer in Cluster ({})\n",
            host_port(&p.host, p.port),
            p.uuid,
            connected(p.connected)
        );
    }
    out
}

fn connected(yes: bool) -> &'static str {
    if yes { "Connected" } else { "Disconnected" }
}

/// `pool list`: every member, this node shown as `localhost`.
pub fn pool_list(pool: &[PoolEntry]) -> String {
    let rows: Vec<Vec<String>> = pool
        .iter()
        .map(|p| {
            let host = if p.is_self {
                "localhost".to_string()
            } else {
                host_port(&p.host, p.port)
            };
            vec![p.uuid.clone(), host, connected(p.connected).to_string()]
        })
        .collect();
    table(&["UUID", "Hostname", "State"], &rows, false)
}

/// `volume info`: one block per volume, each after a blank line.
pub fn volume_info(volumes: &[VolumeInfo]) -> String {
    if volumes.is_empty() {
        return "No volumes present\n".to_string();
    }
    let mut out = String::new();
    for v in volumes {
        let _ = writeln!(out);
        let _ = writeln!(out, "Volume Name: {}", v.name);
        let _ = writeln!(out, "Type: {}", v.kind);
        let _ = writeln!(out, "Volume ID: {}", v.id);
        let _ = writeln!(out, "Status: {}", v.state);
        let _ = writeln!(out, "Number of Bricks: {}", brick_count(v));
        let _ = writeln!(out, "Transport-type: tcp");
        let _ = writeln!(out, "Bricks:");
        for (i, b) in v.bricks.iter().enumerate() {
            let arbiter = if b.arbiter { " (arbiter)" } else { "" };
            let leaving = if v.removing.contains(&b.id) {
                " (being removed)"
            } else {
                ""
            };
            let _ = writeln!(out, "Brick{}: {}{arbiter}{leaving}", i + 1, b.spec());
        }
        if !v.options.is_empty() {
            let _ = writeln!(out, "Options Reconfigured:");
            for (key, value) in &v.options {
                let _ = writeln!(out, "{key}: {value}");
            }
        }
    }
    out
}

/// `volume list`.
pub fn volume_list(volumes: &[VolumeInfo]) -> String {
    if volumes.is_empty() {
        return "No volumes present in cluster\n".to_string();
    }
    volumes.iter().map(|v| format!("{}\n", v.name)).collect()
}

/// What `volume status` shows besides the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusView {
    /// The table only.
    Plain,
    /// Disk space and inodes per brick.
    Detail,
    /// Connected clients per brick.
    Clients,
}

/// `volume status` of several volumes, separated by blank lines.
pub fn volume_statuses(statuses: &[VolumeStatus], view: StatusView) -> String {
    if statuses.is_empty() {
        return "No volumes present\n".to_string();
    }
    statuses
        .iter()
        .map(|s| volume_status(s, view))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `volume status VOL [detail|clients]`.
pub fn volume_status(s: &VolumeStatus, view: StatusView) -> String {
    if s.state != VolumeState::Started {
        return format!("Volume {} is not started\n", s.name);
    }
    let rows: Vec<Vec<String>> = s
        .bricks
        .iter()
        .map(|b| {
            vec![
                brick_name(b),
                b.port.to_string(),
                if b.online { "Y" } else { "N" }.to_string(),
                b.pid.map_or_else(|| "N/A".to_string(), |p| p.to_string()),
            ]
        })
        .collect();
    let mut out = format!("Status of volume: {}\n", s.name);
    out.push_str(&table(&["Brick", "TCP Port", "Online", "Pid"], &rows, true));
    match view {
        StatusView::Plain => {}
        StatusView::Detail => {
            for b in &s.bricks {
                let _ = write!(out, "\nBrick {}\n", brick_name(b));
                let figures = b.detail.as_ref().map(|d| {
                    [
                        human_size(d.total_bytes),
                        human_size(d.free_bytes),
                        d.total_inodes.to_string(),
                        d.free_inodes.to_string(),
                    ]
                });
                let figures = figures.unwrap_or_else(|| {
                    ["N/A".to_string(), "N/A".into(), "N/A".into(), "N/A".into()]
                });
                let labels = [
                    "Total Disk Space",
                    "Disk Space Free",
                    "Inode Count",
                    "Free Inodes",
                ];
                for (label, value) in labels.iter().zip(figures) {
                    let _ = writeln!(out, "{label:<20} : {value}");
                }
            }
        }
        StatusView::Clients => {
            for b in &s.bricks {
                let _ = write!(out, "\nBrick {}\n", brick_name(b));
                match &b.clients {
                    Some(clients) => {
                        let _ = writeln!(out, "Clients connected : {}", clients.len());
                        for c in clients {
                            let _ = writeln!(out, "{c}");
                        }
                    }
                    None => {
                        let _ = writeln!(out, "Clients connected : N/A");
                    }
                }
            }
        }
    }
    out
}

fn brick_name(b: &BrickStatus) -> String {
    format!("{}:{}", b.host, b.path)
}

/// `volume get VOL KEY|all`.
pub fn option_entries(entries: &[OptionEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| vec![e.key.clone(), e.value.clone()])
        .collect();
    table(&["Option", "Value"], &rows, true)
}

/// `volume set help`: every settable option.
pub fn option_decls(decls: &[OptionDecl]) -> String {
    let mut out = String::new();
    for d in decls {
        let _ = writeln!(out, "Option: {}", d.key);
        let _ = writeln!(out, "Type: {}", d.kind);
        let default = if d.default.is_empty() {
            "(none)"
        } else {
            d.default.as_str()
        };
        let _ = writeln!(out, "Default Value: {default}");
        let _ = writeln!(out, "Translator: {}", d.translator);
        let _ = writeln!(out, "Description: {}", d.doc);
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("No options\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cairn_api::{BrickConfig, BrickDetail, VolumeKind};

    use super::*;

    fn brick(i: usize, host: &str, arbiter: bool) -> BrickConfig {
        BrickConfig {
            id: format!("brick-{i}"),
            host: host.into(),
            path: format!("/data/b{i}"),
            port: 49152 + i as u16,
            arbiter,
            disabled: false,
        }
    }

    fn volume(name: &str, replica: u32, arbiter: bool, bricks: usize) -> VolumeInfo {
        let list: Vec<BrickConfig> = (0..bricks)
            .map(|i| {
                let r = replica.max(1) as usize;
                brick(i, &format!("node{}", i % 3 + 1), arbiter && i % r == r - 1)
            })
            .collect();
        let kind = match (replica > 1, bricks / replica.max(1) as usize > 1) {
            (false, _) => VolumeKind::Distribute,
            (true, false) => VolumeKind::Replicate,
            (true, true) => VolumeKind::DistributedReplicate,
        };
        VolumeInfo {
            name: name.into(),
            id: "6c1e0d2a-0000-4000-8000-000000000001".into(),
            kind,
            state: VolumeState::Started,
            replica,
            arbiter,
            bricks: list,
            options: BTreeMap::new(),
            removing: Vec::new(),
        }
    }

    fn peer(uuid: &str, host: &str, port: u16, connected: bool, is_self: bool) -> PoolEntry {
        PoolEntry {
            uuid: uuid.into(),
            host: host.into(),
            port,
            connected,
            is_self,
        }
    }

    #[test]
    fn tables_align_and_never_end_in_blanks() {
        let t = table(
            &["UUID", "Hostname", "State"],
            &[
                vec!["u1".into(), "a-long-host".into(), "Connected".into()],
                vec!["uuid-2".into(), "b".into(), "Disconnected".into()],
            ],
            false,
        );
        assert_eq!(
            t,
            "UUID    Hostname     State\n\
             u1      a-long-host  Connected\n\
             uuid-2  b            Disconnected\n"
        );
        let ruled = table(
            &["Option", "Value"],
            &[vec!["k".into(), String::new()]],
            true,
        );
        let lines: Vec<&str> = ruled.lines().collect();
        assert_eq!(lines[0], "Option  Value");
        assert_eq!(lines[1], "-".repeat(RULE_MIN));
        assert_eq!(
            lines[2], "k",
            "an empty last cell leaves no trailing blanks"
        );
        assert_eq!(table(&["A"], &[], false), "A\n");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1023), "1023B");
        assert_eq!(human_size(1024), "1.0KB");
        assert_eq!(human_size(1536), "1.5KB");
        assert_eq!(human_size(13_207_024_435), "12.3GB");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0MB");
        assert_eq!(human_size(5 * (1 << 40)), "5.0TB");
        assert_eq!(human_size(u64::MAX), "16.0EB");
    }

    #[test]
    fn brick_counts_follow_the_layout() {
        assert_eq!(brick_count(&volume("d", 1, false, 3)), "3");
        assert_eq!(brick_count(&volume("r", 3, false, 3)), "1 x 3 = 3");
        assert_eq!(brick_count(&volume("dr", 3, false, 6)), "2 x 3 = 6");
        assert_eq!(brick_count(&volume("a", 3, true, 3)), "1 x (2 + 1) = 3");
        assert_eq!(brick_count(&volume("da", 3, true, 6)), "2 x (2 + 1) = 6");
        assert_eq!(brick_count(&volume("r2", 2, false, 4)), "2 x 2 = 4");
        let mut zero = volume("z", 1, false, 2);
        zero.replica = 0;
        assert_eq!(brick_count(&zero), "2");
    }

    #[test]
    fn peer_status_lists_the_others() {
        let pool = [
            peer("u-self", "node1", 24007, true, true),
            peer("u-2", "node2", 24007, true, false),
            peer("u-3", "node3", 24100, false, false),
        ];
        assert_eq!(
            peer_status(&pool),
            "Number of Peers: 2\n\
             \n\
             Hostname: node2\n\
             Uuid: u-2\n\
             State: Peer in Cluster (Connected)\n\
             \n\
             Hostname: node3:24100\n\
             Uuid: u-3\n\
             State: Peer in Cluster (Disconnected)\n"
        );
        assert_eq!(
            peer_status(&[peer("u", "n", 24007, true, true)]),
            "Number of Peers: 0\n"
        );
        assert_eq!(peer_status(&[]), "Number of Peers: 0\n");
    }

    #[test]
    fn pool_list_shows_this_node_as_localhost() {
        let pool = [
            peer("0b5d-2", "node2", 24007, true, false),
            peer("9a1c-self", "node1", 24007, true, true),
            peer("77ee-3", "fe80::1", 9000, false, false),
        ];
        assert_eq!(
            pool_list(&pool),
            "UUID       Hostname        State\n\
             0b5d-2     node2           Connected\n\
             9a1c-self  localhost       Connected\n\
             77ee-3     [fe80::1]:9000  Disconnected\n"
        );
    }

    #[test]
    fn volume_info_in_gluster_layout() {
        let mut v = volume("pacs", 3, true, 3);
        v.options.insert("network.ping-timeout".into(), "5".into());
        v.options.insert("auth.allow".into(), "10.0.0.*".into());
        assert_eq!(
            volume_info(std::slice::from_ref(&v)),
            "\n\
             Volume Name: pacs\n\
             Type: Replicate\n\
             Volume ID: 6c1e0d2a-0000-4000-8000-000000000001\n\
             Status: Started\n\
             Number of Bricks: 1 x (2 + 1) = 3\n\
             Transport-type: tcp\n\
             Bricks:\n\
             Brick1: node1:/data/b0\n\
             Brick2: node2:/data/b1\n\
             Brick3: node3:/data/b2 (arbiter)\n\
             Options Reconfigured:\n\
             auth.allow: 10.0.0.*\n\
             network.ping-timeout: 5\n"
        );
        let mut d = volume("scratch", 1, false, 2);
        d.state = VolumeState::Created;
        let both = volume_info(&[v, d]);
        assert!(
            both.contains("\n\nVolume Name: scratch\nType: Distribute\n"),
            "{both}"
        );
        assert!(
            both.contains("Status: Created\nNumber of Bricks: 2\n"),
            "{both}"
        );
        assert!(
            !both
                .split("Volume Name: scratch")
                .nth(1)
                .unwrap()
                .contains("Options"),
            "no options section without options"
        );
        let dr = volume_info(&[volume("big", 3, false, 6)]);
        assert!(dr.contains("Type: Distributed-Replicate\n"), "{dr}");
        assert!(dr.contains("Number of Bricks: 2 x 3 = 6\n"), "{dr}");
        assert!(!dr.contains("(arbiter)"));
        assert_eq!(volume_info(&[]), "No volumes present\n");
    }

    #[test]
    fn volume_list_names_one_per_line() {
        assert_eq!(
            volume_list(&[volume("a", 1, false, 1), volume("b", 1, false, 1)]),
            "a\nb\n"
        );
        assert_eq!(volume_list(&[]), "No volumes present in cluster\n");
    }

    fn status() -> VolumeStatus {
        VolumeStatus {
            name: "pacs".into(),
            state: VolumeState::Started,
            bricks: vec![
                BrickStatus {
                    volume: "pacs".into(),
                    brick_id: "brick-0".into(),
                    host: "node1".into(),
                    path: "/data/b0".into(),
                    port: 49152,
                    pid: Some(4242),
                    online: true,
                    detail: Some(BrickDetail {
                        total_bytes: 21_474_836_480,
                        free_bytes: 13_207_024_435,
                        total_inodes: 1_310_720,
                        free_inodes: 1_310_000,
                    }),
                    clients: Some(vec!["10.0.0.5:1023".into(), "10.0.0.6:1022".into()]),
                },
                BrickStatus {
                    volume: "pacs".into(),
                    brick_id: "brick-1".into(),
                    host: "node2".into(),
                    path: "/data/b1".into(),
                    port: 49153,
                    pid: None,
                    online: false,
                    detail: None,
                    clients: None,
                },
            ],
        }
    }

    #[test]
    fn volume_status_table() {
        let text = volume_status(&status(), StatusView::Plain);
        assert_eq!(
            text,
            format!(
                "Status of volume: pacs\n\
                 Brick           TCP Port  Online  Pid\n\
                 {}\n\
                 node1:/data/b0  49152     Y       4242\n\
                 node2:/data/b1  49153     N       N/A\n",
                "-".repeat(RULE_MIN)
            )
        );
        let mut stopped = status();
        stopped.state = VolumeState::Stopped;
        assert_eq!(
            volume_status(&stopped, StatusView::Detail),
            "Volume pacs is not started\n"
        );
    }

    #[test]
    fn volume_status_detail_and_clients() {
        let detail = volume_status(&status(), StatusView::Detail);
        assert!(
            detail.ends_with(
                "\nBrick node1:/data/b0\n\
                 Total Disk Space     : 20.0GB\n\
                 Disk Space Free      : 12.3GB\n\
                 Inode Count          : 1310720\n\
                 Free Inodes          : 1310000\n\
                 \n\
                 Brick node2:/data/b1\n\
                 Total Disk Space     : N/A\n\
                 Disk Space Free      : N/A\n\
                 Inode Count          : N/A\n\
                 Free Inodes          : N/A\n"
            ),
            "{detail}"
        );
        let clients = volume_status(&status(), StatusView::Clients);
        assert!(
            clients.ends_with(
                "\nBrick node1:/data/b0\n\
                 Clients connected : 2\n\
                 10.0.0.5:1023\n\
                 10.0.0.6:1022\n\
                 \n\
                 Brick node2:/data/b1\n\
                 Clients connected : N/A\n"
            ),
            "{clients}"
        );
        let all = volume_statuses(&[status(), status()], StatusView::Plain);
        assert_eq!(all.matches("Status of volume: pacs").count(), 2);
        assert!(all.contains("N/A\n\nStatus of volume"), "{all}");
        assert_eq!(
            volume_statuses(&[], StatusView::Plain),
            "No volumes present\n"
        );
    }

    #[test]
    fn options_as_a_table_and_as_help() {
        let entries = [
            OptionEntry {
                key: "network.ping-timeout".into(),
                value: "5".into(),
                default: "10".into(),
                is_default: false,
                doc: "d".into(),
            },
            OptionEntry {
                key: "auth.allow".into(),
                value: "*".into(),
                default: "*".into(),
                is_default: true,
                doc: "d".into(),
            },
        ];
        assert_eq!(
            option_entries(&entries),
            format!(
                "Option                Value\n{}\nnetwork.ping-timeout  5\nauth.allow            *\n",
                "-".repeat(RULE_MIN)
            )
        );
        let decls = [OptionDecl {
            key: "network.ping-timeout".into(),
            kind: "seconds (1 to 1800)".into(),
            default: "10".into(),
            doc: "Declare a brick down after this long without an answer.".into(),
            translator: "protocol/client".into(),
        }];
        assert_eq!(
            option_decls(&decls),
            "Option: network.ping-timeout\n\
             Type: seconds (1 to 1800)\n\
             Default Value: 10\n\
             Translator: protocol/client\n\
             Description: Declare a brick down after this long without an answer.\n\
             \n"
        );
        let mut empty_default = decls[0].clone();
        empty_default.default.clear();
        assert!(option_decls(&[empty_default]).contains("Default Value: (none)\n"));
        assert_eq!(option_decls(&[]), "No options\n");
    }

    #[test]
    fn host_ports() {
        assert_eq!(host_port("node1", 24007), "node1");
        assert_eq!(host_port("node1", 9000), "node1:9000");
        assert_eq!(host_port("::1", 9000), "[::1]:9000");
        assert_eq!(host_port("::1", 24007), "::1");
    }
}
