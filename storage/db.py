"""Engine, sessions and schema upgrades for SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event, exc, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


class DatabaseUnavailable(RuntimeError):
    """The database did not answer; the user should check DATABASE_URL."""


def normalize_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, postgresql://) and pick the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


# Write throughput at millions of rows (docs/performance.md): a 64 MB page cache per connection (SQLite's
# default is 2 MB) holds the index pages that ingest keeps touching, and the WAL is copied back into the
# database every 10 000 pages (40 MB) instead of every 1 000, so a page written by many batches is copied
# once. The file is cut back to 64 MB after each copy.
SQLITE_CACHE_KIB = 65_536
SQLITE_AUTOCHECKPOINT_PAGES = 10_000
SQLITE_WAL_KEEP_BYTES = 64 * 1024 * 1024


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
    cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_KEEP_BYTES}")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    kwargs.setdefault("hide_parameters", True)  # errors and logs never carry emails, notes or token hashes
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("connect_args", {"connect_timeout": 5})
    return create_engine(url, **kwargs)


def database_unreachable(error: BaseException) -> bool:
    """The database did not answer or dropped the connection (down, restarting, busy): worth retrying later.

    Anything else (a constraint, a bug) is not: retrying the same request would fail the same way.
    """
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError | exc.DisconnectionError)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe to run on every start, and cheap when the schema is current:
    Alembic (a few hundred milliseconds of imports, part of every CLI command's start-up) is loaded only
    when there is something to upgrade."""
    if revision == "head" and _at_head(engine):
        return
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)


def head_revisions() -> set[str] | None:
    """The migrations' heads, read off their files' `revision` and `down_revision` lines as Alembic's own
    files write them; None when a file cannot be read that way (then Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((name, value) for name, value in _REVISION.findall(path.read_text()))
        names = re.findall(r"[\"']([^\"']+)[\"']", found.get("revision", ""))
        if len(names) != 1 or "down_revision" not in found:
            return None
        revisions.add(names[0])
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", found["down_revision"]))
    return (revisions - parents) or None


def _at_head(engine: Engine) -> bool:
    heads = head_revisions()
    if heads is None:
        return False
    try:
        with engine.connect() as connection:
            current = {row[0] for row in connection.exec_driver_sql("SELECT version_num FROM alembic_version")}
    except exc.DBAPIError:  # no schema yet
        return False
    return current == heads


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def has_schema(engine: Engine) -> bool:
    return inspect(engine).has_table("alembic_version")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back whole on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def take_turns(session: Session, key: str) -> None:
    """Make the transactions that name `key` take turns until they end, so each reads what the one before it
    wrote: a transaction-level advisory lock on PostgreSQL; a no-op on SQLite, whose writers take turns anyway."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})


_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def sqlite_writer(engine: Engine) -> Any:
    """Held around a batch's write transaction: on SQLite, one writer of this process at a time.

    SQLite lets one transaction write at a time and makes the others poll (busy_timeout sleeps 1 ms, then
    up to 100 ms between tries), so concurrent batches in one process spent most of their time asleep.
    Queuing them on a lock hands the database over as soon as it is free; other processes still wait on
    SQLite's own lock. A no-op elsewhere: PostgreSQL writers run side by side.
    """
    if engine.dialect.name != "sqlite":
        return nullcontext()
    key = str(engine.url)
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.Lock())


class WalCheckpointer:
    """Copies SQLite's write-ahead log back into the database from a background thread (SQLite only).

    Otherwise the connection whose commit crosses wal_autocheckpoint does the copy, and its fsyncs,
    inside its request: about 40 % of a batch's time at millions of rows (docs/performance.md). While
    this runs, this process's connections leave checkpoints to it. Every `interval` seconds it takes a
    PASSIVE checkpoint, which blocks neither readers nor writers, then a second one holding this process's
    writer lock (`sqlite_writer`) for the few pages written meanwhile, so that the log is copied whole
    and the next writer starts it over instead of growing it. If it still grows past `max_pages` (a
    writer in another process), a TRUNCATE checkpoint copies everything and empties the file.
    """

    def __init__(self, engine: Engine, interval: float = 1.0, max_pages: int = 50_000) -> None:
        self.engine = engine
        self.interval = interval
        self.max_pages = max_pages
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WalCheckpointer:
        if self.engine.dialect.name != "sqlite" or self._thread is not None:
            return self
        event.listen(self.engine, "connect", _no_autocheckpoint)
        self.engine.dispose()  # connections opened before now are reopened without autocheckpoints
        self._thread = threading.Thread(target=self._run, name="sqlite-wal-checkpointer", daemon=True)
        self._thread.start()
        return self

    def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """(busy, pages in the log, pages copied), as SQLite reports them."""
        with self.engine.connect() as connection:
            row = connection.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})").one()
            return int(row[0]), int(row[1]), int(row[2])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.checkpoint()  # most of the log, while this process's writers go on
                with sqlite_writer(self.engine):  # the little they wrote meanwhile: then the log starts over
                    _busy, pages, _copied = self.checkpoint()
                if pages > self.max_pages:  # still growing: a writer in another process never pauses
                    self.checkpoint("TRUNCATE")
            except Exception as error:
                log.warning("WAL checkpoint failed (%s); retrying in %.0f s", type(error).__name__, self.interval)

    def stop(self) -> None:
        """Stop the thread and give checkpoints back to the connections (the pool is reopened)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self._thread = None
        event.remove(self.engine, "connect", _no_autocheckpoint)
        self.engine.dispose()


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")
