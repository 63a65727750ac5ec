#!/usr/bin/env bash
# Load-independent cost of one UDP exchange through meshd, for A/B of the
# relay: meshd (one worker thread) relays `udp-load client` (32 sessions,
# request/response, 64-byte datagrams) to `udp-load echo`, and either
# `strace -c -f` counts its syscalls (MODE=strace, default), callgrind
# counts its instructions (MODE=callgrind), or /proc counts its context
# switches, voluntary (it slept) and not (it was preempted), and its CPU
# (MODE=ctxsw) over a window after a warm-up that opens the sessions. Prints
# the count per answered exchange.
# Usage: MESHD=path UDP_LOAD=path [MODE=strace|callgrind|ctxsw] [RUN_SECONDS=3] ops/bench/udp_counts.sh
# Loopback only: 127.0.0.1:18354 (origin), 127.0.0.2:18353 (meshd), 127.0.0.1:19913 (admin).
set -euo pipefail
: "${MESHD:?path to meshd}" "${UDP_LOAD:?path to udp-load}"
mode="${MODE:-strace}"
secs="${RUN_SECONDS:-3}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
origin=127.0.0.1:18354
mkdir -p "$work/nodes"
cat > "$work/nodes/bench.yaml" <<YAML
apiVersion: palisade/v1
kind: NodeConfig
node: bench
address: 127.0.0.2
generation: 1
revision: bench-udp-counts
services:
  - app: /bench/udp
    port: 18353
    protocol: udp
    access:
      default_action: deny
      allow:
        - from_cidr: 127.0.0.0/8
    backends:
      - {address: $origin, task: bench_udp.1}
identities: []
YAML
"$UDP_LOAD" echo "$origin" & pids+=($!)
run=("$MESHD" run --node bench --config-dir "$work/nodes" --admin 127.0.0.1:19913 --threads 1)
if [ "$mode" = callgrind ]; then
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "${run[@]}" 2>"$work/meshd.log" & meshd=$!
else
  "${run[@]}" 2>"$work/meshd.log" & meshd=$!
fi
pids+=($meshd)
for _ in $(seq 300); do ss -lun | grep -q 127.0.0.2:18353 && break; sleep 0.1; done
# Warm-up: the 32 sessions open outside the counted window.
"$UDP_LOAD" client 127.0.0.2:18353 32 2 >/dev/null
if [ "$mode" = callgrind ]; then
  callgrind_control -z "$meshd" >/dev/null
  out="$("$UDP_LOAD" client 127.0.0.2:18353 32 "$secs")"
  callgrind_control -d "$meshd" >/dev/null
  total="$(cat "$work"/cg.out.* | awk '/^totals:/{t+=$2} /^summary:/{s+=$2} END{print (s ? s : t)}')"
  echo "instructions: $total"
elif [ "$mode" = ctxsw ]; then
  # Every thread of meshd: /proc/<pid>/status counts the main thread only.
  switches() { cat /proc/"$meshd"/task/*/status | awk '/^voluntary_ctxt/{v+=$2} /^nonvoluntary_ctxt/{n+=$2} END{print v, n}'; }
  ticks() { awk '{print $14 + $15}' /proc/"$meshd"/stat; }
  read -r v0 n0 < <(switches); t0="$(ticks)"
  out="$("$UDP_LOAD" client 127.0.0.2:18353 32 "$secs")"
  read -r v1 n1 < <(switches); t1="$(ticks)"
  n="$(echo "$out" | awk '{print $2}')"
  awk -v v=$((v1 - v0)) -v nv=$((n1 - n0)) -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$n" \
    'BEGIN{printf "voluntary %d (%.3f per exchange), nonvoluntary %d (%.3f per exchange), CPU %.2f us per exchange\n", v, v/n, nv, nv/n, t/hz/n*1e6}'
  total=$((v1 - v0 + n1 - n0))
  echo "context switches: $total"
else
  strace -c -f -p "$meshd" -o "$work/strace" & st=$!
  sleep 0.5
  out="$("$UDP_LOAD" client 127.0.0.2:18353 32 "$secs")"
  kill -INT "$st"; wait "$st" || true
  cat "$work/strace"
  # Sum of the calls column over the syscall rows.
  total="$(awk 'NR>2 && $NF!="total" && $1 ~ /^[0-9.]+$/ {c += ($5 ~ /^[0-9]+$/ && NF==6) ? $4 : $4} END{print c}' "$work/strace")"
  echo "syscalls: $total"
fi
echo "client: $out"
n="$(echo "$out" | awk '{print $2}')"
echo "$mode per exchange: $(awk -v t="$total" -v n="$n" 'BEGIN{printf "%.2f", t/n}')"
