#!/usr/bin/env bash
# configsrv benchmarks: propagation from a Marathon change to "applied" on
# every meshd (3 and 20 meshd on loopback, through the Marathon simulator),
# and render time for a synthetic 10,000-app, 100-node cluster.
#   SAMPLES=50 ops/bench/configsrv.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release -q -p meshd -p configsrv -p palisade-tests --bins
bin="${CARGO_TARGET_DIR:-$root/target}/release"
export PALISADE_BIN_DIR="$bin"
samples="${SAMPLES:-50}"
echo "| meshd on loopback | changes | p50 | p99 | max |"
echo "|---|---|---:|---:|---:|"
for nodes in 3 20; do
  "$bin/propagation-bench" "$nodes" "$samples"
done
echo
echo "| cluster | render (pure) | render + write every node file |"
echo "|---|---:|---:|"
"$bin/render-bench" 10000 100
