"""An HTTP/1.1 server for the waypoint's retry tests (tests/e2e/waypoint_retry_test.cc).

Usage: flaky_server.py POD_NAME [PORT]. With FLAKY_FLAG=FILE in the environment, every other
request (to any path but /stats) is answered 503 while FILE exists (nodemesh-demo). Paths:
  /flaky    every other request (the 1st, 3rd, ...) is answered 503 when the pod runs with
            FLAKY=1 in its environment, else 200
  /fail500  always 500
  /fail503  always 503 (any method)
  /stats    "served=N failed=M": the requests above this pod answered, and how many failed
Any other path: 200 with the pod's name. Bodies of requests are read and ignored.
"""
import http.server
import os
import sys
import threading

NAME = sys.argv[1]
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
FLAKY = os.environ.get("FLAKY") == "1"
FLAKY_FLAG = os.environ.get("FLAKY_FLAG")
lock = threading.Lock()
counts = {"served": 0, "failed": 0, "flaky": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?")[0]
        if path == "/stats":
            with lock:
                body = "served=%d failed=%d\n" % (counts["served"], counts["failed"])
            return self.send(200, body)
        status = 200
        with lock:
            if FLAKY_FLAG and os.path.exists(FLAKY_FLAG):
                counts["flaky"] += 1
                if counts["flaky"] % 2 == 1:
                    status = 503
            elif path == "/flaky":
                counts["flaky"] += 1
                if FLAKY and counts["flaky"] % 2 == 1:
                    status = 503
            elif path == "/fail500":
                status = 500
            elif path == "/fail503":
                status = 503
            counts["served"] += 1
            if status != 200:
                counts["failed"] += 1
        self.send(status, NAME + ("" if status == 200 else " failed") + "\n")

    def send(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = answer
    do_POST = answer
    do_PUT = answer

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
