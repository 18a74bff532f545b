"""Insiders holding an ingest token: what each token may send, through the real app, on both databases.

A token's kind opens only its routes; outcomes need a source made with --outcomes and their weights come
from the operator; a token limited to one person (`--person`, or the personal token `/tokenwise connect`
gives) writes that person's data and nobody else's; one token's flood does not rate-limit another; a token
in a URL is refused and kept out of the access log.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

import bot.cli.commands  # noqa: F401  (registers the CLI commands)
from bot.app import create_app
from bot.cli.root import app as cli
from bot.config import Settings, get_settings
from bot.devtools.slack_standin import iter_blocks_text
from bot.services import Services
from handlers.http.rate_limit import SourceRateLimit
from storage.db import session_scope
from storage.models import AgentRun, Outcome, Person, Source, UsageRecord
from storage.people import get_or_create_person
from storage.sources import create_personal_source
from tests.support.ingest_fixtures import make_app, new_token, row_counts, serve_process
from tests.support.samples import SAMPLES
from tests.support.slack_harness import ADA, GRACE, Harness

JSON = {"Content-Type": "application/json"}
METRICS = "/v1/otlp/v1/metrics"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def otlp_delta(email: str | None = "ana@example.com") -> bytes:
    """Claude Code's delta export (tokens, cost, a session, 2 commits and a PR), naming `email` or nobody."""
    export = json.loads((SAMPLES / "otlp_claude_code_metrics_delta.json").read_bytes())
    for resource_metrics in export["resourceMetrics"]:
        for scope in resource_metrics["scopeMetrics"]:
            for metric in scope["metrics"]:
                for point in metric.get("sum", metric.get("gauge", {})).get("dataPoints", []):
                    kept = [a for a in point["attributes"] if a["key"] != "user.email"]
                    if email is not None:
                        kept.append({"key": "user.email", "value": {"stringValue": email}})
                    point["attributes"] = kept
    return json.dumps(export).encode()


def usage(key: str, **fields: Any) -> dict[str, Any]:
    item = {
        "dedupe_key": key,
        "email": "ana@example.com",
        "occurred_at": "2026-11-24T10:00:00Z",
        "agent": "devin",
        "model": "claude-sonnet-4-20250514",
        "input_tokens": 10,
        "output_tokens": 5,
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not None}


def run(external_id: str, **fields: Any) -> dict[str, Any]:
    item = {
        "external_id": external_id,
        "email": "ana@example.com",
        "agent": "devin",
        "started_at": "2026-11-24T09:00:00Z",
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not None}


def people_of(engine: Engine, model: type[UsageRecord] | type[AgentRun] | type[Outcome]) -> list[str | None]:
    with Session(engine) as session:
        rows = session.exec(select(Person.email).join(model, model.person_id == Person.id)).all()  # type: ignore[arg-type]
    return sorted(rows, key=str)


@pytest.fixture
def client(engine: Engine, db_url: str) -> TestClient:
    return TestClient(make_app(engine, db_url, outcome_weights={"pr_merged": Decimal("5")}))


# -- (a) kinds, outcomes and weights ---------------------------------------------------------------
PR = {
    "external_id": "acme/api#1",
    "kind": "pr_merged",
    "email": "ana@example.com",
    "occurred_at": "2026-11-24T12:00:00Z",
}


def test_a_shared_otlp_token_cannot_post_outcomes_and_nobody_can_send_a_weight(
    client: TestClient, engine: Engine
) -> None:
    shared_otel = new_token(engine, "claude-code-otel", "otlp")
    before = row_counts(engine)
    forged = {"outcomes": [{**PR, "weight": 1000000}]}
    response = client.post("/v1/outcomes", json=forged, headers=bearer(shared_otel))
    assert response.status_code == 403
    assert response.json()["errors"][0]["message"] == (
        "This token is for OTLP; /v1/outcomes takes a token of kind api: "
        "`tokenwise source create NAME --kind api --outcomes`."
    )
    no_outcomes = new_token(engine, "ci")
    response = client.post("/v1/outcomes", json={"outcomes": [PR]}, headers=bearer(no_outcomes))
    assert response.status_code == 403
    assert "`tokenwise source create NAME --kind api --outcomes`" in response.json()["errors"][0]["message"]
    github = new_token(engine, "outcomes", "api", outcomes=True)
    response = client.post("/v1/outcomes", json=forged, headers=bearer(github))
    assert response.status_code == 422
    assert response.json() == {
        "errors": [
            {
                "index": 0,
                "field": "weight",
                "message": "weights come from the operator's TOKENWISE_OUTCOME_WEIGHTS; leave weight out",
            }
        ]
    }
    assert row_counts(engine) == before
    assert client.post("/v1/outcomes", json={"outcomes": [PR]}, headers=bearer(github)).status_code == 200
    with Session(engine) as session:
        assert session.exec(select(col(Outcome.weight))).one() == Decimal("5")  # TOKENWISE_OUTCOME_WEIGHTS


ALLOWED = {
    "api": {"/v1/usage", "/v1/runs"},
    "otlp": {METRICS, "/v1/otlp/v1/logs", "/v1/otlp/v1/traces"},
    "csv": set(),  # github has no bearer token at all: tests/test_github_webhooks.py
    "claude-code-logs": set(),
    "openai-usage": set(),
}
BODIES: dict[str, Any] = {
    "/v1/usage": {"json": {"records": [usage("k1")]}},
    "/v1/runs": {"json": {"runs": [run("r1")]}},
    "/v1/outcomes": {"json": {"outcomes": [PR]}},
    METRICS: {"content": b"{}", "headers": JSON},
    "/v1/otlp/v1/logs": {"content": b"{}", "headers": JSON},
    "/v1/otlp/v1/traces": {"content": b"{}", "headers": JSON},
}


@pytest.mark.parametrize("kind", sorted(ALLOWED))
def test_a_tokens_kind_opens_its_routes_only_and_a_403_says_which_kind_to_create(
    client: TestClient, engine: Engine, kind: str
) -> None:
    token = new_token(engine, f"t-{kind}", kind, outcomes=True)
    for route, body in BODIES.items():
        headers = {**bearer(token), **body.get("headers", {})}
        before = row_counts(engine)
        response = client.post(route, **{k: v for k, v in body.items() if k != "headers"}, headers=headers)
        allowed = route in ALLOWED[kind] or (kind == "api" and route == "/v1/outcomes")
        assert response.status_code == (200 if allowed else 403), (kind, route, response.text)
        if not allowed:
            assert row_counts(engine) == before
            (error,) = response.json()["errors"]
            needed = "otlp" if route.startswith("/v1/otlp") else "api"
            assert (
                f"{route} takes a token of kind {needed}: `tokenwise source create NAME --kind {needed}"
                in (error["message"])
            )
    wrong = client.post("/v1/usage", json={"records": [usage("k2")]}, headers=bearer(new_token(engine, "o2", "otlp")))
    assert wrong.json()["errors"][0]["message"] == (
        "This token is for OTLP; /v1/usage takes a token of kind api: `tokenwise source create NAME --kind api`."
    )


def test_otlp_commit_and_pr_counters_are_stored_only_for_a_source_with_outcomes(
    client: TestClient, engine: Engine
) -> None:
    plain = new_token(engine, "otel", "otlp")
    response = client.post(METRICS, content=otlp_delta(), headers={**bearer(plain), **JSON})
    assert response.status_code == 200 and response.json() == {}  # dropped silently
    counts = row_counts(engine)
    assert counts["usage_record"] > 0 and counts["agent_run"] == 1 and counts["outcome"] == 0
    allowed = new_token(engine, "otel-outcomes", "otlp", outcomes=True)
    assert client.post(METRICS, content=otlp_delta(), headers={**bearer(allowed), **JSON}).status_code == 200
    assert row_counts(engine)["outcome"] > 0


# -- (b) a token limited to one person ---------------------------------------------------------------
@pytest.mark.parametrize("route", ["/v1/usage", "/v1/runs"])
def test_a_one_person_token_cannot_write_anyone_elses_data_and_items_naming_nobody_are_its_persons(
    client: TestClient, engine: Engine, route: str
) -> None:
    token = new_token(engine, "ana-ci", "api", person="Ana@Example.com")
    kind, make = ("records", usage) if route == "/v1/usage" else ("runs", run)
    before = row_counts(engine)
    for batch in (
        [make("a"), make("b", email="bo@example.com")],  # every item valid: the one-pass parser's path
        [make("a", email=None), make("b", email="bo@example.com")],
    ):
        response = client.post(route, json={kind: batch}, headers=bearer(token))
        assert response.status_code == 422
        (error,) = response.json()["errors"]
        assert (error["index"], error["field"]) == (1, "email")
        assert "this token sends only ana@example.com's data" in error["message"]
    response = client.post(route, json={kind: [make("c", email=None, slack_user_id="U999")]}, headers=bearer(token))
    assert response.status_code == 422
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(0, "slack_user_id")]
    assert row_counts(engine) == before
    response = client.post(route, json={kind: [make("d", email=None), make("e")]}, headers=bearer(token))
    assert response.json() == {"accepted": 2, "duplicates": 0}
    model = UsageRecord if route == "/v1/usage" else AgentRun
    assert people_of(engine, model) == ["ana@example.com", "ana@example.com"]


def test_a_one_person_token_attributes_outcomes_and_refuses_other_peoples(engine: Engine, db_url: str) -> None:
    client = TestClient(make_app(engine, db_url))
    token = new_token(engine, "ana-gh", "api", person="ana@example.com", outcomes=True)
    mine = {k: v for k, v in PR.items() if k != "email"}
    theirs = {**PR, "external_id": "acme/api#2", "email": "bo@example.com"}
    response = client.post("/v1/outcomes", json={"outcomes": [mine, theirs]}, headers=bearer(token))
    assert response.status_code == 422 and response.json()["errors"][0]["index"] == 1
    assert client.post("/v1/outcomes", json={"outcomes": [mine]}, headers=bearer(token)).status_code == 200
    assert people_of(engine, Outcome) == ["ana@example.com"]


def test_a_personal_otlp_token_refuses_an_export_naming_someone_else_and_keeps_its_persons(
    client: TestClient, engine: Engine
) -> None:
    with session_scope(engine) as session:
        ada = get_or_create_person(session, email="ada@example.com")
        token = create_personal_source(session, ada.id or 0).token
    before = row_counts(engine)
    response = client.post(METRICS, content=otlp_delta("ana@example.com"), headers={**bearer(token), **JSON})
    assert response.status_code == 400
    message = response.json()["errors"][0]["message"]
    assert "user.email" in message and "ada@example.com" in message and "Nothing was written" in message
    assert row_counts(engine) == before
    for body in (otlp_delta(None), otlp_delta("ADA@example.com")):  # nobody named, or its own person
        assert client.post(METRICS, content=body, headers={**bearer(token), **JSON}).status_code == 200
    assert set(people_of(engine, UsageRecord)) == {"ada@example.com"}
    assert people_of(engine, AgentRun) == ["ada@example.com"]
    assert row_counts(engine)["outcome"] == 0  # personal tokens do not send outcomes


def test_source_create_with_person_and_outcomes_from_the_cli(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["source", "create", "ana-otel", "--kind", "otlp", "--person", "Ana@X.com"])
        assert result.exit_code == 0, result.output
        assert "only ana@x.com's data" in result.output
        result = CliRunner().invoke(cli, ["source", "create", "gh", "--kind", "api", "--outcomes"])
        assert result.exit_code == 0 and "outcomes too" in result.output
        result = CliRunner().invoke(cli, ["source", "create", "x", "--kind", "otlp", "--person", "nobody"])
        assert result.exit_code == 2 and "not an email address" in result.output
    finally:
        get_settings.cache_clear()
    with Session(engine) as session:
        sources = {s.name: s for s in session.exec(select(Source)).all()}
        ana = session.exec(select(Person).where(Person.email == "ana@x.com")).one()
    assert sources["ana-otel"].person_id == ana.id and not sources["ana-otel"].outcomes
    assert sources["gh"].outcomes and sources["gh"].person_id is None


# -- personal tokens from /tokenwise connect -----------------------------------------------------------
def connect(harness: Harness, user_id: str = ADA) -> tuple[str, str]:
    """`/tokenwise connect` as Slack sends it, signed; the reply's text and the token in it."""
    response, url = harness.command("connect", user_id)
    assert response.status_code == 200
    (answer,) = harness.respond_to(url)
    assert answer.get("response_type", "ephemeral") == "ephemeral"
    shown = "\n".join([answer.get("text", ""), *iter_blocks_text(answer.get("blocks", []))])
    assert "tw_" not in answer.get("text", "")  # not in the notification fallback
    (token,) = set(re.findall(r"tw_[A-Za-z0-9_-]{40,}", shown))
    return shown, token


def test_connect_gives_a_personal_otlp_token_and_each_call_revokes_the_previous_one(
    harness: Harness, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown, first = connect(harness)
    assert f'OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer {first}"' in shown
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=https://tokenwise.example.com/v1/otlp" in shown
    assert "You had no personal token before." in shown
    with Session(harness.engine) as session:
        source = session.exec(select(Source).where(Source.personal)).one()
        ada = session.exec(select(Person).where(Person.slack_user_id == ADA)).one()
    assert (source.kind, source.person_id, source.outcomes, source.revoked_at) == ("otlp", ada.id, False, None)
    http = harness.http
    assert http.post(METRICS, content=otlp_delta(None), headers={**bearer(first), **JSON}).status_code == 200
    assert http.post("/v1/usage", json={"records": [usage("x")]}, headers=bearer(first)).status_code == 403
    assert set(people_of(harness.engine, UsageRecord)) == {"ada@example.com"}

    shown, second = connect(harness)
    assert second != first
    assert "Your previous personal token is revoked: it no longer works." in shown
    assert http.post(METRICS, content=b"{}", headers={**bearer(first), **JSON}).status_code == 401
    assert http.post(METRICS, content=b"{}", headers={**bearer(second), **JSON}).status_code == 200
    _, grace = connect(harness, GRACE)  # someone else's token is theirs, and leaves Ada's alone
    assert http.post(METRICS, content=b"{}", headers={**bearer(second), **JSON}).status_code == 200

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    try:
        listing = CliRunner().invoke(cli, ["source", "list"]).output
        with Session(harness.engine) as session:
            names = {s.id: s.name for s in session.exec(select(Source).where(Source.person_id == ada.id))}
        current = max(names.items())[1]
        rows = {line.split()[1]: line for line in listing.splitlines() if "personal-" in line}
        assert len(rows) == 3
        assert re.search(r"otlp\s*│\s*ada@example\.com\s*│\s*yes\s*│\s*no\s*│.*revoked", rows[min(names.items())[1]])
        assert re.search(r"ada@example\.com\s*│\s*yes\s*│\s*no\s*│.*active", rows[current])
        result = CliRunner().invoke(cli, ["source", "revoke", current])
        assert result.exit_code == 0, result.output
    finally:
        get_settings.cache_clear()
    assert http.post(METRICS, content=b"{}", headers={**bearer(second), **JSON}).status_code == 401
    assert http.post(METRICS, content=b"{}", headers={**bearer(grace), **JSON}).status_code == 200


def test_concurrent_connects_leave_exactly_one_working_personal_token(harness: Harness) -> None:
    connect(harness)  # Ada exists and has a token already
    with ThreadPoolExecutor(6) as pool:
        sent = list(pool.map(lambda _: harness.command("connect"), range(6)))
    assert all(response.status_code == 200 for response, _ in sent)
    tokens = []
    for _, url in sent:
        (answer,) = harness.respond_to(url)
        (token,) = set(re.findall(r"tw_[A-Za-z0-9_-]{40,}", "\n".join(iter_blocks_text(answer["blocks"]))))
        tokens.append(token)
    assert len(set(tokens)) == 6
    with Session(harness.engine) as session:
        personal = session.exec(select(Source).where(Source.personal)).all()
    assert len(personal) == 7 and len({s.name for s in personal}) == 7
    assert sum(s.revoked_at is None for s in personal) == 1
    working = [
        t for t in tokens if harness.http.post(METRICS, content=b"{}", headers={**bearer(t), **JSON}).status_code == 200
    ]
    assert len(working) == 1


# -- (c) rate limits are per token -------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_personal_tokens_flood_does_not_rate_limit_another_token(engine: Engine, db_url: str) -> None:
    settings = Settings(database_url=db_url, ingest_rate_limit=3)  # type: ignore[call-arg]
    services = Services(settings=settings, engine=engine, ingest_rate=SourceRateLimit(3, Clock()))
    client = TestClient(create_app(services))
    with session_scope(engine) as session:
        ada = get_or_create_person(session, email="ada@example.com")
        grace = get_or_create_person(session, email="grace@example.com")
        flood, calm = (create_personal_source(session, p.id or 0).token for p in (ada, grace))
    shared = new_token(engine, "shared-otel", "otlp")
    post = lambda token: client.post(METRICS, content=b"{}", headers={**bearer(token), **JSON}).status_code  # noqa: E731
    assert [post(flood) for _ in range(5)] == [200, 200, 200, 429, 429]
    assert [post(calm) for _ in range(3)] == [200, 200, 200]
    assert post(shared) == 200


# -- (d) a token in the URL ------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["token={t}", "access_token={t}", "api_key={t}", "x=1&q={t}", "Token=whatever"])
def test_a_token_in_the_query_string_gets_401_even_with_a_good_header(
    client: TestClient, engine: Engine, query: str
) -> None:
    token = new_token(engine, "ci")
    before = row_counts(engine)
    response = client.post(f"/v1/usage?{query.format(t=token)}", json={"records": [usage("q")]}, headers=bearer(token))
    assert response.status_code == 401
    name = "ci" if "{t}" in query else "NAME"
    assert response.json()["errors"][0]["message"] == (
        "Send the token in the Authorization header, never in the URL; "
        f"revoke this one: `tokenwise source revoke {name}`."
    )
    assert row_counts(engine) == before
    assert client.post("/v1/usage?x=1", json={"records": [usage("q")]}, headers=bearer(token)).status_code == 200


@pytest.fixture
def served_with_output(db_url: str) -> Iterator[tuple[str, list[str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_"))}
    env |= {"DATABASE_URL": db_url, "COLUMNS": "200"}
    output: list[str] = []
    with serve_process(env, output) as url:
        yield url, output


@pytest.mark.slow  # a `tokenwise serve` process
def test_tokenwise_serves_access_log_keeps_a_url_token_out(
    served_with_output: tuple[str, list[str]], engine: Engine
) -> None:
    base, output = served_with_output
    token = new_token(engine, "ci")
    with httpx.Client(base_url=base, timeout=30) as http:
        for query in (f"token={token}", f"access_token={token}", f"api_key={token}", f"q={token}"):
            response = http.post(f"/v1/usage?{query}", json={"records": [usage("z")]}, headers=bearer(token))
            assert response.status_code == 401
            assert "`tokenwise source revoke ci`" in response.json()["errors"][0]["message"]
        assert http.post("/v1/usage?page=2", json={"records": [usage("z")]}, headers=bearer(token)).status_code == 200
    deadline = time.monotonic() + 10
    while sum('"POST /v1/usage HTTP/1.1"' in line for line in output) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    access = [line for line in output if "/v1/usage" in line]
    assert len(access) == 5, output  # one line per request: path and status, no query string
    assert sum(" 401" in line for line in access) == 4
    assert token not in "".join(output) and "?" not in "".join(access)


def test_a_tokens_routes_hold_behind_a_proxy_path_prefix(engine: Engine, db_url: str) -> None:
    """Scopes are checked against the route, not the URL: an app served under a root path (a reverse proxy's
    prefix) lets an api token post usage and still keeps an OTLP token off /v1/usage."""
    from fastapi.testclient import TestClient

    client = TestClient(make_app(engine, db_url), root_path="/tokenwise")
    api, otlp = new_token(engine, "ci", "api"), new_token(engine, "laptop", "otlp")
    body = {"records": [usage("p1")]}
    assert client.post("/tokenwise/v1/usage", json=body, headers=bearer(api)).status_code == 200
    assert client.post("/tokenwise/v1/usage", json=body, headers=bearer(otlp)).status_code == 403
