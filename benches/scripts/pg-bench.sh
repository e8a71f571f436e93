#!/usr/bin/env bash
# PostgreSQL on the mount against PostgreSQL on the local disk, in the same run (the
# database row of issue #18): starts `cairn dev up` (3 metadata replicas, 6 nodes, ec 4+2,
# a mount) from BIN_DIR's release binaries, then for each of the local disk and the mount
# initialises a cluster (initdb, synchronous_commit on, fsync on: PostgreSQL's defaults),
# loads pgbench at scale SCALE and runs `pgbench -c CLIENTS -j 2 -T SECONDS` (TPC-B-like,
# every transaction a synchronous commit); prints one JSON object per place and their
# ratio. Stops PostgreSQL and the cluster and removes everything on exit. Needs
# PostgreSQL (the test suite's setup installs it) and runs as root (PostgreSQL runs as
# the `postgres` user).
#
#   benches/scripts/pg-bench.sh BIN_DIR [SECONDS (default 60)] [CLIENTS (default 4)] [SCALE (default 10)]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
bin="$1"
seconds="${2:-60}"
clients="${3:-4}"
scale="${4:-10}"
pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
[ -x "$pgbin/pgbench" ] || { echo "PostgreSQL not installed (scripts/setup installs it)" >&2; exit 1; }

work="$(mktemp -d /var/tmp/cairn-pg-bench.XXXXXX)"
chmod 755 "$work"
dev_pid=""
pgdata=()
cleanup() {
  for d in "${pgdata[@]}"; do
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$d" stop -m immediate >/dev/null 2>&1 || true
  done
  stop_dev_cluster "$work"
}
trap cleanup EXIT
start_dev_cluster "$bin" "$work" 26600 --meta 3 --nodes 6 --ec 4+2
mnt="$work/cluster/mnt/default"
chmod 755 "$work/cluster"
sock="$work/sock"
mkdir -p "$sock" && chown postgres:postgres "$sock"

# run_place NAME DIR PORT: one PostgreSQL cluster in DIR, loaded and measured.
run_place() {
  local name=$1 dir=$2 port=$3
  mkdir -p "$dir" && chown postgres:postgres "$dir" && chmod 700 "$dir"
  pgdata+=("$dir")
  runuser -u postgres -- "$pgbin/initdb" -D "$dir" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir" -l "$sock/$name.log" -w \
    -o "-p $port -k $sock -c listen_addresses=''" start >/dev/null
  runuser -u postgres -- "$pgbin/pgbench" -h "$sock" -p "$port" -U postgres -i -s "$scale" -q postgres \
    >/dev/null 2>&1
  runuser -u postgres -- "$pgbin/pgbench" -h "$sock" -p "$port" -U postgres -c "$clients" -j 2 \
    -T "$seconds" postgres > "$work/$name.out" 2>&1 || { cat "$work/$name.out" >&2; exit 1; }
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir" stop -m fast >/dev/null
  python3 - "$name" "$work/$name.out" <<'PY'
import json, re, sys
name, path = sys.argv[1], sys.argv[2]
text = open(path).read()
tps = float(re.search(r"tps = ([0-9.]+)", text).group(1))
lat = float(re.search(r"latency average = ([0-9.]+) ms", text).group(1))
print(json.dumps({"place": name, "tps": tps, "latency_avg_ms": lat}))
PY
}

run_place local "$work/pg-local" 26690 | tee "$work/local.json"
run_place cairn "$mnt/pg-cairn" 26691 | tee "$work/cairn.json"
python3 - "$work/local.json" "$work/cairn.json" "$seconds" "$clients" "$scale" <<'PY'
import json, sys
local, cairn = (json.load(open(p)) for p in sys.argv[1:3])
print(json.dumps({"pgbench_seconds": int(sys.argv[3]), "clients": int(sys.argv[4]),
                  "scale": int(sys.argv[5]),
                  "cairn_over_local": round(cairn["tps"] / local["tps"], 3)}))
PY
