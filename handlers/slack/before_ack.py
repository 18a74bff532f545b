"""The database work that runs before Slack's ack, held to a deadline.

Two claims run before a request is acked: its signature (`refuse_replays`, so a replay runs nothing) and its
delivery (`handlers/slack/retries.py`, so a retry runs nothing). Each is one short statement, but a database
that stops answering (a network partition, a server frozen mid-failover) does not fail it: a new connection
waits for `connect_timeout` and a pooled one for an answer that may never come, and Slack's 3 seconds run
out. So each claim runs in a small pool of threads and the request waits for it at most `DEADLINE_SECONDS`;
past that it goes on without the claim, which this process's memory stands in for (both keep the keys they
claimed), and the claim finishes, or fails, on its own thread. When every thread is still waiting on the
database, a new claim is not queued behind them: the request goes on at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

DEADLINE_SECONDS = 0.75  # a claim takes milliseconds; two of these still leave Slack's 3 s with room
WORKERS = 4


class BeforeAck:
    def __init__(self, seconds: float = DEADLINE_SECONDS, workers: int = WORKERS) -> None:
        self.seconds = seconds
        self.workers = workers
        self.late = 0
        self._busy = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slack-before-ack")

    def run(self, work: Callable[[], T], fallback: T, what: str) -> T:
        """`work()`'s answer if it comes within the deadline (its exception too), else `fallback`."""
        with self._lock:
            if self._busy >= self.workers:
                self.late += 1
                log.warning("%s: the database is still not answering earlier claims; going on without it", what)
                return fallback
            self._busy += 1
        future = self._pool.submit(self._tracked, work)
        try:
            return future.result(timeout=self.seconds)
        except FutureTimeout:
            with self._lock:
                self.late += 1
            log.warning("%s took over %.2f s (is the database answering?); going on without it", what, self.seconds)
            return fallback

    def _tracked(self, work: Callable[[], T]) -> T:
        try:
            return work()
        finally:
            with self._lock:
                self._busy -= 1


BEFORE_ACK = BeforeAck()
