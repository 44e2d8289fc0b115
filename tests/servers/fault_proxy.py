"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real server.

``fault_for(body, attempt)`` decides, per request, what happens instead of forwarding: "429" (with Retry-After),
"500", "stall" (hold the connection past the client's timeout, then close it), "drop" (close the connection
without an answer), "malformed" (200 with a truncated JSON body), or None (forward to the server). ``attempt``
counts earlier requests with the same body, so a fault can be injected on a prompt's first try only. The proxy
records requests, forwards and in-flight peaks, so tests can assert how many requests reached the server.
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable
from urllib.parse import urlsplit

from .http_util import LoopbackServer

FAULTS = ("429", "500", "stall", "drop", "malformed")  # also "401-echo": a 401 whose body echoes the key
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection", "upgrade",
        "content-encoding"}


class FaultProxy(LoopbackServer):
    def __init__(self, upstream: str, fault_for: Callable[[dict[str, Any], int], str | None] | None = None,
                 retry_after_s: float = 1.0, stall_s: float = 3.0) -> None:
        super().__init__(_Handler)
        u = urlsplit(upstream)
        self.up_host, self.up_port = u.hostname or "127.0.0.1", u.port or 80
        self.up_prefix = u.path.rstrip("/")  # e.g. /v1
        self.fault_for = fault_for or (lambda body, attempt: None)
        self.retry_after_s, self.stall_s = retry_after_s, stall_s
        self.lock = threading.Lock()
        self.requests = 0  # every request received (models list included)
        self.forwarded = 0  # requests that reached the server
        self.faults: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()  # per request body
        self.in_flight = 0
        self.max_in_flight = 0
        #: > 0: a POST waits (up to this many seconds, once) for a second request in flight, until the first overlap
        #: is seen. A concurrent client then shows max_in_flight >= 2 however fast the server answers and however
        #: slowly a loaded machine lets the client send; a client that sends one at a time still shows 1.
        self.hold_until_overlap_s = 0.0
        self.overlap = threading.Condition(self.lock)
        self.paths: Counter[str] = Counter()
        self.headers_seen: list[dict[str, str]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.up_prefix}"

    def reset_counts(self) -> None:
        with self.lock:
            self.requests = self.forwarded = 0
            self.faults.clear()
            self.paths.clear()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        srv = self.server
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        key = self.path + "\0" + raw.decode("utf-8", "replace")
        with srv.lock:
            srv.requests += 1
            srv.paths[self.path] += 1
            attempt = srv.attempts[key]
            srv.attempts[key] += 1
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            srv.headers_seen.append(dict(self.headers))
            if srv.max_in_flight >= 2:
                srv.overlap.notify_all()
            elif method == "POST" and srv.hold_until_overlap_s > 0:
                if not srv.overlap.wait_for(lambda: srv.max_in_flight >= 2, timeout=srv.hold_until_overlap_s):
                    srv.hold_until_overlap_s = 0.0  # no second request came: the client sends one at a time
        try:
            fault = srv.fault_for(body, attempt) if method == "POST" else None
            if fault:
                with srv.lock:
                    srv.faults[fault] += 1
                return self._fault(fault)
            self._forward(method, raw)
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _fault(self, fault: str) -> None:
        srv = self.server
        err = lambda msg: json.dumps({"error": {"message": msg, "type": "injected"}}).encode()  # noqa: E731
        if fault == "429":
            self._reply(429, err("rate limited"), {"content-type": "application/json",
                                                   "retry-after": f"{srv.retry_after_s:g}"})
        elif fault == "500":
            self._reply(500, err("internal error"), {"content-type": "application/json"})
        elif fault == "401-echo":  # a hostile server that echoes the credentials it received
            auth = self.headers.get("authorization", "") + " " + self.headers.get("x-api-key", "")
            self._reply(401, err(f"invalid key {auth}"), {"content-type": "application/json"})
        elif fault == "malformed":
            self._reply(200, b'{"id": "cmpl-x", "object": "chat.completion", "choices": [{"index": 0, "mess',
                        {"content-type": "application/json"})
        elif fault in ("stall", "drop"):
            if fault == "stall":
                time.sleep(srv.stall_s)  # bounded: the client has given up by now
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        else:
            raise ValueError(f"unknown fault {fault!r}")

    def _forward(self, method: str, raw: bytes) -> None:
        srv = self.server
        path = self.path if self.path.startswith(srv.up_prefix) else srv.up_prefix + self.path
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        conn = http.client.HTTPConnection(srv.up_host, srv.up_port, timeout=300)
        try:
            conn.request(method, path, body=raw or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out_headers = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP}
        finally:
            conn.close()
        with srv.lock:
            srv.forwarded += 1
        self._reply(resp.status, data, out_headers)

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")
