"""Signed Slack requests already handled, so a replayed one runs nothing.

Slack signs each request over its timestamp and body, and a signature is accepted for five minutes
either side of our clock (`REPLAY_WINDOW_SECONDS`). Within that window anyone who captured a request
(a proxy's log, a shared HAR file) could send it again and it would verify. So every verified request
claims its signature here: one indexed INSERT ... ON CONFLICT DO NOTHING RETURNING, the same statement
on SQLite and PostgreSQL, and the second claim of a signature gets no row back. The table is in the database, so every
replica of `tokenwise serve` shares it.

Slack's own retries are signed anew (a new timestamp, so a new signature): they are not replays, and
`handlers/slack/retries.py` deals with them.

Rows are useless once their signature can no longer verify; `purge_seen` deletes them, and `SeenRequests`
calls it every `PURGE_EVERY` claims.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from storage.models import SlackRequestSeen, table_of

REPLAY_WINDOW_SECONDS = 5 * 60  # what Slack's verifier (and so Bolt) accepts, either side of now
# A signature stamped up to five minutes ahead is valid until ten minutes after we first saw it; a minute more
# covers clocks that disagree between replicas.
KEEP = timedelta(seconds=2 * REPLAY_WINDOW_SECONDS + 60)
PURGE_EVERY = 200
SIGNATURE_MAX = 100

SEEN = table_of(SlackRequestSeen)
log = logging.getLogger(__name__)


SQLITE_WAIT_MS = 50  # on SQLite the claim waits at most this for the writer's turn (see SeenRequests)
POSTGRESQL_WAIT_MS = 500  # on PostgreSQL a claim waits at most this for a lock or a slow server


def claim_request(engine: Engine, signature: str, request_timestamp: int, now: datetime | None = None) -> bool:
    """Remember a verified request's signature; True the first time, False for a replay.

    One statement in its own short transaction, whatever else the request goes on to do: the claim
    stands even if the handler fails (a retry from Slack carries a new signature anyway). On SQLite it
    waits at most SQLITE_WAIT_MS for another writer (then OperationalError), so it never holds up an ack.
    """
    if not signature or len(signature) > SIGNATURE_MAX:
        raise ValueError("not a Slack request signature")
    insert = postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(SEEN)
        .values(signature=signature, request_timestamp=int(request_timestamp), seen_at=now or datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=[SEEN.c.signature])
        .returning(SEEN.c.signature)  # not rowcount: SQLAlchemy 2.1 reports -1 for this insert on psycopg
    )
    return claim_at_once(engine, statement)


def claim_at_once(engine: Engine, statement: Any) -> bool:
    """Run an INSERT ... ON CONFLICT DO NOTHING RETURNING in its own short transaction; whether it inserted.
    On SQLite it waits at most SQLITE_WAIT_MS for another writer (then OperationalError), so a claim never
    holds up an ack; on PostgreSQL at most POSTGRESQL_WAIT_MS for a lock (another replica's claim of the same
    key not yet committed) or a slow server, and it does not wait for the disk (a crash forgets at most the
    last instant's claims)."""
    with engine.begin() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_WAIT_MS}")
        else:
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            connection.exec_driver_sql(f"SET LOCAL statement_timeout TO {POSTGRESQL_WAIT_MS}")
        try:
            return connection.execute(statement).first() is not None
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA busy_timeout=10000")  # the pool's setting (storage/db.py)


def purge_seen(engine: Engine, now: datetime | None = None) -> int:
    """Forget the signatures that can no longer verify; how many rows went."""
    cutoff = (now or datetime.now(UTC)) - KEEP
    with engine.begin() as connection:
        return int(connection.execute(delete(SEEN).where(SEEN.c.seen_at < cutoff)).rowcount or 0)


class SeenRequests:
    """`claim_request` for one engine, purging old rows every `purge_every` claims of this process.

    This process also remembers the signatures it claimed, so a replay to the same process is refused
    even when the database could not take the claim in time: on SQLite, whose one writer may be busy
    (a SQLite file serves one `tokenwise serve`; replicas share PostgreSQL, where the claim never waits
    on other writers).
    """

    def __init__(self, engine: Engine, purge_every: int = PURGE_EVERY) -> None:
        self.engine = engine
        self.purge_every = max(purge_every, 1)
        self.replays = 0
        self._claims = 0
        self._lock = threading.Lock()
        self._mine: dict[str, datetime] = {}

    def claim(self, signature: str, request_timestamp: int, now: datetime | None = None) -> bool:
        """`first_here`, then `claim_shared`: True the first time this signature is seen anywhere."""
        return self.first_here(signature, now) and self.claim_shared(signature, request_timestamp, now)

    def first_here(self, signature: str, now: datetime | None = None) -> bool:
        """Remember the signature in this process; False (a replay) if it was already. No database."""
        moment = now or datetime.now(UTC)
        with self._lock:
            if signature in self._mine:
                self.replays += 1
                return False
            self._mine[signature] = moment
            if len(self._mine) > 10 * self.purge_every:
                cutoff = moment - KEEP
                self._mine = {key: seen for key, seen in self._mine.items() if seen >= cutoff}
        return True

    def claim_shared(self, signature: str, request_timestamp: int, now: datetime | None = None) -> bool:
        """Claim a signature `first_here` let through in the database every replica shares; False if another
        replica (or this one before a restart) claimed it. Old rows are purged every `purge_every` claims, on
        a thread of their own: the claim runs before Slack's ack."""
        try:
            fresh = claim_request(self.engine, signature, request_timestamp, now)
        except OperationalError:
            if self.engine.dialect.name != "sqlite":
                raise
            fresh = True  # the writer was busy: this process's memory stands in for the claim
        with self._lock:
            self._claims += 1
            purge = self._claims % self.purge_every == 0
            if not fresh:
                self.replays += 1
        if purge:
            threading.Thread(target=self._purge, args=(now,), name="purge-slack-requests", daemon=True).start()
        return fresh

    def _purge(self, now: datetime | None) -> None:
        try:
            purge_seen(self.engine, now)
        except SQLAlchemyError as error:
            log.warning("Could not purge old Slack request signatures (%s); the next purge will", type(error).__name__)
