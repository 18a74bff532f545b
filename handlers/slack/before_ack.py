"""The database work that runs before Slack's ack, held to a deadline.

Two claims run before a request is acked: its signature (`refuse_replays`, so a replay runs nothing) and its
delivery (`handlers/slack/retries.py`, so a retry runs nothing). Each is one short statement, but a database
that stops answering (a network partition, a server frozen mid-failover) does not fail it: a new connection
waits for `connect_timeout` and a pooled one for an answer that may never come, and Slack's 3 seconds run
out. So each claim runs on a thread of its own and the request waits for it at most `DEADLINE_SECONDS`;
past that it goes on without the claim, which this process's memory stands in for (both remember the keys
they saw before they ask the database), and the claim finishes, or fails, on its own thread. When
`WORKERS` claims are still waiting on the database, a new one is not started: the request goes on at once.

In OAuth mode Bolt also reads the workspace's installation before the ack; `InstallationsInTime` holds those
reads to the same deadline.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from slack_sdk.oauth.installation_store import Bot, Installation, InstallationStore

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
        outcome: dict[str, Any] = {}  # value or error; "finished" and "gave_up" change under the lock
        done = threading.Event()

        def claim() -> None:
            try:
                outcome["value"] = work()
            except BaseException as error:  # handed to the waiting request, or logged if it went on
                outcome["error"] = error
            finally:
                with self._lock:
                    self._busy -= 1
                    outcome["finished"] = True
                    late = "gave_up" in outcome
                done.set()
                if late:
                    self._late_answer(what, outcome, fallback)

        try:
            threading.Thread(target=claim, name="slack-before-ack", daemon=True).start()
        except RuntimeError:  # no new threads (the interpreter is exiting): go on without the claim
            with self._lock:
                self._busy -= 1
            return fallback
        if not done.wait(self.seconds):
            with self._lock:
                self.late += 1
                outcome["gave_up"] = True
                finished = "finished" in outcome  # between the wait and the lock: reported here, not there
            log.warning("%s took over %.2f s (is the database answering?); going on without it", what, self.seconds)
            if finished:
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


class DatabaseNotAnswering(Exception):
    """The installation store did not answer within the deadline and this process has no earlier answer."""


class InstallationsInTime(InstallationStore):
    """The installation store as Bolt reads it before every ack in OAuth mode, each read held to
    `BEFORE_ACK`'s deadline. Past it, the last installation this process read or saved for the workspace
    stands in, without its refresh token (so that Bolt does not rotate the token, a write, against a database
    that is not answering); with none, the request fails at once (`DatabaseNotAnswering`: Bolt answers 500)
    instead of waiting. Tokenwise asks for bot scopes only, so a person's own installation (Bolt asks for one
    when the sender is not the installer) is None without a read. Writes and deletions go to the store."""

    def __init__(self, store: InstallationStore, before_ack: BeforeAck = BEFORE_ACK) -> None:
        self.store = store
        self.before_ack = before_ack
        self._last: dict[tuple[object, ...], Installation | Bot | None] = {}
        self._lock = threading.Lock()

    @property
    def logger(self) -> logging.Logger:
        return self.store.logger

    def save(self, installation: Installation) -> None:
        self.store.save(installation)
        workspace = (installation.enterprise_id, installation.team_id, bool(installation.is_enterprise_install))
        self._remember(("installation", *workspace), installation)

    def save_bot(self, bot: Bot) -> None:
        self.store.save_bot(bot)
        self._remember(("bot", bot.enterprise_id, bot.team_id, bool(bot.is_enterprise_install)), bot)

    def find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        if user_id is not None:  # no user scopes are asked for: nobody has an installation of their own
            return None
        found = self._in_time(
            ("installation", enterprise_id, team_id, bool(is_enterprise_install)),
            lambda: self.store.find_installation(
                enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install
            ),
        )
        return cast("Installation | None", found)

    def find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        found = self._in_time(
            ("bot", enterprise_id, team_id, bool(is_enterprise_install)),
            lambda: self.store.find_bot(
                enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install
            ),
        )
        return cast("Bot | None", found)

    def delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        self._forget(enterprise_id, team_id)
        self.store.delete_installation(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id)

    def delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        self._forget(enterprise_id, team_id)
        self.store.delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    def delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        self._forget(enterprise_id, team_id)
        self.store.delete_all(enterprise_id=enterprise_id, team_id=team_id)

    def _in_time(self, key: tuple[object, ...], read: Callable[[], Installation | Bot | None]) -> object:
        missing = object()
        found = self.before_ack.run(read, missing, "Reading the workspace's installation")
        if found is not missing:
            self._remember(key, cast("Installation | Bot | None", found))
            return found
        with self._lock:
            if key not in self._last:
                raise DatabaseNotAnswering("the installation store did not answer in time")
            last = self._last[key]
        if last is None:
            return None
        stand_in = copy.copy(last)
        stand_in.bot_refresh_token = None  # no rotation (a write) while the database does not answer
        if isinstance(stand_in, Installation):
            stand_in.user_refresh_token = None
        return stand_in

    def _remember(self, key: tuple[object, ...], found: Installation | Bot | None) -> None:
        with self._lock:
            self._last[key] = copy.copy(found)  # Bolt may change what it is handed

    def _forget(self, enterprise_id: str | None, team_id: str | None) -> None:
        with self._lock:
            self._last = {key: value for key, value in self._last.items() if key[1:3] != (enterprise_id, team_id)}
