#!/usr/bin/env bash
# Metadata backup and restore at 1 million inodes (issue #21): builds the release
# binaries, then runs meta_backup.py (see its header) in a temporary directory on this
# disk and prints its JSON.
#
#   benches/scripts/meta-backup.sh [INODES (default 1000000)] [ROUNDS (default 3)]
#
# $CAIRN_BIN_DIR: use these binaries instead of building.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=benches/scripts/bench_setup.sh
. "$here/benches/scripts/bench_setup.sh"
release_bin "$here"
work="/var/tmp/cairn-meta-backup.$$"
exec python3 "$here/benches/scripts/meta_backup.py" "$bin" "$work" "$@"
