#!/usr/bin/env python3
"""Writes the HTTP/2 and HTTP/1.1 seed corpora of fuzz/corpus/ (hbone_server, hbone_client,
http2_server, http1_server): frames built by hand after RFC 9113 (HPACK literals without
indexing, RFC 7541 section 6.2.2), so the seeds do not depend on the code under test. Run from
anywhere; it rewrites the files it owns and leaves other seeds alone."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW, CONT = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(
        ">I", stream) + payload


def hpack(fields):
    out = b""
    for name, value in fields:
        name, value = name.encode(), value.encode()
        out += b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
    return out


def settings(*pairs):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def headers(stream, fields, end_stream=False):
    return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream, hpack(fields))


def data(stream, payload, end_stream=False):
    return frame(DATA, END_STREAM if end_stream else 0, stream, payload)


def connect(stream, authority="10.0.0.1:8080", extra=()):
    return headers(stream, [(":method", "CONNECT"), (":authority", authority)] + list(extra))


CLIENT_START = PREFACE + settings((2, 0), (3, 100), (4, 4194304)) + frame(
    WINDOW, 0, 0, struct.pack(">I", 16711681))
SERVER_START = settings((3, 100), (4, 4194304), (6, 16384)) + frame(SETTINGS, ACK, 0)
HBONE_EXTRA = [("forwarded", 'for="10.0.0.2:5000"'), ("baggage", "k8s.namespace.name=default"),
               ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]

SEEDS = {
    "hbone_server": {
        # One tunnel as a nodemesh client opens it: CONNECT, bytes both ways, half-close.
        "connect_one": CLIENT_START + frame(SETTINGS, ACK, 0) + connect(1, extra=HBONE_EXTRA) +
        data(1, b"GET / HTTP/1.1\r\nHost: cart\r\n\r\n") + data(1, b"", True),
        # Streams 1..13: one of each of the fuzz handler's answers, plus PING, RST_STREAM,
        # WINDOW_UPDATE and GOAWAY.
        "connect_many": CLIENT_START + b"".join(
            connect(s, "10.0.0.%d:80" % s) + data(s, b"x" * s) for s in range(1, 14, 2)) +
        frame(PING, 0, 0, b"12345678") + frame(RST, 0, 3, struct.pack(">I", 8)) +
        frame(WINDOW, 0, 1, struct.pack(">I", 1000)) + data(5, b"", True) +
        frame(GOAWAY, 0, 0, struct.pack(">II", 13, 0)),
        # What the codec answers itself: not a CONNECT, a bad authority, a port 0, IPv6.
        "bad_requests": CLIENT_START + headers(1, [(":method", "GET"), (":scheme", "http"),
                                                   (":path", "/"), (":authority", "a")]) +
        connect(3, "not-an-ip:80") + connect(5, "10.0.0.1:0") + connect(7, "[fd00::1]:8080") +
        data(7, b"v6", True),
        # A header block split over CONTINUATION, and padding.
        "continuation": CLIENT_START +
        frame(HEADERS, 0, 1, hpack([(":method", "CONNECT")])) +
        frame(CONT, END_HEADERS, 1, hpack([(":authority", "10.0.0.1:8080")])) +
        frame(DATA, PADDED, 1, b"\x04abcd\x00\x00\x00\x00"),
    },
    "hbone_client": {
        # The server's answers to the fuzz target's three CONNECTs (streams 1, 3, 5).
        "responses": SERVER_START + headers(1, [(":status", "200")]) +
        data(1, b"HTTP/1.1 200 OK\r\n\r\n") + data(1, b"", True) +
        headers(3, [(":status", "401")], True) + headers(5, [(":status", "200")]) +
        frame(RST, 0, 5, struct.pack(">I", 10)),
        "goaway": SERVER_START + headers(1, [(":status", "200")]) + data(1, b"abc") +
        frame(PING, 0, 0, b"abcdefgh") + frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0)) +
        data(1, b"", True),
        "window": SERVER_START + frame(WINDOW, 0, 0, struct.pack(">I", 65536)) +
        headers(1, [(":status", "200"), ("server", "nodemesh")]) +
        frame(WINDOW, 0, 1, struct.pack(">I", 65536)) + headers(3, [(":status", "503")], True),
    },
    "http2_server": {
        "get": CLIENT_START + headers(1, [(":method", "GET"), (":scheme", "http"),
                                          (":authority", "cart.shop:80"), (":path", "/items?x=1"),
                                          ("user-agent", "curl/7.88"), ("accept", "*/*")], True),
        # Streams 1..9: one of each of the fuzz handler's answers, with bodies and trailers.
        "post_many": CLIENT_START + b"".join(
            headers(s, [(":method", "POST"), (":scheme", "http"), (":authority", "cart"),
                        (":path", "/cart/%d" % s), ("content-length", "5"),
                        ("expect", "100-continue")]) + data(s, b"hello", True)
            for s in range(1, 11, 2)),
        "grpc": CLIENT_START + headers(1, [
            (":method", "POST"), (":scheme", "http"), (":authority", "cart.shop.svc:8080"),
            (":path", "/shop.Cart/Add"), ("content-type", "application/grpc"),
            ("te", "trailers"), ("grpc-timeout", "1S")]) +
        data(1, b"\x00\x00\x00\x00\x03\x0a\x01x") +
        frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack([("x-trailer", "1")])),
        "reset_ping": CLIENT_START + headers(1, [(":method", "GET"), (":scheme", "https"),
                                                 (":authority", "a"), (":path", "/")]) +
        frame(RST, 0, 1, struct.pack(">I", 8)) + frame(PING, 0, 0, b"pingpong") +
        frame(PRIORITY, 0, 3, struct.pack(">IB", 1, 16)) +
        frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)),
    },
    "http1_server": {
        "get": b"GET /items?x=1 HTTP/1.1\r\nHost: cart.shop\r\nUser-Agent: curl/7.88\r\n"
               b"Accept: */*\r\n\r\n",
        "post_length": b"POST /cart HTTP/1.1\r\nHost: cart\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 13\r\n\r\n{\"item\": \"a\"}",
        "chunked_trailers": b"POST /upload HTTP/1.1\r\nHost: cart\r\nTransfer-Encoding: chunked\r\n"
                            b"Trailer: x-sum\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n"
                            b"x-sum: 42\r\n\r\n",
        "pipelined": b"GET /a HTTP/1.1\r\nHost: cart\r\n\r\nHEAD /b HTTP/1.1\r\nHost: cart\r\n\r\n"
                     b"DELETE /c HTTP/1.1\r\nHost: cart\r\nConnection: close\r\n\r\n",
        "expect_continue": b"PUT /big HTTP/1.1\r\nHost: cart\r\nExpect: 100-continue\r\n"
                           b"Content-Length: 4\r\n\r\nbody",
        "http10_absolute": b"GET http://cart.shop:8080/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "upgrade": b"GET /chat HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n\x81\x05hello",
        "options_star": b"OPTIONS * HTTP/1.1\r\nHost: cart\r\n\r\n",
        "smuggling": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    },
}

for target, seeds in SEEDS.items():
    directory = os.path.join(HERE, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    for name, payload in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(payload)
