"""A Python service instrumented with the OpenTelemetry SDK, as one hop of a traced request in
ctxkit's tests. Nothing of ours: the SDK's W3C propagators, spans and OTLP/gRPC exporter.

    otel_hop.py OTLP_ENDPOINT DOWNSTREAM_URL

Serves HTTP on 127.0.0.1 (an ephemeral port) and prints {"event": "port", "port": N} on stdout.
Each GET continues the caller's trace and baggage (`traceparent`, `tracestate`, `baggage`) in a
SERVER span `py.handle` (attribute `baggage.user`: the caller's baggage member `user`), calls
DOWNSTREAM_URL in a CLIENT span `py.call` (which sends the trace and the baggage on), and answers
`py saw user=<user> <- <downstream's answer>`. Spans are exported to OTLP_ENDPOINT before the
answer is sent. Exits when stdin closes.
"""

import json
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

endpoint, downstream = sys.argv[1], sys.argv[2]
provider = TracerProvider(resource=Resource.create({"service.name": "py-hop"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("py-hop")


class Hop(BaseHTTPRequestHandler):
    def do_GET(self):
        # The caller's span and baggage become current (start_as_current_span(context=...) would
        # take the span but leave the baggage behind).
        token = context.attach(propagate.extract(dict(self.headers)))
        try:
            with tracer.start_as_current_span("py.handle", kind=trace.SpanKind.SERVER) as span:
                user = str(baggage.get_baggage("user") or "")
                span.set_attribute("baggage.user", user)
                with tracer.start_as_current_span("py.call", kind=trace.SpanKind.CLIENT):
                    headers = {}
                    propagate.inject(headers)
                    request = urllib.request.Request(downstream, headers=headers)
                    answer = urllib.request.urlopen(request, timeout=20).read().decode()
                body = f"py saw user={user} <- {answer}".encode()
        finally:
            context.detach(token)
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hop)
    print(json.dumps({"event": "port", "port": server.server_address[1]}), flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the test (our parent) closes it or goes away
    server.shutdown()
    provider.shutdown()


if __name__ == "__main__":
    main()
