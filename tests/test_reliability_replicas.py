"""Several replicas on one database: Slack's retries and the ingest budget are shared, so a retry landing on
another replica runs nothing and N replicas allow a source's budget once, not N times."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.devtools.slack_requests import SignedRequest, SlackRequests
from bot.devtools.slack_standin import SlackStandIn
from handlers.http.rate_limit import SharedRateLimit, SourceRateLimit, rate_limit_for
from handlers.slack.retries import Deliveries
from storage.db import session_scope
from storage.slack_deliveries import KEEP, claim_delivery, purge_deliveries, stored_key
from storage.slack_deliveries import SEEN as SEEN_TABLE
from storage.sources import create_source
from tests.support.ingest_fixtures import serve_process

SECRET = "replicas-signing-secret-0123456789"
ADA, GRACE = "W111", "U111"  # the stand-in's seeded users


def new_source(engine: Engine, name: str) -> tuple[int, str]:
    with session_scope(engine) as session:
        created = create_source(session, name, "api")
        session.flush()
        source_id = created.source.id
        assert source_id is not None
        return source_id, created.token


def test_the_shared_rate_limit_allows_and_refuses_exactly_as_the_in_memory_one(engine: Engine) -> None:
    source_id, _ = new_source(engine, "budget")
    now = [1_800_000_000.0]
    memory, shared = SourceRateLimit(3, lambda: now[0]), SharedRateLimit(engine, 3, lambda: now[0])
    steps = [0, 0, 0, 0, 0, 5, 15, 0, 0, 41, 0, 0, 0, 0, 120, 0, 0, 0, 0, 0.5, 19.5]
    seen = []
    for step in steps:
        now[0] += step
        seen.append((memory.allow(source_id), shared.allow(source_id)))
    assert [m for m, _ in seen] == [s for _, s in seen]
    assert [m for m, _ in seen] == [0, 0, 0, 20, 20, 15, 0, 20, 20, 0, 0, 19, 19, 19, 0, 0, 0, 20, 20, 20, 0]


def test_two_replicas_spend_one_budget(engine: Engine) -> None:
    source_id, _ = new_source(engine, "two-replicas")
    now = [1_800_000_000.0]
    a, b = SharedRateLimit(engine, 4, lambda: now[0]), SharedRateLimit(engine, 4, lambda: now[0])
    assert [replica.allow(source_id) for replica in (a, b, a, b, a, b)] == [0, 0, 0, 0, 15, 15]


def test_postgresql_keeps_the_budget_in_the_database_and_sqlite_in_memory(engine: Engine) -> None:
    expected = SharedRateLimit if engine.dialect.name == "postgresql" else SourceRateLimit
    assert isinstance(rate_limit_for(engine, 10), expected)


def test_a_delivery_taken_by_one_process_is_not_fresh_in_another(engine: Engine) -> None:
    first, second = Deliveries(engine=engine), Deliveries(engine=engine)
    assert first.first_time("event_id:Ev0001")
    assert not second.first_time("event_id:Ev0001")
    assert second.first_time("event_id:Ev0002")
    assert not first.first_time("event_id:Ev0002")


def test_old_deliveries_are_purged_and_long_keys_are_hashed(engine: Engine) -> None:
    then = datetime.now(UTC) - KEEP - timedelta(minutes=1)
    assert claim_delivery(engine, "trigger_id:old", then)
    assert claim_delivery(engine, "body:" + "f" * 200)
    assert not claim_delivery(engine, "body:" + "f" * 200)
    assert len(stored_key("body:" + "f" * 200)) <= 100
    assert purge_deliveries(engine) == 1
    assert claim_delivery(engine, "trigger_id:old")


# -- two `tokenwise serve` processes on one PostgreSQL ---------------------------------------------------


@pytest.fixture
def postgres_db(postgres_url: str) -> str:
    from tests.conftest import _truncate_postgres

    _truncate_postgres(postgres_url)
    return postgres_url


@pytest.fixture
def replicas(postgres_db: str) -> Iterator[tuple[SlackStandIn, str, str]]:
    """Two `tokenwise serve --no-scheduler` on one PostgreSQL, one Slack stand-in, a budget of 4 a minute."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "TOKENWISE_"))}
    with ExitStack() as stack:
        slack = stack.enter_context(SlackStandIn("xoxb-test"))
        env |= {
            "DATABASE_URL": postgres_db,
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.url,
            "TOKENWISE_INGEST_RATE_LIMIT": "4",
            "COLUMNS": "300",
        }
        first = stack.enter_context(serve_process(env))
        second = stack.enter_context(serve_process(env))
        yield slack, first, second


def retry_of(request: SignedRequest) -> SignedRequest:
    """Slack's first retry of a delivery: the same body, signed anew seconds later (so not a replay of the
    same signature, which `slack_request_seen` would refuse anyway), with X-Slack-Retry-Num: 1."""
    later = int(request.headers["X-Slack-Request-Timestamp"]) + 3
    again = SlackRequests(SECRET).sign(request.body, request.headers["Content-Type"], later)
    return SignedRequest(
        again.body, {**again.headers, "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )


@pytest.mark.slow
def test_two_serve_processes_on_one_postgresql_answer_a_retried_delivery_once_and_share_one_budget(
    replicas: tuple[SlackStandIn, str, str], postgres_db: str
) -> None:
    slack, first, second = replicas
    signer = SlackRequests(SECRET)
    with httpx.Client(base_url=first, timeout=30) as a, httpx.Client(base_url=second, timeout=30) as b:
        url = slack.response_url("me")
        delivery = signer.slash_command("me", ADA, url)
        assert a.post("/slack/events", content=delivery.body, headers=delivery.headers).status_code == 200
        retry = retry_of(delivery)
        answered = b.post("/slack/events", content=retry.body, headers=retry.headers)
        assert answered.status_code == 200 and answered.text == ""
        # settle: a fresh command to B, answered, so any work B started for the retry has had its turn
        later = slack.response_url("later")
        fresh = signer.slash_command("runs", GRACE, later)
        assert b.post("/slack/events", content=fresh.body, headers=fresh.headers).status_code == 200
        slack.wait_until(lambda: any(call.path.endswith("/later") for call in slack.calls("response_url")), 60)
        slack.wait_until(lambda: any(call.path.endswith("/me") for call in slack.calls("response_url")), 60)
        assert [call.path for call in slack.calls("response_url")].count("/response/me") == 1

        from storage.db import make_engine

        engine = make_engine(postgres_db)
        try:
            _, token = new_source(engine, "replicas")
        finally:
            engine.dispose()
        auth = {"Authorization": f"Bearer {token}"}
        run = {"external_id": "r1", "email": "ana@example.com", "agent": "devin", "started_at": "2026-11-24T09:00:00Z"}
        statuses = [http.post("/v1/runs", json={"runs": [run]}, headers=auth).status_code for http in (a, b) * 4]
    assert statuses.count(429) == 4 and statuses[:4] == [200, 200, 200, 200]


def test_a_claim_held_by_another_replica_never_holds_the_ack(engine: Engine) -> None:
    """Another replica's claim of the same delivery, not yet committed (or a database that has gone slow),
    makes this claim give up within a fraction of a second, on either database: the process's memory
    stands in and the ack goes out; the row lock would otherwise hold it until the other commits."""
    holder = engine.connect()
    transaction = holder.begin()
    holder.execute(
        postgresql_insert(SEEN_TABLE).values(delivery="event_id:EvHeld", seen_at=datetime.now(UTC))
        if engine.dialect.name == "postgresql"
        else sqlite_insert(SEEN_TABLE).values(delivery="event_id:EvHeld", seen_at=datetime.now(UTC))
    )
    answered: list[bool] = []
    worker = threading.Thread(target=lambda: answered.append(Deliveries(engine=engine).first_time("event_id:EvHeld")))
    try:
        worker.start()
        worker.join(timeout=15)
        assert not worker.is_alive(), "the claim waited on the other replica's transaction"
        assert answered == [True]  # remembered in this process, as when the database is down
    finally:
        transaction.rollback()
        holder.close()
        worker.join()
