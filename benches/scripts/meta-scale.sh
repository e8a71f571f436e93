#!/usr/bin/env bash
# The metadata engine at scale (issue #17's figures): builds the release binaries
# (installing fio first if missing), then runs meta_scale.py (see its header for what it
# measures) in a temporary directory on this disk and prints its JSON.
#
#   benches/scripts/meta-scale.sh [INODES (default 10000000)] [FILES (default 20000)]
#
# $CAIRN_BIN_DIR: use these binaries instead of building.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
if [ -n "${CAIRN_BIN_DIR:-}" ]; then
  bin="$CAIRN_BIN_DIR"
  command -v fio >/dev/null || { echo "meta-scale.sh: fio is missing (apt install fio)" >&2; exit 1; }
else
  prepare_release "$here" fio=fio
  bin="$CARGO_TARGET_DIR/release"
fi
work="/var/tmp/cairn-meta-scale.$$"
exec python3 "$here/benches/scripts/meta_scale.py" "$bin" "$work" "$@"
