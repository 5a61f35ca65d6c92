#!/usr/bin/env python3
"""A minimal AWS Lambda Runtime API on 127.0.0.1, for measuring a real function binary.

Serves each event file given on the command line to the first `next` requests, records each
response (or error) as a JSON line in --out, and then holds further `next` requests open until
it is stopped, as Lambda does between invocations. The port goes to --port-file.
"""
import argparse
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("events", nargs="+")
    args = parser.parse_args()
    events = [open(path, "rb").read() for path in args.events]
    lock = threading.Lock()
    started = {}
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_GET(self):
            if self.path != f"{PREFIX}/invocation/next":
                self.send_error(404)
                return
            with lock:
                if not asked:
                    # When the function first asked for work: its cold start ends here.
                    asked.append(time.monotonic_ns())
                    with open(args.out, "a") as out:
                        out.write(json.dumps({"kind": "first-next", "monotonic_ns": asked[0]}) + "\n")
                body = events.pop(0) if events else None
            if body is None:
                time.sleep(3600)
                return
            request_id = str(uuid.uuid4())
            started[request_id] = time.monotonic()
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 900_000))
            self.send_header(
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:123456789012:function:digest-validator",
            )
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            payload = self.rfile.read(length)
            parts = self.path.split("/")
            kind = parts[-1]
            request_id = parts[-2] if len(parts) > 2 else ""
            record = {
                "kind": kind,
                "request_id": request_id,
                "seconds": round(time.monotonic() - started.get(request_id, time.monotonic()), 3),
                "payload": payload.decode("utf-8", "replace"),
            }
            with lock, open(args.out, "a") as out:
                out.write(json.dumps(record) + "\n")
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
