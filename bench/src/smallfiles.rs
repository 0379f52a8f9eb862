//! `smallfiles`: the small-file workload of a PACS archive on any directory, so the local
//! disk, a Cairn mount and a GlusterFS mount are measured the same way.
//!
//! Phases, each timed: ingest (P writers create+write+close N files of SIZE bytes spread over
//! P series directories), cold read (the page cache dropped first, every byte verified), list
//! (readdir + lstat of every entry, like `ls -l`), delete. Prints a table, and JSON with
//! `--json`. `--phases` picks phases (a later run can read what an earlier one ingested and
//! kept with `--keep`).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

#[path = "content.rs"]
mod content;
use content::content;

/// Small-file benchmark on a directory.
#[derive(Parser, Debug)]
#[command(version, long_about = None)]
struct Args {
    /// Directory to work in (a subdirectory `smallfiles-bench` is created and removed).
    root: PathBuf,
    /// Files in total.
    #[arg(long, default_value_t = 2000)]
    files: usize,
    /// Bytes per file (MR ≈ 57 KiB, CT ≈ 517 KiB).
    #[arg(long, default_value_t = 57 * 1024)]
    size: usize,
    /// Parallel workers.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// A label for the result (e.g. "local disk", "cairn").
    #[arg(long, default_value = "")]
    label: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Do not drop the page cache before reading (needs root otherwise).
    #[arg(long)]
    warm: bool,
    /// Phases to run, in order, comma-separated: ingest, read, list, delete.
    #[arg(long, value_delimiter = ',', default_value = "ingest,read,list,delete")]
    phases: Vec<PhaseName>,
    /// Leave the files in place at the end (for a heal benchmark, say).
    #[arg(long)]
    keep: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum PhaseName {
    Ingest,
    Read,
    List,
    Delete,
}

fn file_path(base: &Path, i: usize, threads: usize) -> PathBuf {
    base.join(format!("series-{:03}", i % threads))
        .join(format!("IM{i:07}.dcm"))
}

/// Runs `work(i)` for every i in 0..n over `threads` threads; returns seconds taken.
fn parallel(
    n: usize,
    threads: usize,
    work: impl Fn(usize) -> Result<(), String> + Sync,
) -> Result<f64, String> {
    let start = Instant::now();
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let work = &work;
                s.spawn(move || (t..n).step_by(threads).find_map(|i| work(i).err()))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    });
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(start.elapsed().as_secs_f64()),
    }
}

struct Phase {
    name: &'static str,
    secs: f64,
    ops: usize,
    bytes: usize,
}

fn run(args: &Args) -> Result<Vec<Phase>, String> {
    let base = args.root.join("smallfiles-bench");
    let wants = |p: PhaseName| args.phases.contains(&p);
    if base.exists() && wants(PhaseName::Ingest) {
        fs::remove_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    }
    for t in 0..args.threads {
        let d = base.join(format!("series-{t:03}"));
        fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let templates: Vec<Vec<u8>> = (0..args.threads).map(|t| content(t, args.size)).collect();
    let mut phases = Vec::new();

    if wants(PhaseName::Ingest) {
        let secs = parallel(args.files, args.threads, |i| {
            let p = file_path(&base, i, args.threads);
            let mut f = File::create(&p).map_err(|e| format!("create {}: {e}", p.display()))?;
            f.write_all(&templates[i % args.threads])
                .map_err(|e| format!("write {}: {e}", p.display()))
        })?;
        phases.push(Phase {
            name: "ingest",
            secs,
            ops: args.files,
            bytes: args.files * args.size,
        });
    }
    if wants(PhaseName::Read) {
        phases.push(read(args, &base, &templates)?);
    }
    if wants(PhaseName::List) {
        phases.push(list(args, &base)?);
    }
    if wants(PhaseName::Delete) {
        phases.push(delete(args, &base)?);
    }
    if !args.keep {
        let _ = fs::remove_dir_all(&base);
    }
    Ok(phases)
}

fn read(args: &Args, base: &Path, templates: &[Vec<u8>]) -> Result<Phase, String> {
    if !args.warm {
        // Flush dirty data, then drop clean pages, dentries and inodes: the reads are cold.
        let _ = std::process::Command::new("sync").status();
        fs::write("/proc/sys/vm/drop_caches", "3")
            .map_err(|e| format!("drop caches (use --warm when not root): {e}"))?;
    }
    let sums: Vec<u32> = templates.iter().map(|t| crc32fast::hash(t)).collect();
    let secs = parallel(args.files, args.threads, |i| {
        let p = file_path(base, i, args.threads);
        let mut buf = Vec::with_capacity(args.size);
        File::open(&p)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|e| format!("read {}: {e}", p.display()))?;
        if buf.len() != args.size || crc32fast::hash(&buf) != sums[i % args.threads] {
            return Err(format!(
                "{}: content differs from what was written",
                p.display()
            ));
        }
        Ok(())
    })?;
    Ok(Phase {
        name: "read",
        secs,
        ops: args.files,
        bytes: args.files * args.size,
    })
}

fn list(args: &Args, base: &Path) -> Result<Phase, String> {
    if !args.warm {
        let _ = fs::write("/proc/sys/vm/drop_caches", "3");
    }
    let secs = parallel(args.threads, args.threads, |t| {
        let d = base.join(format!("series-{t:03}"));
        for e in fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let e = e.map_err(|e| e.to_string())?;
            fs::symlink_metadata(e.path()).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    Ok(Phase {
        name: "list",
        secs,
        ops: args.files,
        bytes: 0,
    })
}

fn delete(args: &Args, base: &Path) -> Result<Phase, String> {
    let secs = parallel(args.files, args.threads, |i| {
        let p = file_path(base, i, args.threads);
        fs::remove_file(&p).map_err(|e| format!("unlink {}: {e}", p.display()))
    })?;
    Ok(Phase {
        name: "delete",
        secs,
        ops: args.files,
        bytes: 0,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let phases = match run(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("smallfiles: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        let items: Vec<String> = phases
            .iter()
            .map(|p| {
                format!(
                    "{{\"phase\":\"{}\",\"seconds\":{:.3},\"files_per_s\":{:.1},\"mb_per_s\":{:.1}}}",
                    p.name,
                    p.secs,
                    p.ops as f64 / p.secs,
                    p.bytes as f64 / p.secs / 1e6
                )
            })
            .collect();
        println!(
            "{{\"label\":{:?},\"files\":{},\"size\":{},\"threads\":{},\"phases\":[{}]}}",
            args.label,
            args.files,
            args.size,
            args.threads,
            items.join(",")
        );
    } else {
        println!(
            "{} — {} files × {} bytes, {} threads",
            args.label, args.files, args.size, args.threads
        );
        for p in &phases {
            println!(
                "  {:<7} {:>8.2} s {:>10.0} files/s {:>9.1} MB/s",
                p.name,
                p.secs,
                p.ops as f64 / p.secs,
                p.bytes as f64 / p.secs / 1e6
            );
        }
    }
    ExitCode::SUCCESS
}
