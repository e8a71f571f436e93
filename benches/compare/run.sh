#!/usr/bin/env bash
# Cairn beside GlusterFS and the raw disk, in one run on this machine:
#   1. the physical limits: fio on the disk (1 MiB sequential direct write/read, 4 KiB
#      random read/write IOPS, fdatasync latency) and memory bandwidth;
#   2. a Cairn cluster (3 metadata replicas, 6 nodes, ec 4+2, a mount; release build):
#      the object path (`cairn bench`) and the same file workloads on the mount;
#   3. GlusterFS (Debian's glusterfs-server, installed if missing) with a disperse 4+2
#      volume and a replica 3 volume, bricks on the same disk, FUSE-mounted;
# then prints one Markdown table with every figure and its ratios, writes it into
# BENCHMARKS.md (between the "compare:begin/end" markers) with the date and machine, and
# stops and removes everything it started.
#
#   benches/compare/run.sh [SIZE_MIB (default 2048)] [FILES (default 10000)]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
size_mib="${1:-2048}"
files="${2:-10000}"
rand_secs=15
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
target="$CARGO_TARGET_DIR"
bin="$target/release"
host="$(hostname)" # GlusterFS refuses localhost/127.0.0.1 as a brick host.

prepare_release "$here" fio=fio glusterd=glusterfs-server,glusterfs-client

work="$(mktemp -d /var/tmp/cairn-compare.XXXXXX)"
results="$work/results"
mkdir -p "$results"
dev_pid=""
glusterd_started=""
cleanup() {
  set +e
  for m in "$work/gl-disperse" "$work/gl-replica"; do
    mountpoint -q "$m" && umount -l "$m"
  done
  if [ -n "$glusterd_started" ]; then
    for v in cairn-cmp-disperse cairn-cmp-replica; do
      gluster --mode=script volume stop "$v" force >/dev/null 2>&1
      gluster --mode=script volume delete "$v" >/dev/null 2>&1
    done
    pkill -f "glusterfsd.*cairn-cmp" ; pkill -f "glusterfs.*cairn-cmp"
    [ -f "$work/glusterd.pid" ] && kill "$(cat "$work/glusterd.pid")"
  fi
  [ -n "$dev_pid" ] && kill -TERM "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null
  mountpoint -q "$work/cluster/mnt" && umount -l "$work/cluster/mnt"
  rm -rf "$work"
}
trap cleanup EXIT

# fio_json NAME DIR ARGS... -> results/NAME.json
fio_json() {
  local name=$1 dir=$2; shift 2
  fio --name="$name" --directory="$dir" --output-format=json "$@" > "$results/$name.json" 2>/dev/null
}

# Everything but the physical run uses buffered I/O through the file system under test.
file_workloads() { # PREFIX DIR
  local p=$1 dir=$2
  # The read job reads the file the write job wrote (one copy of SIZE_MIB on the disk).
  fio_json "$p-seqwrite" "$dir" --filename="$p-seq.dat" --rw=write --bs=1M --size="${size_mib}M" \
    --ioengine=psync --end_fsync=1
  fio_json "$p-seqread" "$dir" --filename="$p-seq.dat" --rw=read --bs=1M --size="${size_mib}M" \
    --ioengine=psync
  rm -f "$dir/$p-seq.dat"
  fio_json "$p-randwrite" "$dir" --rw=randwrite --bs=4k --size=256M --ioengine=psync --numjobs=4 \
    --time_based --runtime="$rand_secs" --end_fsync=1 --group_reporting
  fio_json "$p-randread" "$dir" --rw=randread --bs=4k --size=256M --ioengine=psync --numjobs=4 \
    --time_based --runtime="$rand_secs" --group_reporting
  rm -f "$dir/$p-rand"*
  fio_json "$p-fsync" "$dir" --rw=write --bs=4k --size=16M --ioengine=psync --fdatasync=1
  rm -f "$dir/$p-fsync"*
  python3 "$here/benches/scripts/small_files.py" "$dir/$p-small1" "$files" 1 > "$results/$p-small1.json"
  python3 "$here/benches/scripts/small_files.py" "$dir/$p-small8" "$files" 8 > "$results/$p-small8.json"
}

echo "compare: physical limits" >&2
mkdir -p "$work/disk"
fio_json disk-seqwrite "$work/disk" --filename=seq.dat --rw=write --bs=1M --size="${size_mib}M" --direct=1 \
  --ioengine=libaio --iodepth=16
fio_json disk-seqread "$work/disk" --filename=seq.dat --rw=read --bs=1M --size="${size_mib}M" --direct=1 \
  --ioengine=libaio --iodepth=16
rm -f "$work/disk"/*
fio_json disk-randread "$work/disk" --rw=randread --bs=4k --size=1G --direct=1 --ioengine=libaio --iodepth=32 \
  --time_based --runtime="$rand_secs"
fio_json disk-randwrite "$work/disk" --rw=randwrite --bs=4k --size=1G --direct=1 --ioengine=libaio --iodepth=32 \
  --time_based --runtime="$rand_secs"
rm -f "$work/disk"/*
fio_json disk-fsync "$work/disk" --rw=write --bs=4k --size=16M --ioengine=psync --fdatasync=1
rm -f "$work/disk"/*
python3 "$here/benches/scripts/small_files.py" "$work/disk/small1" "$files" 1 > "$results/disk-small1.json"
python3 "$here/benches/scripts/small_files.py" "$work/disk/small8" "$files" 8 > "$results/disk-small8.json"
dd if=/dev/zero of=/dev/null bs=64M count=200 2> "$results/memcpy.txt"

echo "compare: Cairn" >&2
start_dev_cluster "$bin" "$work" 26500 --meta 3 --nodes 6 --ec 4+2
"$bin/cairn" bench --workload put --size 64MiB --concurrency 4 --duration 20 --keys 16 --json \
  > "$results/cairn-obj-put.json"
"$bin/cairn" bench --workload get --size 64MiB --concurrency 4 --duration 20 --keys 16 --json \
  > "$results/cairn-obj-get.json"
file_workloads cairn "$work/cluster/mnt/default"
awk '/VmHWM/ {print $2}' "/proc/$(cat "$work/cluster/pids/mount-1.pid")/status" > "$results/cairn-mount-rss.txt"
kill -TERM "$dev_pid"; wait "$dev_pid" 2>/dev/null || true; dev_pid=""
rm -rf "$work/cluster"

echo "compare: GlusterFS" >&2
glusterd -p "$work/glusterd.pid"
glusterd_started=1
for _ in $(seq 1 100); do gluster --mode=script volume list >/dev/null 2>&1 && break; sleep 0.2; done
bricks() { for i in $(seq 1 "$2"); do mkdir -p "$work/bricks/$1-$i"; echo -n "$host:$work/bricks/$1-$i "; done; }
# shellcheck disable=SC2046
gluster --mode=script volume create cairn-cmp-disperse disperse 6 redundancy 2 $(bricks d 6) force
# shellcheck disable=SC2046
gluster --mode=script volume create cairn-cmp-replica replica 3 $(bricks r 3) force
for v in disperse replica; do
  gluster --mode=script volume start "cairn-cmp-$v"
  mkdir -p "$work/gl-$v"
  mount -t glusterfs "$host:/cairn-cmp-$v" "$work/gl-$v"
done
file_workloads gl-disperse "$work/gl-disperse"
file_workloads gl-replica "$work/gl-replica"

python3 "$here/benches/compare/report.py" "$results" "$size_mib" "$files" "$here/BENCHMARKS.md"
