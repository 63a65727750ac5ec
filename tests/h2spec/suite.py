#!/usr/bin/env python3
"""A frame-level HTTP/2 conformance suite for meshd (h2spec is not packaged
where we can reach it). Each case opens a raw connection, sends frames built
with hyperframe/hpack, and checks the server's answer against the RFC 9113
section it names. Prints one line per case; exits 1 if any case fails.

usage: suite.py HOST PORT [--tls CAFILE --sni NAME]
"""

import socket
import ssl
import sys
import time

from hpack import Encoder
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR, COMPRESSION_ERROR = 0x1, 0x3, 0x5, 0x6, 0x9


class Conn:
    def __init__(self, args):
        host, port = args["host"], args["port"]
        raw = socket.create_connection((host, port), timeout=3)
        if args.get("ca"):
            ctx = ssl.create_default_context(cafile=args["ca"])
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(raw, server_hostname=args["sni"])
            assert self.sock.selected_alpn_protocol() == "h2", "ALPN did not select h2"
        else:
            self.sock = raw
        self.buf = b""
        self.enc = Encoder()

    def send(self, *frames_or_bytes):
        for f in frames_or_bytes:
            self.sock.sendall(f if isinstance(f, bytes) else f.serialize())

    def handshake(self):
        self.send(PREFACE, SettingsFrame(0))
        # Wait for the server's SETTINGS and its ACK of ours.
        seen_settings = seen_ack = False
        while not (seen_settings and seen_ack):
            f = self.next()
            if f is None:
                raise AssertionError("connection closed during the handshake")
            if isinstance(f, SettingsFrame):
                if "ACK" in f.flags:
                    seen_ack = True
                else:
                    seen_settings = True
                    self.send(SettingsFrame(0, flags=["ACK"]))

    def next(self, timeout=3.0):
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) >= 9 + length:
                    f.parse_body(memoryview(self.buf[9:9 + length]))
                    self.buf = self.buf[9 + length:]
                    return f
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLError, ConnectionResetError, OSError):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def expect(self, pred, timeout=3.0):
        """Frames until one matches `pred`, or None when the connection closes first."""
        end = time.time() + timeout
        while time.time() < end:
            f = self.next(max(0.1, end - time.time()))
            if f is None:
                return None
            if pred(f):
                return f
        return None

    def headers(self, stream, extra=(), end_stream=True):
        hdrs = [(":method", "GET"), (":scheme", "https" if isinstance(self.sock, ssl.SSLSocket) else "http"),
                (":path", "/"), (":authority", "h2spec.test")] + list(extra)
        flags = ["END_HEADERS"] + (["END_STREAM"] if end_stream else [])
        return HeadersFrame(stream, self.enc.encode(hdrs), flags=flags)


def goaway_or_close(c, code):
    """A connection error: GOAWAY with `code` (RFC 9113 5.4.1), or the connection closed."""
    f = c.expect(lambda f: isinstance(f, GoAwayFrame))
    return f is None or f.error_code == code


def stream_error(c, stream, codes):
    """A stream error: RST_STREAM with one of `codes`, or a connection error with one of them."""
    f = c.expect(lambda f: (isinstance(f, RstStreamFrame) and f.stream_id == stream) or isinstance(f, GoAwayFrame))
    if f is None:
        return True
    return f.error_code in codes


def case_preface(a):
    """3.4: a client that does not start with the preface gets a connection error."""
    c = Conn(a)
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", SettingsFrame(0))
    f = c.expect(lambda f: isinstance(f, GoAwayFrame))
    return f is None or f.error_code == PROTOCOL_ERROR


def case_server_settings_first(a):
    """3.4: the server's preface is a SETTINGS frame."""
    c = Conn(a)
    c.send(PREFACE, SettingsFrame(0))
    f = c.next()
    return isinstance(f, SettingsFrame) and "ACK" not in f.flags


def case_settings_ack(a):
    """6.5.3: SETTINGS are acknowledged."""
    c = Conn(a)
    c.handshake()
    c.send(SettingsFrame(0, settings={SettingsFrame.MAX_CONCURRENT_STREAMS: 50}))
    return c.expect(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags) is not None


def case_settings_ack_with_payload(a):
    """6.5: a SETTINGS ACK with a payload is a FRAME_SIZE_ERROR."""
    c = Conn(a)
    c.handshake()
    bad = SettingsFrame(0, flags=["ACK"])
    raw = bytearray(bad.serialize())
    raw[0:3] = (6).to_bytes(3, "big")
    c.send(bytes(raw) + b"\x00\x03\x00\x00\x00\x01")
    return goaway_or_close(c, FRAME_SIZE_ERROR)


def case_initial_window_too_large(a):
    """6.5.2: SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 is a FLOW_CONTROL_ERROR."""
    c = Conn(a)
    c.handshake()
    c.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 2**31}))
    return goaway_or_close(c, FLOW_CONTROL_ERROR)


def case_max_frame_size_out_of_range(a):
    """6.5.2: SETTINGS_MAX_FRAME_SIZE below 16384 is a PROTOCOL_ERROR."""
    c = Conn(a)
    c.handshake()
    c.send(SettingsFrame(0, settings={SettingsFrame.MAX_FRAME_SIZE: 1024}))
    return goaway_or_close(c, PROTOCOL_ERROR)


def case_ping(a):
    """6.7: a PING is answered with an ACK carrying the same payload."""
    c = Conn(a)
    c.handshake()
    c.send(PingFrame(0, opaque_data=b"palisade"))
    f = c.expect(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
    return f is not None and f.opaque_data == b"palisade"


def case_get(a):
    """8.1: a GET gets a response HEADERS with :status 200, then the body."""
    c = Conn(a)
    c.handshake()
    c.send(c.headers(1))
    f = c.expect(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1)
    if f is None:
        return False
    from hpack import Decoder
    hdrs = dict(Decoder().decode(f.data))
    status = hdrs.get(":status") or hdrs.get(b":status")
    return status in ("200", b"200")


def case_even_stream_id(a):
    """5.1.1: a client stream with an even id is a PROTOCOL_ERROR."""
    c = Conn(a)
    c.handshake()
    c.send(c.headers(2))
    return goaway_or_close(c, PROTOCOL_ERROR)


def case_decreasing_stream_id(a):
    """5.1.1: a new stream id lower than one already used is a PROTOCOL_ERROR."""
    c = Conn(a)
    c.handshake()
    c.send(c.headers(5))
    c.expect(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 5)
    c.send(c.headers(3))
    return goaway_or_close(c, PROTOCOL_ERROR)


def case_data_on_stream_zero(a):
    """6.1: DATA on stream 0 is a PROTOCOL_ERROR."""
    c = Conn(a)
    c.handshake()
    # hyperframe refuses to build this frame, so write its 9-byte header by hand.
    c.send(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
    return goaway_or_close(c, PROTOCOL_ERROR)


def case_zero_window_update(a):
    """6.9: a WINDOW_UPDATE of 0 on the connection is a PROTOCOL_ERROR."""
    c = Conn(a)
    c.handshake()
    raw = WindowUpdateFrame(0, window_increment=1).serialize()
    c.send(raw[:9] + b"\x00\x00\x00\x00")
    return goaway_or_close(c, PROTOCOL_ERROR)


def case_window_overflow(a):
    """6.9.1: a WINDOW_UPDATE that takes the window above 2^31-1 is a FLOW_CONTROL_ERROR."""
    c = Conn(a)
    c.handshake()
    c.send(WindowUpdateFrame(0, window_increment=2**31 - 1))
    return goaway_or_close(c, FLOW_CONTROL_ERROR)


def case_rst_on_idle_stream(a):
    """6.4: RST_STREAM on an idle stream is a PROTOCOL_ERROR."""
    c = Conn(a)
    c.handshake()
    c.send(RstStreamFrame(7, error_code=0))
    return goaway_or_close(c, PROTOCOL_ERROR)


def case_continuation_without_headers(a):
    """6.10: CONTINUATION not preceded by HEADERS is a PROTOCOL_ERROR."""
    c = Conn(a)
    c.handshake()
    c.send(ContinuationFrame(1, c.enc.encode([("x-a", "b")]), flags=["END_HEADERS"]))
    return goaway_or_close(c, PROTOCOL_ERROR)


def case_bad_hpack(a):
    """4.3: a header block that does not decode is a COMPRESSION_ERROR."""
    c = Conn(a)
    c.handshake()
    # An indexed header field with an index far beyond both tables.
    c.send(HeadersFrame(1, b"\xff\xff\xff\xff\x0f", flags=["END_HEADERS", "END_STREAM"]))
    return goaway_or_close(c, COMPRESSION_ERROR)


def case_oversized_frame(a):
    """4.2: a frame above SETTINGS_MAX_FRAME_SIZE (16384 by default) is a FRAME_SIZE_ERROR."""
    c = Conn(a)
    c.handshake()
    c.send(c.headers(1, end_stream=False))
    c.send(DataFrame(1, b"x" * 20000))
    return stream_error(c, 1, (FRAME_SIZE_ERROR,))


def case_connection_specific_header(a):
    """8.2.2: a connection-specific header field makes the request malformed."""
    c = Conn(a)
    c.handshake()
    c.send(c.headers(1, extra=[("connection", "keep-alive")]))
    return stream_error(c, 1, (PROTOCOL_ERROR,))


def case_data_after_end_stream(a):
    """5.1: DATA on a half-closed (remote) stream is a STREAM_CLOSED error."""
    c = Conn(a)
    c.handshake()
    c.send(c.headers(1))
    c.send(DataFrame(1, b"late"))
    return stream_error(c, 1, (STREAM_CLOSED, PROTOCOL_ERROR))


def case_goaway(a):
    """6.8: after the client's GOAWAY, the server finishes and closes the connection."""
    c = Conn(a)
    c.handshake()
    c.send(GoAwayFrame(0, last_stream_id=0, error_code=0))
    end = time.time() + 3
    while time.time() < end:
        if c.next(0.5) is None:
            return True
    return False


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]

# Cases where meshd answers with another error code than the RFC names, with
# the reason: listed, not hidden; a listed case that starts passing is
# reported too. None today: the three the h2 crate answered differently
# (COMPRESSION_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR) pass since
# meshd has its own HTTP/2 server.
KNOWN = {}


def main():
    argv = sys.argv[1:]
    if len(argv) < 2:
        print(__doc__)
        return 2
    args = {"host": argv[0], "port": int(argv[1])}
    if "--tls" in argv:
        args["ca"] = argv[argv.index("--tls") + 1]
        args["sni"] = argv[argv.index("--sni") + 1] if "--sni" in argv else argv[0]
    failed = known = 0
    for case in CASES:
        try:
            ok = case(args)
            why = ""
        except Exception as e:  # a case that crashes is a failure, reported with its reason
            ok, why = False, f" ({type(e).__name__}: {e})"
        reason = KNOWN.get(case.__name__)
        if ok and reason:
            label, why = "PASS", " (listed as a known deviation: drop it from KNOWN)"
        elif ok:
            label = "PASS"
        elif reason:
            label, why, known = "KNOWN", f" - {reason}", known + 1
        else:
            label, failed = "FAIL", failed + 1
        print(f"{label:5} RFC 9113 {case.__doc__.strip()}{why}")
    passed = len(CASES) - failed - known
    print(f"{passed}/{len(CASES)} passed, {known} known deviations, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
