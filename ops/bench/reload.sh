#!/usr/bin/env bash
# What reloading a large cluster's config costs the requests in flight: one
# wrk -c1 client through meshd and through HAProxy (reloaded the way
# marathon-lb does it), quiet and while a 10,000-service config is rewritten
# every second. MESHD_B=<another meshd build> adds an A/B.
#   SERVICES=10000 DURATION=10 INTERVAL=1 ROUNDS=3 ops/bench/reload.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_setup wrk:wrk haproxy:haproxy nginx:nginx-light taskset:util-linux python3:python3
exec python3 ops/bench/reload_bench.py
