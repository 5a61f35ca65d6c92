#!/usr/bin/env python3
"""An HTTP/1.1 fault proxy on 127.0.0.1 in front of the emulator, for tests/tests/faults.rs.

Usage: fault_proxy.py --target http://127.0.0.1:PORT --port-file FILE

Every request is relayed to the target unchanged, one upstream connection per client
connection, until a rule matches it. Rules are set per test through a small control API on the
same port (paths under /__faults/, which no AWS request uses), so that "the first N GETs of
key K are cut" is one rule:

  POST   /__faults/rules         {"name": "cut-log", "method": "GET", "path": "<substring>",
                                  "action": "reset_mid_body", "count": 2}
  DELETE /__faults/rules/NAME    the rule stops applying (its counters stay readable)
  GET    /__faults/stats         {"NAME": {"matched": m, "applied": a, "held": h}, ...}
  POST   /__faults/release/NAME  lets the requests that NAME holds go on (and later ones pass)

A rule matches on substrings of the method, the path (with its query), the request head
(headers such as X-Amz-Target) and the request body (form-encoded Action=AssumeRole);
every criterion given must hold. The first `skip` matching requests pass untouched, the next
`count` (default: all) get the action. With "hold": true a request waits before its action
until the rule is released: a test can act while a request is in flight, or cut a handler off
after K requests.

Actions:
  pass                   relay as usual (with "hold", a delay the test controls)
  reset_mid_body         relay the request; send the response head and `fraction` (0.5) of the
                         body, then reset the connection (SO_LINGER 0: a real RST)
  short_body             the same, but close normally (FIN): a body shorter than its
                         Content-Length
  reset                  reset the connection without relaying the request
  forward_then_reset     relay the request, read the whole response, then reset: the call
                         happened, its answer is lost
  status                 answer `status` (503) with `body` (S3's SlowDown) and
                         `content_type` without relaying; the connection stays open

Python 3 standard library only. The listening port goes to --port-file (atomically).
"""

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
from urllib.parse import urlsplit

SLOW_DOWN = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    "<Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>"
)
CONTROL = "/__faults/"
ACTIONS = {"pass", "reset_mid_body", "short_body", "reset", "forward_then_reset", "status"}


def log(message: str) -> None:
    print(f"fault_proxy: {message}", file=sys.stderr, flush=True)


class Rule:
    def __init__(self, spec: dict):
        self.name = str(spec["name"])
        self.method = spec.get("method")
        self.path = spec.get("path")
        self.header = spec.get("header")
        self.body = spec.get("body")
        self.skip = int(spec.get("skip", 0))
        self.count = spec.get("count")
        self.action = spec.get("action", "pass")
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {sorted(ACTIONS)}")
        self.fraction = float(spec.get("fraction", 0.5))
        self.status = int(spec.get("status", 503))
        self.reply = spec.get("body_text", SLOW_DOWN).encode()
        self.content_type = spec.get("content_type", "application/xml")
        self.hold = bool(spec.get("hold", False))
        self.released = asyncio.Event()
        self.active = True
        self.matched = 0
        self.applied = 0
        self.held = 0

    def matches(self, request: "Request") -> bool:
        return (
            self.active
            and (self.method is None or request.method == self.method)
            and (self.path is None or self.path in request.target)
            and (self.header is None or self.header.lower() in request.head_text.lower())
            and (self.body is None or self.body.encode() in request.body)
        )

    def stats(self) -> dict:
        return {"matched": self.matched, "applied": self.applied, "held": self.held}


class Request:
    def __init__(self, head: bytes, body: bytes):
        self.head = head
        self.body = body
        self.head_text = head.decode("latin-1")
        line = self.head_text.split("\r\n", 1)[0]
        parts = line.split(" ")
        if len(parts) < 3:
            raise ValueError(f"bad request line {line!r}")
        self.method, self.target = parts[0], parts[1]

    def raw(self) -> bytes:
        return self.head + self.body


class Closed(Exception):
    """The peer closed the connection between messages."""


def header_value(head: bytes, name: str):
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


async def read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            raise Closed() from None
        raise


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body, raw (sizes, extensions and trailers included)."""
    out = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        out += line
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, then the empty line
                trailer = await reader.readuntil(b"\r\n")
                out += trailer
                if trailer == b"\r\n":
                    return bytes(out)
        out += await reader.readexactly(size + 2)


async def read_body(reader, head: bytes, *, is_response: bool, no_body: bool) -> tuple:
    """The body of a message; the second value says whether it ended at the connection's end."""
    if no_body:
        return b"", False
    if (header_value(head, "transfer-encoding") or "").lower().endswith("chunked"):
        return await read_chunked(reader), False
    length = header_value(head, "content-length")
    if length is not None:
        return await reader.readexactly(int(length)), False
    if is_response:
        return await reader.read(), True
    return b"", False


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, not FIN: what a dropped connection looks like to the client."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class Proxy:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.rules: list = []
        self.by_name: dict = {}

    # -- control -------------------------------------------------------------------------------

    def control(self, request: Request) -> tuple:
        path = request.target[len(CONTROL) :].split("?", 1)[0].strip("/")
        if request.method == "POST" and path == "rules":
            rule = Rule(json.loads(request.body or b"{}"))
            old = self.by_name.pop(rule.name, None)
            if old is not None:
                old.active = False
                old.released.set()
                self.rules.remove(old)
            self.rules.append(rule)
            self.by_name[rule.name] = rule
            log(f"rule {rule.name}: {json.loads(request.body)}")
            return 200, {"name": rule.name}
        if request.method == "DELETE" and path.startswith("rules/"):
            rule = self.by_name.get(path[len("rules/") :])
            if rule is None:
                return 404, {"error": f"no rule {path}"}
            rule.active = False
            rule.released.set()
            return 200, rule.stats()
        if request.method == "GET" and path == "stats":
            return 200, {name: r.stats() for name, r in self.by_name.items()}
        if request.method == "POST" and path.startswith("release/"):
            rule = self.by_name.get(path[len("release/") :])
            if rule is None:
                return 404, {"error": f"no rule {path}"}
            rule.released.set()
            return 200, rule.stats()
        return 404, {"error": f"unknown control request {request.method} {request.target}"}

    # -- relaying ------------------------------------------------------------------------------

    def rule_for(self, request: Request):
        for rule in self.rules:
            if not rule.matches(request):
                continue
            rule.matched += 1
            if rule.matched <= rule.skip:
                continue
            if rule.count is not None and rule.applied >= int(rule.count):
                continue
            rule.applied += 1
            return rule
        return None

    async def exchange(self, upstream, request: Request) -> tuple:
        """Sends the request upstream; returns the response (head, body) and whether the
        upstream connection is finished. 1xx interim responses are folded into the head."""
        up_reader, up_writer = upstream
        up_writer.write(request.raw())
        await up_writer.drain()
        interim = b""
        while True:
            head = await up_reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if 100 <= status < 200:
                interim += head
                continue
            break
        no_body = request.method == "HEAD" or status in (204, 304)
        body, ended = await read_body(up_reader, head, is_response=True, no_body=no_body)
        closing = ended or (header_value(head, "connection") or "").lower() == "close"
        return interim + head, body, closing

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        try:
            while True:
                try:
                    head = await read_head(reader)
                except Closed:
                    return
                body, _ = await read_body(reader, head, is_response=False, no_body=False)
                request = Request(head, body)
                if request.target.startswith(CONTROL):
                    status, answer = self.control(request)
                    payload = json.dumps(answer).encode()
                    writer.write(
                        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nConnection: close\r\n"
                        f"Content-Length: {len(payload)}\r\n\r\n".encode()
                        + payload
                    )
                    await writer.drain()
                    writer.close()  # one control request per connection: clients read to EOF
                    return
                rule = self.rule_for(request)
                action = rule.action if rule else "pass"
                if rule is not None:
                    log(f"{rule.name}: {action} {request.method} {request.target}")
                    if rule.hold:
                        rule.held += 1
                        await rule.released.wait()
                if action == "reset":
                    reset(writer)
                    return
                if action == "status":
                    writer.write(
                        f"HTTP/1.1 {rule.status} Fault\r\nContent-Type: {rule.content_type}\r\n"
                        f"Content-Length: {len(rule.reply)}\r\n\r\n".encode()
                        + rule.reply
                    )
                    await writer.drain()
                    continue
                if upstream is None:
                    upstream = await asyncio.open_connection(self.host, self.port)
                response_head, response_body, closing = await self.exchange(upstream, request)
                if action == "forward_then_reset":
                    reset(writer)
                    return
                if action in ("reset_mid_body", "short_body"):
                    keep = int(len(response_body) * rule.fraction)
                    if response_body and keep == 0:
                        keep = 1
                    writer.write(response_head + response_body[:keep])
                    await writer.drain()
                    # Let the client read what was sent before the connection goes.
                    await asyncio.sleep(0.05)
                    if action == "reset_mid_body":
                        reset(writer)
                    else:
                        writer.close()
                    return
                writer.write(response_head + response_body)
                await writer.drain()
                if closing:
                    upstream[1].close()
                    upstream = None
                    writer.close()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as e:
            log(f"connection ended: {e!r}")
            try:
                writer.close()
            except Exception:
                pass
        finally:
            if upstream is not None:
                upstream[1].close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="http://host:port of the emulator")
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    target = urlsplit(args.target if "://" in args.target else f"http://{args.target}")
    proxy = Proxy(target.hostname, target.port or 80)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    os.replace(tmp, args.port_file)
    log(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}, relaying to {args.target}")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
