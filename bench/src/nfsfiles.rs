//! `nfsfiles`: the PACS small-file workload through an NFSv3 server, with a userspace
//! client (this machine has no kernel NFS client), so Cairn's NFS gateway is measured with
//! the same files as `smallfiles` measures a mount.
//!
//! Phases: ingest (P connections, each file CREATE + WRITE in 1 MiB pieces + COMMIT, spread
//! over P series directories), read (LOOKUP + READ of every file, every byte verified),
//! delete. Each worker keeps its own TCP connection, as P NFS clients would.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;

#[path = "content.rs"]
mod content;
use content::content;
use nfs3_client::nfs3_types::nfs3::{
    CREATE3args, MKDIR3args, Nfs3Option, Nfs3Result, READ3args, REMOVE3args, RMDIR3args,
    WRITE3args, createhow3, diropargs3, filename3, nfs_fh3, sattr3, stable_how,
};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_client::{Nfs3Connection, Nfs3ConnectionBuilder};

/// Small-file benchmark through NFSv3.
#[derive(Parser, Debug)]
#[command(version, long_about = None)]
struct Args {
    /// Server address.
    host: String,
    /// Export path (`/VOL`).
    export: String,
    /// NFS and MOUNT port.
    #[arg(long, default_value_t = 2049)]
    port: u16,
    /// Files in total.
    #[arg(long, default_value_t = 2000)]
    files: usize,
    /// Bytes per file (MR ≈ 57 KiB, CT ≈ 517 KiB).
    #[arg(long, default_value_t = 57 * 1024)]
    size: usize,
    /// Parallel clients (connections).
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// A label for the result.
    #[arg(long, default_value = "nfs")]
    label: String,
}

type Conn = Nfs3Connection<TokioIo<tokio::net::TcpStream>>;

fn name(s: &str) -> filename3<'static> {
    filename3::from(s.as_bytes().to_vec())
}

async fn connect(a: &Args) -> Result<Conn, String> {
    Nfs3ConnectionBuilder::new(TokioConnector, &a.host, &a.export)
        .mount_port(a.port)
        .nfs3_port(a.port)
        .connect_from_privileged_port(false)
        .mount()
        .await
        .map_err(|e| format!("mount {}:{}: {e:?}", a.host, a.export))
}

async fn lookup(c: &mut Conn, dir: &nfs_fh3, n: &str) -> Result<nfs_fh3, String> {
    let args = nfs3_client::nfs3_types::nfs3::LOOKUP3args {
        what: diropargs3 {
            dir: dir.clone(),
            name: name(n),
        },
    };
    match c.lookup(&args).await.map_err(|e| format!("{e:?}"))? {
        Nfs3Result::Ok(ok) => Ok(ok.object),
        Nfs3Result::Err((st, _)) => Err(format!("lookup {n}: {st}")),
    }
}

async fn mkdir(c: &mut Conn, dir: &nfs_fh3, n: &str) -> Result<nfs_fh3, String> {
    let args = MKDIR3args {
        where_: diropargs3 {
            dir: dir.clone(),
            name: name(n),
        },
        attributes: sattr3::default(),
    };
    match c.mkdir(&args).await.map_err(|e| format!("{e:?}"))? {
        Nfs3Result::Ok(ok) => match ok.obj {
            Nfs3Option::Some(fh) => Ok(fh),
            Nfs3Option::None => lookup(c, dir, n).await,
        },
        Nfs3Result::Err((st, _)) => Err(format!("mkdir {n}: {st}")),
    }
}

async fn ingest_one(c: &mut Conn, dir: &nfs_fh3, i: usize, size: usize) -> Result<(), String> {
    let data = content(i, size);
    let args = CREATE3args {
        where_: diropargs3 {
            dir: dir.clone(),
            name: name(&format!("IM{i:07}.dcm")),
        },
        how: createhow3::UNCHECKED(sattr3 {
            mode: Nfs3Option::Some(0o644),
            ..sattr3::default()
        }),
    };
    let fh = match c.create(&args).await.map_err(|e| format!("{e:?}"))? {
        Nfs3Result::Ok(ok) => match ok.obj {
            Nfs3Option::Some(fh) => fh,
            Nfs3Option::None => return Err("CREATE returned no handle".into()),
        },
        Nfs3Result::Err((st, _)) => return Err(format!("create: {st}")),
    };
    let mut off = 0;
    while off < data.len() {
        let end = (off + 1024 * 1024).min(data.len());
        let args = WRITE3args {
            file: fh.clone(),
            offset: off as u64,
            count: (end - off) as u32,
            stable: stable_how::UNSTABLE,
            data: Opaque::borrowed(&data[off..end]),
        };
        match c.write(&args).await.map_err(|e| format!("{e:?}"))? {
            Nfs3Result::Ok(ok) if ok.count as usize == end - off => {}
            Nfs3Result::Ok(ok) => return Err(format!("short write: {}", ok.count)),
            Nfs3Result::Err((st, _)) => return Err(format!("write: {st}")),
        }
        off = end;
    }
    let commit = nfs3_client::nfs3_types::nfs3::COMMIT3args {
        file: fh,
        offset: 0,
        count: 0,
    };
    match c.commit(&commit).await.map_err(|e| format!("{e:?}"))? {
        Nfs3Result::Ok(_) => Ok(()),
        Nfs3Result::Err((st, _)) => Err(format!("commit: {st}")),
    }
}

async fn read_one(c: &mut Conn, dir: &nfs_fh3, i: usize, size: usize) -> Result<(), String> {
    let fh = lookup(c, dir, &format!("IM{i:07}.dcm")).await?;
    let mut got = Vec::with_capacity(size);
    loop {
        let args = READ3args {
            file: fh.clone(),
            offset: got.len() as u64,
            count: 1024 * 1024,
        };
        match c.read(&args).await.map_err(|e| format!("{e:?}"))? {
            Nfs3Result::Ok(ok) => {
                got.extend_from_slice(ok.data.as_ref());
                if ok.eof || ok.count == 0 {
                    break;
                }
            }
            Nfs3Result::Err((st, _)) => return Err(format!("read: {st}")),
        }
    }
    if got != content(i, size) {
        return Err(format!("IM{i:07}.dcm: wrong bytes ({} read)", got.len()));
    }
    Ok(())
}

async fn remove(c: &mut Conn, dir: &nfs_fh3, n: &str, is_dir: bool) -> Result<(), String> {
    let what = diropargs3 {
        dir: dir.clone(),
        name: name(n),
    };
    let st = if is_dir {
        match c
            .rmdir(&RMDIR3args { object: what })
            .await
            .map_err(|e| format!("{e:?}"))?
        {
            Nfs3Result::Ok(_) => None,
            Nfs3Result::Err((st, _)) => Some(st),
        }
    } else {
        match c
            .remove(&REMOVE3args { object: what })
            .await
            .map_err(|e| format!("{e:?}"))?
        {
            Nfs3Result::Ok(_) => None,
            Nfs3Result::Err((st, _)) => Some(st),
        }
    };
    match st {
        None => Ok(()),
        Some(st) => Err(format!("remove {n}: {st}")),
    }
}

#[derive(Clone, Copy)]
enum Phase {
    Ingest,
    Read,
    Delete,
}

/// Runs one phase over `threads` workers, each with its own connection; returns seconds.
async fn phase(a: &Arc<Args>, base: &nfs_fh3, p: Phase) -> Result<f64, String> {
    let mut conns = Vec::new();
    for _ in 0..a.threads {
        conns.push(connect(a).await?);
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (w, mut c) in conns.into_iter().enumerate() {
        let (a, base) = (Arc::clone(a), base.clone());
        tasks.push(tokio::spawn(async move {
            let series = format!("series-{w:03}");
            let dir = match p {
                Phase::Ingest => mkdir(&mut c, &base, &series).await?,
                _ => lookup(&mut c, &base, &series).await?,
            };
            // Worker w handles files i with i % threads == w (its own series).
            for i in (w..a.files).step_by(a.threads) {
                match p {
                    Phase::Ingest => ingest_one(&mut c, &dir, i, a.size).await?,
                    Phase::Read => read_one(&mut c, &dir, i, a.size).await?,
                    Phase::Delete => remove(&mut c, &dir, &format!("IM{i:07}.dcm"), false).await?,
                }
            }
            if let Phase::Delete = p {
                remove(&mut c, &base, &series, true).await?;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(t.elapsed().as_secs_f64())
}

async fn run(a: Args) -> Result<(), String> {
    let a = Arc::new(a);
    let mut c = connect(&a).await?;
    let root = c.root_nfs_fh3();
    let base = mkdir(&mut c, &root, "nfsfiles-bench").await?;
    println!(
        "{} — {} files × {} bytes, {} clients",
        a.label, a.files, a.size, a.threads
    );
    let mb = (a.files * a.size) as f64 / 1e6;
    for (label, p) in [
        ("ingest", Phase::Ingest),
        ("read", Phase::Read),
        ("delete", Phase::Delete),
    ] {
        let secs = phase(&a, &base, p).await?;
        let fps = a.files as f64 / secs;
        match p {
            Phase::Delete => println!("  {label:<10} {secs:6.2} s  {fps:9.0} files/s"),
            _ => println!(
                "  {label:<10} {secs:6.2} s  {fps:9.0} files/s  {:8.1} MB/s",
                mb / secs
            ),
        }
    }
    remove(&mut c, &root, "nfsfiles-bench", true).await?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.threads == 0 || args.files == 0 {
        eprintln!("nfsfiles: --threads and --files must be at least 1");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nfsfiles: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nfsfiles: {e}");
            ExitCode::FAILURE
        }
    }
}
