#!/usr/bin/env python3
"""TLS through meshd and through HAProxy, side by side in one run: full TLS
handshakes per second (`openssl s_time -new`) and HTTP/2 over TLS requests
per second (`h2load`), with the same ECDSA P-256 certificate and the same
nginx origin. Same pinning and CPU accounting as proxy_bench.py.

Environment: MODES (default handshake,h2-tls, which run together; memory:
CONNS, default 3000, idle TLS 1.3 HTTP/1.1 keep-alive connections held
through each proxy after one GET each, RSS per connection and after close,
see proxy_memory.py, with SETTLE), DURATION (seconds, default 10), ROUNDS
(default 3), MESHD.
"""

import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import proxy_memory
from proxy_bench import CLK_TCK, children, cpu_ticks, run_h2load, stop_all

ORIGIN = "127.0.0.1:28080"
MESHD, HAPROXY = "127.0.0.2:28443", "127.0.0.3:28443"
ADMIN = "127.0.0.1:28901"


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


class TlsBench:
    """nginx, meshd and HAProxy, the two proxies terminating TLS with the
    same certificate in front of the same origin; proxy_memory's bench
    (`start`, `pids`, `stop`)."""

    meshd_b = None

    def __init__(self, maxconn=4000):
        self.maxconn = maxconn
        self.dir = tempfile.mkdtemp(prefix="palisade-tls-bench-")
        self.procs = []

    def spawn(self, cmd, log):
        p = subprocess.Popen(["taskset", "-c", "1"] + cmd, stdout=open(f"{self.dir}/{log}", "w"),
                             stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def start(self):
        d = self.dir
        cert, key, both = f"{d}/cert.pem", f"{d}/key.pem", f"{d}/both.pem"
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=bench.test",
           "-addext", "subjectAltName=DNS:bench.test,IP:127.0.0.2,IP:127.0.0.3")
        with open(both, "w") as f:
            f.write(open(cert).read() + open(key).read())
        for sub in ["nodes", "tmp"]:
            os.makedirs(f"{d}/{sub}")
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/nginx-error.log;
events {{ worker_connections 8192; }}
http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 300s; client_body_temp_path {d}/tmp;
  proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  server {{ listen {ORIGIN}; location / {{ return 200 "ok\\n"; }} }} }}
""")
        with open(f"{d}/nodes/tls.yaml", "w") as f:
            f.write(f"""apiVersion: palisade/v1
kind: NodeConfig
node: tls
address: 127.0.0.2
generation: 1
revision: tls-1
services:
  - app: /bench/tls
    port: 28443
    protocol: http
    access:
      default_action: deny
      allow:
        - from_cidr: 127.0.0.0/8
    tls: {{cert: {cert}, key: {key}}}
    backends:
      - {{address: {ORIGIN}, task: bench_tls.1}}
""")
        # Idle keep-alive connections live 60 s in both (meshd's default
        # `timeouts.idle`), long enough for the memory mode to hold them.
        with open(f"{d}/haproxy.cfg", "w") as f:
            f.write(f"""global
  nbthread 1
  maxconn {self.maxconn}
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  timeout connect 2s
  timeout client 60s
  timeout server 30s
frontend tls_in
  mode http
  bind {HAPROXY} ssl crt {both} alpn h2,http/1.1
  default_backend origin
backend origin
  mode http
  http-reuse always
  server origin {ORIGIN}
""")
        self.nginx = self.spawn(["nginx", "-c", f"{d}/nginx.conf", "-p", d], "nginx.log")
        self.meshd = self.spawn([os.environ["MESHD"], "run", "--node", "tls", "--config-dir", f"{d}/nodes",
                                 "--admin", ADMIN, "--threads", "1"], "meshd.log")
        self.haproxy = self.spawn(["haproxy", "-db", "-f", f"{d}/haproxy.cfg"], "haproxy.log")
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://{ADMIN}/ready", timeout=1)
                urllib.request.urlopen(f"http://{ORIGIN}/", timeout=1)
                socket.create_connection(HAPROXY.split(":"), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"contenders did not start; logs in {d}")

    def pids(self, who):
        p = {"meshd": self.meshd, "haproxy": self.haproxy}[who]
        return [p.pid] + children(p.pid)

    def stop(self):
        stop_all(self.procs, self.dir)


def memory():
    """CONNS idle TLS 1.3 HTTP/1.1 keep-alive connections through each
    proxy, one GET each: RSS per connection and after close."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols(["http/1.1"])
    conns = int(os.environ.get("CONNS", "3000"))
    os.environ["CONNS"] = str(conns)
    proxy_memory.run(lambda: TlsBench(maxconn=conns + 1000), {"tls": {"meshd": MESHD, "haproxy": HAPROXY}},
                     lambda line: print(line, file=sys.stderr, flush=True),
                     exchanges={"tls": proxy_memory.tls_exchange(context)})


def throughput():
    duration = int(os.environ.get("DURATION", "10"))
    rounds = int(os.environ.get("ROUNDS", "3"))
    bench = TlsBench()
    try:
        bench.start()
        pids = {who: bench.pids(who) for who in ("meshd", "haproxy")}
        addr = {"meshd": MESHD, "haproxy": HAPROXY}
        results = {}
        for rnd in range(rounds):
            order = ["meshd", "haproxy"] if rnd % 2 == 0 else ["haproxy", "meshd"]
            for who in order:
                before = cpu_ticks(pids[who])
                out = subprocess.run(["taskset", "-c", "0", "openssl", "s_time", "-connect", addr[who], "-new",
                                      "-time", str(duration)], capture_output=True, text=True).stdout
                m = re.search(r"(\d+) connections in ([\d.]+)s", out) or re.search(r"(\d+) connections in (\d+) real seconds", out)
                n, secs = int(m.group(1)), float(m.group(2))
                cpu = (cpu_ticks(pids[who]) - before) * 1e6 / CLK_TCK / max(n, 1)
                results.setdefault(("handshake", who), []).append((n / secs, cpu))
                before = cpu_ticks(pids[who])
                r = run_h2load(f"https://{addr[who]}/", duration)
                cpu = (cpu_ticks(pids[who]) - before) * 1e6 / CLK_TCK / max(r["reqs"], 1)
                results.setdefault(("h2-tls", who), []).append((r["rps"], cpu))
                print(f"round {rnd + 1} {who:8} {results[('handshake', who)][-1][0]:8.0f} handshakes/s  "
                      f"{r['rps']:8.0f} h2 req/s", file=sys.stderr, flush=True)
    finally:
        bench.stop()

    print(f"\nMedians of {rounds} alternated rounds, {duration}s each; ECDSA P-256, TLS 1.3 as negotiated.\n")
    print("| mode | meshd | HAProxy | meshd/HAProxy | CPU per op meshd | CPU per op HAProxy |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, unit in [("handshake", "handshakes/s"), ("h2-tls", "req/s")]:
        m = [statistics.median(x[i] for x in results[(mode, "meshd")]) for i in (0, 1)]
        h = [statistics.median(x[i] for x in results[(mode, "haproxy")]) for i in (0, 1)]
        print(f"| {mode} ({unit}) | {m[0]:.0f} | {h[0]:.0f} | **{m[0] / h[0]:.3f}** | {m[1]:.1f} us | {h[1]:.1f} us |")


def main():
    modes = os.environ.get("MODES", "handshake,h2-tls").split(",")
    if "memory" in modes:
        memory()
    if "handshake" in modes or "h2-tls" in modes:
        throughput()


if __name__ == "__main__":
    main()
