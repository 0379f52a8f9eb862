//! The management plane with real processes: pools of cairnd on 127.77.X.Y addresses (and
//! in network namespaces), the real cairn CLI, real FUSE mounts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_tests::*;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

trait Get {
    fn get_str(&self, k: &str) -> &str;
    fn get_bool(&self, k: &str) -> bool;
    fn get_num(&self, k: &str) -> f64;
    fn list(&self, k: &str) -> Vec<serde_json::Value>;
}

impl Get for serde_json::Value {
    fn get_str(&self, k: &str) -> &str {
        self.get(k).and_then(|v| v.as_str()).unwrap_or("")
    }
    fn get_bool(&self, k: &str) -> bool {
        self.get(k).and_then(|v| v.as_bool()).unwrap_or(false)
    }
    fn get_num(&self, k: &str) -> f64 {
        self.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN)
    }
    fn list(&self, k: &str) -> Vec<serde_json::Value> {
        self.get(k)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    }
}

/// A plain HTTP GET (the body of a 200 reply).
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The run of a volume's rebalance (or drain) status list: the node where one ran.
fn run_of(list: serde_json::Value) -> serde_json::Value {
    let all = list.as_array().cloned().unwrap_or_default();
    all.iter()
        .find(|s| s.get_str("state") != "not started")
        .or(all.first())
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

fn rebalance_status(n: &DaemonProc, vol: &str) -> serde_json::Value {
    run_of(json(&n.ok(&[
        "--json",
        "volume",
        "rebalance",
        vol,
        "status",
    ])))
}

fn remove_brick_status(n: &DaemonProc, vol: &str, leaving: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json", "volume", "remove-brick", vol];
    a.extend_from_slice(leaving);
    a.push("status");
    run_of(json(&n.ok(&a)).get("nodes").cloned().unwrap_or_default())
}

#[test]
fn a_pool_of_three_runs_a_replicated_volume_through_its_whole_life() {
    let p = pool(1);
    let n1 = &p.nodes[0];
    // pool list from any node shows all three, itself as localhost.
    let out = p.nodes[2].ok(&["pool", "list"]);
    assert_eq!(out.matches("Connected").count(), 3, "{out}");
    assert!(out.contains("localhost"), "{out}");

    let b = bricks(&p, "pacs");
    let mut args = vec!["volume", "create", "pacs", "replica", "3"];
    args.extend(b.iter().map(String::as_str));
    args.push("force");
    let out = n1.ok(&args);
    assert!(out.contains("volume create: pacs: success"), "{out}");
    let info = p.nodes[1].ok(&["volume", "info", "pacs"]);
    for needle in [
        "Volume Name: pacs",
        "Type: Replicate",
        "Status: Created",
        "Number of Bricks: 1 x 3 = 3",
        "Brick1: 127.77.1.1:",
    ] {
        assert!(info.contains(needle), "{needle} in {info}");
    }
    n1.ok(&["volume", "start", "pacs"]);
    let status = json(&p.nodes[2].ok(&["--json", "volume", "status", "pacs"]));
    let bs = status.list("bricks");
    assert_eq!(bs.len(), 3);
    assert!(
        bs.iter().all(|b| b.get_bool("online")
            && b.get_num("pid") > 0.0
            && b.get_num("port") >= 24010.0),
        "{status:?}"
    );

    // Mount from a server, write, and the three bricks hold the files as plain files.
    let mnt = p.tmp.path().join("mnt");
    let m = mount_from_server("127.77.1.2:/pacs", &mnt, &[]).unwrap();
    fs::create_dir_all(mnt.join("2024/05/17/study/series")).unwrap();
    for i in 0..20 {
        fs::write(
            mnt.join(format!("2024/05/17/study/series/IM{i:03}.dcm")),
            pattern(57 * 1024, i),
        )
        .unwrap();
    }
    for path in &b {
        let dir = Path::new(path.split_once(':').unwrap().1);
        for i in 0..20 {
            assert_eq!(
                fs::read(dir.join(format!("2024/05/17/study/series/IM{i:03}.dcm"))).unwrap(),
                pattern(57 * 1024, i)
            );
        }
    }
    let clients = p.nodes[0].ok(&["volume", "status", "pacs", "clients"]);
    assert!(
        clients.contains("Clients connected : 1") || clients.contains("Clients connected: 1"),
        "{clients}"
    );

    // Options: refused with a useful message, set, read back, reset; the mounted client
    // switches to the new graph without unmounting.
    let (code, _, err) = n1.cli(&["volume", "set", "pacs", "network.ping-timout", "5"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("network.ping-timeout"),
        "the error lists the real keys: {err}"
    );
    let (code, _, err) = n1.cli(&["volume", "set", "pacs", "network.ping-timeout", "soon"]);
    assert_eq!(code, 1);
    assert!(err.contains("duration"), "{err}");
    let held = fs::File::open(mnt.join("2024/05/17/study/series/IM001.dcm")).unwrap();
    n1.ok(&["volume", "set", "pacs", "network.ping-timeout", "7"]);
    let got = json(&p.nodes[2].ok(&["--json", "volume", "get", "pacs", "network.ping-timeout"]));
    assert_eq!(got.get_str("value"), "7", "{got:?}");
    assert!(
        eventually(Duration::from_secs(45), || m
            .log_text()
            .contains("switched")),
        "the client switched graphs:\n{}",
        m.log_text()
    );
    fs::write(mnt.join("after-switch"), b"still mounted").unwrap();
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut &held, &mut buf).unwrap();
    assert_eq!(
        buf,
        pattern(57 * 1024, 1),
        "a file held open across the switch still reads"
    );
    drop(held);
    n1.ok(&["volume", "reset", "pacs", "network.ping-timeout"]);
    let got = json(&n1.ok(&["--json", "volume", "get", "pacs", "network.ping-timeout"]));
    assert!(got.get_bool("is_default"), "{got:?}");

    drop(m);
    n1.ok(&["volume", "stop", "pacs"]);
    let status = json(&n1.ok(&["--json", "volume", "status", "pacs"]));
    assert!(
        status.list("bricks").iter().all(|b| !b.get_bool("online")),
        "{status:?}"
    );
    n1.ok(&["volume", "delete", "pacs"]);
    assert!(p.nodes[2].ok(&["volume", "list"]).contains("No volumes"));
    // The data is still on the bricks.
    let dir = Path::new(b[0].split_once(':').unwrap().1);
    assert!(dir.join("after-switch").exists());
}

#[test]
fn supervision_restarts_a_crashed_brick_and_a_restarted_daemon_adopts_its_bricks() {
    let mut p = pool(2);
    let b = bricks(&p, "sup");
    let mut args = vec!["volume", "create", "sup", "replica", "3"];
    args.extend(b.iter().map(String::as_str));
    args.push("force");
    p.nodes[0].ok(&args);
    p.nodes[0].ok(&["volume", "start", "sup"]);
    let pid_of = |p: &Pool, i: usize| -> u32 {
        let s = json(&p.nodes[0].ok(&["--json", "volume", "status", "sup"]));
        s.list("bricks")[i].get_num("pid") as u32
    };
    let first = pid_of(&p, 1);
    assert!(first > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || {
            let s = json(&p.nodes[0].ok(&["--json", "volume", "status", "sup"]));
            let b = &s.list("bricks")[1];
            b.get_bool("online") && b.get_num("pid") as u32 != first
        }),
        "the crashed brick runs again under a new pid"
    );
    assert!(p.nodes[1].log_text().contains("exited unexpectedly"));

    // Restart node 3's daemon: its brick keeps running and is adopted, not duplicated.
    let before = pid_of(&p, 2);
    p.nodes[2].restart();
    assert!(p.nodes[2].log_text().contains("adopted a running brick"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pid_of(&p, 2), before, "the same brick process");
    let procs = std::process::Command::new("pgrep")
        .arg("-f")
        .arg(format!(
            "{}/vols/sup/brick-2.vol",
            p.nodes[2].state.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&procs.stdout).lines().count(),
        1,
        "exactly one brick process"
    );
    p.nodes[0].ok(&["volume", "stop", "sup"]);
}

#[test]
fn clients_without_the_secret_or_outside_auth_allow_are_refused() {
    let p = pool(3);
    let b = bricks(&p, "sec");
    let mut args = vec!["volume", "create", "sec", "replica", "3"];
    args.extend(b.iter().map(String::as_str));
    args.push("force");
    p.nodes[0].ok(&args);
    p.nodes[0].ok(&["volume", "start", "sec"]);
    // A client that did not get the volfile from a peer has no secret.
    let vf = http_get("127.77.3.1:24007", "/v1/volumes/sec/volfile?role=client");
    assert!(
        vf.contains("auth-secret"),
        "the served volfile carries the secret: {vf}"
    );
    let stripped: String = vf
        .lines()
        .filter(|l| !l.contains("auth-secret"))
        .map(|l| format!("{l}\n"))
        .collect();
    let vpath = p.tmp.path().join("nosecret.vol");
    fs::write(&vpath, stripped).unwrap();
    let err = MountProc::try_start(
        &vpath,
        &p.tmp.path().join("m1"),
        &["--connect-timeout", "3"],
    )
    .err()
    .expect("refused");
    assert!(err.contains("cannot reach the volume"), "{err}");
    let brick_log =
        fs::read_to_string(p.nodes[0].logs.join("bricks/sec-brick-0.log")).unwrap_or_default();
    assert!(
        brick_log.contains("refused client") && brick_log.contains("secret"),
        "{brick_log}"
    );

    // auth.allow: 127.77.3.x may not mount any more; the volfile server says so.
    p.nodes[0].ok(&["volume", "set", "sec", "auth.allow", "10.0.0.0/8"]);
    let err = mount_from_server(
        "127.77.3.2:/sec",
        &p.tmp.path().join("m2"),
        &["--connect-timeout", "3"],
    )
    .err()
    .expect("refused");
    assert!(err.contains("not allowed to mount"), "{err}");
    assert!(p.nodes[1].log_text().contains("refused a volfile request"));
    p.nodes[0].ok(&["volume", "reset", "sec"]);
    let m = mount_from_server("127.77.3.2:/sec", &p.tmp.path().join("m3"), &[]).unwrap();
    fs::write(m.path.join("ok"), b"allowed again").unwrap();
    drop(m);
    // Configuration changes from outside the pool are refused.
    let (code, _, err) = p.nodes[0].cli_over_tcp(
        "127.77.3.1",
        &["volume", "set", "sec", "network.ping-timeout", "5"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("local CLI") || err.contains("pool members"),
        "{err}"
    );
    p.nodes[0].ok(&["volume", "stop", "sec"]);
}

#[test]
fn create_refuses_what_gluster_refuses_and_changes_nothing() {
    let p = pool(4);
    let n1 = &p.nodes[0];
    let t = p.tmp.path();
    let h = |i: usize| p.nodes[i].host.clone();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "v".into(),
                "replica".into(),
                "3".into(),
                format!("{}:{}/a", h(0), t.display()),
                format!("{}:{}/b", h(1), t.display()),
            ],
            "multiple of 3",
        ),
        (
            vec![
                "v".into(),
                "replica".into(),
                "2".into(),
                format!("{}:{}/a", h(0), t.display()),
                format!("{}:{}/b", h(0), t.display()),
            ],
            "more than one brick on host",
        ),
        (
            vec![
                "v".into(),
                "replica".into(),
                "2".into(),
                format!("{}:{}/n", h(0), t.display()),
                format!("{}:{}/n/inner", h(0), t.display()),
                "force".into(),
            ],
            "nested",
        ),
        (
            vec![
                "v".into(),
                format!("10.255.255.1:{}/x", t.display()),
                "force".into(),
            ],
            "not in the pool",
        ),
        (
            vec!["v".into(), format!("{}:{}/r", h(0), t.display())],
            "root filesystem",
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["volume".to_string(), "create".to_string()];
        full.extend(args);
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let (code, _, err) = n1.cli(&refs);
        // 2: the CLI saw it in the arguments; 1: the daemon refused it.
        assert!(code == 1 || code == 2, "{full:?} exited {code}");
        assert!(err.contains(needle), "{needle} in {err}");
    }
    assert!(n1.ok(&["volume", "list"]).contains("No volumes"));
    // A brick inside another volume's brick.
    n1.ok(&[
        "volume",
        "create",
        "first",
        &format!("{}:{}/first", h(1), t.display()),
        "force",
    ]);
    let (code, _, err) = n1.cli(&[
        "volume",
        "create",
        "second",
        &format!("{}:{}/first/sub", h(1), t.display()),
        "force",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("already part of volume first"), "{err}");
    assert_eq!(n1.ok(&["volume", "list"]).trim(), "first");
}

#[test]
fn concurrent_changes_from_different_nodes_never_diverge() {
    let p = pool(5);
    let b = bricks(&p, "cc");
    let mut args = vec!["volume", "create", "cc", "replica", "3"];
    args.extend(b.iter().map(String::as_str));
    args.push("force");
    p.nodes[0].ok(&args);
    let mut busy = 0;
    for round in 0..6 {
        let v1 = format!("{}", 5 + round);
        let v2 = format!("{}", 30 + round);
        let (s1, s2) = (p.nodes[0].socket(), p.nodes[2].socket());
        let t1 = std::thread::spawn(move || {
            std::process::Command::new(bin("cairn"))
                .arg("--server")
                .arg(s1)
                .args(["volume", "set", "cc", "network.ping-timeout", &v1])
                .output()
                .unwrap()
        });
        let t2 = std::thread::spawn(move || {
            std::process::Command::new(bin("cairn"))
                .arg("--server")
                .arg(s2)
                .args(["volume", "set", "cc", "network.ping-timeout", &v2])
                .output()
                .unwrap()
        });
        for out in [t1.join().unwrap(), t2.join().unwrap()] {
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains("another transaction is in progress"),
                    "the only refusal is the busy one: {err}"
                );
                busy += 1;
            }
        }
        // Every node agrees on the value.
        let vals: Vec<String> = p
            .nodes
            .iter()
            .map(|n| {
                json(&n.ok(&["--json", "volume", "get", "cc", "network.ping-timeout"]))
                    .get_str("value")
                    .to_string()
            })
            .collect();
        assert!(
            vals.iter().all(|v| *v == vals[0]),
            "round {round}: {vals:?}"
        );
    }
    eprintln!("{busy} of 12 changes were told another transaction was in progress");
}

#[test]
fn a_node_cut_off_mid_change_changes_nothing_and_the_pool_converges() {
    require_root();
    let net = Netns::new("t6", "10.77.6", 3);
    let tmp = tempfile::Builder::new()
        .prefix("cairn-netns-")
        .tempdir()
        .unwrap();
    let mut nodes: Vec<DaemonProc> = (0..3)
        .map(|i| {
            DaemonProc::start(
                &tmp.path().join(format!("n{i}")),
                &net.addrs[i],
                Some(&net.names[i]),
            )
        })
        .collect();
    let cleanup = |nodes: &mut Vec<DaemonProc>| {
        for n in nodes.iter_mut() {
            n.stop();
        }
        kill_everything_under(tmp.path());
    };
    for n in &nodes[1..] {
        nodes[0].ok(&["peer", "probe", &n.host]);
    }
    assert!(eventually(Duration::from_secs(15), || nodes[2]
        .ok(&["peer", "status"])
        .matches("(Connected)")
        .count()
        == 2));
    let bs: Vec<String> = nodes
        .iter()
        .map(|n| {
            format!(
                "{}:{}",
                n.host,
                tmp.path().join(format!("b-{}", n.host)).display()
            )
        })
        .collect();
    let mut args = vec!["volume", "create", "cut", "replica", "3"];
    args.extend(bs.iter().map(String::as_str));
    args.push("force");
    nodes[0].ok(&args);
    let get = |n: &DaemonProc| {
        json(&n.ok(&["--json", "volume", "get", "cut", "network.ping-timeout"]))
            .get_str("value")
            .to_string()
    };

    // Cut node 3 and change the volume at once, before anyone noticed: the change fails,
    // naming the node, and nothing changed anywhere.
    net.set_link(2, false);
    let (code, _, err) = nodes[0].cli(&["volume", "set", "cut", "network.ping-timeout", "17"]);
    assert_eq!(code, 1, "the change must fail");
    assert!(
        err.contains(&net.addrs[2]),
        "the error names the peer: {err}"
    );
    for n in &nodes {
        assert_eq!(get(n), "10s", "unchanged on {}", n.host);
    }

    // Once the node is known to be away, the majority goes ahead without it...
    assert!(eventually(Duration::from_secs(15), || nodes[0]
        .ok(&["peer", "status"])
        .contains("(Disconnected)")));
    nodes[0].ok(&["volume", "set", "cut", "network.ping-timeout", "23"]);
    assert_eq!(get(&nodes[1]), "23");
    assert_eq!(get(&nodes[2]), "10s", "the cut-off node did not see it");
    // ...and a node alone cannot change anything.
    let (code, _, err) = nodes[2].cli(&["volume", "set", "cut", "network.ping-timeout", "99"]);
    assert_eq!(code, 1);
    assert!(err.contains("majority"), "{err}");

    // Reconnected, it catches up by version.
    net.set_link(2, true);
    assert!(
        eventually(Duration::from_secs(20), || get(&nodes[2]) == "23"),
        "the pool converges"
    );
    assert!(nodes[2].log_text().contains("caught up"));
    cleanup(&mut nodes);
}

/// Installs /sbin/mount.cairn (a link to the cairn under test) for the test's lifetime.
struct MountHelper {
    created: bool,
}

impl MountHelper {
    fn install() -> MountHelper {
        let link = Path::new("/sbin/mount.cairn");
        if fs::symlink_metadata(link).is_ok() {
            let target = fs::read_link(link).ok();
            if target.as_deref() == Some(bin("cairn").as_path()) {
                return MountHelper { created: false };
            }
            fs::remove_file(link).unwrap();
        }
        std::os::unix::fs::symlink(bin("cairn"), link).unwrap();
        MountHelper { created: true }
    }
}

impl Drop for MountHelper {
    fn drop(&mut self) {
        if self.created {
            let _ = fs::remove_file("/sbin/mount.cairn");
        }
    }
}

#[test]
fn mount_t_cairn_and_an_fstab_line_fall_back_to_backup_volfile_servers() {
    let p = pool(7);
    let b = bricks(&p, "fst");
    let mut args = vec!["volume", "create", "fst", "replica", "3"];
    args.extend(b.iter().map(String::as_str));
    args.push("force");
    p.nodes[0].ok(&args);
    p.nodes[0].ok(&["volume", "start", "fst"]);
    let _helper = MountHelper::install();

    let mnt = p.tmp.path().join("by-type");
    fs::create_dir_all(&mnt).unwrap();
    let out = std::process::Command::new("mount")
        .args(["-t", "cairn", "127.77.7.1:/fst"])
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount -t cairn: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(&mnt));
    fs::write(mnt.join("via-mount-t"), b"ok").unwrap();
    run(std::process::Command::new("umount").arg(&mnt));

    // The first server in the fstab line has no daemon: the backups serve the volfile.
    let fstab = p.tmp.path().join("fstab");
    let mnt2 = p.tmp.path().join("by-fstab");
    fs::create_dir_all(&mnt2).unwrap();
    fs::write(
        &fstab,
        format!("127.77.7.9:/fst {} cairn defaults,_netdev,backup-volfile-servers=127.77.7.2:127.77.7.3 0 0\n", mnt2.display()),
    )
    .unwrap();
    let out = std::process::Command::new("mount")
        .arg("--fstab")
        .arg(&fstab)
        .arg(&mnt2)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount from fstab: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(mnt2.join("via-mount-t")).unwrap(), b"ok");
    run(std::process::Command::new("umount").arg(&mnt2));
    p.nodes[0].ok(&["volume", "stop", "fst"]);
}

#[test]
fn a_distributed_replicated_volume_spreads_files_over_its_sets_and_heals_each() {
    let p = pool(8);
    let n1 = &p.nodes[0];
    let mut b = bricks(&p, "set1");
    b.extend(bricks(&p, "set2"));
    let mut args = vec!["volume", "create", "dr", "replica", "3"];
    args.extend(b.iter().map(String::as_str));
    args.push("force");
    n1.ok(&args);
    let info = p.nodes[1].ok(&["volume", "info", "dr"]);
    for needle in ["Type: Distributed-Replicate", "Number of Bricks: 2 x 3 = 6"] {
        assert!(info.contains(needle), "{needle} in {info}");
    }
    n1.ok(&["volume", "start", "dr"]);
    let mnt = p.tmp.path().join("mnt-dr");
    let m = mount_from_server("127.77.8.3:/dr", &mnt, &[]).unwrap();
    fs::create_dir_all(mnt.join("study/series")).unwrap();
    for i in 0..60 {
        fs::write(
            mnt.join(format!("study/series/IM{i:03}.dcm")),
            pattern(57 * 1024, i),
        )
        .unwrap();
    }
    let dirs: Vec<&Path> = b
        .iter()
        .map(|s| Path::new(s.split_once(':').unwrap().1))
        .collect();
    let mut per_set = [0usize; 2];
    for i in 0..60 {
        let rel = format!("study/series/IM{i:03}.dcm");
        let holders: Vec<usize> = (0..6).filter(|&k| dirs[k].join(&rel).exists()).collect();
        let set = match holders.as_slice() {
            [0, 1, 2] => 0,
            [3, 4, 5] => 1,
            other => panic!("{rel} is on bricks {other:?}, not on the three of one set"),
        };
        per_set[set] += 1;
        for &k in &holders {
            assert_eq!(fs::read(dirs[k].join(&rel)).unwrap(), pattern(57 * 1024, i));
        }
    }
    assert!(per_set.iter().all(|&n| n >= 15), "{per_set:?}");
    // Every node's heal worker serves its bricks of both sets: a brick of the second set
    // misses writes while it is down and is healed when it returns.
    let status = json(&n1.ok(&["--json", "volume", "status", "dr"]));
    let victim = status
        .list("bricks")
        .into_iter()
        .find(|x| x.get_str("path") == dirs[4].display().to_string())
        .unwrap();
    let pid = victim.get_num("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for i in 60..120 {
        fs::write(
            mnt.join(format!("study/series/IM{i:03}.dcm")),
            pattern(57 * 1024, i),
        )
        .unwrap();
    }
    let pending = || -> usize {
        let (code, out, _) = n1.cli(&["--json", "volume", "heal", "dr", "info"]);
        if code != 0 {
            return usize::MAX;
        }
        json(&out)
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|b| b["entries"].as_array().map(|e| e.len()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(usize::MAX)
    };
    assert!(
        eventually(Duration::from_secs(90), || {
            let _ = n1.cli(&["volume", "heal", "dr"]);
            pending() == 0
        }),
        "heal reaches zero pending on every brick"
    );
    for i in 60..120 {
        let rel = format!("study/series/IM{i:03}.dcm");
        let on3 = dirs[3].join(&rel).exists();
        assert_eq!(
            dirs[4].join(&rel).exists(),
            on3,
            "{rel}: brick 5 matches its set"
        );
        if on3 {
            assert_eq!(fs::read(dirs[4].join(&rel)).unwrap(), pattern(57 * 1024, i));
        }
    }
    drop(m);
    n1.ok(&["volume", "stop", "dr"]);
}

#[test]
fn add_brick_then_fix_layout_grows_a_volume_online() {
    let p = pool(9);
    let n1 = &p.nodes[0];
    let set1 = bricks(&p, "grow1");
    let mut args = vec!["volume", "create", "grow", "replica", "3"];
    args.extend(set1.iter().map(String::as_str));
    args.push("force");
    n1.ok(&args);
    n1.ok(&["volume", "start", "grow"]);
    let mnt = p.tmp.path().join("mnt-grow");
    let m = mount_from_server("127.77.9.2:/grow", &mnt, &[]).unwrap();
    fs::create_dir_all(mnt.join("a/b")).unwrap();
    for i in 0..40 {
        fs::write(mnt.join(format!("a/old{i}")), pattern(4096, i)).unwrap();
    }
    fs::write(mnt.join("a/b/deep"), b"deep").unwrap();
    for k in 0..8 {
        fs::create_dir(mnt.join(format!("top{k}"))).unwrap();
        fs::write(mnt.join(format!("top{k}/x")), format!("{k}")).unwrap();
    }
    let held = fs::File::open(mnt.join("a/old7")).unwrap();

    // Bad input changes nothing.
    let (code, _, err) = n1.cli(&["volume", "add-brick", "grow", "127.77.9.1:/only-one"]);
    assert_ne!(code, 0);
    assert!(err.contains("multiple"), "{err}");
    let (code, _, err) = n1.cli(&["volume", "rebalance", "grow", "fix-layout", "start"]);
    assert_ne!(code, 0, "one set: nothing to distribute over");
    assert!(err.contains("single replica set"), "{err}");

    let set2 = bricks(&p, "grow2");
    let mut args = vec!["volume", "add-brick", "grow", "replica", "3"];
    args.extend(set2.iter().map(String::as_str));
    args.push("force");
    let out = n1.ok(&args);
    assert!(out.contains("success"), "{out}");
    let info = p.nodes[2].ok(&["volume", "info", "grow"]);
    assert!(info.contains("Number of Bricks: 2 x 3 = 6"), "{info}");
    assert!(
        eventually(Duration::from_secs(45), || m
            .log_text()
            .contains("switched")),
        "the client switched to the larger volume:\n{}",
        m.log_text()
    );
    // The new bricks run, and every old file is still there, through the new graph.
    let status = json(&n1.ok(&["--json", "volume", "status", "grow"]));
    assert_eq!(status.list("bricks").len(), 6);
    assert!(
        eventually(Duration::from_secs(20), || {
            let s = json(&n1.ok(&["--json", "volume", "status", "grow"]));
            s.list("bricks").iter().all(|b| b.get_bool("online"))
        }),
        "the new bricks came online"
    );
    for i in 0..40 {
        assert_eq!(
            fs::read(mnt.join(format!("a/old{i}"))).unwrap(),
            pattern(4096, i)
        );
    }
    // Directories that exist only in the first set stay visible whatever set their name
    // hashes to now (the kernel's cached entries expire first).
    std::thread::sleep(Duration::from_millis(1500));
    for k in 0..8 {
        assert_eq!(
            fs::read_to_string(mnt.join(format!("top{k}/x"))).unwrap(),
            format!("{k}"),
            "top{k} after add-brick"
        );
    }
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut &held, &mut buf).unwrap();
    assert_eq!(
        buf,
        pattern(4096, 7),
        "a file held open across add-brick still reads"
    );
    drop(held);

    let out = n1.ok(&["volume", "rebalance", "grow", "fix-layout", "start"]);
    assert!(out.contains("fix-layout started"), "{out}");
    let mut last = serde_json::Value::Null;
    assert!(
        eventually(Duration::from_secs(60), || {
            last = rebalance_status(n1, "grow");
            last.get_str("state") == "completed"
        }),
        "fix-layout completes: {last:?}"
    );
    assert!(last.get_num("dirs_scanned") >= 11.0, "{last:?}");
    // The root, a, a/b and the top dirs held entries in the first set only, which kept
    // their whole rings until now.
    assert_eq!(last.get_num("dirs_changed"), 11.0, "{last:?}");
    let moved = last.get_num("moved_share");
    assert!(
        (0.45..=0.55).contains(&moved),
        "one set to two moves half of each ring, no more: {moved}"
    );
    // Directories exist on the new set with a share of the ring.
    let dirs2: Vec<&Path> = set2
        .iter()
        .map(|s| Path::new(s.split_once(':').unwrap().1))
        .collect();
    assert!(dirs2.iter().all(|d| d.join("a/b").is_dir()));
    // New files now spread over both sets, old ones are all still found, and find lists
    // every name once.
    for i in 0..40 {
        fs::write(mnt.join(format!("a/new{i}")), pattern(4096, 100 + i)).unwrap();
    }
    let on_new = (0..40)
        .filter(|i| dirs2[0].join(format!("a/new{i}")).exists())
        .count();
    assert!(
        (8..=32).contains(&on_new),
        "new files use the new set: {on_new}/40"
    );
    for i in 0..40 {
        assert_eq!(
            fs::read(mnt.join(format!("a/old{i}"))).unwrap(),
            pattern(4096, i)
        );
        assert_eq!(
            fs::read(mnt.join(format!("a/new{i}"))).unwrap(),
            pattern(4096, 100 + i)
        );
    }
    let out = std::process::Command::new("find")
        .arg(&mnt)
        .arg("-type")
        .arg("f")
        .output()
        .unwrap();
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let unique: std::collections::BTreeSet<&String> = listed.iter().collect();
    assert_eq!(listed.len(), 89, "{listed:?}");
    assert_eq!(unique.len(), 89);
    drop(m);
    n1.ok(&["volume", "stop", "grow"]);
}

/// The set (index into `set_dirs`) that `name` hashes to in directory `rel`, from the
/// bricks' layouts.
fn hashed_set(set_dirs: &[&Path], rel: &str, name: &str) -> Option<usize> {
    use cairn_translators::cluster::dht::layout::{GroupLayout, Layout, XATTR_LAYOUT, name_hash};
    let slot = |d: &Path| {
        let mut buf = vec![0u8; 64];
        let n = rustix::fs::lgetxattr(d.join(rel), XATTR_LAYOUT, &mut buf).ok()?;
        GroupLayout::decode(&buf[..n]).ok()
    };
    Layout::new(set_dirs.iter().map(|d| slot(d)).collect()).group_for(name_hash(name, true))
}

/// Regular files in `dir` that are linkto pointers (mode 01000).
fn pointers_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| {
                    e.metadata().is_ok_and(|m| {
                        m.is_file()
                            && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777
                                == 0o1000
                    })
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Writes new files `dir/w{k}` one after another until `stop`, returning those whose write
/// and close succeeded (acknowledged), with their contents' seeds.
fn ingest(
    dir: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut k = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let path = dir.join(format!("w{k}"));
            if fs::write(&path, pattern(2000 + k as usize % 5000, 7000 + k)).is_ok() {
                acked.push(k);
            }
            k += 1;
            std::thread::sleep(Duration::from_millis(15));
        }
        acked
    })
}

#[test]
fn rebalance_moves_files_online_keeps_every_write_and_resumes_after_a_restart() {
    let mut p = pool(10);
    let sets: Vec<Vec<String>> = ["mig1", "mig2", "mig3"]
        .iter()
        .map(|t| bricks(&p, t))
        .collect();
    let mut args = vec!["volume", "create", "mig", "replica", "3"];
    args.extend(sets[0].iter().chain(&sets[1]).map(String::as_str));
    args.push("force");
    p.nodes[0].ok(&args);
    p.nodes[0].ok(&["volume", "set", "mig", "cluster.rebal-throttle", "lazy"]);
    p.nodes[0].ok(&["volume", "start", "mig"]);
    let mnt = p.tmp.path().join("mnt-mig");
    let m = mount_from_server("127.77.10.2:/mig", &mnt, &[]).unwrap();
    fs::create_dir_all(mnt.join("s/t")).unwrap();
    fs::create_dir_all(mnt.join("in")).unwrap();
    let n = 300;
    for i in 0..n {
        fs::write(mnt.join(format!("s/f{i}")), pattern(3000 + i, i as u64)).unwrap();
    }
    fs::write(mnt.join("s/t/deep"), b"deep").unwrap();
    let mut args = vec!["volume", "add-brick", "mig", "replica", "3"];
    args.extend(sets[2].iter().map(String::as_str));
    args.push("force");
    p.nodes[0].ok(&args);
    assert!(
        eventually(Duration::from_secs(45), || m
            .log_text()
            .contains("switched")),
        "client switched graphs"
    );
    let dirs: Vec<PathBuf> = sets
        .iter()
        .map(|s| Path::new(s[0].split_once(':').unwrap().1).to_path_buf())
        .collect();
    let dir_refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();

    // While it runs: a writer appends to an open file, another ingests new files, a
    // reader checks others.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), mnt.join("s/f1"));
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
            let mut written = Vec::new();
            let mut k = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || k < 20 {
                let chunk = format!("[write {k}]");
                f.write_all(chunk.as_bytes()).unwrap();
                written.extend_from_slice(chunk.as_bytes());
                k += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            f.sync_all().unwrap();
            written
        })
    };
    let ingester = ingest(mnt.join("in"), stop.clone());
    let reader = {
        let (stop, mnt) = (stop.clone(), mnt.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            let mut i = 2;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let got = fs::read(mnt.join(format!("s/f{i}"))).unwrap();
                assert_eq!(got, pattern(3000 + i, i as u64), "s/f{i} during rebalance");
                reads += 1;
                i = 2 + (i + 7) % (n - 2);
            }
            reads
        })
    };

    let out = p.nodes[0].ok(&["volume", "rebalance", "mig", "start"]);
    assert!(out.contains("rebalance started"), "{out}");
    // Interrupt it: the node that runs it restarts mid-way and resumes by itself.
    let t0 = Instant::now();
    loop {
        let s = rebalance_status(&p.nodes[0], "mig");
        assert_ne!(
            s.get_str("state"),
            "completed",
            "restart came too late: {s:?}"
        );
        if s.get_num("files_migrated") >= 1.0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "files never started moving: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    p.nodes[0].restart();
    assert!(
        eventually(Duration::from_secs(10), || p.nodes[0]
            .log_text()
            .contains("resuming an interrupted rebalance")),
        "the restarted cairnd resumes the run:\n{}",
        p.nodes[0].log_text()
    );
    // Another node reports the run too (status is per node).
    let all = json(&p.nodes[1].ok(&["--json", "volume", "rebalance", "mig", "status"]));
    assert_eq!(all.as_array().map(Vec::len), Some(3), "{all:?}");
    let mut last = serde_json::Value::Null;
    let done = eventually(Duration::from_secs(90), || {
        last = rebalance_status(&p.nodes[0], "mig");
        last.get_str("state") == "completed"
    });
    assert!(
        done,
        "the resumed rebalance completes: {last:?}\ncairnd log:\n{}\nmount log:\n{}",
        p.nodes[0].log_text(),
        m.log_text()
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().unwrap();
    let acked = ingester.join().unwrap();
    let reads = reader.join().unwrap();
    assert!(reads > 0 && !acked.is_empty());
    assert_eq!(last.get_num("files_failed"), 0.0, "{last:?}");
    let ring = last.get_num("moved_share");
    assert!(
        (0.30..=0.37).contains(&ring),
        "two sets to three moves a third of each ring, no more: {ring}"
    );
    let table = p.nodes[0].ok(&["volume", "rebalance", "mig", "status", "--watch"]);
    assert!(table.contains("rebalance completed"), "{table}");

    // Every acknowledged write is there, in order.
    let mut want = pattern(3001, 1);
    want.extend_from_slice(&written);
    assert_eq!(
        fs::read(mnt.join("s/f1")).unwrap(),
        want,
        "appends made while it moved"
    );
    for k in &acked {
        assert_eq!(
            fs::read(mnt.join(format!("in/w{k}"))).unwrap(),
            pattern(2000 + *k as usize % 5000, 7000 + k),
            "in/w{k}, written during the rebalance"
        );
    }
    // Every file is in its hashed set and only there; no pointer is left; the directory is
    // settled; about a third of the files moved.
    let mut on_new = 0;
    for i in 0..n {
        let name = format!("f{i}");
        let h = hashed_set(&dir_refs, "s", &name).expect("layout covers the ring");
        let held: Vec<bool> = dirs
            .iter()
            .map(|d| d.join("s").join(&name).exists())
            .collect();
        let want: Vec<bool> = (0..3).map(|g| g == h).collect();
        assert_eq!(held, want, "s/{name} is only in set {h}");
        if h == 2 {
            on_new += 1;
        }
        if i != 1 {
            assert_eq!(
                fs::read(mnt.join(format!("s/{name}"))).unwrap(),
                pattern(3000 + i, i as u64)
            );
        }
    }
    assert!(
        (n / 6..=n / 2).contains(&on_new),
        "about a third of the files belong to the new set: {on_new}/{n}"
    );
    for d in &dirs {
        for sub in ["s", "in"] {
            let left = pointers_in(&d.join(sub));
            assert!(
                left.is_empty(),
                "no pointer left in {}/{sub}: {left:?}",
                d.display()
            );
        }
    }
    let mut buf = [0u8; 64];
    let len =
        rustix::fs::lgetxattr(dirs[2].join("s"), "trusted.cairn.dht.layout", &mut buf).unwrap();
    assert!(
        len == 14 && buf[1] & 1 == 1,
        "the directory's layout is settled; rebalance said:\n{}",
        p.nodes[0]
            .log_text()
            .lines()
            .filter(|l| l.contains("unsettled") || l.contains("settle") || l.contains("rebalance"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(fs::read(mnt.join("s/t/deep")).unwrap(), b"deep");
    let mut listed: Vec<String> = fs::read_dir(mnt.join("s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
    want.push("t".into());
    want.sort();
    if listed != want {
        // Say which names went wrong and what every brick holds for them.
        let odd: Vec<String> = want
            .iter()
            .filter(|w| listed.iter().filter(|l| l == w).count() != 1)
            .map(|w| {
                let copies: Vec<String> = sets
                    .iter()
                    .flatten()
                    .map(|b| {
                        let f = Path::new(b.split_once(':').unwrap().1).join("s").join(w);
                        match fs::metadata(&f) {
                            Ok(m) => format!(
                                "{b}: mode {:o} size {}",
                                std::os::unix::fs::PermissionsExt::mode(&m.permissions()),
                                m.len()
                            ),
                            Err(e) => format!("{b}: {e}"),
                        }
                    })
                    .collect();
                format!("{w}: {copies:?}")
            })
            .collect();
        panic!(
            "each name listed once; wrong: {odd:#?}\nmount log:\n{}",
            m.log_text()
        );
    }
    let listed = fs::read_dir(mnt.join("in")).unwrap().count();
    assert_eq!(listed, acked.len(), "each ingested name listed once");
    drop(m);
    p.nodes[0].ok(&["volume", "stop", "mig"]);
}

#[test]
fn remove_brick_drains_a_replica_set_online_and_commit_waits_for_it() {
    let p = pool(11);
    let n1 = &p.nodes[0];
    let set1 = bricks(&p, "rb1");
    let set2 = bricks(&p, "rb2");
    let mut args = vec!["volume", "create", "shrink", "replica", "3"];
    args.extend(set1.iter().chain(&set2).map(String::as_str));
    args.push("force");
    n1.ok(&args);
    // Committed WORM files must leave with their retention.
    n1.ok(&["volume", "set", "shrink", "features.worm-file-level", "on"]);
    n1.ok(&["volume", "start", "shrink"]);
    let mnt = p.tmp.path().join("mnt-shrink");
    let m = mount_from_server("127.77.11.2:/shrink", &mnt, &[]).unwrap();
    let n = 200;
    for d in ["a", "a/b", "in"] {
        fs::create_dir_all(mnt.join(d)).unwrap();
    }
    for i in 0..n {
        let dir = if i % 3 == 0 { "a/b" } else { "a" };
        fs::write(mnt.join(format!("{dir}/f{i}")), pattern(1000 + i, i as u64)).unwrap();
    }
    // Symlinks (a viewer's "latest" links) move too.
    let links: Vec<usize> = (0..n).filter(|i| i % 3 != 0).take(30).collect();
    for i in &links {
        std::os::unix::fs::symlink(format!("../f{i}"), mnt.join(format!("a/b/l{i}"))).unwrap();
    }
    let d1 = Path::new(set1[0].split_once(':').unwrap().1).to_path_buf();
    let on_leaving = (0..n)
        .filter(|i| {
            let dir = if i % 3 == 0 { "a/b" } else { "a" };
            d1.join(format!("{dir}/f{i}")).exists()
        })
        .count();
    assert!(on_leaving > 0, "the first set holds files");
    // Some images committed (chmod a-w), with their retention dates.
    let retained: Vec<(String, Vec<u8>)> = (0..n)
        .filter(|i| i % 3 != 0)
        .take(12)
        .map(|i| {
            let f = mnt.join(format!("a/f{i}"));
            fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
            let mut buf = vec![0u8; 32];
            let len = rustix::fs::getxattr(&f, "user.cairn.retain-until", &mut buf).unwrap();
            buf.truncate(len);
            (format!("a/f{i}"), buf)
        })
        .collect();
    assert!(
        retained.iter().any(|(rel, _)| d1.join(rel).exists()),
        "some committed file is on the leaving set"
    );
    let links_leaving = links
        .iter()
        .filter(|i| fs::symlink_metadata(d1.join(format!("a/b/l{i}"))).is_ok())
        .count();
    assert!(links_leaving > 0, "the first set holds symlinks");

    // Bad input changes nothing.
    let leaving: Vec<&str> = set1.iter().map(String::as_str).collect();
    let cmd = |tail: &[&str], bricks: &[&str]| {
        let mut a = vec!["volume", "remove-brick", "shrink"];
        a.extend_from_slice(bricks);
        a.extend_from_slice(tail);
        n1.cli(&a)
    };
    let (code, _, err) = cmd(&["start"], &leaving[..2]);
    assert_ne!(code, 0);
    assert!(err.contains("whole replica sets"), "{err}");
    let all: Vec<&str> = set1.iter().chain(&set2).map(String::as_str).collect();
    let (code, _, err) = cmd(&["start"], &all);
    assert_ne!(code, 0);
    assert!(err.contains("every replica set"), "{err}");
    let (code, _, err) = cmd(&["commit"], &leaving);
    assert_ne!(code, 0);
    assert!(err.contains("no remove-brick"), "{err}");
    let (code, _, err) = cmd(&["begin"], &leaving);
    assert_eq!(code, 2, "{err}");
    let info = n1.ok(&["volume", "info", "shrink"]);
    assert!(
        info.contains("2 x 3 = 6") && !info.contains("being removed"),
        "{info}"
    );

    // While it drains: new files keep coming, old ones are read.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ingester = ingest(mnt.join("in"), stop.clone());
    let reader = {
        let (stop, mnt) = (stop.clone(), mnt.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut i = 0;
            let mut reads = 0u64;
            let mut errors = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let dir = if i % 3 == 0 { "a/b" } else { "a" };
                match fs::read(mnt.join(format!("{dir}/f{i}"))) {
                    Ok(got) => assert_eq!(
                        got,
                        pattern(1000 + i, i as u64),
                        "{dir}/f{i} during the drain"
                    ),
                    Err(e) => errors.push(format!("{:?} {dir}/f{i}: {e}", t0.elapsed())),
                }
                reads += 1;
                i = (i + 7) % n;
            }
            (reads, errors)
        })
    };
    let t_start = Instant::now();
    let (code, out, err) = cmd(&["start"], &leaving);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("remove-brick started"), "{out}");
    let info = n1.ok(&["volume", "info", "shrink"]);
    assert_eq!(info.matches("(being removed)").count(), 3, "{info}");
    // Not drained yet: commit is refused, and nothing changes.
    let (code, _, err) = cmd(&["commit"], &leaving);
    assert_ne!(code, 0, "commit before the drain completed");
    assert!(err.contains("not drained"), "{err}");
    let mut last = serde_json::Value::Null;
    let drained = eventually(Duration::from_secs(120), || {
        last = remove_brick_status(n1, "shrink", &leaving);
        last.get_str("state") != "in progress"
    });
    assert!(
        drained && last.get_str("state") == "completed",
        "the drain completes: {last:?}\n{}",
        n1.log_text()
    );
    assert_eq!(last.get_str("kind"), "remove-brick");
    assert!(
        last.get_num("files_migrated") >= (on_leaving + links_leaving) as f64,
        "every file and symlink of the leaving set moved: {last:?} ({on_leaving} files and {links_leaving} links were there)"
    );
    // Nothing but directories (and internal state) is left on the leaving bricks.
    for b in &set1 {
        let root = Path::new(b.split_once(':').unwrap().1);
        let out = std::process::Command::new("find")
            .arg(root)
            .args([
                "-path",
                &format!("{}/.cairn", root.display()),
                "-prune",
                "-o",
                "!",
                "-type",
                "d",
                "-print",
            ])
            .output()
            .unwrap();
        let left = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(left.trim().is_empty(), "files left on {b}:\n{left}");
    }
    // start again drains again (a no-op now), without a new transaction.
    let (code, out, err) = cmd(&["start"], &leaving);
    assert_eq!(code, 0, "a second start drains again: {out}{err}");
    let mut again = serde_json::Value::Null;
    assert!(
        eventually(Duration::from_secs(60), || {
            again = remove_brick_status(n1, "shrink", &leaving);
            again.get_str("state") == "completed"
        }),
        "the second drain completes: {again:?}"
    );
    assert_eq!(again.get_num("files_migrated"), 0.0, "{again:?}");
    let (code, out, err) = cmd(&["commit"], &leaving);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("commit successful"), "{out}");
    let info = p.nodes[1].ok(&["volume", "info", "shrink"]);
    assert!(
        info.contains("Number of Bricks: 1 x 3 = 3") && !info.contains("rb1"),
        "{info}"
    );
    assert!(
        eventually(Duration::from_secs(45), || m
            .log_text()
            .matches("switched")
            .count()
            >= 2),
        "the client switched to the smaller volume:\n{}",
        m.log_text()
    );
    // The removed bricks' processes stop.
    assert!(
        eventually(Duration::from_secs(20), || {
            let s = json(&n1.ok(&["--json", "volume", "status", "shrink"]));
            s.list("bricks").len() == 3
        }),
        "three bricks left"
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = ingester.join().unwrap();
    let (reads, errors) = reader.join().unwrap();
    assert!(reads > 0 && !acked.is_empty());
    assert!(
        errors.is_empty(),
        "reads failed during the drain or the commit ({:?} since start):\n{}\nmount log:\n{}",
        t_start.elapsed(),
        errors.join("\n"),
        m.log_text()
    );
    // Every file, old and new, reads back; each is listed once.
    for i in 0..n {
        let dir = if i % 3 == 0 { "a/b" } else { "a" };
        assert_eq!(
            fs::read(mnt.join(format!("{dir}/f{i}"))).unwrap(),
            pattern(1000 + i, i as u64),
            "{dir}/f{i} after the commit"
        );
    }
    for k in &acked {
        assert_eq!(
            fs::read(mnt.join(format!("in/w{k}"))).unwrap(),
            pattern(2000 + *k as usize % 5000, 7000 + k),
            "in/w{k}, written during the drain"
        );
    }
    // Moved committed files keep their date and stay immutable.
    for (rel, until) in &retained {
        let f = mnt.join(rel);
        let mut buf = vec![0u8; 32];
        let len = rustix::fs::getxattr(&f, "user.cairn.retain-until", &mut buf).unwrap();
        assert_eq!(&buf[..len], &until[..], "{rel} keeps its retention date");
        let e = fs::remove_file(&f).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{rel}: {e}");
        let e = fs::OpenOptions::new().append(true).open(&f).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{rel}: {e}");
    }
    for &i in &links {
        let l = mnt.join(format!("a/b/l{i}"));
        assert_eq!(
            fs::read_link(&l).unwrap(),
            Path::new(&format!("../f{i}")),
            "a/b/l{i} after the commit"
        );
        assert_eq!(fs::read(&l).unwrap(), pattern(1000 + i, i as u64));
    }
    let out = std::process::Command::new("find")
        .arg(&mnt)
        .args(["-type", "f"])
        .output()
        .unwrap();
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let unique: std::collections::BTreeSet<&String> = listed.iter().collect();
    assert_eq!(listed.len(), n + acked.len(), "every file listed");
    assert_eq!(unique.len(), listed.len(), "each once");
    drop(m);
    n1.ok(&["volume", "stop", "shrink"]);
}

/// What the first brick of each set holds under `root`: data files (relative path →
/// contents) and linkto pointers (relative path → the set they name).
fn brick_contents(root: &Path) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, String>) {
    let mut data = BTreeMap::new();
    let mut pointers = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p == root.join(".cairn") {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if m.is_dir() {
                stack.push(p);
            } else if std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777 == 0o1000 {
                let mut buf = vec![0u8; 256];
                let n =
                    rustix::fs::lgetxattr(&p, "trusted.cairn.dht.linkto", &mut buf).unwrap_or(0);
                pointers.insert(rel, String::from_utf8_lossy(&buf[..n]).into_owned());
            } else {
                data.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    (data, pointers)
}

#[test]
fn a_rename_storm_during_a_rebalance_keeps_the_namespace_exact() {
    let p = pool(12);
    let n1 = &p.nodes[0];
    let sets: Vec<Vec<String>> = ["rs1", "rs2", "rs3"]
        .iter()
        .map(|t| bricks(&p, t))
        .collect();
    let mut args = vec!["volume", "create", "storm", "replica", "3"];
    args.extend(sets[0].iter().chain(&sets[1]).map(String::as_str));
    args.push("force");
    n1.ok(&args);
    n1.ok(&["volume", "start", "storm"]);
    let mnt = p.tmp.path().join("mnt-storm");
    let m = mount_from_server("127.77.12.2:/storm", &mnt, &[]).unwrap();
    let threads = 4;
    let per = 60;
    for d in ["x", "y"] {
        fs::create_dir_all(mnt.join(d)).unwrap();
    }
    for t in 0..threads {
        for i in 0..per {
            fs::write(
                mnt.join(format!("x/t{t}-{i}")),
                pattern(500 + i * 13, (t * 1000 + i) as u64),
            )
            .unwrap();
        }
    }
    let mut args = vec!["volume", "add-brick", "storm", "replica", "3"];
    args.extend(sets[2].iter().map(String::as_str));
    args.push("force");
    n1.ok(&args);
    assert!(
        eventually(Duration::from_secs(45), || m
            .log_text()
            .contains("switched")),
        "client switched graphs"
    );
    n1.ok(&["volume", "rebalance", "storm", "start"]);

    // Each thread renames its own files round and round between names and directories
    // (most renames change set), while the rebalance moves them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, mnt) = (stop.clone(), mnt.clone());
            std::thread::spawn(move || {
                let mut names: Vec<String> = (0..per).map(|i| format!("x/t{t}-{i}")).collect();
                let mut errors = Vec::new();
                let mut round = 0usize;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) || round < 2 {
                    round += 1;
                    for (i, name) in names.iter_mut().enumerate() {
                        let dir = if (round + i).is_multiple_of(2) {
                            "x"
                        } else {
                            "y"
                        };
                        let to = format!("{dir}/t{t}-{i}-r{round}");
                        match fs::rename(mnt.join(&*name), mnt.join(&to)) {
                            Ok(()) => *name = to,
                            Err(e) => errors.push(format!("{name} -> {to}: {e}")),
                        }
                    }
                }
                (names, errors, round)
            })
        })
        .collect();
    let mut last = serde_json::Value::Null;
    let done = eventually(Duration::from_secs(120), || {
        last = rebalance_status(n1, "storm");
        last.get_str("state") != "in progress"
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut expect: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut rounds = 0;
    for (t, h) in storm.into_iter().enumerate() {
        let (names, errors, round) = h.join().unwrap();
        assert!(
            errors.is_empty(),
            "renames failed during the rebalance:\n{}",
            errors.join("\n")
        );
        rounds += round;
        for (i, name) in names.into_iter().enumerate() {
            expect.insert(name, pattern(500 + i * 13, (t * 1000 + i) as u64));
        }
    }
    assert!(done, "the rebalance ends: {last:?}");
    assert!(rounds >= 2 * threads, "{rounds} rounds of renames");
    // Through the mount: exactly the final names, each once, with their bytes.
    let out = std::process::Command::new("find")
        .arg(&mnt)
        .args(["-type", "f"])
        .output()
        .unwrap();
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            l.strip_prefix(&format!("{}/", mnt.display()))
                .unwrap_or(l)
                .to_string()
        })
        .collect();
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), unique.len(), "a name listed twice");
    assert_eq!(
        unique,
        expect.keys().cloned().collect::<BTreeSet<_>>(),
        "the mount shows exactly the final names"
    );
    for (rel, bytes) in &expect {
        assert_eq!(&fs::read(mnt.join(rel)).unwrap(), bytes, "{rel}");
    }
    // On the bricks: each file's data in exactly one set, every pointer names the set
    // that holds its file.
    let set_names = [
        "storm-replicate-0",
        "storm-replicate-1",
        "storm-replicate-2",
    ];
    let mut holder: BTreeMap<String, usize> = BTreeMap::new();
    let mut all_pointers = Vec::new();
    for (g, set) in sets.iter().enumerate() {
        let (data, pointers) = brick_contents(Path::new(set[0].split_once(':').unwrap().1));
        for (rel, bytes) in data {
            assert_eq!(
                expect.get(&rel),
                Some(&bytes),
                "{rel} on set {g} is a file of the volume"
            );
            assert!(
                holder.insert(rel.clone(), g).is_none(),
                "{rel} has data in two sets"
            );
        }
        all_pointers.extend(pointers.into_iter().map(|(rel, to)| (g, rel, to)));
    }
    assert_eq!(
        holder.len(),
        expect.len(),
        "every file has its data somewhere"
    );
    // A pointer of a live name names its holder; no pointer is left of a name that no
    // longer exists.
    let mut orphans = Vec::new();
    for (g, rel, to) in all_pointers {
        match holder.get(&rel) {
            Some(h) => assert_eq!(
                to, set_names[*h],
                "pointer {rel} on set {g} names the holder"
            ),
            None => orphans.push((g, rel)),
        }
    }
    assert!(
        orphans.is_empty(),
        "pointers of names that no longer exist: {orphans:?}"
    );
    drop(m);
    n1.ok(&["volume", "stop", "storm"]);
}
