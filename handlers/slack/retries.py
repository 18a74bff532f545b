"""Slack's retries repeat no side effect.

Slack re-sends an event (and, rarely, other requests) with `X-Slack-Retry-Num` when it did not see our
answer in time. Every delivery's identity (its event_id, else its trigger_id, else a hash of the body
Slack signed) is remembered for RETRY_MEMORY_SECONDS; a retry of a delivery already taken is acked at
once and goes no further. A retry of one never seen is handled as new, so nothing is lost. Given an
engine, each delivery is also claimed in the database (`storage/slack_deliveries.py`), so a retry landing
on another replica, or on this one after a restart, runs nothing either; this process's memory answers
first, and stands in when SQLite's writer is too busy to take the claim at once, or when the database
does not answer within `handlers/slack/before_ack.py`'s deadline.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from handlers.slack.before_ack import BEFORE_ACK
from storage.slack_deliveries import claim_delivery, purge_deliveries

log = logging.getLogger(__name__)
RETRY_MEMORY_SECONDS = 15 * 60  # Slack retries three times within about five minutes
RETRY_MEMORY_SIZE = 100_000
PURGE_EVERY = 200  # claims between two purges of the database's old deliveries


def delivery_key(body: dict[str, Any], raw_body: str) -> str:
    """What stays the same across Slack's retries of one delivery."""
    for name in ("event_id", "trigger_id"):
        value = body.get(name)
        if isinstance(value, str) and value:
            return f"{name}:{value}"
    return "body:" + hashlib.sha256(raw_body.encode("utf-8")).hexdigest()


class Deliveries:
    """Delivery keys seen lately, oldest first, bounded in time and count."""

    def __init__(
        self,
        seconds: float = RETRY_MEMORY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        engine: Engine | None = None,
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self.engine = engine
        self.skipped = 0
        self._claims = 0
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        """Remember `key`; whether it was new."""
        now = self.clock()
        with self._lock:
            while self._seen and (
                len(self._seen) >= RETRY_MEMORY_SIZE or now - next(iter(self._seen.values())) > self.seconds
            ):
                self._seen.popitem(last=False)
            if key in self._seen:
                return False
            self._seen[key] = now
            self._claims += 1
            purge = self._claims % PURGE_EVERY == 0
        if self.engine is None:
            return True
        engine = self.engine
        try:
            fresh = BEFORE_ACK.run(lambda: claim_delivery(engine, key), True, "Claiming a Slack delivery")
        except SQLAlchemyError as error:
            # SQLite's writer busy, or the database not answering: this process's memory stands in for the
            # claim (the ack needs no database; what the delivery could change is in that database anyway).
            log.warning("Could not claim a Slack delivery in the database (%s); remembered here", type(error).__name__)
            return True
        if purge:  # off the ack's path: a writer holding SQLite's lock must not hold the ack, nor fail it
            threading.Thread(target=self._purge, name="purge-slack-deliveries", daemon=True).start()
        return fresh

    def _purge(self) -> None:
        try:
            purge_deliveries(self.engine)  # type: ignore[arg-type]
        except SQLAlchemyError as error:
            log.warning("Could not purge old Slack deliveries (%s); the next purge will", type(error).__name__)

    def count_skipped(self) -> None:
        with self._lock:
            self.skipped += 1


def header(request: BoltRequest, name: str) -> str | None:
    values = request.headers.get(name.lower()) or []
    return values[0] if values else None


def register(app: App, deliveries: Deliveries | None = None) -> Deliveries:
    """Install the check as a global middleware: it runs after Bolt has verified the signature."""
    deliveries = deliveries or Deliveries()

    def skip_repeated_retries(req: BoltRequest, next: Callable[[], BoltResponse]) -> BoltResponse | None:
        fresh = deliveries.first_time(delivery_key(req.body, req.raw_body))
        if not fresh and header(req, "X-Slack-Retry-Num") is not None:
            deliveries.count_skipped()
            return BoltResponse(status=200, body="")
        return next()

    app.use(skip_repeated_retries)
    return deliveries
