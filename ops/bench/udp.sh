#!/usr/bin/env bash
# meshd against nginx's stream module proxying UDP, on loopback, in one run.
# Installs nginx and its stream module (Debian's libnginx-mod-stream) when
# missing, builds meshd and the UDP load generator (udp-load) in release
# mode, then runs ops/bench/udp_bench.py.
#   DURATION=10 ROUNDS=3 SESSIONS=32 SIZE=64 ops/bench/udp.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_setup nginx:nginx taskset:util-linux python3:python3
if [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  echo "bench: installing libnginx-mod-stream" >&2
  apt-get update -qq
  apt-get install -y -qq libnginx-mod-stream >/dev/null
fi
cargo build --release -q -p palisade-tests --bin udp-load
export UDP_LOAD="${CARGO_TARGET_DIR:-$bench_root/target}/release/udp-load"
exec python3 ops/bench/udp_bench.py
