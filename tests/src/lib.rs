//! Test harness: start real `cairn-brickd` and `cairn mount` processes, wait for them, stop
//! them, and compare trees.
//!
//! # Layout
//!
//! - [`bin`]: where the workspace's binaries are (built by `scripts/test`).
//! - [`BrickProc`]: a `cairn-brickd` child process.
//! - [`MountProc`]: a `cairn mount --foreground` child process and its FUSE mount.
//! - [`Volume`]: one brick and one mount in a private temporary directory.
//! - [`client_volfile`]: the client graph for a list of bricks.
//! - [`compare_trees`]: byte-for-byte comparison of two directory trees.
//!
//! Everything a test starts is stopped when its handle drops, even when the test fails.
//! These tests need root: FUSE mounts with `allow_other` and `trusted.*` xattrs on bricks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The path of a workspace binary, next to the test executable's `deps/` directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, which scripts/test does)",
        path.display()
    );
    path
}

/// Fails the test clearly when not run as root.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "integration tests need root: they mount FUSE filesystems and use trusted.* xattrs"
    );
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a shell snippet in `dir`, panicking with its output when it fails.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = run(Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads lines from a child's stdout until one matches `want` or `timeout` passes; returns
/// the matching line, or everything read if it never came.
fn wait_for_line(
    child: &mut Child,
    timeout: Duration,
    want: impl Fn(&str) -> bool + Send + 'static,
) -> Result<String, String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if want(&line) {
                let _ = tx.send(Ok(line));
                return;
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let _ = tx.send(Err(seen));
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => Err(format!("nothing matching within {timeout:?}")),
    }
}

/// Spawns `cmd` with piped output and waits for a stdout line matching `want`. On failure the
/// child is killed and the error holds what it printed.
fn spawn_until(
    cmd: &mut Command,
    timeout: Duration,
    want: impl Fn(&str) -> bool + Send + 'static,
) -> Result<(Child, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    match wait_for_line(&mut child, timeout, want) {
        Ok(line) => Ok((child, line)),
        Err(out) => {
            let _ = wait_timeout(&mut child, Duration::from_secs(5));
            signal(&child, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            Err(format!("{out}{err}"))
        }
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A running `cairn-brickd`.
pub struct BrickProc {
    child: Option<Child>,
    /// The address it listens on.
    pub addr: String,
    /// The brick directory.
    pub dir: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    args: Vec<String>,
}

impl BrickProc {
    /// Starts a brick on `dir` (made a brick with `--init` if new) listening on `listen`.
    pub fn start(dir: &Path, volume_id: &str, brick_id: &str, listen: &str) -> BrickProc {
        fs::create_dir_all(dir).unwrap();
        let args = vec![
            "--directory".to_string(),
            dir.display().to_string(),
            "--listen".into(),
            listen.into(),
            "--volume".into(),
            "test".into(),
            "--volume-id".into(),
            volume_id.into(),
            "--brick-id".into(),
            brick_id.into(),
            "--init".into(),
        ];
        BrickProc::start_args(dir, args).unwrap_or_else(|e| panic!("brick did not start: {e}"))
    }

    /// Starts `cairn-brickd` with these arguments; `Err` carries its output.
    pub fn start_args(dir: &Path, args: Vec<String>) -> Result<BrickProc, String> {
        let log = dir.with_extension("brick.log");
        let mut cmd = Command::new(bin("cairn-brickd"));
        cmd.args(&args).arg("--log-file").arg(&log);
        let (child, line) = spawn_until(&mut cmd, Duration::from_secs(20), |l| {
            l.starts_with("listening on ")
        })?;
        Ok(BrickProc {
            child: Some(child),
            addr: line.trim_start_matches("listening on ").trim().to_string(),
            dir: dir.to_path_buf(),
            log,
            args,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Stops it with SIGTERM and returns its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal(&child, nix::sys::signal::Signal::SIGTERM);
        let st = wait_timeout(&mut child, Duration::from_secs(10));
        if st.is_none() {
            signal(&child, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
        st
    }

    /// Kills it with SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Sends a signal (SIGSTOP, SIGCONT, ...).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(c) = &self.child {
            signal(c, sig);
        }
    }

    /// Starts it again on the same port, without --init.
    pub fn restart(&mut self) {
        self.stop();
        let mut args = self.args.clone();
        args.retain(|a| a != "--init");
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = self.addr.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match BrickProc::start_args(&self.dir, args.clone()) {
                Ok(mut b) => {
                    self.child = b.child.take();
                    return;
                }
                Err(e) if Instant::now() < deadline && e.contains("in use") => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => panic!("brick did not restart: {e}"),
            }
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BrickProc {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c, nix::sys::signal::Signal::SIGCONT);
        }
        self.stop();
    }
}

/// A client volfile over the given bricks: `debug/io-stats` over one `protocol/client`.
/// `(host, port, brick id)` per brick; only one brick is supported until distribute exists.
pub fn client_volfile(
    volume_id: &str,
    brick: (&str, u16, &str),
    client_options: &[(&str, &str)],
) -> String {
    let (host, port, brick_id) = brick;
    let mut extra = String::new();
    for (k, v) in client_options {
        extra.push_str(&format!("      {k}: \"{v}\"\n"));
    }
    format!(
        "version: 1
volume: test
role: client
top: test-io-stats
graph:
  - name: test-client-0
    type: protocol/client
    options:
      remote-host: \"{host}\"
      remote-port: {port}
      volume-id: \"{volume_id}\"
      remote-brick: \"{brick_id}\"
{extra}  - name: test-io-stats
    type: debug/io-stats
    subvolumes: [test-client-0]
"
    )
}

/// True when `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let want = path.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// A `cairn mount --foreground` process.
pub struct MountProc {
    child: Option<Child>,
    /// The mount point.
    pub path: PathBuf,
    /// Its log file.
    pub log: PathBuf,
}

impl MountProc {
    /// Mounts `volfile` at `path`, waiting until the mount is ready.
    pub fn start(volfile: &Path, path: &Path, extra: &[&str]) -> MountProc {
        MountProc::try_start(volfile, path, extra).unwrap_or_else(|e| panic!("mount failed: {e}"))
    }

    /// Like [`MountProc::start`]; `Err` carries the command's output.
    pub fn try_start(volfile: &Path, path: &Path, extra: &[&str]) -> Result<MountProc, String> {
        fs::create_dir_all(path).unwrap();
        let log = path.with_extension("mount.log");
        let mut cmd = Command::new(bin("cairn"));
        cmd.arg("mount").arg("--volfile").arg(volfile).arg(path);
        cmd.args(["--foreground", "--notify-ready", "--log-file"])
            .arg(&log);
        if !extra.contains(&"--connect-timeout") {
            cmd.args(["--connect-timeout", "10"]);
        }
        cmd.args(extra);
        let (child, _) = spawn_until(&mut cmd, Duration::from_secs(30), |l| l.trim() == "ready")?;
        Ok(MountProc {
            child: Some(child),
            path: path.to_path_buf(),
            log,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends SIGTERM and waits: the mount must go away and the process exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal(&child, nix::sys::signal::Signal::SIGTERM);
        let st = wait_timeout(&mut child, Duration::from_secs(20));
        if st.is_none() {
            signal(&child, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
        st
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MountProc {
    fn drop(&mut self) {
        self.terminate();
        if is_mounted(&self.path) {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// One brick and one FUSE mount of it, in a private temporary directory.
pub struct Volume {
    /// Mount (dropped first, so it unmounts before the brick stops).
    pub mount: MountProc,
    /// The brick process.
    pub brick: BrickProc,
    /// The client volfile.
    pub volfile: PathBuf,
    /// The mount point.
    pub mnt: PathBuf,
    /// The brick directory.
    pub brick_dir: PathBuf,
    /// The temporary directory holding everything (removed last).
    pub tmp: tempfile::TempDir,
}

impl Volume {
    /// Starts a brick and mounts it.
    pub fn start() -> Volume {
        Volume::start_with(&[])
    }

    /// Like [`Volume::start`] with extra `protocol/client` options.
    pub fn start_with(client_options: &[(&str, &str)]) -> Volume {
        require_root();
        let tmp = tempfile::Builder::new()
            .prefix("cairn-it-")
            .tempdir()
            .unwrap();
        let brick_dir = tmp.path().join("brick");
        let brick = BrickProc::start(&brick_dir, "vol-test", "brick-0", "127.0.0.1:0");
        let volfile = tmp.path().join("client.vol");
        fs::write(
            &volfile,
            client_volfile(
                "vol-test",
                ("127.0.0.1", brick.port(), "brick-0"),
                client_options,
            ),
        )
        .unwrap();
        let mnt = tmp.path().join("mnt");
        let mount = MountProc::start(&volfile, &mnt, &[]);
        Volume {
            mount,
            brick,
            volfile,
            mnt,
            brick_dir,
            tmp,
        }
    }
}

/// What is compared for each entry of a tree.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Node {
    /// A directory with its permission bits.
    Dir(u32),
    /// A regular file: permission bits and contents.
    File(u32, Vec<u8>),
    /// A symlink and its target.
    Symlink(String),
    /// Something else (fifo, device) and its type bits.
    Other(u32),
}

/// Every entry below `root` (relative paths), skipping names in `skip` at any depth.
pub fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for ent in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let ent = ent.unwrap();
            let name = ent.file_name();
            if skip.iter().any(|s| name == *s) {
                continue;
            }
            let rel_child = rel.join(&name);
            let path = root.join(&rel_child);
            let meta = fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let node = if ft.is_dir() {
                stack.push(rel_child.clone());
                Node::Dir(meta.mode() & 0o7777)
            } else if ft.is_symlink() {
                Node::Symlink(fs::read_link(&path).unwrap().display().to_string())
            } else if ft.is_file() {
                Node::File(meta.mode() & 0o7777, fs::read(&path).unwrap())
            } else if ft.is_fifo() || ft.is_socket() || ft.is_char_device() || ft.is_block_device()
            {
                Node::Other(meta.mode() & libc::S_IFMT)
            } else {
                Node::Other(0)
            };
            out.insert(rel_child, node);
        }
    }
    out
}

/// Differences between two trees, as readable lines (empty when identical).
pub fn compare_trees(a: &Path, b: &Path, skip: &[&str]) -> Vec<String> {
    let (sa, sb) = (snapshot(a, skip), snapshot(b, skip));
    let mut diffs = Vec::new();
    for (k, va) in &sa {
        match sb.get(k) {
            None => diffs.push(format!("only in {}: {}", a.display(), k.display())),
            Some(vb) if vb != va => {
                diffs.push(format!("differs: {} ({})", k.display(), describe(va, vb)))
            }
            _ => {}
        }
    }
    for k in sb.keys().filter(|k| !sa.contains_key(*k)) {
        diffs.push(format!("only in {}: {}", b.display(), k.display()));
    }
    diffs
}

fn describe(a: &Node, b: &Node) -> String {
    match (a, b) {
        (Node::File(ma, ca), Node::File(mb, cb)) if ma != mb => {
            format!("mode {ma:o} vs {mb:o}; {} vs {} bytes", ca.len(), cb.len())
        }
        (Node::File(_, ca), Node::File(_, cb)) => {
            format!("contents, {} vs {} bytes", ca.len(), cb.len())
        }
        _ => format!("{a:?} vs {b:?}").chars().take(200).collect(),
    }
}

/// A deterministic pseudo-random buffer (so failures reproduce).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The workspace root (for source trees to copy in tests).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A running `cairnd`.
pub struct DaemonProc {
    child: Option<Child>,
    /// `host` it binds (port 24007).
    pub host: String,
    /// Its state directory.
    pub state: PathBuf,
    /// Its log directory.
    pub logs: PathBuf,
    netns: Option<String>,
    extra: Vec<String>,
}

impl DaemonProc {
    /// Starts `cairnd` bound to `host:24007` with state under `dir`, optionally inside a
    /// network namespace.
    pub fn start(dir: &Path, host: &str, netns: Option<&str>) -> DaemonProc {
        DaemonProc::start_with(dir, host, netns, &[])
    }

    /// [`DaemonProc::start`] with more `cairnd` arguments (kept for restarts).
    pub fn start_with(dir: &Path, host: &str, netns: Option<&str>, extra: &[String]) -> DaemonProc {
        let state = dir.join("state");
        let logs = dir.join("logs");
        fs::create_dir_all(&logs).unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("cairnd"));
                c
            }
            None => Command::new(bin("cairnd")),
        };
        cmd.arg("--bind")
            .arg(format!("{host}:24007"))
            .arg("--state-dir")
            .arg(&state)
            .arg("--log-dir")
            .arg(&logs)
            .args(["--brick-ports", "24010-24100"])
            .args(extra);
        let (child, _) = spawn_until(&mut cmd, Duration::from_secs(20), |l| {
            l.starts_with("cairnd ")
        })
        .unwrap_or_else(|e| panic!("cairnd did not start: {e}"));
        DaemonProc {
            child: Some(child),
            host: host.to_string(),
            state,
            logs,
            netns: netns.map(str::to_string),
            extra: extra.to_vec(),
        }
    }

    /// The local CLI socket.
    pub fn socket(&self) -> PathBuf {
        self.state.join("cairnd.sock")
    }

    /// Runs `cairn --server <socket> ARGS` and returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin("cairn"))
            .arg("--server")
            .arg(self.socket())
            .arg("--mode")
            .arg("script")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs the CLI against `host` over TCP, as someone outside the pool would (no socket,
    /// no pool secret).
    pub fn cli_over_tcp(&self, host: &str, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin("cairn"))
            .args([
                "--server",
                host,
                "--state-dir",
                "/nonexistent-cairn-state",
                "--mode",
                "script",
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Like [`DaemonProc::cli`], panicking unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.cli(args);
        assert_eq!(code, 0, "cairn {args:?} failed: {err}{out}");
        out
    }

    /// Stops it with SIGTERM (its bricks keep running, as in production).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, nix::sys::signal::Signal::SIGTERM);
            if wait_timeout(&mut c, Duration::from_secs(10)).is_none() {
                signal(&c, nix::sys::signal::Signal::SIGKILL);
                let _ = c.wait();
            }
        }
    }

    /// Kills it with SIGKILL, as a crash would (its bricks keep running).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, nix::sys::signal::Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Starts it again with the same state.
    pub fn restart(&mut self) {
        self.stop();
        let dir = self.state.parent().unwrap().to_path_buf();
        let again = DaemonProc::start_with(&dir, &self.host, self.netns.as_deref(), &self.extra);
        *self = again;
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.logs.join("cairnd.log")).unwrap_or_default()
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kills every process whose command line mentions `path` (bricks started by daemons of a
/// test), and unmounts whatever is mounted below it.
pub fn kill_everything_under(path: &Path) {
    let p = path.display().to_string();
    if let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") {
        for m in mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&p))
        {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
    let _ = Command::new("pkill")
        .arg("-KILL")
        .arg("-f")
        .arg(&p)
        .status();
}

/// A network of namespaces joined by a bridge: node `i` is `PREFIX.i` inside namespace
/// `cairn-TAG-i`; the bridge (in the root namespace) is `PREFIX.254`.
pub struct Netns {
    /// Namespace names.
    pub names: Vec<String>,
    /// Node addresses.
    pub addrs: Vec<String>,
    bridge: String,
    tag: String,
}

impl Netns {
    /// Creates `n` namespaces on subnet `prefix` (like "10.77.3").
    pub fn new(tag: &str, prefix: &str, n: usize) -> Netns {
        let bridge = format!("br-cairn-{tag}");
        let sh = |c: &str| {
            let st = Command::new("bash").arg("-c").arg(c).status().unwrap();
            assert!(st.success(), "{c}");
        };
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        sh(&format!(
            "ip link add {bridge} type bridge && ip link set {bridge} up && ip addr add {prefix}.254/24 dev {bridge}"
        ));
        let mut names = Vec::new();
        let mut addrs = Vec::new();
        for i in 1..=n {
            let ns = format!("cairn-{tag}-{i}");
            let veth = format!("vc{tag}{i}");
            // Leftovers of a run that was killed before its Drop: its namespace, and a
            // veth whose peer outlived it.
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            let _ = Command::new("ip").args(["link", "del", &veth]).output();
            sh(&format!(
                "ip netns add {ns} && ip link add {veth} type veth peer name eth0 netns {ns} && \
                 ip link set {veth} master {bridge} up && \
                 ip netns exec {ns} ip addr add {prefix}.{i}/24 dev eth0 && \
                 ip netns exec {ns} ip link set eth0 up && ip netns exec {ns} ip link set lo up"
            ));
            names.push(ns);
            addrs.push(format!("{prefix}.{i}"));
        }
        Netns {
            names,
            addrs,
            bridge,
            tag: tag.to_string(),
        }
    }

    /// Cuts node `i` (0-based) off the network, or reconnects it.
    pub fn set_link(&self, i: usize, up: bool) {
        let veth = format!("vc{}{}", self.tag, i + 1);
        let st = Command::new("ip")
            .args(["link", "set", &veth, if up { "up" } else { "down" }])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// Mounts `server:/volume` with `cairn mount` in the foreground (server form).
pub fn mount_from_server(spec: &str, path: &Path, extra: &[&str]) -> Result<MountProc, String> {
    fs::create_dir_all(path).unwrap();
    let log = path.with_extension("mount.log");
    let mut cmd = Command::new(bin("cairn"));
    cmd.arg("mount").arg(spec).arg(path);
    cmd.args(["--foreground", "--notify-ready", "--log-file"])
        .arg(&log)
        .args(extra);
    let (child, _) = spawn_until(&mut cmd, Duration::from_secs(40), |l| l.trim() == "ready")?;
    Ok(MountProc::adopt(child, path.to_path_buf(), log))
}

impl MountProc {
    fn adopt(child: Child, path: PathBuf, log: PathBuf) -> MountProc {
        MountProc {
            child: Some(child),
            path,
            log,
        }
    }
}

/// Polls `f` every 200 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// A pool of three cairnd (see [`pool`]); dropping it stops everything it started.
pub struct Pool {
    /// The daemons.
    pub nodes: Vec<DaemonProc>,
    /// Their state and brick directories.
    pub tmp: tempfile::TempDir,
}

impl Drop for Pool {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.stop();
        }
        kill_everything_under(self.tmp.path());
    }
}

/// Probes `nodes[1..]` from `nodes[0]`, waits until it sees them all connected, and
/// creates (does not start) the replica-3 volume `name` with brick `bricks[i]` on
/// `nodes[i]`.
pub fn pool_and_replica3(nodes: &[DaemonProc], name: &str, bricks: &[PathBuf]) {
    for n in &nodes[1..] {
        nodes[0].ok(&["peer", "probe", &n.host]);
    }
    assert!(
        eventually(Duration::from_secs(15), || nodes[0]
            .ok(&["peer", "status"])
            .matches("(Connected)")
            .count()
            == nodes.len() - 1),
        "every peer connected"
    );
    let specs: Vec<String> = nodes
        .iter()
        .zip(bricks)
        .map(|(n, b)| format!("{}:{}", n.host, b.display()))
        .collect();
    let mut args = vec!["volume", "create", name, "replica", "3"];
    args.extend(specs.iter().map(String::as_str));
    args.push("force");
    nodes[0].ok(&args);
}

/// Three daemons on 127.77.`net`.1-3, probed into one pool from the first.
pub fn pool(net: u8) -> Pool {
    require_root();
    let tmp = tempfile::Builder::new()
        .prefix("cairn-pool-")
        .tempdir()
        .unwrap();
    let nodes: Vec<DaemonProc> = (1..=3)
        .map(|i| {
            DaemonProc::start(
                &tmp.path().join(format!("n{i}")),
                &format!("127.77.{net}.{i}"),
                None,
            )
        })
        .collect();
    for n in &nodes[1..] {
        let out = nodes[0].ok(&["peer", "probe", &n.host]);
        assert!(out.contains("success"), "{out}");
    }
    assert!(
        eventually(Duration::from_secs(15), || {
            nodes.iter().all(|n| {
                let (_, out, _) = n.cli(&["peer", "status"]);
                out.matches("(Connected)").count() == 2
            })
        }),
        "every node sees two connected peers"
    );
    Pool { nodes, tmp }
}

/// One brick directory per node of `p` (`HOST:/path`), named after `tag`.
pub fn bricks(p: &Pool, tag: &str) -> Vec<String> {
    p.nodes
        .iter()
        .map(|n| {
            format!(
                "{}:{}",
                n.host,
                p.tmp.path().join(format!("{tag}-{}", n.host)).display()
            )
        })
        .collect()
}

/// Creates and starts a replica-3 volume `name` over one brick per node of `p`, with
/// `options` set before the start, and mounts it (through the second node). Returns the
/// mount, its path and the brick directories.
pub fn replica3_volume(
    p: &Pool,
    name: &str,
    options: &[(&str, &str)],
) -> (MountProc, PathBuf, Vec<PathBuf>) {
    replica3_volume_with(p, name, |n| {
        for (k, v) in options {
            n.ok(&["volume", "set", name, k, v]);
        }
    })
}

/// [`replica3_volume`], running `setup` on the first node between create and start.
pub fn replica3_volume_with(
    p: &Pool,
    name: &str,
    setup: impl FnOnce(&DaemonProc),
) -> (MountProc, PathBuf, Vec<PathBuf>) {
    let b = bricks(p, name);
    let mut args = vec!["volume", "create", name, "replica", "3"];
    args.extend(b.iter().map(String::as_str));
    args.push("force");
    p.nodes[0].ok(&args);
    setup(&p.nodes[0]);
    p.nodes[0].ok(&["volume", "start", name]);
    let mnt = p.tmp.path().join(format!("mnt-{name}"));
    let m = mount_from_server(&format!("{}:/{name}", p.nodes[1].host), &mnt, &[]).unwrap();
    let dirs = b
        .iter()
        .map(|s| PathBuf::from(s.split_once(':').unwrap().1))
        .collect();
    (m, mnt, dirs)
}
