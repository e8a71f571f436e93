//! `cairn bench`: a load generator against a running cluster, like `rados bench` or
//! `warp`. Workers put and get objects through the client library for a fixed time; the
//! report gives throughput (MB/s, ops/s) and latency percentiles per phase. The `meta`
//! workload (`bench/meta.rs`) loads the metadata service alone with the mounts'
//! filesystem operations on empty files.

mod fs_session;
mod meta;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_client::Client;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Put objects for the duration.
    Put,
    /// Write KEYS objects, then get them (round robin) for the duration.
    Get,
    /// Write KEYS objects, then 70% gets and 30% puts over them.
    Mixed,
    /// Put, then get, then delete small objects (each phase for the duration).
    Small,
    /// Metadata only: create, stat, list, rename and delete empty files through the
    /// mounts' filesystem protocol, over --dirs directories (--files N: one pass of N
    /// per phase; else each phase for the duration); --fill N first adds N files in bulk.
    /// Reports each metadata replica's resident memory after every phase.
    Meta,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "put")]
    workload: Workload,
    #[arg(long, default_value = "default")]
    bucket: String,
    /// Object size: bytes, or with KiB / MiB / GiB (default 4MiB; 4KiB for --workload small).
    #[arg(long)]
    size: Option<String>,
    /// Operations in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Distinct keys that gets read and puts overwrite (put and small use them round robin
    /// per worker).
    #[arg(long, default_value_t = 64)]
    keys: usize,
    /// Key prefix, so that runs do not collide (meta: the directory under which each run
    /// makes its own `meta-PID-SECS`).
    #[arg(long, default_value = "bench/")]
    prefix: String,
    /// Keep the objects or files written (default: delete them at the end).
    #[arg(long)]
    keep: bool,
    /// Meta: directories the files are spread over.
    #[arg(long, default_value_t = 16)]
    dirs: usize,
    /// Meta: every phase makes one pass over this many files instead of running for the
    /// duration.
    #[arg(long)]
    files: Option<u64>,
    /// Meta: first add this many empty files in bulk (10,000 per Raft entry; cluster
    /// admins only), so the phases run against a large namespace.
    #[arg(long, default_value_t = 0)]
    fill: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// One phase's figures.
#[derive(Debug, Serialize)]
pub struct PhaseReport {
    pub phase: String,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    /// Decimal megabytes (10^6 bytes) per second of object data.
    pub mb_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub workload: String,
    pub object_bytes: usize,
    pub concurrency: usize,
    pub phases: Vec<PhaseReport>,
}

/// Parses `4096`, `4KiB`, `1MiB`, `2GiB`, `1TiB`.
pub fn parse_size(text: &str) -> anyhow::Result<usize> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: usize = digits
        .parse()
        .with_context(|| format!("size {text:?}: expected a number"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        other => bail!("size {text:?}: unknown unit {other:?} (use KiB, MiB, GiB or TiB)"),
    };
    n.checked_mul(scale)
        .with_context(|| format!("size {text:?} is too large"))
}

/// Latency percentile (nearest rank) of sorted samples, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // The small epsilon keeps 99.9% of 1000 samples at rank 999 despite rounding.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

#[derive(Clone, Copy)]
enum Op {
    Put,
    Get,
    Delete,
}

#[derive(Clone, Copy)]
struct Phase {
    name: &'static str,
    /// Operation for (worker, sequence number).
    pick: fn(usize, u64) -> Op,
    /// Stop after one pass over the keys instead of at the deadline.
    one_pass: bool,
}

pub async fn run(client: &Client, args: BenchArgs) -> anyhow::Result<()> {
    if args.workload == Workload::Meta {
        return meta::run(client, &args).await;
    }
    if args.files.is_some() || args.fill > 0 {
        bail!("--files and --fill belong to --workload meta");
    }
    let default_size = if args.workload == Workload::Small {
        "4KiB"
    } else {
        "4MiB"
    };
    let size = parse_size(args.size.as_deref().unwrap_or(default_size))?;
    if args.concurrency == 0 || args.keys == 0 || args.duration == 0 {
        bail!("--concurrency, --keys and --duration must be at least 1");
    }
    let payload: Arc<Vec<u8>> = Arc::new((0..size).map(|i| (i * 31 % 251) as u8).collect());
    let put_phase = Phase {
        name: "put",
        pick: |_, _| Op::Put,
        one_pass: false,
    };
    let get_phase = Phase {
        name: "get",
        pick: |_, _| Op::Get,
        one_pass: false,
    };
    let prepare = Phase {
        name: "prepare",
        pick: |_, _| Op::Put,
        one_pass: true,
    };
    let delete = Phase {
        name: "delete",
        pick: |_, _| Op::Delete,
        one_pass: true,
    };
    let phases: Vec<Phase> = match args.workload {
        Workload::Put => vec![put_phase],
        Workload::Get => vec![prepare, get_phase],
        Workload::Mixed => vec![
            prepare,
            Phase {
                name: "mixed",
                pick: |w, i| {
                    if (w as u64 + i) % 10 < 3 {
                        Op::Put
                    } else {
                        Op::Get
                    }
                },
                one_pass: false,
            },
        ],
        Workload::Small => vec![put_phase, get_phase, delete],
        Workload::Meta => unreachable!("the meta workload returned above"),
    };
    let mut report = BenchReport {
        workload: format!("{:?}", args.workload).to_lowercase(),
        object_bytes: size,
        concurrency: args.concurrency,
        phases: Vec::new(),
    };
    for phase in &phases {
        let r = run_phase(client, &args, phase, payload.clone()).await;
        if phase.name == "prepare" {
            if r.errors > 0 {
                bail!(
                    "{} of {} writes failed while preparing",
                    r.errors,
                    args.keys
                );
            }
            continue;
        }
        if !args.json {
            print_phase(&r);
        }
        report.phases.push(r);
    }
    if !args.keep && args.workload != Workload::Small {
        run_phase(client, &args, &delete, payload).await;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

fn print_phase(r: &PhaseReport) {
    println!(
        "{:<7} {:>8} ops {:>9.1} ops/s {:>9.1} MB/s  p50 {:>8.2} ms  p99 {:>8.2} ms  p99.9 {:>8.2} ms  errors {}",
        r.phase, r.ops, r.ops_per_sec, r.mb_per_sec, r.p50_ms, r.p99_ms, r.p999_ms, r.errors
    );
}

async fn run_phase(
    client: &Client,
    args: &BenchArgs,
    phase: &Phase,
    payload: Arc<Vec<u8>>,
) -> PhaseReport {
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers = args.concurrency.min(if phase.one_pass {
        args.keys
    } else {
        usize::MAX
    });
    let mut tasks = Vec::new();
    for w in 0..workers {
        let client = client.clone();
        let payload = payload.clone();
        let stop = stop.clone();
        let bucket = args.bucket.clone();
        let prefix = args.prefix.clone();
        let (keys, concurrency, one_pass, pick) = (args.keys, workers, phase.one_pass, phase.pick);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut i = 0u64;
            loop {
                // Worker w owns keys w, w + concurrency, ...
                let key_index = w + (i as usize * concurrency);
                if one_pass && key_index >= keys {
                    break;
                }
                if !one_pass && (stop.load(Ordering::Relaxed) || Instant::now() >= deadline) {
                    break;
                }
                let key = format!("{prefix}{}", key_index % keys);
                let began = Instant::now();
                let result = match pick(w, i) {
                    Op::Put => client.put(&bucket, &key, &payload[..]).await.map(drop),
                    Op::Get => {
                        let mut sink = tokio::io::sink();
                        client.get(&bucket, &key, None, &mut sink).await.map(drop)
                    }
                    Op::Delete => client.delete(&bucket, &key).await,
                };
                match result {
                    Ok(()) => latencies.push(began.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                i += 1;
            }
            (latencies, errors, first_error)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e, first)) = t.await {
            latencies.extend(l);
            errors += e;
            if let Some(msg) = first {
                eprintln!("cairn bench: {}: {msg}", phase.name);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    latencies.sort_unstable();
    let ops = latencies.len() as u64;
    PhaseReport {
        phase: phase.name.to_string(),
        ops,
        errors,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        mb_per_sec: match phase.name {
            "delete" => 0.0,
            _ => ops as f64 * payload.len() as f64 / seconds / 1e6,
        },
        p50_ms: percentile_ms(&latencies, 50.0),
        p99_ms: percentile_ms(&latencies, 99.0),
        p999_ms: percentile_ms(&latencies, 99.9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("2TiB").unwrap(), 2 << 40);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&samples, 50.0), 500.0);
        assert_eq!(percentile_ms(&samples, 99.0), 990.0);
        assert_eq!(percentile_ms(&samples, 99.9), 999.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }
}
