"""Loopback stand-ins for Cursor's Admin API and GitHub's Copilot usage-metrics reports, answering in the
shapes their documentation gives (docs/ingest.md says which fields were confirmed where).

with CursorStandIn(key="key_test") as cursor:
    cursor.add_day("ana@example.com", date(2026, 11, 23), chatRequests=4, mostUsedModel="gpt-5")
    cursor.spend["ana@example.com"] = 1250          # overallSpendCents, this billing cycle
    cursor.refuse_next("/teams/spend", 429, retry_after=1)
    CURSOR_API_URL=cursor.base_url
    cursor.requests                                  # (path, body) asked, in order

with CopilotStandIn(token="ghp_test", org="acme") as github:
    github.add_line(date(2026, 11, 23), "OctoCat", user_initiated_interaction_count=3)
    GITHUB_API_URL=github.base_url                   # the report's download links point here too
    github.requests                                  # (path, Authorization header) asked, in order

Both page their answers: Cursor's daily usage `page_size` members a page (`pagination.hasNextPage`), its
spend `page_size` members a page (`totalPages`); a Copilot report comes as `files` NDJSON files a day.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

COUNTS = (
    "totalLinesAdded",
    "totalLinesDeleted",
    "acceptedLinesAdded",
    "acceptedLinesDeleted",
    "totalApplies",
    "totalAccepts",
    "totalRejects",
    "totalTabsShown",
    "totalTabsAccepted",
    "composerRequests",
    "chatRequests",
    "agentRequests",
    "cmdkUsages",
    "subscriptionIncludedReqs",
    "apiKeyReqs",
    "usageBasedReqs",
    "bugbotUsages",
)


def millis(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


@dataclass
class Refusal:
    fragment: str
    status: int
    retry_after: int | None = None
    headers: dict[str, str] = field(default_factory=dict)  # GitHub's X-RateLimit-* on a primary limit


class _Server:
    """A threaded HTTP server on 127.0.0.1 that hands each request to `answer`."""

    _server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                standin.answer(self, "GET", b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                standin.answer(self, "POST", self.rfile.read(length))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        if self._server is None:
            return "http://127.0.0.1:0"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        raise NotImplementedError

    @staticmethod
    def send(
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: Any = None,
        *,
        text: str | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = text.encode() if text is not None else (json.dumps(payload).encode() if payload is not None else b"")
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)


@dataclass
class CursorStandIn(_Server):
    key: str = "key_standin"
    page_size: int = 2  # members a page, for both endpoints: a few people make several pages
    cycle_start: date = date(2026, 11, 1)
    days: list[dict[str, Any]] = field(default_factory=list)
    spend: dict[str, float] = field(default_factory=dict)  # email -> overallSpendCents
    on_demand: dict[str, float] = field(default_factory=dict)  # email -> spendCents
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> CursorStandIn:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def add_day(self, email: str, day: date, **counts: Any) -> dict[str, Any]:
        """A member's day as the paginated answer lists it (every count present, zero unless given)."""
        row: dict[str, Any] = {
            "userId": 10_000 + sum(map(ord, email)),
            "day": day.isoformat(),
            "date": millis(day),
            "email": email,
            **dict.fromkeys(COUNTS, 0),
            "mostUsedModel": None,
            "applyMostUsedExtension": None,
            "tabMostUsedExtension": None,
            "clientVersion": "2.1.0",
        }
        row.update(counts)
        row["isActive"] = counts.get("isActive", any(row[c] for c in COUNTS))
        self.days = [d for d in self.days if (d["email"], d["day"]) != (email, row["day"])] + [row]
        return row

    def refuse_next(self, fragment: str, status: int, retry_after: int | None = None) -> None:
        self.refusals.append(Refusal(fragment, status, retry_after))

    def answer(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        path = urlsplit(handler.path).path
        try:
            asked = json.loads(body or b"{}")
        except ValueError:
            asked = None
        with self._lock:
            self.requests.append((path, asked if isinstance(asked, dict) else {}))
            refusal = next((r for r in self.refusals if r.fragment in path), None)
            if refusal is not None:
                self.refusals.remove(refusal)
        expected = "Basic " + base64.b64encode(f"{self.key}:".encode()).decode()
        if handler.headers.get("Authorization") != expected:
            self.send(handler, 401, {"error": "Unauthorized", "message": "Invalid API key"})
            return
        if refusal is not None:
            headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after is not None else None
            self.send(handler, refusal.status, {"error": "Too many requests"}, headers=headers)
            return
        if method != "POST" or not isinstance(asked, dict):
            self.send(handler, 400, {"error": "Bad request"})
        elif path == "/teams/daily-usage-data":
            self._daily(handler, asked)
        elif path == "/teams/spend":
            self._spend(handler, asked)
        else:
            self.send(handler, 404, {"error": "Not found"})

    def _daily(self, handler: BaseHTTPRequestHandler, asked: dict[str, Any]) -> None:
        start, end = asked.get("startDate"), asked.get("endDate")
        if not isinstance(start, int) or not isinstance(end, int) or end < start:
            self.send(handler, 400, {"error": "startDate and endDate are required epoch milliseconds"})
            return
        if end - start > 31 * 86_400_000:
            self.send(handler, 400, {"error": "Date range cannot exceed 30 days"})
            return
        rows = sorted((d for d in self.days if start <= d["date"] <= end), key=lambda d: (d["date"], d["email"] or ""))
        page, size = asked.get("page"), asked.get("pageSize")
        period = {"startDate": start, "endDate": end}
        if not isinstance(page, int) or not isinstance(size, int):  # documented: active users only, one answer
            active = [{k: v for k, v in d.items() if k != "isActive"} for d in rows if d["isActive"]]
            self.send(handler, 200, {"data": active, "period": period})
            return
        size = min(size, self.page_size)
        emails = sorted({d["email"] or "" for d in rows})  # a page holds members (with all their days)
        pages = max(1, -(-len(emails) // size))
        members = set(emails[(page - 1) * size : page * size])
        pagination = {
            "page": page,
            "pageSize": size,
            "totalUsers": len(emails),
            "totalPages": pages,
            "hasNextPage": page < pages,
            "hasPreviousPage": page > 1,
        }
        data = [d for d in rows if (d["email"] or "") in members]
        self.send(handler, 200, {"data": data, "period": period, "pagination": pagination})

    def _spend(self, handler: BaseHTTPRequestHandler, asked: dict[str, Any]) -> None:
        page = asked.get("page", 1)
        size = min(int(asked.get("pageSize") or self.page_size), self.page_size)
        emails = sorted(self.spend)
        pages = max(1, -(-len(emails) // size))
        members = [
            {
                "userId": 10_000 + sum(map(ord, email)),
                "spendCents": self.on_demand.get(email, 0),
                "overallSpendCents": self.spend[email],
                "fastPremiumRequests": 0,
                "name": email.split("@")[0].title(),
                "email": email,
                "role": "member",
                "hardLimitOverrideDollars": 0,
                "monthlyLimitDollars": None,
            }
            for email in emails[(page - 1) * size : page * size]
        ]
        self.send(
            handler,
            200,
            {
                "teamMemberSpend": members,
                "subscriptionCycleStart": millis(self.cycle_start),
                "totalMembers": len(emails),
                "totalPages": pages,
            },
        )


@dataclass
class CopilotStandIn(_Server):
    token: str = "ghp_standin"
    org: str = "acme"
    files: int = 2  # NDJSON files a report comes in: a few people make several
    lines: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    unpublished: set[date] = field(default_factory=set)  # days GitHub has not processed yet: 404
    broken_links: bool = False  # answer the metadata with download_links that are not a list of URLs
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> CopilotStandIn:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def add_line(self, day: date, login: str, **fields: Any) -> dict[str, Any]:
        """A person's day as GitHub's user-level example schema writes it (counts zero unless given)."""
        line: dict[str, Any] = {
            "code_acceptance_activity_count": 0,
            "code_generation_activity_count": 0,
            "day": day.isoformat(),
            "organization_id": "4242",
            "enterprise_id": "1",
            "loc_added_sum": 0,
            "loc_deleted_sum": 0,
            "loc_suggested_to_add_sum": 0,
            "loc_suggested_to_delete_sum": 0,
            "totals_by_feature": [],
            "totals_by_ide": [],
            "totals_by_language_feature": [],
            "totals_by_language_model": [],
            "totals_by_model_feature": [],
            "used_agent": False,
            "used_chat": False,
            "used_cli": False,
            "user_id": 1000 + sum(map(ord, login)),
            "user_login": login,
            "user_initiated_interaction_count": 0,
            "etl_id": "green",
            "day_partition": day.isoformat(),
            "entity_id_partition": 1,
        }
        line.update(fields)
        self.lines.setdefault(day, []).append(line)
        return line

    def refuse_next(self, fragment: str, status: int, retry_after: int | None = None) -> None:
        self.refusals.append(Refusal(fragment, status, retry_after))

    def rate_limit_next(self, fragment: str, reset_at: int) -> None:
        """GitHub's primary rate limit: a 403 with X-RateLimit-Remaining 0 and the epoch second it resets."""
        headers = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_at)}
        self.refusals.append(Refusal(fragment, 403, None, headers))

    def answer(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        parts = urlsplit(handler.path)
        auth = handler.headers.get("Authorization")
        with self._lock:
            self.requests.append((handler.path, auth))
            refusal = next((r for r in self.refusals if r.fragment in parts.path), None)
            if refusal is not None:
                self.refusals.remove(refusal)
        if parts.path.startswith("/signed/"):  # the signed download links need no token (and get none)
            if refusal is not None:  # a link that expired before it was read: storage's own 403
                self.send(handler, refusal.status, {"message": "Request has expired"})
                return
            self._download(handler, parts.path)
            return
        if auth not in (f"Bearer {self.token}", f"token {self.token}"):
            self.send(handler, 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
            return
        if refusal is not None:
            headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after is not None else {}
            headers.update(refusal.headers)
            message = "Resource not accessible" if refusal.status == 403 and not headers else "API rate limit exceeded"
            self.send(handler, refusal.status, {"message": message}, headers=headers)
            return
        if parts.path != f"/orgs/{self.org}/copilot/metrics/reports/users-1-day":
            self.send(handler, 404, {"message": "Not Found"})
            return
        day_text = parse_qs(parts.query).get("day", [""])[-1]
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            self.send(handler, 422, {"message": "Invalid day"})
            return
        if day in self.unpublished:
            self.send(handler, 404, {"message": "Not Found"})
            return
        if not self.lines.get(day):
            self.send(handler, 204)
            return
        expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ")
        links = [
            f"{self.base_url}/signed/{day.isoformat()}/part-{n}.ndjson?se={expires}&sig=x" for n in range(self.files)
        ]
        self.send(
            handler, 200, {"download_links": "nope" if self.broken_links else links, "report_day": day.isoformat()}
        )

    def _download(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        try:
            _, _, day_text, name = path.split("/", 3)
            day, part = date.fromisoformat(day_text), int(name.removeprefix("part-").removesuffix(".ndjson"))
        except ValueError:
            self.send(handler, 404, text="NoSuchKey", content_type="application/xml")
            return
        lines = self.lines.get(day, [])[part :: self.files]
        text = "".join(json.dumps(line) + "\n" for line in lines)
        self.send(handler, 200, text=text, content_type="application/x-ndjson")
