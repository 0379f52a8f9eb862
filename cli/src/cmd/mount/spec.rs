//! What a mount request names: `HOST[:PORT]:/VOL`, the volfile servers to ask, and the
//! `-o` list, whose items are sorted into FUSE options (for `cairn-fuse`), options of
//! this command (volfile servers, logging), and the standard ones `mount(8)` and fstab
//! pass along that mean nothing here.

use std::path::PathBuf;

use cairn_api::DEFAULT_PORT;
use cairn_fuse::MountOptions;

use crate::logging;

/// `HOST[:PORT]:/VOL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    /// The first volfile server (an IPv6 address without brackets).
    pub host: String,
    /// Its port, when given.
    pub port: Option<u16>,
    /// The volume.
    pub volume: String,
}

impl VolumeSpec {
    /// Parses `node1:/pacs`, `node1:24007:/pacs`, `10.0.0.1:/pacs`, `[fe80::1]:/pacs`,
    /// `[fe80::1]:24007:/pacs`.
    pub fn parse(text: &str) -> Result<VolumeSpec, String> {
        let usage = |why: &str| format!("'{text}': {why} (expected HOST[:PORT]:/VOLUME)");
        let at = text
            .find(":/")
            .ok_or_else(|| usage("no ':/' before the volume name"))?;
        let (server, volume) = (&text[..at], &text[at + 2..]);
        let volume = volume.trim_end_matches('/');
        if volume.is_empty() {
            return Err(usage("no volume name"));
        }
        if volume.contains('/') {
            return Err(usage(
                "mounting a directory inside a volume is not supported",
            ));
        }
        if volume
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        {
            return Err(usage("the volume name has blanks or commas"));
        }
        let (host, port) = split_host_port(server).map_err(|why| usage(&why))?;
        Ok(VolumeSpec {
            host,
            port,
            volume: volume.to_string(),
        })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address (no port).
fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in the server address".to_string())?;
        match after {
            "" => (host, None),
            p => match p.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(format!("unexpected '{p}' after the address")),
            },
        }
    } else if text.matches(':').count() > 1 {
        (text, None) // a bare IPv6 address
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    check_host(host)?;
    let port = port.map(parse_port).transpose()?;
    Ok((host.to_string(), port))
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("no server host".to_string());
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | ',' | '[' | ']'))
    {
        return Err(format!("'{host}' is not a host name or address"));
    }
    Ok(())
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("'{text}' is not a port (1 to 65535)")),
    }
}

/// `host:port` for a TCP endpoint, with brackets around IPv6 addresses.
pub fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The options of this command found in `-o` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extra {
    /// `backup-volfile-servers=H2:H3`: asked, in order, when the first server is away.
    pub backup_servers: Vec<String>,
    /// `volfile-server-port=P`: the port of volfile servers given without one.
    pub server_port: Option<u16>,
    /// `log-file=PATH`.
    pub log_file: Option<PathBuf>,
    /// `log-level=LEVEL`.
    pub log_level: Option<String>,
}

impl Extra {
    /// True when a server-only option was given (meaningless with `--volfile`).
    pub fn names_servers(&self) -> bool {
        !self.backup_servers.is_empty() || self.server_port.is_some()
    }

    /// The volfile servers to ask, in order, as `host:port`: the spec's host first, then
    /// the backups; duplicates dropped.
    pub fn servers(&self, spec: &VolumeSpec) -> Vec<String> {
        let default = self.server_port.unwrap_or(DEFAULT_PORT);
        let mut out = vec![endpoint(&spec.host, spec.port.unwrap_or(default))];
        for b in &self.backup_servers {
            let e = endpoint(b, default);
            if !out.contains(&e) {
                out.push(e);
            }
        }
        out
    }
}

/// Options `mount(8)`, fstab and systemd pass to every helper, which mean nothing to a
/// FUSE client (or are handled before the helper runs, like `_netdev` and `nofail`).
fn ignored(key: &str) -> bool {
    matches!(
        key,
        "defaults" | "_netdev" | "auto" | "noauto" | "nofail" | "user" | "nouser" | "users"
    ) || key.starts_with("x-")
        || key == "comment"
}

/// Applies one comma-separated `-o` list: FUSE options to `fuse`, this command's to
/// `extra`; standard ones are skipped. Unknown items are errors naming the item.
pub fn apply_list(list: &str, fuse: &mut MountOptions, extra: &mut Extra) -> Result<(), String> {
    let mut next_fuse = fuse.clone();
    let mut next_extra = extra.clone();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (item, None),
        };
        let need = || {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("mount option '{key}' needs a value ({key}=...)"))
        };
        if ignored(key) {
            continue;
        }
        if MountOptions::knows(key) {
            next_fuse.parse_list(item)?;
            continue;
        }
        match key {
            "backup-volfile-servers" => {
                next_extra.backup_servers = split_servers(need()?)
                    .map_err(|why| format!("mount option '{item}': {why}"))?;
            }
            "volfile-server-port" => {
                next_extra.server_port = Some(
                    parse_port(need()?).map_err(|why| format!("mount option '{item}': {why}"))?,
                );
            }
            "log-file" => next_extra.log_file = Some(PathBuf::from(need()?)),
            "log-level" => {
                next_extra.log_level = Some(
                    logging::parse_level(need()?)
                        .map_err(|why| format!("mount option '{item}': {why}"))?,
                );
            }
            _ => {
                return Err(format!(
                    "unknown mount option '{key}' (known: {}, backup-volfile-servers=H1:H2, \
                     volfile-server-port=PORT, log-file=PATH, log-level=LEVEL, and the \
                     standard defaults, _netdev, auto, noauto, nofail, user, nouser, users, \
                     x-*, comment=*)",
                    cairn_fuse::KNOWN_KEYS.join(", ")
                ));
            }
        }
    }
    *fuse = next_fuse;
    *extra = next_extra;
    Ok(())
}

/// `node2:node3`, `[fe80::2]:node3`: colon-separated hosts, IPv6 addresses in brackets.
fn split_servers(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (host, after) = if let Some(inner) = rest.strip_prefix('[') {
            let (host, after) = inner
                .split_once(']')
                .ok_or_else(|| "unclosed '['".to_string())?;
            match after {
                "" => (host, ""),
                a => match a.strip_prefix(':') {
                    Some(a) => (host, a),
                    None => return Err(format!("unexpected '{a}' after [{host}]")),
                },
            }
        } else {
            match rest.split_once(':') {
                Some((h, a)) => (h, a),
                None => (rest, ""),
            }
        };
        check_host(host).map_err(|_| {
            if host.is_empty() {
                "an empty server name".to_string()
            } else {
                format!("'{host}' is not a host name or address")
            }
        })?;
        out.push(host.to_string());
        if after.is_empty() && rest.ends_with(':') {
            return Err("an empty server name".to_string());
        }
        rest = after;
    }
    if out.is_empty() {
        return Err("no servers".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(host: &str, port: Option<u16>, volume: &str) -> VolumeSpec {
        VolumeSpec {
            host: host.into(),
            port,
            volume: volume.into(),
        }
    }

    #[test]
    fn specs_parse() {
        assert_eq!(
            VolumeSpec::parse("node1:/pacs").unwrap(),
            spec("node1", None, "pacs")
        );
        assert_eq!(
            VolumeSpec::parse("node1:24010:/pacs").unwrap(),
            spec("node1", Some(24010), "pacs")
        );
        assert_eq!(
            VolumeSpec::parse("10.0.0.1:/pacs/").unwrap(),
            spec("10.0.0.1", None, "pacs")
        );
        assert_eq!(
            VolumeSpec::parse("[fe80::1]:/pacs").unwrap(),
            spec("fe80::1", None, "pacs")
        );
        assert_eq!(
            VolumeSpec::parse("[fe80::1]:9000:/pacs").unwrap(),
            spec("fe80::1", Some(9000), "pacs")
        );
        assert_eq!(
            VolumeSpec::parse("::1:/pacs").unwrap(),
            spec("::1", None, "pacs")
        );
    }

    #[test]
    fn bad_specs_are_explained() {
        let err = |t: &str| VolumeSpec::parse(t).unwrap_err();
        assert!(err("node1").contains("':/'"));
        assert!(err("node1:pacs").contains("':/'"));
        assert!(
            err("/mnt/pacs").contains("':/'"),
            "a mount point given first"
        );
        assert!(err("node1:/").contains("no volume"));
        assert!(err(":/pacs").contains("no server host"));
        assert!(err("node1:/pacs/sub").contains("directory inside"));
        assert!(err("node1:0:/pacs").contains("not a port"));
        assert!(err("node1:99999:/pacs").contains("not a port"));
        assert!(err("node1:x:/pacs").contains("not a port"));
        assert!(err("[fe80::1:/pacs").contains("unclosed"));
        assert!(err("[fe80::1]x:/pacs").contains("unexpected"));
        assert!(err("no de:/pacs").contains("not a host"));
        assert!(err("node1:/pa cs").contains("blanks"));
    }

    #[test]
    fn servers_come_in_order_with_default_ports() {
        let mut extra = Extra::default();
        let s = spec("node1", None, "pacs");
        assert_eq!(extra.servers(&s), ["node1:24007"]);
        extra.backup_servers = vec!["node2".into(), "fe80::3".into(), "node1".into()];
        assert_eq!(
            extra.servers(&s),
            ["node1:24007", "node2:24007", "[fe80::3]:24007"]
        );
        extra.server_port = Some(9000);
        assert_eq!(
            extra.servers(&spec("node1", Some(24007), "pacs")),
            ["node1:24007", "node2:9000", "[fe80::3]:9000", "node1:9000"]
        );
        assert!(extra.names_servers());
        assert!(!Extra::default().names_servers());
    }

    fn apply(list: &str) -> Result<(MountOptions, Extra), String> {
        let mut fuse = MountOptions::default();
        let mut extra = Extra::default();
        apply_list(list, &mut fuse, &mut extra)?;
        Ok((fuse, extra))
    }

    #[test]
    fn fstab_options_are_sorted() {
        let (fuse, extra) = apply(
            "defaults,_netdev,auto,noauto,nofail,user,nouser,users,x-systemd.automount,\
             x-systemd.mount-timeout=30,comment=pacs archive,rw,\
             backup-volfile-servers=node2:node3,volfile-server-port=24010,\
             log-file=/var/log/cairn/pacs.log,log-level=debug,entry-timeout=2,ro",
        )
        .unwrap();
        assert!(fuse.read_only);
        assert_eq!(fuse.entry_timeout, Duration::from_secs(2));
        assert_eq!(
            extra,
            Extra {
                backup_servers: vec!["node2".into(), "node3".into()],
                server_port: Some(24010),
                log_file: Some(PathBuf::from("/var/log/cairn/pacs.log")),
                log_level: Some("debug".into()),
            }
        );
        let (fuse, extra) = apply("").unwrap();
        assert_eq!((fuse, extra), (MountOptions::default(), Extra::default()));
        let (_, extra) = apply("backup-volfile-servers=[fe80::2]:node3:[::1]").unwrap();
        assert_eq!(extra.backup_servers, ["fe80::2", "node3", "::1"]);
    }

    #[test]
    fn bad_options_are_named() {
        let err = |l: &str| apply(l).unwrap_err();
        let e = err("defaults,noatime");
        assert!(e.contains("unknown mount option 'noatime'"), "{e}");
        assert!(
            e.contains("backup-volfile-servers") && e.contains("max-write"),
            "{e}"
        );
        assert!(err("backup-volfile-servers").contains("needs a value"));
        assert!(err("backup-volfile-servers=").contains("needs a value"));
        assert!(err("backup-volfile-servers=node2::node3").contains("empty server"));
        assert!(err("backup-volfile-servers=node2:").contains("empty server"));
        assert!(err("backup-volfile-servers=[fe80::2").contains("unclosed"));
        assert!(err("volfile-server-port=0").contains("not a port"));
        assert!(err("log-level=[[").contains("log-level"));
        assert!(err("fuse-threads=0").contains("out of range"));
        // A failed list changes nothing.
        let mut fuse = MountOptions::default();
        let mut extra = Extra::default();
        assert!(apply_list("ro,log-level=debug,bogus", &mut fuse, &mut extra).is_err());
        assert_eq!((fuse, extra), (MountOptions::default(), Extra::default()));
    }

    #[test]
    fn endpoints_bracket_ipv6() {
        assert_eq!(endpoint("node1", 24007), "node1:24007");
        assert_eq!(endpoint("fe80::1", 1), "[fe80::1]:1");
    }
}
