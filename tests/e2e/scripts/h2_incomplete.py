#!/usr/bin/python3
"""A raw HTTP/2 client whose request never ends, for the waypoint's request timeout e2e test.

h2_incomplete.py HOST PORT http|grpc: sends the preface, SETTINGS and one POST HEADERS frame
without END_STREAM (a gRPC call's head with "grpc"), then nothing. Prints what comes back on the
stream, one line each: "status N" (the response's :status), "grpc-status N" when the response
carries one, "end" for END_STREAM, "rst CODE" for RST_STREAM; then "elapsed SECONDS" (from the
HEADERS to the first answer). "no response" when nothing comes within 15 s.
"""
import socket
import struct
import sys
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0x1, 0x3, 0x4, 0x7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


def main():
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sock = socket.create_connection((host, port), timeout=15)
    headers = [(":method", "POST"), (":scheme", "http"), (":authority", f"{host}:{port}")]
    if mode == "grpc":
        headers += [(":path", "/shop.Cart/Get"), ("content-type", "application/grpc"),
                    ("te", "trailers")]
    else:
        headers += [(":path", "/upload"), ("content-type", "text/plain")]
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0) +
                 frame(HEADERS, END_HEADERS, 1, hpack.Encoder().encode(headers)))
    sent = time.monotonic()
    answered = None
    decoder = hpack.Decoder()
    data = b""
    lines = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            done = False
            while len(data) >= 9:
                length = int.from_bytes(data[:3], "big")
                if len(data) < 9 + length:
                    break
                kind, flags, stream = data[3], data[4], struct.unpack(">I", data[5:9])[0] & 0x7FFFFFFF
                payload = data[9:9 + length]
                data = data[9 + length:]
                if kind == SETTINGS and not flags & ACK:
                    sock.sendall(frame(SETTINGS, ACK, 0))
                elif kind == HEADERS and stream == 1:
                    answered = answered or time.monotonic()
                    for name, value in decoder.decode(payload):
                        if name == ":status":
                            lines.append(f"status {value}")
                        elif name == "grpc-status":
                            lines.append(f"grpc-status {value}")
                    if flags & END_STREAM:
                        lines.append("end")
                elif kind == RST_STREAM and stream == 1:
                    answered = answered or time.monotonic()
                    lines.append("rst %d" % struct.unpack(">I", payload[:4])[0])
                    done = True
                elif kind == GOAWAY:
                    done = True
            if done:
                break
    except OSError:
        pass
    if answered is None:
        print("no response", flush=True)
        return
    for line in lines:
        print(line)
    print("elapsed %.1f" % (answered - sent), flush=True)


if __name__ == "__main__":
    main()
