//! Bad input gets a clear error and changes nothing: volfiles, RPC frames, brick
//! directories, clients of another volume, damaged state files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cairn_tests::*;

fn closed_by_peer(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

#[test]
fn hostile_frames_close_only_their_connection_and_are_logged() {
    let v = Volume::start();
    fs::write(v.mnt.join("before"), b"1").unwrap();
    let addr = v.brick.addr.clone();

    // Garbage.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"\x00\x01garbage that is not a frame at all, not even close")
        .unwrap();
    assert!(closed_by_peer(s));
    // A header announcing a 4 GiB control part.
    let mut s = TcpStream::connect(&addr).unwrap();
    let mut h = Vec::from(*b"CAIR");
    h.extend_from_slice(&[1, 3, 0, 0]);
    h.extend_from_slice(&0u64.to_be_bytes());
    h.extend_from_slice(&u32::MAX.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes());
    s.write_all(&h).unwrap();
    assert!(closed_by_peer(s));
    // A truncated header, then the peer vanishes.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"CAIR\x01").unwrap();
    drop(s);
    // A wrong protocol version.
    let mut s = TcpStream::connect(&addr).unwrap();
    let mut h = Vec::from(*b"CAIR");
    h.extend_from_slice(&[77, 3, 0, 0]);
    h.extend_from_slice(&[0u8; 16]);
    s.write_all(&h).unwrap();
    assert!(closed_by_peer(s));

    // The real client never noticed.
    fs::write(v.mnt.join("after"), b"2").unwrap();
    assert_eq!(fs::read(v.mnt.join("before")).unwrap(), b"1");
    std::thread::sleep(Duration::from_millis(200));
    let log = v.brick.log_text();
    assert!(log.contains("bad magic"), "garbage is logged:\n{log}");
    assert!(
        log.contains("exceeds the limit"),
        "absurd lengths are logged:\n{log}"
    );
    assert!(
        log.contains("protocol version 77"),
        "versions are logged:\n{log}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_malformed_volfile_fails_with_the_node_and_key() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let cases = [
        (
            "version: 1\nvolume: v\nrole: client\ntop: c\ngraph:\n  - name: c\n    type: protocol/client\n    options:\n      remote-host: h\n      remote-port: 1\n      remote-prot: 2\n",
            &["'c'", "protocol/client", "remote-prot"][..],
        ),
        (
            "version: 1\nvolume: v\nrole: client\ntop: c\ngraph:\n  - name: c\n    type: protocol/client\n    options:\n      remote-host: h\n      remote-port: 99999\n",
            &["'c'", "remote-port", "99999"][..],
        ),
        (
            "version: 1\nvolume: v\nrole: client\ntop: s\ngraph:\n  - name: s\n    type: debug/io-stats\n    subvolumes: [missing]\n",
            &["'s'", "missing"][..],
        ),
        (
            "version: 1\nvolume: v\nrole: client\ntop: c\ngraph: [\n",
            &["syntax", "line"][..],
        ),
        (
            "version: 9\nvolume: v\nrole: client\ntop: c\ngraph: []\n",
            &["version 9"][..],
        ),
    ];
    for (i, (text, needles)) in cases.iter().enumerate() {
        let vf = write(tmp.path(), &format!("bad{i}.vol"), text);
        let out = Command::new(bin("cairn"))
            .arg("mount")
            .arg("--volfile")
            .arg(&vf)
            .arg(&mnt)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "case {i}");
        let err = String::from_utf8_lossy(&out.stderr);
        for n in *needles {
            assert!(err.contains(n), "case {i}: {n:?} not in: {err}");
        }
        assert!(!is_mounted(&mnt), "nothing was mounted");
    }
    // The brick daemon reports volfile problems the same way.
    let vf = write(
        tmp.path(),
        "brick.vol",
        "version: 1\nvolume: v\nrole: brick\ntop: p\ngraph:\n  - name: p\n    type: storage/posix\n    options:\n      directory: relative/path\n",
    );
    let err = brickd_refuses(&vf);
    assert!(err.contains("'p'") && err.contains("directory"), "{err}");
    // A thread count out of range is refused, not replaced by the default.
    let dir = tmp.path().join("b0");
    fs::create_dir(&dir).unwrap();
    let vf = write(
        tmp.path(),
        "threads.vol",
        &format!(
            "version: 1\nvolume: v\nrole: brick\ntop: p\ngraph:\n  - name: p\n    type: storage/posix\n    options:\n      directory: {}\n      init: on\n      io-threads: 0\n",
            dir.display()
        ),
    );
    let err = brickd_refuses(&vf);
    assert!(err.contains("io-threads"), "{err}");
}

/// Starts `cairn-brickd` on the volfile `vf`, which it must refuse (exit 1); its message.
fn brickd_refuses(vf: &Path) -> String {
    let out = Command::new(bin("cairn-brickd"))
        .arg("--volfile")
        .arg(vf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", vf.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_brick_refuses_directories_that_are_not_its_own() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    {
        let _brick = BrickProc::start(&dir, "vol-1", "brick-1", "127.0.0.1:0");
    }
    let start = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "--directory",
            &dir.display().to_string(),
            "--listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        BrickProc::start_args(&dir, args)
    };
    let e = start(&["--volume-id", "vol-2", "--brick-id", "brick-1"])
        .err()
        .unwrap();
    assert!(e.contains("belongs to volume id vol-1, not vol-2"), "{e}");
    let e = start(&["--volume-id", "vol-1", "--brick-id", "brick-7", "--init"])
        .err()
        .unwrap();
    assert!(e.contains("is brick brick-1"), "{e}");
    let fresh = tmp.path().join("fresh");
    fs::create_dir(&fresh).unwrap();
    let e = BrickProc::start_args(
        &fresh,
        vec![
            "--directory".into(),
            fresh.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ],
    )
    .err()
    .unwrap();
    assert!(e.contains("no Cairn brick identity"), "{e}");
    let file = tmp.path().join("file");
    fs::write(&file, b"").unwrap();
    let e = BrickProc::start_args(
        &file,
        vec![
            "--directory".into(),
            file.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--init".into(),
            "--volume-id".into(),
            "v".into(),
            "--brick-id".into(),
            "b".into(),
        ],
    )
    .err()
    .unwrap();
    assert!(e.contains("not a directory"), "{e}");
    // The refusals changed nothing: the brick still belongs to vol-1 and serves it.
    let _again = BrickProc::start_args(
        &dir,
        vec![
            "--directory".into(),
            dir.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--volume-id".into(),
            "vol-1".into(),
            "--brick-id".into(),
            "brick-1".into(),
        ],
    )
    .unwrap();
}

#[test]
fn a_client_of_another_volume_is_refused() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let brick = BrickProc::start(&tmp.path().join("b"), "vol-right", "b0", "127.0.0.1:0");
    let vf = tmp.path().join("c.vol");
    fs::write(
        &vf,
        client_volfile(
            "vol-wrong",
            ("127.0.0.1", brick.port(), "b0"),
            &[("connect-timeout", "2s")],
        ),
    )
    .unwrap();
    let mnt = tmp.path().join("mnt");
    let err = MountProc::try_start(&vf, &mnt, &["--connect-timeout", "3"])
        .err()
        .expect("the mount must fail");
    assert!(err.contains("cannot reach the volume"), "{err}");
    assert!(!is_mounted(&mnt));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        brick.log_text().contains("refused client"),
        "{}",
        brick.log_text()
    );
}

#[test]
fn a_damaged_state_file_stops_cairnd_with_a_clear_message_and_is_left_as_is() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DaemonProc::start(tmp.path(), "127.77.30.1", None);
    d.stop();
    let state = d.state.join("state.json");
    for (garbage, says) in [
        ("{\"format\": 1, \"nodes\": [tru", "not a Cairn state file"),
        ("{\"format\": 99}", "newer"),
    ] {
        fs::write(&state, garbage).unwrap();
        let out = Command::new(bin("cairnd"))
            .arg("--bind")
            .arg("127.77.30.1:24007")
            .arg("--state-dir")
            .arg(&d.state)
            .arg("--log-dir")
            .arg(&d.logs)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "cairnd refused to start on {garbage}"
        );
        assert!(err.contains(says), "says why: {err}");
        assert!(err.contains("state.json"), "names the file: {err}");
        assert_eq!(fs::read_to_string(&state).unwrap(), garbage, "left as is");
    }
}
