#!/usr/bin/env bash
# meshd against HAProxy and a direct baseline, on loopback, in one run.
# Installs wrk, h2load, HAProxy and nginx from Debian's packages when missing,
# builds meshd in release mode, then runs ops/bench/proxy_bench.py.
#   MODES=http1,h2,tcp,latency DURATION=10 ROUNDS=3 ops/bench/proxy.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

missing=()
for tool in wrk:wrk h2load:nghttp2-client haproxy:haproxy nginx:nginx-light taskset:util-linux python3:python3; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release -q -p meshd
export MESHD="${CARGO_TARGET_DIR:-$root/target}/release/meshd"
exec python3 ops/bench/proxy_bench.py
