#!/usr/bin/env bash
# Repair speed: how fast Cairn rebuilds a dead node's shards, beside the disk's own write
# bandwidth measured in the same run. Starts a local cluster (1 metadata replica, 8
# storage nodes, ec 4+2, default repair settings), writes DATA_MIB of objects, kills one
# node with kill -9, and times node death -> full redundancy. Also reports what the
# metadata leader's process read and wrote meanwhile (/proc/PID/io rchar + wchar: every
# byte through its sockets and files, an upper bound of its network bytes) against the
# bytes repaired. Prints Markdown table rows; cleans up everything it started.
#
#   benches/scripts/repair-speed.sh [DATA_MIB (default 1024)] [THROTTLE_MIBPS (default 0: none)] [LOAD_SECS (default 0)]
#
# With LOAD_SECS > 0, a foreground load (`cairn bench --workload mixed`: 1 MiB objects,
# 70 % gets and 30 % puts, 4 in flight) runs for LOAD_SECS before the kill (the
# baseline) and again as soon as the node is out (during repair); the rows then compare
# their latencies and give repair's rate while the load ran and after.
#
# $CAIRN_BENCH_DRAIN=1: drain node 1 (`cairn node drain 1`) instead of killing it, and
# time the drain until no shard is placed on it (same orders, a copy from the draining
# node instead of a reconstruction).
# $CAIRN_BIN_DIR: use these binaries instead of building the release ones.
# A node holds about 3/16 of DATA_MIB (ec 4+2 over 8 nodes): 4 GiB of shards on the
# killed node takes DATA_MIB 22000, and about 1.5 x DATA_MIB of free disk.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
data_mib="${1:-1024}"
throttle="${2:-0}"
load="${3:-0}"
drain="${CAIRN_BENCH_DRAIN:-0}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
if [ -n "${CAIRN_BIN_DIR:-}" ]; then
  bin="$CAIRN_BIN_DIR"
  command -v fio >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null; }
else
  prepare_release "$here" fio=fio
  bin="$CARGO_TARGET_DIR/release"
fi

work="$(mktemp -d /var/tmp/cairn-repair-bench.XXXXXX)"
dev_pid=""
cleanup() {
  [ -n "$dev_pid" ] && kill -TERM "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The disk's sequential direct write bandwidth, 1 MiB blocks (same file system).
fio_out="$(fio --name=seqwrite --directory="$work" --rw=write --bs=1M --size=2G --direct=1 \
  --ioengine=libaio --iodepth=16 --numjobs=1 --output-format=json 2>/dev/null)"
disk_mbps="$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["jobs"][0]["write"]["bw"]/1024,1))' <<<"$fio_out")"
rm -f "$work"/seqwrite*

export CAIRN_META_NODE_DOWN_AFTER_MS=2000 CAIRN_META_NODE_OUT_AFTER_MS=5000
start_dev_cluster "$bin" "$work" 26100 --meta 1 --nodes 8 --ec 4+2 --no-mount
if [ "$throttle" != 0 ]; then
  "$bin/cairn" repair throttle "$throttle" >/dev/null
fi

# 64 MiB objects, four puts at a time.
head -c $((64 << 20)) /dev/urandom > "$work/blob"
seq 1 $((data_mib / 64)) | xargs -P 4 -I{} "$bin/cairn" put "default/bench/{}" "$work/blob"
rm -f "$work/blob"
status() { "$bin/cairn" status --json; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
io_bytes() { awk '/^rchar|^wchar/ {s += $2} END {print s}' "/proc/$1/io"; }
# Jiffies the machine's CPUs spent busy and in all, from /proc/stat.
cpu_busy() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9}' /proc/stat; }
cpu_total() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
foreground() {
  "$bin/cairn" bench --workload mixed --size 1MiB --concurrency 4 --keys 64 \
    --duration "$load" --prefix "$1" --json > "$work/$1.json"
}
if [ "$load" -gt 0 ]; then foreground load-base; fi

victim_bytes=$(du -sb "$work/cluster/node-1" | cut -f1)
meta_pid=$(cat "$work/cluster/pids/meta-1.pid")
meta_io_before=$(io_bytes "$meta_pid")
if [ "$drain" = 1 ]; then
  "$bin/cairn" node drain 1 >/dev/null
  killed=$(date +%s.%N)
  out_at=$killed
else
  kill -9 "$(cat "$work/cluster/pids/node-1.pid")"
  killed=$(date +%s.%N)
  # Wait for the node to be out, then for an empty repair queue.
  for _ in $(seq 1 600); do
    s="$(status)"
    out=$(field '["nodes_out"]' <<<"$s")
    [ "$out" = "1" ] && break
    sleep 0.1
  done
  out_at=$(date +%s.%N)
fi
busy_at_out=$(cpu_busy) total_at_out=$(cpu_total)
load_start=0 load_end=0 load_bytes=0
if [ "$load" -gt 0 ]; then
  before=$(status | field '["repaired_bytes"]')
  load_start=$(date +%s.%N)
  foreground load-repair
  load_end=$(date +%s.%N)
  load_bytes=$(( $(status | field '["repaired_bytes"]') - before ))
fi
# One status call and one parse per poll (the poll's own CPU is part of what is measured).
# Done: nothing left to rebuild (and, for a drain, nothing placed on node 1).
for _ in $(seq 1 7200); do
  if status | python3 -c 'import json,sys; s=json.load(sys.stdin); n1=[n for n in s["nodes"] if n["id"] == 1][0]; sys.exit(0 if s["repair_queue"] == 0 and s["degraded_chunks"] == 0 and s["repaired_chunks"] > 0 and n1["placed_shards"] == 0 else 1)'; then
    break
  fi
  sleep 0.5
done
done_at=$(date +%s.%N)
cpu_share=$(python3 -c "print(($(cpu_busy) - $busy_at_out) / max(1, $(cpu_total) - $total_at_out))")
meta_io_after=$(io_bytes "$meta_pid")
s="$(status)"
bytes=$(field '["repaired_bytes"]' <<<"$s")
chunks=$(field '["repaired_chunks"]' <<<"$s")
python3 - "$killed" "$out_at" "$done_at" "$bytes" "$chunks" "$disk_mbps" "$data_mib" "$throttle" \
  "$victim_bytes" "$((meta_io_after - meta_io_before))" "$load" "$load_start" "$load_end" "$load_bytes" "$work" "$cpu_share" "$(nproc)" "$drain" <<'PY'
import json, sys
killed, out_at, done_at, b, chunks, disk, data, throttle, victim, meta_io = sys.argv[1:11]
load, load_start, load_end, load_bytes, work, cpu_share, cpus, drain = sys.argv[11:]
event, victim_name = ("drain", "draining") if drain == "1" else ("death", "killed")
killed, out_at, done_at, b, disk, victim, meta_io = map(float, (killed, out_at, done_at, b, disk, victim, meta_io))
rebuild = done_at - out_at
mbps = b / 1048576 / rebuild if rebuild > 0 else 0
print(f"| data written | {data} MiB (ec 4+2, 8 nodes, 1 metadata replica) |")
print(f"| shards on the {victim_name} node | {victim/1048576:.0f} MiB |")
print(f"| disk sequential direct write (fio, 1 MiB, iodepth 16) | {disk:.0f} MiB/s |")
print(f"| repair throttle | {'none (default)' if throttle == '0' else throttle + ' MiB/s'} |")
print(f"| shards rebuilt | {chunks} chunks, {b/1048576:.0f} MiB |")
if drain != "1":
    print(f"| node death -> out (configured out timeout 5 s) | {out_at-killed:.1f} s |")
    print(f"| out -> full redundancy | {rebuild:.1f} s |")
print(f"| node {event} -> full redundancy{' (nothing left on the node)' if drain == '1' else ''} | {done_at-killed:.1f} s |")
print(f"| repair write speed | {mbps:.0f} MiB/s = {mbps/disk:.2f} of the disk's write bandwidth |")
print(f"| CPU busy from out to full redundancy ({cpus} CPUs) | {float(cpu_share)*100:.0f} % |")
print(f"| metadata leader's bytes read + written (rchar + wchar) from the kill to full redundancy | {meta_io/1048576:.1f} MiB = {meta_io/max(b,1)*100:.2f} % of the bytes repaired |")
if int(load) > 0:
    def mixed(name):
        phases = json.load(open(f"{work}/{name}.json"))["phases"]
        return next(p for p in phases if p["phase"] == "mixed")
    base, under = mixed("load-base"), mixed("load-repair")
    secs = float(load_end) - float(load_start)
    during = float(load_bytes) / 1048576 / secs if secs > 0 else 0
    after_secs = done_at - float(load_end)
    after = (b - float(load_bytes)) / 1048576 / after_secs if after_secs > 0 else 0
    print(f"| foreground (mixed 1 MiB, 4 in flight) before the kill: ops/s, p50, p99 | {base['ops_per_sec']:.0f}/s, {base['p50_ms']:.1f} ms, {base['p99_ms']:.1f} ms |")
    print(f"| the same during repair | {under['ops_per_sec']:.0f}/s, {under['p50_ms']:.1f} ms, {under['p99_ms']:.1f} ms: p99 {under['p99_ms']/max(base['p99_ms'],1e-9):.2f}x |")
    print(f"| repair rate while the load ran / after it | {during:.0f} MiB/s / {after:.0f} MiB/s |")
PY
