//! HA database failover: PostgreSQL keeps its data directory on mount A and commits a
//! known set of transactions; PostgreSQL and mount A are killed with SIGKILL (the host
//! died); PostgreSQL started on mount B over the same data directory recovers, and every
//! committed transaction is there.
//!
//! Needs PostgreSQL (`scripts/install-deps.sh` installs Debian's) and runs it as the
//! `postgres` user, through `allow_other` and `default_permissions`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use cairn_common::Redundancy;
use cairn_tests::TestCluster;

const ROWS: u32 = 150;
const PG_PORT: &str = "5499";

fn pg_bin(name: &str) -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/install-deps.sh)");
    let mut dirs: Vec<PathBuf> = versions.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    dirs.last()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(name)
}

/// Runs a PostgreSQL tool as the `postgres` user.
fn as_postgres(tool: &str, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_bin(tool))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"))
}

fn must(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn psql(sock: &Path, sql: &str) -> String {
    let out = as_postgres(
        "psql",
        &[
            "-h",
            sock.to_str().unwrap(),
            "-p",
            PG_PORT,
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        ],
    );
    must(out, sql)
}

fn pg_start(data: &Path, sock: &Path, log: &Path) {
    let opts = format!(
        "-c listen_addresses='' -k {} -p {PG_PORT} -c fsync=on -c synchronous_commit=on",
        sock.display()
    );
    let out = as_postgres(
        "pg_ctl",
        &[
            "start",
            "-w",
            "-t",
            "120",
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &opts,
        ],
    );
    if !out.status.success() {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!(
            "pg_ctl start failed: {}\n{}\nserver log:\n{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Kills every process of the `postgres` user (the postmaster and its children).
fn kill_postgres() {
    let _ = Command::new("pkill")
        .args(["-9", "-u", "postgres"])
        .status();
    for _ in 0..100 {
        let alive = Command::new("pgrep")
            .args(["-u", "postgres"])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops PostgreSQL even if the test fails.
struct PostgresGuard;

impl Drop for PostgresGuard {
    fn drop(&mut self) {
        kill_postgres();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fails_over_to_another_mount_with_every_commit() {
    let mut tc = TestCluster::start_with(1, 3, Redundancy::Ec { k: 2, m: 1 }, |spec| {
        spec.env
            .push(("CAIRN_META_SESSION_LEASE_MS".into(), "2000".into()));
    })
    .await;
    // The postgres user must reach the mount points and the socket directory.
    std::fs::set_permissions(tc.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = tc.dir().join("sock");
    std::fs::create_dir(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    let log = sock.join("postgres.log");
    let (mnt_a, mnt_b) = (tc.dir().join("mnt-a"), tc.dir().join("mnt-b"));
    tc.cluster.add_mount(&mnt_a, &[]).await.expect("mount A");
    tc.cluster.add_mount(&mnt_b, &[]).await.expect("mount B");
    let _guard = PostgresGuard;

    // Host A: a fresh database on mount A.
    let pg_a = mnt_a.join("default/pg");
    std::fs::create_dir(&pg_a).unwrap();
    must(
        Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&pg_a)
            .output()
            .unwrap(),
        "chown",
    );
    let data_a = pg_a.join("data");
    must(
        as_postgres(
            "initdb",
            &[
                "-D",
                data_a.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        ),
        "initdb",
    );
    pg_start(&data_a, &sock, &log);
    psql(
        &sock,
        "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)",
    );
    psql(&sock, "CHECKPOINT");
    // Every INSERT is its own transaction, committed (fsynced WAL) before psql returns.
    for i in 0..ROWS {
        psql(&sock, &format!("INSERT INTO t VALUES ({i}, 'row {i}')"));
    }

    // Host A dies: PostgreSQL and the mount, both with SIGKILL.
    kill_postgres();
    tc.cluster.kill("mount-1");
    let _ = Command::new("umount").arg("-l").arg(&mnt_a).status();

    // Host B: the same data directory through mount B.
    let data_b = mnt_b.join("default/pg/data");
    pg_start(&data_b, &sock, &log);
    let count = psql(&sock, "SELECT count(*), min(id), max(id) FROM t");
    assert_eq!(count.trim(), format!("{ROWS}|0|{}", ROWS - 1));
    let sample = psql(&sock, "SELECT v FROM t WHERE id = 77");
    assert_eq!(sample.trim(), "row 77");
    // And the database keeps working on B.
    psql(&sock, "INSERT INTO t VALUES (100000, 'after failover')");
    let out = as_postgres(
        "pg_ctl",
        &["stop", "-w", "-m", "fast", "-D", data_b.to_str().unwrap()],
    );
    must(out, "pg_ctl stop");
}
