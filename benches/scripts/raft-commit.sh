#!/usr/bin/env bash
# The Raft commit path: latency and commits per second of metadata commits alone, at 1, 8
# and 64 concurrent writers. Starts `cairn dev up` (3 metadata replicas as separate
# processes, 3 storage nodes, no mount) in a temp directory and runs
# `cairn bench --workload put --size 0`: a 0-byte object has no chunks, so each put is one
# `CommitObject` through the leader, i.e. one Raft entry appended, replicated to a
# majority, committed and applied (plus the gRPC round trip and the leader's checks).
# Each concurrency runs REPS times; prints one Markdown row per concurrency with the
# median of the runs' commits/s, p50 and p99, and from the replicas' Prometheus counters
# (absent before they existed) the commands per log entry on the leader (group commit,
# `cairn_meta_group_commit_*`), the entries per log append on the leader and on the
# followers and the synced RocksDB writes per commit, all replicas together
# (`cairn_meta_raft_log_*`). Cleans up everything.
#
#   benches/scripts/raft-commit.sh [SECONDS per run (default 10)] [REPS (default 3)]
#
# Uses the debug build in $CARGO_TARGET_DIR (the build the tests use; say so beside the
# figures), or the binaries in $CAIRN_BIN_DIR when set (no build then).
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
seconds="${1:-10}"
reps="${2:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
if [ -n "${CAIRN_BIN_DIR:-}" ]; then
  bin="$CAIRN_BIN_DIR"
else
  bin="$CARGO_TARGET_DIR/debug"
  cargo build --workspace --bins --locked --quiet --manifest-path "$here/Cargo.toml"
fi

work="$(mktemp -d /var/tmp/cairn-raft-commit.XXXXXX)"
dev_pid=""
cleanup() {
  local status=$?
  [ -n "$dev_pid" ] && kill -TERM "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    tail -n 20 "$work"/cluster/logs/meta-*.log >&2 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

start_dev_cluster "$bin" "$work" 26500 --meta 3 --nodes 3 --ec 2+1 --no-mount

# Warm-up: connections, the leader's first majority confirmation, the first apply.
"$bin/cairn" bench --workload put --size 0 --concurrency 8 --duration 3 --keep \
  --prefix warm/ --json > /dev/null

# Every replica's metrics, one file per replica: scrape DIR.
scrape() {
  mkdir -p "$1"
  for i in 1 2 3; do
    curl -sf "http://127.0.0.$i:$((26500 + 60 + i))/metrics" > "$1/$i" || : > "$1/$i"
  done
}

echo "| writers | commits/s | p50 ms | p99 ms | runs (commits/s) | commands per entry (leader) | entries per append: leader, followers | synced writes per commit |"
echo "|---|---|---|---|---|---|---|---|"
for writers in 1 8 64; do
  scrape "$work/before"
  runs=()
  for rep in $(seq 1 "$reps"); do
    runs+=("$("$bin/cairn" bench --workload put --size 0 --concurrency "$writers" \
      --keys "$writers" --duration "$seconds" --keep --prefix "c$writers-$rep/" --json)")
  done
  scrape "$work/after"
  python3 - "$work" "$writers" "${runs[@]}" <<'PY'
import json, os, statistics, sys
work, writers, runs = sys.argv[1], sys.argv[2], [json.loads(r)["phases"][0] for r in sys.argv[3:]]

def metrics(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out

leader_ratio, follower_ratio, synced, commits, per_entry = "n/a", [], 0.0, 0, "n/a"
for i in "123":
    before, after = metrics(f"{work}/before/{i}"), metrics(f"{work}/after/{i}")
    delta = lambda k: after.get(k, 0.0) - before.get(k, 0.0)
    if delta("cairn_meta_group_commit_entries_total"):
        per_entry = f'{delta("cairn_meta_group_commit_commands_total") / delta("cairn_meta_group_commit_entries_total"):.2f}'
    appends = delta("cairn_meta_raft_log_appends_total")
    entries = delta("cairn_meta_raft_log_entries_appended_total")
    synced += delta("cairn_meta_raft_log_synced_writes_total")
    if appends:
        ratio = f"{entries / appends:.2f}"
        if after.get("cairn_meta_is_leader") == 1.0:
            leader_ratio = ratio
        else:
            follower_ratio.append(ratio)
commits = sum(r["ops"] for r in runs)
ratios = f'{leader_ratio}, {" / ".join(follower_ratio) or "n/a"}'
per_commit = f"{synced / commits:.2f}" if synced else "n/a"
errors = sum(r["errors"] for r in runs)
if errors:
    sys.exit(f"{errors} commits failed at {writers} writers")
med = lambda k: statistics.median(r[k] for r in runs)
each = ", ".join(f'{r["ops_per_sec"]:.0f}' for r in runs)
print(f'| {writers} | {med("ops_per_sec"):.0f} | {med("p50_ms"):.2f} | {med("p99_ms"):.2f} | {each} | {per_entry} | {ratios} | {per_commit} |')
PY
done
