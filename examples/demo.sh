#!/usr/bin/env bash
# The whole mesh on loopback: render node configs from the sample cluster in
# examples/cluster, start one meshd per node and a sample backend per task,
# print commands to try, and stop everything on Ctrl-C.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need python3 || ! need curl; then
  echo "demo: installing python3 and curl" >&2
  if [ "$(id -u)" = 0 ] && need apt-get; then
    apt-get update -qq && apt-get install -y -qq python3 curl >/dev/null
  else
    echo "demo: please install python3 and curl" >&2
    exit 1
  fi
fi

echo "demo: building configsrv and meshd" >&2
cargo build -q --bins
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

work=$(mktemp -d -t palisade-demo.XXXXXX)
pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping" >&2
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  echo "demo: stopped" >&2
}
trap stop INT TERM EXIT

# 1. Render: one file per node (the idle agent 127.0.0.4 gets one too).
"$bin/configsrv" render \
  --marathon-snapshot examples/cluster/marathon-apps.json \
  --mesos-snapshot examples/cluster/mesos-state.json \
  --policies examples/policies \
  --out "$work/nodes"

# 2. A sample backend per task, on the task's own address.
backend() { # task-id app address
  mkdir -p "$work/www/$1"
  echo "hello from $2, task $1" >"$work/www/$1/index.html"
  python3 -m http.server 8080 --bind "$3" --directory "$work/www/$1" >"$work/$1.log" 2>&1 &
  pids+=($!)
}
backend shop_web.0c5e6a52 /shop/web 127.0.1.1
backend shop_web.1d7f7b63 /shop/web 127.0.1.2
backend shop_edge.2e808c74 /shop/edge 127.0.2.1
backend dev_tool.3f919d85 /dev/tool 127.0.3.1

# 3. One meshd per node, each with its own admin port.
admin_port=9901
for node in 127.0.0.2 127.0.0.3; do
  "$bin/meshd" run --node "$node" --config-dir "$work/nodes" --admin "127.0.0.1:$admin_port" \
    2>"$work/meshd-$node.log" &
  pids+=($!)
  admin_port=$((admin_port + 1))
done

for port in 9901 9902; do
  for _ in $(seq 1 100); do
    curl -fs "127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "127.0.0.1:$port/ready" >/dev/null || { echo "demo: meshd on admin port $port did not become ready; see $work" >&2; exit 1; }
done

cat <<TRY

palisade demo is up: meshd on nodes 127.0.0.2 (admin 127.0.0.1:9901) and
127.0.0.3 (admin 127.0.0.1:9902). Node files are in $work/nodes.

Allowed: /shop/edge (task address 127.0.2.1) calls /shop/web at its service port:
  curl --interface 127.0.2.1 http://127.0.0.2:10000/

Denied: /dev/tool (127.0.3.1) is not on /shop/web's allow-list; meshd answers 403 with the reason:
  curl -i --interface 127.0.3.1 http://127.0.0.2:10000/

HTTP/2 on the same port:
  curl --http2-prior-knowledge --interface 127.0.2.1 http://127.0.0.2:10000/

Allowed by CIDR: the load balancer (127.0.9.0/24) reaches /shop/edge:
  curl --interface 127.0.9.1 http://127.0.0.2:10001/

What meshd sees:
  curl -s 127.0.0.1:9901/status
  curl -s 127.0.0.1:9901/metrics | grep palisade_meshd_connections_total
  tail -f $work/meshd-127.0.0.2.log

Hot reload: edit examples/cluster/marathon-apps.json or examples/policies, then
  $bin/configsrv render --marathon-snapshot examples/cluster/marathon-apps.json \\
    --mesos-snapshot examples/cluster/mesos-state.json --policies examples/policies --out $work/nodes

Press Ctrl-C to stop everything.
TRY

wait
