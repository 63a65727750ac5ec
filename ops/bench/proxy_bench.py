#!/usr/bin/env python3
"""Measuring half of ops/bench/proxy.sh: runs the clients, reads CPU time from
/proc, takes medians and prints markdown tables.

proxy.sh starts the servers (origin, meshd, HAProxy, each pinned to core 1)
and passes their PIDs here; this helper only ever starts wrk and h2load,
pinned to core 0, each bounded by a timeout. A run that fails (a contender
down, a client error, more than 1% failed requests) becomes "n/a (error)"
for that run and never stops the others: meshd's h2c path may be mid-change.

The machine is shared (builds and tests of other work run on the same two
cores), so every run also measures the CPU that processes other than ours
used meanwhile ("other load", from /proc/stat minus client, origin and
proxy). Before each run the helper waits, bounded by QUIET_WAIT seconds, for
the machine to go quiet, and a run with more than NOISY percent of a core of
other load is repeated (at most RETRIES times; the quietest attempt counts).

Environment (set by proxy.sh): MODES, DURATION, ROUNDS, BENCH_DIR, MESHD,
NGINX_PID, MESHD_PID, HAPROXY_PID, MESHD_HTTP_PATH, MESHD_H2C; optional
QUIET_WAIT (default 60), NOISY (default 10), RETRIES (default 2).
Python 3.11 standard library only.
"""

import datetime
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTENDERS = ["direct", "meshd", "haproxy"]
# Where each contender listens, per mode. A missing entry is a row that cannot
# exist: h2 has no direct row because the origin speaks HTTP/1.1 only.
MODES = {
    "http1": {
        "client": "wrk",
        "conns": 32,
        "urls": {
            "direct": "http://127.0.0.1:18080/",
            "meshd": "http://127.0.0.2:18100/",
            "haproxy": "http://127.0.0.3:18100/",
        },
    },
    "h2": {
        "client": "h2load",
        "conns": 32,
        "urls": {
            "meshd": "http://127.0.0.2:18100/",  # h2c prior knowledge, same port as HTTP/1.1
            "haproxy": "http://127.0.0.3:18102/",  # `bind ... proto h2`
        },
        "absent": {"direct": "n/a (origin speaks HTTP/1.1 only)"},
    },
    "tcp": {
        "client": "wrk",
        "conns": 32,
        "urls": {
            "direct": "http://127.0.0.1:18080/",
            "meshd": "http://127.0.0.2:18101/",
            "haproxy": "http://127.0.0.3:18101/",
        },
    },
    "latency": {
        "client": "wrk",
        "conns": 1,
        "urls": {
            "direct": "http://127.0.0.1:18080/",
            "meshd": "http://127.0.0.2:18100/",
            "haproxy": "http://127.0.0.3:18100/",
        },
    },
}
# More failed requests than this and a run's numbers are not about proxying.
MAX_FAILED_SHARE = 0.01


class RunError(Exception):
    """One run that produced no usable numbers."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_duration_s(text):
    """DURATION as wrk takes it (10, 10s, 2m, 1h) -> whole seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*(s|m|h)?\s*", text)
    if not m or int(m.group(1)) == 0:
        sys.exit(f"bench: DURATION={text!r}: want a positive whole number of seconds, like 10s or 2m")
    return int(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def to_us(text):
    """A wrk or h2load time (`136.00us`, `1.23ms`, `2.00s`) -> microseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise RunError(f"unreadable time {text!r}")
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


# --- processes and CPU time --------------------------------------------------

def stat_fields(pid):
    """/proc/<pid>/stat from field 3 on; the name in field 2 may hold spaces."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def alive(pid):
    try:
        return stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def family(pid):
    """A server and its direct children (nginx's master forks its worker)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(stat_fields(entry)[1]) == pid:  # field 4: ppid
                    pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass  # gone meanwhile
    return pids


def cpu_us(pids):
    """utime + stime (fields 14 and 15, clock ticks, all threads) in microseconds."""
    ticks = 0
    for pid in pids:
        f = stat_fields(pid)
        ticks += int(f[11]) + int(f[12])
    return ticks * 1e6 / CLK_TCK


def system_busy_us():
    """CPU time all processes used, summed over cores (/proc/stat, first line)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) * 1e6 / CLK_TCK  # guest time is already in user


def children_cpu_us():
    """CPU time of the clients this helper ran and reaped (wrk, h2load)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1e6


def wait_for_quiet(max_wait, noisy_pct):
    """Waits (at most max_wait s) until others use less than noisy_pct of a core.

    Our servers are idle between runs, so what /proc/stat shows is others'."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = system_busy_us(), time.monotonic()
        time.sleep(1)
        load = (system_busy_us() - b0) / ((time.monotonic() - t0) * 1e6) * 100
        if load < noisy_pct:
            return load
        if time.monotonic() >= deadline:
            log(f"  machine still busy ({load:.0f}% of a core used by others); measuring anyway")
            return load


# --- clients -------------------------------------------------------------------

def client(cmd, timeout):
    """Runs a load generator on core 0; bounded; killed if we are stopped."""
    try:
        p = subprocess.run(["taskset", "-c", "0"] + cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunError(f"{cmd[0]} did not finish within {timeout}s")
    return p


def last_line(text):
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def run_wrk(url, conns, seconds):
    p = client(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", url], seconds + 30)
    out = p.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    reqs = re.search(r"(\d+) requests in", out)
    if p.returncode != 0 or not rps or not reqs:
        raise RunError(f"wrk: {last_line(p.stderr or out)}")
    reqs = int(reqs.group(1))
    failed = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        failed += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        failed += sum(int(x) for x in sock.groups())
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    if "50" not in pct or "99" not in pct:
        raise RunError("wrk printed no latency distribution")
    return {"rps": float(rps.group(1)), "reqs": reqs, "failed": failed,
            "p50": to_us(pct["50"]), "p99": to_us(pct["99"])}


def percentile(sorted_values, q):
    """Nearest rank."""
    i = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


def run_h2load(url, conns, seconds, logfile):
    # h2load prints no percentiles; --log-file has one row per request
    # (start, status, microseconds to the end of the response), from which
    # p50 and p99 are exact.
    p = client(["h2load", f"-c{conns}", "-m10", "-t1", "-D", str(seconds), f"--log-file={logfile}", url],
               seconds + 30)
    out = p.stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", out)
    if p.returncode != 0 or not rps or not req:
        raise RunError(f"h2load: {last_line(p.stderr + out)}")
    done, succeeded = int(req.group(3)), int(req.group(4))
    codes = re.search(r"status codes: (\d+) 2xx", out)
    ok = int(codes.group(1)) if codes else 0
    times = []
    try:
        with open(logfile) as f:
            for row in f:
                cols = row.split("\t")
                if len(cols) >= 3 and cols[1].startswith("2"):
                    times.append(int(cols[2]))
        os.unlink(logfile)
    except (OSError, ValueError) as e:
        raise RunError(f"h2load log: {e}")
    if not times:
        raise RunError(f"h2load: no successful request ({last_line(out)})")
    times.sort()
    return {"rps": float(rps.group(1)), "reqs": done, "failed": done - min(succeeded, ok),
            "p50": percentile(times, 50), "p99": percentile(times, 99)}


# --- one run -------------------------------------------------------------------

def measure(mode, who, seconds, pids, rnd):
    spec = MODES[mode]
    proxy = pids.get(who)  # None for direct
    origin = family(pids["origin"])
    proxied = family(proxy) if proxy else []
    o0, p0, c0, s0, t0 = cpu_us(origin), cpu_us(proxied), children_cpu_us(), system_busy_us(), time.monotonic()
    url = spec["urls"][who]
    if spec["client"] == "wrk":
        r = run_wrk(url, spec["conns"], seconds)
    else:
        logfile = os.path.join(os.environ["BENCH_DIR"], f"h2load-{mode}-{who}-{rnd}.log")
        r = run_h2load(url, spec["conns"], seconds, logfile)
    try:
        o1, p1 = cpu_us(origin), cpu_us(proxied)
    except OSError:
        raise RunError(f"{who} exited during the run")
    c1, s1, wall = children_cpu_us(), system_busy_us(), time.monotonic() - t0
    if r["reqs"] == 0:
        raise RunError("no request completed")
    if r["failed"] > MAX_FAILED_SHARE * r["reqs"]:
        raise RunError(f"{r['failed']} of {r['reqs']} requests failed")
    r["origin_cpu"] = (o1 - o0) / r["reqs"]
    r["proxy_cpu"] = (p1 - p0) / r["reqs"] if proxy else None
    # Share of core 1 that origin and proxy used: near 100% means the server
    # side was the bottleneck, as intended.
    r["core1"] = ((o1 - o0) + (p1 - p0)) / (wall * 1e6)
    # Everything else the machine ran meanwhile, in cores (clock-tick
    # rounding makes small negative values possible).
    r["other"] = max(0.0, ((s1 - s0) - (o1 - o0) - (p1 - p0) - (c1 - c0)) / (wall * 1e6))
    return r


def quietest_run(mode, who, seconds, pids, rnd, rounds, quiet_wait, noisy, retries):
    """One round's run of one contender, repeated while others load the machine.

    Returns the attempt with the least other load. An error ends the round
    for this contender at once: errors are findings, not noise."""
    best = None
    for attempt in range(1 + retries):
        for name in ("origin", who):
            if name in pids and not alive(pids[name]):
                raise RunError(f"{name} is not running")
        wait_for_quiet(quiet_wait, noisy)  # also lets sockets settle between runs
        r = measure(mode, who, seconds, pids, rnd)
        proxy_cpu = "" if r["proxy_cpu"] is None else f"proxy {r['proxy_cpu']:.2f} us/req  "
        log(f"round {rnd}/{rounds} {mode:7} {who:7} {r['rps']:>9.0f} req/s  p50 {fmt_time(r['p50']):>9}  "
            f"p99 {fmt_time(r['p99']):>9}  {proxy_cpu}origin {r['origin_cpu']:.2f} us/req  "
            f"core1 {r['core1'] * 100:.0f}%  other {r['other'] * 100:.0f}%  failed {r['failed']}")
        if best is None or r["other"] < best["other"]:
            best = r
        if r["other"] * 100 < noisy:
            break
        if attempt < retries:
            log("  others used the machine during that run; running it again")
    return best


# --- report --------------------------------------------------------------------

def fmt_time(us):
    return f"{us:.0f} us" if us < 1000 else f"{us / 1000:.2f} ms"


def median_of(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return f"{a / b:.3f}" if a is not None and b else "n/a"


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M).group(1).strip()
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


def version(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (p.stdout + p.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def meshd_log_summary(path):
    """meshd's JSON log: lines by level, and its distinct warnings and errors."""
    levels, problems = Counter(), Counter()
    try:
        with open(path) as f:
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    levels["(not JSON)"] += 1
                    problems[line.strip()[:160]] += 1
                    continue
                level = ev.get("level", "?")
                levels[level] += 1
                if level in ("WARN", "ERROR"):
                    fields = dict(ev.get("fields", {}))
                    msg = fields.pop("message", "")
                    # Peers and request ids differ per line; keep what groups.
                    for noisy in ("peer", "request_id", "elapsed_ms"):
                        fields.pop(noisy, None)
                    extra = " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
                    problems[f"{level} {ev.get('target', '')}: {msg} {extra}".strip()] += 1
    except OSError:
        return "no log", []
    summary = ", ".join(f"{n} {lvl}" for lvl, n in sorted(levels.items())) or "empty"
    return summary, problems.most_common(10)


def report(modes, results, errors, seconds, rounds):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = version(["git", "-C", ROOT, "describe", "--always", "--dirty"])
    print(f"## meshd vs HAProxy vs direct, {now}\n")
    print(f"- machine: {machine()}")
    print(f"- meshd: {version([os.environ['MESHD'], '--version'])} (git {commit}), `--threads 1`; "
          f"its http port: {os.environ.get('MESHD_HTTP_PATH', '?')}; {os.environ.get('MESHD_H2C', '?')}")
    print(f"- HAProxy: {version(['haproxy', '-v'])}, `nbthread 1`")
    print(f"- origin: {version(['nginx', '-v'])}, one worker; clients: {version(['wrk', '-v'])}, "
          f"{version(['h2load', '--version'])}")
    print(f"- medians of {rounds} alternated rounds, {seconds}s per run; clients on core 0, origin and "
          f"proxy on core 1; CPU is utime+stime from /proc per request served; core 1 busy is origin + "
          f"proxy CPU over the run; other load is what other processes used meanwhile (% of one core)")
    for mode in modes:
        spec = MODES[mode]
        if spec["client"] == "wrk":
            cmd = f"wrk -t1 -c{spec['conns']} -d{seconds}s --latency"
        else:
            cmd = f"h2load -c{spec['conns']} -m10 -t1 -D {seconds} (h2c prior knowledge in, HTTP/1.1 out)"
        print(f"\n### {mode} ({cmd})\n")
        print("| contender | req/s | p50 | p99 | proxy CPU us/req | origin CPU us/req | core 1 busy | other load |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        med, notes = {}, []
        for who in CONTENDERS:
            if who in spec.get("absent", {}):
                print(f"| {who} | {spec['absent'][who]} | | | | | | |")
                continue
            runs = results.get((mode, who), [])
            errs = errors.get((mode, who), [])
            if errs:
                notes.append(f"- {who}: {len(errs)} of {len(errs) + len(runs)} rounds failed: "
                             + "; ".join(sorted(set(errs))))
            if not runs:
                print(f"| {who} | n/a (error) | | | | | | |")
                continue
            m = {k: median_of(runs, k) for k in ("rps", "p50", "p99", "proxy_cpu", "origin_cpu", "core1", "other")}
            med[who] = m
            proxy_cpu = "-" if m["proxy_cpu"] is None else f"{m['proxy_cpu']:.2f}"
            print(f"| {who} | {m['rps']:.0f} | {fmt_time(m['p50'])} | {fmt_time(m['p99'])} | {proxy_cpu} | "
                  f"{m['origin_cpu']:.2f} | {m['core1'] * 100:.0f}% | {m['other'] * 100:.0f}% |")
        ms, hp, d = med.get("meshd", {}), med.get("haproxy", {}), med.get("direct", {})
        print()
        print(f"- meshd/HAProxy req/s: **{ratio(ms.get('rps'), hp.get('rps'))}**")
        if "direct" not in spec.get("absent", {}):
            print(f"- meshd/direct req/s: {ratio(ms.get('rps'), d.get('rps'))}")
        print(f"- meshd/HAProxy CPU per request: {ratio(ms.get('proxy_cpu'), hp.get('proxy_cpu'))}")
        if mode == "latency":
            def added(m):
                if not m or not d:
                    return "n/a"
                return f"p50 {m['p50'] - d['p50']:+.0f} us, p99 {m['p99'] - d['p99']:+.0f} us"
            print(f"- latency added on one connection, against direct: meshd {added(ms)}; HAProxy {added(hp)}")
        for note in notes:
            print(note)
    summary, problems = meshd_log_summary(os.path.join(os.environ["BENCH_DIR"], "meshd.log"))
    print(f"\nmeshd's log during the benchmark: {summary}.")
    for text, n in problems:
        print(f"- {n}x {text}")


def main():
    # proxy.sh stops us with SIGTERM; SystemExit makes subprocess.run kill
    # the client it is waiting on before we go.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    modes = [m.strip() for m in os.environ.get("MODES", "http1,h2,tcp,latency").split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        sys.exit(f"bench: unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
    seconds = parse_duration_s(os.environ.get("DURATION", "10s"))
    rounds = int(os.environ.get("ROUNDS", "3"))
    if rounds < 1:
        sys.exit("bench: ROUNDS must be at least 1")
    quiet_wait = float(os.environ.get("QUIET_WAIT", "60"))
    noisy = float(os.environ.get("NOISY", "10"))
    retries = int(os.environ.get("RETRIES", "2"))
    pids = {"origin": int(os.environ["NGINX_PID"]), "meshd": int(os.environ["MESHD_PID"]),
            "haproxy": int(os.environ["HAPROXY_PID"])}

    results, errors = {}, {}
    for rnd in range(1, rounds + 1):
        # Alternate the order (direct, meshd, haproxy / haproxy, meshd,
        # direct / ...) so that drift over time favours nobody.
        order = CONTENDERS if rnd % 2 == 1 else CONTENDERS[::-1]
        for mode in modes:
            for who in order:
                if who not in MODES[mode]["urls"]:
                    continue
                try:
                    results.setdefault((mode, who), []).append(
                        quietest_run(mode, who, seconds, pids, rnd, rounds, quiet_wait, noisy, retries))
                except RunError as e:
                    log(f"round {rnd}/{rounds} {mode:7} {who:7} n/a (error): {e}")
                    errors.setdefault((mode, who), []).append(str(e))
    print(flush=True)
    report(modes, results, errors, seconds, rounds)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
