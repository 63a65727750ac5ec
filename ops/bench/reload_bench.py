#!/usr/bin/env python3
"""What a reload of a large cluster's node file costs the requests in flight.

meshd serves a node file of SERVICES services (default 10,000, about 4 MB,
the size configsrv renders for a 10,000-app cluster) plus one bench service
in front of nginx. One client (wrk -c1, on core 0) measures that service
for DURATION seconds, once quiet and once while the file is rewritten every
INTERVAL seconds with a newer generation and changed backends, so that
every rewrite is parsed, validated, compiled and swapped. The peer is
HAProxy as marathon-lb runs it: the same services as frontends and
backends, its config rewritten and the master-worker process reloaded
(SIGUSR2) at every change; a new worker parses the config while the old
one finishes its requests. The proxies and nginx share core 1, as in
proxy_bench.py. With MESHD_B, a second meshd build runs beside the first
(127.0.0.4), for A/B comparisons.

Environment: MESHD, MESHD_B (optional), SERVICES (10000), DURATION (10),
INTERVAL (1.0), ROUNDS (3).
"""

import os
import re
import signal
import statistics
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import (  # noqa: E402
    NGINX_CONF, ORIGIN, Bench, children, log, merge_histograms, percentile, run_wrk,
)

# (contender, address, meshd's admin address or None for HAProxy)
CONTENDERS = [("meshd", "127.0.0.2", "127.0.0.1:19901"), ("haproxy", "127.0.0.3", None)]
if os.environ.get("MESHD_B"):
    CONTENDERS.insert(1, ("meshd_b", "127.0.0.4", "127.0.0.1:19902"))
BENCH_PORT = 18100


def task_address(a, t, generation):
    ip = 10 + a * 3 + t
    return f"127.{100 + ip // 65000}.{(ip // 250) % 250}.{1 + ip % 250}:{8080 + generation % 2}"


def haproxy_cfg(address, services, generation):
    """The same services for HAProxy, as marathon-lb would write them: one
    frontend and one backend per service port, the allow-list as an ACL."""
    out = [
        "global", "  nbthread 1", "  maxconn 4000",
        "defaults", "  mode http", "  timeout connect 2s", "  timeout client 30s", "  timeout server 30s",
        "frontend bench", f"  bind {address}:{BENCH_PORT}",
        "  http-request deny unless { src 127.0.0.0/8 }", "  default_backend bench",
        "backend bench", "  http-reuse always", f"  server origin {ORIGIN}",
    ]
    for a in range(services):
        out += [f"frontend app{a}", f"  bind {address}:{20000 + a}",
                "  http-request deny unless { src 10.0.0.0/8 }", f"  default_backend app{a}",
                f"backend app{a}", "  balance roundrobin"]
        out += [f"  server t{t} {task_address(a, t, generation)}" for t in range(3)]
    return "\n".join(out) + "\n"


def node_file(address, services, generation):
    """A node file with `services` services besides the bench service; the
    other services' backends (never connected to) move with the generation,
    so every generation is a real change."""
    out = [
        "apiVersion: palisade/v1", "kind: NodeConfig", "node: bench", f"address: {address}",
        f"generation: {generation}", f"revision: reload-{generation}", "services:",
        "  - app: /bench/http", f"    port: {BENCH_PORT}", "    protocol: http", "    balance: round_robin",
        "    access:", "      default_action: deny", "      allow:", "        - from_cidr: 127.0.0.0/8",
        "    backends:", f"      - {{address: '{ORIGIN}', task: bench_http.1}}",
    ]
    for a in range(services):
        out += [
            f"  - app: /bench/group{a % 50}/app{a}", f"    port: {20000 + a}", "    protocol: http",
            "    balance: round_robin", "    access:", "      policy: /bench/*", "      default_action: deny",
            "      allow:", "        - from: /bench/*", "        - from_cidr: 10.0.0.0/8", "    backends:",
        ]
        out += [f"      - {{address: '{task_address(a, t, generation)}', task: app{a}.{t:08x}}}" for t in range(3)]
    out.append("identities: []")
    return "\n".join(out) + "\n"


def write_atomically(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def reloads_applied(admin):
    text = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
    m = re.search(r"^palisade_meshd_reloads_total (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def wait_generation(admin, generation, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            status = urllib.request.urlopen(f"http://{admin}/status", timeout=5).read().decode()
            if re.search(rf'"generation":\s*{generation}\b', status):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"meshd at {admin} did not apply generation {generation}")


class ReloadBench(Bench):
    """nginx, HAProxy, and one or two meshd, each with its own node directory."""

    def start(self, services):
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"]:
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, origin=ORIGIN))
        self.nginx = self.spawn("nginx", ["nginx", "-c", os.path.join(self.dir, "nginx.conf"), "-p", self.dir])
        self.files, self.generation, self.children = {}, {}, {}
        for who, address, admin in CONTENDERS:
            self.generation[who] = 1
            if admin is None:
                self.files[who] = os.path.join(self.dir, "haproxy.cfg")
                write_atomically(self.files[who], haproxy_cfg(address, services, 1))
                # Master-worker mode: SIGUSR2 to the master reloads, as marathon-lb does.
                self.children[who] = self.spawn(who, ["haproxy", "-W", "-db", "-f", self.files[who]])
                continue
            nodes = os.path.join(self.dir, f"nodes-{who}")
            os.makedirs(nodes)
            self.files[who] = os.path.join(nodes, "bench.yaml")
            write_atomically(self.files[who], node_file(address, services, 1))
            binary = os.environ["MESHD_B"] if who == "meshd_b" else self.meshd_bin
            self.children[who] = self.spawn(who, [binary, "run", "--node", "bench", "--config-dir", nodes,
                                                  "--admin", admin, "--threads", "1"])
        for who, address, admin in CONTENDERS:
            if admin:
                wait_generation(admin, 1)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                for _, address, _ in CONTENDERS:
                    urllib.request.urlopen(f"http://{address}:{BENCH_PORT}/", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"contenders did not start; logs in {self.dir}")


def measure(bench, who, address, admin, services, duration, interval, reloading):
    stop = threading.Event()
    written = []

    def rewrite():
        while not stop.wait(interval):
            bench.generation[who] += 1
            if admin is None:
                write_atomically(bench.files[who], haproxy_cfg(address, services, bench.generation[who]))
                bench.children[who].send_signal(signal.SIGUSR2)
            else:
                write_atomically(bench.files[who], node_file(address, services, bench.generation[who]))
            written.append(bench.generation[who])

    before = reloads_applied(admin) if admin else 0
    writer = threading.Thread(target=rewrite) if reloading else None
    if writer:
        writer.start()
    try:
        r = run_wrk(f"http://{address}:{BENCH_PORT}/", 1, duration, histogram=True)
    finally:
        stop.set()
        if writer:
            writer.join()
    if admin is None:
        # HAProxy reports no reload count; each signal is one reload. The
        # next run starts once the old workers are gone and the new one is
        # up, as meshd's starts once the last generation is applied.
        r["reloads"] = len(written)
        deadline = time.time() + 60
        while len(children(bench.children[who].pid)) > 1 and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        return finish(r)
    if written:
        wait_generation(admin, written[-1])
    r["reloads"] = reloads_applied(admin) - before
    return finish(r)


def finish(r):
    r["max"] = float(max(r["hist"]))
    return r


def main():
    services = int(os.environ.get("SERVICES", "10000"))
    duration = int(os.environ.get("DURATION", "10"))
    interval = float(os.environ.get("INTERVAL", "1.0"))
    rounds = int(os.environ.get("ROUNDS", "3"))
    bench = ReloadBench(os.environ["MESHD"])
    results = {}
    try:
        log(f"writing {len(CONTENDERS)} node files of {services} services and starting meshd")
        bench.start(services)
        size_mb = os.path.getsize(bench.files["meshd"]) / 1e6
        log(f"node file: {size_mb:.1f} MB")
        for rnd in range(rounds):
            order = CONTENDERS if rnd % 2 == 0 else list(reversed(CONTENDERS))
            for reloading in (False, True):
                for who, address, admin in order:
                    r = measure(bench, who, address, admin, services, duration, interval, reloading)
                    kind = "reloading" if reloading else "quiet"
                    log(f"round {rnd + 1} {who:8} {kind:9} {r['rps']:>8.0f} req/s  p50 {r['p50']:>6.0f}us  "
                        f"p99 {percentile(r['hist'], 0.99):>7.0f}us  p99.9 {percentile(r['hist'], 0.999):>7.0f}us  "
                        f"max {r['max']:>8.0f}us  reloads {r['reloads']}  failed {r['failed']}")
                    results.setdefault((who, kind), []).append(r)
    finally:
        bench.stop()

    print(f"\nOne connection (wrk -c1) to one service of a node file with {services} others "
          f"({size_mb:.1f} MB); "
          f"{rounds} alternated rounds of {duration}s; reloading = the file rewritten every {interval:g}s. "
          f"Percentiles pooled over all rounds' samples; max is the median of the rounds' maxima.\n")
    print("| contender | while | req/s | p50 | p99 | p99.9 | max | reloads applied | failed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for who, _, _ in CONTENDERS:
        for kind in ("quiet", "reloading"):
            runs = results[(who, kind)]
            pooled = merge_histograms(r["hist"] for r in runs)
            print(f"| {who} | {kind} | {statistics.median(r['rps'] for r in runs):.0f} | "
                  f"{percentile(pooled, 0.5):.0f} us | {percentile(pooled, 0.99):.0f} us | "
                  f"{percentile(pooled, 0.999):.0f} us | {statistics.median(r['max'] for r in runs):.0f} us | "
                  f"{sum(r['reloads'] for r in runs)} | {sum(r['failed'] for r in runs)} |")


if __name__ == "__main__":
    main()
