//! The `cairn` commands: argument definitions and dispatch.

mod backup;
mod bench;
mod cert;
mod copy;
mod dev;
mod objects;
mod progress;
mod status;
mod user;
mod volume;

use std::path::PathBuf;

use anyhow::Context;
use cairn_client::Client;
use cairn_common::config::ClusterFile;
use cairn_common::Redundancy;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cairn", version, about = "Cairn storage cluster client")]
pub struct Cli {
    /// The cluster file written by `cairn dev up` (DIR/cluster.toml).
    #[arg(long, env = "CAIRN_CLUSTER", global = true)]
    cluster: Option<PathBuf>,
    /// A file holding an API token (`cairn user add`): act as its user instead of the
    /// certificate's name (overrides the cluster file's `token_file`).
    #[arg(long, env = "CAIRN_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// API tokens: credentials that act as a named user (cluster admins only).
    User {
        #[command(subcommand)]
        command: user::UserCommand,
    },
    /// Create and list buckets.
    Bucket {
        #[command(subcommand)]
        command: BucketCommand,
    },
    /// Store FILE (or standard input: -) as BUCKET/KEY.
    Put { target: String, file: String },
    /// Fetch BUCKET/KEY into FILE (or standard output: -).
    Get {
        target: String,
        file: String,
        /// Only bytes START..END (END exclusive), e.g. --range 100-200.
        #[arg(long)]
        range: Option<String>,
    },
    /// List keys: BUCKET or BUCKET/PREFIX.
    Ls {
        target: String,
        /// Print at most this many keys (default: all, fetched page by page).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show an object's size, generation and health.
    Stat {
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete BUCKET/KEY (its shards are reclaimed in the background).
    Rm { target: String },
    /// Copy BUCKET/KEY (an object, or a file of a mount) to BUCKET/KEY, as committed now.
    Cp {
        source: String,
        target: String,
        /// Share the source's chunks: one metadata commit, no data copied, at any size.
        /// Without it the bytes are read and stored again, with the destination
        /// bucket's redundancy.
        #[arg(long)]
        reflink: bool,
    },
    /// Show how shards would be moved to even out the nodes. Rebalancing runs by itself
    /// whenever nothing needs repair; --dry-run only shows the plan.
    Rebalance {
        #[arg(long)]
        dry_run: bool,
    },
    /// Verify every shard now (on every up node, or one): corrupt shards are
    /// quarantined and rebuilt by repair.
    Scrub {
        /// Only this storage node.
        #[arg(long)]
        node: Option<u64>,
    },
    /// Nodes, metadata leader, capacity and degraded chunks.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Repair progress and bandwidth.
    Repair {
        #[command(subcommand)]
        command: RepairCommand,
    },
    /// Small files kept inline, in the metadata: the threshold and the budget.
    Inline {
        #[command(subcommand)]
        command: InlineCommand,
    },
    /// Storage nodes: list, drain, undrain, remove.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Metadata replicas: add or remove (Raft membership change); back up and restore
    /// the metadata.
    Meta {
        #[command(subcommand)]
        command: MetaCommand,
    },
    /// Block volumes: create, list, resize, remove, and serve one over NBD.
    Volume {
        #[command(subcommand)]
        command: volume::VolumeCommand,
    },
    /// Load generator: put/get/mixed/small-object workloads, and metadata operations
    /// (meta), with throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// The cluster's certificate authority and certificates (mutual TLS).
    Cert {
        #[command(subcommand)]
        command: cert::CertCommand,
    },
    /// Local development cluster.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

/// A filesystem session with the cluster (volumes, `cp --reflink`).
pub(crate) async fn session(
    client: Client,
    opts: cairn_fuse_mount::cluster::ClusterOptions,
) -> anyhow::Result<std::sync::Arc<cairn_fuse_mount::cluster::ClusterBackend>> {
    cairn_fuse_mount::cluster::ClusterBackend::connect(client, opts)
        .await
        .context("open a session with the metadata service")
}

/// How a new bucket's (or volume's) data is stored.
#[derive(clap::Args, Debug)]
pub(crate) struct RedundancyArgs {
    /// Erasure coding K+M, e.g. 4+2 (the default).
    #[arg(long, conflicts_with = "replicas")]
    ec: Option<String>,
    /// Full replicas instead of erasure coding.
    #[arg(long)]
    replicas: Option<u32>,
}

impl RedundancyArgs {
    pub(crate) fn resolve(&self) -> anyhow::Result<Redundancy> {
        Ok(match (&self.ec, self.replicas) {
            (Some(ec), _) => ec.parse::<Redundancy>()?,
            (None, Some(n)) => Redundancy::Replicas { n }.validate()?,
            (None, None) => Redundancy::DEFAULT,
        })
    }
}

#[derive(Subcommand, Debug)]
enum BucketCommand {
    /// Create a bucket (default redundancy: ec 4+2).
    Create {
        name: String,
        #[command(flatten)]
        redundancy: RedundancyArgs,
    },
    /// List buckets.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Give USER (a client certificate's name, or an API token's user) ACCESS to BUCKET: read, write, admin, or
    /// none to revoke.
    Grant {
        bucket: String,
        user: String,
        access: String,
    },
}

#[derive(Subcommand, Debug)]
enum RepairCommand {
    /// Degraded chunks, the repair queue, what was rebuilt and moved, the throttle.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Limit repair and rebalance writes to MBPS megabytes (MiB) per second across the
    /// cluster; 0 removes the limit (the default: storage nodes run fewer rebuilds while
    /// clients use them).
    Throttle { mbps: u64 },
}

#[derive(Subcommand, Debug)]
enum InlineCommand {
    /// Keep file bytes that end within MAX_BYTES inline (at most 1 MiB; 0: none), all
    /// files together within BUDGET_BYTES. Files past either go to chunks as before.
    Set {
        #[arg(long)]
        max_bytes: u64,
        #[arg(long)]
        budget_bytes: u64,
    },
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Every storage node with its state, usage and shards.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Move every shard off node ID (it keeps serving until empty).
    Drain { id: u64 },
    /// Stop draining node ID.
    Undrain { id: u64 },
    /// Forget node ID; refused while shards are placed on it.
    Remove { id: u64 },
    /// Give node ID a relative share of data (1.0 = normal, 2.0 = twice as much).
    Weight { id: u64, weight: f64 },
}

#[derive(Subcommand, Debug)]
enum MetaCommand {
    /// Add the running, empty replica ID listening at ADDR; returns when it votes.
    Add { id: u64, addr: String },
    /// Remove replica ID from the metadata cluster.
    Remove { id: u64 },
    /// Write a backup of the whole metadata state to FILE (cluster admins), while the
    /// cluster serves: every change acknowledged before it is in it.
    Backup { file: PathBuf },
    /// Build a new metadata group of one replica from the backup FILE, on the host of
    /// that replica, into its empty data directory: runs `cairn-meta --restore FILE`
    /// with the replica's own flags, given after `--` (e.g. `-- --config meta.toml`).
    Restore {
        file: PathBuf,
        #[arg(last = true)]
        meta_args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum DevCommand {
    /// Start a local cluster as separate processes on 127.0.0.x; stops on Ctrl-C.
    Up(dev::UpArgs),
}

fn connect(cluster: &Option<PathBuf>, token_file: &Option<PathBuf>) -> anyhow::Result<Client> {
    let path = cluster
        .as_ref()
        .context("no cluster given: pass --cluster DIR/cluster.toml or set CAIRN_CLUSTER")?;
    let mut cluster = ClusterFile::load(path)?;
    if let Some(token_file) = token_file {
        cluster.token_file = Some(token_file.clone());
    }
    Ok(Client::new(&cluster)?)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        cluster,
        token_file,
        command,
    } = cli;
    let client = || connect(&cluster, &token_file);
    match command {
        Command::Dev {
            command: DevCommand::Up(args),
        } => dev::up(args).await,
        Command::Cert { command } => cert::run(command),
        Command::User { command } => user::run(&client()?, &command).await,
        Command::Bucket { command } => {
            let client = client()?;
            match command {
                BucketCommand::Create { name, redundancy } => {
                    objects::bucket_create(&client, &name, redundancy.resolve()?).await
                }
                BucketCommand::Ls { json } => objects::bucket_ls(&client, json).await,
                BucketCommand::Grant {
                    bucket,
                    user,
                    access,
                } => {
                    client.set_grant(&bucket, &user, &access).await?;
                    println!("{user}: {access} on bucket {bucket}");
                    Ok(())
                }
            }
        }
        Command::Put { target, file } => objects::put(&client()?, &target, &file).await,
        Command::Get {
            target,
            file,
            range,
        } => objects::get(&client()?, &target, &file, range.as_deref()).await,
        Command::Ls { target, limit } => objects::ls(&client()?, &target, limit).await,
        Command::Stat { target, json } => objects::stat(&client()?, &target, json).await,
        Command::Rm { target } => objects::rm(&client()?, &target).await,
        Command::Cp {
            source,
            target,
            reflink,
        } => copy::copy(&client()?, &source, &target, reflink).await,
        Command::Bench(args) => bench::run(&client()?, args).await,
        Command::Volume { command } => volume::run(client()?, command).await,
        Command::Status { json } => status::show(&client()?, json).await,
        Command::Scrub { node } => status::scrub(&client()?, node).await,
        Command::Rebalance { dry_run } => status::rebalance(&client()?, dry_run).await,
        Command::Repair { command } => {
            let client = client()?;
            match command {
                RepairCommand::Status { json } => status::repair_status(&client, json).await,
                RepairCommand::Throttle { mbps } => {
                    client
                        .set_repair_throttle(mbps.saturating_mul(1 << 20))
                        .await?;
                    if mbps == 0 {
                        println!("repair and rebalance not limited (nodes yield to client I/O)");
                    } else {
                        println!("repair and rebalance limited to {mbps} MiB/s");
                    }
                    Ok(())
                }
            }
        }
        Command::Inline {
            command:
                InlineCommand::Set {
                    max_bytes,
                    budget_bytes,
                },
        } => {
            client()?.set_inline_limits(max_bytes, budget_bytes).await?;
            println!(
                "file bytes below {max_bytes} kept inline, within {budget_bytes} bytes in all"
            );
            Ok(())
        }
        Command::Node { command } => {
            let client = client()?;
            match command {
                NodeCommand::Ls { json } => status::node_ls(&client, json).await,
                NodeCommand::Drain { id } => {
                    client.set_node_draining(id, true).await?;
                    println!("node {id} is draining: its shards move to other nodes");
                    Ok(())
                }
                NodeCommand::Undrain { id } => {
                    client.set_node_draining(id, false).await?;
                    println!("node {id} is no longer draining");
                    Ok(())
                }
                NodeCommand::Weight { id, weight } => {
                    if !(0.01..=100.0).contains(&weight) {
                        anyhow::bail!("weight must be between 0.01 and 100");
                    }
                    client
                        .set_node_weight(id, (weight * 100.0).round() as u32)
                        .await?;
                    println!("node {id} now has weight {weight}");
                    Ok(())
                }
                NodeCommand::Remove { id } => {
                    client.remove_node(id).await?;
                    println!("node {id} removed");
                    Ok(())
                }
            }
        }
        Command::Meta { command } => match command {
            MetaCommand::Restore { file, meta_args } => backup::restore(&file, &meta_args),
            MetaCommand::Backup { file } => backup::backup(&client()?, &file).await,
            MetaCommand::Add { id, addr } => {
                client()?.add_meta_replica(id, &addr).await?;
                println!("metadata replica {id} ({addr}) is a voter");
                Ok(())
            }
            MetaCommand::Remove { id } => {
                client()?.remove_meta_replica(id).await?;
                println!("metadata replica {id} removed");
                Ok(())
            }
        },
    }
}

/// Seconds since the epoch as an RFC 3339 date (UTC), for people; `--json` output keeps
/// the number.
pub(crate) fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Completes at SIGINT or SIGTERM (never, if the handlers cannot be installed).
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
