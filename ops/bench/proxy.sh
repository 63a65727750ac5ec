#!/usr/bin/env bash
# meshd against HAProxy and a direct baseline, on loopback, in one run.
# Installs wrk, h2load, HAProxy and nginx from Debian's packages when missing,
# builds meshd in release mode, then runs ops/bench/proxy_bench.py.
#   MODES=http1,h2,tcp,latency DURATION=10 ROUNDS=3 ops/bench/proxy.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_setup wrk:wrk h2load:nghttp2-client haproxy:haproxy nginx:nginx-light taskset:util-linux python3:python3
exec python3 ops/bench/proxy_bench.py
