//! `cairn mount --volfile FILE MOUNTPOINT`: serve a volume's client graph through FUSE.
//!
//! Everything that can be checked without the network is checked first, in the foreground:
//! the mount point, the `-o` options, and the volfile (parsed, validated and built, so a
//! malformed volfile is reported with the node and key at fault). Then:
//!
//! - without `--foreground`, the command starts itself again with `--foreground
//!   --notify-ready` in its own process group, waits for that child to print `ready` (or
//!   to fail), and exits, leaving the child serving the mount;
//! - with `--foreground`, it starts the graph, waits for a brick to answer, mounts, and
//!   serves until SIGTERM/SIGINT (then it unmounts cleanly) or until someone runs `umount`.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use cairn_fuse::{MountHandle, MountOptions, Unmounter};
use cairn_translators::{Event, Graph, Registry};
use cairn_volfiles::{Role, Volfile, VolfileError};
use tokio::runtime::Runtime;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Notify;

use crate::Failure;
use crate::logging::{self, LogTarget};

/// Where background mounts log by default.
const LOG_DIR: &str = "/var/log/cairn";
/// How much longer than `--connect-timeout` the parent waits for `ready`.
const STARTUP_GRACE: Duration = Duration::from_secs(15);
/// Unmount attempts while the mount is busy, before detaching it lazily.
const UNMOUNT_ATTEMPTS: u32 = 5;
/// How long to wait for the FUSE session to end after unmounting.
const SESSION_END_WAIT: Duration = Duration::from_secs(5);
/// The line the foreground process prints when the mount is up.
const READY: &str = "ready";

/// Arguments of `cairn mount`.
#[derive(clap::Args, Debug)]
pub struct Mount {
    /// The volume's client volfile (YAML, `role: client`).
    #[arg(long, value_name = "FILE")]
    pub volfile: PathBuf,

    /// The directory to mount the volume on.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,

    /// Mount options, comma-separated; may be repeated: entry-timeout=SECS,
    /// attribute-timeout=SECS, negative-timeout=SECS, fuse-threads=N, max-background=N,
    /// max-write=SIZE, ro, rw.
    #[arg(short = 'o', value_name = "OPTS", value_parser = parse_options)]
    pub options: Vec<String>,

    /// Serve the mount from this process instead of a background one.
    #[arg(long)]
    pub foreground: bool,

    /// Write the log here (default for background mounts:
    /// /var/log/cairn/mnt-<mount point with / replaced by ->.log; foreground: stderr).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Seconds to wait for a brick of the volume to answer before giving up.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub connect_timeout: u64,

    /// Print "ready" on stdout once mounted (used by the background launcher).
    #[arg(long, hide = true)]
    pub notify_ready: bool,
}

/// Checks one `-o` list (clap value parser), so bad options are argument errors (exit 2).
fn parse_options(list: &str) -> Result<String, String> {
    MountOptions::default().parse_list(list)?;
    Ok(list.to_string())
}

/// What the checks before mounting produced.
struct Checked {
    volfile: Volfile,
    mountpoint: PathBuf,
    opts: MountOptions,
}

impl Mount {
    /// Runs the command.
    pub fn run(self, log_level: &str) -> Result<(), Failure> {
        let checked = self.check()?;
        if self.foreground {
            self.serve(log_level, checked)
        } else {
            self.launch(log_level, &checked)
        }
    }

    /// The checks that need no network: mount point, options, volfile.
    fn check(&self) -> Result<Checked, Failure> {
        let mountpoint = check_mountpoint(&self.mountpoint)?;
        let volfile = load_volfile(&self.volfile)?;
        let mut opts = MountOptions {
            fsname: format!("cairn:{}", volfile.volume),
            ..MountOptions::default()
        };
        for list in &self.options {
            opts.parse_list(list)?;
        }
        Ok(Checked {
            volfile,
            mountpoint,
            opts,
        })
    }

    // ----- background: start a foreground child and wait for it -----

    /// Starts `cairn mount --foreground --notify-ready ...` and waits for its verdict.
    fn launch(&self, log_level: &str, checked: &Checked) -> Result<(), Failure> {
        let log_file = match &self.log_file {
            Some(f) => Some(f.clone()),
            None => {
                let f = default_log_file(&checked.mountpoint);
                // If the default cannot be used, the child logs to stderr, which this
                // process shows if the mount fails.
                logging::open_log_file(&f).ok().map(|_| f)
            }
        };
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find the cairn executable to start: {e}"))?;
        let mut child = Command::new(exe)
            .args(self.child_args(log_level, log_file.as_deref()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the mount process: {e}"))?;

        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(Some(line)).is_err() {
                        break;
                    }
                }
                let _ = tx.send(None);
            });
        }
        drop(tx);
        let stderr = child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                text
            })
        });

        let limit = Duration::from_secs(self.connect_timeout) + STARTUP_GRACE;
        let verdict = rx.recv_timeout(limit);
        if let Ok(Some(line)) = &verdict
            && line.trim() == READY
        {
            return Ok(());
        }
        // Anything but "ready": make sure the child is gone, then show what it said.
        stop_child(&mut child);
        let said = stderr
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
            .trim()
            .to_string();
        let mut msg = match verdict {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                format!("the mount did not come up within {} s", limit.as_secs())
            }
            Ok(Some(line)) => format!("the mount process said {line:?}"),
            _ => "the mount process exited before the mount was ready".to_string(),
        };
        if !said.is_empty() {
            // The child's own messages already start with "cairn: ".
            msg = format!("{msg}:\n{said}");
        }
        if let Some(f) = &log_file {
            msg = format!("{msg}\n(log: {})", f.display());
        }
        Err(Failure(msg))
    }

    /// The child's command line: the same request, in the foreground, with `ready`.
    fn child_args(&self, log_level: &str, log_file: Option<&Path>) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--log-level".into(),
            log_level.into(),
            "mount".into(),
            "--foreground".into(),
            "--notify-ready".into(),
            "--volfile".into(),
            absolute(&self.volfile).into(),
            "--connect-timeout".into(),
            self.connect_timeout.to_string().into(),
        ];
        for list in &self.options {
            args.push("-o".into());
            args.push(list.into());
        }
        if let Some(f) = log_file {
            args.push("--log-file".into());
            args.push(absolute(f).into());
        }
        args.push("--".into());
        args.push(absolute(&self.mountpoint).into());
        args
    }

    // ----- foreground: serve the mount -----

    /// Starts the graph, mounts, and serves until a signal or an external unmount.
    fn serve(self, log_level: &str, checked: Checked) -> Result<(), Failure> {
        let log = logging::init(log_level, self.log_file.as_deref());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .thread_name("cairn-worker")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let result = self.serve_on(&rt, &log, checked);
        if let (Err(Failure(msg)), LogTarget::File(_)) = (&result, &log) {
            // On stderr the log would repeat the message main prints.
            tracing::error!("{msg}");
        }
        // The FUSE session thread may still be blocked if files stay open after a lazy
        // detach; exiting closes /dev/fuse, which ends it.
        rt.shutdown_timeout(Duration::from_secs(1));
        result
    }

    fn serve_on(&self, rt: &Runtime, log: &LogTarget, checked: Checked) -> Result<(), Failure> {
        let Checked {
            volfile,
            mountpoint,
            opts,
        } = checked;
        // Signals are caught from here on, so SIGTERM during start-up is a clean abort.
        let mut signals = {
            let _enter = rt.enter();
            Signals::new()?
        };
        let graph = Graph::from_volfile(&volfile, &registry())
            .map_err(|e| format!("volfile {}: {e}", self.volfile.display()))?;
        let up = Arc::new(Notify::new());
        let graph = Running {
            graph,
            stopping: Arc::new(AtomicBool::new(false)),
        };
        {
            let up = Arc::clone(&up);
            let stopping = Arc::clone(&graph.stopping);
            graph.graph.on_event(move |event| match event {
                Event::ChildUp { origin } => {
                    tracing::info!(%origin, "brick connection up");
                    up.notify_one();
                }
                Event::ChildDown { origin, reason } if stopping.load(Ordering::Relaxed) => {
                    tracing::info!(%origin, %reason, "brick connection closed");
                }
                Event::ChildDown { origin, reason } => {
                    tracing::warn!(%origin, %reason, "brick connection down");
                }
            });
        }
        tracing::info!(
            volume = %graph.graph.volume(),
            mountpoint = %mountpoint.display(),
            "starting the client graph"
        );
        rt.block_on(graph.graph.start())
            .map_err(|e| format!("cannot start the client graph: {e}"))?;

        let timeout = Duration::from_secs(self.connect_timeout);
        let reached = rt.block_on(async {
            let deadline = tokio::time::Instant::now() + timeout;
            while !graph.graph.top().is_up() {
                tokio::select! {
                    _ = up.notified() => {}
                    _ = tokio::time::sleep_until(deadline) => return Ok(false),
                    sig = signals.recv() => return Err(sig),
                }
            }
            Ok(true)
        });
        match reached {
            Ok(true) => {}
            Ok(false) => {
                rt.block_on(graph.stop());
                return Err(Failure(format!(
                    "cannot reach the volume: no brick answered within {} s (see {log})",
                    timeout.as_secs()
                )));
            }
            Err(sig) => {
                rt.block_on(graph.stop());
                return Err(Failure(format!("interrupted by {sig} before mounting")));
            }
        }

        let handle = cairn_fuse::mount(
            Arc::clone(graph.graph.top()),
            &mountpoint,
            &opts,
            rt.handle().clone(),
        );
        let handle = match handle {
            Ok(h) => h,
            Err(e) => {
                rt.block_on(graph.stop());
                return Err(Failure(e.to_string()));
            }
        };
        let unmounter = handle.unmounter();

        if self.notify_ready && !notify_ready() {
            // Nobody waits for us any more: do not leave a mount nobody asked for.
            tracing::warn!("the launching process is gone; unmounting");
            let result = rt.block_on(finish(handle, unmounter, &graph, None));
            return result.and(Err(Failure("the launching process went away".into())));
        }
        tracing::info!("serving {} on {}", opts.fsname, mountpoint.display());
        rt.block_on(finish(handle, unmounter, &graph, Some(&mut signals)))
    }
}

/// A started graph, and whether it is being stopped on purpose (brick disconnections are
/// then expected, not warnings).
struct Running {
    graph: Graph,
    stopping: Arc<AtomicBool>,
}

impl Running {
    async fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.graph.stop().await;
    }
}

/// Waits for the session to end by itself or for a signal (then unmounts), and stops the
/// graph. With `signals` `None`, unmounts at once.
async fn finish(
    handle: MountHandle,
    unmounter: Unmounter,
    graph: &Running,
    signals: Option<&mut Signals>,
) -> Result<(), Failure> {
    let mut session = tokio::task::spawn_blocking(move || handle.join());
    let ended = match signals {
        Some(signals) => tokio::select! {
            r = &mut session => Some(r),
            sig = signals.recv() => {
                tracing::info!("{sig}: unmounting");
                None
            }
        },
        None => None,
    };
    let result = match ended {
        Some(r) => {
            tracing::info!("the file system was unmounted");
            flatten(r)
        }
        None => {
            unmount(&unmounter).await;
            match tokio::time::timeout(SESSION_END_WAIT, &mut session).await {
                Ok(r) => flatten(r),
                Err(_) => {
                    tracing::warn!(
                        "files are still open on the detached mount; they lose it when this \
                         process exits"
                    );
                    Ok(())
                }
            }
        }
    };
    graph.stop().await;
    result
}

/// The session thread's result as a command result.
fn flatten(r: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), Failure> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure(format!("the FUSE session failed: {e}"))),
        Err(e) => Err(Failure(format!("the FUSE session failed: {e}"))),
    }
}

/// Unmounts, retrying while busy, and detaches lazily as a last resort, so that no mount is
/// left behind.
async fn unmount(unmounter: &Unmounter) {
    let where_ = unmounter.mountpoint().display().to_string();
    for attempt in 1..=UNMOUNT_ATTEMPTS {
        let u = unmounter.clone();
        match tokio::task::spawn_blocking(move || u.unmount()).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) if e.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32) => {
                tracing::warn!("{where_} is busy (attempt {attempt}/{UNMOUNT_ATTEMPTS})");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Ok(Err(e)) => {
                tracing::warn!("cannot unmount {where_}: {e}");
                break;
            }
            Err(e) => {
                tracing::warn!("unmount task failed: {e}");
                break;
            }
        }
    }
    tracing::warn!("detaching {where_} lazily");
    let u = unmounter.clone();
    match tokio::task::spawn_blocking(move || u.detach()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("cannot detach {where_}: {e}"),
        Err(e) => tracing::error!("detach task failed: {e}"),
    }
}

/// Prints the ready line for the launcher and points stdout/stderr at /dev/null (the
/// launcher stops reading them when it exits). False if the launcher is gone.
fn notify_ready() -> bool {
    let mut out = std::io::stdout();
    let sent = writeln!(out, "{READY}").and_then(|()| out.flush()).is_ok();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    sent
}

/// SIGTERM and SIGINT.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> Result<Signals, Failure> {
        let install = |kind| signal(kind).map_err(|e| format!("cannot catch signals: {e}"));
        Ok(Signals {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
        })
    }

    /// The name of the next signal received.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Asks a child to stop, then kills it if it does not, and reaps it.
fn stop_child(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The translator types a client process knows.
fn registry() -> Registry {
    Registry::builtin()
}

/// Reads a volfile and checks it is a valid client graph (it is built, then dropped).
fn load_volfile(path: &Path) -> Result<Volfile, Failure> {
    let vf = cairn_volfiles::read_file(path).map_err(|e| match e {
        VolfileError::Io { .. } => format!("cannot read the volfile {e}"),
        e => format!("volfile {}: {e}", path.display()),
    })?;
    if vf.role != Role::Client {
        return Err(Failure(format!(
            "volfile {} describes a {} graph; cairn mount needs a client volfile (role: client)",
            path.display(),
            vf.role
        )));
    }
    Graph::from_volfile(&vf, &registry())
        .map_err(|e| format!("volfile {}: {e}", path.display()))?;
    Ok(vf)
}

/// Checks that the mount point is an existing directory without a Cairn mount on it, and
/// returns its canonical path.
fn check_mountpoint(mp: &Path) -> Result<PathBuf, Failure> {
    if let Ok(Some(source)) = cairn_fuse::mounted_at(mp) {
        return Err(Failure(format!(
            "{} is already a Cairn mount ({source}); unmount it first",
            mp.display()
        )));
    }
    let md = std::fs::metadata(mp).map_err(|e| {
        if e.raw_os_error() == Some(nix::errno::Errno::ENOTCONN as i32) {
            format!(
                "{}: a dead FUSE mount is in the way (transport endpoint is not connected); \
                 remove it with `umount -l {}`",
                mp.display(),
                mp.display()
            )
        } else if e.kind() == std::io::ErrorKind::NotFound {
            format!("mount point {} does not exist", mp.display())
        } else {
            format!("mount point {}: {e}", mp.display())
        }
    })?;
    if !md.is_dir() {
        return Err(Failure(format!(
            "mount point {} is not a directory",
            mp.display()
        )));
    }
    mp.canonicalize()
        .map_err(|e| Failure(format!("mount point {}: {e}", mp.display())))
}

/// `/var/log/cairn/mnt-<path>.log`, the path's `/` turned into `-` (leading one dropped):
/// `/mnt/pacs` logs to `/var/log/cairn/mnt-mnt-pacs.log`.
fn default_log_file(mountpoint: &Path) -> PathBuf {
    let text = mountpoint.to_string_lossy();
    let flat = text.trim_start_matches('/').replace('/', "-");
    PathBuf::from(LOG_DIR).join(format!("mnt-{flat}.log"))
}

/// An absolute form of `p` (relative to the current directory), unchanged on error.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command as Verb};

    fn parse(args: &[&str]) -> Result<Mount, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("cairn").chain(args.iter().copied()))?;
        match cli.command {
            Verb::Mount(m) => Ok(m),
        }
    }

    const CLIENT: &str = "\
version: 1
volume: pacs
role: client
top: pacs-io-stats
graph:
  - name: pacs-client-0
    type: protocol/client
    options:
      remote-host: 127.0.0.1
      remote-port: 24010
  - name: pacs-io-stats
    type: debug/io-stats
    subvolumes: [pacs-client-0]
";

    #[test]
    fn arguments_parse_with_defaults() {
        let m = parse(&["mount", "--volfile", "v.yaml", "/mnt/pacs"]).unwrap();
        assert_eq!(m.volfile, Path::new("v.yaml"));
        assert_eq!(m.mountpoint, Path::new("/mnt/pacs"));
        assert_eq!(m.connect_timeout, 10);
        assert!(!m.foreground && !m.notify_ready);
        assert!(m.options.is_empty() && m.log_file.is_none());
        let m = parse(&[
            "--log-level",
            "debug",
            "mount",
            "/mnt/x",
            "--volfile",
            "v.yaml",
            "-o",
            "ro,entry-timeout=2",
            "-o",
            "fuse-threads=2",
            "--foreground",
            "--connect-timeout",
            "3",
        ])
        .unwrap();
        assert_eq!(m.options, ["ro,entry-timeout=2", "fuse-threads=2"]);
        assert!(m.foreground);
        assert_eq!(m.connect_timeout, 3);
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &["mount", "/mnt/x"][..],
            &["mount", "--volfile", "v.yaml"],
            &["mount", "--volfile", "v.yaml", "/mnt/x", "-o", "bogus"],
            &[
                "mount",
                "--volfile",
                "v.yaml",
                "/mnt/x",
                "--connect-timeout",
                "0",
            ],
            &[
                "--log-level",
                "[[",
                "mount",
                "--volfile",
                "v.yaml",
                "/mnt/x",
            ],
            &["frobnicate"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn the_child_gets_the_same_request_in_the_foreground() {
        let m = parse(&[
            "mount",
            "--volfile",
            "/etc/cairn/pacs.yaml",
            "-o",
            "ro",
            "--connect-timeout",
            "7",
            "/mnt/pacs",
        ])
        .unwrap();
        let args = m.child_args("warn", Some(Path::new("/var/log/cairn/x.log")));
        let cli =
            Cli::try_parse_from(std::iter::once(OsString::from("cairn")).chain(args)).unwrap();
        assert_eq!(cli.log_level, "warn");
        let Verb::Mount(child) = cli.command;
        assert!(child.foreground && child.notify_ready);
        assert_eq!(child.volfile, Path::new("/etc/cairn/pacs.yaml"));
        assert_eq!(child.mountpoint, Path::new("/mnt/pacs"));
        assert_eq!(child.options, ["ro"]);
        assert_eq!(child.connect_timeout, 7);
        assert_eq!(
            child.log_file.as_deref(),
            Some(Path::new("/var/log/cairn/x.log"))
        );
        // A mount point that looks like a flag still arrives as the mount point.
        let m = parse(&["mount", "--volfile", "v.yaml", "--", "-odd"]).unwrap();
        let args = m.child_args("info", None);
        let Verb::Mount(child) =
            Cli::try_parse_from(std::iter::once(OsString::from("cairn")).chain(args))
                .unwrap()
                .command;
        assert!(child.mountpoint.ends_with("-odd"));
        assert!(child.mountpoint.is_absolute());
    }

    #[test]
    fn volfiles_are_checked_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("client.yaml");
        std::fs::write(&good, CLIENT).unwrap();
        assert_eq!(load_volfile(&good).unwrap().volume, "pacs");

        let bad_key = dir.path().join("bad-key.yaml");
        std::fs::write(&bad_key, CLIENT.replace("remote-port", "remote-prot")).unwrap();
        let e = load_volfile(&bad_key).unwrap_err().0;
        assert!(
            e.contains("pacs-client-0") && e.contains("remote-prot"),
            "{e}"
        );

        let brick = dir.path().join("brick.yaml");
        std::fs::write(&brick, CLIENT.replace("role: client", "role: brick")).unwrap();
        let e = load_volfile(&brick).unwrap_err().0;
        assert!(e.contains("client volfile"), "{e}");

        let missing = load_volfile(&dir.path().join("nope.yaml")).unwrap_err().0;
        assert!(missing.contains("nope.yaml"), "{missing}");
    }

    #[test]
    fn mount_points_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            check_mountpoint(dir.path()).unwrap(),
            dir.path().canonicalize().unwrap()
        );
        let e = check_mountpoint(&dir.path().join("absent")).unwrap_err().0;
        assert!(e.contains("does not exist"), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let e = check_mountpoint(&file).unwrap_err().0;
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn options_and_fsname_come_from_the_request_and_the_volfile() {
        let dir = tempfile::tempdir().unwrap();
        let vf = dir.path().join("client.yaml");
        std::fs::write(&vf, CLIENT).unwrap();
        let mp = dir.path().to_str().unwrap();
        let m = parse(&["mount", "--volfile", vf.to_str().unwrap(), "-o", "ro", mp]).unwrap();
        let c = m.check().unwrap();
        assert_eq!(c.opts.fsname, "cairn:pacs");
        assert!(c.opts.read_only);
    }

    #[test]
    fn default_log_files_are_named_after_the_mount_point() {
        assert_eq!(
            default_log_file(Path::new("/mnt/pacs")),
            Path::new("/var/log/cairn/mnt-mnt-pacs.log")
        );
        assert_eq!(
            default_log_file(Path::new("/data/a/b")),
            Path::new("/var/log/cairn/mnt-data-a-b.log")
        );
    }
}
