//! Test harness for the cluster backend: a real local cluster (`cairn-meta` and
//! `cairn-node` processes from the harness in `cairn-tests`) and one or more in-process
//! FUSE mounts of it, each like another host. Tests work inside the `default` bucket.
//! `Drop` unmounts every mount, ends their sessions and stops the cluster, also when the
//! test panics (the cluster's directory with the daemons' logs is kept then).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_common::Redundancy;
use cairn_fuse_mount::cluster::{ClusterBackend, ClusterOptions};
use cairn_fuse_mount::{mount_on, MountHandle, MountOptions};
use cairn_tests::TestCluster;

use super::Mounted;

pub struct ClusterMount {
    handle: Option<MountHandle>,
    pub backend: Arc<ClusterBackend>,
    /// Where the filesystem is mounted (its root holds the buckets).
    pub mountpoint: PathBuf,
    /// The `default` bucket in this mount, where tests work.
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mounted for ClusterMount {
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// A cluster and its mounts; dropped mounts first, then the cluster, then the runtime.
pub struct ClusterMounts {
    pub mounts: Vec<ClusterMount>,
    pub cluster: Option<TestCluster>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Mount options for tests: no auto-unmount helper (Drop unmounts).
pub fn test_mount_options() -> MountOptions {
    MountOptions {
        auto_unmount: false,
        ..MountOptions::default()
    }
}

impl ClusterMounts {
    /// A small cluster (1 metadata replica, 3 nodes, ec 2+1) with `n` mounts.
    pub fn start(n: usize, options: MountOptions) -> ClusterMounts {
        Self::start_with(n, options, ClusterOptions::default(), |_| {})
    }

    pub fn start_with(
        n: usize,
        options: MountOptions,
        cluster_options: ClusterOptions,
        adjust: impl Fn(&mut cairn_devcluster::DevClusterSpec),
    ) -> ClusterMounts {
        // The mounts' logs, at CAIRN_LOG's level (default: warnings), in the test output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let runtime = cairn_fuse_mount::request_runtime(&options).expect("request runtime");
        let cluster = runtime.block_on(TestCluster::start_with(
            1,
            3,
            Redundancy::Ec { k: 2, m: 1 },
            adjust,
        ));
        let mut all = ClusterMounts {
            mounts: Vec::new(),
            cluster: Some(cluster),
            runtime: Some(runtime),
        };
        for _ in 0..n {
            all.add_mount(options.clone(), cluster_options.clone());
        }
        all
    }

    /// Adds a mount as the mounts' user (certificate role `mount`, granted write on every
    /// bucket there is now), as `cairn dev up` and compute nodes mount.
    pub fn add_mount(&mut self, options: MountOptions, cluster_options: ClusterOptions) {
        let cluster = &self.cluster.as_ref().expect("cluster lives").cluster;
        self.block_on(cluster.grant_mount_user())
            .expect("grant the mount user");
        let client = self
            .block_on(async { cluster.mount_client() })
            .expect("the mount user's client");
        self.add_mount_as(client, options, cluster_options);
    }

    /// Adds a mount as the cluster admin, who may also create and remove buckets.
    pub fn add_admin_mount(&mut self, options: MountOptions) {
        let client = self.cluster().client.clone();
        self.add_mount_as(client, options, ClusterOptions::default());
    }

    fn add_mount_as(
        &mut self,
        client: cairn_client::Client,
        options: MountOptions,
        cluster_options: ClusterOptions,
    ) {
        let runtime = self.runtime.as_ref().expect("runtime lives");
        let dir = tempfile::Builder::new()
            .prefix("cairn-cluster-mount")
            .tempdir()
            .expect("create temp mount point");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod mount point");
        }
        let backend = runtime
            .block_on(ClusterBackend::connect(client, cluster_options))
            .expect("open a session");
        let handle = mount_on(
            backend.clone(),
            dir.path(),
            options,
            runtime.handle().clone(),
        )
        .expect("mount the cluster");
        let mountpoint = dir.path().to_owned();
        self.mounts.push(ClusterMount {
            handle: Some(handle),
            backend,
            root: mountpoint.join("default"),
            mountpoint,
            _dir: dir,
        });
    }

    pub fn cluster(&self) -> &TestCluster {
        self.cluster.as_ref().expect("cluster lives")
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().expect("runtime lives").block_on(f)
    }

    /// Unmounts mount `i` without ending its session (as if its host froze or died, the
    /// lease then expires).
    pub fn unmount_without_closing(&mut self, i: usize) {
        if let Some(h) = self.mounts[i].handle.take() {
            let _ = h.unmount();
        }
    }
}

fn unmount(m: &mut ClusterMount) {
    if let Some(h) = m.handle.take() {
        if let Err(e) = h.unmount() {
            eprintln!("unmount {:?}: {e}", m.mountpoint);
        }
    }
    if super::is_mounted(&m.mountpoint) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&m.mountpoint)
            .status();
    }
}

impl Drop for ClusterMounts {
    fn drop(&mut self) {
        let runtime = self.runtime.take();
        for m in &mut self.mounts {
            unmount(m);
            if let Some(rt) = &runtime {
                let backend = m.backend.clone();
                let _ = rt.block_on(async move {
                    tokio::time::timeout(Duration::from_secs(5), backend.close()).await
                });
            }
        }
        self.mounts.clear();
        // Stops every daemon (keeping their logs if the test failed).
        drop(self.cluster.take());
        if let Some(rt) = runtime {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// The path of a mount's `default` bucket directory.
pub fn bucket_dir(mountpoint: &Path) -> PathBuf {
    mountpoint.join("default")
}
