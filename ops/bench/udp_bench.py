#!/usr/bin/env python3
"""meshd against nginx's stream module, both proxying UDP, on loopback.

The same origin (udp-load echo) and the same client (udp-load client: 32
sessions, each a socket of its own sending one datagram and waiting for the
answer) go through meshd and through nginx (`stream` module, one worker
process, sessions kept for the run). meshd runs one worker thread with its
allow-list on (a CIDR allow and a deny rule). The client is pinned to core
0; origin and proxy share core 1, and each proxy's CPU per exchange is read
from /proc. Contenders alternate round by round; medians are reported.

Environment: DURATION (seconds per round, default 10), ROUNDS (default 3),
SESSIONS (default 32), SIZE (payload bytes, default 64), MESHD, UDP_LOAD,
and MESHD_B: a second meshd binary (e.g. the one before a change), run as
the contender `meshd_b` on 127.0.0.4 with the same config, alternating with
the others in the same rounds, for A/B on a machine too noisy for runs
compared across time.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import CLK_TCK, children, cpu_ticks, log, stop_all  # noqa: E402

ORIGIN = "127.0.0.1:18254"
MESHD_UDP, NGINX_UDP = "127.0.0.2:18253", "127.0.0.3:18253"
MESHD_ADMIN = "127.0.0.1:19903"
MESHD_B_UDP, MESHD_B_ADMIN = "127.0.0.4:18253", "127.0.0.1:19904"

NGINX_CONF = """
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 8192; }}
stream {{
  server {{
    listen {listen} udp;
    proxy_pass {origin};
    proxy_timeout 60s;
  }}
}}
"""

NODE_CONFIG = """apiVersion: palisade/v1
kind: NodeConfig
node: bench
address: {address}
generation: 1
revision: bench-udp-1
services:
  - app: /bench/udp
    port: 18253
    protocol: udp
    access:
      default_action: deny
      allow:
        - from_cidr: 127.0.0.0/8
      deny:
        - from_cidr: 127.0.99.0/24
    backends:
      - {{address: {origin}, task: bench_udp.1}}
identities: []
"""


def wait_udp(addr, deadline=10.0):
    """Polls until an exchange through `addr` is answered."""
    import socket
    host, port = addr.rsplit(":", 1)
    end = time.time() + deadline
    while time.time() < end:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        try:
            s.sendto(b"ping", (host, int(port)))
            s.recvfrom(64)
            return
        except OSError:
            time.sleep(0.1)
        finally:
            s.close()
    raise RuntimeError(f"nothing answers UDP at {addr}")


def run_client(target, sessions, duration, size):
    out = subprocess.run(
        ["taskset", "-c", "0", os.environ["UDP_LOAD"], "client", target, str(sessions), str(duration), str(size)],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    n, lost, secs = int(out[1]), int(out[3]), float(out[5])
    return n / secs, n, lost


def main():
    duration = int(os.environ.get("DURATION", "10"))
    rounds = int(os.environ.get("ROUNDS", "3"))
    sessions = int(os.environ.get("SESSIONS", "32"))
    size = int(os.environ.get("SIZE", "64"))
    work = tempfile.mkdtemp(prefix="palisade-udp-bench-")
    procs = []

    def start(args, **kw):
        p = subprocess.Popen(["taskset", "-c", "1"] + args, **kw)
        procs.append(p)
        return p

    try:
        start([os.environ["UDP_LOAD"], "echo", ORIGIN])
        os.makedirs(f"{work}/nodes")
        with open(f"{work}/nodes/bench.yaml", "w") as f:
            f.write(NODE_CONFIG.format(origin=ORIGIN, address="127.0.0.2"))
        with open(f"{work}/nginx.conf", "w") as f:
            f.write(NGINX_CONF.format(dir=work, listen=NGINX_UDP, origin=ORIGIN))
        meshd = start([os.environ["MESHD"], "run", "--node", "bench", "--config-dir", f"{work}/nodes",
                       "--admin", MESHD_ADMIN, "--threads", "1"],
                      stderr=open(f"{work}/meshd.log", "w"))
        nginx = start(["nginx", "-c", f"{work}/nginx.conf", "-p", work],
                      stderr=open(f"{work}/nginx.log", "w"))
        meshd_b = None
        if os.environ.get("MESHD_B"):
            os.makedirs(f"{work}/nodes_b")
            with open(f"{work}/nodes_b/bench.yaml", "w") as f:
                f.write(NODE_CONFIG.format(origin=ORIGIN, address="127.0.0.4"))
            meshd_b = start([os.environ["MESHD_B"], "run", "--node", "bench", "--config-dir", f"{work}/nodes_b",
                             "--admin", MESHD_B_ADMIN, "--threads", "1"],
                            stderr=open(f"{work}/meshd_b.log", "w"))
        wait_udp(ORIGIN)
        wait_udp(MESHD_UDP)
        wait_udp(NGINX_UDP)
        contenders = {
            "meshd": (MESHD_UDP, lambda: [meshd.pid]),
            # The master only forks; the worker carries every datagram.
            "nginx": (NGINX_UDP, lambda: [nginx.pid] + children(nginx.pid)),
        }
        if meshd_b:
            wait_udp(MESHD_B_UDP)
            contenders["meshd_b"] = (MESHD_B_UDP, lambda: [meshd_b.pid])
        results = {name: [] for name in contenders}
        for r in range(rounds):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                target, pids = contenders[name]
                before, kernel_before = cpu_ticks(pids()), cpu_ticks(pids(), kernel_only=True)
                rate, n, lost = run_client(target, sessions, duration, size)
                cpu_s = (cpu_ticks(pids()) - before) / CLK_TCK
                us = cpu_s / n * 1e6 if n else float("nan")
                # The kernel's share: the loopback path of every datagram,
                # which no batching in user space takes away.
                kernel_us = (cpu_ticks(pids(), kernel_only=True) - kernel_before) / CLK_TCK / n * 1e6 if n else float("nan")
                results[name].append((rate, us, lost, kernel_us))
                log(f"round {r + 1} {name}: {rate:,.0f} exchanges/s, {us:.2f} us CPU each "
                    f"(kernel {kernel_us:.2f}), {lost} lost")
        med = {name: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
                      sum(x[2] for x in v)) for name, v in results.items()}
        kernel = {name: statistics.median(x[3] for x in v) for name, v in results.items()}
        base_rate, base_us, _ = med["nginx"]
        print(f"UDP request/response, {sessions} sessions, {size}-byte datagrams, "
              f"medians of {rounds} alternated rounds of {duration}s")
        print(f"{'proxy':<8} {'exchanges/s':>12} {'us CPU/exchange':>16} {'x nginx rate':>13} {'x nginx CPU':>12} {'lost':>6}")
        for name, (rate, us, lost) in med.items():
            print(f"{name:<8} {rate:>12,.0f} {us:>16.2f} {rate / base_rate:>13.2f} {us / base_us:>12.2f} {lost:>6}")
        print("kernel us CPU/exchange: " + ", ".join(f"{name} {kernel[name]:.2f} ({kernel[name] / med[name][1]:.2f} of its CPU)"
                                                    for name in med))
    finally:
        stop_all(procs, work)


if __name__ == "__main__":
    main()
