#!/usr/bin/env bash
# Repair speed: how fast Cairn rebuilds a dead node's shards, beside the disk's own write
# bandwidth measured in the same run. Starts a local cluster (1 metadata replica, 7
# storage nodes, ec 4+2), writes DATA_MIB of objects, kills one node, and times node death
# -> full redundancy. Prints a Markdown table row set; cleans up everything it started.
#
#   benches/scripts/repair-speed.sh [DATA_MIB (default 1024)] [THROTTLE_MIBPS (default 1000)]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
data_mib="${1:-1024}"
throttle="${2:-1000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
target="$CARGO_TARGET_DIR"
bin="$target/debug"
command -v fio >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null; }
cargo build --workspace --bins --locked --quiet --manifest-path "$here/Cargo.toml"

work="$(mktemp -d /var/tmp/cairn-repair-bench.XXXXXX)"
dev_pid=""
cleanup() {
  [ -n "$dev_pid" ] && kill -TERM "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The disk's sequential direct write bandwidth, 1 MiB blocks (same file system).
fio_out="$(fio --name=seqwrite --directory="$work" --rw=write --bs=1M --size=1G --direct=1 \
  --ioengine=libaio --iodepth=16 --numjobs=1 --output-format=json 2>/dev/null)"
disk_mbps="$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["jobs"][0]["write"]["bw"]/1024,1))' <<<"$fio_out")"
rm -f "$work"/seqwrite*

export CAIRN_META_NODE_DOWN_AFTER_MS=2000 CAIRN_META_NODE_OUT_AFTER_MS=5000 CAIRN_META_REPAIR_INTERVAL_MS=200
start_dev_cluster "$bin" "$work" 26100 --meta 1 --nodes 7 --ec 4+2
"$bin/cairn" repair throttle "$throttle" >/dev/null

head -c $((64 << 20)) /dev/urandom > "$work/blob"
for i in $(seq 1 $((data_mib / 64))); do
  "$bin/cairn" put "default/bench/$i" "$work/blob" 2>/dev/null
done
status() { "$bin/cairn" status --json; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

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
for _ in $(seq 1 6000); do
  s="$(status)"
  if [ "$(field '["repair_queue"]' <<<"$s")" = "0" ] && [ "$(field '["degraded_chunks"]' <<<"$s")" = "0" ] \
     && [ "$(field '["repaired_chunks"]' <<<"$s")" != "0" ]; then break; fi
  sleep 0.1
done
done_at=$(date +%s.%N)
s="$(status)"
bytes=$(field '["repaired_bytes"]' <<<"$s")
chunks=$(field '["repaired_chunks"]' <<<"$s")
python3 - "$killed" "$out_at" "$done_at" "$bytes" "$chunks" "$disk_mbps" "$data_mib" "$throttle" <<'PY'
import sys
killed, out_at, done_at, b, chunks, disk, data, throttle = sys.argv[1:]
killed, out_at, done_at, b, disk = map(float, (killed, out_at, done_at, b, disk))
rebuild = done_at - out_at
mbps = b / 1048576 / rebuild if rebuild > 0 else 0
print(f"| data written | {data} MiB (ec 4+2, 7 nodes, 1 metadata replica) |")
print(f"| disk sequential direct write (fio, 1 MiB, iodepth 16) | {disk:.0f} MiB/s |")
print(f"| repair throttle | {throttle} MiB/s |")
print(f"| shards rebuilt | {chunks} chunks, {b/1048576:.0f} MiB |")
print(f"| node death -> out (configured out timeout 5 s) | {out_at-killed:.1f} s |")
print(f"| out -> full redundancy | {rebuild:.1f} s |")
print(f"| node death -> full redundancy | {done_at-killed:.1f} s |")
print(f"| repair write speed | {mbps:.0f} MiB/s = {mbps/disk:.2f} of the disk's write bandwidth |")
PY
