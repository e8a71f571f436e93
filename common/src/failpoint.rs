//! Failpoints at the crash-critical steps, for the fault-injection tests (the `fail`
//! crate). They exist in builds with the `failpoints` feature (every workspace build: the
//! test crate turns it on) and do nothing unless `CAIRN_FAILPOINTS` names them when the
//! daemon starts, as `NAME=ACTIONS` pairs separated by `;`:
//!
//! ```text
//! CAIRN_FAILPOINTS='shard-write-before-fsync=3*off->return(crash)'
//! ```
//!
//! `ACTIONS` is the fail crate's syntax (`off`, `return(ARG)`, `sleep(MS)`, `panic`, a
//! count `N*`, a probability `P%`, sequences with `->`). Two `return` arguments mean
//! something here: `crash` ends the process at once with SIGKILL, exactly as `kill -9`
//! would (no destructor, flush or reply runs), and `error` fails the step with an I/O
//! error the caller handles like a real one. [`SHARD_READ`] takes a shard file's name as
//! its argument instead (see [`hit_eio_for`]).

use std::io;

/// After a shard's bytes are written to its temporary file, before `fdatasync`.
pub const SHARD_WRITE_BEFORE_FSYNC: &str = "shard-write-before-fsync";
/// After a shard is durable under its final name, before the node answers the write.
pub const SHARD_WRITE_BEFORE_ACK: &str = "shard-write-before-ack";
/// After the metadata leader's Raft commit of a client's write, before the reply.
pub const META_COMMIT_BEFORE_REPLY: &str = "meta-commit-before-reply";
/// Repair: the rebuilt shards are written to their new nodes, the placement not yet
/// committed.
pub const REPAIR_BEFORE_COMMIT: &str = "repair-before-commit";
/// Rebalance or drain: a shard is copied to its new node, the move not yet committed.
pub const REBALANCE_BEFORE_COMMIT: &str = "rebalance-before-commit";

/// Client library: every chunk of an object is stored, the object not yet committed.
pub const PUT_BEFORE_COMMIT: &str = "put-before-commit";
/// Storage node, every read of a shard file (header, block table, data): `return(NAME)`
/// fails the reads of shard file `NAME` (`<chunk hex>.<index>`) with EIO, as a bad sector
/// under that file would; `return` without an argument fails every shard read so.
pub const SHARD_READ: &str = "shard-read";

/// Every failpoint, for `CAIRN_FAILPOINTS` validation.
pub const ALL: [&str; 7] = [
    SHARD_WRITE_BEFORE_FSYNC,
    SHARD_WRITE_BEFORE_ACK,
    META_COMMIT_BEFORE_REPLY,
    REPAIR_BEFORE_COMMIT,
    REBALANCE_BEFORE_COMMIT,
    PUT_BEFORE_COMMIT,
    SHARD_READ,
];

/// The environment variable read by [`configure_from_env`].
pub const ENV: &str = "CAIRN_FAILPOINTS";

/// Parses `NAME=ACTIONS;NAME=ACTIONS` into pairs, refusing unknown names.
pub fn parse(spec: &str) -> Result<Vec<(String, String)>, String> {
    spec.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (name, actions) = pair
                .split_once('=')
                .ok_or_else(|| format!("{ENV}: {pair:?} is not NAME=ACTIONS"))?;
            let name = name.trim();
            if !ALL.contains(&name) {
                return Err(format!(
                    "{ENV}: unknown failpoint {name:?} (known: {})",
                    ALL.join(", ")
                ));
            }
            Ok((name.to_owned(), actions.trim().to_owned()))
        })
        .collect()
}

/// Configures the failpoints named in `CAIRN_FAILPOINTS`; call once at start-up, before
/// any work. An error (bad syntax, unknown name, a build without failpoints) should stop
/// the daemon: a test that thinks it injects faults must not silently run without them.
pub fn configure_from_env() -> Result<(), String> {
    let Ok(spec) = std::env::var(ENV) else {
        return Ok(());
    };
    let pairs = parse(&spec)?;
    for (name, actions) in &pairs {
        configure(name, actions).map_err(|e| format!("{ENV}: {e}"))?;
    }
    tracing::warn!(failpoints = %spec, "failpoints armed (fault-injection testing)");
    Ok(())
}

/// Arms one failpoint in this process (a test arming the client library it runs).
pub fn configure(name: &str, actions: &str) -> Result<(), String> {
    if !ALL.contains(&name) {
        return Err(format!("unknown failpoint {name:?}"));
    }
    arm(name, actions).map_err(|e| format!("failpoint {name}: {e}"))
}

#[cfg(feature = "failpoints")]
fn arm(name: &str, actions: &str) -> Result<(), String> {
    fail::cfg(name, actions)
}

#[cfg(not(feature = "failpoints"))]
fn arm(_: &str, _: &str) -> Result<(), String> {
    Err(
        "this build has no failpoints (build the workspace, or enable the `failpoints` \
         feature of cairn-common)"
            .into(),
    )
}

/// Passes failpoint `name`: nothing unless it is armed; `return(crash)` kills the process,
/// `return(error)` (or any other argument) is an injected I/O error.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) -> io::Result<()> {
    match fail::eval(name, |arg| arg) {
        None => Ok(()),
        Some(arg) if arg.as_deref() == Some("crash") => {
            tracing::error!(failpoint = name, "failpoint: crashing (SIGKILL)");
            // SAFETY: signalling our own process; SIGKILL cannot be caught and does not
            // return.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            unreachable!("SIGKILL returned");
        }
        Some(arg) => {
            tracing::warn!(failpoint = name, "failpoint: injected error");
            Err(io::Error::other(format!(
                "injected failure at failpoint {name} ({})",
                arg.unwrap_or_default()
            )))
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) -> io::Result<()> {
    Ok(())
}

/// Passes failpoint `name` on behalf of `target` (e.g. a file name): an armed
/// `return(ARG)` fails with a real EIO (`raw_os_error() == Some(EIO)`, so the caller's
/// handling of kernel I/O errors runs) when `ARG` is `target` or absent; any other
/// action, or another target, passes.
#[cfg(feature = "failpoints")]
pub fn hit_eio_for(name: &str, target: &str) -> io::Result<()> {
    match fail::eval(name, |arg| arg) {
        Some(arg) if arg.as_deref().is_none_or(|a| a.is_empty() || a == target) => {
            tracing::warn!(failpoint = name, target, "failpoint: injected EIO");
            Err(io::Error::from_raw_os_error(libc::EIO))
        }
        _ => Ok(()),
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit_eio_for(_name: &str, _target: &str) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_known_failpoints_with_their_actions() {
        let pairs = parse("shard-write-before-fsync=3*off->return(crash); ").unwrap();
        assert_eq!(
            pairs,
            vec![(
                "shard-write-before-fsync".to_owned(),
                "3*off->return(crash)".to_owned()
            )]
        );
        assert!(parse("no-such-point=panic")
            .unwrap_err()
            .contains("unknown"));
        assert!(parse("shard-write-before-ack")
            .unwrap_err()
            .contains("NAME=ACTIONS"));
        assert!(parse("").unwrap().is_empty());
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn an_armed_failpoint_fails_then_disarms() {
        // A name no daemon code passes, so parallel tests are not affected.
        fail::cfg("unit-test-point", "1*return(error)").unwrap();
        assert!(hit("unit-test-point").is_err());
        assert!(hit("unit-test-point").is_ok());
        fail::remove("unit-test-point");
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn an_eio_failpoint_hits_only_its_target() {
        fail::cfg("unit-test-eio", "return(abc.1)").unwrap();
        let err = hit_eio_for("unit-test-eio", "abc.1").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert!(hit_eio_for("unit-test-eio", "abc.2").is_ok());
        fail::cfg("unit-test-eio", "return").unwrap();
        assert!(hit_eio_for("unit-test-eio", "anything").is_err());
        fail::remove("unit-test-eio");
        assert!(hit_eio_for("unit-test-eio", "abc.1").is_ok());
    }
}
