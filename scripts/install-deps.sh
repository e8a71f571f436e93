#!/usr/bin/env bash
# Installs what building and testing Cairn needs on Debian 12 beyond the Rust toolchain:
# libclang (RocksDB's bindgen), fuse3 (fusermount3), PostgreSQL (the database failover
# test runs it on a mount), iptables (network partitions) and faketime (clock jumps) for
# the fault-injection tests, qemu-utils and libnbd-bin (the block volume tests drive NBD
# with qemu-img, qemu-io and nbdcopy), systemd (`systemd-analyze verify` of the units in
# deploy/systemd), promtool (the alert rules in deploy/monitoring; taken out of Debian's
# prometheus package, whose server is not installed), rustfmt/clippy, cargo-nextest,
# cargo-deny.
# Idempotent and quiet when everything is already there.
set -euo pipefail

need_apt=()
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v faketime >/dev/null 2>&1 || need_apt+=(faketime)
command -v qemu-io >/dev/null 2>&1 || need_apt+=(qemu-utils)
command -v nbdcopy >/dev/null 2>&1 || need_apt+=(libnbd-bin)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "install-deps: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v promtool >/dev/null 2>&1; then
  echo "install-deps: promtool (from Debian's prometheus package) into /usr/local/bin"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  deb_dir="$(mktemp -d)"
  chmod 755 "$deb_dir" # apt downloads as user _apt
  (cd "$deb_dir" && apt-get download -qq prometheus 2>/dev/null ||
    { $SUDO apt-get update -qq && apt-get download -qq prometheus; })
  dpkg-deb -x "$deb_dir"/prometheus_*.deb "$deb_dir/x"
  $SUDO install -m 0755 "$deb_dir/x/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$deb_dir"
fi

if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" \
      || rustup component add "$component"
  done
fi

# The object API's integration test drives the cluster from Python (grpcio-tools
# generates the client from the .proto files).
if ! python3 -c "import grpc, grpc_tools" >/dev/null 2>&1; then
  echo "install-deps: pip install grpcio grpcio-tools"
  python3 -m pip install --quiet grpcio grpcio-tools
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-deps: cargo install cargo-nextest"
  cargo install cargo-nextest --locked
fi

if ! cargo deny --version >/dev/null 2>&1; then
  echo "install-deps: cargo install cargo-deny"
  cargo install cargo-deny@0.20.2 --locked
fi
