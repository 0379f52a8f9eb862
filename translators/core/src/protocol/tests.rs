//! Client and server over real loopback TCP.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::client::{Client, ClientConfig};
use super::server::{Server, ServerConfig};
use crate::fops::FopKind;
use crate::testing::{MOCK_SEED, MockLeaf, sample_reply, sample_request};
use crate::types::*;
use crate::wire::frame::{self, FrameKind, HEADER_LEN, Header};
use crate::wire::{Hello, PROTOCOL_VERSION, Request, RequestEnvelope, WireWalk, dispatch};
use crate::xlator::{Event, Translator};

fn server_cfg(listen: &str) -> ServerConfig {
    ServerConfig {
        listen: listen.into(),
        volume_id: "vol-1".into(),
        brick_id: "brick-1".into(),
        secret: String::new(),
        allow: vec![],
        reject: vec![],
        status_file: None,
        max_inflight: 16,
        handshake_timeout: Duration::from_secs(2),
    }
}

fn client_cfg(port: u16) -> ClientConfig {
    ClientConfig {
        host: "127.0.0.1".into(),
        port,
        volume_id: "vol-1".into(),
        brick_id: "brick-1".into(),
        secret: String::new(),
        ping_timeout: Duration::from_millis(800),
        connect_timeout: Duration::from_secs(2),
        frame_timeout: Duration::from_secs(10),
        reconnect_max: Duration::from_millis(200),
    }
}

async fn start_server(listen: &str) -> (Arc<Server>, Arc<MockLeaf>, u16) {
    let leaf = Arc::new(MockLeaf::new());
    let server = Arc::new(Server::new("srv", vec![leaf.clone()], server_cfg(listen)));
    server.start().await.unwrap();
    let port = server.local_addr().unwrap().port();
    (server, leaf, port)
}

async fn wait_up(c: &Client) {
    for _ in 0..200 {
        if c.is_up() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("client did not connect");
}

/// Fd ids differ on the two sides of a connection by design; compare requests without them.
fn without_fd_ids(mut req: Request) -> Request {
    req.each_fd_mut(&mut |fd: &mut Fd| *fd = Fd::with_id(0, fd.gfid(), fd.flags()));
    req
}

#[tokio::test]
async fn every_fop_crosses_the_wire_unchanged() {
    let (_server, leaf, port) = start_server("127.0.0.1:0").await;
    let client = Client::new("c0", client_cfg(port));
    client.start().await.unwrap();
    wait_up(&client).await;
    let cx = Cx {
        uid: 1000,
        gid: 100,
        pid: 7,
        lk_owner: 5,
        client: 999,
    };
    for &kind in FopKind::ALL {
        if kind == FopKind::Compound {
            // The server runs compound ops one by one (see the compound test below).
            continue;
        }
        let req = sample_request(kind, 4);
        // Fops on an open file need the file opened on this connection first.
        let mut fds = Vec::new();
        let mut probe = req.clone();
        probe.each_fd_mut(&mut |fd: &mut Fd| fds.push(fd.clone()));
        if !matches!(kind, FopKind::Create | FopKind::Open | FopKind::Opendir) {
            for fd in fds {
                client
                    .open(&cx, Loc::inode(fd.gfid()), 0, fd, Xdata::new())
                    .await
                    .unwrap();
            }
        }
        leaf.clear();
        let reply = dispatch(&client, &cx, req.clone()).await;
        assert_eq!(
            reply,
            Ok(sample_reply(kind, MOCK_SEED)),
            "{kind}: reply differs after the wire"
        );
        let calls = leaf.calls();
        let (seen_cx, seen) = calls.last().unwrap().clone();
        assert_eq!(seen_cx.uid, 1000);
        assert_eq!(seen_cx.lk_owner, 5);
        assert_ne!(seen_cx.client, 999, "the server sets the client id itself");
        assert_eq!(
            without_fd_ids(seen),
            without_fd_ids(req),
            "{kind}: request differs after the wire"
        );
    }
    client.stop().await;
}

#[tokio::test]
async fn errors_and_unknown_fds_come_back_as_errnos() {
    let (_server, leaf, port) = start_server("127.0.0.1:0").await;
    let client = Client::new("c0", client_cfg(port));
    client.start().await.unwrap();
    wait_up(&client).await;
    let cx = Cx::default();
    leaf.fail_next(libc::ENOSPC);
    let e = client
        .lookup(&cx, Loc::inode(Gfid::ROOT), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ENOSPC);
    // An fd that was never opened on this connection.
    let e = client
        .read(&cx, Fd::new(Gfid::random(), 0), 0, 10, Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::EBADF);
    client.stop().await;
}

#[tokio::test]
async fn compound_create_write_release_is_one_request_with_a_shared_fd() {
    let (_server, leaf, port) = start_server("127.0.0.1:0").await;
    let client = Client::new("c0", client_cfg(port));
    client.start().await.unwrap();
    wait_up(&client).await;
    let fd = Fd::new(Gfid::random(), libc::O_WRONLY);
    let ops = vec![
        Request::Create {
            loc: Loc::entry(Gfid::ROOT, "img.dcm").with_gfid(fd.gfid()),
            flags: libc::O_WRONLY,
            mode: 0o644,
            umask: 0o022,
            fd: fd.clone(),
            xdata: Xdata::new(),
        },
        Request::Write {
            fd: fd.clone(),
            offset: 0,
            data: Payload::new(vec![1u8; 57 * 1024]),
            xdata: Xdata::new(),
        },
        Request::Release { fd: fd.clone() },
    ];
    let results = client
        .compound(&Cx::default(), crate::wire::Batch(ops))
        .await
        .unwrap();
    assert_eq!(results.0.len(), 3);
    assert!(results.0.iter().all(Result::is_ok), "{results:?}");
    let calls = leaf.calls();
    assert_eq!(calls.len(), 3);
    // The server's fd for the write is the one it created for the create.
    let fd_of = |r: &Request| {
        let mut ids = Vec::new();
        r.clone().each_fd_mut(&mut |f: &mut Fd| ids.push(f.id()));
        ids
    };
    assert_eq!(fd_of(&calls[0].1), fd_of(&calls[1].1));
    assert_eq!(fd_of(&calls[1].1), fd_of(&calls[2].1));
    if let Request::Write { data, .. } = &calls[1].1 {
        assert_eq!(data.len(), 57 * 1024);
    } else {
        panic!("second op is not the write");
    }
    assert_eq!(client.open_files(), 0, "released in the same compound");

    // After a failure the rest is cancelled, except cleanup steps (release), which still
    // run so nothing stays open.
    leaf.fail_next(libc::EEXIST);
    let fd = Fd::new(Gfid::random(), libc::O_WRONLY);
    let results = client
        .compound(
            &Cx::default(),
            crate::wire::Batch(vec![
                Request::Create {
                    loc: Loc::entry(Gfid::ROOT, "x").with_gfid(fd.gfid()),
                    flags: 0,
                    mode: 0o644,
                    umask: 0,
                    fd: fd.clone(),
                    xdata: Xdata::new(),
                },
                Request::Write {
                    fd: fd.clone(),
                    offset: 0,
                    data: Payload::new(vec![1u8; 10]),
                    xdata: Xdata::new(),
                },
                Request::Release { fd },
            ]),
        )
        .await
        .unwrap();
    assert_eq!(results.0[0].as_ref().unwrap_err().errno, libc::EEXIST);
    assert_eq!(results.0[1].as_ref().unwrap_err().errno, libc::ECANCELED);
    assert_ne!(
        results.0[2].as_ref().err().map(|e| e.errno),
        Some(libc::ECANCELED),
        "release is a cleanup step and runs anyway"
    );
    assert_eq!(client.open_files(), 0);
    client.stop().await;
}

async fn closed_by_server(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn handshaken(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        volume_id: "vol-1".into(),
        brick_id: String::new(),
        client_name: "raw".into(),
        client_uuid: "raw".into(),
        secret: String::new(),
    };
    let f = frame::message_frame(FrameKind::Hello, 0, 0, &hello).unwrap();
    frame::write_frame(&mut s, &f).await.unwrap();
    let answer = frame::read_frame(&mut s).await.unwrap().unwrap();
    assert_eq!(answer.header.kind, FrameKind::Welcome);
    s
}

#[tokio::test]
async fn hostile_frames_close_only_their_connection() {
    let (_server, _leaf, port) = start_server("127.0.0.1:0").await;
    let good = Client::new("good", client_cfg(port));
    good.start().await.unwrap();
    wait_up(&good).await;
    let cx = Cx::default();

    // 1. Garbage instead of a hello.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_server(s).await,
        "garbage must close the connection"
    );

    // 2. An absurd control length after a valid handshake.
    let mut s = handshaken(port).await;
    let mut h = Header {
        kind: FrameKind::Request,
        opcode: 1,
        id: 1,
        control_len: 0,
        payload_len: 0,
    }
    .encode();
    h[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    s.write_all(&h).await.unwrap();
    assert!(
        closed_by_server(s).await,
        "absurd length must close the connection"
    );

    // 3. A valid header whose control part is random bytes.
    let mut s = handshaken(port).await;
    let junk: Vec<u8> = (0..200u32).map(|i| (i * 7919 % 251) as u8).collect();
    let f = frame::build_frame(FrameKind::Request, 1, 1, &junk, vec![]).unwrap();
    frame::write_frame(&mut s, &f).await.unwrap();
    assert!(
        closed_by_server(s).await,
        "undecodable control must close the connection"
    );

    // 4. A truncated frame, then the client goes away.
    let mut s = handshaken(port).await;
    let env = RequestEnvelope {
        cx: Cx::default(),
        req: sample_request(FopKind::Lookup, 1),
    };
    let f = frame::request_frame(9, &env).unwrap();
    s.write_all(&f.head[..HEADER_LEN + 3]).await.unwrap();
    drop(s);

    // 5. Payload lengths that do not add up.
    let mut s = handshaken(port).await;
    let env = RequestEnvelope {
        cx: Cx::default(),
        req: sample_request(FopKind::Write, 2),
    };
    let control = frame::encode_control(&env).unwrap();
    let f = frame::build_frame(
        FrameKind::Request,
        FopKind::Write.opcode(),
        3,
        &control,
        vec![bytes::Bytes::from_static(b"short")],
    )
    .unwrap();
    frame::write_frame(&mut s, &f).await.unwrap();
    assert!(
        closed_by_server(s).await,
        "payload mismatch must close the connection"
    );

    // 6. An opcode that does not match the body.
    let mut s = handshaken(port).await;
    let env = RequestEnvelope {
        cx: Cx::default(),
        req: sample_request(FopKind::Stat, 2),
    };
    let control = frame::encode_control(&env).unwrap();
    let f = frame::build_frame(
        FrameKind::Request,
        FopKind::Unlink.opcode(),
        3,
        &control,
        vec![],
    )
    .unwrap();
    frame::write_frame(&mut s, &f).await.unwrap();
    assert!(
        closed_by_server(s).await,
        "opcode mismatch must close the connection"
    );

    // The well-behaved client never noticed.
    assert!(good.is_up());
    good.lookup(&cx, Loc::inode(Gfid::ROOT), Xdata::new())
        .await
        .unwrap();
    good.stop().await;
}

#[tokio::test]
async fn a_client_for_another_volume_is_refused() {
    let (_server, _leaf, port) = start_server("127.0.0.1:0").await;
    let mut cfg = client_cfg(port);
    cfg.volume_id = "some-other-volume".into();
    let client = Client::new("c0", cfg);
    client.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!client.is_up());
    let e = client
        .lookup(&Cx::default(), Loc::inode(Gfid::ROOT), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ENOTCONN);
    client.stop().await;
}

#[tokio::test]
async fn a_silent_brick_is_declared_down_after_the_ping_timeout() {
    // A "brick" that completes the handshake and then never answers again (like SIGSTOP).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hung = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _hello = frame::read_frame(&mut s).await.unwrap();
        let w = crate::wire::Welcome {
            protocol: PROTOCOL_VERSION,
            brick_id: "brick-1".into(),
            volume_id: "vol-1".into(),
        };
        let f = frame::message_frame(FrameKind::Welcome, 0, 0, &w).unwrap();
        frame::write_frame(&mut s, &f).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    });
    let client = Arc::new(Client::new("c0", client_cfg(port)));
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    client.base().set_listener(Arc::new(move |e: &Event| {
        sink.lock().unwrap().push(e.clone())
    }));
    client.start().await.unwrap();
    wait_up(&client).await;
    let started = std::time::Instant::now();
    let e = client
        .lookup(&Cx::default(), Loc::inode(Gfid::ROOT), Xdata::new())
        .await
        .unwrap_err();
    assert_eq!(e.errno, libc::ENOTCONN, "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the fop must not hang"
    );
    let events = events.lock().unwrap().clone();
    assert!(matches!(events.first(), Some(Event::ChildUp { .. })));
    assert!(
        events.iter().any(
            |e| matches!(e, Event::ChildDown { reason, .. } if reason.contains("ping-timeout"))
        ),
        "{events:?}"
    );
    client.stop().await;
    hung.abort();
}

#[tokio::test]
async fn reconnects_and_reopens_files_after_a_brick_restart() {
    let (server, leaf, port) = start_server("127.0.0.1:0").await;
    let client = Client::new("c0", client_cfg(port));
    client.start().await.unwrap();
    wait_up(&client).await;
    let cx = Cx::default();
    let fd = Fd::new(Gfid::random(), libc::O_RDWR);
    client
        .open(
            &cx,
            Loc::inode(fd.gfid()),
            libc::O_RDWR,
            fd.clone(),
            Xdata::new(),
        )
        .await
        .unwrap();
    assert_eq!(client.open_files(), 1);

    server.stop().await;
    drop(server);
    // The listener is gone; reconnect attempts fail until a new server takes the port.
    let leaf2 = Arc::new(MockLeaf::new());
    let server2 = Server::new(
        "srv",
        vec![leaf2.clone()],
        server_cfg(&format!("127.0.0.1:{port}")),
    );
    // Existing connections die with the old server's tasks only when the old socket closes:
    // close it by stopping, then start the new one.
    let mut started = false;
    for _ in 0..50 {
        if server2.start().await.is_ok() {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started, "could not rebind the port");
    drop(leaf);
    // Wait for the reopen to reach the new brick.
    let mut reopened = false;
    for _ in 0..100 {
        if leaf2
            .calls()
            .iter()
            .any(|(_, r)| matches!(r, Request::Open { fd: f, .. } if f.gfid() == fd.gfid()))
        {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reopened,
        "the open file must be reopened on the new connection"
    );
    wait_up(&client).await;
    client.read(&cx, fd, 0, 10, Xdata::new()).await.unwrap();
    client.stop().await;
}

async fn start_server_with(cfg: ServerConfig) -> (Arc<Server>, u16) {
    let leaf = Arc::new(MockLeaf::new());
    let server = Arc::new(Server::new("srv", vec![leaf], cfg));
    server.start().await.unwrap();
    let port = server.local_addr().unwrap().port();
    (server, port)
}

#[tokio::test]
async fn the_volume_secret_and_address_rules_are_enforced() {
    let dir = tempfile_dir();
    let status = dir.join("clients");
    let mut cfg = server_cfg("127.0.0.1:0");
    cfg.secret = "s3cret".into();
    cfg.status_file = Some(status.clone());
    let (_server, port) = start_server_with(cfg).await;

    let without = Client::new("no-secret", client_cfg(port));
    without.start().await.unwrap();
    let mut with_cfg = client_cfg(port);
    with_cfg.secret = "s3cret".into();
    let with = Client::new("has-secret", with_cfg);
    with.start().await.unwrap();
    wait_up(&with).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!without.is_up(), "a client without the secret is refused");
    let listed = std::fs::read_to_string(&status).unwrap();
    assert!(
        listed.contains("has-secret") && !listed.contains("no-secret"),
        "{listed}"
    );
    with.stop().await;
    without.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        std::fs::read_to_string(&status).unwrap(),
        "",
        "disconnected clients leave the list"
    );

    // 127.0.0.1 is not admitted.
    let mut cfg = server_cfg("127.0.0.1:0");
    cfg.allow = vec!["10.0.0.0/8".into()];
    let (_server, port) = start_server_with(cfg).await;
    let c = Client::new("c", client_cfg(port));
    c.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!c.is_up());
    c.stop().await;
    let mut cfg = server_cfg("127.0.0.1:0");
    cfg.reject = vec!["127.0.0.*".into()];
    let (_server, port) = start_server_with(cfg).await;
    let c = Client::new("c", client_cfg(port));
    c.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!c.is_up());
    c.stop().await;
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cairn-proto-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
