"""The database work that runs before Slack's ack, held to a deadline.

Two claims run before a request is acked: its signature (`refuse_replays`, so a replay runs nothing) and its
delivery (`handlers/slack/retries.py`, so a retry runs nothing). Each is one short statement, but a database
that stops answering (a network partition, a server frozen mid-failover) does not fail it: a new connection
waits for `connect_timeout` and a pooled one for an answer that may never come, and Slack's 3 seconds run
out. So each claim runs on a thread of its own and the request waits for it at most `DEADLINE_SECONDS`;
past that it goes on without the claim, which this process's memory stands in for (both remember the keys
they saw before they ask the database), and the claim finishes, or fails, on its own thread. When
`WORKERS` claims are still waiting on the database, a new one is not started: the request goes on at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

DEADLINE_SECONDS = 0.75  # a claim takes milliseconds; two of these still leave Slack's 3 s with room
WORKERS = 4


class BeforeAck:
    """Runs each claim on a daemon thread of its own, at most `workers` at once: a thread stuck for ever on a
    socket the database no longer answers must not keep the process from exiting (a thread pool's workers
    are joined at exit), and a claim that finishes after its request went on is logged when it says the
    request had been seen (a retry or a replay that ran anyway) or fails."""

    def __init__(self, seconds: float = DEADLINE_SECONDS, workers: int = WORKERS) -> None:
        self.seconds = seconds
        self.workers = workers
        self.late = 0
        self._busy = 0
        self._lock = threading.Lock()

    def run(self, work: Callable[[], T], fallback: T, what: str) -> T:
        """`work()`'s answer if it comes within the deadline (its exception too), else `fallback`."""
        with self._lock:
            if self._busy >= self.workers:
                self.late += 1
                log.warning("%s: the database is still not answering earlier claims; going on without it", what)
                return fallback
            self._busy += 1
        outcome: dict[str, Any] = {}
        done = threading.Event()
        gave_up = threading.Event()

        def claim() -> None:
            try:
                outcome["value"] = work()
            except BaseException as error:  # handed to the waiting request, or logged if it went on
                outcome["error"] = error
            finally:
                with self._lock:
                    self._busy -= 1
                done.set()
                if gave_up.is_set():
                    self._late_answer(what, outcome, fallback)

        try:
            threading.Thread(target=claim, name="slack-before-ack", daemon=True).start()
        except RuntimeError:  # no new threads (the interpreter is exiting): go on without the claim
            with self._lock:
                self._busy -= 1
            return fallback
        if not done.wait(self.seconds):
            gave_up.set()
            with self._lock:
                self.late += 1
            log.warning("%s took over %.2f s (is the database answering?); going on without it", what, self.seconds)
            if done.is_set():  # it finished between the wait and the flag: say what it found
                self._late_answer(what, outcome, fallback)
            return fallback
        if "error" in outcome:
            raise outcome["error"]
        value: T = outcome["value"]
        return value

    @staticmethod
    def _late_answer(what: str, outcome: dict[str, Any], fallback: Any) -> None:
        if "error" in outcome:
            log.warning("%s failed after its request went on: %s", what, type(outcome["error"]).__name__)
        elif outcome.get("value") != fallback:
            log.warning("%s: the database, answering late, had seen it before; it ran here anyway", what)


BEFORE_ACK = BeforeAck()
