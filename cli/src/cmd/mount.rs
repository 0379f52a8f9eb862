//! `cairn mount HOST[:PORT]:/VOL MOUNTPOINT` and `cairn mount --volfile FILE MOUNTPOINT`:
//! serve a volume's client graph through FUSE.
//!
//! Everything is checked first, in the foreground: the mount point, the `-o` options, and
//! the volfile — fetched from the first volfile server that answers (`HOST`, then the
//! `backup-volfile-servers`), or read from `FILE` — parsed, validated and built, so a
//! malformed volfile is reported with the node and key at fault. Then:
//!
//! - without `--foreground`, the command starts itself again with `--foreground
//!   --notify-ready` in its own process group, waits for that child to print `ready` (or
//!   to fail), and exits, leaving the child serving the mount;
//! - with `--foreground`, it starts the graph, waits for a brick to answer, mounts, and
//!   serves until SIGTERM/SIGINT (then it unmounts cleanly) or until someone runs `umount`.
//!   A mount from a server also watches the volfile ([`watch`]) and switches to each new
//!   client graph without unmounting.
//!
//! Submodules: [`spec`] (`HOST:/VOL`, `-o` lists), [`watch`] (fetching and watching the
//! volfile), [`helper`] (`mount.cairn`, the `mount -t cairn` / fstab entry point).

pub mod helper;
pub mod spec;
pub mod watch;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use cairn_fuse::{GraphSwitcher, MountHandle, MountOptions, Unmounter};
use cairn_translators::{Event, Graph, Registry};
use cairn_volfiles::{Role, Volfile, VolfileError};
use tokio::runtime::Runtime;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::spec::{Extra, VolumeSpec};
use self::watch::{Fetched, Watcher};
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
/// How long to wait for the graphs to stop once the session has ended.
const GRAPH_STOP_WAIT: Duration = Duration::from_secs(5);

/// The usage line of `cairn mount`.
const USAGE: &str = "cairn mount HOST[:PORT]:/VOL MOUNTPOINT [-o OPTS] [--foreground]\n       \
                     cairn mount --volfile FILE MOUNTPOINT [-o OPTS] [--foreground]";

/// Arguments of `cairn mount`.
#[derive(clap::Args, Debug)]
#[command(override_usage = USAGE)]
pub struct Mount {
    /// Read the volume's client volfile (YAML, `role: client`) from FILE instead of
    /// fetching it from a server; then give only the mount point.
    #[arg(long, value_name = "FILE")]
    pub volfile: Option<PathBuf>,

    /// `HOST[:PORT]:/VOL MOUNTPOINT`: the volfile server and volume, and the directory to
    /// mount on (only MOUNTPOINT with --volfile).
    #[arg(value_name = "HOST:/VOL MOUNTPOINT", required = true, num_args = 1..=2)]
    pub args: Vec<PathBuf>,

    /// Mount options, comma-separated; may be repeated: entry-timeout=SECS,
    /// attribute-timeout=SECS, negative-timeout=SECS, fuse-threads=N, max-background=N,
    /// max-write=SIZE, ro, rw; backup-volfile-servers=HOST2:HOST3, volfile-server-port=PORT
    /// (server form only); log-file=PATH, log-level=LEVEL; and, ignored, the standard
    /// defaults, _netdev, auto, noauto, nofail, user, nouser, users, x-*, comment=*.
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
    spec::apply_list(list, &mut MountOptions::default(), &mut Extra::default())?;
    Ok(list.to_string())
}

/// Where the volfile comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    /// `--volfile FILE`.
    File(PathBuf),
    /// `HOST[:PORT]:/VOL`, as typed (it becomes the mount's source name) and parsed.
    Server { typed: String, spec: VolumeSpec },
}

/// The request, sorted out: source, mount point, options.
#[derive(Debug)]
struct Request {
    source: Source,
    mountpoint: PathBuf,
    fuse: MountOptions,
    extra: Extra,
}

/// What the checks before mounting produced.
struct Checked {
    volfile: Volfile,
    /// For a server-form mount: the servers and what the first answer was.
    served: Option<(Vec<String>, Fetched)>,
    mountpoint: PathBuf,
    opts: MountOptions,
}

impl Mount {
    /// Runs the command.
    pub fn run(self, log_level: &str) -> Result<(), Failure> {
        let checked = self.check()?;
        let log_level = self.log_level(log_level)?;
        if self.foreground {
            self.serve(&log_level, checked)
        } else {
            self.launch(&log_level, &checked)
        }
    }

    /// Runs every check (`mount.cairn -f`): arguments, options, mount point, volfile
    /// servers and volfile; mounts nothing.
    pub fn check_only(&self) -> Result<(), Failure> {
        self.check().map(|_| ())
    }

    /// Checks the argument combination and the options (exit 2 when wrong).
    pub fn validate(&self) -> Result<(), String> {
        self.request().map(|_| ())
    }

    /// Sorts out the arguments: exactly one of `--volfile FILE MOUNTPOINT` and
    /// `HOST:/VOL MOUNTPOINT`.
    fn request(&self) -> Result<Request, String> {
        let (source, mountpoint) = match (&self.volfile, self.args.as_slice()) {
            (Some(file), [mp]) => (Source::File(file.clone()), mp.clone()),
            (None, [spec, mp]) => {
                let typed = spec
                    .to_str()
                    .ok_or_else(|| format!("{}: not valid UTF-8", spec.display()))?
                    .to_string();
                let spec = VolumeSpec::parse(&typed)?;
                (Source::Server { typed, spec }, mp.clone())
            }
            (Some(_), [_, _]) => {
                return Err(
                    "give either --volfile FILE MOUNTPOINT or HOST:/VOL MOUNTPOINT, not both"
                        .to_string(),
                );
            }
            (None, [_]) => {
                return Err(
                    "what to mount is missing: HOST:/VOL MOUNTPOINT (or --volfile FILE \
                     MOUNTPOINT)"
                        .to_string(),
                );
            }
            _ => return Err(format!("usage: {USAGE}")),
        };
        let mut fuse = MountOptions::default();
        let mut extra = Extra::default();
        for list in &self.options {
            spec::apply_list(list, &mut fuse, &mut extra)?;
        }
        if matches!(source, Source::File(_)) && extra.names_servers() {
            return Err(
                "backup-volfile-servers and volfile-server-port apply to HOST:/VOL mounts, \
                 not to --volfile"
                    .to_string(),
            );
        }
        Ok(Request {
            source,
            mountpoint,
            fuse,
            extra,
        })
    }

    /// `-o log-level=` if given, else the global `--log-level`.
    fn log_level(&self, global: &str) -> Result<String, Failure> {
        Ok(self
            .request()?
            .extra
            .log_level
            .unwrap_or_else(|| global.to_string()))
    }

    /// `-o log-file=` if given, else `--log-file`.
    fn log_file(&self) -> Option<PathBuf> {
        self.request()
            .ok()
            .and_then(|r| r.extra.log_file)
            .or_else(|| self.log_file.clone())
    }

    /// The checks before mounting: mount point, options, and the volfile (fetched from
    /// the servers for the server form), parsed, validated and built.
    fn check(&self) -> Result<Checked, Failure> {
        let Request {
            source,
            mountpoint,
            mut fuse,
            extra,
        } = self.request()?;
        let mountpoint = check_mountpoint(&mountpoint)?;
        match source {
            Source::File(path) => {
                let volfile = load_volfile(&path)?;
                fuse.fsname = format!("cairn:{}", volfile.volume);
                Ok(Checked {
                    volfile,
                    served: None,
                    mountpoint,
                    opts: fuse,
                })
            }
            Source::Server { typed, spec } => {
                let servers = extra.servers(&spec);
                let timeout = Duration::from_secs(self.connect_timeout);
                let fetched = watch::fetch_first_blocking(&servers, &spec.volume, timeout)
                    .map_err(|e| format!("cannot mount {typed}: {e}"))?;
                let what = format!(
                    "the volfile of {} from {}",
                    spec.volume, servers[fetched.server]
                );
                let volfile = parse_client_volfile(&fetched.text, &what, &spec.volume)?;
                fuse.fsname = typed;
                Ok(Checked {
                    volfile,
                    served: Some((servers, fetched)),
                    mountpoint,
                    opts: fuse,
                })
            }
        }
    }

    // ----- background: start a foreground child and wait for it -----

    /// Starts `cairn mount --foreground --notify-ready ...` and waits for its verdict.
    fn launch(&self, log_level: &str, checked: &Checked) -> Result<(), Failure> {
        let log_file = match self.log_file() {
            Some(f) => Some(f),
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

        // The child fetches the volfile again (each unreachable server may take up to the
        // connect timeout), then waits up to the connect timeout for a brick.
        let servers = checked.served.as_ref().map_or(0, |(s, _)| s.len()) as u32;
        let limit = Duration::from_secs(self.connect_timeout) * (1 + servers) + STARTUP_GRACE;
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
            "--connect-timeout".into(),
            self.connect_timeout.to_string().into(),
        ];
        if let Some(volfile) = &self.volfile {
            args.push("--volfile".into());
            args.push(absolute(volfile).into());
        }
        for list in &self.options {
            args.push("-o".into());
            args.push(list.into());
        }
        if let Some(f) = log_file {
            args.push("--log-file".into());
            args.push(absolute(f).into());
        }
        args.push("--".into());
        if let Some((last, first)) = self.args.split_last() {
            // A HOST:/VOL is passed as typed; the mount point made absolute.
            args.extend(first.iter().map(|a| a.clone().into_os_string()));
            args.push(absolute(last).into());
        }
        args
    }

    // ----- foreground: serve the mount -----

    /// Starts the graph, mounts, and serves until a signal or an external unmount.
    fn serve(self, log_level: &str, checked: Checked) -> Result<(), Failure> {
        let log = logging::init(log_level, self.log_file().as_deref());
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
            served,
            mountpoint,
            opts,
        } = checked;
        // Signals are caught from here on, so SIGTERM during start-up is a clean abort.
        let mut signals = {
            let _enter = rt.enter();
            Signals::new()?
        };
        let graph = Graph::from_volfile(&volfile, &registry())
            .map_err(|e| format!("volfile of {}: {e}", volfile.volume))?;
        let up = Arc::new(Notify::new());
        let quiet = Arc::new(AtomicBool::new(false));
        listen(&graph, Arc::clone(&up), Arc::clone(&quiet));
        tracing::info!(
            volume = %graph.volume(),
            mountpoint = %mountpoint.display(),
            version = %watch::version_text(served.as_ref().and_then(|(_, f)| f.version)),
            "starting the client graph"
        );
        rt.block_on(graph.start())
            .map_err(|e| format!("cannot start the client graph: {e}"))?;

        let timeout = Duration::from_secs(self.connect_timeout);
        let reached = rt.block_on(async {
            tokio::select! {
                up = wait_up(&graph, &up, timeout) => Ok(up),
                sig = signals.recv() => Err(sig),
            }
        });
        let abort = |msg: String| {
            quiet.store(true, Ordering::Relaxed);
            rt.block_on(graph.stop());
            Err(Failure(msg))
        };
        match reached {
            Ok(true) => {}
            Ok(false) => {
                return abort(format!(
                    "cannot reach the volume: no brick answered within {} s (see {log})",
                    timeout.as_secs()
                ));
            }
            Err(sig) => return abort(format!("interrupted by {sig} before mounting")),
        }

        // From here on the mount owns the graph and stops it when it is done with it.
        let handle = cairn_fuse::mount(graph, &mountpoint, &opts, rt.handle().clone())
            .map_err(|e| Failure(e.to_string()))?;
        let unmounter = handle.unmounter();
        let switcher = handle.switcher();
        let watch = served.map(|(servers, current)| {
            rt.spawn(
                Watcher {
                    servers,
                    volume: volfile.volume.clone(),
                    current,
                    connect_timeout: timeout,
                    switcher: switcher.clone(),
                }
                .run(),
            )
        });
        let ending = Ending {
            handle,
            unmounter,
            switcher,
            watch,
        };

        if self.notify_ready && !notify_ready() {
            // Nobody waits for us any more: do not leave a mount nobody asked for.
            tracing::warn!("the launching process is gone; unmounting");
            let result = rt.block_on(finish(ending, None));
            return result.and(Err(Failure("the launching process went away".into())));
        }
        tracing::info!("serving {} on {}", opts.fsname, mountpoint.display());
        rt.block_on(finish(ending, Some(&mut signals)))
    }
}

/// Sends the events of a client graph to the log, and wakes `up` when a brick connection
/// comes up. Once `quiet` is set (the graph is being stopped on purpose), disconnections
/// are expected and logged at info.
fn listen(graph: &Graph, up: Arc<Notify>, quiet: Arc<AtomicBool>) {
    graph.on_event(move |event| match event {
        Event::ChildUp { origin } => {
            tracing::info!(%origin, "brick connection up");
            up.notify_one();
        }
        Event::ChildDown { origin, reason } if quiet.load(Ordering::Relaxed) => {
            tracing::info!(%origin, %reason, "brick connection closed");
        }
        Event::ChildDown { origin, reason } => {
            tracing::warn!(%origin, %reason, "brick connection down");
        }
    });
}

/// Waits until the graph's top is up, at most `timeout`. True if it is.
async fn wait_up(graph: &Graph, up: &Notify, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !graph.top().is_up() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::select! {
            _ = up.notified() => {}
            // Also look again now and then, in case a wake-up went to another waiter.
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    true
}

/// What ending a served mount involves.
struct Ending {
    handle: MountHandle,
    unmounter: Unmounter,
    switcher: GraphSwitcher,
    watch: Option<JoinHandle<()>>,
}

/// Waits for the session to end by itself or for a signal (then unmounts), and waits for
/// the graphs to stop. With `signals` `None`, unmounts at once.
async fn finish(ending: Ending, signals: Option<&mut Signals>) -> Result<(), Failure> {
    let Ending {
        handle,
        unmounter,
        switcher,
        watch,
    } = ending;
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
    if let Some(w) = watch {
        w.abort();
    }
    // The session's end dropped the file system, and with it the last graph: wait for it
    // (and any older one still finishing) to stop.
    if tokio::time::timeout(GRAPH_STOP_WAIT, switcher.stopped())
        .await
        .is_err()
    {
        tracing::debug!(
            live = switcher.live_generations(),
            "client graphs still stopping at exit"
        );
    }
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
    check_client_volfile(vf, &format!("volfile {}", path.display()), None)
}

/// Parses a volfile a server sent (`what` names it in messages) and checks it is a valid
/// client graph of `volume`.
fn parse_client_volfile(text: &str, what: &str, volume: &str) -> Result<Volfile, String> {
    let vf = cairn_volfiles::parse(text).map_err(|e| format!("{what}: {e}"))?;
    check_client_volfile(vf, what, Some(volume)).map_err(|Failure(m)| m)
}

/// A client role, the expected volume, and a graph that builds.
fn check_client_volfile(vf: Volfile, what: &str, volume: Option<&str>) -> Result<Volfile, Failure> {
    if vf.role != Role::Client {
        return Err(Failure(format!(
            "{what} describes a {} graph; cairn mount needs a client volfile (role: client)",
            vf.role
        )));
    }
    if let Some(volume) = volume
        && vf.volume != volume
    {
        return Err(Failure(format!(
            "{what} is for volume {}, not {volume}",
            vf.volume
        )));
    }
    Graph::from_volfile(&vf, &registry()).map_err(|e| format!("{what}: {e}"))?;
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
    use std::io::{Read as _, Write as _};

    use super::*;
    use crate::{Command as Verb, parse_args};

    fn parse(args: &[&str]) -> Result<Mount, clap::Error> {
        let cli = parse_args(std::iter::once("cairn").chain(args.iter().copied()))?;
        match cli.command {
            Verb::Mount(m) => Ok(m),
            other => panic!("not a mount: {other:?}"),
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

    /// A volfile server on a thread: answers every request with `status` and `body`.
    fn volfile_server(status: u16, body: &'static str) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nx-cairn-config-version: 3\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn arguments_parse_with_defaults() {
        let m = parse(&["mount", "--volfile", "v.yaml", "/mnt/pacs"]).unwrap();
        assert_eq!(m.volfile.as_deref(), Some(Path::new("v.yaml")));
        assert_eq!(m.args, [PathBuf::from("/mnt/pacs")]);
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
        let m = parse(&["mount", "node1:/pacs", "/mnt/pacs", "-o", "_netdev"]).unwrap();
        assert_eq!(
            m.request().unwrap().source,
            Source::Server {
                typed: "node1:/pacs".into(),
                spec: VolumeSpec::parse("node1:/pacs").unwrap()
            }
        );
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &["mount", "/mnt/x"][..],
            &["mount", "--volfile", "v.yaml"],
            &["mount", "--volfile", "v.yaml", "/mnt/x", "-o", "bogus"],
            &["mount", "node1:/pacs", "/mnt/x", "-o", "bogus"],
            &["mount", "node1:/pacs", "/mnt/x", "-o", "log-level=[["],
            &["mount", "node1:/pacs/dir", "/mnt/x"],
            &["mount", "--volfile", "v.yaml", "node1:/pacs", "/mnt/x"],
            &[
                "mount",
                "--volfile",
                "v.yaml",
                "/mnt/x",
                "-o",
                "volfile-server-port=24010",
            ],
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

    fn child_of(m: &Mount, level: &str, log: Option<&Path>) -> Mount {
        let args = m.child_args(level, log);
        parse_args(std::iter::once(OsString::from("cairn")).chain(args))
            .map(|cli| match cli.command {
                Verb::Mount(m) => m,
                other => panic!("{other:?}"),
            })
            .unwrap()
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
        let cli = parse_args(std::iter::once(OsString::from("cairn")).chain(args)).unwrap();
        assert_eq!(cli.log_level, "warn");
        let Verb::Mount(child) = cli.command else {
            panic!("not a mount")
        };
        assert!(child.foreground && child.notify_ready);
        assert_eq!(
            child.volfile.as_deref(),
            Some(Path::new("/etc/cairn/pacs.yaml"))
        );
        assert_eq!(child.args, [PathBuf::from("/mnt/pacs")]);
        assert_eq!(child.options, ["ro"]);
        assert_eq!(child.connect_timeout, 7);
        assert_eq!(
            child.log_file.as_deref(),
            Some(Path::new("/var/log/cairn/x.log"))
        );
        // A mount point that looks like a flag still arrives as the mount point.
        let m = parse(&["mount", "--volfile", "v.yaml", "--", "-odd"]).unwrap();
        let child = child_of(&m, "info", None);
        assert!(child.args[0].ends_with("-odd"));
        assert!(child.args[0].is_absolute());
        // The server form keeps HOST:/VOL as typed and every -o list.
        let m = parse(&[
            "mount",
            "[fe80::1]:24010:/pacs",
            "rel/dir",
            "-o",
            "backup-volfile-servers=node2:node3,_netdev",
        ])
        .unwrap();
        let child = child_of(&m, "info", None);
        assert!(child.volfile.is_none() && child.foreground);
        assert_eq!(child.args[0], PathBuf::from("[fe80::1]:24010:/pacs"));
        assert!(child.args[1].is_absolute() && child.args[1].ends_with("rel/dir"));
        assert_eq!(
            child.options,
            ["backup-volfile-servers=node2:node3,_netdev"]
        );
    }

    #[test]
    fn log_settings_may_come_from_the_option_list() {
        let m = parse(&[
            "--log-level",
            "warn",
            "mount",
            "node1:/pacs",
            "/mnt/pacs",
            "--log-file",
            "/tmp/a.log",
        ])
        .unwrap();
        assert_eq!(m.log_level("warn").unwrap(), "warn");
        assert_eq!(m.log_file(), Some(PathBuf::from("/tmp/a.log")));
        let m = parse(&[
            "mount",
            "node1:/pacs",
            "/mnt/pacs",
            "--log-file",
            "/tmp/a.log",
            "-o",
            "log-level=debug,log-file=/tmp/b.log",
        ])
        .unwrap();
        assert_eq!(m.log_level("info").unwrap(), "debug");
        assert_eq!(m.log_file(), Some(PathBuf::from("/tmp/b.log")));
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
    fn served_volfiles_are_checked_too() {
        let what = "the volfile of pacs from node1:24007";
        assert_eq!(
            parse_client_volfile(CLIENT, what, "pacs").unwrap().volume,
            "pacs"
        );
        let e = parse_client_volfile(CLIENT, what, "other").unwrap_err();
        assert!(e.contains("for volume pacs, not other"), "{e}");
        let e = parse_client_volfile("not: [yaml", what, "pacs").unwrap_err();
        assert!(e.starts_with(what), "{e}");
        let e = parse_client_volfile(&CLIENT.replace("role: client", "role: brick"), what, "pacs")
            .unwrap_err();
        assert!(e.contains("client volfile"), "{e}");
    }

    #[test]
    fn a_server_mount_is_checked_with_the_served_volfile() {
        let dir = tempfile::tempdir().unwrap();
        let mp = dir.path().to_str().unwrap();
        let good = volfile_server(200, CLIENT);
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // The first server is away; the backup (same host, other port) answers.
        let (host, port) = good.rsplit_once(':').unwrap();
        let spec = format!("127.0.0.1:{dead}:/pacs");
        let m = parse(&[
            "mount",
            &spec,
            mp,
            "-o",
            &format!("backup-volfile-servers={host},volfile-server-port={port},ro"),
        ])
        .unwrap();
        let c = m.check().unwrap();
        assert_eq!(c.volfile.volume, "pacs");
        assert_eq!(c.opts.fsname, spec, "the source name is HOST:/VOL as typed");
        assert!(c.opts.read_only);
        let (servers, fetched) = c.served.unwrap();
        assert_eq!(servers, [format!("127.0.0.1:{dead}"), good.clone()]);
        assert_eq!((fetched.server, fetched.version), (1, Some(3)));
        m.check_only().unwrap();

        // A server that refuses stops the mount with its message.
        let refusing = volfile_server(403, r#"{"error":"10.0.0.9 is not allowed by auth.allow"}"#);
        let spec = format!("{refusing}:/pacs");
        let m = parse(&["mount", &spec, mp]).unwrap();
        let e = m.check().map(|_| ()).unwrap_err().0;
        assert!(
            e.contains("cannot mount") && e.contains("not allowed by auth.allow"),
            "{e}"
        );
        // A served volfile of another volume is refused.
        let other = volfile_server(200, CLIENT);
        let spec = format!("{other}:/scans");
        let e = parse(&["mount", &spec, mp])
            .unwrap()
            .check()
            .map(|_| ())
            .unwrap_err()
            .0;
        assert!(e.contains("not scans"), "{e}");
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
        let m = parse(&[
            "mount",
            "--volfile",
            vf.to_str().unwrap(),
            "-o",
            "ro,defaults,x-systemd.automount",
            mp,
        ])
        .unwrap();
        let c = m.check().unwrap();
        assert_eq!(c.opts.fsname, "cairn:pacs");
        assert!(c.opts.read_only);
        assert!(c.served.is_none());
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
