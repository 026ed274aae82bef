#!/usr/bin/python3
"""gRPC peers (python3-grpcio, generic handlers: no protoc) for the waypoint's e2e tests.

grpc_app.py server NAME PORT: service shop.Cart with methods Get, Put, Missing and Slow; each
answers the raw request bytes with "NAME METHOD" (Slow after 3 s).
grpc_app.py client TARGET METHOD COUNT: COUNT unary calls of METHOD (e.g. /shop.Cart/Get) on one
channel; prints "ok REPLY" or "error CODE DETAILS" per call.
"""
import sys
import time
from concurrent import futures

import grpc


def server(name, port):
    def handler(method):
        def answer(request, context):
            if method == "Slow":
                time.sleep(3)
            return f"{name} {method}".encode()
        return grpc.unary_unary_rpc_method_handler(answer)

    methods = {m: handler(m) for m in ("Get", "Put", "Missing", "Slow")}
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    s.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("shop.Cart", methods),))
    s.add_insecure_port(f"0.0.0.0:{port}")
    s.start()
    print("listening", flush=True)
    s.wait_for_termination()


def client(target, method, count):
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        call = channel.unary_unary(method)
        for _ in range(count):
            try:
                print("ok", call(b"hello", timeout=10).decode(), flush=True)
            except grpc.RpcError as e:
                print("error", e.code().name, e.details(), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2], sys.argv[3], int(sys.argv[4]))
