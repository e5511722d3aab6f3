# native-rdma.sh - sourced by the runners: native_rdma succeeds when this host has an ACTIVE
# RDMA port (a real HCA, or rxe the user set up), so tests and benchmarks run without a guest.
native_rdma() {
  local s
  for s in /sys/class/infiniband/*/ports/*/state; do
    [ -r "$s" ] && grep -q ACTIVE "$s" && return 0
  done
  return 1
}
