#!/usr/bin/env bash
# Builds Strata and starts (or resumes) a local 6-node cluster on 127.0.0.1 with a demo tenant and a client
# profile. Extra arguments go to `strata-node dev` (see `strata-node dev --help`), e.g. --dir /tmp/strata.
# Pass --release first for an optimised build (for benchmarks). Ctrl-C stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-build-deps.sh --build-only
profile=()
sub=debug
if [ "${1:-}" = "--release" ]; then
  profile=(--release)
  sub=release
  shift
fi
cargo build "${profile[@]}" -p strata-node -p strata-client --bins
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec "$target/$sub/strata-node" dev "$@"
