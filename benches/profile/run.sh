#!/usr/bin/env bash
# Where the CPU goes on the object PUT and GET paths: starts a release cluster (3 metadata
# replicas, 6 storage nodes, ec 4+2, no mount), samples every CPU with `perf record -a`
# while `cairn bench` puts and then gets 64 MiB objects, and writes a profile summary
# (CPU per process, top symbols, cost groups, encode+checksum cost at the PUT target)
# into BENCHMARKS.md between the profile:begin / profile:end markers. Cleans up.
#
#   benches/profile/run.sh [SECONDS per workload (default 20)]
# CAIRN_PROFILE_KEEP=DIR keeps the raw samples (perf script output) there.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
secs="${1:-20}"
freq=997
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
target="$CARGO_TARGET_DIR"
bin="$target/release"

prepare_release "$here" perf=linux-perf fio=fio

work="$(mktemp -d /var/tmp/cairn-profile.XXXXXX)"
dev_pid=""
cleanup() {
  set +e
  [ -n "$dev_pid" ] && kill -TERM "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null
  if [ -n "${CAIRN_PROFILE_KEEP:-}" ]; then
    mkdir -p "$CAIRN_PROFILE_KEEP" && cp "$work"/*.samples "$work"/*.ps "$work"/*.json "$CAIRN_PROFILE_KEEP"/
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "profile: disk limit" >&2
mkdir -p "$work/disk"
fio --name=disk-seqwrite --directory="$work/disk" --filename=seq.dat --rw=write --bs=1M --size=2G \
  --direct=1 --ioengine=libaio --iodepth=16 --output-format=json > "$work/disk-seqwrite.json" 2>/dev/null
rm -rf "$work/disk"

echo "profile: Cairn" >&2
start_dev_cluster "$bin" "$work" 26900 --meta 3 --nodes 6 --ec 4+2 --no-mount
for workload in put get; do
  perf record -a -F "$freq" -o "$work/$workload.data" -- \
    "$bin/cairn" bench --workload "$workload" --size 64MiB --concurrency 4 --duration "$secs" \
    --keys 16 --json > "$work/$workload.json" 2> "$work/$workload.perf.log" &
  bench_pid=$!
  sleep 1
  ps -eo pid=,args= > "$work/$workload.ps"
  wait "$bench_pid"
  perf script -i "$work/$workload.data" -F pid,ip,sym,dso > "$work/$workload.samples" 2>/dev/null
done

python3 "$here/benches/profile/report.py" "$work" "$secs" "$freq" "$here/BENCHMARKS.md"
