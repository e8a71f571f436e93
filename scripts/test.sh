#!/usr/bin/env bash
# The whole test suite: formatting, clippy with warnings as errors, then every unit and
# integration test (real clusters of real processes on 127.0.0.x). `.ci/run` runs this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# Outside the clone so that reruns on the same machine are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The integration tests start the daemons' binaries: build them first.
cargo build --workspace --bins --locked
cargo nextest run --workspace --locked --no-fail-fast
# Criterion benchmarks in test mode (each runs once, unoptimised): they keep compiling and
# working. Real figures: `cargo bench` (see BENCHMARKS.md).
cargo test --workspace --benches --locked --quiet
