#!/usr/bin/env bash
# TLS handshakes per second and HTTP/2-over-TLS requests per second, meshd
# against HAProxy, same certificate and origin, in one run.
#   DURATION=10 ROUNDS=3 ops/bench/tls.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
missing=()
for tool in h2load:nghttp2-client haproxy:haproxy nginx:nginx-light openssl:openssl taskset:util-linux; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release -q -p meshd
export MESHD="${CARGO_TARGET_DIR:-$root/target}/release/meshd"
cd ops/bench
exec python3 tls_bench.py
