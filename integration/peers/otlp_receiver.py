"""A real OTLP/gRPC receiver for ctxkit's tests: opentelemetry-proto's generated services on
grpcio, nothing of ours in the protocol.

    otlp_receiver.py

Serves the OTLP trace and metrics services on 127.0.0.1 (an ephemeral port) and prints one JSON
line per event on stdout, flushed: first {"event": "port", "port": N}, then one
{"event": "span", ...} per span received (service, scope, name, kind, trace_id, span_id,
parent_span_id ("" for a root), trace_state, attributes, events, status) and one
{"event": "metric", ...} per data point of a sum (service, scope, name, unit, attributes,
value). When CTXKIT_OTLP_DIR is set, the same lines go to $CTXKIT_OTLP_DIR/otlp.jsonl too.
Runs until killed (SIGTERM or SIGINT).
"""

import json
import os
import signal
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as ts_grpc

_lock = threading.Lock()
_copy = None


def emit(**event):
    line = json.dumps(event) + "\n"
    with _lock:
        sys.stdout.write(line)
        sys.stdout.flush()
        if _copy is not None:
            _copy.write(line)
            _copy.flush()


def value(v):
    """An AnyValue as JSON: ints stay ints (protobuf's JSON mapping would make them strings)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value"):
        return MessageToDict(getattr(v, kind))
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


class Traces(ts_grpc.TraceServiceServicer):
    def Export(self, request, context):
        for rs in request.resource_spans:
            service = attributes(rs.resource.attributes).get("service.name")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    emit(
                        event="span",
                        service=service,
                        scope=ss.scope.name,
                        name=s.name,
                        kind=s.kind,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        trace_state=s.trace_state,
                        attributes=attributes(s.attributes),
                        events=[
                            {"name": e.name, "attributes": attributes(e.attributes)}
                            for e in s.events
                        ],
                        status={"code": s.status.code, "message": s.status.message},
                    )
        return ts_pb2.ExportTraceServiceResponse()


class Metrics(ms_grpc.MetricsServiceServicer):
    def Export(self, request, context):
        for rm in request.resource_metrics:
            service = attributes(rm.resource.attributes).get("service.name")
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.WhichOneof("data") != "sum":
                        continue
                    for dp in m.sum.data_points:
                        number = dp.WhichOneof("value")
                        emit(
                            event="metric",
                            service=service,
                            scope=sm.scope.name,
                            name=m.name,
                            unit=m.unit,
                            attributes=attributes(dp.attributes),
                            value=getattr(dp, number) if number else None,
                        )
        return ms_pb2.ExportMetricsServiceResponse()


def main():
    global _copy
    directory = os.environ.get("CTXKIT_OTLP_DIR")
    if directory:
        _copy = open(os.path.join(directory, "otlp.jsonl"), "a")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ts_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    ms_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    emit(event="port", port=port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
