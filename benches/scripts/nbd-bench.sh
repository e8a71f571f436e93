#!/usr/bin/env bash
# Block volumes through NBD beside the same fio jobs on the FUSE mount and on the local
# disk: 4 KiB random read and random write at queue depth 32 (the writes flushed every 32),
# and 1 MiB sequential write (then flush) and read of SIZE_MIB.
# Starts `cairn dev up` (release build; 3 metadata replicas, 6 nodes, ec 4+2, a mount) in
# a temp directory, creates and serves a volume with `cairn volume serve`, drives it with
# fio's nbd engine (libnbd). The mount and the volume each run the four jobs ROUNDS times,
# in alternating order (mount first in odd rounds, the volume first in even ones), each
# set of jobs on a settled cluster (no shard awaiting garbage collection), so that neither
# pays for the other's deletions. The local disk runs them once. Prints Markdown tables:
# the medians, then the sequential jobs round by round; cleans up everything.
#
#   benches/scripts/nbd-bench.sh [SIZE_MIB (default 1024)] [SECONDS per random job (default 20)] [ROUNDS (default 3)]
#   CAIRN_NBD_SERVE_ARGS="--write-buffer-mib 64": extra options for `cairn volume serve`.
set -euo pipefail
shopt -s inherit_errexit
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
size_mib="${1:-1024}"
seconds="${2:-20}"
rounds="${3:-3}"
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

# Waits (at most 5 minutes) until no shard awaits garbage collection, then a little more
# for the nodes' deletions to finish.
settle() {
  local pending=""
  for _ in $(seq 1 600); do
    pending=$("$bin/cairn" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending_gc_shards"])')
    [ "$pending" = 0 ] && break
    sleep 0.5
  done
  [ "$pending" = 0 ] || echo "nbd-bench: $pending shards still await gc; measuring anyway" >&2
  sleep 3
}

mkdir -p "$work/local"
local_results=$(jobs --directory="$work/local" --ioengine=io_uring --direct=1)
rm -rf "$work/local"

start_dev_cluster "$bin" "$work" 26500 --meta 3 --nodes 6 --ec 4+2
mnt="$work/cluster/mnt/default"
"$bin/cairn" volume create bench --size "${size_mib}MiB" > /dev/null
start_volume_server "$bin" "$work" bench 127.0.0.1:26599 ${CAIRN_NBD_SERVE_ARGS:-}

run_mount() {
  settle
  jobs --directory="$mnt" --ioengine=io_uring > "$work/mount-$1"
  rm -f "$mnt"/seq* "$mnt"/rand*
}
run_nbd() {
  settle
  jobs --ioengine=nbd --uri=nbd://127.0.0.1:26599/bench > "$work/nbd-$1"
}
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then
    run_mount "$round"
    run_nbd "$round"
  else
    run_nbd "$round"
    run_mount "$round"
  fi
done

python3 - "$size_mib" "$rounds" "$work" "$local_results" <<'PY'
import statistics, sys
size, rounds, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
parse = lambda text: [tuple(map(float, l.split())) for l in text.splitlines()]
local = parse(sys.argv[4])
mount = [parse(open(f"{work}/mount-{r}").read()) for r in range(1, rounds + 1)]
nbd = [parse(open(f"{work}/nbd-{r}").read()) for r in range(1, rounds + 1)]
labels = [
    (f"sequential write {size} MiB, 1 MiB blocks, then flush (MiB/s)", 0),
    (f"sequential read {size} MiB, 1 MiB blocks (MiB/s)", 0),
    ("4 KiB random read, queue depth 32 (IOPS)", 1),
    ("4 KiB random write, queue depth 32, flush every 32 (IOPS)", 1),
]
print(f"| job | local disk | Cairn mount (median of {rounds}) | Cairn NBD volume (median of {rounds}) | NBD / mount |")
print("|---|---|---|---|---|")
for i, (label, k) in enumerate(labels):
    m = statistics.median(r[i][k] for r in mount)
    n = statistics.median(r[i][k] for r in nbd)
    print(f"| {label} | {local[i][k]:.0f} | {m:.0f} | {n:.0f} | {n / m:.2f} |")
print()
print("| round (first target) | mount seq write | NBD seq write | ratio | mount seq read | NBD seq read | ratio |")
print("|---|---|---|---|---|---|---|")
for r in range(rounds):
    first = "mount" if r % 2 == 0 else "NBD"
    mw, nw, mr, nr = mount[r][0][0], nbd[r][0][0], mount[r][1][0], nbd[r][1][0]
    print(f"| {r + 1} ({first}) | {mw:.0f} | {nw:.0f} | {nw / mw:.2f} | {mr:.0f} | {nr:.0f} | {nr / mr:.2f} |")
PY
