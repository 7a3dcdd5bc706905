"""The forwarding bench's OTLP/HTTP collector: decodes each POST /v1/logs with PyPI's
opentelemetry-proto and counts its log records (nothing kept); the count is written to COUNT
after each request.

usage: otlp_sink.py PORT COUNT   (prints "listening PORT" once bound)
"""
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

PORT, COUNT = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
total = [0]
OK = ExportLogsServiceResponse().SerializeToString()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        req = ExportLogsServiceRequest()
        req.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
        n = sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)
        with lock:
            total[0] += n
            with open(COUNT + ".tmp", "w") as f:
                f.write(str(total[0]))
            os.replace(COUNT + ".tmp", COUNT)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(OK)))
        self.end_headers()
        self.wfile.write(OK)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("listening", server.server_address[1], flush=True)
server.serve_forever()
