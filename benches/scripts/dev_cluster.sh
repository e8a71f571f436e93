# Sourced by the benchmark scripts: starts `cairn dev up` in the background and waits until
# it is ready.
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
