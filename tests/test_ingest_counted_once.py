"""Counted once across sources: a person who exports OTLP and also imports their Claude Code logs counts each
session once, from the more precise source (log lines, one record per API call, before OTLP metrics),
whichever arrives first. The other source's records stay stored, left out of every sum."""

from __future__ import annotations

import json
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
from storage.models import Person, UsageRecord
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


def export(engine: Engine, db_url: str) -> None:
    client = TestClient(make_app(engine, db_url))
    token = new_token(engine, "ana-laptop", "otlp")
    response = client.post(
        "/v1/otlp/v1/metrics",
        content=json.dumps(metrics_export()),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200


def counted_tokens(engine: Engine) -> tuple[int, int, int, int]:
    with Session(engine) as session:
        person = session.exec(select(Person).where(Person.email == EMAIL)).one()
        m = compute(session, Scope.person(person.id or 0), DAY.start, DAY.end)
    return m.input_tokens, m.output_tokens, m.cache_read_tokens, m.cache_write_tokens


@pytest.mark.parametrize("first", ["logs", "otlp"])
def test_a_session_from_logs_and_from_otlp_counts_once_from_the_logs(
    tmp_path: Path, engine: Engine, db_url: str, first: str
) -> None:
    logs = write_logs(tmp_path)
    steps = [lambda: import_logs(engine, logs, EMAIL, weight_for), lambda: export(engine, db_url)]
    for step in steps if first == "logs" else steps[::-1]:
        step()

    assert counted_tokens(engine) == LOGGED
    with Session(engine) as session:
        stored = session.exec(select(UsageRecord)).all()
    assert len(stored) == 3  # two log lines and one metrics record: all kept, explainable
    assert sorted(r.counted for r in stored) == [False, True, True]
    assert [r.dedupe_key.split(":")[0] for r in stored if not r.counted] == ["otlp"]


def test_otlp_alone_counts_in_full(engine: Engine, db_url: str) -> None:
    export(engine, db_url)
    assert counted_tokens(engine) == EXPORTED
