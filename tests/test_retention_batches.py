"""The batched retention purge deletes exactly what the one-transaction purge deletes, on both databases,
including runs that started before the cutoff with records after it and late records of old runs."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, bindparam, text

from bot.seed import seed_organisation
from storage.db import session_scope
from storage.retention import purge_expired, purge_in_batches
from storage.types import UTCDateTime

END = date(2026, 11, 25)
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
TABLES = ("usage_record", "outcome", "annotation", "agent_run", "outcome_link", "pull_request")


def _ids(engine: Engine) -> dict[str, list[int]]:
    with engine.connect() as connection:
        return {t: [row[0] for row in connection.execute(text(f"SELECT id FROM {t} ORDER BY id"))] for t in TABLES}


def _seed_with_edges(engine: Engine) -> None:
    seed_organisation(engine, 12, 2, 12, seed=5, end=END, requests_per_call=3)
    cutoff = NOW - timedelta(days=30)
    with engine.begin() as connection:  # an old run's record after the cutoff, an outcome of an old run after it
        old_run = connection.execute(
            text(
                "SELECT id, person_id, source_id FROM agent_run WHERE started_at < :c ORDER BY started_at DESC"
            ).bindparams(bindparam("c", type_=UTCDateTime())),
            {"c": cutoff},
        ).first()
        assert old_run is not None
        late = cutoff + timedelta(days=3)
        when = bindparam("t", type_=UTCDateTime())  # as the models store it (microseconds on SQLite)
        connection.execute(
            text(
                "INSERT INTO usage_record (source_id, person_id, run_id, occurred_at, agent, model, input_tokens,"
                " output_tokens, cache_read_tokens, cache_write_tokens, dedupe_key)"
                " VALUES (:s, :p, :r, :t, 'claude-code', 'm', 1, 1, 0, 0, 'late-of-old-run')"
            ).bindparams(when),
            {"s": old_run.source_id, "p": old_run.person_id, "r": old_run.id, "t": late},
        )
        connection.execute(
            text(
                "INSERT INTO outcome (source_id, external_id, run_id, person_id, kind, weight, occurred_at, evidence,"
                " counted, agent_assisted) VALUES (:s, 'late-outcome', :r, :p, 'deploy', 1000, :t, true, true, true)"
            ).bindparams(when),
            {"s": old_run.source_id, "p": old_run.person_id, "r": old_run.id, "t": late},
        )


def test_batched_purge_deletes_exactly_what_one_transaction_deletes(engine: Engine) -> None:
    _seed_with_edges(engine)
    with engine.connect() as connection:  # what the one-transaction purge leaves, then undone
        transaction = connection.begin()
        from sqlmodel import Session

        session = Session(bind=connection)
        expected = purge_expired(session, NOW, 30)
        session.flush()
        wanted = {t: [row[0] for row in connection.execute(text(f"SELECT id FROM {t} ORDER BY id"))] for t in TABLES}
        transaction.rollback()
    before = _ids(engine)
    assert expected.usage_records > 0 and expected.runs > 0 and expected.outcomes > 0 and expected.annotations > 0
    assert wanted != before

    seen: list[tuple[str, int, int]] = []
    purged = purge_in_batches(engine, NOW, 30, batch=37, progress=lambda *step: seen.append(step))
    assert purged == expected
    assert _ids(engine) == wanted
    assert len(seen) > 10 and all(done <= total for _label, done, total in seen)
    assert {label for label, _, _ in seen} >= {"usage records", "outcomes", "runs"}
    assert purge_in_batches(engine, NOW, 30, batch=37).total == 0  # nothing left to do


def test_an_interrupted_batched_purge_is_finished_by_the_next(engine: Engine) -> None:
    _seed_with_edges(engine)
    calls = 0

    def stop_part_way(label: str, done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if label == "runs":
            raise KeyboardInterrupt

    with contextlib.suppress(KeyboardInterrupt):
        purge_in_batches(engine, NOW, 30, batch=50, progress=stop_part_way)
    with session_scope(engine) as session:  # the rest, in one transaction: the same end state as a whole purge
        purge_expired(session, NOW, 30)
    finished = _ids(engine)
    with engine.connect() as connection:
        assert (
            connection.execute(
                text(
                    "SELECT count(*) FROM usage_record u WHERE u.run_id IS NOT NULL"
                    " AND NOT EXISTS (SELECT 1 FROM agent_run r WHERE r.id = u.run_id)"
                )
            ).scalar_one()
            == 0
        )
        assert (
            connection.execute(
                text("SELECT count(*) FROM usage_record WHERE dedupe_key = 'late-of-old-run'")
            ).scalar_one()
            == 0
        )
    assert calls > 1 and finished["usage_record"]


def test_the_cli_purges_in_batches_and_says_what_it_purged(db_url: str, engine: Engine) -> None:
    _seed_with_edges(engine)
    environment = {"DATABASE_URL": db_url, "TOKENWISE_RETENTION_DAYS": "30", "COLUMNS": "200", "PATH": "/usr/bin"}
    done = subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", "retention", "purge", "--now", NOW.isoformat()],
        cwd=Path(__file__).resolve().parents[1],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Purged " in done.stdout and "older than 30 days" in done.stdout
    with engine.connect() as connection:
        oldest = connection.execute(
            text("SELECT min(occurred_at) AS oldest FROM usage_record").columns(oldest=UTCDateTime())
        ).scalar_one()
    assert oldest >= NOW - timedelta(days=30)
