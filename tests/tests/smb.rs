//! SMB shares through Samba, with `smbclient` against a three-node replica-3 volume with
//! `smb.enable on`. Each node lives in its own network namespace with its own `smbd`
//! (started by its `cairnd`) and its own `smb.conf`, as on three separate machines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_tests::*;

const VOL: &str = "images";
const USER: &str = "root";
const PASS: &str = "Cairn-test-1";

struct Cluster {
    nodes: Vec<DaemonProc>,
    bricks: Vec<PathBuf>,
    _net: Netns,
    tmp: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.stop();
        }
        // Bricks, the shares' mounts and every smbd (their command lines name the paths).
        kill_everything_under(self.tmp.path());
    }
}

/// A node's own Samba setup: everything Samba keeps under `dir`, and a password for USER.
fn samba_conf(dir: &Path) -> PathBuf {
    for d in [
        "run", "lock", "state", "cache", "private", "ncalrpc", "logs",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let conf = dir.join("smb.conf");
    let d = dir.display();
    fs::write(
        &conf,
        format!(
            "[global]\n\tserver role = standalone server\n\tworkgroup = CAIRNTEST\n\
             \tdisable netbios = yes\n\tsmb ports = 445\n\tpid directory = {d}/run\n\
             \tlock directory = {d}/lock\n\tstate directory = {d}/state\n\
             \tcache directory = {d}/cache\n\tprivate dir = {d}/private\n\
             \tncalrpc dir = {d}/ncalrpc\n\tlog file = {d}/logs/log.%m\n\
             \tload printers = no\n\tprinting = bsd\n\tprintcap name = /dev/null\n\
             \tdisable spoolss = yes\n\tmap to guest = never\n"
        ),
    )
    .unwrap();
    let mut p = Command::new("smbpasswd")
        .arg("-c")
        .arg(&conf)
        .args(["-a", "-s", USER])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("smbpasswd (scripts/deps --test installs samba)");
    p.stdin
        .take()
        .unwrap()
        .write_all(format!("{PASS}\n{PASS}\n").as_bytes())
        .unwrap();
    assert!(p.wait().unwrap().success(), "smbpasswd");
    conf
}

impl Cluster {
    fn start() -> Cluster {
        require_root();
        let net = Netns::new("s46", "10.77.46", 3);
        let tmp = tempfile::Builder::new()
            .prefix("cairn-smb-")
            .tempdir()
            .unwrap();
        let nodes: Vec<DaemonProc> = (0..3)
            .map(|i| {
                let dir = tmp.path().join(format!("n{i}"));
                let conf = samba_conf(&dir.join("samba"));
                let extra = vec![
                    "--smb-conf".to_string(),
                    conf.display().to_string(),
                    "--smb-mounts".to_string(),
                    dir.join("smb").display().to_string(),
                ];
                DaemonProc::start_with(&dir, &net.addrs[i], Some(&net.names[i]), &extra)
            })
            .collect();
        let bricks: Vec<PathBuf> = (0..3)
            .map(|i| tmp.path().join(format!("brick{i}")))
            .collect();
        pool_and_replica3(&nodes, VOL, &bricks);
        nodes[0].ok(&["volume", "set", VOL, "smb.enable", "on"]);
        nodes[0].ok(&["volume", "set", VOL, "smb.valid-users", USER]);
        nodes[0].ok(&["volume", "start", VOL]);
        Cluster {
            nodes,
            bricks,
            _net: net,
            tmp,
        }
    }
}

/// Runs `smbclient //HOST/SHARE -c CMDS` in `dir`; returns (success, stdout + stderr).
fn smbclient(host: &str, share: &str, dir: &Path, auth: &str, cmds: &str) -> (bool, String) {
    let out = Command::new("smbclient")
        .arg(format!("//{host}/{share}"))
        .args(["-U", auth, "-m", "SMB3", "-c", cmds])
        .current_dir(dir)
        .output()
        .expect("smbclient (scripts/deps --test installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn auth() -> String {
    format!("{USER}%{PASS}")
}

#[test]
fn smb_clients_put_get_list_rename_and_delete_through_every_node() {
    let c = Cluster::start();
    let local = c.tmp.path().join("local");
    fs::create_dir_all(&local).unwrap();
    // Every node's smbd offers the share once cairnd has mounted the volume.
    for (i, n) in c.nodes.iter().enumerate() {
        let ok = eventually(Duration::from_secs(60), || {
            smbclient(&n.host, VOL, &local, &auth(), "ls").0
        });
        if !ok {
            // What Samba and cairnd said, for the failure report.
            let d = c.tmp.path().join(format!("n{i}/samba"));
            let _ = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "tail -n 40 '{0}'/logs/*; cat '{0}/smb.conf' '{0}/cairn-shares.conf'",
                    d.display()
                ))
                .status();
            eprintln!("{}", n.log_text());
        }
        assert!(
            ok,
            "{} shares {VOL}: {}",
            n.host,
            smbclient(&n.host, VOL, &local, &auth(), "ls").1
        );
    }

    let ct = pattern(517 * 1024, 11);
    let mr = pattern(57 * 1024, 12);
    fs::write(local.join("ct.dcm"), &ct).unwrap();
    fs::write(local.join("mr.dcm"), &mr).unwrap();
    let (ok, out) = smbclient(
        &c.nodes[0].host,
        VOL,
        &local,
        &auth(),
        "mkdir study1; cd study1; put ct.dcm; put mr.dcm",
    );
    assert!(ok, "put: {out}");
    for b in &c.bricks {
        assert_eq!(fs::read(b.join("study1/ct.dcm")).unwrap(), ct);
        assert_eq!(fs::read(b.join("study1/mr.dcm")).unwrap(), mr);
    }

    // Read back through another node: byte-identical.
    let (ok, out) = smbclient(
        &c.nodes[1].host,
        VOL,
        &local,
        &auth(),
        "cd study1; get ct.dcm ct-back.dcm; get mr.dcm mr-back.dcm",
    );
    assert!(ok, "get: {out}");
    assert_eq!(fs::read(local.join("ct-back.dcm")).unwrap(), ct);
    assert_eq!(fs::read(local.join("mr-back.dcm")).unwrap(), mr);

    // ls, rename and del through the third node; the bricks follow.
    let (ok, out) = smbclient(
        &c.nodes[2].host,
        VOL,
        &local,
        &auth(),
        "cd study1; rename mr.dcm mr-renamed.dcm; del ct.dcm; ls",
    );
    assert!(ok, "rename/del: {out}");
    assert!(out.contains("mr-renamed.dcm"), "{out}");
    assert!(!out.contains("ct.dcm"), "{out}");
    for b in &c.bricks {
        assert!(!b.join("study1/ct.dcm").exists());
        assert!(!b.join("study1/mr.dcm").exists());
        assert_eq!(fs::read(b.join("study1/mr-renamed.dcm")).unwrap(), mr);
    }

    // Windows metadata: an alternate data stream survives, kept in a user xattr.
    fs::write(local.join("note.txt"), b"reviewed by Dr. A").unwrap();
    let (ok, out) = smbclient(
        &c.nodes[0].host,
        VOL,
        &local,
        &auth(),
        "cd study1; put note.txt mr-renamed.dcm:review",
    );
    assert!(ok, "put a stream: {out}");
    let (ok, out) = smbclient(
        &c.nodes[1].host,
        VOL,
        &local,
        &auth(),
        "cd study1; get mr-renamed.dcm:review review-back.txt",
    );
    assert!(ok, "get a stream: {out}");
    assert_eq!(
        fs::read(local.join("review-back.txt")).unwrap(),
        b"reviewed by Dr. A"
    );
    assert_eq!(
        fs::read(c.bricks[2].join("study1/mr-renamed.dcm")).unwrap(),
        mr,
        "the stream did not touch the image"
    );

    // A wrong password is refused and changes nothing.
    let (ok, _) = smbclient(
        &c.nodes[0].host,
        VOL,
        &local,
        &format!("{USER}%wrong"),
        "del study1/mr-renamed.dcm",
    );
    assert!(!ok, "a wrong password is refused");
    assert!(c.bricks[0].join("study1/mr-renamed.dcm").exists());

    // smb.enable off: the share goes away on every node.
    c.nodes[0].ok(&["volume", "set", VOL, "smb.enable", "off"]);
    for n in &c.nodes {
        assert!(
            eventually(Duration::from_secs(30), || {
                let (ok, out) = smbclient(&n.host, VOL, &local, &auth(), "ls");
                !ok && out.contains("NT_STATUS_BAD_NETWORK_NAME")
            }),
            "{} no longer shares {VOL}",
            n.host
        );
    }
}

#[test]
fn bad_share_settings_are_refused() {
    let p = pool(47);
    let b = bricks(&p, "opts");
    let mut args = vec!["volume", "create", "opts", "replica", "3"];
    args.extend(b.iter().map(String::as_str));
    args.push("force");
    p.nodes[0].ok(&args);
    for (key, bad) in [
        ("smb.share-name", "two words"),
        ("smb.share-name", "global"),
        ("smb.valid-users", "a;rm -rf"),
        ("smb.enable", "maybe"),
    ] {
        let (code, _, err) = p.nodes[0].cli(&["volume", "set", "opts", key, bad]);
        assert_ne!(code, 0, "{key} {bad} is refused");
        assert!(err.contains(key), "the error names {key}: {err}");
    }
    p.nodes[0].ok(&["volume", "set", "opts", "smb.share-name", "PACS-2026"]);
    let got = p.nodes[0].ok(&["volume", "get", "opts", "smb.share-name"]);
    assert!(got.contains("PACS-2026"), "{got}");
}
