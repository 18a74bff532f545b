"""POST /v1/github/webhook: one URL for every GitHub source (docs/ingest.md "GitHub").

A delivery carries no bearer token: its sender is the active GitHub source whose webhook secret makes its
X-Hub-Signature-256 (401 otherwise, nothing written). Then: `ping` 200; an event or action Tokenwise does not
use 202, stored nowhere; a body over GitHub's 25 MB cap 413; the facts written and their pull requests
settled in one transaction, with the delivery id claimed in it, so a re-delivery is a no-op. No network call
is made; deliveries that arrive together are written together, and under a burst their pull requests are
settled after the answers (`DeliveryQueue`), which is what keeps a burst within GitHub's 10 seconds
(`make bench`, tests/benchmarks/bench_github.py).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.github.webhooks import MAX_BYTES, Handled, Incoming, Reading, settle_waiting, take_deliveries
from bot.log_safety import log_failure
from bot.services import Services
from handlers.http.bodies import BodyTooLarge, bounded_body
from handlers.http.deps import ServicesDep, failure
from storage.ingest_schemas import batch_error

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/github", tags=["github"])

GROUP_MAX = 200  # deliveries written in one transaction at most: SQLite's writer turn stays short
UNSIGNED = (
    "No active GitHub source's secret signs this delivery (X-Hub-Signature-256). Paste the secret "
    "`tokenwise source create NAME --kind github` printed into the webhook's Secret field."
)
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": '`ping`, or written: {"delivery": id, "duplicate": false} (its pull requests settled, or, in a'
        ' burst, queued and settled right after); a re-delivery: "duplicate": true'
    },
    202: {"description": "An event or action Tokenwise does not use: nothing stored"},
    400: {"description": "Signed, but no delivery: no X-GitHub-Event or X-GitHub-Delivery, or not the event's shape"},
    401: {"description": "No signature, or one no active GitHub source's secret makes: nothing written"},
    413: {"description": "Body over GitHub's 25 MB cap"},
    503: {"description": "The database is not answering: nothing written (GitHub can redeliver it)"},
}


class DeliveryQueue:
    """Deliveries waiting for the database, taken together: while a group is being written, the ones that
    arrive wait and become the next group (one transaction; see `take_deliveries`). A delivery alone is
    written and its pull requests settled before it is answered; deliveries that come together are answered
    as soon as their facts are written, and the pull requests they touched are settled right after, a few at
    a time between the groups that still arrive (`settle_waiting`). They wait in the database
    (github_unsettled), so a restart loses none: the `github:settle` job takes what is left. PostgreSQL
    writes two groups at a time (one is parsed while the other waits on the database); SQLite, whose writers
    take turns, one."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.waiting: list[tuple[Incoming, asyncio.Future[Handled]]] = []
        self.writers: set[asyncio.Task[None]] = set()
        self.most = 1 if services.engine.dialect.name == "sqlite" else 2
        self.unsettled = False  # a group was queued to be settled since the queue last ran dry

    async def take(self, incoming: Incoming) -> Handled:
        answer: asyncio.Future[Handled] = asyncio.get_running_loop().create_future()
        self.waiting.append((incoming, answer))
        if len(self.writers) < self.most:
            writer = asyncio.create_task(self._write())
            self.writers.add(writer)
            writer.add_done_callback(self.writers.discard)
        return await answer

    async def _write(self) -> None:
        try:
            while self.waiting or self.unsettled:
                if self.waiting:
                    await self._write_group()
                else:
                    await self._settle_some()
        finally:
            # Leave the set before yielding to the loop: a delivery arriving next must start a writer.
            self.writers.discard(asyncio.current_task())

    async def _write_group(self) -> None:
        settings = self.services.settings
        group, self.waiting = self.waiting[:GROUP_MAX], self.waiting[GROUP_MAX:]
        # Deliveries that came together, more behind them or a burst still being settled: answer once
        # written, settle after. A delivery alone is settled before its answer.
        later = len(group) > 1 or bool(self.waiting) or self.unsettled
        reading, rules = Reading.of(settings), settings.link_rules()
        try:
            handled = await run_in_threadpool(
                take_deliveries, self.services.engine, [one for one, _ in group], reading, rules, later
            )
        except Exception as error:  # take_deliveries answers for each; this is a last resort
            handled = [Handled(500, error=error)] * len(group)
        self.unsettled = self.unsettled or later
        for (_, answer), result in zip(group, handled, strict=True):
            if not answer.done():
                answer.set_result(result)

    async def _settle_some(self) -> None:
        try:
            settled = await run_in_threadpool(settle_waiting, self.services.engine, self.services.settings.link_rules())
        except Exception as error:  # the `github:settle` job settles what is left
            log_failure(log, "settling pull requests after a burst failed; the github:settle job retries", error=error)
            settled = 0
        if not settled:
            self.unsettled = False


_QUEUES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, DeliveryQueue]] = weakref.WeakKeyDictionary()


def queue_for(services: Services) -> DeliveryQueue:
    """The queue of these services on the running event loop (a server has one loop; a test client may
    make one per request)."""
    queues = _QUEUES.setdefault(asyncio.get_running_loop(), {})
    queue = queues.get(id(services))
    if queue is None or queue.services is not services:
        queue = queues[id(services)] = DeliveryQueue(services)
    return queue


def _answer(status: int, message: str) -> JSONResponse:
    return JSONResponse({"errors": [batch_error(None, None, message)]}, status_code=status)


@router.post(
    "/webhook", summary="GitHub webhook deliveries (repository, organisation or GitHub App)", responses=RESPONSES
)
async def github_webhook(request: Request, services: ServicesDep) -> Response:
    try:
        body = await bounded_body(request, MAX_BYTES)
    except BodyTooLarge:
        return _answer(413, "The body is over GitHub's 25 MB cap; this is no GitHub delivery.")
    headers = {name.lower(): value for name, value in request.headers.items()}
    handled = await queue_for(services).take(Incoming(headers, body))
    if handled.error is not None:
        return failure(handled.error, services, "A GitHub delivery")
    if handled.status == 401:
        return _answer(401, UNSIGNED)
    if handled.status == 400:
        return _answer(400, handled.message)
    if handled.status == 202:
        return JSONResponse({"ignored": handled.event}, status_code=202)
    if handled.event == "ping":
        return JSONResponse({"pong": handled.delivery_id})
    return JSONResponse({"delivery": handled.delivery_id, "duplicate": handled.duplicate})
