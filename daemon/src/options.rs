//! The table of volume options (`volume set VOL KEY VALUE`), declared once.
//!
//! Each option has a typed kind (checked with the same parser as volfile options), a
//! default, a description, and where it goes: translator options in the generated client
//! and/or brick graphs, or the daemon itself. Validation, volgen, `volume get`, `volume set
//! help` and the generated table in `docs/reference/volume-options.md` all read this table.

use cairn_volfiles::OptionKind;

/// Where an option takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// An option of translator type `xlator` in client graphs.
    Client {
        /// Translator type.
        xlator: &'static str,
        /// Its option key.
        key: &'static str,
    },
    /// An option of translator type `xlator` in brick graphs.
    Brick {
        /// Translator type.
        xlator: &'static str,
        /// Its option key.
        key: &'static str,
    },
    /// Read by `cairnd` itself.
    Daemon,
}

/// An extra check of a value beyond its kind.
pub type Check = fn(&str) -> Result<(), String>;

/// One volume option.
#[derive(Clone, Copy, Debug)]
pub struct VolOption {
    /// The key (`network.ping-timeout`).
    pub key: &'static str,
    /// Its type and range.
    pub kind: OptionKind,
    /// The default value.
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// Where it goes (one or more places).
    pub targets: &'static [Target],
    /// Extra check beyond the kind.
    pub check: Option<Check>,
}

fn check_auth_rules(value: &str) -> Result<(), String> {
    for rule in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        cairn_translators::protocol::auth::check_rule(rule)?;
    }
    Ok(())
}

fn check_share_name(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    crate::smb::check_share_name(value)
}

/// Every volume option.
pub const OPTIONS: &[VolOption] = &[
    VolOption {
        key: "auth.allow",
        kind: OptionKind::List(&[]),
        default: "*",
        doc: "Client addresses that may mount the volume and connect to its bricks: '*', addresses, wildcards like 10.1.*.*, CIDR blocks like 10.0.0.0/8; comma-separated.",
        targets: &[
            Target::Brick {
                xlator: "protocol/server",
                key: "auth-allow",
            },
            Target::Daemon,
        ],
        check: Some(check_auth_rules),
    },
    VolOption {
        key: "auth.reject",
        kind: OptionKind::List(&[]),
        default: "",
        doc: "Client addresses refused even when auth.allow admits them (same forms).",
        targets: &[
            Target::Brick {
                xlator: "protocol/server",
                key: "auth-reject",
            },
            Target::Daemon,
        ],
        check: Some(check_auth_rules),
    },
    VolOption {
        key: "network.ping-timeout",
        kind: OptionKind::Duration {
            min_ms: 1_000,
            max_ms: 3_600_000,
        },
        default: "10s",
        doc: "A brick that answers nothing for this long is declared down; its operations fail with ENOTCONN instead of waiting.",
        targets: &[Target::Client {
            xlator: "protocol/client",
            key: "ping-timeout",
        }],
        check: None,
    },
    VolOption {
        key: "network.frame-timeout",
        kind: OptionKind::Duration {
            min_ms: 1_000,
            max_ms: 86_400_000,
        },
        default: "1800s",
        doc: "An operation without an answer after this long fails with ETIMEDOUT.",
        targets: &[Target::Client {
            xlator: "protocol/client",
            key: "frame-timeout",
        }],
        check: None,
    },
    VolOption {
        key: "cluster.quorum-type",
        kind: OptionKind::Enum(&["auto", "fixed", "none"]),
        default: "auto",
        doc: "Client quorum: auto = a majority of each replica set's bricks must be up to change anything (with an even count, half including the first); fixed = cluster.quorum-count bricks; none = one brick.",
        targets: &[Target::Client {
            xlator: "cluster/replicate",
            key: "quorum-type",
        }],
        check: None,
    },
    VolOption {
        key: "cluster.quorum-count",
        kind: OptionKind::Int { min: 1, max: 64 },
        default: "1",
        doc: "Bricks of a replica set that must be up to change anything, with cluster.quorum-type fixed.",
        targets: &[Target::Client {
            xlator: "cluster/replicate",
            key: "quorum-count",
        }],
        check: None,
    },
    VolOption {
        key: "cluster.read-policy",
        kind: OptionKind::Enum(&["first-up", "hashed", "least-latency"]),
        default: "first-up",
        doc: "Which good copy serves reads: the first brick up, one chosen by the file (spreads load), or the fastest lately.",
        targets: &[Target::Client {
            xlator: "cluster/replicate",
            key: "read-policy",
        }],
        check: None,
    },
    VolOption {
        key: "cluster.favorite-child-policy",
        kind: OptionKind::Enum(&["none", "size", "mtime", "majority"]),
        default: "none",
        doc: "How heal settles a split-brain by itself: none (report it for the operator), size (the biggest copy), mtime (the newest), majority (the contents most copies agree on).",
        targets: &[Target::Client {
            xlator: "cluster/replicate",
            key: "favorite-child-policy",
        }],
        check: None,
    },
    VolOption {
        key: "cluster.heal-on-access",
        kind: OptionKind::Bool,
        default: "on",
        doc: "A client whose lookup finds a copy blamed by the others heals that file in the background.",
        targets: &[Target::Client {
            xlator: "cluster/replicate",
            key: "heal-on-access",
        }],
        check: None,
    },
    VolOption {
        key: "cluster.min-free-disk",
        kind: OptionKind::Percent,
        default: "10%",
        doc: "A group with less free space than this share takes no new files: they go to the emptiest group, with a pointer on the hashed one.",
        targets: &[Target::Client {
            xlator: "cluster/distribute",
            key: "min-free-disk",
        }],
        check: None,
    },
    VolOption {
        key: "cluster.weighted-rebalance",
        kind: OptionKind::Bool,
        default: "on",
        doc: "Size each group's share of new directories' hash ranges (and of rebalanced ones) by its capacity; off: equal shares.",
        targets: &[Target::Client {
            xlator: "cluster/distribute",
            key: "weighted",
        }],
        check: None,
    },
    VolOption {
        key: "cluster.lookup-optimize",
        kind: OptionKind::Bool,
        default: "on",
        doc: "Trust a miss on a name's hashed group when its directory's layout is settled; off: ask every group on every miss.",
        targets: &[Target::Client {
            xlator: "cluster/distribute",
            key: "lookup-optimize",
        }],
        check: None,
    },
    VolOption {
        key: "cluster.rsync-hash",
        kind: OptionKind::Bool,
        default: "on",
        doc: "Place rsync's temporary names (.NAME.XXXXXX) where NAME goes, so the rename that ends each copy moves nothing.",
        targets: &[Target::Client {
            xlator: "cluster/distribute",
            key: "rsync-hash",
        }],
        check: None,
    },
    VolOption {
        key: "cluster.rebal-throttle",
        kind: OptionKind::Enum(&["lazy", "normal", "aggressive"]),
        default: "normal",
        doc: "How hard a rebalance works: files moved at once (lazy 1, normal 2, aggressive 4), so that clinical reads stay fast.",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "cluster.heal-interval",
        kind: OptionKind::Duration {
            min_ms: 1_000,
            max_ms: 86_400_000,
        },
        default: "600s",
        doc: "How often each node's heal worker goes through its bricks' heal index (it also runs at once when a brick comes back, and on volume heal).",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "cluster.heal-max-parallel",
        kind: OptionKind::Int { min: 1, max: 64 },
        default: "4",
        doc: "Files one node's heal worker heals at once.",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "cluster.heal-bandwidth",
        kind: OptionKind::Size {
            min: 0,
            max: 1 << 40,
        },
        default: "0",
        doc: "Bytes per second one node's heal worker may copy (0: no limit), so heal never starves clinical reads.",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "diagnostics.latency-measurement",
        kind: OptionKind::Bool,
        default: "on",
        doc: "Measure the latency of every operation in io-stats (clients and bricks).",
        targets: &[
            Target::Client {
                xlator: "debug/io-stats",
                key: "latency-measurement",
            },
            Target::Brick {
                xlator: "debug/io-stats",
                key: "latency-measurement",
            },
        ],
        check: None,
    },
    VolOption {
        key: "features.worm",
        kind: OptionKind::Bool,
        default: "off",
        doc: "Volume-level WORM: a file can be written only through the descriptor that created it, until it is closed; from then on it cannot be changed, renamed or removed (EROFS; EPERM for attributes). Enforced on the bricks.",
        targets: &[Target::Brick {
            xlator: "features/worm",
            key: "worm",
        }],
        check: None,
    },
    VolOption {
        key: "features.worm-file-level",
        kind: OptionKind::Bool,
        default: "off",
        doc: "File-level WORM with retention: a file is committed by chmod a-w, by setting user.cairn.retain-until, or after features.auto-commit-period without change; a committed file is immutable and cannot be removed before its retention date or while user.cairn.legal-hold is set. Enforced on the bricks.",
        targets: &[Target::Brick {
            xlator: "features/worm",
            key: "worm-file-level",
        }],
        check: None,
    },
    VolOption {
        key: "features.default-retention-period",
        kind: OptionKind::Duration {
            min_ms: 0,
            max_ms: 100 * 366 * 86_400_000,
        },
        default: "120s",
        doc: "How long a file committed without an explicit date is retained (e.g. 30d, or 3650d for ten years).",
        targets: &[Target::Brick {
            xlator: "features/worm",
            key: "default-retention-period",
        }],
        check: None,
    },
    VolOption {
        key: "features.auto-commit-period",
        kind: OptionKind::Duration {
            min_ms: 0,
            max_ms: 100 * 366 * 86_400_000,
        },
        default: "180s",
        doc: "A file not modified for this long is committed with the default retention (0: only chmod a-w or a retention date commits).",
        targets: &[Target::Brick {
            xlator: "features/worm",
            key: "auto-commit-period",
        }],
        check: None,
    },
    VolOption {
        key: "features.retention-mode",
        kind: OptionKind::Enum(&["relax", "enterprise"]),
        default: "relax",
        doc: "relax: a retention date may be moved earlier or later; enterprise: only later.",
        targets: &[Target::Brick {
            xlator: "features/worm",
            key: "retention-mode",
        }],
        check: None,
    },
    VolOption {
        key: "features.worm-files-deletable",
        kind: OptionKind::Bool,
        default: "on",
        doc: "Whether a committed file can be removed once its retention date has passed.",
        targets: &[Target::Brick {
            xlator: "features/worm",
            key: "worm-files-deletable",
        }],
        check: None,
    },
    VolOption {
        key: "features.bitrot",
        kind: OptionKind::Bool,
        default: "off",
        doc: "Bitrot detection: bricks sign each file once it is closed and quiet for features.signing-time, and each node scrubs its bricks on the features.scrub-frequency schedule; a damaged copy is refused to readers and repaired from a copy that verifies. Set with volume bitrot VOL enable|disable.",
        targets: &[
            Target::Brick {
                xlator: "features/bitrot",
                key: "signing",
            },
            Target::Daemon,
        ],
        check: None,
    },
    VolOption {
        key: "features.signing-time",
        kind: OptionKind::Duration {
            min_ms: 1_000,
            max_ms: 86_400_000,
        },
        default: "120s",
        doc: "How long a file must stay closed and unchanged before its brick signs it.",
        targets: &[Target::Brick {
            xlator: "features/bitrot",
            key: "signing-time",
        }],
        check: None,
    },
    VolOption {
        key: "features.scrub-throttle",
        kind: OptionKind::Enum(&["lazy", "normal", "aggressive"]),
        default: "lazy",
        doc: "Read-rate cap of each node's scrubber: lazy 10 MiB/s, normal 40 MiB/s, aggressive 160 MiB/s.",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "features.scrub-frequency",
        kind: OptionKind::Enum(&["hourly", "daily", "weekly", "biweekly", "monthly"]),
        default: "biweekly",
        doc: "How often each node's scrubber checks every file of its bricks (counted from the end of the last run).",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "features.scrub",
        kind: OptionKind::Enum(&["active", "paused"]),
        default: "active",
        doc: "paused stops scheduled and running scrubs where they are (volume bitrot VOL scrub pause|resume); a resumed run continues from the directory it reached.",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "nfs.enable",
        kind: OptionKind::Bool,
        default: "off",
        doc: "Each node's cairnd serves the volume over NFSv3 (NFS, MOUNT and portmap on nfs.port; export path /VOL). File handles are the same on every node and across restarts.",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "nfs.port",
        kind: OptionKind::Int { min: 1, max: 65535 },
        default: "2049",
        doc: "TCP port of the volume's NFS gateway on each node (one port per volume).",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "nfs.rpc-auth-allow",
        kind: OptionKind::List(&[]),
        default: "*",
        doc: "Client addresses the NFS gateway accepts connections from: '*', addresses, wildcards like 10.1.*.*, CIDR blocks like 10.0.0.0/8; comma-separated.",
        targets: &[Target::Daemon],
        check: Some(check_auth_rules),
    },
    VolOption {
        key: "nfs.rpc-auth-reject",
        kind: OptionKind::List(&[]),
        default: "",
        doc: "Client addresses the NFS gateway refuses even when nfs.rpc-auth-allow admits them (same forms).",
        targets: &[Target::Daemon],
        check: Some(check_auth_rules),
    },
    VolOption {
        key: "smb.enable",
        kind: OptionKind::Bool,
        default: "off",
        doc: "Each node shares the volume through Samba: cairnd mounts it (FUSE) and writes a share that the node's smb.conf includes, then reloads or starts smbd.",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "smb.share-name",
        kind: OptionKind::Str,
        default: "",
        doc: "The SMB share's name (empty: the volume's name).",
        targets: &[Target::Daemon],
        check: Some(check_share_name),
    },
    VolOption {
        key: "smb.valid-users",
        kind: OptionKind::Str,
        default: "",
        doc: "Samba users and @groups allowed on the share, separated by commas (empty: every user Samba authenticates).",
        targets: &[Target::Daemon],
        check: Some(crate::smb::check_users),
    },
    VolOption {
        key: "smb.guest-ok",
        kind: OptionKind::Bool,
        default: "off",
        doc: "Whether the share admits guests (Samba's guest account) without a password.",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "performance.quick-read",
        kind: OptionKind::Bool,
        default: "on",
        doc: "Quick-read in the client graph: small files come whole in the lookup or open round trip and are read from memory (see the quick-read options).",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "performance.quick-read-lookup-size",
        kind: OptionKind::Size {
            min: 0,
            max: 16 << 20,
        },
        default: "64KiB",
        doc: "Lookups carry the content of regular files up to this size, so open + read + close of such a file costs no further round trip (0: never). Content comes from one good copy.",
        targets: &[Target::Client {
            xlator: "performance/quick-read",
            key: "lookup-size",
        }],
        check: None,
    },
    VolOption {
        key: "performance.quick-read-max-file-size",
        kind: OptionKind::Size {
            min: 0,
            max: 16 << 20,
        },
        default: "1MiB",
        doc: "An open for reading of a file up to this size fetches it whole in one round trip (a lookup on one good copy) instead of opening it on every copy; reads are then served from memory (0: never).",
        targets: &[Target::Client {
            xlator: "performance/quick-read",
            key: "max-file-size",
        }],
        check: None,
    },
    VolOption {
        key: "performance.quick-read-cache-timeout",
        kind: OptionKind::Duration {
            min_ms: 0,
            max_ms: 60_000,
        },
        default: "1s",
        doc: "How long fetched content may serve opens and reads before the bricks are asked again: a change made by another client is seen within this time. Changes made through the same mount are seen at once.",
        targets: &[Target::Client {
            xlator: "performance/quick-read",
            key: "cache-timeout",
        }],
        check: None,
    },
    VolOption {
        key: "performance.quick-read-read-ahead",
        kind: OptionKind::Int { min: 0, max: 64 },
        default: "8",
        doc: "Series read-ahead: when a client opens the images of a directory for reading in numbered order (IM-0001.dcm, IM-0002.dcm, ...), it fetches this many next ones in the background, content included, and answers their lookups, opens and reads from memory within the cache timeout (0: off).",
        targets: &[Target::Client {
            xlator: "performance/quick-read",
            key: "read-ahead",
        }],
        check: None,
    },
    VolOption {
        key: "performance.quick-read-cache-size",
        kind: OptionKind::Size {
            min: 0,
            max: 64 << 30,
        },
        default: "128MiB",
        doc: "Most content bytes one client keeps; the least recently used goes first.",
        targets: &[Target::Client {
            xlator: "performance/quick-read",
            key: "cache-size",
        }],
        check: None,
    },
    VolOption {
        key: "performance.md-cache",
        kind: OptionKind::Bool,
        default: "on",
        doc: "md-cache in the client graph: attributes and names from lookups, stats and directory listings answer repeated lookups and stats without a round trip (see the md-cache options).",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "performance.md-cache-timeout",
        kind: OptionKind::Duration {
            min_ms: 0,
            max_ms: 60_000,
        },
        default: "1s",
        doc: "How long kept attributes and names answer lookups and stats, and how long after a client makes a directory it answers lookups of names it did not put there as missing (the lookup before each create of an ingest): a change made by another client is seen within this time (plus the FUSE attribute-timeout). Changes made through the same client are seen at once (0: keep nothing).",
        targets: &[Target::Client {
            xlator: "performance/md-cache",
            key: "timeout",
        }],
        check: None,
    },
    VolOption {
        key: "performance.md-cache-entries",
        kind: OptionKind::Int {
            min: 0,
            max: 16_777_216,
        },
        default: "65536",
        doc: "Most objects whose attributes one client keeps, and most names (about 250 bytes each); the oldest go first.",
        targets: &[Target::Client {
            xlator: "performance/md-cache",
            key: "entries",
        }],
        check: None,
    },
    VolOption {
        key: "performance.readdir-ahead",
        kind: OptionKind::Bool,
        default: "on",
        doc: "readdir-ahead in the client graph: directories are listed in large batches, and the next batch is asked for while the current one is consumed (see the readdir-ahead options).",
        targets: &[Target::Daemon],
        check: None,
    },
    VolOption {
        key: "performance.readdir-ahead-request-size",
        kind: OptionKind::Size {
            min: 4096,
            max: 4 << 20,
        },
        default: "256KiB",
        doc: "Each batch of a directory listing asked of the bricks is at least this large (about 1,600 entries with attributes at the default).",
        targets: &[Target::Client {
            xlator: "performance/readdir-ahead",
            key: "request-size",
        }],
        check: None,
    },
    VolOption {
        key: "performance.readdir-ahead-cache-limit",
        kind: OptionKind::Size {
            min: 0,
            max: 1 << 30,
        },
        default: "16MiB",
        doc: "Memory one client may spend on batches asked for ahead, over all directories being listed; at most this divided by the request size are outstanding (0: ask nothing ahead).",
        targets: &[Target::Client {
            xlator: "performance/readdir-ahead",
            key: "cache-limit",
        }],
        check: None,
    },
    VolOption {
        key: "performance.io-thread-count",
        kind: OptionKind::Int { min: 1, max: 64 },
        default: "16",
        doc: "Threads of each brick process that serve requests and run their filesystem calls inline; a call that waits for the disk holds up one of them (a change restarts the bricks).",
        targets: &[Target::Brick {
            xlator: "storage/posix",
            key: "io-threads",
        }],
        check: None,
    },
    VolOption {
        key: "server.max-inflight",
        kind: OptionKind::Int { min: 1, max: 65536 },
        default: "256",
        doc: "Operations a brick executes at once for one client connection.",
        targets: &[Target::Brick {
            xlator: "protocol/server",
            key: "max-inflight",
        }],
        check: None,
    },
];

/// The option with this key.
pub fn find(key: &str) -> Option<&'static VolOption> {
    OPTIONS.iter().find(|o| o.key == key)
}

/// Checks a key and value; the error says what is allowed.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    let opt = find(key).ok_or_else(|| {
        let mut keys: Vec<&str> = OPTIONS.iter().map(|o| o.key).collect();
        keys.sort_unstable();
        format!(
            "option '{key}' does not exist; volume options are: {}",
            keys.join(", ")
        )
    })?;
    opt.kind
        .parse(value)
        .map_err(|e| format!("option '{key}': {e}"))?;
    if let Some(check) = opt.check {
        check(value).map_err(|e| format!("option '{key}': {e}"))?;
    }
    Ok(())
}

/// The value in effect: set by the operator, or the default.
pub fn effective<'a>(
    set: &'a std::collections::BTreeMap<String, String>,
    key: &str,
) -> Option<&'a str> {
    set.get(key)
        .map(String::as_str)
        .or_else(|| find(key).map(|o| o.default))
}

/// The value in effect of a boolean option (false when unset without a default or
/// unreadable).
pub fn flag(set: &std::collections::BTreeMap<String, String>, key: &str) -> bool {
    matches!(
        effective(set, key).map(|v| OptionKind::Bool.parse(v)),
        Some(Ok(cairn_volfiles::OptionValue::Bool(true)))
    )
}

/// The value in effect of a list option, split at commas.
pub fn list(set: &std::collections::BTreeMap<String, String>, key: &str) -> Vec<String> {
    effective(set, key)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

/// The Markdown table of every option (for docs/reference/volume-options.md).
pub fn render_reference() -> String {
    let mut out = String::from(
        "# Volume option reference\n\nSet with `cairn volume set VOL KEY VALUE`, read with `cairn volume get VOL KEY|all`, \
         undo with `cairn volume reset VOL [KEY]`. Generated from the option table in \
         `daemon/src/options.rs`; do not edit by hand.\n\n\
         | key | type | default | applies to | description |\n| --- | --- | --- | --- | --- |\n",
    );
    let mut opts: Vec<&VolOption> = OPTIONS.iter().collect();
    opts.sort_by_key(|o| o.key);
    for o in opts {
        let targets: Vec<String> = o
            .targets
            .iter()
            .map(|t| match t {
                Target::Client { xlator, key } => format!("client `{xlator}` `{key}`"),
                Target::Brick { xlator, key } => format!("brick `{xlator}` `{key}`"),
                Target::Daemon => "cairnd".to_string(),
            })
            .collect();
        let default = if o.default.is_empty() {
            "*(empty)*".to_string()
        } else {
            format!("`{}`", o.default)
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            o.key,
            o.kind.describe(),
            default,
            targets.join(", "),
            o.doc.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_keys_unique() {
        let mut keys = std::collections::BTreeSet::new();
        for o in OPTIONS {
            validate(o.key, o.default).unwrap_or_else(|e| panic!("{}: {e}", o.key));
            assert!(keys.insert(o.key), "duplicate {}", o.key);
        }
    }

    #[test]
    fn bad_keys_and_values_say_what_is_allowed() {
        let e = validate("network.ping-timout", "5").unwrap_err();
        assert!(
            e.contains("does not exist") && e.contains("network.ping-timeout"),
            "{e}"
        );
        let e = validate("network.ping-timeout", "fast").unwrap_err();
        assert!(
            e.contains("network.ping-timeout") && e.contains("duration"),
            "{e}"
        );
        let e = validate("auth.allow", "10.0.0.0/99").unwrap_err();
        assert!(e.contains("prefix length"), "{e}");
        validate("auth.allow", "10.1.*.*, 192.168.0.0/16").unwrap();
        validate("network.ping-timeout", "5").unwrap();
    }
}
