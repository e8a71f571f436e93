//! `cairn bench --workload meta`: load on the metadata service alone. It speaks the
//! mounts' filesystem protocol (`fs_session.rs`) with one session, as one busy mount
//! would, on empty files (no data path, so no storage node is involved) spread over
//! `--dirs` directories in a fresh directory of its own (`BUCKET/PREFIX/meta-PID-SECS`).
//!
//! Phases, each timed, with operations, errors, ops/s and latency percentiles, then the
//! cluster's inode count and every metadata replica's resident memory:
//! - `create`: file `f{i}` in directory `d{i % dirs}`;
//! - `stat`: a lookup of a created file (the name to attributes a `stat` costs);
//! - `list`: one whole directory read, `READDIR_PAGE` entries a request;
//! - `rename`: `d{i % dirs}/f{i}` to `d{(i + 1) % dirs}/r{i}` (across directories);
//! - `delete`: unlink of every created file (also the clean-up; skipped with `--keep`).
//!
//! With `--files N` every phase makes one pass: N creates, N lookups, each directory
//! listed once, N renames, N deletes, however long that takes. Without it, create, stat
//! and list run for `--duration` seconds each, rename for at most that long, and delete
//! removes every file created. `--fill N` first adds N more empty files in bulk
//! (`CreateMany`, 10,000 per Raft entry, in `fill-K` directories of 100,000) so the
//! phases run against a namespace of that size; they are removed in bulk at the end.
//!
//! `meta/fill.rs` holds the fill and the clean-up, `meta/report.rs` the report.

mod fill;
mod report;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_client::Client;
use cairn_common::fs::{FileType, FsErrorKind, Ino, MAX_BULK_FILES, ROOT_INO};

use self::fill::{clean_up, fill, Made};
use self::report::{cluster_view, print_fill, print_phase, MetaBenchReport, MetaPhaseReport};
use super::fs_session::{FsCallError, FsSession, READDIR_PAGE};
use super::{percentile_ms, BenchArgs, PhaseReport};

/// Most operations in flight: a session remembers the answers of its last 256 numbered
/// changes, so with more a retried change might not find its first answer.
const MAX_CONCURRENCY: usize = 256;
const MAX_DIRS: usize = 100_000;
/// Most files one run creates one by one (`--files`, or the create phase's bound when it
/// runs for a duration).
const MAX_FILES: u64 = 10_000_000;
/// Most files `--fill` adds.
const MAX_FILL: u64 = 100_000_000;
/// Bulk-filled files per `fill-K` directory (a multiple of `MAX_BULK_FILES`).
const FILL_FILES_PER_DIR: u64 = 100_000;
/// Bulk batches in flight (each holds the state machine for its 10,000 creates).
const FILL_IN_FLIGHT: usize = 4;
/// Readdir requests one listing may make.
const MAX_DIR_PAGES: u64 = MAX_FILES / READDIR_PAGE as u64 + 2;
// A bulk batch never straddles two fill directories.
const _: () = assert!(FILL_FILES_PER_DIR.is_multiple_of(MAX_BULK_FILES as u64));
/// Prefix of bulk-filled files' names.
const FILL_PREFIX: &str = "f";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Create,
    Stat,
    List,
    Rename,
    Delete,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::Stat => "stat",
            Phase::List => "list",
            Phase::Rename => "rename",
            Phase::Delete => "delete",
        }
    }
}

/// The run's tree and what the phases know about it.
#[derive(Default)]
struct Tree {
    dirs: Vec<Ino>,
    /// Numbers of the files created, ascending.
    created: Vec<u64>,
    /// Per created file: whether it was renamed (and so lives at `r{i}`).
    renamed: Vec<bool>,
    /// Per created file: whether it was deleted.
    deleted: Vec<bool>,
}

impl Tree {
    /// Where the `p`th created file lives now.
    fn location(&self, p: usize) -> (Ino, String) {
        let i = self.created[p];
        let d = self.dirs.len() as u64;
        if self.renamed[p] {
            (self.dirs[((i + 1) % d) as usize], format!("r{i}"))
        } else {
            (self.dirs[(i % d) as usize], format!("f{i}"))
        }
    }

    /// One operation of `phase` for job number `job`: how many items it touched.
    async fn one(&self, session: &FsSession, phase: Phase, job: u64) -> Result<u64, FsCallError> {
        let d = self.dirs.len() as u64;
        match phase {
            Phase::Create => {
                let dir = self.dirs[(job % d) as usize];
                session.create(dir, &format!("f{job}")).await.map(|_| 1)
            }
            Phase::Stat => {
                let (dir, name) = self.location((job % self.created.len() as u64) as usize);
                session.lookup(dir, &name).await.map(|_| 1)
            }
            Phase::List => {
                let dir = self.dirs[(job % d) as usize];
                session.read_dir(dir, MAX_DIR_PAGES).await
            }
            Phase::Rename => {
                let p = job as usize;
                let i = self.created[p];
                let (dir, name) = self.location(p);
                let to = self.dirs[((i + 1) % d) as usize];
                session
                    .rename((dir, &name), (to, &format!("r{i}")))
                    .await
                    .map(|()| 1)
            }
            Phase::Delete => {
                let (dir, name) = self.location(job as usize);
                session.unlink(dir, &name, false).await.map(|()| 1)
            }
        }
    }
}

/// What the workers of one phase did.
struct Driven {
    latencies: Vec<Duration>,
    errors: u64,
    items: u64,
    /// Jobs that succeeded (create, rename, delete only).
    succeeded: Vec<u64>,
    seconds: f64,
}

/// Runs jobs `0..jobs` of `phase` on `workers` workers until they are done or
/// `deadline` passes.
async fn drive(
    session: &Arc<FsSession>,
    tree: Arc<Tree>,
    phase: Phase,
    jobs: u64,
    deadline: Option<Instant>,
    workers: usize,
) -> Driven {
    let cursor = Arc::new(AtomicU64::new(0));
    let collect = matches!(phase, Phase::Create | Phase::Rename | Phase::Delete);
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (session, tree, cursor) = (session.clone(), tree.clone(), cursor.clone());
            tokio::spawn(async move {
                let mut done = Driven {
                    latencies: Vec::new(),
                    errors: 0,
                    items: 0,
                    succeeded: Vec::new(),
                    seconds: 0.0,
                };
                let mut first_error = None;
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let job = cursor.fetch_add(1, Ordering::Relaxed);
                    if job >= jobs {
                        break;
                    }
                    let began = Instant::now();
                    match tree.one(&session, phase, job).await {
                        Ok(items) => {
                            done.latencies.push(began.elapsed());
                            done.items += items;
                            if collect {
                                done.succeeded.push(job);
                            }
                        }
                        Err(e) => {
                            done.errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                (done, first_error)
            })
        })
        .collect();
    let mut all = Driven {
        latencies: Vec::new(),
        errors: 0,
        items: 0,
        succeeded: Vec::new(),
        seconds: 0.0,
    };
    for task in tasks {
        match task.await {
            Ok((done, first_error)) => {
                all.latencies.extend(done.latencies);
                all.errors += done.errors;
                all.items += done.items;
                all.succeeded.extend(done.succeeded);
                if let Some(e) = first_error {
                    eprintln!("cairn bench: {}: {e}", phase.name());
                }
            }
            Err(e) => {
                all.errors += 1;
                eprintln!("cairn bench: {}: a worker failed: {e}", phase.name());
            }
        }
    }
    all.seconds = start.elapsed().as_secs_f64().max(1e-9);
    all.latencies.sort_unstable();
    all.succeeded.sort_unstable();
    all
}

fn figures(phase: Phase, driven: &Driven) -> PhaseReport {
    let ops = driven.latencies.len() as u64;
    PhaseReport {
        phase: phase.name().to_string(),
        ops,
        errors: driven.errors,
        seconds: driven.seconds,
        ops_per_sec: ops as f64 / driven.seconds,
        mb_per_sec: 0.0,
        p50_ms: percentile_ms(&driven.latencies, 50.0),
        p99_ms: percentile_ms(&driven.latencies, 99.0),
        p999_ms: percentile_ms(&driven.latencies, 99.9),
    }
}

fn validate(args: &BenchArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.concurrency > MAX_CONCURRENCY {
        bail!("--concurrency must be 1 to {MAX_CONCURRENCY} for --workload meta");
    }
    if args.dirs == 0 || args.dirs > MAX_DIRS {
        bail!("--dirs must be 1 to {MAX_DIRS}");
    }
    if args.files.is_some_and(|n| n == 0 || n > MAX_FILES) {
        bail!("--files must be 1 to {MAX_FILES}");
    }
    if args.fill > MAX_FILL {
        bail!("--fill must be at most {MAX_FILL}");
    }
    if args.files.is_none() && args.duration == 0 {
        bail!("--duration must be at least 1 (or give --files)");
    }
    Ok(())
}

pub async fn run(client: &Client, args: &BenchArgs) -> anyhow::Result<()> {
    validate(args)?;
    let session = Arc::new(
        FsSession::open(client, "cairn bench --workload meta")
            .await
            .context("open a filesystem session with the metadata service")?,
    );
    let mut made = Made::default();
    let mut tree = Tree::default();
    let report = measure(client, args, &session, &mut made, &mut tree).await;
    let cleanup = if args.keep {
        Ok(())
    } else {
        clean_up(&session, &made, &tree).await
    };
    match Arc::try_unwrap(session) {
        Ok(session) => session.close().await,
        Err(_) => eprintln!("cairn bench: the session stays open until its lease runs out"),
    }
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            if let Err(left) = cleanup {
                eprintln!("cairn bench: {left:#}");
            }
            return Err(e);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.kept {
        println!("kept: {}/{}", report.bucket, report.root);
    }
    cleanup
}

/// Makes the tree, fills it, runs the phases.
async fn measure(
    client: &Client,
    args: &BenchArgs,
    session: &Arc<FsSession>,
    made: &mut Made,
    tree: &mut Tree,
) -> anyhow::Result<MetaBenchReport> {
    let bucket = session
        .lookup(ROOT_INO, &args.bucket)
        .await
        .with_context(|| {
            format!(
                "find bucket {:?} (create it with `cairn bucket create`)",
                args.bucket
            )
        })?;
    let mut parent = bucket.ino;
    let mut path = Vec::new();
    for part in args.prefix.split('/').filter(|p| !p.is_empty()) {
        path.push(part.to_string());
        parent = match session.lookup(parent, part).await {
            Ok(attr) if attr.kind == FileType::Dir => attr.ino,
            Ok(_) => bail!("{:?} in the prefix is not a directory", path.join("/")),
            Err(e) if e.kind() == Some(FsErrorKind::NotFound) => {
                let ino = session.mkdir(parent, part).await?;
                made.prefix.push((parent, part.to_string()));
                ino
            }
            Err(e) => return Err(e.into()),
        };
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = format!("meta-{}-{secs}", std::process::id());
    let root = session
        .mkdir(parent, &name)
        .await
        .with_context(|| format!("make the run's directory {name:?}"))?;
    made.root = Some((parent, name.clone(), root));
    path.push(name);
    let root_path = path.join("/");
    for d in 0..args.dirs {
        made.dirs.push(session.mkdir(root, &format!("d{d}")).await?);
    }
    let fill = if args.fill > 0 {
        let report = fill(client, args, session, root, made).await?;
        if !args.json {
            print_fill(&report);
        }
        Some(report)
    } else {
        None
    };

    tree.dirs = made.dirs.clone();
    let deadline = || {
        args.files
            .is_none()
            .then(|| Instant::now() + Duration::from_secs(args.duration))
    };
    let mut phases = vec![Phase::Create, Phase::Stat, Phase::List, Phase::Rename];
    if !args.keep {
        phases.push(Phase::Delete);
    }
    let mut reports = Vec::new();
    for phase in phases {
        let files_made = tree.created.len() as u64;
        let jobs = match (phase, args.files) {
            (Phase::Create, Some(n)) => n,
            (Phase::Create, None) => MAX_FILES,
            (Phase::Stat, None) if files_made > 0 => u64::MAX,
            (Phase::List, Some(_)) => args.dirs as u64,
            (Phase::List, None) => u64::MAX,
            _ => files_made,
        };
        let until = match phase {
            Phase::Delete => None,
            _ => deadline(),
        };
        let shared = Arc::new(std::mem::take(tree));
        let driven = drive(
            session,
            shared.clone(),
            phase,
            jobs,
            until,
            args.concurrency,
        )
        .await;
        *tree = Arc::try_unwrap(shared)
            .map_err(|_| anyhow::anyhow!("a bench worker outlived its phase"))?;
        match phase {
            Phase::Create => {
                tree.created = driven.succeeded.clone();
                tree.renamed = vec![false; tree.created.len()];
                tree.deleted = vec![false; tree.created.len()];
            }
            Phase::Rename => driven
                .succeeded
                .iter()
                .for_each(|p| tree.renamed[*p as usize] = true),
            Phase::Delete => driven
                .succeeded
                .iter()
                .for_each(|p| tree.deleted[*p as usize] = true),
            Phase::Stat | Phase::List => {}
        }
        let report = MetaPhaseReport {
            figures: figures(phase, &driven),
            items: driven.items,
            cluster: cluster_view(client).await,
        };
        if !args.json {
            print_phase(&report);
        }
        reports.push(report);
        if session.is_fenced() {
            bail!("the metadata service ended the bench's session; stopping");
        }
    }
    let report = MetaBenchReport {
        workload: "meta",
        bucket: args.bucket.clone(),
        root: root_path,
        dirs: args.dirs,
        files: args.files,
        duration_secs: args.files.is_none().then_some(args.duration),
        concurrency: args.concurrency,
        directories_made: made.directories(),
        fill,
        phases: reports,
        kept: args.keep,
    };
    Ok(report)
}
