#!/usr/bin/env python3
"""Instructions per request of one or two meshd builds, under callgrind.

Timings on this machine move 10-15% between runs; instruction counts do not.
Each build serves the bench node config (ops/bench/proxy_bench.py's, every
request-path feature on) in front of the same nginx origin, under
`valgrind --tool=callgrind`. After a warm-up, the counters are zeroed, a
fixed number of requests is sent with h2load (`--h1` for HTTP/1.1), and the
dumped total is divided by that number. Loopback only.

Environment: MESHD (a release meshd; default target/release/meshd), MESHD_B
(optional second build), MODES (http1,h2; also tcp: HTTP/1.1 requests
through the TCP-mode port, each a round trip through the tunnel; latency:
HTTP/1.1 requests one at a time on one connection, so that every request
pays its own wake-ups, as in proxy.sh's latency mode), REQUESTS
(default 20000), HAPROXY (set: HAProxy 2.6 with proxy_bench's config, one
thread, counted the same way; its user-space instructions only, as meshd's).
Usage: ops/bench/instructions.py   (needs valgrind, h2load and nginx)
"""

import glob
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import (HAPROXY_CFG, HAPROXY_H2, HAPROXY_HTTP, HAPROXY_TCP,  # noqa: E402
                         NGINX_CONF, NODE_CONFIG, ORIGIN)

HTTP = "127.0.0.2:18100"
TCP = "127.0.0.2:18101"
ADMIN = "127.0.0.1:19901"


def wait_ready(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


def h2load(mode, n, haproxy=False):
    args = ["h2load", "-n", str(n), "-c", "1" if mode == "latency" else "4"]
    args += ["-m", "10"] if mode == "h2" else ["--h1", "-m", "1"]
    # tcp: the same HTTP/1.1 requests through the TCP-mode port, one round trip each.
    url = f"http://{TCP}/" if mode == "tcp" else f"http://{HTTP}/"
    if haproxy:
        url = f"http://{ {'tcp': HAPROXY_TCP, 'h2': HAPROXY_H2}.get(mode, HAPROXY_HTTP) }/"
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    if f"{n} succeeded" not in out:
        raise RuntimeError(out)


def measure(binary, mode, n, workdir):
    out = os.path.join(workdir, f"callgrind.{os.getpid()}.{mode}.%p")
    haproxy = binary == "haproxy"
    args = (["haproxy", "-db", "-f", os.path.join(workdir, "haproxy.cfg")] if haproxy else
            [binary, "run", "--node", "bench", "--config-dir", os.path.join(workdir, "nodes"),
             "--admin", ADMIN, "--threads", "1"])
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + args,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if haproxy:
            wait_ready(f"http://{HAPROXY_HTTP}/")
        else:
            wait_ready(f"http://{ADMIN}/ready")
            wait_ready(f"http://{HTTP}/")  # listening, not just configured
        h2load(mode, 500, haproxy)  # warm-up: pools, first-use metric handles
        subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, capture_output=True)
        h2load(mode, n, haproxy)
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    dumps = sorted(glob.glob(out.replace("%p", str(proc.pid)) + "*"), key=os.path.getmtime)
    for path in dumps:
        with open(path) as f:
            text = f.read()
        if "Trigger: dump" in text or "Client Request" in text:
            for line in text.splitlines():
                if line.startswith("summary:") or line.startswith("totals:"):
                    return int(line.split()[1]) / n
    raise RuntimeError(f"no dump with totals among {dumps}")


def main():
    builds = {"meshd": os.environ.get("MESHD", "target/release/meshd")}
    if os.environ.get("MESHD_B"):
        builds["meshd_b"] = os.environ["MESHD_B"]
    if os.environ.get("HAPROXY"):
        builds["haproxy"] = "haproxy"
    modes = [m for m in os.environ.get("MODES", "http1,h2").split(",") if m]
    n = int(os.environ.get("REQUESTS", "20000"))
    workdir = tempfile.mkdtemp(prefix="palisade-instr-")
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi", "nodes"]:
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
    with open(os.path.join(workdir, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(dir=workdir, origin=ORIGIN))
    with open(os.path.join(workdir, "nodes", "bench.yaml"), "w") as f:
        f.write(NODE_CONFIG.format(origin=ORIGIN))
    with open(os.path.join(workdir, "haproxy.cfg"), "w") as f:
        f.write(HAPROXY_CFG.format(http=HAPROXY_HTTP, h2=HAPROXY_H2, tcp=HAPROXY_TCP, origin=ORIGIN,
                                   maxconn=4000))
    nginx = subprocess.Popen(["nginx", "-c", os.path.join(workdir, "nginx.conf"), "-p", workdir],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://{ORIGIN}/")
        results = {}
        for mode in modes:
            for who, binary in builds.items():
                results[(who, mode)] = measure(binary, mode, n, workdir)
                print(f"{mode:6} {who:8} {results[(who, mode)]:10.0f} instructions per request", flush=True)
        for other in [b for b in builds if b != "meshd"]:
            for mode in modes:
                ratio = results[("meshd", mode)] / results[(other, mode)]
                print(f"{mode:6} meshd/{other} instructions per request: {ratio:.3f}")
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


if __name__ == "__main__":
    main()
