#!/usr/bin/env bash
# meshd against HAProxy and a direct baseline, on loopback, in one invocation.
#
#   ops/bench/proxy.sh                                   # every mode, 10s runs, 3 rounds
#   MODES=tcp,http1,latency DURATION=5s ROUNDS=3 ops/bench/proxy.sh
#   ops/bench/proxy.sh --modes h2 --duration 5s --rounds 1
#
# The same origin (nginx, one worker) and the same clients (wrk, h2load) run
# directly, through meshd and through HAProxy; contenders alternate their
# order round by round and medians are printed, because this 2-core machine
# is 10-15% noisy between runs. Clients run on core 0; origin and proxy share
# core 1, so each proxy's CPU per request is read from /proc/<pid>/stat
# rather than guessed from throughput. Each proxy runs one worker thread.
#
# The script installs the tools (Debian packages) when missing, builds meshd
# in release mode (MESHD=/path/to/meshd skips the build), writes every config
# into a temp dir, starts origin, meshd and HAProxy, and hands the measuring
# to ops/bench/proxy_bench.py. A trap stops everything it started (by PID)
# and removes the temp dir on exit, on failure and on Ctrl-C.
#
# Loopback only: origin 127.0.0.1:18080; meshd 127.0.0.2:18100 (http:
# HTTP/1.1 and h2c on one port) and :18101 (tcp), admin 127.0.0.1:19901;
# HAProxy 127.0.0.3:18100 (http), :18102 (h2c), :18101 (tcp).
set -euo pipefail

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  echo "Env or flags: MODES (--modes) from http1,h2,tcp,latency; DURATION (--duration, default 10s);"
  echo "ROUNDS (--rounds, default 3); MESHD (a meshd binary; skips the build)."
  echo "On a shared machine: QUIET_WAIT (s to wait for others to go quiet before a run, default 60),"
  echo "NOISY (% of a core others may use during a run, default 10), RETRIES (repeats of a noisy run, default 2)."
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --modes) MODES="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
export MODES="${MODES:-http1,h2,tcp,latency}"
export DURATION="${DURATION:-10s}"
export ROUNDS="${ROUNDS:-3}"

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

log() { echo "bench: $*" >&2; }

# --- tools -------------------------------------------------------------------
# command -v first, so that a second run never touches apt.
packages=()
command -v wrk >/dev/null 2>&1 || packages+=(wrk)
command -v h2load >/dev/null 2>&1 || packages+=(nghttp2-client)
command -v haproxy >/dev/null 2>&1 || packages+=(haproxy)
command -v nginx >/dev/null 2>&1 || packages+=(nginx)
command -v curl >/dev/null 2>&1 || packages+=(curl)
command -v taskset >/dev/null 2>&1 || packages+=(util-linux)
command -v ss >/dev/null 2>&1 || packages+=(iproute2)
command -v python3 >/dev/null 2>&1 || packages+=(python3)
if [[ ${#packages[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing ${packages[*]}; run as root to install them with apt-get"
    exit 1
  fi
  apt-get update
  # nginx-light is the smallest nginx Debian ships; newer releases dropped it.
  for i in "${!packages[@]}"; do
    if [[ ${packages[$i]} == nginx ]] && apt-cache show nginx-light >/dev/null 2>&1; then
      packages[i]=nginx-light
    fi
  done
  log "installing ${packages[*]}"
  # Debian starts the packaged nginx and HAProxy on their default ports; this
  # benchmark runs its own copies on other ports and leaves those alone.
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
fi

# --- meshd -------------------------------------------------------------------
if [[ -z ${MESHD:-} ]]; then
  log "building meshd (cargo build --release -p meshd)"
  cargo build --release -q -p meshd
  target_dir="${CARGO_TARGET_DIR:-target}"
  [[ $target_dir == /* ]] || target_dir="$root/$target_dir"
  MESHD="$target_dir/release/meshd"
fi
[[ -x $MESHD ]] || { log "no meshd binary at $MESHD"; exit 1; }
export MESHD

# --- refuse to share ports ---------------------------------------------------
# A leftover or foreign listener would be measured instead of ours.
busy=$(ss -Hltn | awk '{print $4}' |
  grep -E '^((127\.0\.0\.1|0\.0\.0\.0|\*|\[::\]):(18080|19901)|(127\.0\.0\.[23]|0\.0\.0\.0|\*|\[::\]):1810[0-2])$' || true)
if [[ -n $busy ]]; then
  log "ports already in use: $(echo $busy)"
  exit 1
fi

# --- temp dir and cleanup ----------------------------------------------------
work=$(mktemp -d /tmp/palisade-bench.XXXXXX)
export BENCH_DIR="$work"
declare -A pid_of=() # name -> PID of every long-running child this script started

alive() {
  # A zombie still answers kill -0, so read the state from /proc.
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

stop_children() {
  local name pid any
  for pid in "${pid_of[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Bounded: 5 s for a graceful exit, then SIGKILL.
  for _ in $(seq 50); do
    any=0
    for pid in "${pid_of[@]}"; do alive "$pid" && any=1; done
    [[ $any -eq 0 ]] && break
    sleep 0.1
  done
  for name in "${!pid_of[@]}"; do
    pid=${pid_of[$name]}
    if alive "$pid"; then
      log "$name ($pid) outlived SIGTERM by 5 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  pid_of=()
}

show_meshd_log() {
  [[ -s $work/meshd.log ]] || return 0
  log "last 30 lines of meshd's log:"
  tail -n 30 "$work/meshd.log" | sed 's/^/  meshd| /' >&2
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  stop_children
  # On a failure (not on Ctrl-C or SIGTERM), meshd's log may say why.
  if [[ $rc -ne 0 && $rc -ne 130 && $rc -ne 143 ]]; then show_meshd_log; fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'exit 143' TERM HUP

# --- configs -----------------------------------------------------------------
# Origin: one nginx worker, with keep-alive that never closes a busy
# connection (nginx's default closes after 1000 requests, which would add
# connects to every contender). /probe echoes the headers a proxy adds, so we
# can tell whether meshd speaks HTTP on its http port or only forwards bytes.
mkdir -p "$work/nginx" "$work/nodes"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  default_type text/plain;
  server {
    listen 127.0.0.1:18080;
    location / { return 200 "ok\n"; }
    location = /probe { return 200 "xff=\$http_x_forwarded_for rid=\$http_x_request_id\n"; }
  }
}
EOF

# meshd: a node config written by hand, in a directory of its own (meshd
# watches the directory; logs written next to the file would wake the watch).
cat >"$work/nodes/bench.yaml" <<'EOF'
apiVersion: palisade/v1
kind: NodeConfig
node: bench
address: 127.0.0.2
generation: 1
revision: bench-1
services:
  - app: /bench/origin
    port: 18100
    protocol: http
    balance: round_robin
    access:
      default_action: deny
      allow:
        - from_cidr: 127.0.0.0/8
    backends:
      - address: 127.0.0.1:18080
        task: bench_origin.1
  - app: /bench/origin-tcp
    port: 18101
    protocol: tcp
    balance: round_robin
    access:
      default_action: deny
      allow:
        - from_cidr: 127.0.0.0/8
    backends:
      - address: 127.0.0.1:18080
        task: bench_origin_tcp.1
identities: []
EOF
"$MESHD" check "$work/nodes/bench.yaml" >&2

# HAProxy: one thread, keep-alive on both sides, server connections shared
# across clients (http-reuse always), as meshd's pool does. maxconn is high
# but within the hard fd limit (HAProxy needs about two fds per connection and
# refuses to start otherwise).
fd_limit=$(ulimit -Hn)
[[ $fd_limit == unlimited ]] && fd_limit=1048576
maxconn=$(((fd_limit - 100) / 2))
[[ $maxconn -gt 8000 ]] && maxconn=8000
cat >"$work/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $maxconn
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend http_in
  mode http
  bind 127.0.0.3:18100
  bind 127.0.0.3:18102 proto h2
  default_backend origin_http
backend origin_http
  mode http
  http-reuse always
  server origin 127.0.0.1:18080
frontend tcp_in
  mode tcp
  bind 127.0.0.3:18101
  default_backend origin_tcp
backend origin_tcp
  mode tcp
  server origin 127.0.0.1:18080
EOF
haproxy -c -q -f "$work/haproxy.cfg" >&2

# --- start, pinned to core 1 -------------------------------------------------
# taskset execs the program, so $! is the server's own PID.
taskset -c 1 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" \
  -g 'daemon off;' >"$work/nginx.log" 2>&1 &
pid_of[nginx]=$!
# JSON logs: text logs would carry ANSI colours into the file. A short drain
# deadline keeps the exit quick; nothing is in flight when we stop it.
taskset -c 1 "$MESHD" --log-format json run --node bench --config-dir "$work/nodes" \
  --admin 127.0.0.1:19901 --threads 1 --bind 127.0.0.2 --drain-deadline 1s >"$work/meshd.log" 2>&1 &
pid_of[meshd]=$!
taskset -c 1 haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pid_of[haproxy]=$!
export NGINX_PID=${pid_of[nginx]} MESHD_PID=${pid_of[meshd]} HAPROXY_PID=${pid_of[haproxy]}

# Bounded wait (10 s) until all three answer.
ready=0
for _ in $(seq 100); do
  if curl -fs -o /dev/null --max-time 1 http://127.0.0.1:19901/ready &&
    curl -fs -o /dev/null --max-time 1 http://127.0.0.1:18080/ &&
    curl -fs -o /dev/null --max-time 1 http://127.0.0.3:18100/; then
    ready=1
    break
  fi
  for name in "${!pid_of[@]}"; do
    if ! alive "${pid_of[$name]}"; then
      log "$name exited at startup; its log:"
      cat "$work/$name.log" >&2
      exit 1
    fi
  done
  sleep 0.1
done
if [[ $ready -ne 1 ]]; then
  log "not ready after 10 s (meshd /ready, origin, HAProxy)"
  exit 1
fi

# --- what meshd does on its http port today ----------------------------------
# The origin's /probe shows X-Forwarded-For only when a proxy parsed the request.
probe=$(curl -fs --max-time 2 http://127.0.0.2:18100/probe || echo error)
case "$probe" in
  xff=127.*) MESHD_HTTP_PATH="HTTP/1.1 parsed and proxied (L7: the origin saw X-Forwarded-For)" ;;
  xff=*) MESHD_HTTP_PATH="bytes forwarded (L4: the origin saw no X-Forwarded-For)" ;;
  *) MESHD_HTTP_PATH="no answer on 127.0.0.2:18100" ;;
esac
if curl -fs -o /dev/null --max-time 2 --http2-prior-knowledge http://127.0.0.2:18100/; then
  MESHD_H2C="h2c prior knowledge answered"
else
  MESHD_H2C="h2c prior knowledge failed"
fi
export MESHD_HTTP_PATH MESHD_H2C
log "meshd's http port: $MESHD_HTTP_PATH; $MESHD_H2C"

# --- measure -----------------------------------------------------------------
# In the background, so that Ctrl-C reaches our trap at once rather than after
# the current run; the helper stops its own wrk/h2load on SIGTERM.
python3 "$root/ops/bench/proxy_bench.py" &
pid_of[measure]=$!
rc=0
wait "${pid_of[measure]}" || rc=$?
unset 'pid_of[measure]'
if ! alive "$MESHD_PID"; then
  log "meshd exited during the run"
  show_meshd_log
fi
exit "$rc"
