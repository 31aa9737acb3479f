#!/usr/bin/env bash
# Installs the system packages a Strata build needs, if missing (Debian/Ubuntu): libclang for the bindgen step
# of RocksDB's bindings, and a C/C++ toolchain for RocksDB itself. Safe to run repeatedly.
set -euo pipefail
strata_install_prereqs() {
  local need=()
  dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
  command -v g++ >/dev/null 2>&1 || need+=(g++)
  command -v cc >/dev/null 2>&1 || need+=(gcc)
  command -v make >/dev/null 2>&1 || need+=(make)
  ((${#need[@]} == 0)) && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing system packages (${need[*]}) and no apt-get to install them; install them and retry" >&2
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing system packages: ${need[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}
strata_install_prereqs
