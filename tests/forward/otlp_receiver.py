"""An OTLP/HTTP receiver for the forwarding tests: decodes each POST /v1/logs and
/v1/metrics with PyPI's opentelemetry-proto (the project's own generated classes). Per log
record it appends one JSON line to OUT (its resource's and its own attributes, severity, body,
times, the request's x-api-key header); per metric data point one to OUT.metrics (resource,
metric name, unit, kind, value, attributes). While the file MODE holds "503" it answers 503
and keeps nothing.

usage: otlp_receiver.py PORT OUT MODE   (prints "listening PORT" once bound)
"""

import base64
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

PORT, OUT, MODE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()


def value(v):
    kind = v.WhichOneof("value")
    if kind == "bytes_value":
        return {"bytes": base64.b64encode(v.bytes_value).decode()}
    return getattr(v, kind) if kind else None


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def mode():
    try:
        with open(MODE) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, code, body=b"", ctype="application/x-protobuf"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path not in ("/v1/logs", "/v1/metrics"):
            return self.answer(404, b"not /v1/logs or /v1/metrics", "text/plain")
        if mode() == "503":
            return self.answer(503, b"down for the test", "text/plain")
        if self.headers.get("Content-Type") != "application/x-protobuf":
            return self.answer(415, b"not protobuf", "text/plain")
        if self.path == "/v1/metrics":
            return self.metrics(body)
        req = ExportLogsServiceRequest()
        try:
            req.ParseFromString(body)
        except Exception as e:  # a malformed request fails the test that reads it
            lines = [json.dumps({"error": str(e)})]
        else:
            lines = []
            for rl in req.resource_logs:
                resource = attributes(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for r in sl.log_records:
                        lines.append(json.dumps({
                            "resource": resource,
                            "scope": sl.scope.name,
                            "time_unix_nano": r.time_unix_nano,
                            "observed_time_unix_nano": r.observed_time_unix_nano,
                            "severity_number": r.severity_number,
                            "severity_text": r.severity_text,
                            "body": value(r.body),
                            "attributes": attributes(r.attributes),
                            "api_key": self.headers.get("x-api-key"),
                        }))
        with lock, open(OUT, "a") as f:
            # One write a request: a reader never sees half of one.
            f.write("".join(line + "\n" for line in lines))
        self.answer(200, ExportLogsServiceResponse().SerializeToString())

    def metrics(self, body):
        req = ExportMetricsServiceRequest()
        try:
            req.ParseFromString(body)
        except Exception as e:
            lines = [json.dumps({"error": str(e)})]
        else:
            lines = []
            for rm in req.resource_metrics:
                resource = attributes(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        for p in getattr(m, kind).data_points:
                            lines.append(json.dumps({
                                "resource": resource,
                                "scope": sm.scope.name,
                                "name": m.name,
                                "unit": m.unit,
                                "kind": kind,
                                "monotonic": getattr(getattr(m, kind), "is_monotonic", None),
                                "value": getattr(p, p.WhichOneof("value")),
                                "attributes": attributes(p.attributes),
                                "time_unix_nano": p.time_unix_nano,
                            }))
        with lock, open(OUT + ".metrics", "a") as f:
            f.write("".join(line + "\n" for line in lines))
        self.answer(200, ExportMetricsServiceResponse().SerializeToString())

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("listening", server.server_address[1], flush=True)
server.serve_forever()
