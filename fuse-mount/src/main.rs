//! `cairn-mount`: mounts a Cairn filesystem, the cluster's (`--cluster`) or an in-memory
//! one (`--memory`, for tests). Parses flags, optionally detaches from the terminal,
//! mounts through the library and unmounts on SIGINT/SIGTERM (exit 0), then ends the
//! mount's session so its locks are released at once. SIGHUP reloads the TLS files.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cairn_fuse_mount::backend::FsBackend;
use cairn_fuse_mount::cluster::{ClusterBackend, ClusterOptions};
use cairn_fuse_mount::fs::RootSquash;
use cairn_fuse_mount::memory::{MemoryBackend, MemoryOptions};
use cairn_fuse_mount::{mount_on, request_runtime, MountHandle, MountOptions};
use clap::Parser;

/// Mount a Cairn filesystem.
#[derive(Debug, Parser)]
#[command(name = "cairn-mount", version)]
struct Args {
    /// Serve an empty in-memory filesystem (lost at unmount).
    #[arg(long, conflicts_with = "cluster", required_unless_present = "cluster")]
    memory: bool,
    /// Mount the cluster described by this `cluster.toml`.
    #[arg(long, value_name = "FILE")]
    cluster: Option<PathBuf>,
    /// Where to mount (an existing directory).
    mountpoint: PathBuf,
    /// Stay attached to the terminal (default: detach once mounted).
    #[arg(long)]
    foreground: bool,
    /// Kernel attribute cache lifetime in milliseconds.
    #[arg(long, default_value_t = 1000)]
    attr_ttl_ms: u64,
    /// Kernel name-lookup cache lifetime in milliseconds (default: --attr-ttl-ms).
    #[arg(long)]
    entry_ttl_ms: Option<u64>,
    /// Capacity of the in-memory filesystem in MiB.
    #[arg(long, default_value_t = 16 * 1024)]
    memory_capacity_mib: u64,
    /// A file's buffered writes are flushed to the cluster once they reach this many KiB
    /// (they are always flushed at close and fsync).
    #[arg(long, default_value_t = 16384)]
    write_buffer_kib: usize,
    /// Memory for recently used file chunks, in MiB.
    #[arg(long, default_value_t = 64)]
    chunk_cache_mib: usize,
    /// Serve root (uid 0) as the unprivileged user --anon-uid:--anon-gid: root gets only
    /// the permissions that user has, and files it creates belong to that user.
    #[arg(long)]
    root_squash: bool,
    /// The user a squashed root becomes.
    #[arg(long, default_value_t = 65534, requires = "root_squash")]
    anon_uid: u32,
    /// The group a squashed root becomes.
    #[arg(long, default_value_t = 65534, requires = "root_squash")]
    anon_gid: u32,
    /// Connect to the cluster from this local address (default: the kernel chooses).
    #[arg(long, value_name = "IP")]
    source_addr: Option<std::net::IpAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Detach before any thread exists: fork only copies the calling thread.
    let ready = if args.foreground {
        None
    } else {
        match detach() {
            Ok(Detached::Parent(code)) => return code,
            Ok(Detached::Child(pipe)) => Some(pipe),
            Err(e) => {
                eprintln!("cairn-mount: detach: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let mut options = MountOptions::default();
    options.fs.attr_ttl = Duration::from_millis(args.attr_ttl_ms);
    options.fs.entry_ttl = Duration::from_millis(args.entry_ttl_ms.unwrap_or(args.attr_ttl_ms));
    options.fs.root_squash = args.root_squash.then_some(RootSquash {
        uid: args.anon_uid,
        gid: args.anon_gid,
    });
    let fail = |message: String, ready: Option<std::fs::File>| {
        eprintln!("cairn-mount: {message}");
        tracing::error!("{message}");
        if let Some(pipe) = ready {
            report(pipe, false);
        }
        ExitCode::FAILURE
    };
    let runtime = match request_runtime(&options) {
        Ok(rt) => rt,
        Err(e) => return fail(error_chain(&e), ready),
    };
    let (backend, cluster): (Arc<dyn FsBackend>, Option<Arc<ClusterBackend>>) = match &args.cluster
    {
        None => (
            Arc::new(MemoryBackend::new(MemoryOptions {
                capacity_bytes: args.memory_capacity_mib.saturating_mul(1 << 20),
                ..MemoryOptions::default()
            })),
            None,
        ),
        Some(path) => {
            let opts = ClusterOptions {
                flush_bytes: args.write_buffer_kib.max(4).saturating_mul(1024),
                chunk_cache_bytes: args.chunk_cache_mib.saturating_mul(1 << 20),
                session_name: format!("{}:{}", hostname(), args.mountpoint.display()),
            };
            let connected = runtime.block_on(async {
                let client = cairn_common::config::ClusterFile::load(path)
                    .map_err(cairn_client::ClientError::from)
                    .and_then(|file| cairn_client::Client::new_from(&file, args.source_addr))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                // A renewed certificate is used from the next connection on.
                cairn_net::transport::reload_on_sighup(
                    "cairn-mount",
                    vec![client.transport().clone()],
                );
                ClusterBackend::connect(client, opts)
                    .await
                    .map_err(|e| format!("connect to the cluster: {}", error_chain(&e)))
            });
            match connected {
                Ok(backend) => (backend.clone(), Some(backend)),
                Err(message) => return fail(message, ready),
            }
        }
    };
    let handle = match mount_on(backend, &args.mountpoint, options, runtime.handle().clone()) {
        Ok(h) => h,
        Err(e) => {
            if let Some(cluster) = &cluster {
                runtime.block_on(cluster.close());
            }
            return fail(error_chain(&e), ready);
        }
    };
    if let Some(pipe) = ready {
        report(pipe, true);
        quiet_stdio();
        // Do not keep the caller's working directory busy.
        let _ = std::env::set_current_dir("/");
    }
    cairn_common::systemd::notify_ready();
    wait_for_shutdown(&handle);
    cairn_common::systemd::notify_stopping();
    let unmounted = handle.unmount();
    if let Some(cluster) = &cluster {
        runtime.block_on(cluster.close());
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    match unmounted {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// This host's name (for the session's description).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".into())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// Blocks until SIGINT or SIGTERM, or until the mount goes away (external `umount`).
fn wait_for_shutdown(handle: &MountHandle) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "no signal runtime; unmounting");
            return;
        }
    };
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::error!("cannot install signal handlers; unmounting");
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = int.recv() => break,
                _ = term.recv() => break,
                _ = tick.tick() => if !handle.is_active() {
                    tracing::info!("mount ended externally");
                    break;
                },
            }
        }
    });
}

enum Detached {
    /// In the original process: exit with this code once the child reported.
    Parent(ExitCode),
    /// In the detached child: report the mount result on this pipe.
    Child(std::fs::File),
}

/// Forks; the parent waits for the child's one-byte mount report and exits with it.
fn detach() -> std::io::Result<Detached> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: called before this process starts any thread, so the child is a full copy.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            drop(read_end);
            // SAFETY: plain syscall; failure only means we stay in the parent's session.
            unsafe { libc::setsid() };
            Ok(Detached::Child(std::fs::File::from(write_end)))
        }
        _ => {
            drop(write_end);
            let mut byte = [0u8; 1];
            let mut r = std::fs::File::from(read_end);
            let ok = matches!(r.read(&mut byte), Ok(1)) && byte[0] == b'0';
            Ok(Detached::Parent(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }))
        }
    }
}

fn report(mut pipe: std::fs::File, mounted: bool) {
    let _ = pipe.write_all(if mounted { b"0" } else { b"1" });
}

/// Points stdin/stdout/stderr at /dev/null once detached.
fn quiet_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors; `null` stays open during the call.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}
