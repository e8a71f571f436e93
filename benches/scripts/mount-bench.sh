#!/usr/bin/env bash
# Throughput through the FUSE mount beside the same workload on the local disk, in one
# run: fio sequential write and read of a SIZE_MIB file (1 MiB blocks), and the small-file
# workload (small_files.py: create+write 4 KiB+close, stat, read, unlink of FILES files,
# from 1 and from 8 processes). Starts `cairn dev up` (3 metadata replicas, 6 nodes,
# ec 4+2, a mount) in a temp directory; prints Markdown table rows; cleans up everything.
#
#   benches/scripts/mount-bench.sh [SIZE_MIB (default 2048)] [FILES (default 10000)]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
size_mib="${1:-2048}"
files="${2:-10000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
target="$CARGO_TARGET_DIR"
bin="$target/debug"
command -v fio >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null; }
cargo build --workspace --bins --locked --quiet --manifest-path "$here/Cargo.toml"

work="$(mktemp -d /var/tmp/cairn-mount-bench.XXXXXX)"
dev_pid=""
trap 'stop_dev_cluster "$work"' EXIT

fio_mbps() { # DIR RW EXTRA... -> MiB/s
  local dir=$1 rw=$2; shift 2
  fio --name=seq --directory="$dir" --rw="$rw" --bs=1M --size="${size_mib}M" --numjobs=1 \
    --ioengine=psync --output-format=json "$@" 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin)['jobs'][0]; print(round(d['$rw']['bw']/1024,1))"
}

mkdir -p "$work/local"
local_w=$(fio_mbps "$work/local" write --direct=1 --end_fsync=1)
local_r=$(fio_mbps "$work/local" read --direct=1)
rm -f "$work/local"/seq*
local_small1=$(python3 "$here/benches/scripts/small_files.py" "$work/local/s1" "$files" 1)
local_small8=$(python3 "$here/benches/scripts/small_files.py" "$work/local/s8" "$files" 8)

start_dev_cluster "$bin" "$work" 26300 --meta 3 --nodes 6 --ec 4+2
mnt="$work/cluster/mnt/default"

start=$(date +%s.%N)
cairn_w=$(fio_mbps "$mnt" write --end_fsync=1)
cairn_r=$(fio_mbps "$mnt" read)
rm -f "$mnt"/seq*
cairn_small1=$(python3 "$here/benches/scripts/small_files.py" "$mnt/s1" "$files" 1)
cairn_small8=$(python3 "$here/benches/scripts/small_files.py" "$mnt/s8" "$files" 8)
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$(cat "$work/cluster/pids/mount-1.pid")/status")

python3 - "$size_mib" "$local_w" "$local_r" "$cairn_w" "$cairn_r" "$local_small1" "$local_small8" \
  "$cairn_small1" "$cairn_small8" "$rss_kib" <<'PY'
import json, sys
size, lw, lr, cw, cr = sys.argv[1], *map(float, sys.argv[2:6])
ls1, ls8, cs1, cs8 = (json.loads(a) for a in sys.argv[6:10])
rss = int(sys.argv[10])
print("| workload | local disk | Cairn mount | Cairn / local |")
print("|---|---|---|---|")
print(f"| sequential write {size} MiB, 1 MiB blocks, then fsync (MiB/s) | {lw:.0f} | {cw:.0f} | {cw/lw:.2f} |")
print(f"| sequential read {size} MiB, 1 MiB blocks (MiB/s) | {lr:.0f} | {cr:.0f} | {cr/lr:.2f} |")
for label, l, c in (("1 process", ls1, cs1), ("8 processes", ls8, cs8)):
    for phase in ("create", "stat", "read", "unlink"):
        print(f"| {l['files']} small files, {label}: {phase} (files/s) | {l[phase]:.0f} | {c[phase]:.0f} | {c[phase]/l[phase]:.3f} |")
print(f"| cairn-mount peak resident memory | | {rss/1024:.0f} MiB | |")
PY
