#!/usr/bin/env bash
# Resident memory of every daemon under a long load: starts a release cluster (3 metadata
# replicas, 6 storage nodes, ec 4+2, a mount), runs for SECONDS a mixed object load
# (`cairn bench --workload mixed`, 4 MiB objects) together with a file loop on the mount
# (256 MiB sequential write and read back, 200 small files created and removed), samples
# each process's VmRSS every 5 s, and writes the summary into BENCHMARKS.md between the
# memory:begin / memory:end markers. Cleans up everything it started.
#
#   benches/memory/run.sh [SECONDS (default 600)]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
secs="${1:-600}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
bin="$CARGO_TARGET_DIR/release"
prepare_release "$here"

work="$(mktemp -d /var/tmp/cairn-memory.XXXXXX)"
dev_pid=""
load_pids=()
cleanup() {
  set +e
  # `wait` with no pid would wait for every child, `cairn dev up` included (forever).
  if [ ${#load_pids[@]} -gt 0 ]; then
    kill "${load_pids[@]}" 2>/dev/null
    wait "${load_pids[@]}" 2>/dev/null
  fi
  [ -n "$dev_pid" ] && kill -TERM "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null
  mountpoint -q "$work/cluster/mnt" && umount -l "$work/cluster/mnt"
  rm -rf "$work"
}
trap cleanup EXIT

start_dev_cluster "$bin" "$work" 27100 --meta 3 --nodes 6 --ec 4+2
end=$(( $(date +%s) + secs ))

"$bin/cairn" bench --workload mixed --size 4MiB --concurrency 4 --duration "$secs" --keys 64 \
  --json > "$work/bench.json" 2> "$work/bench.log" &
load_pids+=($!)

mnt="$work/cluster/mnt/default"
(
  i=0
  while [ "$(date +%s)" -lt "$end" ]; do
    head -c 256M /dev/urandom > "$work/round.dat"
    dd if="$work/round.dat" of="$mnt/big" bs=1M conv=fsync status=none
    cmp -s "$work/round.dat" "$mnt/big" || echo "round $i: read back differs" >> "$work/file-errors"
    mkdir -p "$mnt/small"
    for f in $(seq 1 200); do echo "$i $f" > "$mnt/small/$f"; done
    rm -rf "$mnt/small"
    i=$((i + 1))
  done
  echo "$i" > "$work/file-rounds"
  rm -f "$work/round.dat"
) &
load_pids+=($!)

# Sample: elapsed seconds, process name, VmRSS KiB.
declare -A names
for f in "$work"/cluster/pids/*.pid; do names[$(cat "$f")]=$(basename "$f" .pid); done
start=$(date +%s)
while [ "$(date +%s)" -lt "$end" ]; do
  now=$(( $(date +%s) - start ))
  for pid in "${!names[@]}"; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo "")
    [ -n "$rss" ] && echo "$now ${names[$pid]} $rss" >> "$work/rss.txt"
  done
  sleep 5
done
wait "${load_pids[@]}"
load_pids=()

python3 "$here/benches/memory/report.py" "$work" "$secs" "$here/BENCHMARKS.md"
