//! `cairn dev up`: a whole local cluster in the foreground until Ctrl-C / SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cairn_common::Redundancy;
use cairn_devcluster::{own_bin_dir, DevCluster, DevClusterSpec};

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Directory for data, logs, pid files and cluster.toml (reused on restart).
    #[arg(long, default_value = "cairn-dev")]
    dir: PathBuf,
    /// Number of metadata replicas.
    #[arg(long, default_value_t = 3)]
    meta: usize,
    /// Number of storage nodes.
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Redundancy of the `default` bucket: K+M erasure coding.
    #[arg(long, default_value = "4+2")]
    ec: String,
    /// First port; replica i uses port-base+i, node j port-base+10+j.
    #[arg(long, default_value_t = 7100)]
    port_base: u16,
    /// Do not mount the filesystem at DIR/mnt.
    #[arg(long)]
    no_mount: bool,
    /// Seconds to wait for the cluster to become ready.
    #[arg(long, default_value_t = 90)]
    ready_timeout: u64,
    /// Plaintext gRPC without certificates (default: mutual TLS, certificates made in
    /// DIR/tls).
    #[arg(long)]
    insecure: bool,
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let redundancy: Redundancy = args.ec.parse()?;
    std::fs::create_dir_all(&args.dir).with_context(|| format!("create {:?}", args.dir))?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("resolve {:?}", args.dir))?;
    let mut spec = DevClusterSpec::new(dir.clone(), own_bin_dir()?);
    spec.meta = args.meta;
    spec.nodes = args.nodes;
    spec.redundancy = redundancy;
    spec.port_base = args.port_base;
    spec.insecure = args.insecure;

    let mut cluster = DevCluster::start(spec)?;
    let ready = tokio::select! {
        r = cluster.wait_ready(Duration::from_secs(args.ready_timeout)) => r,
        _ = super::wait_for_signal() => {
            eprintln!("cairn dev up: interrupted; stopping");
            cluster.shutdown();
            return Ok(());
        }
    };
    if let Err(e) = ready {
        cluster.shutdown();
        return Err(e);
    }
    let mountpoint = dir.join("mnt");
    if !args.no_mount {
        if let Err(e) = cluster.add_mount(&mountpoint, &[]).await {
            cluster.shutdown();
            return Err(e);
        }
    }
    let cluster_file = dir.join("cluster.toml");
    println!(
        "ready: {} metadata replicas, {} storage nodes, bucket `default` ({redundancy}); cluster file {}",
        args.meta,
        args.nodes,
        cluster_file.display()
    );
    println!(
        "try:   export CAIRN_CLUSTER={}; echo hello | cairn put default/hello -; cairn get default/hello -",
        cluster_file.display()
    );
    if !args.no_mount {
        println!(
            "mount: {} (bucket `default` is {}/default)",
            mountpoint.display(),
            mountpoint.display()
        );
    }
    println!(
        "stop:  Ctrl-C (data stays in {}; run again to reuse it)",
        dir.display()
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = super::wait_for_signal() => break,
            _ = tick.tick() => {
                for (name, status) in cluster.reap_exited() {
                    eprintln!("cairn dev up: {name} exited ({status}); see {}/logs/{name}.log", dir.display());
                }
            }
        }
    }
    eprintln!("cairn dev up: stopping");
    cluster.shutdown();
    Ok(())
}
