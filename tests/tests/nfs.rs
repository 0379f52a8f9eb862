//! The NFSv3 gateway, through real NFS clients: libnfs's `nfs-cp`, `nfs-cat` and `nfs-ls`,
//! and the `nfs3_client` crate for handle-level checks, against a three-node replica-3
//! volume with `nfs.enable on` (every node's cairnd serves it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cairn_tests::*;
use nfs3_client::Nfs3ConnectionBuilder;
use nfs3_client::nfs3_types::nfs3::{
    GETATTR3args, LOOKUP3args, Nfs3Result, READ3args, WRITE3args, diropargs3, filename3, nfs_fh3,
    nfsstat3, stable_how,
};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::TokioConnector;

const PORT: u16 = 2049;

fn url(host: &str, vol: &str, path: &str) -> String {
    format!("nfs://{host}/{vol}/{path}?version=3&nfsport={PORT}&mountport={PORT}")
}

/// Runs a libnfs utility; returns (success, stdout, stderr).
fn libnfs(tool: &str, args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (scripts/deps --test installs libnfs-utils)"));
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until every node's gateway answers an `nfs-ls` of the volume's root.
fn gateways_up(p: &Pool, vol: &str) {
    for n in &p.nodes {
        assert!(
            eventually(Duration::from_secs(30), || libnfs(
                "nfs-ls",
                &[&url(&n.host, vol, "")]
            )
            .0),
            "the NFS gateway of {} answers",
            n.host
        );
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

type Conn = nfs3_client::Nfs3Connection<nfs3_client::tokio::TokioIo<tokio::net::TcpStream>>;

async fn connect(host: &str, vol: &str) -> Conn {
    Nfs3ConnectionBuilder::new(TokioConnector, host, format!("/{vol}"))
        .mount_port(PORT)
        .nfs3_port(PORT)
        .connect_from_privileged_port(false)
        .mount()
        .await
        .unwrap_or_else(|e| panic!("mount {host}:/{vol}: {e:?}"))
}

async fn lookup(c: &mut Conn, dir: nfs_fh3, name: &str) -> Result<nfs_fh3, nfsstat3> {
    let args = LOOKUP3args {
        what: diropargs3 {
            dir,
            name: filename3::from(name.as_bytes().to_vec()),
        },
    };
    match c.lookup(&args).await.unwrap() {
        Nfs3Result::Ok(ok) => Ok(ok.object),
        Nfs3Result::Err((st, _)) => Err(st),
    }
}

async fn read_all(c: &mut Conn, fh: &nfs_fh3) -> Result<Vec<u8>, nfsstat3> {
    let mut out = Vec::new();
    loop {
        let args = READ3args {
            file: fh.clone(),
            offset: out.len() as u64,
            count: 128 * 1024,
        };
        match c.read(&args).await.unwrap() {
            Nfs3Result::Ok(ok) => {
                out.extend_from_slice(ok.data.as_ref());
                if ok.eof || ok.count == 0 {
                    return Ok(out);
                }
            }
            Nfs3Result::Err((st, _)) => return Err(st),
        }
    }
}

async fn getattr(c: &mut Conn, fh: &nfs_fh3) -> Result<u64, nfsstat3> {
    match c
        .getattr(&GETATTR3args { object: fh.clone() })
        .await
        .unwrap()
    {
        Nfs3Result::Ok(ok) => Ok(ok.obj_attributes.size),
        Nfs3Result::Err((st, _)) => Err(st),
    }
}

fn write_file(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap();
}

#[test]
fn nfs_clients_upload_list_and_download_byte_identical_through_every_node() {
    let p = pool(41);
    let vol = "shares";
    let (m, mnt, bricks) = replica3_volume(&p, vol, &[("nfs.enable", "on")]);
    gateways_up(&p, vol);
    let local = p.tmp.path().join("local");
    fs::create_dir_all(&local).unwrap();

    // Upload a CT- and an MR-sized image through node 1's gateway.
    let ct = pattern(517 * 1024, 1);
    let mr = pattern(57 * 1024, 2);
    write_file(&local.join("ct.dcm"), &ct);
    write_file(&local.join("mr.dcm"), &mr);
    for name in ["ct.dcm", "mr.dcm"] {
        let (ok, _, err) = libnfs(
            "nfs-cp",
            &[
                local.join(name).to_str().unwrap(),
                &url(&p.nodes[0].host, vol, name),
            ],
        );
        assert!(ok, "nfs-cp up {name}: {err}");
    }
    // The bytes are on every brick, and the FUSE mount reads them.
    for b in &bricks {
        assert_eq!(fs::read(b.join("ct.dcm")).unwrap(), ct, "{}", b.display());
        assert_eq!(fs::read(b.join("mr.dcm")).unwrap(), mr, "{}", b.display());
    }
    assert_eq!(fs::read(mnt.join("ct.dcm")).unwrap(), ct);

    // Download through the other nodes' gateways: byte-identical.
    let (ok, out, err) = libnfs("nfs-cat", &[&url(&p.nodes[1].host, vol, "ct.dcm")]);
    assert!(ok, "nfs-cat: {err}");
    assert!(
        out == ct,
        "nfs-cat returned {} bytes, not the CT image",
        out.len()
    );
    let back = local.join("mr-back.dcm");
    let (ok, _, err) = libnfs(
        "nfs-cp",
        &[
            &url(&p.nodes[2].host, vol, "mr.dcm"),
            back.to_str().unwrap(),
        ],
    );
    assert!(ok, "nfs-cp down: {err}");
    assert_eq!(fs::read(&back).unwrap(), mr);

    // A file written through FUSE reads back through NFS, and a missing one fails cleanly.
    fs::write(mnt.join("from-fuse.txt"), b"written through FUSE").unwrap();
    let (ok, out, _) = libnfs("nfs-cat", &[&url(&p.nodes[2].host, vol, "from-fuse.txt")]);
    assert!(ok);
    assert_eq!(out, b"written through FUSE");
    let (ok, _, _) = libnfs("nfs-cat", &[&url(&p.nodes[0].host, vol, "no-such.dcm")]);
    assert!(!ok, "reading a missing file fails");

    // A 10,000-entry directory lists completely, each name once, through NFS.
    let big = mnt.join("series");
    fs::create_dir(&big).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let big = big.clone();
            std::thread::spawn(move || {
                for i in (t..10_000).step_by(4) {
                    fs::write(big.join(format!("img-{i:05}.dcm")), b"x").unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (ok, out, err) = libnfs("nfs-ls", &[&url(&p.nodes[1].host, vol, "series")]);
    assert!(ok, "nfs-ls: {err}");
    let text = String::from_utf8(out).unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|n| n.starts_with("img-"))
        .collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(names.len(), 10_000, "nfs-ls lists every entry");
    assert_eq!(unique.len(), 10_000, "each entry once");
    assert!(unique.contains("img-00000.dcm") && unique.contains("img-09999.dcm"));
    drop(m);
}

#[test]
fn handles_are_the_same_on_every_gateway_and_survive_a_restart() {
    let mut p = pool(42);
    let vol = "handles";
    let (m, mnt, _) = replica3_volume(&p, vol, &[("nfs.enable", "on")]);
    gateways_up(&p, vol);
    let data = pattern(100_000, 7);
    fs::create_dir(mnt.join("study")).unwrap();
    fs::write(mnt.join("study/img.dcm"), &data).unwrap();
    let rt = rt();

    // A handle from node 1's gateway.
    let fh = rt.block_on(async {
        let mut c = connect(&p.nodes[0].host, vol).await;
        let root = c.root_nfs_fh3();
        let dir = lookup(&mut c, root, "study").await.unwrap();
        let fh = lookup(&mut c, dir, "img.dcm").await.unwrap();
        assert_eq!(read_all(&mut c, &fh).await.unwrap(), data);
        let root = c.root_nfs_fh3();
        assert_eq!(
            lookup(&mut c, root, "missing").await,
            Err(nfsstat3::NFS3ERR_NOENT)
        );
        fh
    });

    // The same handle works on node 3's gateway, with no lookup there first.
    rt.block_on(async {
        let mut c = connect(&p.nodes[2].host, vol).await;
        assert_eq!(getattr(&mut c, &fh).await, Ok(data.len() as u64));
        assert_eq!(read_all(&mut c, &fh).await.unwrap(), data);
        // A handle that is not one of ours is refused, not guessed at.
        let mut junk = fh.clone();
        let mut bytes = junk.data.as_ref().to_vec();
        bytes.truncate(bytes.len() - 3);
        junk.data = Opaque::owned(bytes);
        assert_eq!(
            getattr(&mut c, &junk).await,
            Err(nfsstat3::NFS3ERR_BADHANDLE)
        );
    });

    // Node 1's cairnd restarts (its gateway with it): the old handle still resolves there.
    p.nodes[0].stop();
    p.nodes[0].restart();
    gateways_up(&p, vol);
    rt.block_on(async {
        let mut c = connect(&p.nodes[0].host, vol).await;
        assert_eq!(read_all(&mut c, &fh).await.unwrap(), data);
    });

    // Turning the gateway off and on again keeps handles too; while off, nothing listens.
    p.nodes[0].ok(&["volume", "set", vol, "nfs.enable", "off"]);
    assert!(
        eventually(Duration::from_secs(15), || !libnfs(
            "nfs-ls",
            &[&url(&p.nodes[1].host, vol, "")]
        )
        .0),
        "the gateway stops when nfs.enable is off"
    );
    p.nodes[0].ok(&["volume", "set", vol, "nfs.enable", "on"]);
    gateways_up(&p, vol);
    rt.block_on(async {
        let mut c = connect(&p.nodes[1].host, vol).await;
        assert_eq!(read_all(&mut c, &fh).await.unwrap(), data);
    });

    // A removed file's handle is stale everywhere.
    fs::remove_file(mnt.join("study/img.dcm")).unwrap();
    rt.block_on(async {
        let mut c = connect(&p.nodes[2].host, vol).await;
        let st = getattr(&mut c, &fh).await;
        assert!(
            matches!(st, Err(nfsstat3::NFS3ERR_STALE | nfsstat3::NFS3ERR_NOENT)),
            "{st:?}"
        );
    });
    drop(m);
}

#[test]
fn the_address_lists_decide_who_may_connect() {
    let p = pool(43);
    let vol = "guarded";
    let (m, _mnt, _) = replica3_volume(&p, vol, &[("nfs.enable", "on")]);
    gateways_up(&p, vol);
    // Nobody from here is allowed: every gateway closes the connection.
    p.nodes[0].ok(&["volume", "set", vol, "nfs.rpc-auth-allow", "10.9.9.9"]);
    for n in &p.nodes {
        assert!(
            eventually(Duration::from_secs(15), || !libnfs(
                "nfs-ls",
                &[&url(&n.host, vol, "")]
            )
            .0),
            "{} refuses a client outside nfs.rpc-auth-allow",
            n.host
        );
    }
    // Loopback admitted again, but rejected explicitly.
    p.nodes[0].ok(&["volume", "set", vol, "nfs.rpc-auth-allow", "127.0.0.0/8"]);
    gateways_up(&p, vol);
    p.nodes[0].ok(&["volume", "set", vol, "nfs.rpc-auth-reject", "127.*"]);
    assert!(
        eventually(Duration::from_secs(15), || !libnfs(
            "nfs-ls",
            &[&url(&p.nodes[2].host, vol, "")]
        )
        .0),
        "nfs.rpc-auth-reject wins over nfs.rpc-auth-allow"
    );
    // A malformed rule is refused and changes nothing.
    let (code, _, err) =
        p.nodes[0].cli(&["volume", "set", vol, "nfs.rpc-auth-allow", "10.1.2.3/99"]);
    assert_ne!(code, 0, "a bad rule is refused");
    assert!(err.contains("nfs.rpc-auth-allow"), "{err}");
    let (code, _, _) = p.nodes[0].cli(&["volume", "set", vol, "nfs.port", "70000"]);
    assert_ne!(code, 0, "a port out of range is refused");
    drop(m);
}

#[test]
fn writes_through_nfs_reach_every_brick_and_worm_refusals_show_as_such() {
    let p = pool(44);
    let vol = "retained";
    let (m, mnt, bricks) = replica3_volume(&p, vol, &[("nfs.enable", "on")]);
    gateways_up(&p, vol);
    fs::write(mnt.join("report.dcm"), b"original").unwrap();
    let rt = rt();
    rt.block_on(async {
        let mut c = connect(&p.nodes[1].host, vol).await;
        let root = c.root_nfs_fh3();
        let fh = lookup(&mut c, root, "report.dcm").await.unwrap();
        // An unstable write, then a COMMIT, as NFS clients write.
        let args = WRITE3args {
            file: fh.clone(),
            offset: 8,
            count: 8,
            stable: stable_how::UNSTABLE,
            data: Opaque::owned(b"+amended".to_vec()),
        };
        assert!(matches!(c.write(&args).await.unwrap(), Nfs3Result::Ok(_)));
        let commit = nfs3_client::nfs3_types::nfs3::COMMIT3args {
            file: fh.clone(),
            offset: 0,
            count: 0,
        };
        assert!(matches!(
            c.commit(&commit).await.unwrap(),
            Nfs3Result::Ok(_)
        ));
    });
    for b in &bricks {
        assert_eq!(fs::read(b.join("report.dcm")).unwrap(), b"original+amended");
    }
    // With WORM on, the existing file can no longer change, and NFS says why.
    p.nodes[0].ok(&["volume", "set", vol, "features.worm", "on"]);
    rt.block_on(async {
        let mut refused = None;
        for _ in 0..50 {
            let mut c = connect(&p.nodes[2].host, vol).await;
            let root = c.root_nfs_fh3();
            // While the bricks restart with the new option, the gateway answers
            // NFS3ERR_JUKEBOX ("try again later"), as a real client would, we retry.
            let fh = match lookup(&mut c, root, "report.dcm").await {
                Ok(fh) => fh,
                Err(nfsstat3::NFS3ERR_JUKEBOX) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                Err(e) => panic!("lookup: {e:?}"),
            };
            let args = WRITE3args {
                file: fh,
                offset: 0,
                count: 4,
                stable: stable_how::FILE_SYNC,
                data: Opaque::owned(b"XXXX".to_vec()),
            };
            match c.write(&args).await.unwrap() {
                Nfs3Result::Err((nfsstat3::NFS3ERR_JUKEBOX, _)) => {}
                Nfs3Result::Err((st, _)) => {
                    refused = Some(st);
                    break;
                }
                Nfs3Result::Ok(_) => panic!("a write to an existing file succeeded under WORM"),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(refused, Some(nfsstat3::NFS3ERR_ROFS));
    });
    for b in &bricks {
        assert_eq!(fs::read(b.join("report.dcm")).unwrap(), b"original+amended");
    }
    drop(m);
}
