#!/usr/bin/env bash
# The small-file and fsync rows of the mount, for measuring one lever at a time: starts
# `cairn dev up` (3 metadata replicas, 6 nodes, ec 4+2, a mount) from BIN_DIR's binaries
# in a temp directory, runs small_files.py (FILES files; 1 and 8 processes; with the
# metadata log entries each phase added per file), small_file_steps.py (each system call
# of the loop timed, on the mount and on the local disk) and fio's 4 KiB write + fdatasync
# (FSYNC_MIB MiB, 8 by default) on the mount; prints one JSON object per measurement;
# cleans up everything. Without BIN_DIR, builds the release binaries first.
#
#   benches/scripts/small-levers.sh [BIN_DIR] [FILES (default 2000)]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
bin="${1:-}"
files="${2:-2000}"
fsync_mib="${FSYNC_MIB:-8}"
if [ -z "$bin" ]; then
  prepare_release "$here" fio=fio
  bin="$CARGO_TARGET_DIR/release"
fi
command -v fio >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null; }

work="$(mktemp -d /var/tmp/cairn-small-levers.XXXXXX)"
dev_pid=""
trap 'stop_dev_cluster "$work"' EXIT
start_dev_cluster "$bin" "$work" 26400 --meta 3 --nodes 6 --ec 4+2
mnt="$work/cluster/mnt/default"
for procs in 1 8; do
  python3 "$here/benches/scripts/small_files.py" "$mnt/s$procs" "$files" "$procs" "$bin/cairn"
done
python3 "$here/benches/scripts/small_file_steps.py" "$mnt/steps" 1000
python3 "$here/benches/scripts/small_file_steps.py" "$work/local-steps" 1000 | sed 's/^{/{"local_disk": true, /'
fio --name=fsync --directory="$mnt" --rw=write --bs=4k --size="${fsync_mib}M" --ioengine=psync \
  --fdatasync=1 --output-format=json > "$work/fio.json"
python3 - "$work/fio.json" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
sync = job["sync"]["lat_ns"]
ms = lambda ns: round(ns / 1e6, 2)
print(json.dumps({"fdatasync_4k": sync["N"], "p50_ms": ms(sync["percentile"]["50.000000"]),
                  "p99_ms": ms(sync["percentile"]["99.000000"]),
                  "write_p99_ms": ms(job["write"]["clat_ns"]["percentile"]["99.000000"])}))
PY
