#!/usr/bin/env bash
# The whole test suite: formatting, supply-chain audit, clippy with warnings as errors,
# then every unit and integration test (real clusters of real processes on 127.0.0.x).
# `.ci/run` runs this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# Outside the clone so that reruns on the same machine are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
# Incremental caches and superseded test binaries pile up across reruns (tens of GB over
# weeks); when the disk runs low, drop the workspace's own artifacts (rebuilt in minutes)
# but keep the third-party ones (RocksDB takes a quarter of an hour).
free_kib=$(df --output=avail -k "$(dirname "$CARGO_TARGET_DIR")" | tail -1)
if [ -d "$CARGO_TARGET_DIR/debug" ] && [ "$free_kib" -lt $((15 * 1024 * 1024)) ]; then
  echo "test: under 15 GiB free: removing the workspace's cached debug artifacts"
  rm -rf "$CARGO_TARGET_DIR/debug/incremental"
  find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 \
    \( -name 'cairn*' -o -name 'libcairn*' -o -name 't[0-9]*_*' -o -name 'fuzz_*' \
    -o -name 'store-*' -o -name 'coding-*' \) -delete
fi

cargo fmt --all -- --check
# RustSec advisories, licences, sources (deny.toml).
scripts/audit.sh
cargo clippy --workspace --all-targets --locked -- -D warnings
# The integration tests start the daemons' binaries: build them first.
cargo build --workspace --bins --locked
cargo nextest run --workspace --locked --no-fail-fast
# Criterion benchmarks in test mode (each runs once, unoptimised): they keep compiling and
# working. Real figures: `cargo bench` (see BENCHMARKS.md).
cargo test --workspace --benches --locked --quiet
