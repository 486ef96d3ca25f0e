"""A real gRPC peer for ctxkit's tests: grpcio and opentelemetry-api, nothing of ours.

    hop_peer.py server
        Serves ctxkit.peers.Hop on 127.0.0.1 (ephemeral port), prints `PORT <n>`, then one JSON
        line per event: {"event": "call", ...} when a call arrives (its time_remaining(), its
        trace id and baggage as opentelemetry-api parses them) and {"event": "cancelled", ...}
        when a call ends before its handler answered. Exits when stdin closes.

    hop_peer.py client ADDR TIMEOUT_S SLEEP_MS [cancel]
        Calls Hop.Call on ADDR with a TIMEOUT_S deadline. Prints {"event": "start", ...}. With
        `cancel`, waits for a line on stdin, cancels the call and prints {"event":
        "client_cancel", ...}; otherwise prints {"event": "result", ...} with the status code.

Times are CLOCK_MONOTONIC nanoseconds, comparable across the processes of one machine.
"""

import json
import sys
import threading
import time
from concurrent import futures

import grpc
from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

sys.path.insert(0, sys.prefix)  # peers/install.sh generates the stubs into the venv
import hop_pb2  # noqa: E402
import hop_pb2_grpc  # noqa: E402

_print_lock = threading.Lock()


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def emit(**event):
    with _print_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


class Hop(hop_pb2_grpc.HopServicer):
    def Call(self, request, context):
        arrived = now_ns()
        remaining = context.time_remaining()
        carrier = {}
        for key, value in context.invocation_metadata():
            carrier[key] = value if key not in carrier else carrier[key] + "," + value
        span = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier))
        sc = span.get_span_context()
        members = baggage.get_all(W3CBaggagePropagator().extract(carrier))
        info = {
            "arrived_ns": arrived,
            "remaining_s": remaining,
            "note": request.note,
            "trace_id": format(sc.trace_id, "032x") if sc.is_valid else None,
            "baggage": {k: str(v) for k, v in members.items()},
            "request_id": carrier.get("x-request-id"),
        }
        emit(event="call", **info)
        answered = threading.Event()

        def on_done():
            if not answered.is_set():
                emit(event="cancelled", at_ns=now_ns(), note=request.note)

        context.add_callback(on_done)
        end = time.monotonic() + request.sleep_ms / 1000.0
        while context.is_active() and time.monotonic() < end:
            time.sleep(0.002)
        if not context.is_active():
            return hop_pb2.HopReply()
        answered.set()
        return hop_pb2.HopReply(report=json.dumps(info))


def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    hop_pb2_grpc.add_HopServicer_to_server(Hop(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    emit(event="port", port=port)
    sys.stdin.read()  # until the test closes stdin (or exits)
    server.stop(grace=None)


def client(addr, timeout_s, sleep_ms, cancel):
    with grpc.insecure_channel(addr) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = hop_pb2_grpc.HopStub(channel)
        request = hop_pb2.HopRequest(sleep_ms=sleep_ms, note="python-client")
        start = now_ns()
        emit(event="start", at_ns=start, deadline_ns=start + int(timeout_s * 1e9))
        call = stub.Call.future(request, timeout=timeout_s)
        if cancel:
            sys.stdin.readline()
            call.cancel()
            emit(event="client_cancel", at_ns=now_ns())
            return
        try:
            reply = call.result()
            emit(event="result", code="OK", report=reply.report)
        except grpc.RpcError as e:
            emit(event="result", code=e.code().name, details=e.details())


def main():
    if sys.argv[1] == "server":
        serve()
    else:
        client(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), len(sys.argv) > 5)


if __name__ == "__main__":
    main()
