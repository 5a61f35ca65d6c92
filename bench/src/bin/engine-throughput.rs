//! The per-core limit of log validation: inflate + SHA-256 over CloudTrail log files on local
//! disk, as the engine does it (`trailkeeper::gzip::Gunzip` into a `Sha256Sink`, fed in 64 KiB
//! chunks as S3 bodies arrive), and each half alone with the candidate implementations, so that
//! the backends are chosen by measurement. Prints one JSON line.
//!
//!   engine-throughput DIR [--threads N] [--mode MODE]
//!
//! DIR is searched for `*.json.gz` files under a `CloudTrail/` folder (the log files of a
//! `seed-history --local-dir` corpus; digests are left out). Modes:
//! - `engine`: read each file from disk and run it through the engine's gunzip + hash;
//! - `inflate-zlib-rs`, `inflate-miniz-oxide`: inflate and the gzip CRC-32 only, from memory,
//!   output discarded;
//! - `sha256-aws-lc-rs`, `sha256-ring`, `sha256-sha2`: hash only, over the inflated bytes of the
//!   first `--sample-mb` megabytes of logs, held in memory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::{Parser, ValueEnum};
use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};
use trailkeeper::gzip::{Gunzip, Sha256Sink, gunzip_all};

/// What S3 hands the engine at a time, about.
const CHUNK: usize = 64 * 1024;
const NO_LIMIT: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Engine,
    InflateZlibRs,
    InflateMinizOxide,
    Sha256AwsLcRs,
    Sha256Ring,
    Sha256Sha2,
}

#[derive(Parser)]
struct Args {
    dir: PathBuf,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, value_enum, default_value = "engine")]
    mode: Mode,
    /// Hash-only modes: how many megabytes of inflated logs to hash.
    #[arg(long, default_value_t = 512)]
    sample_mb: u64,
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading directory {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.to_string_lossy().ends_with(".json.gz")
                && path.components().any(|c| c.as_os_str() == "CloudTrail")
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    assert!(
        !out.is_empty(),
        "no CloudTrail log files under {}",
        dir.display()
    );
    out
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs `work` over `items` on `threads` threads; returns the sum of what it returns, and seconds.
fn parallel<T: Sync>(items: &[T], threads: usize, work: impl Fn(&T) -> u64 + Sync) -> (u64, f64) {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let total = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut sum = 0;
                    while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                        sum += work(item);
                    }
                    sum
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).sum()
    });
    (total, start.elapsed().as_secs_f64())
}

/// The engine's path: gunzip (single member, bounded) into SHA-256, 64 KiB at a time.
fn engine(path: &Path) -> u64 {
    let compressed = read(path);
    let mut gunzip = Gunzip::new(Sha256Sink::default(), NO_LIMIT);
    for chunk in compressed.chunks(CHUNK) {
        gunzip
            .update(chunk)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let sink = gunzip
        .finish()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    use trailkeeper::gzip::InflatedSink;
    let n = sink.inflated_len();
    std::hint::black_box(sink.finish());
    n
}

fn inflate_zlib_rs(compressed: &[u8]) -> u64 {
    let mut out = flate2::write::GzDecoder::new(Counter(0));
    for chunk in compressed.chunks(CHUNK) {
        out.write_all(chunk).expect("inflate");
    }
    out.finish().expect("inflate").0
}

struct Counter(u64);
impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where a gzip member's deflate stream starts (RFC 1952 header).
fn deflate_start(gz: &[u8]) -> usize {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    assert!(gz.len() > 10 && gz[0] == 0x1f && gz[1] == 0x8b, "not gzip");
    let flags = gz[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        at += 2 + u16::from_le_bytes([gz[at], gz[at + 1]]) as usize;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            at += gz[at..].iter().position(|&b| b == 0).expect("terminated") + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    at
}

/// Raw inflate plus the gzip CRC-32 (crc32fast, as flate2 computes it), so that the work is
/// the same as the other backend's.
fn inflate_miniz_oxide(compressed: &[u8]) -> u64 {
    let mut state = InflateState::new_boxed(DataFormat::Raw);
    let mut input = &compressed[deflate_start(compressed)..];
    let mut out = vec![0u8; CHUNK];
    let mut total = 0u64;
    let mut crc = crc32fast::Hasher::new();
    loop {
        let r = inflate(&mut state, input, &mut out, MZFlush::None);
        input = &input[r.bytes_consumed..];
        total += r.bytes_written as u64;
        crc.update(&out[..r.bytes_written]);
        match r.status {
            Ok(MZStatus::StreamEnd) => {
                std::hint::black_box(crc.finalize());
                return total;
            }
            Ok(_) => {}
            Err(e) => panic!("miniz_oxide: {e:?}"),
        }
    }
}

fn main() {
    let args = Args::parse();
    let files = log_files(&args.dir);
    let compressed_total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).expect("metadata").len())
        .sum();
    let (files_used, compressed, bytes, seconds) = match args.mode {
        Mode::Engine => {
            let (n, s) = parallel(&files, args.threads, |p| engine(p));
            (files.len(), compressed_total, n, s)
        }
        Mode::InflateZlibRs | Mode::InflateMinizOxide => {
            let data: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
            let f: fn(&[u8]) -> u64 = match args.mode {
                Mode::InflateZlibRs => inflate_zlib_rs,
                _ => inflate_miniz_oxide,
            };
            let (n, s) = parallel(&data, args.threads, |d| f(d));
            (files.len(), compressed_total, n, s)
        }
        Mode::Sha256AwsLcRs | Mode::Sha256Ring | Mode::Sha256Sha2 => {
            let mut data = Vec::new();
            let mut held = 0u64;
            let mut compressed = 0u64;
            for f in &files {
                if held >= args.sample_mb << 20 {
                    break;
                }
                let gz = read(f);
                compressed += gz.len() as u64;
                let raw = gunzip_all(&gz, NO_LIMIT).expect("inflate");
                held += raw.len() as u64;
                data.push(raw);
            }
            let hash: fn(&[u8]) -> u64 = match args.mode {
                Mode::Sha256AwsLcRs => |d| {
                    std::hint::black_box(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, d));
                    d.len() as u64
                },
                Mode::Sha256Ring => |d| {
                    std::hint::black_box(ring::digest::digest(&ring::digest::SHA256, d));
                    d.len() as u64
                },
                _ => |d| {
                    use sha2::Digest;
                    std::hint::black_box(sha2::Sha256::digest(d));
                    d.len() as u64
                },
            };
            let (n, s) = parallel(&data, args.threads, |d| hash(d));
            (data.len(), compressed, n, s)
        }
    };
    let mode = format!("{:?}", args.mode);
    println!(
        "{}",
        serde_json::json!({
            "mode": mode,
            "threads": args.threads,
            "files": files_used,
            "compressed_bytes": compressed,
            "inflated_bytes": bytes,
            "seconds": seconds,
            "inflated_mb_per_s": bytes as f64 / 1e6 / seconds,
        })
    );
}
