//! `mount.cairn`: the helper `mount(8)` runs for `mount -t cairn`, fstab lines of type
//! `cairn`, and `mount -a -t cairn`, when `/sbin/mount.cairn` is a link to `cairn`.
//!
//! ```text
//! mount.cairn SPEC DIR [-sfnv] [-N NAMESPACE] [-o OPTIONS] [-t TYPE]
//! ```
//!
//! SPEC is `HOST[:PORT]:/VOL`; the mount is a server-form `cairn mount` in the background
//! with the same `-o` list. `-f` checks everything (options, servers, volfile) and stops
//! short of mounting; `-v` says what is done; `-s` and `-n` are accepted and ignored.
//!
//! Exit codes follow `mount(8)`: 0 mounted, 1 incorrect invocation, 32 mount failure.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use super::Mount;

/// `mount(8)`: incorrect invocation or permissions.
const EXIT_USAGE: u8 = 1;
/// `mount(8)`: mount failure.
const EXIT_FAILED: u8 = 32;

/// The name this program answers to as a mount helper.
pub const NAME: &str = "mount.cairn";

/// The helper's command line.
#[derive(Parser, Debug, PartialEq, Eq)]
#[command(
    name = "mount.cairn",
    about = "Mount a Cairn volume (the mount(8) helper for type cairn)",
    long_about = None,
    disable_version_flag = true
)]
pub struct Helper {
    /// HOST[:PORT]:/VOL
    #[arg(value_name = "SPEC")]
    pub spec: String,
    /// The mount point.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Sloppy: accepted and ignored.
    #[arg(short = 's')]
    pub sloppy: bool,
    /// Fake: check everything, do not mount.
    #[arg(short = 'f')]
    pub fake: bool,
    /// No mtab: accepted and ignored.
    #[arg(short = 'n')]
    pub no_mtab: bool,
    /// Verbose.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// Mount namespace (not supported).
    #[arg(short = 'N', value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Mount options.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// File system type (cairn).
    #[arg(short = 't', value_name = "TYPE")]
    pub fstype: Option<String>,
}

/// True when the program was started as `mount.cairn` (by its link's name).
pub fn invoked_as_helper(argv0: Option<&OsString>) -> bool {
    argv0
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n == NAME))
        .unwrap_or(false)
}

impl Helper {
    /// The equivalent `cairn mount` request (in the background).
    pub fn to_mount(&self) -> Result<Mount, String> {
        if let Some(ns) = &self.namespace {
            return Err(format!(
                "mounting into another namespace (-N {ns}) is not supported"
            ));
        }
        if let Some(t) = &self.fstype
            && !matches!(t.as_str(), "cairn" | "fuse.cairn")
        {
            return Err(format!("-t {t}: this helper mounts type cairn"));
        }
        let m = Mount {
            volfile: None,
            args: vec![PathBuf::from(&self.spec), self.dir.clone()],
            options: self.options.clone(),
            foreground: false,
            log_file: None,
            connect_timeout: 10,
            notify_ready: false,
        };
        m.validate()?;
        Ok(m)
    }
}

/// Runs `mount.cairn` with `args` (argv, its name included).
pub fn main(args: Vec<OsString>, log_level: &str) -> ExitCode {
    let helper = match Helper::try_parse_from(args) {
        Ok(h) => h,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let mount = match helper.to_mount() {
        Ok(m) => m,
        Err(msg) => {
            eprintln!("{NAME}: {msg}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if helper.verbose {
        eprintln!(
            "{NAME}: mounting {} on {}{}{}",
            helper.spec,
            helper.dir.display(),
            if helper.options.is_empty() {
                ""
            } else {
                " with "
            },
            helper.options.join(",")
        );
    }
    let result = if helper.fake {
        mount.check_only()
    } else {
        mount.run(log_level)
    };
    match result {
        Ok(()) => {
            if helper.verbose {
                let done = if helper.fake {
                    "checked (not mounted)"
                } else {
                    "mounted"
                };
                eprintln!(
                    "{NAME}: {} on {}: {done}",
                    helper.spec,
                    helper.dir.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(crate::Failure(msg)) => {
            eprintln!("{NAME}: {msg}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Helper, clap::Error> {
        Helper::try_parse_from(std::iter::once("mount.cairn").chain(args.iter().copied()))
    }

    #[test]
    fn the_helper_is_recognised_by_name() {
        for yes in ["mount.cairn", "/sbin/mount.cairn", "/usr/sbin/mount.cairn"] {
            assert!(invoked_as_helper(Some(&OsString::from(yes))), "{yes}");
        }
        for no in [
            "cairn",
            "/usr/bin/cairn",
            "mount.cairn2",
            "/sbin/mount.cairn/x",
        ] {
            assert!(!invoked_as_helper(Some(&OsString::from(no))), "{no}");
        }
        assert!(!invoked_as_helper(None));
    }

    #[test]
    fn mount8_arguments_parse() {
        // What mount(8) runs for the fstab line
        // `node1:/pacs /mnt/pacs cairn defaults,_netdev,backup-volfile-servers=node2:node3 0 0`.
        let h = parse(&[
            "node1:/pacs",
            "/mnt/pacs",
            "-o",
            "rw,_netdev,backup-volfile-servers=node2:node3",
        ])
        .unwrap();
        assert_eq!(h.spec, "node1:/pacs");
        assert_eq!(h.dir, PathBuf::from("/mnt/pacs"));
        assert_eq!(h.options, ["rw,_netdev,backup-volfile-servers=node2:node3"]);
        let m = h.to_mount().unwrap();
        assert!(m.volfile.is_none() && !m.foreground && !m.notify_ready);
        assert_eq!(
            m.args,
            [PathBuf::from("node1:/pacs"), PathBuf::from("/mnt/pacs")]
        );

        let h = parse(&[
            "node1:/pacs",
            "/mnt/pacs",
            "-sfnv",
            "-t",
            "cairn",
            "-o",
            "ro",
            "-o",
            "log-level=debug",
        ])
        .unwrap();
        assert!(h.sloppy && h.fake && h.no_mtab && h.verbose);
        assert_eq!(h.fstype.as_deref(), Some("cairn"));
        assert_eq!(h.options, ["ro", "log-level=debug"]);
        h.to_mount().unwrap();
        // Options may come before the positional arguments too.
        let h = parse(&["-o", "defaults", "node1:/pacs", "/mnt/pacs"]).unwrap();
        assert_eq!(h.spec, "node1:/pacs");
    }

    #[test]
    fn bad_helper_requests_are_refused() {
        let to_mount = |args: &[&str]| parse(args).unwrap().to_mount().unwrap_err();
        let e = to_mount(&["node1:/pacs", "/mnt/pacs", "-o", "defaults,noatime"]);
        assert!(e.contains("'noatime'"), "{e}");
        let e = to_mount(&["node1:/pacs", "/mnt/pacs", "-N", "/proc/1/ns/mnt"]);
        assert!(e.contains("namespace"), "{e}");
        let e = to_mount(&["node1:/pacs", "/mnt/pacs", "-t", "nfs"]);
        assert!(e.contains("type cairn"), "{e}");
        let e = to_mount(&["/dev/sdb1", "/mnt/pacs"]);
        assert!(e.contains("HOST[:PORT]:/VOLUME"), "{e}");
        parse(&["node1:/pacs", "/mnt/pacs", "-t", "fuse.cairn"])
            .unwrap()
            .to_mount()
            .unwrap();
        assert!(parse(&["node1:/pacs"]).is_err());
        assert!(parse(&["node1:/pacs", "/mnt", "-x"]).is_err());
    }
}
