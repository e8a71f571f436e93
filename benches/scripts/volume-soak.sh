#!/usr/bin/env bash
# Random 4 KiB writes over a block volume for MINUTES (queue depth 32, a flush every 32
# writes, fio's nbd engine with crc32c verification of what it wrote), sampling every 30 s
# the cluster's chunk count, the chunks awaiting garbage collection, the metadata
# replica's database size on disk and its resident memory: with the server's compaction
# these must level off rather than grow with the run. Release build, `cairn dev up
# --meta 3 --nodes 6 --ec 4+2 --no-mount`; prints Markdown table rows; cleans up.
#
#   benches/scripts/volume-soak.sh [MINUTES (default 10)] [SIZE_MIB (default 1024)]
set -euo pipefail
shopt -s inherit_errexit
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
minutes="${1:-10}"
size_mib="${2:-1024}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
prepare_release "$here" fio=fio
bin="$CARGO_TARGET_DIR/release"

work="$(mktemp -d /var/tmp/cairn-volume-soak.XXXXXX)"
dev_pid=""
serve_pid=""
fio_pid=""
cleanup() {
  [ -n "$fio_pid" ] && kill "$fio_pid" 2>/dev/null && wait "$fio_pid" 2>/dev/null || true
  [ -n "$serve_pid" ] && kill -TERM "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null || true
  stop_dev_cluster "$work"
}
trap cleanup EXIT

start_dev_cluster "$bin" "$work" 26700 --meta 3 --nodes 6 --ec 4+2 --no-mount
"$bin/cairn" volume create soak --size "${size_mib}MiB" > /dev/null
start_volume_server "$bin" "$work" soak 127.0.0.1:26799

sample() { # ELAPSED_S -> one table row
  local status db rss
  status=$("$bin/cairn" status --json)
  db=$(du -sb "$work/cluster/meta-1" | cut -f1)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$(cat "$work/cluster/pids/meta-1.pid")/status")
  python3 - "$1" "$status" "$db" "$rss" <<'PY'
import json, sys
t, status, db, rss = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(f"| {t} | {status['chunks']} | {status['pending_gc_shards']} | {db / 2**20:.0f} | {rss / 1024:.0f} |")
PY
}

# Write everything once (so verification covers every block), then the random run.
fio --name=fill --ioengine=nbd --uri=nbd://127.0.0.1:26799/soak --rw=write --bs=1M \
  --size="${size_mib}M" --output-format=json > /dev/null
fio --name=soak --ioengine=nbd --uri=nbd://127.0.0.1:26799/soak --rw=randwrite --bs=4k \
  --iodepth=32 --fsync=32 --size="${size_mib}M" --time_based --runtime="$((minutes * 60))" \
  --verify=crc32c --verify_backlog=4096 --verify_state_save=0 --output-format=json > "$work/fio.json" 2> "$work/fio.err" &
fio_pid=$!
echo "| seconds | chunks | shards awaiting gc | meta-1 database (MiB) | meta-1 resident (MiB) |"
echo "|---|---|---|---|---|"
start=$(date +%s)
while kill -0 "$fio_pid" 2>/dev/null; do
  sample "$(( $(date +%s) - start ))"
  for _ in $(seq 1 30); do kill -0 "$fio_pid" 2>/dev/null || break; sleep 1; done
done
wait "$fio_pid" || { cat "$work/fio.err"; exit 1; }
fio_pid=""
sleep 5 # the compaction's last flush
sample "end"
python3 - "$work/fio.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
job = json.loads(text[text.index('{'):])['jobs'][0]
w = job['write']
print(f"\nfio: {w['total_ios']} writes, {w['iops']:.0f} IOPS, errors {job['error']} "
      f"(verification of every block written, checked as the run went: crc32c)")
PY
