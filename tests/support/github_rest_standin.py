"""A loopback stand-in for the part of GitHub's REST API that `tokenwise import github` reads, answering in
GitHub's documented shapes, pagination (Link headers) and rate-limit headers.

with GitHubRestStandIn(token="ghp_test") as github:
    github.add_pull(101, user="ana", merged_at="2026-11-20T10:00:00Z", ...)
    github.add_commit(101, "a" * 40, message="...")
    github.rate_limit_next("/pulls/101", "primary")     # the next such request gets a 403 (remaining 0)
    GITHUB_API_URL=github.base_url
    github.requests                                     # paths and queries asked, in order

Routes: GET /repos/{owner}/{repo}/pulls (state, sort, direction, per_page, page), GET .../pulls/{number},
GET .../pulls/{number}/commits (per_page, page). A page never holds more than `page_size` items whatever
per_page asks (GitHub too may answer with fewer than asked), so a few pull requests make several pages.
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

DETAIL_ONLY = ("merged", "mergeable", "comments", "commits", "additions", "deletions", "changed_files", "merged_by")
RATE_LIMIT = 5000


@dataclass
class RateLimitOnce:
    fragment: str  # the next request whose path contains this gets the refusal
    kind: str  # "primary": 403, x-ratelimit-remaining 0 and x-ratelimit-reset; "secondary": 429 with retry-after
    retry_after: int = 7


@dataclass
class GitHubRestStandIn:
    token: str = "ghp_standin"
    repo: str = "acme/payments"
    page_size: int = 3  # pull requests per page
    commits_page_size: int = 2
    reset_at: int = 1_790_000_030  # x-ratelimit-reset, epoch seconds
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    commits: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    refusals: list[RateLimitOnce] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- data, as GitHub shapes it ---------------------------------------------------------------------------
    def add_pull(
        self,
        number: int,
        *,
        user: str,
        created_at: str,
        updated_at: str,
        merged_at: str | None = None,
        closed_at: str | None = None,
        merged_by: str | None = None,
        state: str = "closed",
        head_ref: str | None = None,  # default: a branch of its own
        additions: int = 10,
        deletions: int = 2,
        title: str = "A change",
    ) -> dict[str, Any]:
        owner, name = self.repo.split("/")
        head_ref = head_ref or f"change-{number}"
        head_sha = f"{number:04d}".ljust(40, "e")
        pull = {
            "url": f"{self.base_url}/repos/{self.repo}/pulls/{number}",
            "id": 1_000_000 + number,
            "node_id": f"PR_kw{number}",
            "html_url": f"https://github.com/{self.repo}/pull/{number}",
            "number": number,
            "state": state,
            "locked": False,
            "title": title,
            "user": _user(user),
            "body": "What this does, in words that must never be stored.",
            "labels": [],
            "created_at": created_at,
            "updated_at": updated_at,
            "closed_at": closed_at or (merged_at if state == "closed" else None),
            "merged_at": merged_at,
            "merge_commit_sha": f"{number:04d}".ljust(40, "f") if merged_at else None,
            "draft": False,
            "head": {
                "label": f"{owner}:{head_ref}",
                "ref": head_ref,
                "sha": head_sha,
                "user": _user(owner),
                "repo": {"full_name": self.repo, "name": name},
            },
            "base": {
                "label": f"{owner}:main",
                "ref": "main",
                "sha": "0" * 40,
                "user": _user(owner),
                "repo": {"full_name": self.repo, "name": name},
            },
            "author_association": "MEMBER",
            "merged": merged_at is not None,
            "mergeable": None,
            "comments": 0,
            "commits": 0,
            "additions": additions,
            "deletions": deletions,
            "changed_files": 1,
            "merged_by": _user(merged_by) if merged_by else None,
        }
        self.pulls[number] = pull
        self.commits.setdefault(number, [])
        return pull

    def add_commit(
        self, number: int, sha: str, *, message: str, login: str | None, email: str, date: str
    ) -> dict[str, Any]:
        person = {"name": (login or email).title(), "email": email, "date": date}
        commit: dict[str, Any] = {
            "url": f"{self.base_url}/repos/{self.repo}/commits/{sha}",
            "sha": sha,
            "node_id": f"C_kw{sha[:8]}",
            "html_url": f"https://github.com/{self.repo}/commit/{sha}",
            "commit": {"author": person, "committer": dict(person), "message": message, "comment_count": 0},
            "author": _user(login) if login else None,
            "committer": _user(login) if login else None,
            "parents": [],
        }
        self.commits[number].append(commit)
        self.pulls[number]["commits"] = len(self.commits[number])
        return commit

    def rate_limit_next(self, fragment: str, kind: str, retry_after: int = 7) -> None:
        self.refusals.append(RateLimitOnce(fragment, kind, retry_after))

    # -- the server ------------------------------------------------------------------------------------------
    def __enter__(self) -> GitHubRestStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                standin.answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        if self._server is None:
            return "http://127.0.0.1:0"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append(handler.path)
            refusal = next((r for r in self.refusals if r.fragment in parts.path), None)
            if refusal is not None:
                self.refusals.remove(refusal)
        auth = handler.headers.get("Authorization") or ""
        if auth not in (f"token {self.token}", f"Bearer {self.token}"):
            self._send(
                handler, 401, {"message": "Bad credentials", "documentation_url": _docs("rest"), "status": "401"}
            )
            return
        if refusal is not None:
            self._refuse(handler, refusal)
            return
        prefix = f"/repos/{self.repo}/pulls"
        if parts.path == prefix:
            self._list_pulls(handler, parts.path, query)
        elif match := re.fullmatch(re.escape(prefix) + r"/(\d+)", parts.path):
            pull = self.pulls.get(int(match.group(1)))
            if pull is None:
                self._send(handler, 404, {"message": "Not Found", "documentation_url": _docs("rest/pulls")})
            else:
                self._send(handler, 200, pull)
        elif match := re.fullmatch(re.escape(prefix) + r"/(\d+)/commits", parts.path):
            number = int(match.group(1))
            if number not in self.pulls:
                self._send(handler, 404, {"message": "Not Found", "documentation_url": _docs("rest/pulls")})
                return
            items, links = self._page(parts.path, query, self.commits[number], self.commits_page_size)
            self._send(handler, 200, items, links)
        else:
            self._send(handler, 404, {"message": "Not Found", "documentation_url": _docs("rest")})

    def _list_pulls(self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, str]) -> None:
        state, sort = query.get("state", "open"), query.get("sort", "created")
        pulls = [p for p in self.pulls.values() if state == "all" or p["state"] == state]
        key = "updated_at" if sort == "updated" else "created_at"
        pulls.sort(key=lambda p: (p[key], p["number"]), reverse=query.get("direction", "desc") == "desc")
        simple = [{k: v for k, v in p.items() if k not in DETAIL_ONLY} for p in pulls]
        items, links = self._page(path, query, simple, self.page_size)
        self._send(handler, 200, items, links)

    def _page(
        self, path: str, query: dict[str, str], items: list[dict[str, Any]], most: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        size = max(1, min(int(query.get("per_page", 30)), 100, most))
        page = max(1, int(query.get("page", 1)))
        last = max(1, -(-len(items) // size))

        def url(n: int) -> str:
            return f"{self.base_url}{path}?{urlencode({**query, 'page': n})}"

        rels = []
        if page < last:
            rels += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        if page > 1:
            rels += [f'<{url(1)}>; rel="first"', f'<{url(page - 1)}>; rel="prev"']
        return items[(page - 1) * size : page * size], ", ".join(rels) or None

    def _refuse(self, handler: BaseHTTPRequestHandler, refusal: RateLimitOnce) -> None:
        if refusal.kind == "primary":
            body = {
                "message": "API rate limit exceeded for user ID 1.",
                "documentation_url": _docs("rest/overview/rate-limits-for-the-rest-api"),
            }
            self._send(handler, 403, body, remaining=0)
        else:
            body = {
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "documentation_url": _docs("rest/overview/rate-limits-for-the-rest-api"),
            }
            self._send(handler, 429, body, retry_after=refusal.retry_after)

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: Any,
        links: str | None = None,
        remaining: int = RATE_LIMIT - 1,
        retry_after: int | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("X-GitHub-Media-Type", "github.v3; format=json")
        handler.send_header("X-RateLimit-Limit", str(RATE_LIMIT))
        handler.send_header("X-RateLimit-Remaining", str(remaining))
        handler.send_header("X-RateLimit-Reset", str(self.reset_at))
        handler.send_header("X-RateLimit-Used", str(RATE_LIMIT - remaining))
        handler.send_header("X-RateLimit-Resource", "core")
        if links:
            handler.send_header("Link", links)
        if retry_after is not None:
            handler.send_header("Retry-After", str(retry_after))
        handler.end_headers()
        handler.wfile.write(data)


def _user(login: str) -> dict[str, Any]:
    return {"login": login, "id": zlib.crc32(login.encode()) % 10_000_000, "type": "User", "site_admin": False}


def _docs(path: str) -> str:
    return f"https://docs.github.com/{path}"


def iso(text: str) -> str:
    """'2026-11-20 10:00' as GitHub writes times: '2026-11-20T10:00:00Z'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
