//! The life of a mount: [`mount`] mounts and starts serving, [`MountHandle`] waits for the
//! end, [`Unmounter`] ends it from anywhere (a signal handler task, a test), and
//! [`GraphSwitcher`] replaces the graph it serves without unmounting.
//!
//! The mount goes through `fusermount3` with `auto_unmount`: a helper process that unmounts
//! as soon as this process dies, so a crashed client never leaves a dead mount point
//! ("transport endpoint is not connected") behind. A clean unmount is done by this process
//! itself with `umount(2)` (or `fusermount3 -u` when it lacks the privilege); when the
//! kernel answers `EBUSY` the caller decides whether to retry or to [`Unmounter::detach`].

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

use cairn_translators::Graph;
use fuser::{Config, MountOption, Session, SessionACL};
use nix::mount::MntFlags;
use tokio::runtime::Handle as Runtime;

use crate::fs::CairnFs;
use crate::generation::{GraphSwitcher, Slot};
use crate::options::MountOptions;

/// The FUSE subtype of Cairn mounts.
pub const SUBTYPE: &str = "cairn";

/// The file system type Cairn mounts show in `/proc/mounts` (`fuse.` + [`SUBTYPE`]).
pub const FSTYPE: &str = "fuse.cairn";

/// Mounts `graph` on `mountpoint` and starts serving it.
///
/// `graph` should be started (and normally up) already. The mount owns it from now on:
/// it is stopped, on `rt`, when the mount no longer needs it — after the session has
/// ended, or after a [`GraphSwitcher::switch`] replaced it and its last open file was
/// closed. [`GraphSwitcher::stopped`] waits for that.
///
/// Returns once the kernel has completed the FUSE handshake; requests are then served by
/// `opts.threads` threads, each fop running as a task on `rt`. Blocks briefly (mount and
/// handshake): call it outside async code or from `spawn_blocking`. On error the graph is
/// stopped (asynchronously, on `rt`).
///
/// The kernel checks permissions itself (`default_permissions`) against the attributes the
/// volume reports, every user may use the mount (`allow_other`), and the mount disappears
/// if this process dies (`auto_unmount`).
pub fn mount(
    graph: Graph,
    mountpoint: &Path,
    opts: &MountOptions,
    rt: Runtime,
) -> io::Result<MountHandle> {
    let slot = Slot::new(graph, rt.clone());
    let switcher = slot.switcher();
    check_fsname(&opts.fsname)?;
    let mountpoint = mountpoint.canonicalize().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("mount point {}: {e}", mountpoint.display()),
        )
    })?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype(SUBTYPE.to_string()),
        MountOption::DefaultPermissions,
        MountOption::AutoUnmount,
        if opts.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    config.acl = SessionACL::All;
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    let fs = CairnFs::new(slot, opts.clone(), rt);
    let session = Session::new(fs, &mountpoint, &config).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot mount on {}: {e}", mountpoint.display()),
        )
    })?;
    tracing::info!(mountpoint = %mountpoint.display(), fsname = %opts.fsname, "mounted");
    let session = std::thread::Builder::new()
        .name("cairn-fuse".to_string())
        .spawn(move || session.run())?;
    Ok(MountHandle {
        mountpoint,
        session,
        switcher,
    })
}

/// The fsname ends up in a comma-separated option list and in `/proc/mounts`.
fn check_fsname(name: &str) -> io::Result<()> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c == ',' || c.is_whitespace() || c.is_control())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "fsname {name:?} must be non-empty, without commas, blanks or control characters"
            ),
        ));
    }
    Ok(())
}

/// A running mount.
///
/// Dropping the handle does not unmount: the session keeps serving until it is unmounted
/// (by an [`Unmounter`] or by `umount`) or the process exits.
#[derive(Debug)]
pub struct MountHandle {
    mountpoint: PathBuf,
    session: JoinHandle<io::Result<()>>,
    switcher: GraphSwitcher,
}

impl MountHandle {
    /// The mount point (canonical path).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Something that unmounts this mount, callable from any thread or task.
    pub fn unmounter(&self) -> Unmounter {
        Unmounter {
            mountpoint: self.mountpoint.clone(),
        }
    }

    /// Something that replaces the graph this mount serves, callable from any thread or
    /// task, and that tells how many graph generations are still alive.
    pub fn switcher(&self) -> GraphSwitcher {
        self.switcher.clone()
    }

    /// True once the session has ended.
    pub fn is_finished(&self) -> bool {
        self.session.is_finished()
    }

    /// Blocks until the session ends: after an [`Unmounter`] or an external `umount`.
    pub fn join(self) -> io::Result<()> {
        let result = self
            .session
            .join()
            .map_err(|_| io::Error::other("the FUSE session thread panicked"))?;
        match result {
            // The kernel tore the connection down (after a lazy detach, or an abort through
            // /sys/fs/fuse/connections): the mount is gone, which is how a session ends.
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
                tracing::debug!("the FUSE connection was aborted");
                Ok(())
            }
            other => other,
        }
    }

    /// Unmounts (see [`Unmounter::unmount`]) and waits for the session to end.
    pub fn unmount_and_join(self) -> io::Result<()> {
        self.unmounter().unmount()?;
        self.join()
    }
}

/// Unmounts one mount. Cheap to clone and `Send`, for signal-handling tasks.
#[derive(Clone, Debug)]
pub struct Unmounter {
    mountpoint: PathBuf,
}

impl Unmounter {
    /// The mount point this unmounts.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts now. Succeeds at once if the mount point no longer carries a Cairn mount
    /// (someone ran `umount`). Fails with `EBUSY` (`ErrorKind::ResourceBusy`) while files
    /// are open or a process has its working directory inside; the caller may retry or
    /// [`detach`](Self::detach).
    pub fn unmount(&self) -> io::Result<()> {
        self.umount(false)
    }

    /// Detaches the mount lazily (`MNT_DETACH`): it disappears from the namespace at once
    /// and the kernel lets go when the last open file is closed. Use when
    /// [`unmount`](Self::unmount) keeps failing with `EBUSY`.
    pub fn detach(&self) -> io::Result<()> {
        self.umount(true)
    }

    fn umount(&self, lazy: bool) -> io::Result<()> {
        // The stored path is canonical already; resolving it again would stat the mount
        // root, a request to the very file system being unmounted.
        if cairn_source_at(&self.mountpoint)?.is_none() {
            return Ok(());
        }
        let flags = if lazy {
            MntFlags::MNT_DETACH
        } else {
            MntFlags::empty()
        };
        match nix::mount::umount2(&self.mountpoint, flags) {
            Ok(()) => Ok(()),
            // Not privileged: the setuid helper may unmount what the user mounted.
            Err(nix::errno::Errno::EPERM) => fusermount_unmount(&self.mountpoint, lazy),
            // The raw errno is kept (callers test for EBUSY); they add the path.
            Err(e) => Err(io::Error::from(e)),
        }
        .map(|()| tracing::info!(mountpoint = %self.mountpoint.display(), lazy, "unmounted"))
    }
}

/// `fusermount3 -u [-z] MOUNTPOINT`.
fn fusermount_unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let mut cmd = Command::new("fusermount3");
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd
        .arg("--")
        .arg(mountpoint)
        .stdin(Stdio::null())
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if msg.to_ascii_lowercase().contains("busy") {
        tracing::debug!("{msg}");
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    Err(io::Error::other(if msg.is_empty() {
        format!("fusermount3 -u {} failed", mountpoint.display())
    } else {
        msg
    }))
}

/// The source name (for example `cairn:pacs`) of the Cairn mount on top of `path`, or
/// `None` when the top-most mount there is not a Cairn mount (or there is none).
///
/// Works on a dead mount point too: it reads `/proc/self/mountinfo` and does not need to
/// `stat` the path's last component.
pub fn mounted_at(path: &Path) -> io::Result<Option<String>> {
    let path = match path.canonicalize() {
        Ok(p) => p,
        // A dead FUSE mount cannot be stat'ed (ENOTCONN); the absolute path still names it.
        Err(_) => std::path::absolute(path)?,
    };
    cairn_source_at(&path)
}

/// [`mounted_at`] for a path that is already absolute and free of symlinks and `..`.
fn cairn_source_at(path: &Path) -> io::Result<Option<String>> {
    let info = std::fs::read("/proc/self/mountinfo")?;
    Ok(top_mount(&info, path.as_os_str().as_bytes())
        .filter(|m| m.fstype == FSTYPE.as_bytes())
        .map(|m| String::from_utf8_lossy(&m.source).into_owned()))
}

/// One line of `/proc/self/mountinfo`, unescaped.
#[derive(Debug, PartialEq, Eq)]
struct MountLine {
    mountpoint: Vec<u8>,
    fstype: Vec<u8>,
    source: Vec<u8>,
}

/// The last (top-most) mount on `path` in a mountinfo text.
fn top_mount(info: &[u8], path: &[u8]) -> Option<MountLine> {
    info.split(|b| *b == b'\n')
        .filter_map(parse_mountinfo_line)
        .rfind(|m| m.mountpoint == path)
}

/// Fields: id, parent, dev, root, mount point, options, optional fields…, "-", fstype,
/// source, super options.
fn parse_mountinfo_line(line: &[u8]) -> Option<MountLine> {
    let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    let mountpoint = unescape(fields.get(4)?);
    let dash = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
    Some(MountLine {
        mountpoint,
        fstype: unescape(fields.get(dash + 1)?),
        source: unescape(fields.get(dash + 2)?),
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space, ...).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 4 <= field.len() {
            let digits = &field[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 25 0:40 / /mnt/pacs rw,nosuid,nodev,relatime shared:20 - fuse.cairn cairn:pacs rw,user_id=0,group_id=0,default_permissions,allow_other
41 25 0:41 / /mnt/my\\040dir rw,relatime - fuse.cairn cairn:x rw
42 25 0:42 / /mnt/over rw,relatime - fuse.cairn cairn:under rw
43 42 0:43 / /mnt/over rw,relatime - tmpfs tmpfs rw
";

    #[test]
    fn mountinfo_finds_the_top_mount() {
        let m = top_mount(INFO.as_bytes(), b"/mnt/pacs").unwrap();
        assert_eq!(m.fstype, b"fuse.cairn");
        assert_eq!(m.source, b"cairn:pacs");
        let spaced = top_mount(INFO.as_bytes(), b"/mnt/my dir").unwrap();
        assert_eq!(spaced.source, b"cairn:x");
        let over = top_mount(INFO.as_bytes(), b"/mnt/over").unwrap();
        assert_eq!(
            over.fstype, b"tmpfs",
            "the last line for a path is the top mount"
        );
        assert!(top_mount(INFO.as_bytes(), b"/mnt").is_none());
        assert!(parse_mountinfo_line(b"garbage").is_none());
        assert!(parse_mountinfo_line(b"").is_none());
    }

    #[test]
    fn escapes_are_undone() {
        assert_eq!(unescape(b"a\\040b\\134c"), b"a b\\c");
        assert_eq!(unescape(b"trailing\\04"), b"trailing\\04");
        assert_eq!(unescape(b"not\\999octal"), b"not\\999octal");
        assert_eq!(unescape(b"\\"), b"\\");
    }

    #[test]
    fn fsnames_that_break_option_lists_are_refused() {
        check_fsname("cairn:pacs").unwrap();
        for bad in ["", "a,b", "a b", "a\nb"] {
            assert!(check_fsname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_plain_directory_is_not_a_cairn_mount() {
        let dir = std::env::temp_dir();
        assert_eq!(mounted_at(&dir).unwrap(), None);
        let unmounter = Unmounter {
            mountpoint: dir.clone(),
        };
        unmounter.unmount().unwrap();
        assert_eq!(unmounter.mountpoint(), dir);
    }
}
