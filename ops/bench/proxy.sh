#!/usr/bin/env bash
# meshd against HAProxy and a direct baseline, on loopback, in one run.
# Installs wrk, h2load, HAProxy and nginx from Debian's packages when missing,
# builds meshd and the paired latency client (latency-pair) in release mode,
# then runs ops/bench/proxy_bench.py.
#   MODES=http1,h2,h2rate,tcp,latency DURATION=10 ROUNDS=3 SLICES=5 H2_RPS=2000 ops/bench/proxy.sh
#   MODES=memory CONNS=5000 SETTLE=10 ops/bench/proxy.sh   (RSS per idle connection: HTTP/1.1, TCP, h2; and after close)
#   MODES=bulk BULK_CONNS=8 ops/bench/proxy.sh   (1 MiB responses, HTTP/1.1 and TCP: MiB/s, CPU per MiB)
set -euo pipefail
# The memory mode holds CONNS connections, twice over through a TCP port
# (client and backend side): lift the descriptor limit for every process.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
source "$(dirname "$0")/common.sh"
bench_setup wrk:wrk h2load:nghttp2-client haproxy:haproxy nginx:nginx-light taskset:util-linux python3:python3
cargo build --release -q -p palisade-tests --bin latency-pair
export LATENCY_PAIR="${CARGO_TARGET_DIR:-$bench_root/target}/release/latency-pair"
exec python3 ops/bench/proxy_bench.py
