#!/usr/bin/env python3
"""meshd against HAProxy (and a direct baseline) on loopback, in one run.

The same origin (nginx, one worker) and the same clients (wrk for HTTP/1.1
and TCP, h2load for HTTP/2) hit the origin directly, through meshd and
through HAProxy. Each proxy runs one worker thread. The load generator is
pinned to core 0; origin and proxy share core 1, so a proxy's CPU per
request is read from /proc rather than inferred from throughput. Contenders
alternate round by round and medians are reported, because this machine's
noise is 10-15% between runs.

Environment: MODES (http1,h2,tcp,latency; also http1_1m and tcp_1m, or
bulk for both: a 1 MiB response per request over HTTP/1.1 keep-alive and
through the TCP-mode port, wrk -c BULK_CONNS (default 8), reported as MiB/s
and CPU per MiB; also h2rate: h2 at a fixed rate of
H2_RPS, default 2000, requests/s per client; memory: RSS per idle connection
and after close, see proxy_memory.py, run once before the other modes, with
CONNS and SETTLE; every kind on freshly started proxies), DURATION (seconds, default 10),
ROUNDS (default 3), SLICES (default 5: how many slices each latency round is
cut into, see below), MESHD (path to a release meshd binary), MESHD_B
(optional: a second meshd build, run beside the first as contender `meshd_b`
on 127.0.0.4, to compare two builds in one run).

The single-connection (latency) mode's p99 is set by this machine's stalls
(idle-vCPU wake-ups, kernel threads), which come in bursts lasting seconds.
So each latency round is cut into SLICES short runs that alternate the
contenders, and the p50/p99 reported for that mode come from the pooled
histogram of every sample of every round (wrk's own, via wrk_histogram.lua),
not from a median of per-round percentiles. Even so, that p99 drifts by more
than the proxies differ, so each latency round also runs `latency-pair`
(LATENCY_PAIR, default: beside MESHD; built by proxy.sh) for DURATION
seconds: one client, one connection per contender, the contenders taking
turns request by request, so that every stall lands on all of them alike.
"""

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_memory  # noqa: E402

ORIGIN = "127.0.0.1:18080"
MESHD_HTTP, MESHD_TCP = "127.0.0.2:18100", "127.0.0.2:18101"
HAPROXY_HTTP, HAPROXY_TCP, HAPROXY_H2 = "127.0.0.3:18100", "127.0.0.3:18101", "127.0.0.3:18102"
MESHD_ADMIN = "127.0.0.1:19901"
MESHD_B_HTTP, MESHD_B_TCP, MESHD_B_ADMIN = "127.0.0.4:18100", "127.0.0.4:18101", "127.0.0.1:19902"
CLK_TCK = os.sysconf("SC_CLK_TCK")

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen {origin};
    location / {{ return 200 "ok\\n"; }}
    # The bulk modes' 1 MiB response, written by Bench.start.
    location = /1m {{ sendfile on; default_type application/octet-stream; alias {dir}/1m.bin; }}
  }}
}}
"""

# Every meshd feature stays on: allow-list with a CIDR rule and a deny rule,
# health-aware balancing, retries budget, timing histograms, metrics.
NODE_CONFIG = """apiVersion: palisade/v1
kind: NodeConfig
node: bench
address: 127.0.0.2
generation: 1
revision: bench-1
services:
  - app: /bench/http
    port: 18100
    protocol: http
    balance: round_robin
    access:
      default_action: deny
      allow:
        - from_cidr: 127.0.0.0/8
      deny:
        - from_cidr: 127.0.99.0/24
    backends:
      - {{address: {origin}, task: bench_http.1}}
  - app: /bench/tcp
    port: 18101
    protocol: tcp
    access:
      default_action: deny
      allow:
        - from_cidr: 127.0.0.0/8
    backends:
      - {{address: {origin}, task: bench_tcp.1}}
identities: []
"""

HAPROXY_CFG = """
global
  nbthread 1
  maxconn {maxconn}
defaults
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend http_in
  mode http
  bind {http}
  bind {h2} proto h2
  default_backend http_origin
backend http_origin
  mode http
  http-reuse always
  server origin {origin}
frontend tcp_in
  mode tcp
  bind {tcp}
  default_backend tcp_origin
backend tcp_origin
  mode tcp
  server origin {origin}
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cpu_ticks(pids, kernel_only=False):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces: split after its closing paren.
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[12]) if kernel_only else int(fields[11]) + int(fields[12])  # utime, stime
    return total


def wakeups(pids):
    """Voluntary context switches: how often the processes went to sleep
    (for nginx, how often it ran out of requests and waited in epoll)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def children(pid):
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]
    except OSError:
        return []


def parse_duration_us(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


# h2rate: requests per second per h2load client (32 clients); 2000 offers
# 64,000 requests/s, about 80% of HAProxy's h2 capacity on this machine.
H2_RPS = int(os.environ.get("H2_RPS", "2000"))

HISTOGRAM_LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk_histogram.lua")


def percentile(hist, q):
    """The q-quantile of a {microseconds: count} histogram."""
    total = sum(hist.values())
    rank, seen = q * total, 0
    for us in sorted(hist):
        seen += hist[us]
        if seen >= rank:
            return float(us)
    return float("nan")


def run_wrk(url, conns, duration, histogram=False):
    script = ["-s", HISTOGRAM_LUA] if histogram else []
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency"] + script + [url],
        capture_output=True, text=True, check=False,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(errors.group(1)) if errors else 0) + (sum(map(int, sock.groups())) if sock else 0)
    p50 = parse_duration_us(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = parse_duration_us(re.search(r"\s99%\s+(\S+)", out).group(1))
    r = {"rps": rps, "reqs": reqs, "p50": p50, "p99": p99, "failed": failed}
    if histogram:
        line = re.search(r"^latency-histogram (.*)$", out, re.M)
        if not line:
            raise RuntimeError(f"wrk printed no latency histogram: {out[-400:]}")
        r["hist"] = {int(us): int(n) for us, n in (pair.split(":") for pair in line.group(1).split())}
    return r


def run_h2load(url, duration, rps=None):
    # h2load prints no percentiles; its per-request log gives exact ones.
    rate = [f"--rps={rps}"] if rps else []
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as logf:
        out = subprocess.run(
            ["taskset", "-c", "0", "h2load", "-c32", "-m10", "-t1", "-D", str(duration),
             f"--log-file={logf.name}"] + rate + [url],
            capture_output=True, text=True, check=False,
        ).stdout
        m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
        if not m:
            raise RuntimeError(f"h2load failed: {out[-400:]}")
        reqs = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored", out)
        with open(logf.name) as f:
            durations = sorted(int(line.split("\t")[2]) for line in f if line.count("\t") >= 2)
    if not durations:
        raise RuntimeError("h2load wrote no per-request log")
    pct = lambda q: float(durations[min(len(durations) - 1, int(q * len(durations)))])
    return {
        "rps": float(m.group(1)),
        "reqs": int(reqs.group(2)),
        "p50": pct(0.50),
        "p99": pct(0.99),
        "failed": int(reqs.group(3)) + int(reqs.group(4)),
    }


class Bench:
    def __init__(self, meshd, maxconn=4000):
        self.dir = tempfile.mkdtemp(prefix="palisade-bench-")
        self.maxconn = maxconn
        self.procs = []
        self.meshd_bin = meshd

    def spawn(self, name, cmd):
        logf = open(os.path.join(self.dir, f"{name}.log"), "w")
        p = subprocess.Popen(["taskset", "-c", "1"] + cmd, stdout=logf, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def start(self):
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi", "nodes"]:
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, origin=ORIGIN))
        with open(os.path.join(self.dir, "1m.bin"), "wb") as f:
            f.write(os.urandom(MIB))
        # nginx's worker drops root: it must be able to read the file.
        os.chmod(self.dir, 0o755)
        with open(os.path.join(self.dir, "nodes", "bench.yaml"), "w") as f:
            f.write(NODE_CONFIG.format(origin=ORIGIN))
        with open(os.path.join(self.dir, "haproxy.cfg"), "w") as f:
            f.write(HAPROXY_CFG.format(http=HAPROXY_HTTP, h2=HAPROXY_H2, tcp=HAPROXY_TCP, origin=ORIGIN,
                                       maxconn=self.maxconn))
        self.nginx = self.spawn("nginx", ["nginx", "-c", os.path.join(self.dir, "nginx.conf"), "-p", self.dir])
        self.meshd = self.spawn("meshd", [self.meshd_bin, "run", "--node", "bench", "--config-dir",
                                          os.path.join(self.dir, "nodes"), "--admin", MESHD_ADMIN, "--threads", "1"])
        self.meshd_b = None
        if os.environ.get("MESHD_B"):
            os.makedirs(os.path.join(self.dir, "nodes_b"), exist_ok=True)
            with open(os.path.join(self.dir, "nodes_b", "bench.yaml"), "w") as f:
                f.write(NODE_CONFIG.format(origin=ORIGIN).replace("address: 127.0.0.2", "address: 127.0.0.4"))
            self.meshd_b = self.spawn("meshd_b", [os.environ["MESHD_B"], "run", "--node", "bench", "--config-dir",
                                                  os.path.join(self.dir, "nodes_b"), "--admin", MESHD_B_ADMIN,
                                                  "--threads", "1"])
        self.haproxy = self.spawn("haproxy", ["haproxy", "-db", "-f", os.path.join(self.dir, "haproxy.cfg")])
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://{MESHD_ADMIN}/ready", timeout=1)
                if self.meshd_b:
                    urllib.request.urlopen(f"http://{MESHD_B_ADMIN}/ready", timeout=1)
                urllib.request.urlopen(f"http://{ORIGIN}/", timeout=1)
                urllib.request.urlopen(f"http://{HAPROXY_HTTP}/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"contenders did not start; logs in {self.dir}")
        with urllib.request.urlopen(f"http://{ORIGIN}/1m", timeout=5) as r:
            if len(r.read()) != MIB:
                raise RuntimeError(f"the origin's /1m is not 1 MiB; logs in {self.dir}")

    def pids(self, who):
        if who == "meshd":
            return [self.meshd.pid] + children(self.meshd.pid)
        if who == "meshd_b":
            return [self.meshd_b.pid] + children(self.meshd_b.pid)
        if who == "haproxy":
            return [self.haproxy.pid] + children(self.haproxy.pid)
        # nginx: taskset execs nginx, whose master forks the worker.
        return [self.nginx.pid] + children(self.nginx.pid)

    def stop(self):
        stop_all(self.procs, self.dir)



def stop_all(procs, workdir):
    """Stops the contenders (SIGTERM, then SIGKILL after 5 s) and removes their directory."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    shutil.rmtree(workdir, ignore_errors=True)

MODES = {
    # mode: [(contender, url, runner-kind)]
    "http1": [("direct", f"http://{ORIGIN}/", "wrk32"), ("meshd", f"http://{MESHD_HTTP}/", "wrk32"),
              ("haproxy", f"http://{HAPROXY_HTTP}/", "wrk32")],
    "h2": [("meshd", f"http://{MESHD_HTTP}/", "h2load"), ("haproxy", f"http://{HAPROXY_H2}/", "h2load")],
    # The same h2 load at a fixed rate both proxies can carry: latency at
    # equal throughput, where the closed-loop h2 mode compares each proxy
    # at its own.
    "h2rate": [("meshd", f"http://{MESHD_HTTP}/", "h2rate"), ("haproxy", f"http://{HAPROXY_H2}/", "h2rate")],
    "tcp": [("direct", f"http://{ORIGIN}/", "wrk32"), ("meshd", f"http://{MESHD_TCP}/", "wrk32"),
            ("haproxy", f"http://{HAPROXY_TCP}/", "wrk32")],
    # Bulk: every request answered with 1 MiB (nginx sendfile), so req/s
    # is MiB/s and CPU per request is CPU per MiB.
    "http1_1m": [("direct", f"http://{ORIGIN}/1m", "wrkbulk"), ("meshd", f"http://{MESHD_HTTP}/1m", "wrkbulk"),
                 ("haproxy", f"http://{HAPROXY_HTTP}/1m", "wrkbulk")],
    "tcp_1m": [("direct", f"http://{ORIGIN}/1m", "wrkbulk"), ("meshd", f"http://{MESHD_TCP}/1m", "wrkbulk"),
               ("haproxy", f"http://{HAPROXY_TCP}/1m", "wrkbulk")],
    "latency": [("direct", f"http://{ORIGIN}/", "wrk1"), ("meshd", f"http://{MESHD_HTTP}/", "wrk1"),
                ("haproxy", f"http://{HAPROXY_HTTP}/", "wrk1")],
}


BULK = ("http1_1m", "tcp_1m")
BULK_CONNS = int(os.environ.get("BULK_CONNS", "8"))
MIB = 1 << 20

if os.environ.get("MESHD_B"):
    B_URLS = {"http1": MESHD_B_HTTP, "h2": MESHD_B_HTTP, "h2rate": MESHD_B_HTTP, "tcp": MESHD_B_TCP,
              "latency": MESHD_B_HTTP, "http1_1m": MESHD_B_HTTP + "/1m", "tcp_1m": MESHD_B_TCP + "/1m"}
    for mode, contenders in MODES.items():
        kind = next(k for who, _, k in contenders if who == "meshd")
        url = f"http://{B_URLS[mode]}" + ("" if mode in BULK else "/")
        contenders.insert(1 if mode in ("h2", "h2rate") else 2, ("meshd_b", url, kind))


def measure(bench, who, url, kind, duration):
    """One run of one contender: throughput and percentiles from the client,
    CPU from /proc."""
    cpu_of = "origin" if who == "direct" else who
    pids = bench.pids(cpu_of)
    origin_pids = bench.pids("origin")
    before, origin_before = cpu_ticks(pids), cpu_ticks(origin_pids)
    kernel_before = cpu_ticks(pids, kernel_only=True)
    origin_sleeps = wakeups(origin_pids)
    if kind == "h2load":
        r = run_h2load(url, duration)
    elif kind == "h2rate":
        r = run_h2load(url, duration, rps=H2_RPS)
    else:
        conns = {"wrk32": 32, "wrkbulk": BULK_CONNS}.get(kind, 1)
        r = run_wrk(url, conns, duration, histogram=(kind == "wrk1"))
    used_us = (cpu_ticks(pids) - before) * 1e6 / CLK_TCK
    r["cpu_us"] = used_us / max(r["reqs"], 1)
    # The kernel's share: the system calls' and loopback's work, which no
    # user-space lever reaches.
    r["sys_us"] = (cpu_ticks(pids, kernel_only=True) - kernel_before) * 1e6 / CLK_TCK / max(r["reqs"], 1)
    # The origin shares the proxy's core: its CPU per request shows what a
    # proxy's way of writing costs the origin.
    r["origin_us"] = (cpu_ticks(origin_pids) - origin_before) * 1e6 / CLK_TCK / max(r["reqs"], 1)
    # Requests the origin found per wake-up: the more a proxy hands it at
    # once, the less the origin pays per request for sleeping and waking.
    r["origin_batch"] = r["reqs"] / max(wakeups(origin_pids) - origin_sleeps, 1)
    return r


def run_paired(contenders, duration):
    """Paired single-connection latency: {contender: histogram}."""
    tool = os.environ.get("LATENCY_PAIR") or os.path.join(os.path.dirname(os.environ["MESHD"]), "latency-pair")
    if not os.access(tool, os.X_OK):
        raise RuntimeError(f"{tool} not found: build it with `cargo build --release -p palisade-tests "
                           f"--bin latency-pair` or run ops/bench/proxy.sh")
    targets = [f"{who}={url.split('//', 1)[1].rstrip('/')}" for who, url, _ in contenders]
    out = subprocess.run(["taskset", "-c", "0", tool, str(duration)] + targets,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"latency-pair failed: {out.stderr[-400:]}")
    hists, failed = {}, {}
    for line in out.stdout.splitlines():
        kind, who, *rest = line.split()
        if kind == "latency-histogram":
            hists[who] = {int(us): int(n) for us, n in (pair.split(":") for pair in rest)}
        elif kind == "failed":
            failed[who] = int(rest[0])
    if any(failed.values()):
        raise RuntimeError(f"latency-pair saw failed requests: {failed}")
    return hists


def merge_histograms(hists):
    pooled = {}
    for hist in hists:
        for us, n in hist.items():
            pooled[us] = pooled.get(us, 0) + n
    return pooled


def measure_sliced(bench, order, duration, slices):
    """One latency round: `slices` short runs per contender, alternating, so
    that a burst of machine noise lands on every contender alike. Returns one
    combined result per contender, its percentiles from the merged samples."""
    slice_s = max(1, duration // slices)
    parts = {}
    for i in range(slices):
        for who, url, kind in (order if i % 2 == 0 else list(reversed(order))):
            parts.setdefault(who, []).append(measure(bench, who, url, kind, slice_s))
    combined = []
    for who, _, _ in order:
        runs = parts[who]
        reqs = sum(r["reqs"] for r in runs)
        hist = merge_histograms(r["hist"] for r in runs)
        combined.append((who, {
            "rps": statistics.mean(r["rps"] for r in runs),
            "reqs": reqs,
            "p50": percentile(hist, 0.50),
            "p99": percentile(hist, 0.99),
            "failed": sum(r["failed"] for r in runs),
            "cpu_us": sum(r["cpu_us"] * r["reqs"] for r in runs) / max(reqs, 1),
            "sys_us": sum(r["sys_us"] * r["reqs"] for r in runs) / max(reqs, 1),
            "origin_us": sum(r["origin_us"] * r["reqs"] for r in runs) / max(reqs, 1),
            "origin_batch": reqs / max(sum(r["reqs"] / r["origin_batch"] for r in runs), 1e-9),
            "hist": hist,
        }))
    return combined


def print_bulk(mode, med):
    """A bulk mode's table: req/s is MiB/s, CPU per request CPU per MiB."""
    print(f"### {mode} (wrk -c{BULK_CONNS}, 1 MiB per response)\n")
    print("| contender | MiB/s | p50 | p99 | CPU per MiB | of it kernel | origin CPU per MiB | failed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for who, _, _ in MODES[mode]:
        m = med[(mode, who)]
        cpu_label = "origin " if who == "direct" else ""
        print(f"| {who} | {m['rps']:.0f} | {m['p50']:.0f} us | {m['p99']:.0f} us | {cpu_label}{m['cpu_us']:.0f} us | "
              f"{m['sys_us']:.0f} us | {m['origin_us']:.0f} us | {m['failed']:.0f} |")
    ms, hp, d = med[(mode, "meshd")], med[(mode, "haproxy")], med[(mode, "direct")]
    print(f"\n- meshd/HAProxy MiB/s: **{ms['rps'] / hp['rps']:.3f}**; CPU per MiB meshd/HAProxy: "
          f"**{ms['cpu_us'] / hp['cpu_us']:.3f}**; meshd/direct MiB/s: {ms['rps'] / d['rps']:.3f}")
    if (mode, "meshd_b") in med:
        mb = med[(mode, "meshd_b")]
        print(f"- meshd_b/meshd MiB/s: {mb['rps'] / ms['rps']:.3f}; CPU per MiB meshd_b/meshd: "
              f"**{mb['cpu_us'] / ms['cpu_us']:.3f}**; meshd_b/HAProxy CPU per MiB: {mb['cpu_us'] / hp['cpu_us']:.3f}")
    print()


def main():
    modes = [m for m in os.environ.get("MODES", "http1,h2,h2rate,tcp,latency").split(",") if m]
    modes = [b for m in modes for b in (BULK if m == "bulk" else (m,))]
    duration = int(os.environ.get("DURATION", "10"))
    rounds = int(os.environ.get("ROUNDS", "3"))
    slices = max(1, int(os.environ.get("SLICES", "5")))
    if "memory" in modes:
        modes = [m for m in modes if m != "memory"]
        # HAProxy refuses connections past maxconn: room for the held ones.
        proxy_memory.run(lambda: Bench(os.environ["MESHD"], maxconn=int(os.environ.get("CONNS", "5000")) + 1000),
                         {"http": {"meshd": MESHD_HTTP, "meshd_b": MESHD_B_HTTP, "haproxy": HAPROXY_HTTP},
                          "tcp": {"meshd": MESHD_TCP, "meshd_b": MESHD_B_TCP, "haproxy": HAPROXY_TCP},
                          "h2": {"meshd": MESHD_HTTP, "meshd_b": MESHD_B_HTTP, "haproxy": HAPROXY_H2}}, log)
    if not modes:
        return
    bench = Bench(os.environ["MESHD"])
    results = {}
    try:
        bench.start()
        for rnd in range(rounds):
            for mode in modes:
                order = MODES[mode] if rnd % 2 == 0 else list(reversed(MODES[mode]))
                if mode == "latency":
                    round_results = measure_sliced(bench, order, duration, slices)
                    paired = run_paired(order, duration)
                    for who, r in round_results:
                        r["pair_hist"] = paired[who]
                        log(f"round {rnd + 1} latency  {who:8} paired: p50 {percentile(paired[who], 0.5):.0f}us  "
                            f"p99 {percentile(paired[who], 0.99):.0f}us")
                else:
                    round_results = [(who, measure(bench, who, url, kind, duration)) for who, url, kind in order]
                for who, r in round_results:
                    log(f"round {rnd + 1} {mode:8} {who:8} {r['rps']:>10.0f} req/s  p50 {r['p50']:>7.0f}us  "
                        f"p99 {r['p99']:>7.0f}us  cpu {r['cpu_us']:.2f}us/req (kernel {r['sys_us']:.2f})  origin {r['origin_us']:.2f}us/req "
                        f"{r['origin_batch']:.1f} req/wake  failed {r['failed']}")
                    results.setdefault((mode, who), []).append(r)
    finally:
        bench.stop()

    med = {k: {f: statistics.median(x[f] for x in v) for f in ["rps", "p50", "p99", "cpu_us", "sys_us", "origin_us", "origin_batch", "failed"]}
           for k, v in results.items()}
    # Where every sample was kept, percentiles come from all rounds' samples
    # pooled; the median of the per-round p99s stays beside them for reference.
    for k, v in results.items():
        if all("hist" in x for x in v):
            pooled = merge_histograms(x["hist"] for x in v)
            med[k]["round_p99"] = med[k]["p99"]
            med[k]["p50"], med[k]["p99"] = percentile(pooled, 0.50), percentile(pooled, 0.99)
            med[k]["p999"] = percentile(pooled, 0.999)
            med[k]["samples"] = sum(pooled.values())
        if all("pair_hist" in x for x in v):
            pooled = merge_histograms(x["pair_hist"] for x in v)
            for name, q in [("pair_p50", 0.50), ("pair_p99", 0.99), ("pair_p999", 0.999)]:
                med[k][name] = percentile(pooled, q)
    print(f"\nMedians of {rounds} alternated rounds, {duration}s each; proxies pinned with the origin "
          f"on core 1, clients on core 0; one worker thread per proxy.\n")
    for mode in modes:
        if mode in BULK:
            print_bulk(mode, med)
            continue
        client = {"h2": "h2load -c32 -m10", "h2rate": f"h2load -c32 -m10 --rps={H2_RPS}: {32 * H2_RPS} requests/s",
                  "latency": "wrk -c1"}.get(mode, "wrk -c32")
        print(f"### {mode} ({client})\n")
        print("| contender | req/s | p50 | p99 | CPU per request | of it kernel | origin CPU per request | origin requests per wake-up | failed |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for who, _, _ in MODES[mode]:
            m = med[(mode, who)]
            cpu_label = "origin " if who == "direct" else ""
            print(f"| {who} | {m['rps']:.0f} | {m['p50']:.0f} us | {m['p99']:.0f} us | "
                  f"{cpu_label}{m['cpu_us']:.2f} us | {m['sys_us']:.2f} us | {m['origin_us']:.2f} us | {m['origin_batch']:.1f} | {m['failed']:.0f} |")
        ms, hp = med[(mode, "meshd")], med[(mode, "haproxy")]
        if (mode, "meshd_b") in med:
            mb = med[(mode, "meshd_b")]
            print(f"- meshd_b/HAProxy req/s: **{mb['rps'] / hp['rps']:.3f}**; meshd_b/meshd req/s: "
                  f"{mb['rps'] / ms['rps']:.3f}; CPU per request meshd_b/meshd: {mb['cpu_us'] / ms['cpu_us']:.3f}")
        print(f"\n- meshd/HAProxy req/s: **{ms['rps'] / hp['rps']:.3f}**; p99 meshd/HAProxy: "
              f"{ms['p99'] / hp['p99']:.3f}; CPU per request meshd/HAProxy: {ms['cpu_us'] / hp['cpu_us']:.3f}")
        if hp["cpu_us"] > 0:
            print(f"- kernel CPU per request: meshd {ms['sys_us']:.2f} us, HAProxy {hp['sys_us']:.2f} us "
                  f"({hp['sys_us'] / hp['cpu_us']:.2f} of HAProxy's CPU); user space: meshd "
                  f"{ms['cpu_us'] - ms['sys_us']:.2f} us, HAProxy {hp['cpu_us'] - hp['sys_us']:.2f} us")
        if mode == "h2rate":
            short = [who for who, _, _ in MODES[mode] if med[(mode, who)]["rps"] < 0.99 * 32 * H2_RPS]
            print(f"- offered {32 * H2_RPS} requests/s; "
                  + (f"NOT carried by {', '.join(short)}: lower H2_RPS" if short else "carried by every contender"))
        if (mode, "direct") in med:
            d = med[(mode, "direct")]
            print(f"- meshd/direct req/s: {ms['rps'] / d['rps']:.3f}")
            if mode == "latency":
                print(f"- p50 and p99 above are pooled over every sample of every round "
                      f"({rounds} rounds of {slices} alternated slices); p99.9 pooled: "
                      + ", ".join(f"{who} {med[(mode, who)]['p999']:.0f} us" for who, _, _ in MODES[mode])
                      + "; median of the per-round p99s: "
                      + ", ".join(f"{who} {med[(mode, who)]['round_p99']:.0f} us" for who, _, _ in MODES[mode]))
                print(f"- paired (latency-pair, {rounds} x {duration}s, contenders taking turns request by request): "
                      + ", ".join(f"{who} p50 {med[(mode, who)]['pair_p50']:.0f} / p99 {med[(mode, who)]['pair_p99']:.0f} / "
                                  f"p99.9 {med[(mode, who)]['pair_p999']:.0f} us" for who, _, _ in MODES[mode])
                      + f"; paired p99 meshd/HAProxy: **{ms['pair_p99'] / hp['pair_p99']:.3f}**")
                print(f"- latency meshd adds on one connection: p50 +{ms['p50'] - d['p50']:.0f} us, "
                      f"p99 +{ms['p99'] - d['p99']:.0f} us (HAProxy: p50 +{hp['p50'] - d['p50']:.0f} us, "
                      f"p99 +{hp['p99'] - d['p99']:.0f} us); paired: meshd p50 +{ms['pair_p50'] - d['pair_p50']:.0f} us, "
                      f"p99 +{ms['pair_p99'] - d['pair_p99']:.0f} us (HAProxy: p50 +{hp['pair_p50'] - d['pair_p50']:.0f} us, "
                      f"p99 +{hp['pair_p99'] - d['pair_p99']:.0f} us)")
        print()


if __name__ == "__main__":
    main()
