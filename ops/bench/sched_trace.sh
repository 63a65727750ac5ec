#!/usr/bin/env bash
# How the kernel shares the proxies' core with the origin (see sched_trace.py).
# Installs what proxy.sh installs plus perf from Debian's packages when
# missing, builds meshd in release mode, then runs ops/bench/sched_trace.py.
#   MODES=tcp,h2 ops/bench/sched_trace.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_setup wrk:wrk h2load:nghttp2-client haproxy:haproxy nginx:nginx-light taskset:util-linux python3:python3 perf:linux-perf
exec python3 ops/bench/sched_trace.py
