#!/usr/bin/env bash
# Installs the system packages a Strata build needs, if missing (Debian/Ubuntu): libclang for the bindgen step
# of RocksDB's bindings and a C/C++ toolchain for RocksDB itself. Unless --build-only is given, also what the
# tests need: Prometheus (`promtool` and `prometheus`, for the tests of the alert rules and of the metrics
# they use), iproute2 and nftables (the partition tests run nodes in network namespaces and cut their links
# with nftables rules), e2fsprogs (the disk-full tests put a node on a small loop-mounted ext4 file system) and
# faketime (the clock tests run nodes on skewed and jumping clocks). Safe to run repeatedly.
set -euo pipefail
strata_install_prereqs() {
  local need=()
  dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
  command -v g++ >/dev/null 2>&1 || need+=(g++)
  command -v cc >/dev/null 2>&1 || need+=(gcc)
  command -v make >/dev/null 2>&1 || need+=(make)
  local tests=()
  if [ "${1:-}" != "--build-only" ]; then
    { command -v promtool && command -v prometheus; } >/dev/null 2>&1 || tests+=(prometheus)
    command -v ip >/dev/null 2>&1 || tests+=(iproute2)
    command -v nft >/dev/null 2>&1 || tests+=(nftables)
    command -v mkfs.ext4 >/dev/null 2>&1 || tests+=(e2fsprogs)
    compgen -G "/usr/lib/*/faketime/libfaketimeMT.so.1" >/dev/null || tests+=(faketime)
  fi
  ((${#need[@]} + ${#tests[@]} == 0)) && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing system packages (${need[*]}) and no apt-get to install them; install them and retry" >&2
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing system packages: ${need[*]} ${tests[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  if ((${#need[@]} > 0)); then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  # Without recommends: only the binaries, no exporters or services started on this machine.
  if ((${#tests[@]} > 0)); then
    local was_active=no
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then was_active=yes; fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${tests[@]}" >/dev/null
    # The package starts a Prometheus service where systemd runs; the tests start their own. Only a service
    # this install started is stopped.
    if [ "$was_active" = no ] && command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
      $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
  fi
}
strata_install_prereqs "$@"
