#!/usr/bin/env bash
# TLS handshakes per second and HTTP/2-over-TLS requests per second, meshd
# against HAProxy, same certificate and origin, in one run.
#   DURATION=10 ROUNDS=3 ops/bench/tls.sh
#   MODES=memory CONNS=3000 SETTLE=10 ops/bench/tls.sh   (RSS per idle TLS 1.3 HTTP/1.1 connection; and after close)
set -euo pipefail
# The memory mode holds CONNS client connections in this shell's Python and
# in each proxy: lift the descriptor limit for every process.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
source "$(dirname "$0")/common.sh"
bench_setup h2load:nghttp2-client haproxy:haproxy nginx:nginx-light openssl:openssl taskset:util-linux
cd ops/bench
exec python3 tls_bench.py
