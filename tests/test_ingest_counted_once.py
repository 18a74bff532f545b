"""Counted once across sources: a person who exports OTLP (metrics, `api_request` events) and also imports
their Claude Code logs counts each session once, from the most precise source (log lines, then events, then
metrics), whichever arrives first. The other sources' records stay stored, left out of every sum."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.config import DEFAULT_OUTCOME_WEIGHTS
from bot.periods import Period
from bot.sources.claude_code import import_logs
from storage.metrics import Scope, compute
from storage.models import AgentRun, Outcome, Person, UsageRecord
from tests.support.ingest_fixtures import make_app, new_token

EMAIL, SESSION, MODEL = "ana@example.com", "sess-1", "claude-sonnet-4-5"
DAY = Period(date(2026, 11, 24), date(2026, 11, 24))
LOGGED = (1200, 340, 5000, 60)  # what the log lines say: the most precise figures
EXPORTED = (1100, 300, 4800, 60)  # what the metrics say (say, an export lost before a restart)


def weight_for(kind: str) -> Decimal:
    return DEFAULT_OUTCOME_WEIGHTS[kind]


def write_logs(root: Path) -> Path:
    folder = root / ".claude" / "projects" / "-home-ana-api"
    folder.mkdir(parents=True)
    lines = []
    for number, (inp, out) in enumerate(((700, 200), (500, 140))):
        usage = {"input_tokens": inp, "output_tokens": out, "cache_read_input_tokens": 2500,
                 "cache_creation_input_tokens": 30}  # fmt: skip
        lines.append(
            json.dumps(
                {
                    "type": "assistant",
                    "sessionId": SESSION,
                    "timestamp": f"2026-11-24T10:0{number}:00.000Z",
                    "requestId": f"r{number}",
                    "message": {"id": f"m{number}", "model": MODEL, "usage": usage},
                }
            )
        )
    (folder / f"{SESSION}.jsonl").write_text("\n".join(lines) + "\n")
    return root / ".claude"


def metrics_export() -> dict[str, Any]:
    def point(kind: str, value: int) -> dict[str, Any]:
        attributes = [{"key": "type", "value": {"stringValue": kind}}]
        return {"attributes": attributes, "startTimeUnixNano": "1795514400000000000",
                "timeUnixNano": "1795518000000000000", "asInt": str(value)}  # fmt: skip

    resource = [
        {"key": key, "value": {"stringValue": value}}
        for key, value in (("service.name", "claude-code"), ("user.email", EMAIL), ("session.id", SESSION),
                           ("model", MODEL))
    ]  # fmt: skip
    points = [
        point(kind, value)
        for kind, value in zip(("input", "output", "cacheRead", "cacheCreation"), EXPORTED, strict=True)
    ]
    metric = {"name": "claude_code.token.usage", "sum": {"aggregationTemporality": 1, "dataPoints": points}}
    return {"resourceMetrics": [{"resource": {"attributes": resource}, "scopeMetrics": [{"metrics": [metric]}]}]}


def events_export() -> dict[str, Any]:
    """Claude Code's `api_request` log events for the session: one per API call (one call was lost)."""

    def value(item: Any) -> dict[str, Any]:
        return {"intValue": str(item)} if isinstance(item, int) else {"stringValue": str(item)}

    records = []
    for number, (inp, out, read, write) in enumerate(EVENTS_SENT):
        attributes = {
            "event.name": "api_request", "event.timestamp": f"2026-11-24T10:0{number}:00.000Z",
            "event.sequence": number, "session.id": SESSION, "user.email": EMAIL, "model": MODEL,
            "input_tokens": inp, "output_tokens": out, "cache_read_tokens": read, "cache_creation_tokens": write,
        }  # fmt: skip
        records.append(
            {
                "timeUnixNano": str(1795514400000000000 + number * 60 * 10**9),
                "body": {"stringValue": "claude_code.api_request"},
                "attributes": [{"key": k, "value": value(v)} for k, v in attributes.items()],
            }
        )
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "claude-code"}}]}
    return {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": records}]}]}


EVENTS_SENT = ((700, 200, 2500, 30), (450, 120, 2400, 30))  # say, the second call's event was a retry's
EVENTS = tuple(sum(column) for column in zip(*EVENTS_SENT, strict=True))


def post(engine: Engine, db_url: str, signal: str, body: dict[str, Any]) -> None:
    client = TestClient(make_app(engine, db_url))
    token = new_token(engine, f"ana-laptop-{signal}", "otlp")
    response = client.post(
        f"/v1/otlp/v1/{signal}",
        content=json.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200 and "partialSuccess" not in response.json()


SOURCES: dict[str, Callable[[Engine, str, Path], object]] = {
    "logs": lambda engine, _url, tmp: import_logs(engine, write_logs(tmp), EMAIL, weight_for),
    "events": lambda engine, url, _tmp: post(engine, url, "logs", events_export()),
    "metrics": lambda engine, url, _tmp: post(engine, url, "metrics", metrics_export()),
}
PRECISE = {"logs": LOGGED, "events": EVENTS, "metrics": EXPORTED}  # what each source alone says
ORDERS = [order for size in (1, 2, 3) for order in itertools.permutations(SOURCES, size)]


def counted_tokens(engine: Engine) -> tuple[int, int, int, int]:
    with Session(engine) as session:
        person = session.exec(select(Person).where(Person.email == EMAIL)).one()
        m = compute(session, Scope.person(person.id or 0), DAY.start, DAY.end)
    return m.input_tokens, m.output_tokens, m.cache_read_tokens, m.cache_write_tokens


@pytest.mark.parametrize("order", ORDERS, ids=["+".join(order) for order in ORDERS])
def test_a_session_reported_by_several_sources_counts_once_from_the_most_precise(
    tmp_path: Path, engine: Engine, db_url: str, order: tuple[str, ...]
) -> None:
    """Every source alone, every pair and all three, in every order of arrival: the session counts from
    log lines if any, else from events, else from metrics; every record stays stored."""
    for name in order:
        SOURCES[name](engine, db_url, tmp_path)

    best = min(order, key=list(SOURCES).index)
    assert counted_tokens(engine) == PRECISE[best]
    with Session(engine) as session:
        stored = session.exec(select(UsageRecord)).all()
    sizes = {"logs": 2, "events": 2, "metrics": 1}
    assert len(stored) == sum(sizes[name] for name in order)  # all kept, explainable
    assert sum(r.counted for r in stored) == sizes[best]
    with Session(engine) as session:
        runs = session.exec(select(AgentRun)).all()
    assert [r.external_id for r in runs] == [SESSION]  # one session, one run, whoever reported it
    assert {r.run_id for r in stored} == {runs[0].id}


def test_an_outcome_on_the_session_meets_the_spend_counted_from_another_source_on_one_run(
    tmp_path: Path, engine: Engine, db_url: str
) -> None:
    """Claude Code's commit counter arrives with its metrics; the spend then counts from the logs. Both
    meet on one run (the review queue holds one run); the counter is self-reported, so it is shown and
    verifies nothing (docs/metrics.md "Evidence")."""
    client = TestClient(make_app(engine, db_url))
    token = new_token(engine, "ana-laptop", "otlp", outcomes=True)
    export = metrics_export()
    point = {"startTimeUnixNano": "1795514400000000000", "timeUnixNano": "1795518000000000000", "asInt": "1"}
    commit = {"name": "claude_code.commit.count", "sum": {"aggregationTemporality": 1, "dataPoints": [point]}}
    export["resourceMetrics"][0]["scopeMetrics"][0]["metrics"].append(commit)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert client.post("/v1/otlp/v1/metrics", content=json.dumps(export), headers=headers).status_code == 200
    SOURCES["logs"](engine, db_url, tmp_path)

    with Session(engine) as session:
        person = session.exec(select(Person).where(Person.email == EMAIL)).one()
        m = compute(session, Scope.person(person.id or 0), DAY.start, DAY.end)
        outcomes = session.exec(select(Outcome)).all()
        runs = session.exec(select(AgentRun)).all()
    assert (m.input_tokens, m.runs, m.outcomes, m.self_reported_by_kind) == (LOGGED[0], 1, 0, {"commit": 1})
    assert [o.run_id for o in outcomes] == [runs[0].id]
    assert m.cost_usd > 0 and m.verified_cost_usd == 0


def test_sources_without_sessions_are_not_reconciled(tmp_path: Path, engine: Engine, db_url: str) -> None:
    """The HTTP API carries no session id: its usage is a source of its own and adds to the logs' (the
    operator chose to send both); docs/ingest.md says so."""
    SOURCES["logs"](engine, db_url, tmp_path)
    client = TestClient(make_app(engine, db_url))
    token = new_token(engine, "ana-api", "api")
    item = {"dedupe_key": "api-1", "email": EMAIL, "occurred_at": "2026-11-24T12:00:00Z", "agent": "custom",
            "model": MODEL, "input_tokens": 5, "output_tokens": 6}  # fmt: skip
    response = client.post("/v1/usage", json={"records": [item]}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 201, 202), response.text
    assert counted_tokens(engine) == (LOGGED[0] + 5, LOGGED[1] + 6, LOGGED[2], LOGGED[3])


def test_two_writers_making_one_new_session_at_once_still_count_it_once(engine: Engine) -> None:
    """Claude Code's exporter sends a new session's events and its metrics in two requests that PostgreSQL
    serves at once: the second writer waits on the first's new run, then finds it made by its own source.
    It must still settle the session (the run holds the first writer's events), not take it for its own."""
    import threading
    from datetime import UTC, datetime

    from storage.ingest import ingest_telemetry
    from storage.ingest_schemas import SeenRun, SeenUsage, Telemetry
    from storage.models import id_of
    from storage.people import get_or_create_person
    from storage.sources import internal_source

    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers take turns: a write never meets another's uncommitted run")
    with Session(engine) as setup:
        source_id = id_of(internal_source(setup, "ana-exporter", "otlp"))
        get_or_create_person(setup, email=EMAIL)  # known already: the writers meet on the run alone
        setup.commit()
    at = datetime(2026, 11, 24, 10, tzinfo=UTC)

    def telemetry(key: str) -> Telemetry:
        run = SeenRun(external_id=SESSION, email=EMAIL, agent="claude-code", started_at=at)
        usage = SeenUsage(dedupe_key=key, email=EMAIL, occurred_at=at, agent="claude-code", model=MODEL,
                          run_external_id=SESSION, input_tokens=100, output_tokens=10)  # fmt: skip
        return Telemetry(runs=[run], usage=[usage])

    first = Session(engine)
    ingest_telemetry(first, source_id, telemetry("otlp:e:event-1"), weight_for)  # uncommitted: its run too
    failures: list[BaseException] = []

    def second_writer() -> None:
        try:
            with Session(engine) as second:
                ingest_telemetry(second, source_id, telemetry("otlp:c:metric-1"), weight_for)
                second.commit()
        except BaseException as error:  # reported below
            failures.append(error)

    thread = threading.Thread(target=second_writer)
    thread.start()
    thread.join(timeout=1.0)  # it waits on the first writer's run
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert not failures and not thread.is_alive()
    with Session(engine) as check:
        counted = {r.dedupe_key: r.counted for r in check.exec(select(UsageRecord)).all()}
    assert counted == {"otlp:e:event-1": True, "otlp:c:metric-1": False}
