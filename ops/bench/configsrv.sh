#!/usr/bin/env bash
# configsrv benchmarks: propagation from a Marathon change to "applied" on
# every meshd (3 and 20 meshd on loopback, through the Marathon simulator),
# render time for a synthetic 10,000-app, 100-node cluster, and configsrv's
# memory (VmRSS after the first sync and after changes, VmHWM for the peak)
# serving 10,000 apps x 3 tasks over 100 agents, with every node's file
# written and every node long-polling its config.
#   SAMPLES=50 ops/bench/configsrv.sh
#   RSS_APPS=10000 RSS_AGENTS=100 RSS_CHANGES=3 (the memory run's size)
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
echo
echo "| cluster | first sync | RSS after first sync | RSS after changes | peak RSS (VmHWM) |"
echo "|---|---:|---:|---:|---:|"
# jemalloc's defaults (as built: .cargo/config.toml), then as ops/ ships
# configsrv (one arena, dirty pages purged at once).
"$bin/configsrv-rss-bench" "${RSS_APPS:-10000}" "${RSS_AGENTS:-100}" "${RSS_CHANGES:-3}"
_RJEM_MALLOC_CONF=narenas:1,dirty_decay_ms:0 "$bin/configsrv-rss-bench" "${RSS_APPS:-10000}" "${RSS_AGENTS:-100}" "${RSS_CHANGES:-3}"
