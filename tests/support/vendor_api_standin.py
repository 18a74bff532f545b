"""A loopback stand-in for a vendor's admin API: JSON routes, cursor pagination, scripted refusals.

with VendorApiStandIn(headers={"x-api-key": "sk-ant-admin-test"}) as api:
    api.route("/v1/organizations/cost_report", lambda query: api.paginate(ITEMS, query, page_size=2))
    api.fail_next("/cost_report", 429, retry_after="3")   # the next matching request: 429, retry-after 3
    api.fail_next("/cost_report", 503)                    # then a 503 (several are queued in order)
    ANTHROPIC_API_URL=api.base_url
    api.requests                                          # (path, query, headers) asked, in order

A route answers a query (`{name: [values]}`) with a JSON value, or a `Raw` body (NDJSON downloads). A request
whose headers lack any of `headers` (or whose basic auth is not `basic`) gets 401 with an error body, as
the vendors answer a bad key. `paginate` cuts a list into `{data, has_more, next_page}` pages, the shape
Anthropic's and OpenAI's admin APIs share (field names configurable); a page never holds more than
`page_size` items whatever `limit` asks, so a few items make several pages.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Query = dict[str, list[str]]


@dataclass(frozen=True)
class Raw:
    body: bytes
    content_type: str = "application/x-ndjson"


@dataclass
class Refusal:
    fragment: str
    status: int
    retry_after: str | None = None
    body: dict[str, Any] | None = None


@dataclass
class VendorApiStandIn:
    headers: dict[str, str] = field(default_factory=dict)  # required request headers (the key, a version)
    basic: tuple[str, str] | None = None  # required basic auth (user, password), when the vendor uses it
    routes: dict[str, Callable[[Query], Any]] = field(default_factory=dict)
    requests: list[tuple[str, Query, dict[str, str]]] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def route(self, path: str, answer: Callable[[Query], Any]) -> None:
        self.routes[path] = answer

    def fail_next(
        self, fragment: str, status: int, retry_after: str | None = None, body: dict[str, Any] | None = None
    ) -> None:
        """The next request whose path contains `fragment` is answered `status` (queued in order)."""
        self.refusals.append(Refusal(fragment, status, retry_after, body))

    @staticmethod
    def paginate(
        items: Sequence[Any],
        query: Query,
        page_size: int = 2,
        cursor_param: str = "page",
        data_field: str = "data",
        next_field: str = "next_page",
        has_more_field: str = "has_more",
    ) -> dict[str, Any]:
        """One page of `items`: the cursor is an opaque token naming the next offset."""
        cursor = (query.get(cursor_param) or [""])[0]
        start = int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("offset:")) if cursor else 0
        limit = int((query.get("limit") or [page_size])[0])
        size = min(limit, page_size)
        page = list(items[start : start + size])
        more = start + size < len(items)
        following = base64.urlsafe_b64encode(f"offset:{start + size}".encode()).decode() if more else None
        return {data_field: page, has_more_field: more, next_field: following}

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]

    # -- the server -------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._server is not None, "use the stand-in as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> VendorApiStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                standin._answer(self)

            def log_message(self, *_args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.requests.append((parts.path, query, headers))
            refusal = next((r for r in self.refusals if r.fragment in parts.path), None)
            if refusal is not None:
                self.refusals.remove(refusal)
        if not self._authorised(headers):
            self._send(
                request,
                401,
                {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
            )
            return
        if refusal is not None:
            extra = {"retry-after": refusal.retry_after} if refusal.retry_after is not None else {}
            body = refusal.body or {
                "type": "error",
                "error": {
                    "type": "rate_limit_error" if refusal.status == 429 else "api_error",
                    "message": f"stand-in answered {refusal.status}",
                },
            }
            self._send(request, refusal.status, body, extra)
            return
        answer = self.routes.get(parts.path)
        if answer is None:
            self._send(request, 404, {"type": "error", "error": {"type": "not_found_error", "message": parts.path}})
            return
        self._send(request, 200, answer(query))

    def _authorised(self, headers: dict[str, str]) -> bool:
        if any(headers.get(name.lower()) != value for name, value in self.headers.items()):
            return False
        if self.basic is not None:
            user, password = self.basic
            expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            return headers.get("authorization") == expected
        return True

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(body, Raw):
            data, kind = body.body, body.content_type
        else:
            data, kind = json.dumps(body).encode(), "application/json"
        request.send_response(status)
        request.send_header("content-type", kind)
        request.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)
