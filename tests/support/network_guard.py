"""A network call made while the calling thread holds a database write transaction fails the test.

Such a call keeps SQLite's one write lock (or PostgreSQL's row locks) for as long as the far side takes to
answer: a model thinking for 40 s froze every other writer. `install()` (tests/conftest.py, for every test)
hooks the three ways Tokenwise reaches the network:
- urllib, under slack_sdk's WebClient (every Web API call and file upload) and WebhookClient (response_url);
- httpx2's transports, under the openai SDK (summaries, the usage pull) and gidgethub (the GitHub backfill).
Before each request it asks `storage.db.write_in_progress()`; a write transaction open on this thread
raises `NetworkInsideWriteTransaction` there and is recorded, and the conftest fixture fails the test with
it, even when the code under test caught the error (a listener's apology, a digest's recorded failure).
"""

from __future__ import annotations

import traceback
import urllib.request
from collections import Counter
from typing import Any

import httpx2

from storage.db import watch_writes, write_in_progress

VIOLATIONS: list[str] = []
CHECKED: Counter[str] = Counter()  # requests checked, by client ("urllib", "httpx2"): proof the hooks see them
_installed = False


class NetworkInsideWriteTransaction(AssertionError):
    """A request went over the network while this thread's database transaction held a write lock."""


def check(call: str) -> None:
    """Raise (and record) if this thread holds a write transaction: `call` says what was about to be sent."""
    held = write_in_progress()
    if held is None:
        return
    message = f"{call} was sent inside a database write transaction (its first write: {held})"
    where = "".join(traceback.format_stack(limit=14)[:-2])
    VIOLATIONS.append(f"{message}\n{where}")
    raise NetworkInsideWriteTransaction(message)


def install() -> None:
    """Watch every engine's writes and hook the HTTP clients (idempotent)."""
    global _installed
    if _installed:
        return
    watch_writes()
    opener_open = urllib.request.OpenerDirector.open
    sync_send = httpx2.HTTPTransport.handle_request
    async_send = httpx2.AsyncHTTPTransport.handle_async_request

    def open_checked(self: urllib.request.OpenerDirector, fullurl: Any, *args: Any, **kwargs: Any) -> Any:
        url = fullurl.full_url if isinstance(fullurl, urllib.request.Request) else str(fullurl)
        CHECKED["urllib"] += 1
        check(f"urllib request to {url}")
        return opener_open(self, fullurl, *args, **kwargs)

    def send_checked(self: httpx2.HTTPTransport, request: httpx2.Request) -> httpx2.Response:
        CHECKED["httpx2"] += 1
        check(f"httpx2 {request.method} {request.url}")
        return sync_send(self, request)

    async def send_checked_async(self: httpx2.AsyncHTTPTransport, request: httpx2.Request) -> httpx2.Response:
        CHECKED["httpx2 async"] += 1
        check(f"httpx2 {request.method} {request.url}")
        return await async_send(self, request)

    urllib.request.OpenerDirector.open = open_checked  # type: ignore[method-assign]
    httpx2.HTTPTransport.handle_request = send_checked  # type: ignore[method-assign]
    httpx2.AsyncHTTPTransport.handle_async_request = send_checked_async  # type: ignore[method-assign]
    _installed = True
