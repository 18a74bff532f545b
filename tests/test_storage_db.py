"""Engine settings that keep SQLite fast under ingest: the page cache, the writer queue, background checkpoints."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine

from storage.db import SQLITE_AUTOCHECKPOINT_PAGES, WalCheckpointer, make_engine, session_scope, sqlite_writer
from storage.models import Person


def _pragma(engine: Engine, name: str) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql(f"PRAGMA {name}").scalar_one())


def test_sqlite_connections_get_a_large_cache_and_rarer_checkpoints(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    assert _pragma(engine, "cache_size") == -65_536  # KiB: 64 MB instead of SQLite's 2 MB
    assert _pragma(engine, "wal_autocheckpoint") == SQLITE_AUTOCHECKPOINT_PAGES
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


def test_writers_of_one_sqlite_file_queue_on_one_lock_and_postgres_writers_do_not(
    tmp_path: Path, engine: Engine, db_url: str
) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    first, second = make_engine(url), make_engine(url)
    assert sqlite_writer(first) is sqlite_writer(second)
    assert sqlite_writer(first) is not sqlite_writer(make_engine(f"sqlite:///{tmp_path / 'c.db'}"))
    if engine.dialect.name == "postgresql":
        with sqlite_writer(engine), sqlite_writer(engine):  # a no-op: it would deadlock if it were a lock
            pass
    else:
        lock = sqlite_writer(engine)
        with lock:
            taken = []
            other = threading.Thread(target=lambda: taken.append(lock.acquire(timeout=0.1)))
            other.start()
            other.join()
            assert taken == [False]  # a second writer of this file waits for the first
        assert lock.acquire(blocking=False)
        lock.release()


def test_the_background_checkpointer_takes_checkpoints_over_and_gives_them_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x TEXT)")
    checkpointer = WalCheckpointer(engine, interval=3600).start()
    try:
        assert _pragma(engine, "wal_autocheckpoint") == 0  # commits no longer copy the log themselves
        for batch in range(30):
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    "INSERT INTO t SELECT ? || value FROM json_each(?)", (str(batch), f"[{','.join(['1'] * 2000)}]")
                )
        busy, pages, copied = checkpointer.checkpoint()
        assert busy == 0 and pages > 100 and copied == pages
    finally:
        checkpointer.stop()
    assert _pragma(engine, "wal_autocheckpoint") == SQLITE_AUTOCHECKPOINT_PAGES
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 60_000


def test_the_checkpointer_empties_a_log_that_outgrew_its_bound(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x TEXT)")
    checkpointer = WalCheckpointer(engine, interval=0.05, max_pages=10).start()
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO t SELECT hex(randomblob(200)) FROM json_each(?)", (f"[{','.join(['1'] * 5000)}]",)
            )
        wal = Path(f"{tmp_path / 'e.db'}-wal")
        for _ in range(200):
            if wal.stat().st_size == 0:
                break
            threading.Event().wait(0.05)
        assert wal.stat().st_size == 0  # TRUNCATE copied everything and emptied the file
    finally:
        checkpointer.stop()


def test_a_truncate_waiting_for_a_reader_holds_writers_up_briefly_not_for_the_busy_timeout(tmp_path: Path) -> None:
    """A TRUNCATE checkpoint holds every writer up while it waits for readers of older snapshots (a purge in
    another process and the server's readers during `tokenwise retention purge`): with the connection's 10 s
    busy timeout, one `/tokenwise me` waited 10.9 s for its audit row. It now gives up after a moment."""
    path = tmp_path / "r.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x TEXT)")
        connection.exec_driver_sql("INSERT INTO t VALUES ('before')")
    checkpointer = WalCheckpointer(engine, interval=3600)
    with engine.connect() as reader:
        reader.exec_driver_sql("BEGIN")
        assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 1  # holds this snapshot
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES ('after')")  # the reader's snapshot is now old
        truncated: list[tuple[int, int, int]] = []
        waiting = threading.Thread(target=lambda: truncated.append(checkpointer.empty_log()))
        waiting.start()
        threading.Event().wait(0.05)  # the checkpoint is waiting for the reader
        writer = make_engine(f"sqlite:///{path}")
        with writer.begin() as connection:
            connection.exec_driver_sql("PRAGMA busy_timeout=3000")  # well under the 10 s it used to take
            connection.exec_driver_sql("INSERT INTO t VALUES ('a person')")
        writer.dispose()
        waiting.join()
        reader.exec_driver_sql("ROLLBACK")
    assert truncated[0][0] == 1  # busy: it gave up, the next interval tries again
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 3


def test_the_checkpointer_does_nothing_on_postgresql(engine: Engine, db_url: str) -> None:
    checkpointer = WalCheckpointer(engine).start()
    if engine.dialect.name == "postgresql":
        assert checkpointer._thread is None
    checkpointer.stop()
    with session_scope(engine) as session:  # the engine still works either way
        session.add(Person(email="a@example.com"))


def test_postgresql_connections_run_without_jit(engine: Engine) -> None:
    """JIT compiled a 100 ms team summary for 2.4 s (docs/performance.md, "Ten times the data")."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW jit").scalar_one() == "off"
    fresh = make_engine(str(engine.url.render_as_string(hide_password=False)))
    with fresh.connect() as connection:
        assert connection.exec_driver_sql("SHOW jit").scalar_one() == "off"
    fresh.dispose()


def test_execute_many_writes_what_sqlalchemys_executemany_writes(tmp_path: Path) -> None:
    """`storage.upsert.execute_many` converts each value itself for SQLite's executemany (the runs of every
    ingest go through it): for any runs, new or seen again, it leaves exactly what SQLAlchemy's own
    executemany of the same statement leaves."""
    from datetime import UTC, datetime, timedelta, timezone
    from unittest.mock import patch

    from hypothesis import given, settings
    from hypothesis import strategies as st
    from sqlalchemy import text

    import storage.ingest as ingest
    from storage.db import upgrade
    from storage.people import get_or_create_person
    from storage.sources import create_source

    engines = {name: make_engine(f"sqlite:///{tmp_path / name}.db") for name in ("fast", "plain")}
    for engine in engines.values():
        upgrade(engine)
        with session_scope(engine) as session:
            create_source(session, "a", "api")
            get_or_create_person(session, email="a@example.com")

    def sqlalchemy_executemany(session: object, statement: object, rows: object) -> None:
        session.connection().execute(statement, list(rows))  # type: ignore[attr-defined]

    zones = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))])
    moments = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=zones)
    words = st.none() | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
    runs = st.fixed_dictionaries(
        {
            "source_id": st.just(1),
            "person_id": st.just(1),
            "external_id": st.sampled_from(["r1", "r2", "r3", "r4"]),
            "agent": st.sampled_from(["claude-code", "codex"]),
            "started_at": moments,
            "ended_at": st.none() | moments,
            "title": words,
            "repo": words,
            "status": st.none() | st.just("completed"),
            "project": words,
            "branch": words,
        }
    )

    @settings(max_examples=60, deadline=None)
    @given(batches=st.lists(st.lists(runs, min_size=1, max_size=6), min_size=1, max_size=3))
    def check(batches: list[list[dict[str, object]]]) -> None:
        for engine in engines.values():
            with engine.begin() as connection:
                connection.execute(text("DELETE FROM agent_run"))
        for batch in batches:
            unique = list({row["external_id"]: row for row in batch}.values())  # one row per run a batch
            with session_scope(engines["fast"]) as session:
                ingest._widen_runs(session, unique)
            with (
                session_scope(engines["plain"]) as session,
                patch.object(ingest, "execute_many", sqlalchemy_executemany),
            ):
                ingest._widen_runs(session, unique)
        stored = {}
        for name, engine in engines.items():
            with engine.connect() as connection:
                stored[name] = connection.execute(text("SELECT * FROM agent_run ORDER BY external_id")).all()
        assert stored["fast"] == stored["plain"]

    check()
