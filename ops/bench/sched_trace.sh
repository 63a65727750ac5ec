#!/usr/bin/env bash
# How the kernel shares the proxies' core with the origin (see sched_trace.py).
# Installs what proxy.sh installs plus perf from Debian's packages when
# missing, builds meshd in release mode, then runs ops/bench/sched_trace.py.
#   MODES=tcp,h2 ops/bench/sched_trace.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

missing=()
for tool in wrk:wrk h2load:nghttp2-client haproxy:haproxy nginx:nginx-light taskset:util-linux python3:python3 perf:linux-perf; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release -q -p meshd
export MESHD="${CARGO_TARGET_DIR:-$root/target}/release/meshd"
exec python3 ops/bench/sched_trace.py
