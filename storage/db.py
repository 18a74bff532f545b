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


# -- writes in progress --------------------------------------------------------------------------------------
# A transaction that has written (or locked) holds SQLite's one write lock, or PostgreSQL's row locks, until it
# ends: nothing slow may happen inside one, above all no call over the network (a model, Slack, a vendor,
# GitHub). `watch_writes()` makes every engine note, per thread, the connections whose transaction has
# written; `write_in_progress()` says whether the current thread holds one. The tests install it with hooks
# on the HTTP clients (tests/support/network_guard.py), so a network call inside a write transaction fails.
_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT", "CREATE", "DROP", "ALTER", "COPY", "TRUNCATE")
_LOCKS = ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE", " FOR UPDATE", " FOR NO KEY UPDATE", "PG_ADVISORY_XACT_LOCK")
_writing: dict[int, tuple[int, str]] = {}  # id(DBAPI connection) -> (thread that wrote, the first write's SQL)
_writing_guard = threading.Lock()
_watching = False


def _is_write(statement: str, context: Any) -> bool:
    if context is not None and (context.isinsert or context.isupdate or context.isdelete):
        return True
    head = statement.lstrip()[:24].upper()
    if head.startswith(_WRITE_VERBS) or head.startswith(_LOCKS[:2]):
        return True
    if head.startswith(("SELECT", "WITH")):
        upper = statement.upper()
        return any(lock in upper for lock in _LOCKS[2:]) or (
            head.startswith("WITH") and any(f" {verb} " in upper for verb in _WRITE_VERBS[:3])
        )
    return False


def _note_write(conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
    if _is_write(statement, context):
        key = id(conn.connection.dbapi_connection)
        with _writing_guard:
            _writing.setdefault(key, (threading.get_ident(), " ".join(statement.split())[:120]))


def _end_write(conn: Any) -> None:
    if conn.closed or conn.invalidated:
        return
    with _writing_guard:
        _writing.pop(id(conn.connection.dbapi_connection), None)


def _returned(dbapi_connection: Any, *_args: Any) -> None:
    with _writing_guard:
        _writing.pop(id(dbapi_connection), None)


def watch_writes() -> None:
    """Note, on every engine, which threads hold a transaction that has written (see `write_in_progress`)."""
    global _watching
    if _watching:
        return
    from sqlalchemy.pool import Pool

    event.listen(Engine, "before_cursor_execute", _note_write)
    event.listen(Engine, "commit", _end_write)
    event.listen(Engine, "rollback", _end_write)
    event.listen(Pool, "checkin", _returned)
    event.listen(Pool, "reset", _returned)
    event.listen(Pool, "invalidate", _returned)
    _watching = True


def write_in_progress() -> str | None:
    """The first write of a transaction this thread holds open, or None (always None unless `watch_writes`)."""
    me = threading.get_ident()
    with _writing_guard:
        return next((sql for thread, sql in _writing.values() if thread == me), None)


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
SQLITE_BUSY_MS = 10_000  # how long a connection waits for the write lock before "database is locked"
TRUNCATE_WAIT_MS = 200  # how long the checkpointer's TRUNCATE waits for readers, holding writers up meanwhile


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
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
    # No JIT: every statement here is an index-bounded read or a write of tens of milliseconds, and
    # PostgreSQL's JIT, set off by cost estimates that correlated sub-queries inflate, spent 2.4 s compiling
    # a 100 ms team summary (docs/performance.md, "Ten times the data").
    kwargs.setdefault("connect_args", {"connect_timeout": 5, "options": "-c jit=off"})
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


@contextmanager
def waiting_at_most(session: Session, seconds: float) -> Iterator[Session]:
    """Make this transaction wait at most `seconds` for another writer's lock, then fail (OperationalError)
    instead of waiting the pool's 10 s: for the few writes a person waits on. SQLite's busy_timeout is
    the connection's, so it is put back after; PostgreSQL's lock_timeout ends with the transaction."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA busy_timeout={int(seconds * 1000)}")
        try:
            yield session
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        return
    connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(seconds * 1000)}ms'")
    yield session


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
    writer in another process), a TRUNCATE checkpoint copies everything and empties the file, if the
    readers let it within TRUNCATE_WAIT_MS (`empty_log`).
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

    def empty_log(self) -> tuple[int, int, int]:
        """A TRUNCATE checkpoint that waits at most TRUNCATE_WAIT_MS for readers of older snapshots, then gives
        up (busy 1) until the next interval: while it waits, SQLite holds every writer up, and with the
        connection's busy_timeout that was 10 s of a person's `/tokenwise me` during a purge."""
        with self.engine.connect() as connection:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={TRUNCATE_WAIT_MS}")
            try:
                row = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            finally:
                connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            return int(row[0]), int(row[1]), int(row[2])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.checkpoint()  # most of the log, while this process's writers go on
                with sqlite_writer(self.engine):  # the little they wrote meanwhile: then the log starts over
                    _busy, pages, _copied = self.checkpoint()
                if pages > self.max_pages:  # still growing: a writer in another process never pauses
                    self.empty_log()
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
