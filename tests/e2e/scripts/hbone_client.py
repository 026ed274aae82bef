#!/usr/bin/python3
"""An HBONE client independent of nodemesh, for the security and interop e2e tests.

Run with Debian's /usr/bin/python3 (python3-h2 over the standard ssl module) inside a pod's
network namespace. Speaks to an agent's port 15008 either correctly (mTLS 1.3, ALPN h2,
HTTP/2 CONNECT, see tests/e2e/hbone_security_test.cc) or in one of several broken ways, and
ends with one JSON line {"event": "result", "mode": ..., ...} describing what the server did
("stall" prints {"event": "stalled"} first). The exit status is 0 whenever the result line was
printed: the test judges the fields.

Modes:
  probe        TLS handshake, then the HTTP/2 preface + SETTINGS; reports whether the server
               answered with HTTP/2 bytes or closed the connection
  garbage      --bytes N --seed S [--tls-record]: random bytes instead of a ClientHello
  stall        the first half of a real ClientHello, then nothing; waits for the close
  connect      --authority A [--send N --expect M --seed S]: a CONNECT stream carrying the
               nm-testapp stream format (tests/e2e/testapp/stream.h) both ways
  get          a GET request instead of CONNECT
  huge-header  --header-bytes N: a CONNECT whose header block holds one N-byte value
  data-first   a DATA frame on stream 1 before any HEADERS
  no-preface   an HTTP/1.1 request instead of the HTTP/2 client preface
  ping-flood   --count N [--hold S]: N PING frames as fast as the server takes them, never
               reading; prints {"event": "flooding"} when it stops (all sent, or the server
               stopped reading for --timeout s), waits --hold s, then reads everything to the
               close: the PING ACKs it got and the GOAWAY code
  rapid-reset  --count N: CONNECTs to --authority, each reset (CANCEL) in the same write, 100
               per write; reports how many were sent and the GOAWAY code
  fill         --count N --duration S: N CONNECT streams to --authority at a time, written into
               as fast as the windows allow for S seconds, never reading; a refused, reset or
               ended stream is replaced; reports the counts and the bytes sent
"""

import argparse
import json
import random
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions

MASK64 = (1 << 64) - 1
NMT_MAGIC = 0x4E4D5431  # "NMT1"


def prng_bytes(seed, n):
    """n bytes of nm-testapp's PrngStream(seed): splitmix64 words, little-endian."""
    out = bytearray()
    state = seed & MASK64
    while len(out) < n:
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        out += z.to_bytes(8, "little")
    return bytes(out[:n])


def split_host_port(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def tls_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    # The server's certificate carries only a spiffe:// URI SAN: no host name to check. The
    # chain is still verified against the cluster root when --ca is given.
    ctx.check_hostname = False
    if args.ca:
        ctx.load_verify_locations(cafile=args.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def describe_exception(exc):
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, socket.timeout):
        return "timeout"
    if isinstance(exc, ssl.SSLError):
        return "ssl error: " + str(exc)
    return type(exc).__name__ + ": " + str(exc)


def read_until_closed(sock, timeout):
    """Reads until EOF, an error or the timeout; returns (how, bytes received)."""
    sock.settimeout(timeout)
    received = 0
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout", received
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except (OSError, ssl.SSLError) as exc:
            return describe_exception(exc), received
        if not data:
            return "eof", received
        received += len(data)


def server_identity(tls_sock):
    cert = tls_sock.getpeercert()
    if not cert:
        return ""
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "URI":
            return value
    return ""


def open_tls(args, result):
    """TCP + TLS; returns the TLS socket, or None with result["handshake"] set to the error."""
    host, port = split_host_port(args.to)
    raw = socket.create_connection((host, port), timeout=args.timeout)
    result["local"] = "%s:%d" % raw.getsockname()[:2]
    try:
        tls = tls_context(args).wrap_socket(raw, server_hostname=None)
    except (OSError, ssl.SSLError) as exc:
        result["handshake"] = describe_exception(exc)
        raw.close()
        return None
    result["handshake"] = "ok"
    result["version"] = tls.version()
    result["alpn"] = tls.selected_alpn_protocol() or ""
    result["cipher"] = tls.cipher()[0]
    result["server_identity"] = server_identity(tls)
    return tls


class H2Client:
    """python-h2 over a TLS socket, with the event handling the modes share."""

    def __init__(self, tls, timeout):
        # python-h2 insists on :scheme and :path in every request, classic CONNECT included
        # (RFC 9113 §8.5 forbids them there): its outbound header validation is off, and
        # every request below is spelled out by hand.
        config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                           header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.sock = tls
        self.timeout = timeout
        self.status = None
        self.response_headers = {}
        self.body = bytearray()
        self.ended = False
        self.reset_code = None
        self.goaway_code = None
        self.closed = None  # how the transport ended: eof, reset, ssl error, ...
        self.protocol_error = None

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(self):
        self.conn.initiate_connection()
        self.flush()

    def read_once(self, deadline):
        """One socket read and its events; False when the connection is over."""
        if self.closed is not None:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self.closed = "timeout"
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (OSError, ssl.SSLError) as exc:
            self.closed = describe_exception(exc)
            return False
        if not data:
            self.closed = "eof"
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.protocol_error = str(exc)
            self.closed = "client protocol error"
            return False
        for event in events:
            self.handle(event)
        try:
            self.flush()
        except (OSError, ssl.SSLError) as exc:
            self.closed = describe_exception(exc)
            return False
        return True

    def handle(self, event):
        if isinstance(event, h2.events.ResponseReceived):
            headers = {k.decode(): v.decode() for k, v in event.headers}
            self.response_headers = headers
            self.status = int(headers.get(":status", "0"))
        elif isinstance(event, h2.events.DataReceived):
            self.body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.reset_code = int(event.error_code)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway_code = int(event.error_code)

    def wait(self, predicate):
        deadline = time.monotonic() + self.timeout
        while not predicate():
            if not self.read_once(deadline):
                return False
        return True

    def stream_done(self):
        return (self.ended or self.reset_code is not None or self.goaway_code is not None)

    def send_all(self, stream_id, data):
        """Sends data within the peer's flow-control windows; False if the stream died."""
        deadline = time.monotonic() + self.timeout
        offset = 0
        while offset < len(data):
            if self.reset_code is not None or self.goaway_code is not None:
                return False
            window = min(self.conn.local_flow_control_window(stream_id),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                if not self.read_once(deadline):
                    return False
                continue
            chunk = data[offset:offset + window]
            self.conn.send_data(stream_id, chunk)
            offset += len(chunk)
            self.flush()
        return True

    def report(self, result):
        result["status"] = self.status
        result["stream_ended"] = self.ended
        result["stream_reset"] = self.reset_code
        result["goaway"] = self.goaway_code
        result["closed"] = self.closed
        if self.protocol_error:
            result["protocol_error"] = self.protocol_error


def connect_headers(authority, extra=()):
    return [(b":method", b"CONNECT"), (b":authority", authority.encode())] + list(extra)


# ---- modes ----


def mode_probe(args, result):
    tls = open_tls(args, result)
    if tls is None:
        return
    # In TLS 1.3 the client's handshake completes before the server has checked the client's
    # certificate: a refusal shows up on the first read.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    try:
        conn.initiate_connection()
        tls.sendall(conn.data_to_send())
    except (OSError, ssl.SSLError) as exc:
        result["closed"] = describe_exception(exc)
        result["received"] = 0
        return
    tls.settimeout(args.timeout)
    try:
        data = tls.recv(65536)
    except (OSError, ssl.SSLError) as exc:
        result["closed"] = describe_exception(exc)
        result["received"] = 0
        return
    result["received"] = len(data)
    if not data:
        result["closed"] = "eof"
        return
    try:
        events = conn.receive_data(data)
    except h2.exceptions.ProtocolError as exc:
        result["closed"] = "client protocol error: " + str(exc)
        return
    result["h2_settings"] = any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events)
    # What the server announced: its SETTINGS (by identifier) and its connection window's
    # first WINDOW_UPDATE.
    settings = {}
    for event in events:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            for key, change in event.changed_settings.items():
                settings[str(int(key))] = change.new_value
        elif isinstance(event, h2.events.WindowUpdated) and event.stream_id == 0:
            result["connection_window_increment"] = event.delta
    result["settings"] = settings
    result["closed"] = None


def mode_idle(args, result):
    """Opens an authenticated HTTP/2 connection, opens no stream, and waits for the server to
    end it: "goaway" says whether a GOAWAY came first, "seconds" how long it took."""
    tls = open_tls(args, result)
    if tls is None:
        return
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    start = time.monotonic()
    deadline = start + args.timeout
    result["goaway"] = False
    result["closed"] = "timeout"
    while time.monotonic() < deadline:
        tls.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            data = tls.recv(65536)
        except socket.timeout:
            break
        except (OSError, ssl.SSLError) as exc:
            result["closed"] = describe_exception(exc)
            break
        if not data:
            result["closed"] = "eof"
            break
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            result["closed"] = "client protocol error: " + str(exc)
            break
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated):
                result["goaway"] = True
                result["goaway_error"] = int(event.error_code)
        pending = conn.data_to_send()
        if pending:
            try:
                tls.sendall(pending)
            except (OSError, ssl.SSLError):
                pass
    result["seconds"] = round(time.monotonic() - start, 3)


def mode_refused_flood(args, result):
    """--count CONNECT requests to --authority, 50 at a time on one connection: "statuses"
    counts the answers by status."""
    tls = open_tls(args, result)
    if tls is None:
        return
    client = H2Client(tls, args.timeout)
    client.start()
    statuses = {}
    answered = [0]

    handle = client.handle

    def on_event(event):
        if isinstance(event, h2.events.ResponseReceived):
            status = dict(event.headers).get(b":status", b"0").decode()
            statuses[status] = statuses.get(status, 0) + 1
            answered[0] += 1
        else:
            handle(event)

    client.handle = on_event
    sent = 0
    while sent < args.count and client.closed is None:
        batch = min(50, args.count - sent)
        for _ in range(batch):
            stream_id = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream_id, connect_headers(args.authority))
        client.flush()
        sent += batch
        if not client.wait(lambda: answered[0] >= sent):
            break
    result["sent"] = sent
    result["statuses"] = statuses
    result["closed"] = client.closed
    result["goaway"] = client.goaway_code


def scan_frames(data):
    """Frames in a plaintext HTTP/2 byte stream: (PING ACKs, last GOAWAY code or None, rest)."""
    acks = 0
    goaway = None
    offset = 0
    while len(data) - offset >= 9:
        length = int.from_bytes(data[offset:offset + 3], "big")
        if len(data) - offset < 9 + length:
            break
        kind, flags = data[offset + 3], data[offset + 4]
        payload = data[offset + 9:offset + 9 + length]
        if kind == 0x6 and flags & 0x1:
            acks += 1
        elif kind == 0x7 and length >= 8:
            goaway = int.from_bytes(payload[4:8], "big")
        offset += 9 + length
    return acks, goaway, data[offset:]


def mode_ping_flood(args, result):
    tls = open_tls(args, result)
    if tls is None:
        return
    client = H2Client(tls, args.timeout)
    client.start()
    ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"flooding"
    batch = ping * 1000
    sent = 0
    tls.settimeout(args.timeout)
    start = time.monotonic()
    try:
        while sent < args.count:
            tls.sendall(batch)
            sent += 1000
        result["stopped"] = "all sent"
    except (OSError, ssl.SSLError) as exc:
        # A timeout: the server stopped reading (its receive buffer and ours are full).
        result["stopped"] = describe_exception(exc)
    result["pings_sent"] = sent
    result["send_seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps({"event": "flooding", "pings_sent": sent}), flush=True)
    time.sleep(args.hold)
    # Everything the server wrote, in order: its SETTINGS, the ACKs, then (if it gave up) a
    # GOAWAY and the close.
    acks = 0
    goaway = None
    pending = b""
    tls.settimeout(args.timeout)
    while True:
        try:
            data = tls.recv(1 << 20)
        except (OSError, ssl.SSLError) as exc:
            result["closed"] = describe_exception(exc)
            break
        if not data:
            result["closed"] = "eof"
            break
        got_acks, got_goaway, pending = scan_frames(pending + data)
        acks += got_acks
        goaway = got_goaway if got_goaway is not None else goaway
    result["acks_received"] = acks
    result["goaway"] = goaway
    tls.close()


def mode_rapid_reset(args, result):
    tls = open_tls(args, result)
    if tls is None:
        return
    client = H2Client(tls, args.timeout)
    client.start()
    sent = 0
    try:
        while sent < args.count and client.closed is None and client.goaway_code is None:
            for _ in range(min(100, args.count - sent)):
                stream_id = client.conn.get_next_available_stream_id()
                client.conn.send_headers(stream_id, connect_headers(args.authority))
                client.conn.reset_stream(stream_id, error_code=8)  # CANCEL
                sent += 1
            client.flush()
            # Whatever the server said meanwhile (a GOAWAY ends the loop), without waiting.
            client.read_once(time.monotonic() + 0.01)
            if client.closed == "timeout":
                client.closed = None
    except (OSError, ssl.SSLError, h2.exceptions.ProtocolError) as exc:
        client.closed = describe_exception(exc)
    if client.goaway_code is None and client.closed is None:
        client.wait(lambda: client.goaway_code is not None)
    result["sent"] = sent
    result["goaway"] = client.goaway_code
    result["closed"] = client.closed
    tls.close()


def mode_fill(args, result):
    """Keeps --count CONNECT streams to --authority open for --duration seconds and writes into
    them as fast as the windows allow, never reading the application's side. Against an
    application that does not read, the server holds whatever the windows let through. A
    stream the server refuses, resets or ends is replaced by a new one."""
    tls = open_tls(args, result)
    if tls is None:
        return
    config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                       header_encoding=None)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    streams = {}  # stream id -> answered 200
    counts = {"opened": 0, "accepted": 0, "refused": 0, "reset": 0, "ended": 0}
    statuses = {}
    sent = 0
    goaway = None
    chunk = b"\x5a" * 16384

    def open_stream():
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, connect_headers(args.authority))
        streams[stream_id] = False
        counts["opened"] += 1

    for _ in range(args.count):
        open_stream()
    deadline = time.monotonic() + args.duration
    try:
        tls.sendall(conn.data_to_send())
        while time.monotonic() < deadline and goaway is None:
            for stream_id, answered in list(streams.items()):
                if not answered:
                    continue
                while True:
                    window = min(conn.local_flow_control_window(stream_id),
                                 conn.max_outbound_frame_size, len(chunk))
                    if window <= 0:
                        break
                    conn.send_data(stream_id, chunk[:window])
                    sent += window
            data = conn.data_to_send()
            if data:
                tls.settimeout(args.timeout)
                tls.sendall(data)
            tls.settimeout(0.1)
            try:
                incoming = tls.recv(65536)
            except socket.timeout:
                continue
            if not incoming:
                result["closed"] = "eof"
                break
            for event in conn.receive_data(incoming):
                stream_id = getattr(event, "stream_id", None)
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers).get(b":status", b"0"))
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                    if status == 200:
                        streams[stream_id] = True
                        counts["accepted"] += 1
                    else:
                        counts["refused"] += 1
                        streams.pop(stream_id, None)
                        if not event.stream_ended:
                            conn.reset_stream(stream_id)
                        open_stream()
                elif isinstance(event, h2.events.StreamReset):
                    if streams.pop(stream_id, None) is not None:
                        counts["reset"] += 1
                        open_stream()
                elif isinstance(event, h2.events.StreamEnded):
                    if streams.pop(stream_id, None) is not None:
                        counts["ended"] += 1
                        conn.reset_stream(stream_id)
                        open_stream()
                elif isinstance(event, h2.events.ConnectionTerminated):
                    goaway = int(event.error_code)
            data = conn.data_to_send()
            if data:
                tls.settimeout(args.timeout)
                tls.sendall(data)
    except (OSError, ssl.SSLError) as exc:
        result["closed"] = describe_exception(exc)
    except h2.exceptions.ProtocolError as exc:
        result["protocol_error"] = str(exc)
    result.update(counts)
    result["statuses"] = statuses
    result["bytes_sent"] = sent
    result["goaway"] = goaway
    tls.close()


def mode_garbage(args, result):
    rng = random.Random(args.seed)
    payload = bytes(rng.getrandbits(8) for _ in range(args.bytes))
    if args.tls_record:
        # A handshake record announcing a ClientHello whose body is noise.
        body = payload[:1024]
        hello = b"\x01" + struct.pack(">I", len(body))[1:] + body
        payload = b"\x16\x03\x01" + struct.pack(">H", len(hello)) + hello
    host, port = split_host_port(args.to)
    sock = socket.create_connection((host, port), timeout=args.timeout)
    start = time.monotonic()
    try:
        sock.sendall(payload)
    except OSError as exc:
        result["closed"] = describe_exception(exc)
    else:
        result["closed"], result["received"] = read_until_closed(sock, args.timeout)
    result["seconds"] = round(time.monotonic() - start, 3)
    result["sent"] = len(payload)
    sock.close()


def client_hello(args):
    """The bytes of a real TLS 1.3 ClientHello (ALPN h2), made with a memory BIO."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = tls_context(args).wrap_bio(incoming, outgoing, server_hostname=None)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def mode_stall(args, result):
    hello = client_hello(args)
    part = hello[:len(hello) // 2]
    host, port = split_host_port(args.to)
    sock = socket.create_connection((host, port), timeout=args.timeout)
    result["local"] = "%s:%d" % sock.getsockname()[:2]
    sock.sendall(part)
    print(json.dumps({"event": "stalled", "sent": len(part), "hello": len(hello)}), flush=True)
    start = time.monotonic()
    result["closed"], result["received"] = read_until_closed(sock, args.timeout)
    result["seconds"] = round(time.monotonic() - start, 3)
    sock.close()


def mode_stall_many(args, result):
    """--count connections that each send half a ClientHello and stall; after --timeout
    seconds: how many the server had closed ("closed") and how many are still open."""
    hello = client_hello(args)
    part = hello[:len(hello) // 2]
    host, port = split_host_port(args.to)
    socks = []
    for _ in range(args.count):
        sock = socket.create_connection((host, port), timeout=args.timeout)
        sock.sendall(part)
        sock.setblocking(False)
        socks.append(sock)
    print(json.dumps({"event": "stalled", "count": len(socks)}), flush=True)
    time.sleep(args.timeout)
    closed = 0
    for sock in socks:
        try:
            data = sock.recv(1)
            if not data:
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        sock.close()
    result["closed"] = closed
    result["open"] = len(socks) - closed


def mode_connect(args, result):
    tls = open_tls(args, result)
    if tls is None:
        return
    client = H2Client(tls, args.timeout)
    start = time.monotonic()
    try:
        client.start()
        extra = [(b"forwarded", args.forwarded.encode())] if args.forwarded else []
        stream_id = client.conn.get_next_available_stream_id()
        client.conn.send_headers(stream_id, connect_headers(args.authority, extra))
        client.flush()
        client.wait(lambda: client.status is not None or client.stream_done())
        result["response_headers"] = client.response_headers
        if client.status == 200 and not client.stream_done():
            header = struct.pack(">IIII", NMT_MAGIC, args.seed, args.send, args.expect)
            payload = header + prng_bytes(args.seed, args.send)
            if client.send_all(stream_id, payload):
                client.conn.end_stream(stream_id)
                client.flush()
                result["sent"] = len(payload)
            client.wait(client.stream_done)
            expected = prng_bytes(args.seed + 1, args.expect)
            result["received"] = len(client.body)
            result["received_ok"] = bytes(client.body) == expected
        else:
            # A refusal: the server ends (or resets) the stream after the status.
            client.wait(client.stream_done)
    except (OSError, ssl.SSLError) as exc:
        client.closed = describe_exception(exc)
    client.report(result)
    result["seconds"] = round(time.monotonic() - start, 3)
    tls.close()


def mode_request(args, result, headers, end_stream):
    tls = open_tls(args, result)
    if tls is None:
        return
    client = H2Client(tls, args.timeout)
    try:
        client.start()
        stream_id = client.conn.get_next_available_stream_id()
        client.conn.send_headers(stream_id, headers, end_stream=end_stream)
        client.flush()
        result["request_bytes"] = sum(len(k) + len(v) for k, v in headers)
        client.wait(client.stream_done)
    except (OSError, ssl.SSLError) as exc:
        client.closed = describe_exception(exc)
    client.report(result)
    tls.close()


def mode_get(args, result):
    headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"),
               (b":authority", args.authority.encode())]
    mode_request(args, result, headers, end_stream=True)


def mode_huge_header(args, result):
    headers = connect_headers(args.authority, [(b"x-huge", b"h" * args.header_bytes)])
    mode_request(args, result, headers, end_stream=False)


def mode_data_first(args, result):
    tls = open_tls(args, result)
    if tls is None:
        return
    client = H2Client(tls, args.timeout)
    try:
        client.start()
        # DATA (type 0) on stream 1, which is idle: a connection error of type PROTOCOL_ERROR
        # (RFC 9113 §5.1, §6.1). Written raw, behind python-h2's back.
        payload = b"hello"
        frame = struct.pack(">I", len(payload))[1:] + b"\x00\x00" + struct.pack(">I", 1) + payload
        tls.sendall(frame)
        client.wait(lambda: client.goaway_code is not None)
    except (OSError, ssl.SSLError) as exc:
        client.closed = describe_exception(exc)
    client.report(result)
    if client.closed is None:
        # GOAWAY received: the server must also stop talking on this connection.
        client.wait(lambda: False)
        result["closed"] = client.closed
    tls.close()


def mode_no_preface(args, result):
    tls = open_tls(args, result)
    if tls is None:
        return
    try:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: " + args.authority.encode() + b"\r\n\r\n")
    except (OSError, ssl.SSLError) as exc:
        result["closed"] = describe_exception(exc)
        tls.close()
        return
    # Anything before the close is at most the server's SETTINGS and a GOAWAY.
    result["closed"], result["received"] = read_until_closed(tls, args.timeout)
    tls.close()


MODES = {
    "probe": mode_probe,
    "garbage": mode_garbage,
    "stall": mode_stall,
    "connect": mode_connect,
    "get": mode_get,
    "huge-header": mode_huge_header,
    "data-first": mode_data_first,
    "no-preface": mode_no_preface,
    "idle": mode_idle,
    "stall-many": mode_stall_many,
    "refused-flood": mode_refused_flood,
    "ping-flood": mode_ping_flood,
    "rapid-reset": mode_rapid_reset,
    "fill": mode_fill,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--to", required=True, help="ip:port of the HBONE listener")
    parser.add_argument("--ca", default="", help="trust root (PEM) for the server's chain")
    parser.add_argument("--cert", default="", help="client certificate (PEM)")
    parser.add_argument("--key", default="", help="client private key (PEM)")
    parser.add_argument("--authority", default="", help="CONNECT :authority")
    parser.add_argument("--forwarded", default="", help="a forwarded header to send")
    parser.add_argument("--send", type=int, default=0, help="payload bytes to the app")
    parser.add_argument("--expect", type=int, default=0, help="payload bytes from the app")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=100, help="requests (refused-flood)")
    parser.add_argument("--bytes", type=int, default=4096, help="garbage bytes")
    parser.add_argument("--tls-record", action="store_true", help="garbage inside a record")
    parser.add_argument("--header-bytes", type=int, default=32768)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per wait")
    parser.add_argument("--hold", type=float, default=0.0, help="ping-flood: seconds before reading")
    parser.add_argument("--duration", type=float, default=5.0, help="fill: seconds of writing")
    args = parser.parse_args()
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")

    result = {"event": "result", "mode": args.mode, "to": args.to}
    try:
        MODES[args.mode](args, result)
    except (OSError, ssl.SSLError) as exc:
        result["error"] = describe_exception(exc)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
