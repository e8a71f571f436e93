#!/usr/bin/env bash
# Block volumes through NBD beside the same fio jobs on the FUSE mount and on the local
# disk, in one run: 4 KiB random read and random write at queue depth 32 (the writes
# flushed every 32), and 1 MiB sequential write (then flush) and read of SIZE_MIB.
# Starts `cairn dev up` (release build; 3 metadata replicas, 6 nodes, ec 4+2, a mount) in
# a temp directory, creates and serves a volume with `cairn volume serve`, drives it with
# fio's nbd engine (libnbd); prints Markdown table rows; cleans up everything.
#
#   benches/scripts/nbd-bench.sh [SIZE_MIB (default 1024)] [SECONDS per random job (default 20)]
#   CAIRN_NBD_SERVE_ARGS="--write-buffer-mib 64": extra options for `cairn volume serve`.
set -euo pipefail
shopt -s inherit_errexit
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
size_mib="${1:-1024}"
seconds="${2:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
prepare_release "$here" fio=fio
bin="$CARGO_TARGET_DIR/release"

work="$(mktemp -d /var/tmp/cairn-nbd-bench.XXXXXX)"
dev_pid=""
serve_pid=""
cleanup() {
  [ -n "$serve_pid" ] && kill -TERM "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null || true
  stop_dev_cluster "$work"
}
trap cleanup EXIT

# fio JOB_NAME RW BS IODEPTH TARGET_OPTIONS... -> "MiB/s IOPS"
run_fio() {
  local name=$1 rw=$2 bs=$3 depth=$4
  shift 4
  fio --name="$name" --rw="$rw" --bs="$bs" --iodepth="$depth" --numjobs=1 \
    --size="${size_mib}M" --output-format=json "$@" > "$work/fio.json" 2> "$work/fio.err" || true
  python3 - "$work/fio.json" "$work/fio.err" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
try:
    job = json.loads(text[text.index('{'):])['jobs'][0]
except (ValueError, KeyError):
    sys.exit('fio failed:\n' + text + open(sys.argv[2]).read())
d = job['read'] if job['read']['io_bytes'] else job['write']
print(round(d['bw'] / 1024, 1), round(d['iops']))
PY
}

# The four jobs on one target; prints 4 lines "MiB/s IOPS".
jobs() {
  run_fio seqw write 1M 1 --end_fsync=1 "$@"
  run_fio seqr read 1M 1 "$@"
  run_fio randr randread 4k 32 --time_based --runtime="$seconds" "$@"
  run_fio randw randwrite 4k 32 --fsync=32 --time_based --runtime="$seconds" "$@"
}

mkdir -p "$work/local"
local_results=$(jobs --directory="$work/local" --ioengine=io_uring --direct=1)
rm -rf "$work/local"

start_dev_cluster "$bin" "$work" 26500 --meta 3 --nodes 6 --ec 4+2
mnt="$work/cluster/mnt/default"
mount_results=$(jobs --directory="$mnt" --ioengine=io_uring)
rm -f "$mnt"/seq* "$mnt"/rand*

"$bin/cairn" volume create bench --size "${size_mib}MiB" > /dev/null
start_volume_server "$bin" "$work" bench 127.0.0.1:26599 ${CAIRN_NBD_SERVE_ARGS:-}
nbd_results=$(jobs --ioengine=nbd --uri=nbd://127.0.0.1:26599/bench)

python3 - "$size_mib" "$local_results" "$mount_results" "$nbd_results" <<'PY'
import sys
size = sys.argv[1]
local, mount, nbd = ([tuple(map(float, l.split())) for l in a.splitlines()] for a in sys.argv[2:5])
labels = [
    (f"sequential write {size} MiB, 1 MiB blocks, then flush (MiB/s)", 0),
    (f"sequential read {size} MiB, 1 MiB blocks (MiB/s)", 0),
    ("4 KiB random read, queue depth 32 (IOPS)", 1),
    ("4 KiB random write, queue depth 32, flush every 32 (IOPS)", 1),
]
print("| job | local disk | Cairn mount | Cairn NBD volume | NBD / mount |")
print("|---|---|---|---|---|")
for i, (label, k) in enumerate(labels):
    l, m, n = local[i][k], mount[i][k], nbd[i][k]
    print(f"| {label} | {l:.0f} | {m:.0f} | {n:.0f} | {n / m:.2f} |")
PY
