#!/usr/bin/env python3
"""How the kernel shares the proxies' core with the origin, per contender.

Starts the same contenders as proxy_bench.py (nginx origin, meshd, HAProxy,
all pinned to core 1), loads each proxy in turn from core 0, and records one
second of scheduler switches and wake-ups on core 1 with perf. It prints,
per proxy:

- how often the proxy was preempted (it was runnable when the origin took
  the core) and how long its runs lasted;
- how long the proxy kept the core after its write woke the origin: near
  zero means the origin preempted it at once and got one request;
- how many requests the origin found per wake-up (from its voluntary
  context switches over the whole load).

docs/benchmarks.md ("Where the time goes") explains why these decide the
TCP and HTTP/2 results. Needs root for perf's tracepoints.

    MODES=tcp,h2 ops/bench/sched_trace.sh
"""

import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_bench as pb  # noqa: E402

LOAD_SECONDS = 4
TRACE_SECONDS = 1

TARGETS = {
    "tcp": [("meshd", pb.MESHD_TCP), ("haproxy", pb.HAPROXY_TCP)],
    "h2": [("meshd", pb.MESHD_HTTP), ("haproxy", pb.HAPROXY_H2)],
    "http1": [("meshd", pb.MESHD_HTTP), ("haproxy", pb.HAPROXY_HTTP)],
}


def load(mode, addr):
    if mode == "h2":
        cmd = ["h2load", "-c32", "-m10", "-t1", "-D", str(LOAD_SECONDS), f"http://{addr}/"]
    else:
        cmd = ["wrk", "-t1", "-c32", f"-d{LOAD_SECONDS}s", f"http://{addr}/"]
    return subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def served(mode, out):
    if mode == "h2":
        m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    else:
        m = re.search(r"(\d+) requests in", out)
    return int(m.group(1)) if m else 0


SWITCH = re.compile(r"prev_comm=(\S+) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(\S+) next_pid=(\d+)")
WAKE = re.compile(r"comm=(\S+) pid=(\d+)")


def analyse(script, proxy_pids, origin_pids):
    """Runs of the proxy on core 1: how they ended, how long they lasted,
    and how long after waking the origin the proxy kept the core."""
    runs = {"R": [], "S": []}
    after_wake = []
    run_start = None
    woke_at = None
    for line in script.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            t = float(parts[1].rstrip(":"))
        except ValueError:
            continue
        if "sched_switch" in line:
            m = SWITCH.search(line)
            if not m:
                continue
            prev_pid, state, next_pid = int(m.group(2)), m.group(3), int(m.group(5))
            if prev_pid in proxy_pids and run_start is not None:
                runs["R" if state.startswith("R") else "S"].append((t - run_start) * 1e6)
                if woke_at is not None and state.startswith("R"):
                    after_wake.append((t - woke_at) * 1e6)
            run_start = t if next_pid in proxy_pids else None
            woke_at = None
        elif "sched_wakeup" in line and run_start is not None:
            m = WAKE.search(line)
            if m and int(m.group(2)) in origin_pids and woke_at is None:
                woke_at = t
    return runs, after_wake


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def main():
    modes = [m for m in os.environ.get("MODES", "tcp,h2").split(",") if m]
    bench = pb.Bench(os.environ["MESHD"])
    try:
        bench.start()
        origin_pids = set(bench.pids("origin"))
        print("| mode | proxy | req/s | preempted runs/s | mean preempted run | kept the core after waking the origin | "
              "origin requests per wake-up |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for mode in modes:
            for who, addr in TARGETS[mode]:
                proxy_pids = set(bench.pids(who))
                client = load(mode, addr)
                time.sleep(1.0)
                sleeps = pb.wakeups(origin_pids)
                with tempfile.NamedTemporaryFile(suffix=".data") as data:
                    subprocess.run(["perf", "record", "-q", "-e", "sched:sched_switch,sched:sched_wakeup", "-C", "1",
                                    "-o", data.name, "--", "sleep", str(TRACE_SECONDS)],
                                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    script = subprocess.run(["perf", "script", "-i", data.name, "-F", "comm,time,event,trace"],
                                            capture_output=True, text=True).stdout
                out = client.communicate()[0]
                woke = pb.wakeups(origin_pids) - sleeps
                reqs = served(mode, out)
                runs, after_wake = analyse(script, proxy_pids, origin_pids)
                # The origin's wake-ups were counted over the traced second
                # and what followed; requests over the whole load scale them.
                per_wake = reqs * (LOAD_SECONDS - 1.0) / LOAD_SECONDS / max(woke, 1)
                print(f"| {mode} | {who} | {reqs / LOAD_SECONDS:.0f} | {len(runs['R']) / TRACE_SECONDS:.0f} | "
                      f"{mean(runs['R']):.1f} us | {mean(after_wake):.1f} us | {per_wake:.1f} |", flush=True)
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
