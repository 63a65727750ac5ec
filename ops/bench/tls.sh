#!/usr/bin/env bash
# TLS handshakes per second and HTTP/2-over-TLS requests per second, meshd
# against HAProxy, same certificate and origin, in one run.
#   DURATION=10 ROUNDS=3 ops/bench/tls.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_setup h2load:nghttp2-client haproxy:haproxy nginx:nginx-light openssl:openssl taskset:util-linux
cd ops/bench
exec python3 tls_bench.py
