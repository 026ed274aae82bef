"""Fixed-rate HTTP/1.1 load for the rate limit e2e test (tests/e2e/waypoint_rate_limit_test.cc).

usage: rate_load.py HOST PORT DURATION_S WARMUP_S PATH:RPS [PATH:RPS ...]

Each PATH gets RPS requests per second for DURATION_S seconds, spread over keep-alive connections
(one thread each, at most 50 requests/s per connection), every request sent at its scheduled time
(a thread that falls behind catches up at once, so the offered rate holds on average). Prints one
JSON object: per path, the status counts of the requests *scheduled* after WARMUP_S (the window
that excludes the limiter's initial burst), the window's length, and one 429's rate limit headers.
"""
import http.client
import json
import sys
import threading
import time

host, port = sys.argv[1], int(sys.argv[2])
duration, warmup = float(sys.argv[3]), float(sys.argv[4])
loads = []
for spec in sys.argv[5:]:
    path, rps = spec.rsplit(':', 1)
    loads.append((path, int(rps)))

start = time.monotonic() + 0.5  # every thread connected before the first request
results = {path: {'counts': {}, 'errors': 0, 'sample_429': None} for path, _ in loads}
lock = threading.Lock()


def worker(path, rps, offset):
    interval = 1.0 / rps
    conn = None
    n = 0
    while True:
        at = offset + n * interval
        if at >= duration:
            break
        n += 1
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request('GET', path)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            headers = {k.lower(): v for k, v in resp.getheaders()}
        except Exception:  # a failed request counts as an error; reconnect for the next
            if conn is not None:
                conn.close()
            conn = None
            with lock:
                results[path]['errors'] += 1
            continue
        if at < warmup:
            continue
        with lock:
            counts = results[path]['counts']
            counts[str(status)] = counts.get(str(status), 0) + 1
            if status == 429 and results[path]['sample_429'] is None:
                results[path]['sample_429'] = headers


threads = []
for path, rps in loads:
    conns = max(1, (rps + 49) // 50)
    per = rps / conns
    for i in range(conns):
        # Connections interleave: connection i sends at i/rps, i/rps + conns/rps, ...
        t = threading.Thread(target=worker, args=(path, per, i / rps), daemon=True)
        threads.append(t)
        t.start()
for t in threads:
    t.join()
print(json.dumps({'window_s': duration - warmup, 'paths': results}))
