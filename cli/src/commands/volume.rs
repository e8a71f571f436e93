//! `cairn volume`: block volumes (create, ls, resize, rm) and `serve`, which attaches one
//! and exports it over NBD until stopped (SIGINT/SIGTERM) or fenced.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use cairn_block::catalog::{bucket_of, Catalog, VolumeInfo};
use cairn_block::volume::Volume;
use cairn_client::Client;
use cairn_fuse_mount::backend::FsBackend;
use cairn_fuse_mount::cluster::ClusterOptions;
use clap::Subcommand;

use super::bench::parse_size;
use super::{session, RedundancyArgs};

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a thin volume: unwritten ranges hold nothing and read as zeros.
    Create {
        name: String,
        /// Size: bytes, or with KiB / MiB / GiB / TiB (a multiple of 512 bytes).
        #[arg(long)]
        size: String,
        #[command(flatten)]
        redundancy: RedundancyArgs,
    },
    /// List volumes with their size, stored bytes and whether a server has them attached.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Change a detached volume's size (shrinking needs --allow-shrink: it drops data).
    Resize {
        name: String,
        #[arg(long)]
        size: String,
        #[arg(long)]
        allow_shrink: bool,
    },
    /// Remove a detached volume without snapshots; its storage is reclaimed in the
    /// background.
    Rm { name: String },
    /// Record VOLUME as committed now (every write its server flushed) as VOLUME@SNAPSHOT:
    /// one metadata commit, no data copied.
    Snapshot { volume: String, snapshot: String },
    /// Remove snapshot VOLUME@SNAPSHOT; storage only it used is reclaimed in the
    /// background.
    SnapshotRm { snapshot: String },
    /// Make a new, writable volume NEW from snapshot VOLUME@SNAPSHOT (sharing its data
    /// until either is written).
    Clone {
        snapshot: String,
        new: String,
        #[command(flatten)]
        redundancy: RedundancyArgs,
    },
    /// Attach NAME (exclusively: a second server is refused) and export it over NBD at
    /// ADDR until SIGINT/SIGTERM. Writes are durable once a client's FLUSH (or FUA write)
    /// is answered. NAME may be a snapshot, VOLUME@SNAPSHOT: exported read-only.
    Serve {
        name: String,
        /// Address to listen on for NBD clients, e.g. 127.0.0.1:10809.
        #[arg(long)]
        listen: SocketAddr,
        /// Memory for recently used volume chunks, in MiB.
        #[arg(long, default_value_t = 64)]
        chunk_cache_mib: usize,
        /// Writes are buffered until a FLUSH or until this many MiB are buffered, then
        /// stored (in parallel, a chunk at a time) and committed.
        #[arg(long, default_value_t = 16)]
        write_buffer_mib: usize,
    },
}

pub async fn run(client: Client, command: VolumeCommand) -> anyhow::Result<()> {
    if let VolumeCommand::Serve {
        name,
        listen,
        chunk_cache_mib,
        write_buffer_mib,
    } = command
    {
        let opts = ClusterOptions {
            session_name: format!("cairn-volume-serve:{name}@{listen}"),
            chunk_cache_bytes: chunk_cache_mib.saturating_mul(1 << 20),
            flush_bytes: write_buffer_mib.max(1).saturating_mul(1 << 20),
        };
        return serve(client, &name, listen, opts).await;
    }
    let opts = ClusterOptions {
        session_name: "cairn-volume:admin".into(),
        ..ClusterOptions::default()
    };
    let backend = session(client.clone(), opts).await?;
    let result = manage(&client, &Catalog::new(backend.clone()), command).await;
    backend.close().await;
    result
}

async fn manage(client: &Client, catalog: &Catalog, command: VolumeCommand) -> anyhow::Result<()> {
    match command {
        VolumeCommand::Create {
            name,
            size,
            redundancy,
        } => {
            let size = parse_size(&size)? as u64;
            let redundancy = redundancy.resolve()?;
            catalog
                .create(&name, size, |bucket| async move {
                    client.create_bucket(&bucket, redundancy).await
                })
                .await?;
            println!(
                "created volume {name}: {size} bytes, {redundancy}, in bucket {}",
                bucket_of(&name)
            );
        }
        VolumeCommand::Ls { json } => {
            let volumes = catalog.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&volumes)?);
            } else {
                print_table(&volumes);
            }
        }
        VolumeCommand::Resize {
            name,
            size,
            allow_shrink,
        } => {
            let size = parse_size(&size)? as u64;
            catalog.resize(&name, size, allow_shrink).await?;
            println!("volume {name} is now {size} bytes");
        }
        VolumeCommand::Rm { name } => {
            catalog.remove(&name).await?;
            println!("removed volume {name}");
        }
        VolumeCommand::Snapshot { volume, snapshot } => {
            catalog.snapshot(&volume, &snapshot).await?;
            println!("snapshot {volume}@{snapshot} taken");
        }
        VolumeCommand::SnapshotRm { snapshot } => {
            let (volume, snap) = split_snapshot(&snapshot)?;
            catalog.remove_snapshot(volume, snap).await?;
            println!("removed snapshot {snapshot}");
        }
        VolumeCommand::Clone {
            snapshot,
            new,
            redundancy,
        } => {
            let (volume, snap) = split_snapshot(&snapshot)?;
            let redundancy = redundancy.resolve()?;
            catalog
                .clone_snapshot(volume, snap, &new, |bucket| async move {
                    client.create_bucket(&bucket, redundancy).await
                })
                .await?;
            println!("created volume {new} from snapshot {snapshot}");
        }
        VolumeCommand::Serve { .. } => unreachable!("handled by run"),
    }
    Ok(())
}

/// `VOLUME@SNAPSHOT` split in two.
fn split_snapshot(text: &str) -> anyhow::Result<(&str, &str)> {
    text.split_once('@')
        .with_context(|| format!("{text:?} names no snapshot: write VOLUME@SNAPSHOT"))
}

fn print_table(volumes: &[VolumeInfo]) {
    println!(
        "{:<24} {:>16} {:>16} {:>8}  SNAPSHOTS",
        "NAME", "SIZE", "STORED", "ATTACHED"
    );
    for v in volumes {
        println!(
            "{:<24} {:>16} {:>16} {:>8}  {}",
            v.name,
            v.size,
            v.allocated,
            if v.attached { "yes" } else { "no" },
            v.snapshots.join(" ")
        );
    }
}

async fn serve(
    client: Client,
    name: &str,
    listen: SocketAddr,
    opts: ClusterOptions,
) -> anyhow::Result<()> {
    if std::env::var_os("CAIRN_LOG").is_none() {
        cairn_common::telemetry::init_tracing();
    }
    let backend = session(client, opts).await?;
    let attached = match name.split_once('@') {
        Some((volume, snapshot)) => Volume::open_snapshot(backend.clone(), volume, snapshot).await,
        None => Volume::attach(backend.clone(), name).await,
    };
    let volume = match attached {
        Ok(v) => Arc::new(v),
        Err(e) => {
            backend.close().await;
            return Err(e.into());
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            let _ = detach(volume).await;
            backend.close().await;
            return Err(e).with_context(|| format!("listen on {listen}"));
        }
    };
    tracing::info!(volume = name, %listen, "serving the volume over NBD");
    // Readiness for scripts and supervisors: the volume is attached and the port open.
    println!("serving volume {name} at nbd://{listen}/{name}");
    // A session fenced while idle (the host was frozen or cut off past its lease) ends
    // the server too: another server may own the volume now.
    let stop = {
        let backend = backend.clone();
        async move {
            tokio::select! {
                () = super::wait_for_signal() => {}
                () = backend.fenced() => {}
            }
        }
    };
    let compactor = tokio::spawn(Volume::compact_forever(Arc::downgrade(&volume)));
    let served = cairn_block::nbd::serve(listener, name, volume.clone(), stop).await;
    compactor.abort();
    let _ = compactor.await;
    if backend.is_fenced() {
        let _ = detach(volume).await;
        anyhow::bail!(
            "volume {name}: this server's session was fenced (its lease expired); another server may own the volume now, and nothing more is written from here"
        );
    }
    let detached = detach(volume).await;
    backend.close().await;
    served?;
    detached?;
    println!("volume {name} detached");
    Ok(())
}

async fn detach(volume: Arc<Volume>) -> anyhow::Result<()> {
    let volume = Arc::try_unwrap(volume)
        .map_err(|_| anyhow::anyhow!("volume still in use after its server stopped"))?;
    volume.detach().await.context("flush and detach the volume")
}
