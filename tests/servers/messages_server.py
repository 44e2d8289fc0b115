"""A local server that speaks Anthropic's Messages API (``POST /v1/messages``), for testing the anthropic engine
at the HTTP boundary: deterministic replies, a script of faults to answer first (429 with Retry-After, 529
overloaded, 500), and a record of every request it received."""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler
from typing import Any

from .http_util import LoopbackServer


def reply_text(body: dict[str, Any]) -> str:
    """The deterministic answer: the system prompt and the last user message, reversed word by word."""
    last = body["messages"][-1]["content"]
    if isinstance(last, list):
        last = " ".join(b.get("text", "") for b in last)
    words = (str(body.get("system") or "") + " | " + last).split()
    return " ".join(reversed(words))


class MessagesServer(LoopbackServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self.lock = threading.Lock()
        #: every request: {"path", "body", "has_key", "t"}
        self.requests: list[dict[str, Any]] = []
        #: faults answered before normal replies, one per request: (status, headers, body) tuples
        self.script: deque[tuple[int, dict[str, str], dict[str, Any]]] = deque()
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay_s = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def overloaded(self) -> tuple[int, dict[str, str], dict[str, Any]]:
        return 529, {}, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

    def rate_limited(self, retry_after: float) -> tuple[int, dict[str, str], dict[str, Any]]:
        return 429, {"retry-after": f"{retry_after:g}"}, {
            "type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests exceeded"}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MessagesServer

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        srv = self.server
        with srv.lock:
            srv.requests.append({"path": self.path, "body": body, "has_key": bool(self.headers.get("x-api-key") or self.headers.get("authorization")),
                                 "t": time.monotonic()})
            fault = srv.script.popleft() if srv.script else None
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            if srv.delay_s:
                time.sleep(srv.delay_s)
            if self.path.rstrip("/") != "/v1/messages":
                return self._send(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
            if fault is not None:
                return self._send(fault[0], fault[2], fault[1])
            words = reply_text(body).split()
            limit = int(body.get("max_tokens", 16))
            out, stop_reason, stop_seq = words[:limit], "end_turn", None
            text = " ".join(out)
            for s in body.get("stop_sequences") or []:
                if s in text:
                    text, stop_reason, stop_seq = text[: text.index(s)], "stop_sequence", s
            if stop_reason == "end_turn" and len(words) > limit:
                stop_reason = "max_tokens"
            n_in = sum(len(str(m["content"]).split()) for m in body["messages"]) + len(str(body.get("system") or "").split())
            self._send(200, {"id": f"msg_{len(srv.requests)}", "type": "message", "role": "assistant",
                             "model": body.get("model"), "content": [{"type": "text", "text": text}],
                             "stop_reason": stop_reason, "stop_sequence": stop_seq,
                             "usage": {"input_tokens": n_in, "output_tokens": len(out)}})
        finally:
            with srv.lock:
                srv.in_flight -= 1
