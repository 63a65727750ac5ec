#!/usr/bin/env python3
"""Syscalls per request of meshd and HAProxy, counted with `strace -c -f`.

Kernel time is not in callgrind's instruction counts, and on one keep-alive
connection every extra `epoll_wait`, `EAGAIN` read or split write is added
latency. This starts the contenders of `proxy_bench.py` (nginx origin,
meshd with its bench node config, HAProxy; one worker thread each), warms
each up, attaches `strace -c -f -p` to it, sends a fixed number of requests
with h2load and prints each syscall's count (and its errors) per request.
Loopback only; run it under the bench lock (fixed ports).

Environment: MESHD (default target/release/meshd), MESHD_B (optional second
build, compared too), MODES (latency: one connection, one request at a time;
http1: 4 connections; h2: 4 connections of 10 streams), REQUESTS (default 5000).
Usage: flock /tmp/palisade-bench.lock ops/bench/syscall_counts.py
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import HAPROXY_H2, HAPROXY_HTTP, MESHD_B_HTTP, MESHD_HTTP, Bench  # noqa: E402

LOADS = {
    "latency": ["--h1", "-c", "1", "-m", "1"],
    "http1": ["--h1", "-c", "4", "-m", "1"],
    "h2": ["-c", "4", "-m", "10"],
}


def h2load(mode, url, n):
    out = subprocess.run(["h2load", "-n", str(n)] + LOADS[mode] + [url],
                         capture_output=True, text=True, check=True).stdout
    if f"{n} succeeded" not in out:
        raise RuntimeError(out)


def parse(path):
    """strace -c's table: {syscall: (calls, errors)}."""
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 5 or not parts[0][0].isdigit():
                continue
            # % time, seconds, usecs/call, calls, [errors,] syscall
            name = parts[-1]
            if name == "total":
                continue
            calls = int(parts[3])
            errors = int(parts[4]) if len(parts) == 6 else 0
            counts[name] = (calls, errors)
    return counts


def count(pids, mode, url, n, workdir, who):
    h2load(mode, url, 500)  # warm-up: pools, first-use handles
    out = os.path.join(workdir, f"strace.{who}.{mode}")
    args = ["strace", "-c", "-f", "-o", out]
    for pid in pids:
        args += ["-p", str(pid)]
    tracer = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)  # attached (strace gives no readiness signal)
        h2load(mode, url, n)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
    return parse(out)


def main():
    meshd = os.environ.get("MESHD", "target/release/meshd")
    modes = [m for m in os.environ.get("MODES", "latency,http1,h2").split(",") if m]
    n = int(os.environ.get("REQUESTS", "5000"))
    workdir = tempfile.mkdtemp(prefix="palisade-strace-")
    bench = Bench(meshd)
    bench.start()
    try:
        who_urls = [("meshd", MESHD_HTTP), ("haproxy", HAPROXY_HTTP)]
        if os.environ.get("MESHD_B"):
            who_urls.insert(1, ("meshd_b", MESHD_B_HTTP))
        for mode in modes:
            for who, addr in who_urls:
                if who == "haproxy" and mode == "h2":
                    addr = HAPROXY_H2
                counts = count(bench.pids(who), mode, f"http://{addr}/", n, workdir, who)
                total = sum(c for c, _ in counts.values()) / n
                top = sorted(counts.items(), key=lambda kv: -kv[1][0])
                detail = ", ".join(
                    f"{name} {c / n:.2f}" + (f" ({e / n:.2f} err)" if e else "")
                    for name, (c, e) in top if c / n >= 0.005)
                print(f"{mode:8} {who:8} {total:6.2f} syscalls/request: {detail}", flush=True)
    finally:
        bench.stop()
        print(f"strace tables in {workdir}")


if __name__ == "__main__":
    main()
