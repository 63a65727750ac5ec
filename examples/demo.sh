#!/usr/bin/env bash
# The whole mesh on loopback: render node configs from the sample cluster in
# examples/cluster, start one meshd per node and a sample backend per task,
# print commands to try, and stop everything on Ctrl-C.
#
#   examples/demo.sh          offline: configsrv render from the snapshot
#   examples/demo.sh --live   live: a Marathon simulator runs the sample
#                             cluster, configsrv serve follows it, meshd
#                             long-polls configsrv; scale and kill tasks
#                             through Marathon's API and watch meshd follow;
#                             configsrv scrapes every meshd and serves the
#                             web UI at http://127.0.0.1:9900/
set -euo pipefail
mode="${1:-offline}"

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

echo "demo: building configsrv, meshd and the Marathon simulator" >&2
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

backends=()
backend() { # task-id app address
  mkdir -p "$work/www/$1"
  echo "hello from $2, task $1" >"$work/www/$1/index.html"
  python3 -m http.server 8080 --bind "$3" --directory "$work/www/$1" >"$work/$1.log" 2>&1 &
  pids+=($!)
  backends+=("$3")
}

if [ "$mode" = "--live" ]; then
  # 1. Marathon (simulated) runs the sample cluster; configsrv follows it.
  "$bin/marathon-sim" 127.0.0.1:18088 127.0.0.2,127.0.0.3 127.0.1 examples/cluster/marathon-apps.json \
    2>"$work/marathon-sim.log" &
  pids+=($!)
  for _ in $(seq 1 100); do curl -fs 127.0.0.1:18088/v2/info >/dev/null 2>&1 && break; sleep 0.1; done
  # configsrv scrapes every meshd at <node>:9901 (see step 3) for /v1/apps and /v1/flows.
  "$bin/configsrv" serve --marathon http://127.0.0.1:18088 --mesos http://127.0.0.1:18088 \
    --policies examples/policies --out "$work/nodes" --listen 127.0.0.1:9900 \
    --meshd-admin-port 9901 --scrape-interval 1s 2>"$work/configsrv.log" &
  pids+=($!)
  # 2. A sample backend per task, on the address Marathon gave it.
  while read -r task app ip; do
    backend "$task" "$app" "$ip"
  done < <(curl -fs '127.0.0.1:18088/v2/apps?embed=apps.tasks' | python3 -c '
import json, sys
for a in json.load(sys.stdin)["apps"]:
    for t in a["tasks"]:
        print(t["id"], a["id"], t["ipAddresses"][0]["ipAddress"])')
  config=(--config-url http://127.0.0.1:9900)
else
  # 1. Render: one file per node (the idle agent 127.0.0.4 gets one too).
  "$bin/configsrv" render \
    --marathon-snapshot examples/cluster/marathon-apps.json \
    --mesos-snapshot examples/cluster/mesos-state.json \
    --policies examples/policies \
    --out "$work/nodes"

  # 2. A sample backend per task, on the task's own address.
  backend shop_web.0c5e6a52 /shop/web 127.0.1.1
  backend shop_web.1d7f7b63 /shop/web 127.0.1.2
  backend shop_edge.2e808c74 /shop/edge 127.0.2.1
  backend dev_tool.3f919d85 /dev/tool 127.0.3.1
  config=(--config-dir "$work/nodes")
fi

# 3. One meshd per node: offline each with its own admin port on 127.0.0.1;
# live on its node address, port 9901, as production binds it, so configsrv
# can scrape http://<node>:9901.
admin_port=9901
admins=()
for node in 127.0.0.2 127.0.0.3; do
  extra=()
  admin="127.0.0.1:$admin_port"
  if [ "$mode" = "--live" ]; then
    extra=(--cache-dir "$work/cache-$node")
    admin="$node:9901"
  fi
  admins+=("$admin")
  "$bin/meshd" run --node "$node" "${config[@]}" "${extra[@]}" --admin "$admin" \
    2>"$work/meshd-$node.log" &
  pids+=($!)
  admin_port=$((admin_port + 1))
done

for admin in "${admins[@]}"; do
  for _ in $(seq 1 100); do
    curl -fs "$admin/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "$admin/ready" >/dev/null || { echo "demo: meshd with admin $admin did not become ready; see $work" >&2; exit 1; }
done

# Python takes a moment to listen; the first calls would get 502 before.
for ip in "${backends[@]}"; do
  for _ in $(seq 1 100); do
    curl -fs "$ip:8080/" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

edge=127.0.2.1 tool=127.0.3.1
if [ "$mode" = "--live" ]; then
  ip_of() { curl -fs "127.0.0.1:18088/v2/apps$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["app"]["tasks"][0]["ipAddresses"][0]["ipAddress"])'; }
  edge=$(ip_of /shop/edge) tool=$(ip_of /dev/tool)
fi

cat <<TRY

palisade demo is up: meshd on nodes 127.0.0.2 (admin ${admins[0]}) and
127.0.0.3 (admin ${admins[1]}). Node files are in $work/nodes.

Allowed: /shop/edge (task address $edge) calls /shop/web at its service port:
  curl --interface $edge http://127.0.0.2:10000/

Denied: /dev/tool ($tool) is not on /shop/web's allow-list; meshd answers 403 with the reason:
  curl -i --interface $tool http://127.0.0.2:10000/

HTTP/2 on the same port:
  curl --http2-prior-knowledge --interface $edge http://127.0.0.2:10000/

Allowed by CIDR: the load balancer (127.0.9.0/24) reaches /shop/edge:
  curl --interface 127.0.9.1 http://127.0.0.2:10001/

What meshd sees:
  curl -s ${admins[0]}/status
  curl -s ${admins[0]}/metrics | grep palisade_meshd_connections_total
  tail -f $work/meshd-127.0.0.2.log

$(if [ "$mode" = "--live" ]; then cat <<LIVE
Live cluster: Marathon (simulated) at http://127.0.0.1:18088, configsrv at http://127.0.0.1:9900.
  curl -s 127.0.0.1:9900/v1/status
  curl -s 127.0.0.1:9900/v1/apps       # rates, errors, p50/p90/p99 merged over both nodes
  curl -s 127.0.0.1:9900/v1/flows      # who called whom: allowed, denied, would-be-denied
  curl -s 127.0.0.1:9900/v1/nodes      # every meshd runs the latest generation?
  curl -s 127.0.0.1:9900/v1/policy/proposed   # allow-lists learned from the traffic
  curl -s -X PUT 127.0.0.1:18088/v2/apps/shop/web -H 'content-type: application/json' -d '{"instances": 3}'
  curl -s '${admins[0]}/status' | python3 -m json.tool | grep -c '"task"'     # meshd follows within a second
  (new tasks need a backend on their address to answer; configsrv logs to $work/configsrv.log)

Web UI (apps, service graph, app timing, nodes, policy), refreshing itself:
  http://127.0.0.1:9900/
Make some traffic to see figures and flows (allowed, then denied):
  for i in \$(seq 1 50); do curl -s -o /dev/null --interface $edge http://127.0.0.2:10000/; curl -s -o /dev/null --interface $tool http://127.0.0.2:10000/; done
LIVE
else cat <<OFFLINE
Hot reload: edit examples/cluster/marathon-apps.json or examples/policies, then
  $bin/configsrv render --marathon-snapshot examples/cluster/marathon-apps.json \\
    --mesos-snapshot examples/cluster/mesos-state.json --policies examples/policies --out $work/nodes

The web UI needs the long-running configsrv: run examples/demo.sh --live and open
  http://127.0.0.1:9900/
OFFLINE
fi)

Press Ctrl-C to stop everything.
TRY

wait
