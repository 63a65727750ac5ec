"""proxy_bench.py's memory mode: what each proxy's resident memory grows by
while it holds many idle connections, and whether it gives it back.

For each contender and each kind (HTTP/1.1 keep-alive, TCP, HTTP/2 with
prior knowledge), CONNS (default 5000) connections are opened; each carries
one request and its response (through a TCP-mode port it is one round trip
to the origin, so the tunnel and its backend connection have been used; an
HTTP/2 one is one stream) and then stays open, idle.
RSS is read from /proc before, with every connection held, and after they
all close: RSS is polled for up to SETTLE seconds (default 10) until it comes
back within a tenth of what the held connections added, so an allocator that
returns memory late still shows, and one that never does shows too.

While the connections are held, the open descriptors of each contender are
counted (client sockets plus the backend sockets it keeps: a pool shared by
idle clients shows as few), and HELD_HOOK, if set, is run through the shell
before the connections open and while they are held, with {pid} replaced by
the contender's main PID, {who} by its name and {phase} by `before` or
`held`: for
a breakdown, e.g. gdb calling jemalloc's malloc_stats_print in meshd
(docs/benchmarks.md, issue 17, where an idle connection's memory goes).
"""

import os
import socket
import subprocess
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
# nginx's answer (proxy_bench.NGINX_CONF) ends with this body.
BODY = b"ok\n"
BATCH = 100


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def open_fds(pids):
    """Descriptors open in `pids` now."""
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except FileNotFoundError:
            pass
    return total


def settled_rss(pids, seconds=2.0, step=0.25):
    """RSS once it stops moving (no change over `seconds`, at most 15 s)."""
    last, since, deadline = rss_kb(pids), time.time(), time.time() + 15
    while time.time() < deadline:
        time.sleep(step)
        now = rss_kb(pids)
        if now != last:
            last, since = now, time.time()
        elif time.time() - since >= seconds:
            break
    return last


def open_used(addr, n, exchange):
    """`n` connections to `addr`, each after one request and its response
    (`exchange`: what sends the request, what reads the response), `BATCH`
    at a time: a batch's requests all go out before its answers are read."""
    send, finish = exchange
    host, port = addr.rsplit(":", 1)
    held = []
    for start in range(0, n, BATCH):
        batch = []
        for _ in range(min(BATCH, n - start)):
            s = socket.create_connection((host, int(port)), timeout=10)
            send(s)
            batch.append(s)
        for s in batch:
            try:
                finish(s)
            except RuntimeError as e:
                raise RuntimeError(f"{addr}: {e}") from None
        held.extend(batch)
    return held


# HTTP/2 with prior knowledge, by hand (no library): the preface, empty
# SETTINGS, and one GET as HEADERS (END_STREAM | END_HEADERS, stream 1) whose
# block is HPACK's static entries for :method GET, :scheme http and :path /,
# and :authority "bench" as a literal.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
H2_SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
H2_BLOCK = b"\x82\x86\x84\x41\x05bench"
H2_GET = len(H2_BLOCK).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x01" + H2_BLOCK


def h2_send(s):
    s.sendall(H2_PREFACE + H2_SETTINGS + H2_GET)


def h2_finish(s):
    """Reads until stream 1 ends, answering the server's SETTINGS as a
    client must."""
    buf = b""
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError(f"closed before stream 1 ended: {buf[:200]!r}")
            buf += chunk
        length, kind, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
        stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        buf = buf[9 + length:]
        if kind == 0x4 and not flags & 0x1:
            s.sendall(H2_SETTINGS_ACK)
        if kind == 0x7:
            raise RuntimeError("GOAWAY before stream 1 ended")
        if stream == 1 and kind in (0x0, 0x1) and flags & 0x1:
            return


def h1_send(s):
    s.sendall(REQUEST)


def h1_finish(s):
    got = b""
    while not got.endswith(BODY):
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError(f"closed a connection before answering: {got[:200]!r}")
        got += chunk
    if not got.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"answered {got[:200]!r}")


def held_hook(who, pids, phase):
    """Runs HELD_HOOK, if set, for this contender and phase."""
    hook = os.environ.get("HELD_HOOK")
    if hook:
        cmd = hook.replace("{pid}", str(pids[0])).replace("{who}", who).replace("{phase}", phase)
        subprocess.run(cmd, shell=True, check=False)


def measure(who, pids, addr, conns, settle, exchange):
    """One contender, one kind: RSS before, held and after, in KB."""
    before = settled_rss(pids, seconds=1.0)
    fds_before = open_fds(pids)
    held_hook(who, pids, "before")
    held = open_used(addr, conns, exchange)
    try:
        # Three still seconds: a quiet connection parks after one to two
        # (meshd) and the allocator hands back what it freed a second later.
        with_held = settled_rss(pids, seconds=3.0)
        fds = open_fds(pids) - fds_before
        held_hook(who, pids, "held")
    finally:
        for s in held:
            s.close()
    grown = max(with_held - before, 0)
    deadline, after, took = time.time() + settle, rss_kb(pids), None
    start = time.time()
    while time.time() < deadline:
        after = rss_kb(pids)
        if after <= before + grown / 10:
            took = time.time() - start
            break
        time.sleep(0.25)
    return {"before": before, "held": with_held, "per_conn": (with_held - before) / conns,
            "after": after, "took": took, "fds": fds}


def run(new_bench, kinds, log):
    """kinds: {kind: {contender: address}}; each kind runs on freshly started
    proxies (`new_bench()`), so that one kind's peak is not the next one's
    floor. Prints the table; returns the results."""
    conns = int(os.environ.get("CONNS", "5000"))
    settle = float(os.environ.get("SETTLE", "10"))
    results = {}
    for kind, addrs in kinds.items():
        bench = new_bench()
        try:
            bench.start()
            for who, addr in addrs.items():
                if who == "meshd_b" and not bench.meshd_b:
                    continue
                exchange = (h2_send, h2_finish) if kind == "h2" else (h1_send, h1_finish)
                r = measure(who, bench.pids(who), addr, conns, settle, exchange)
                results[(kind, who)] = r
                took = f"{r['took']:.1f}s" if r["took"] is not None else f"not within {settle:.0f}s"
                log(f"memory {kind:5} {who:8} before {r['before']} KB  held {r['held']} KB  "
                    f"{r['per_conn']:.2f} KB/conn  +{r['fds']} fds  after close {r['after']} KB (given back: {took})")
        finally:
            bench.stop()
    print(f"### memory ({conns} idle connections held, each after one request; RSS from /proc)\n")
    print("| kind | contender | RSS before | RSS with all held | per connection | descriptors added | "
          "RSS after close | given back within 10% |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (kind, who), r in results.items():
        took = f"{r['took']:.1f} s" if r["took"] is not None else f"no ({settle:.0f} s)"
        print(f"| {kind} | {who} | {r['before'] / 1024:.1f} MB | {r['held'] / 1024:.1f} MB | "
              f"{r['per_conn']:.2f} KB | {r['fds']} | {r['after'] / 1024:.1f} MB | {took} |")
    print()
    for kind in kinds:
        hp = results.get((kind, "haproxy"))
        for who in ("meshd", "meshd_b"):
            m = results.get((kind, who))
            if m and hp:
                print(f"- {kind}: {who}/HAProxy per connection: **{m['per_conn'] / max(hp['per_conn'], 1e-9):.2f}x** "
                      f"({m['per_conn']:.2f} KB vs {hp['per_conn']:.2f} KB); RSS after close minus before: "
                      f"{who} {(m['after'] - m['before']) / 1024:.1f} MB, HAProxy {(hp['after'] - hp['before']) / 1024:.1f} MB")
    print()
    return results
