//! Cairn's FUSE filesystem: an async core (`fs`) over an abstract backend (`backend`), a
//! thin `fuser` adapter (`adapter`), the in-memory reference backend (`memory`) and
//! [`mount`], which puts them together on a tokio runtime of its own and returns a
//! [`MountHandle`] that unmounts and joins on drop. The cluster backend (`cluster`, over
//! the metadata service and the client library) is another [`backend::FsBackend`].

pub mod adapter;
pub mod backend;
pub mod cluster;
pub mod errno;
pub mod fs;
pub mod memory;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, MountOption, SessionACL};

use crate::adapter::{CairnFs, NotifierCache};
use crate::backend::FsBackend;
use crate::fs::{FsCore, FsOptions};

/// How long [`MountHandle::unmount`] waits for the FUSE session to end.
const SESSION_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    pub fs: FsOptions,
    /// `allow_other`: users other than the mounting one may use the mount (default true;
    /// `default_permissions` makes the kernel check modes and owners).
    pub allow_other: bool,
    /// Let `fusermount3` unmount if this process dies (default: when `fusermount3` is on
    /// the `PATH`).
    pub auto_unmount: bool,
    /// Source name shown in `/proc/mounts` (default `cairn`).
    pub fsname: String,
    /// Tokio worker threads serving requests (default 2).
    pub worker_threads: usize,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            fs: FsOptions::default(),
            allow_other: true,
            auto_unmount: fusermount3_available(),
            fsname: "cairn".to_owned(),
            worker_threads: 2,
        }
    }
}

/// Whether `fusermount3` is on the `PATH` (needed for auto-unmount).
pub fn fusermount3_available() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("fusermount3").is_file())
    })
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("start the request runtime")]
    Runtime(#[source] io::Error),
    #[error("mount FUSE at {path:?}")]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unmount {path:?}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("FUSE session at {path:?} did not stop within {timeout:?} (files still open?)")]
    SessionStuck { path: PathBuf, timeout: Duration },
    #[error("FUSE session at {path:?} ended with an error")]
    Session {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A live mount. [`MountHandle::unmount`] (or drop) unmounts, waits for the session thread
/// and stops the runtime.
pub struct MountHandle {
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// The tokio runtime a mount serves requests on.
pub fn request_runtime(options: &MountOptions) -> Result<tokio::runtime::Runtime, MountError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.worker_threads.max(1))
        .thread_name("cairn-fuse")
        .enable_all()
        .build()
        .map_err(MountError::Runtime)
}

/// Mounts `backend` at `mountpoint` and serves it from background threads, on a runtime
/// of its own.
pub fn mount(
    backend: Arc<dyn FsBackend>,
    mountpoint: &Path,
    options: MountOptions,
) -> Result<MountHandle, MountError> {
    let runtime = request_runtime(&options)?;
    let handle = runtime.handle().clone();
    let mut mounted = mount_on(backend, mountpoint, options, handle)?;
    mounted.runtime = Some(runtime);
    Ok(mounted)
}

/// Mounts `backend` at `mountpoint`, serving requests on `runtime` (which the caller keeps
/// running until after the unmount: a backend whose connections live on it can still be
/// closed then).
pub fn mount_on(
    backend: Arc<dyn FsBackend>,
    mountpoint: &Path,
    options: MountOptions,
    runtime: tokio::runtime::Handle,
) -> Result<MountHandle, MountError> {
    // Absolute, so that unmounting works whatever the working directory is by then.
    let mountpoint = &mountpoint
        .canonicalize()
        .map_err(|source| MountError::Mount {
            path: mountpoint.to_owned(),
            source,
        })?;
    let core = Arc::new(FsCore::new(backend.clone(), options.fs));
    let fs = CairnFs::new(core, runtime);

    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(options.fsname.clone()),
        MountOption::Subtype("cairn".to_owned()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        // Device nodes are stored (another host's root may have made them) but never
        // opened through the mount; no set-user-id programs either. fuser and
        // fusermount3 default to both; said here so that no path differs.
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    config.acl = if options.allow_other {
        SessionACL::All
    } else if options.auto_unmount {
        // fuser requires allow_other or allow_root for auto_unmount.
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    if options.auto_unmount {
        config.mount_options.push(MountOption::AutoUnmount);
    }
    let session =
        fuser::spawn_mount(fs, mountpoint, &config).map_err(|source| MountError::Mount {
            path: mountpoint.to_owned(),
            source,
        })?;
    backend.attach_kernel_cache(Arc::new(NotifierCache(session.notifier())));
    tracing::info!(mountpoint = %mountpoint.display(), "mounted");
    Ok(MountHandle {
        mountpoint: mountpoint.to_owned(),
        session: Some(session),
        runtime: None,
    })
}

impl MountHandle {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// False once the session ended (for example after an external `umount`).
    pub fn is_active(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    /// Unmounts (lazily if busy), waits for the session to end and stops the runtime.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), MountError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let path = self.mountpoint.clone();
        let unmounted = unmount_path(&path).map_err(|source| MountError::Unmount {
            path: path.clone(),
            source,
        });
        let deadline = Instant::now() + SESSION_STOP_TIMEOUT;
        while !session.guard.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let joined = if session.guard.is_finished() {
            session.join().map_err(|source| MountError::Session {
                path: path.clone(),
                source,
            })
        } else {
            // Leaves the thread running detached; the process may still exit.
            drop(session);
            Err(MountError::SessionStuck {
                path: path.clone(),
                timeout: SESSION_STOP_TIMEOUT,
            })
        };
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        tracing::info!(mountpoint = %path.display(), "unmounted");
        unmounted.and(joined)
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "unmount on drop failed");
        }
    }
}

/// `umount(2)`; lazily (`MNT_DETACH`) when busy; through `fusermount3 -u -z` when not
/// privileged. Not mounted is success.
pub fn unmount_path(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let umount = |flags: libc::c_int| {
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    match umount(0) {
        Ok(()) => Ok(()),
        Err(e) => match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
            Some(libc::EBUSY) => umount(libc::MNT_DETACH),
            Some(libc::EPERM) => {
                let status = Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(path)
                    .status()?;
                if status.success() {
                    Ok(())
                } else {
                    Err(io::Error::other(format!(
                        "fusermount3 -u -z exited with {status}"
                    )))
                }
            }
            _ => Err(e),
        },
    }
}
