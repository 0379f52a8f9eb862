//! `pacs`: the PACS archive workload on any directory, so the local disk, a Cairn mount and
//! a GlusterFS mount are measured the same way in one run.
//!
//! Layout: `ROOT/pacs-bench/YYYY/MM/DD/study-NNNN/series-S/IM-NNNN.dcm`, CT series of 517 KiB
//! images and MR series of 57 KiB images. Phases, each timed:
//!
//! - `ingest`: P writers take whole series from a queue and write their images in order
//!   (create, write, close), as a modality or PACS router sends them;
//! - `read`: after a fresh mount (`--remount`) and with the page cache dropped, P readers read
//!   whole series in order, as a doctor scrolls a study; every byte is verified; images/s,
//!   MB/s and the time per series (p50, p99);
//! - `read-ct`, `read-mr`: the same for the CT series only and the MR series only, each on a
//!   fresh mount (the two image sizes have separate targets);
//! - `list`: `ls -l` of a cold directory of `--list-files` entries (readdir + lstat each);
//! - `walk`: a cold walk of the whole tree (readdir + lstat);
//! - `stat`: a cold `stat` of every image by its full path, P threads;
//! - `delete`: P threads remove every image and directory.
//!
//! Prints a table; `--json FILE` also writes the figures as JSON.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Parser;

const CT: usize = 517 * 1024;
const MR: usize = 57 * 1024;

/// The PACS workload on a directory.
#[derive(Parser, Debug)]
#[command(version, long_about = None)]
struct Args {
    /// Directory to work in (`pacs-bench` is created below it and removed at the end).
    root: PathBuf,
    /// CT series (of --ct-images images of 517 KiB).
    #[arg(long, default_value_t = 8)]
    ct_series: usize,
    /// Images per CT series.
    #[arg(long, default_value_t = 50)]
    ct_images: usize,
    /// MR series (of --mr-images images of 57 KiB).
    #[arg(long, default_value_t = 16)]
    mr_series: usize,
    /// Images per MR series.
    #[arg(long, default_value_t = 100)]
    mr_images: usize,
    /// Entries of the directory the `list` phase lists.
    #[arg(long, default_value_t = 10_000)]
    list_files: usize,
    /// Parallel writers and readers (P).
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// A label for the result ("local disk", "cairn", "glusterfs").
    #[arg(long, default_value = "")]
    label: String,
    /// Shell command that gives a fresh mount of ROOT, run before each cold phase (after
    /// which the page cache is dropped too).
    #[arg(long)]
    remount: Option<String>,
    /// Phases, comma-separated: ingest, read (every series), read-ct and read-mr (the CT
    /// or the MR series only, each on its own fresh mount), list, walk, stat, delete.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ingest,read,read-ct,read-mr,list,walk,stat,delete"
    )]
    phases: Vec<PhaseName>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum PhaseName {
    Ingest,
    Read,
    ReadCt,
    ReadMr,
    List,
    Walk,
    Stat,
    Delete,
}

/// One series: where, how many images of what size, and the seed of their contents.
#[derive(Clone, Debug)]
struct Series {
    dir: PathBuf,
    images: usize,
    size: usize,
    seed: u64,
}

impl Series {
    fn image(&self, i: usize) -> PathBuf {
        self.dir.join(format!("IM-{i:04}.dcm"))
    }
}

fn content(seed: u64, i: usize, size: usize) -> Vec<u8> {
    let mut x = (seed.wrapping_mul(1_000_003) ^ i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

fn plan(a: &Args, base: &Path) -> Vec<Series> {
    let mut all = Vec::new();
    let kinds = (0..a.ct_series)
        .map(|_| (CT, a.ct_images))
        .chain((0..a.mr_series).map(|_| (MR, a.mr_images)));
    for (j, (size, images)) in kinds.enumerate() {
        // Two series per study; studies spread over the days of a month.
        let study = j / 2;
        let day = study % 28 + 1;
        all.push(Series {
            dir: base.join(format!(
                "2026/12/{day:02}/study-{study:04}/series-{}",
                j % 2 + 1
            )),
            images,
            size,
            seed: j as u64 + 1,
        });
    }
    all
}

/// A phase's figures.
#[derive(Default, Debug)]
struct Figures {
    name: &'static str,
    secs: f64,
    ops: usize,
    bytes: u64,
    /// Per-series times (reads), milliseconds.
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    fn line(&self) -> String {
        let mut s = format!(
            "  {:<8} {:8.2} s {:10.0} ops/s",
            self.name,
            self.secs,
            self.rate()
        );
        if self.bytes > 0 {
            s.push_str(&format!(
                " {:9.1} MB/s",
                self.bytes as f64 / self.secs / 1e6
            ));
        }
        if let (Some(p50), Some(p99)) = (self.p50_ms, self.p99_ms) {
            s.push_str(&format!("   series p50 {p50:.0} ms, p99 {p99:.0} ms"));
        }
        s
    }

    fn json(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.1}"));
        format!(
            "\"{}\": {{\"secs\": {:.3}, \"ops\": {}, \"ops_per_s\": {:.1}, \"mb_per_s\": {:.2}, \"series_p50_ms\": {}, \"series_p99_ms\": {}}}",
            self.name,
            self.secs,
            self.ops,
            self.rate(),
            self.bytes as f64 / self.secs / 1e6,
            opt(self.p50_ms),
            opt(self.p99_ms)
        )
    }
}

/// Runs `work` on items from `queue` over `threads` threads; returns seconds.
fn parallel<T: Send>(
    items: Vec<T>,
    threads: usize,
    work: impl Fn(T) -> Result<(), String> + Sync,
) -> Result<f64, String> {
    let queue = Mutex::new(VecDeque::from(items));
    let failed: Mutex<Option<String>> = Mutex::new(None);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.pop_front()).ok().flatten();
                    let Some(item) = next else { break };
                    if let Err(e) = work(item) {
                        if let Ok(mut f) = failed.lock() {
                            f.get_or_insert(e);
                        }
                        break;
                    }
                }
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    match failed.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => Ok(secs),
    }
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), String> {
    let mut f = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(data)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // Close here and check it: on a network file system, close reports what failed.
    nix::unistd::close(std::os::fd::IntoRawFd::into_raw_fd(f))
        .map_err(|e| format!("close {}: {e}", path.display()))
}

/// A fresh mount (if asked) and an empty page cache.
fn cold(a: &Args) -> Result<(), String> {
    if let Some(cmd) = &a.remount {
        let st = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .map_err(|e| format!("--remount: {e}"))?;
        if !st.success() {
            return Err(format!("--remount '{cmd}' failed: {st}"));
        }
    }
    let _ = Command::new("sync").status();
    if fs::write("/proc/sys/vm/drop_caches", "3").is_err() {
        eprintln!("pacs: cannot drop the page cache (not root?); reads may be warm");
    }
    Ok(())
}

/// The series whose images have `size` bytes.
fn by_size(series: &[Series], size: usize) -> Vec<Series> {
    series.iter().filter(|s| s.size == size).cloned().collect()
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i.min(sorted.len() - 1)).copied()
}

fn walk(dir: &Path, count: &mut usize) -> Result<(), String> {
    for e in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
        let md = fs::symlink_metadata(e.path()).map_err(|e| format!("lstat: {e}"))?;
        *count += 1;
        if md.is_dir() {
            walk(&e.path(), count)?;
        }
    }
    Ok(())
}

fn run(a: &Args) -> Result<Vec<Figures>, String> {
    let base = a.root.join("pacs-bench");
    let list_dir = base.join("list");
    let series = plan(a, &base);
    let images: usize = series.iter().map(|s| s.images).sum();
    let total_bytes: u64 = series.iter().map(|s| (s.images * s.size) as u64).sum();
    let mut out = Vec::new();
    for phase in &a.phases {
        let f = match phase {
            PhaseName::Ingest => {
                fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
                let secs = parallel(series.clone(), a.threads, |s| {
                    fs::create_dir_all(&s.dir).map_err(|e| format!("{}: {e}", s.dir.display()))?;
                    for i in 0..s.images {
                        write_file(&s.image(i), &content(s.seed, i, s.size))?;
                    }
                    Ok(())
                })?;
                // The directory the list phase lists (not timed: it is not PACS ingest).
                fs::create_dir_all(&list_dir).map_err(|e| e.to_string())?;
                let names: Vec<usize> = (0..a.list_files).collect();
                parallel(names, a.threads, |i| {
                    write_file(&list_dir.join(format!("IM-{i:05}.dcm")), b"DICM")
                })?;
                Figures {
                    name: "ingest",
                    secs,
                    ops: images,
                    bytes: total_bytes,
                    ..Figures::default()
                }
            }
            PhaseName::Read | PhaseName::ReadCt | PhaseName::ReadMr => {
                let (name, these): (&'static str, Vec<Series>) = match phase {
                    PhaseName::ReadCt => ("read-ct", by_size(&series, CT)),
                    PhaseName::ReadMr => ("read-mr", by_size(&series, MR)),
                    _ => ("read", series.clone()),
                };
                let images: usize = these.iter().map(|s| s.images).sum();
                let total_bytes: u64 = these.iter().map(|s| (s.images * s.size) as u64).sum();
                cold(a)?;
                let times = Mutex::new(Vec::new());
                let secs = parallel(these, a.threads, |s| {
                    let t = Instant::now();
                    let mut buf = Vec::with_capacity(s.size);
                    for i in 0..s.images {
                        buf.clear();
                        let p = s.image(i);
                        File::open(&p)
                            .and_then(|mut f| f.read_to_end(&mut buf))
                            .map_err(|e| format!("{}: {e}", p.display()))?;
                        if buf != content(s.seed, i, s.size) {
                            return Err(format!("{}: wrong bytes", p.display()));
                        }
                    }
                    if let Ok(mut t2) = times.lock() {
                        t2.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(())
                })?;
                let mut t = times.into_inner().unwrap_or_default();
                t.sort_by(f64::total_cmp);
                Figures {
                    name,
                    secs,
                    ops: images,
                    bytes: total_bytes,
                    p50_ms: percentile(&t, 0.5),
                    p99_ms: percentile(&t, 0.99),
                }
            }
            PhaseName::List => {
                cold(a)?;
                let t = Instant::now();
                let mut n = 0;
                for e in
                    fs::read_dir(&list_dir).map_err(|e| format!("{}: {e}", list_dir.display()))?
                {
                    let e = e.map_err(|e| e.to_string())?;
                    fs::symlink_metadata(e.path()).map_err(|e| format!("lstat: {e}"))?;
                    n += 1;
                }
                if n != a.list_files {
                    return Err(format!("listed {n} entries, not {}", a.list_files));
                }
                Figures {
                    name: "ls -l",
                    secs: t.elapsed().as_secs_f64(),
                    ops: n,
                    ..Figures::default()
                }
            }
            PhaseName::Walk => {
                cold(a)?;
                let t = Instant::now();
                let mut n = 0;
                walk(&base, &mut n)?;
                Figures {
                    name: "walk",
                    secs: t.elapsed().as_secs_f64(),
                    ops: n,
                    ..Figures::default()
                }
            }
            PhaseName::Stat => {
                cold(a)?;
                let paths: Vec<PathBuf> = series
                    .iter()
                    .flat_map(|s| (0..s.images).map(|i| s.image(i)).collect::<Vec<_>>())
                    .collect();
                let secs = parallel(paths, a.threads, |p| {
                    fs::metadata(&p)
                        .map(|_| ())
                        .map_err(|e| format!("{}: {e}", p.display()))
                })?;
                Figures {
                    name: "stat",
                    secs,
                    ops: images,
                    ..Figures::default()
                }
            }
            PhaseName::Delete => {
                let done = AtomicUsize::new(0);
                let secs = parallel(series.clone(), a.threads, |s| {
                    for i in 0..s.images {
                        let p = s.image(i);
                        fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    fs::remove_dir(&s.dir).map_err(|e| format!("{}: {e}", s.dir.display()))
                })?;
                let _ = fs::remove_dir_all(&base);
                Figures {
                    name: "delete",
                    secs,
                    ops: done.into_inner(),
                    ..Figures::default()
                }
            }
        };
        println!("{}", f.line());
        out.push(f);
    }
    Ok(out)
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.threads == 0 {
        eprintln!("pacs: --threads must be at least 1");
        return ExitCode::from(2);
    }
    let images = a.ct_series * a.ct_images + a.mr_series * a.mr_images;
    println!(
        "{} — P={}: {} CT series × {} images of 517 KiB, {} MR series × {} images of 57 KiB ({images} images), ls of {} entries",
        a.label, a.threads, a.ct_series, a.ct_images, a.mr_series, a.mr_images, a.list_files
    );
    match run(&a) {
        Ok(figs) => {
            if let Some(path) = &a.json {
                let body = figs
                    .iter()
                    .map(Figures::json)
                    .collect::<Vec<_>>()
                    .join(", ");
                let text = format!(
                    "{{\"label\": \"{}\", \"threads\": {}, \"images\": {images}, \"phases\": {{{body}}}}}\n",
                    a.label.replace('"', "'"),
                    a.threads
                );
                if let Err(e) = fs::write(path, text) {
                    eprintln!("pacs: {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pacs: {e}");
            ExitCode::FAILURE
        }
    }
}
