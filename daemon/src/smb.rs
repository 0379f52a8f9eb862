//! SMB shares through Samba: for every started volume with `smb.enable on`, this node's
//! `cairnd` keeps a FUSE mount of the volume (`cairn mount`, under `--smb-mounts`), writes a
//! share for it into a file of its own that the node's `smb.conf` includes, and makes `smbd`
//! load it (reloading a running `smbd`, starting one otherwise).
//!
//! The operator keeps `smb.conf` (global settings, domain membership); `cairnd` only adds
//! one `include =` line to it, once, and owns the included file. A share is written for
//! Windows clients of a PACS archive: extended attributes and alternate data streams kept in
//! `user.*` xattrs (which the FUSE mount passes through), DOS attributes stored, no kernel
//! oplocks or share modes (a FUSE mount cannot break them), and `strict sync` so a client's
//! flush reaches the bricks' disks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cairn_api::{VolumeConfig, VolumeState};

use crate::{Daemon, options};

/// How often shares are reconciled besides configuration changes (a mount that died is
/// noticed within this).
const POLL: Duration = Duration::from_secs(5);
/// The file `cairnd` owns, next to `smb.conf`.
const SHARES_FILE: &str = "cairn-shares.conf";

/// One share this node should offer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Share {
    volume: String,
    name: String,
    mountpoint: PathBuf,
    guest_ok: bool,
    valid_users: String,
}

/// Where Samba's configuration lives and where volumes are mounted for it.
#[derive(Clone, Debug)]
pub struct SmbPaths {
    /// The node's `smb.conf`.
    pub conf: PathBuf,
    /// Directory of the FUSE mounts shares are made of (`DIR/VOL`).
    pub mounts: PathBuf,
    /// The `cairn` executable (for `cairn mount`).
    pub cairn: PathBuf,
}

impl SmbPaths {
    fn shares_file(&self) -> PathBuf {
        self.conf
            .parent()
            .unwrap_or_else(|| Path::new("/"))
            .join(SHARES_FILE)
    }
}

/// A share name Samba accepts and Windows shows: letters, digits, `-`, `_`, `.`, `$`;
/// at most 80 characters.
pub fn check_share_name(name: &str) -> Result<(), String> {
    if name.len() > 80 {
        return Err(format!("share name '{name}' is longer than 80 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '$')))
    {
        return Err(format!(
            "share name '{name}' contains '{c}'; use letters, digits, '-', '_', '.', '$'"
        ));
    }
    if matches!(
        name.to_ascii_lowercase().as_str(),
        "global" | "homes" | "printers" | "ipc$"
    ) {
        return Err(format!("share name '{name}' is reserved by Samba"));
    }
    Ok(())
}

/// A user list for `valid users`: names separated by commas or spaces, `@group` allowed.
pub fn check_users(list: &str) -> Result<(), String> {
    for u in list.split([',', ' ']).filter(|u| !u.is_empty()) {
        let bare = u.strip_prefix('@').unwrap_or(u);
        if bare.is_empty()
            || !bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '\\' | '$'))
        {
            return Err(format!("'{u}' is not a user or @group name"));
        }
    }
    Ok(())
}

/// Whether Samba's `streams_xattr` module is installed (Debian: `samba-vfs-modules`).
/// Without it, a share that asks for it refuses every connection, so it is left out (and
/// Windows alternate data streams are refused) rather than the share lost.
fn have_streams_xattr() -> bool {
    let dirs = ["/usr/lib/samba/vfs", "/usr/lib64/samba/vfs"];
    let multiarch = std::fs::read_dir("/usr/lib")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("samba/vfs"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    dirs.iter()
        .map(PathBuf::from)
        .chain(multiarch)
        .any(|d| d.join("streams_xattr.so").is_file())
}

/// The `[share]` section of one share.
fn section(s: &Share, streams: bool) -> String {
    let mut out = format!(
        "# Cairn volume {vol}: written by cairnd (volume set {vol} smb.*); edits are overwritten.\n\
         [{name}]\n\
         \tcomment = Cairn volume {vol}\n\
         \tpath = {path}\n\
         \tread only = no\n\
         \tbrowseable = yes\n\
         \tguest ok = {guest}\n",
        vol = s.volume,
        name = s.name,
        path = s.mountpoint.display(),
        guest = if s.guest_ok { "yes" } else { "no" },
    );
    if !s.valid_users.trim().is_empty() {
        out.push_str(&format!("\tvalid users = {}\n", s.valid_users.trim()));
    }
    out.push_str(
        "\tkernel oplocks = no\n\
         \tkernel share modes = no\n\
         \tposix locking = no\n\
         \tea support = yes\n\
         \tstore dos attributes = yes\n\
         \tmap archive = no\n\
         \tmap hidden = no\n\
         \tmap system = no\n\
         \tmap readonly = no\n\
         \tstrict sync = yes\n",
    );
    if streams {
        out.push_str("\tvfs objects = streams_xattr\n");
    }
    out.push('\n');
    out
}

/// The whole shares file.
fn shares_text(shares: &[Share], streams: bool) -> String {
    let mut out = String::from(
        "# Samba shares of Cairn volumes on this node, managed by cairnd (smb.enable).\n\n",
    );
    for s in shares {
        out.push_str(&section(s, streams));
    }
    out
}

/// True when `path` is a mount point (per this process's mount table).
fn mounted(path: &Path) -> bool {
    let want = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .any(|m| m == want)
        })
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Adds `include = FILE` to `smb.conf` if it is not there (creating a minimal `smb.conf`
/// when there is none).
fn ensure_include(conf: &Path, file: &Path) -> Result<(), String> {
    let line = format!("include = {}", file.display());
    let text = match std::fs::read_to_string(conf) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", conf.display())),
    };
    if text.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    let mut new = text;
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(&format!(
        "\n# Shares of Cairn volumes (smb.enable), managed by cairnd.\n{line}\n"
    ));
    write_atomic(conf, &new)
}

fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("cairn-tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A Samba program: on `PATH`, else in `/usr/sbin` or `/usr/bin` (daemons are often started
/// with a `PATH` without `sbin`).
fn samba_tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if on_path {
        return PathBuf::from(name);
    }
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Makes `smbd` load the configuration: reloads the running one, or starts one.
fn reload_smbd(conf: &Path) -> Result<(), String> {
    let reloaded = run(Command::new(samba_tool("smbcontrol"))
        .arg("--configfile")
        .arg(conf)
        .args(["smbd", "reload-config"]));
    if reloaded.is_ok() {
        return Ok(());
    }
    tracing::info!(conf = %conf.display(), "no smbd answers; starting one");
    // smbd puts itself in the background once it is listening.
    run(Command::new(samba_tool("smbd"))
        .arg("--configfile")
        .arg(conf))
}

impl Daemon {
    /// Keeps this node's shares in line with the configuration.
    pub async fn smb_shares(self: Arc<Self>) {
        let mut version = self.watch_version();
        let mut last_text: Option<String> = None;
        loop {
            let me = Arc::clone(&self);
            let prev = last_text.clone();
            match tokio::task::spawn_blocking(move || me.reconcile_smb(prev)).await {
                Ok(Ok(text)) => last_text = text,
                Ok(Err(e)) => tracing::warn!(error = %e, "SMB shares not in place; retrying"),
                Err(e) => tracing::warn!(error = %e, "SMB reconcile failed"),
            }
            tokio::select! {
                _ = version.changed() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    fn wanted_shares(&self) -> Vec<Share> {
        let Ok(cfg) = self.config() else {
            return Vec::new();
        };
        cfg.volumes
            .iter()
            .filter(|v| v.state == VolumeState::Started && options::flag(&v.options, "smb.enable"))
            .map(|v: &VolumeConfig| {
                let name = options::effective(&v.options, "smb.share-name")
                    .filter(|n| !n.is_empty())
                    .unwrap_or(&v.name)
                    .to_string();
                Share {
                    volume: v.name.clone(),
                    name,
                    mountpoint: self.cfg.smb.mounts.join(&v.name),
                    guest_ok: options::flag(&v.options, "smb.guest-ok"),
                    valid_users: options::effective(&v.options, "smb.valid-users")
                        .unwrap_or("")
                        .to_string(),
                }
            })
            .collect()
    }

    /// One pass: mounts, shares file, smbd. Returns the shares file written (None when no
    /// share is wanted and nothing was ever written).
    fn reconcile_smb(&self, last: Option<String>) -> Result<Option<String>, String> {
        let paths = &self.cfg.smb;
        let shares = self.wanted_shares();
        let file = paths.shares_file();
        if shares.is_empty() && last.is_none() && !file.exists() {
            return Ok(None);
        }
        // Mounts first: a share must never point at an empty directory.
        let mut ready = Vec::new();
        for s in &shares {
            match self.ensure_mount(s) {
                Ok(()) => ready.push(s.clone()),
                Err(e) => {
                    tracing::warn!(volume = %s.volume, error = %e, "cannot mount the volume for its SMB share")
                }
            }
        }
        let streams = have_streams_xattr();
        if !streams && !ready.is_empty() {
            tracing::warn!(
                "Samba's streams_xattr module is missing (install samba-vfs-modules): shares go without Windows alternate data streams"
            );
        }
        let text = shares_text(&ready, streams);
        let on_disk = std::fs::read_to_string(&file).ok();
        if on_disk.as_deref() != Some(text.as_str()) || last.as_deref() != Some(text.as_str()) {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            write_atomic(&file, &text)?;
            ensure_include(&paths.conf, &file)?;
            reload_smbd(&paths.conf)?;
            tracing::info!(shares = ?ready.iter().map(|s| &s.name).collect::<Vec<_>>(), "SMB shares loaded");
        }
        // Mounts of volumes no longer shared.
        let keep: BTreeSet<&Path> = shares.iter().map(|s| s.mountpoint.as_path()).collect();
        if let Ok(dir) = std::fs::read_dir(&paths.mounts) {
            for e in dir.flatten() {
                let p = e.path();
                if !keep.contains(p.as_path()) && mounted(&p) {
                    tracing::info!(mount = %p.display(), "unmounting a volume no longer shared");
                    if let Err(e) = run(Command::new("umount").arg(&p)) {
                        tracing::warn!(error = %e, "unmount failed; detaching");
                        let _ = run(Command::new("umount").arg("-l").arg(&p));
                    }
                    let _ = std::fs::remove_dir(&p);
                }
            }
        }
        Ok(Some(text))
    }

    /// Mounts the share's volume unless a working mount is there.
    fn ensure_mount(&self, s: &Share) -> Result<(), String> {
        let mp = &s.mountpoint;
        if mounted(mp) {
            match std::fs::metadata(mp) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    // The client behind it died ("transport endpoint is not connected").
                    tracing::warn!(mount = %mp.display(), error = %e, "a share's mount stopped working; mounting again");
                    let _ = run(Command::new("umount").arg("-l").arg(mp));
                }
            }
        }
        std::fs::create_dir_all(mp).map_err(|e| format!("{}: {e}", mp.display()))?;
        let me = self.me()?;
        let log = self.cfg.log_dir.join(format!("smb-{}.log", s.volume));
        run(Command::new(&self.cfg.smb.cairn)
            .arg("mount")
            .arg(format!("{}:{}:/{}", me.host, me.port, s.volume))
            .arg(mp)
            .arg("-o")
            .arg(format!("log-file={}", log.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share() -> Share {
        Share {
            volume: "pacs".into(),
            name: "PACS".into(),
            mountpoint: "/run/cairn/smb/pacs".into(),
            guest_ok: false,
            valid_users: "@radiology, pacs-svc".into(),
        }
    }

    #[test]
    fn a_share_keeps_windows_metadata_and_leaves_oplocks_to_samba() {
        let t = section(&share(), true);
        for line in [
            "[PACS]",
            "path = /run/cairn/smb/pacs",
            "read only = no",
            "guest ok = no",
            "valid users = @radiology, pacs-svc",
            "kernel oplocks = no",
            "ea support = yes",
            "vfs objects = streams_xattr",
            "store dos attributes = yes",
            "strict sync = yes",
        ] {
            assert!(
                t.lines().any(|l| l.trim() == line),
                "missing {line:?} in\n{t}"
            );
        }
        let mut open = share();
        open.valid_users = String::new();
        open.guest_ok = true;
        let t = section(&open, false);
        assert!(!t.contains("valid users"));
        assert!(
            !t.contains("streams_xattr"),
            "no module, no stream support asked"
        );
        assert!(t.contains("guest ok = yes"));
    }

    #[test]
    fn share_names_and_user_lists_are_checked() {
        assert!(check_share_name("PACS-archive_2026").is_ok());
        assert!(check_share_name("pacs$").is_ok());
        assert!(check_share_name("bad name").is_err());
        assert!(check_share_name("a]b").is_err());
        assert!(check_share_name("global").is_err());
        assert!(check_share_name(&"x".repeat(81)).is_err());
        assert!(check_users("").is_ok());
        assert!(check_users("@radiology, pacs-svc DOMAIN\\viewer").is_ok());
        assert!(check_users("a;b").is_err());
        assert!(check_users("@").is_err());
    }

    #[test]
    fn the_include_line_is_added_once() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("smb.conf");
        std::fs::write(&conf, "[global]\n\tworkgroup = HOSPITAL").unwrap();
        let file = dir.path().join(SHARES_FILE);
        ensure_include(&conf, &file).unwrap();
        ensure_include(&conf, &file).unwrap();
        let text = std::fs::read_to_string(&conf).unwrap();
        assert!(text.starts_with("[global]\n\tworkgroup = HOSPITAL\n"));
        assert_eq!(text.matches("include = ").count(), 1, "{text}");
        // No smb.conf at all: one with just the include.
        let bare = dir.path().join("none.conf");
        ensure_include(&bare, &file).unwrap();
        assert!(
            std::fs::read_to_string(&bare)
                .unwrap()
                .contains("include = ")
        );
    }
}
