# Sourced by the benchmark scripts: their shared set-up.

# Installs the Debian package of each missing tool, then the project's dependencies, then
# builds the release binaries (into $CARGO_TARGET_DIR).
#   prepare_release REPO_DIR [TOOL=PACKAGE[,PACKAGE...]...]
prepare_release() {
  local here=$1 spec
  shift
  local need=() pkgs
  for spec in "$@"; do
    if ! command -v "${spec%%=*}" >/dev/null; then
      IFS=, read -r -a pkgs <<< "${spec#*=}"
      need+=("${pkgs[@]}")
    fi
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  "$here/scripts/install-deps.sh"
  cargo build --workspace --bins --release --locked --quiet --manifest-path "$here/Cargo.toml"
}

# Sets $bin to $CAIRN_BIN_DIR if given, else to the release binaries prepare_release
# builds (with the same arguments).
#   release_bin REPO_DIR [TOOL=PACKAGE[,PACKAGE...]...]
release_bin() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
  if [ -n "${CAIRN_BIN_DIR:-}" ]; then
    bin="$CAIRN_BIN_DIR"
  else
    prepare_release "$@"
    bin="$CARGO_TARGET_DIR/release"
  fi
}

# Starts `cairn dev up` in the background and waits until it is ready.
#   start_dev_cluster BIN_DIR WORK_DIR PORT_BASE [dev up options...]
# Sets dev_pid (for the caller's cleanup) and exports CAIRN_CLUSTER; on failure prints the
# log and exits.
start_dev_cluster() {
  local bin=$1 work=$2 port_base=$3
  shift 3
  "$bin/cairn" dev up --dir "$work/cluster" --port-base "$port_base" "$@" > "$work/devup.log" 2>&1 &
  dev_pid=$!
  for _ in $(seq 1 600); do
    grep -q "^ready:" "$work/devup.log" && break
    kill -0 "$dev_pid" 2>/dev/null || break # dev up gave up (e.g. a port in use)
    sleep 0.2
  done
  grep -q "^ready:" "$work/devup.log" || { cat "$work/devup.log"; exit 1; }
  export CAIRN_CLUSTER="$work/cluster/cluster.toml"
}

# Stops the cluster start_dev_cluster started (dev_pid), unmounts its mount and removes
# WORK_DIR: the EXIT trap of a script with one dev cluster and its mount.
#   stop_dev_cluster WORK_DIR
stop_dev_cluster() {
  local work=$1
  [ -n "${dev_pid:-}" ] && kill -TERM "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null || true
  mountpoint -q "$work/cluster/mnt" 2>/dev/null && umount -l "$work/cluster/mnt" || true
  rm -rf "$work"
}

# Serves block volume NAME with `cairn volume serve` at ADDR in the background and waits
# until it is attached. Sets serve_pid (for the caller's cleanup); on failure prints the
# server's log and exits.
#   start_volume_server BIN_DIR WORK_DIR NAME ADDR [serve options...]
start_volume_server() {
  local bin=$1 work=$2 name=$3 addr=$4
  shift 4
  "$bin/cairn" volume serve "$name" --listen "$addr" "$@" > "$work/serve.out" 2> "$work/serve.log" &
  serve_pid=$!
  for _ in $(seq 1 300); do
    grep -q "^serving volume" "$work/serve.out" && break
    sleep 0.1
  done
  grep -q "^serving volume" "$work/serve.out" || { cat "$work/serve.log"; exit 1; }
}
