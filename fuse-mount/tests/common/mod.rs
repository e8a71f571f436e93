//! Test harness: a real FUSE mount of a fresh `MemoryBackend` in a temp directory, mounted
//! in-process and unmounted in `Drop` (also when the test panics), with a lazy `umount -l`
//! fallback so no test leaves a mount behind; the cluster backend's harness (`cluster`);
//! the [`on_both_backends`] macro that runs one scenario against each; small helpers.

#![allow(dead_code)] // Each test binary uses a different subset.

pub mod cluster;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_fuse_mount::memory::MemoryBackend;
use cairn_fuse_mount::{mount, MountHandle, MountOptions};

/// A mounted filesystem a scenario works in.
pub trait Mounted {
    /// A path inside the directory the test works in.
    fn p(&self, rel: &str) -> PathBuf;
}

/// Runs each scenario `fn name(m: &impl Mounted)` of the file as two tests:
/// `memory::name` on a memory mount and `cluster::name` on a mount of a real cluster.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::common::TestMount::must_mount());
                }
            )*
        }
        mod cluster {
            $(
                #[test]
                fn $name() {
                    let mounts = super::common::cluster::ClusterMounts::start(
                        1,
                        super::common::cluster::test_mount_options(),
                    );
                    super::$name(&mounts.mounts[0]);
                }
            )*
        }
    };
}

impl Mounted for TestMount {
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

pub struct TestMount {
    handle: Option<MountHandle>,
    pub backend: Arc<MemoryBackend>,
    pub root: PathBuf,
    // Dropped last: removes the (by then empty) mount point.
    _dir: tempfile::TempDir,
}

impl TestMount {
    /// Mounts an empty memory filesystem with default options but without auto-unmount:
    /// mount(2) directly, no `fusermount3` helper process per mount (fuser never reaps it,
    /// so the model test's hundred mounts would leave a hundred zombies until exit).
    /// `Drop` unmounts instead.
    pub fn must_mount() -> TestMount {
        Self::must_mount_with(MountOptions {
            auto_unmount: false,
            ..MountOptions::default()
        })
    }

    pub fn must_mount_with(options: MountOptions) -> TestMount {
        Self::must_mount_backend(Arc::new(MemoryBackend::default()), options)
    }

    /// Mounts `backend` (which another [`TestMount`] may also serve).
    pub fn must_mount_backend(backend: Arc<MemoryBackend>, options: MountOptions) -> TestMount {
        let dir = tempfile::Builder::new()
            .prefix("cairn-fuse-test")
            .tempdir()
            .expect("create temp mount point");
        // Other users (the EACCES test runs as nobody) must reach the mount.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod mount point");
        let root = dir.path().to_owned();
        let handle = mount(backend.clone(), &root, options).expect("mount memory backend");
        TestMount {
            handle: Some(handle),
            backend,
            root,
            _dir: dir,
        }
    }
}

pub use cairn_devcluster::is_mounted;

impl Drop for TestMount {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            if let Err(e) = h.unmount() {
                eprintln!("unmount {:?}: {e}", self.root);
            }
        }
        if is_mounted(&self.root) {
            let _ = Command::new("umount").arg("-l").arg(&self.root).status();
        }
    }
}

/// The errno of `r`'s error (panics if it succeeded).
pub fn must_errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.raw_os_error().expect("an OS error"),
    }
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in test paths")
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `libc` result to `io::Result`.
pub fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `libc` size result to `io::Result`.
pub fn check_size(rc: libc::ssize_t) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}
