#!/usr/bin/python3
"""A prior-knowledge HTTP/2 server (python3-h2) for the waypoint's e2e tests.

h2_server.py NAME PORT [GOAWAY_EVERY]: answers every request with "NAME\n" (and x-served-by:
NAME); prints "conn" for each accepted connection and "req PATH authority=AUTHORITY body=BYTES"
for each request, so a test can tell how requests were spread over endpoints, how many upstream
connections carried them, and what a mirror copy looked like.
GET /big/N answers N bytes instead; any request to /size answers the byte count of its body
(both under HTTP/2 flow control, to test back-pressure through the waypoint). Paths under /slow
are answered after 3 s (other streams of the connection go on meanwhile), for route timeouts;
paths under /stall get the head and "first\n" at once and the rest of the body ("rest\n") 3 s
later.
With GOAWAY_EVERY, a connection ends after that many requests: GOAWAY with the last answered
stream, then FIN; requests the client sent after it are not processed (RFC 9113 section 6.8) and
may be retried elsewhere.
For the retry tests (waypoint_h2_retry_test.cc), each answer that fails also prints
"failed PATH": /fail503 is always answered 503 (a query string aside); with FLAKY=1 in the environment every other
request (the 1st, 3rd, ...) to /flaky is answered 503, and to /flaky-grpc with a trailers-only
gRPC response carrying grpc-status 14 (UNAVAILABLE); otherwise both are answered as any path
(/flaky-grpc as a gRPC response: the body, then trailers with grpc-status 0).
"""
import os
import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions


FLAKY = os.environ.get("FLAKY") == "1"
flaky_lock = threading.Lock()
flaky_counts = {}


def fails(path):
    """Whether this request to `path` gets a failure (see the module's doc)."""
    path = path.split("?")[0]
    if path == "/fail503":
        return True
    if path not in ("/flaky", "/flaky-grpc"):
        return False
    with flaky_lock:
        flaky_counts[path] = flaky_counts.get(path, 0) + 1
        return FLAKY and flaky_counts[path] % 2 == 1


def serve(sock, name, goaway_every):
    config = h2.config.H2Configuration(client_side=False)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    body = (name + "\n").encode()
    paths = {}
    authorities = {}
    delayed = []  # (due, stream, bytes, whether the head went out already): /slow, /stall
    sizes = {}
    pending = {}  # stream -> response bytes not yet sent (waiting for window)
    answered = 0

    def pump():
        for stream in list(pending):
            data = pending[stream]
            try:
                while data:
                    room = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
                    if room <= 0:
                        break
                    conn.send_data(stream, data[:room])
                    data = data[room:]
                if data:
                    pending[stream] = data
                else:
                    conn.end_stream(stream)
                    del pending[stream]
            except h2.exceptions.StreamClosedError:
                del pending[stream]

    def respond(stream, reply, length=None):
        try:
            conn.send_headers(stream, [
                (":status", "200"), ("content-type", "text/plain"),
                ("content-length", str(length or len(reply))), ("x-served-by", name)])
        except h2.exceptions.StreamClosedError:
            return False
        pending[stream] = reply
        pump()
        return True

    sock.settimeout(0.05)
    try:
        while True:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                now = time.monotonic()
                for item in [d for d in delayed if d[0] <= now]:
                    delayed.remove(item)
                    if item[3]:
                        pending[item[1]] = item[2]
                        pump()
                    else:
                        respond(item[1], item[2])
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                continue
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    fields = dict(event.headers)
                    paths[event.stream_id] = fields.get(b":path", b"").decode()
                    authorities[event.stream_id] = fields.get(b":authority", b"").decode()
                    sizes[event.stream_id] = 0
                elif isinstance(event, h2.events.DataReceived):
                    sizes[event.stream_id] = sizes.get(event.stream_id, 0) + len(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                    pump()
                elif isinstance(event, h2.events.StreamEnded):
                    path = paths.pop(event.stream_id, "")
                    size = sizes.pop(event.stream_id, 0)
                    authority = authorities.pop(event.stream_id, "")
                    print("req", path, f"authority={authority}", f"body={size}", flush=True)
                    reply = body
                    if path.startswith("/big/"):
                        reply = b"x" * int(path[len("/big/"):])
                    elif path == "/size":
                        reply = f"{size}\n".encode()
                    if path.startswith("/slow"):
                        delayed.append((time.monotonic() + 3, event.stream_id, reply, False))
                        continue
                    if path.startswith("/stall"):
                        conn.send_headers(event.stream_id, [
                            (":status", "200"), ("content-type", "text/plain"),
                            ("content-length", "11")])
                        conn.send_data(event.stream_id, b"first\n")
                        delayed.append((time.monotonic() + 3, event.stream_id, b"rest\n", True))
                        continue
                    if fails(path):
                        print("failed", path, flush=True)
                        if path.startswith("/flaky-grpc"):
                            conn.send_headers(event.stream_id, [
                                (":status", "200"), ("content-type", "application/grpc"),
                                ("grpc-status", "14"), ("grpc-message", "unavailable")],
                                end_stream=True)
                        else:
                            failed = (name + " failed\n").encode()
                            conn.send_headers(event.stream_id, [
                                (":status", "503"), ("content-type", "text/plain"),
                                ("content-length", str(len(failed)))])
                            conn.send_data(event.stream_id, failed, end_stream=True)
                        continue
                    if path.startswith("/flaky-grpc"):
                        conn.send_headers(event.stream_id, [
                            (":status", "200"), ("content-type", "application/grpc")])
                        conn.send_data(event.stream_id, reply)
                        conn.send_headers(event.stream_id, [("grpc-status", "0")],
                                          end_stream=True)
                        continue
                    if not respond(event.stream_id, reply):
                        continue
                    answered += 1
                    if goaway_every and answered == goaway_every:
                        print("goaway", flush=True)
                        conn.close_connection(last_stream_id=event.stream_id)
                        sock.sendall(conn.data_to_send())
                        sock.shutdown(socket.SHUT_WR)
                        sock.settimeout(5)
                        while sock.recv(65536):  # until the client closes too
                            pass
                        return
                elif isinstance(event, h2.events.StreamReset):
                    paths.pop(event.stream_id, None)
                    pending.pop(event.stream_id, None)
                    delayed[:] = [d for d in delayed if d[1] != event.stream_id]
                    print("reset", event.stream_id, flush=True)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    sock.sendall(conn.data_to_send())
                    return
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
    except (OSError, h2.exceptions.ProtocolError):
        return
    finally:
        sock.close()


def main():
    name, port = sys.argv[1], int(sys.argv[2])
    goaway_every = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(128)
    print("listening", flush=True)
    while True:
        sock, _ = listener.accept()
        print("conn", flush=True)
        threading.Thread(target=serve, args=(sock, name, goaway_every), daemon=True).start()


if __name__ == "__main__":
    main()
