"""The ingest API against abuse: tokens only as hashes, a per-source rate limit, bounded bodies, and a
source that can only touch what it sent."""

from __future__ import annotations

import gzip
import inspect
import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData

from bot.app import create_app
from bot.config import Settings
from bot.services import Services
from handlers.http.rate_limit import SourceRateLimit
from storage import sources
from storage.db import session_scope
from storage.sources import authenticate, hash_token
from tests.support.ingest_fixtures import new_token, row_counts


def usage(key: str) -> dict[str, Any]:
    return {
        "dedupe_key": key,
        "email": "ana@example.com",
        "occurred_at": "2026-11-24T10:00:00Z",
        "agent": "claude-code",
        "model": "claude-sonnet-4-20250514",
        "input_tokens": 10,
        "output_tokens": 5,
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited_client(engine: Engine, db_url: str, per_minute: int, clock: Clock) -> TestClient:
    settings = Settings(database_url=db_url, ingest_rate_limit=per_minute)  # type: ignore[call-arg]
    services = Services(settings=settings, engine=engine, ingest_rate=SourceRateLimit(per_minute, clock))
    return TestClient(create_app(services))


def test_a_source_over_its_rate_limit_gets_429_with_retry_after_and_writes_nothing(engine: Engine, db_url: str) -> None:
    clock = Clock()
    client = limited_client(engine, db_url, 3, clock)
    noisy, quiet = new_token(engine, "noisy"), new_token(engine, "quiet")
    post = lambda token, key: client.post(  # noqa: E731
        "/v1/usage", json={"records": [usage(key)]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert [post(noisy, f"n{i}").status_code for i in range(3)] == [200, 200, 200]
    before = row_counts(engine)
    refused = post(noisy, "n3")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "20"  # 3 a minute: one more request every 20 s
    assert "3 requests a minute" in refused.json()["errors"][0]["message"]
    assert row_counts(engine) == before
    assert post(quiet, "q0").status_code == 200  # one noisy source does not crowd out the others
    clock.now += 20
    assert post(noisy, "n3").status_code == 200
    assert post(noisy, "n4").status_code == 429


def test_unauthenticated_requests_do_not_spend_a_sources_budget(engine: Engine, db_url: str) -> None:
    clock = Clock()
    client = limited_client(engine, db_url, 1, clock)
    token = new_token(engine)
    for _ in range(5):
        assert (
            client.post("/v1/usage", json={"records": []}, headers={"Authorization": "Bearer tw_guess"}).status_code
            == 401
        )
    assert (
        client.post(
            "/v1/usage", json={"records": [usage("a")]}, headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    )


def test_a_zero_rate_limit_turns_it_off() -> None:
    limit = SourceRateLimit(0)
    assert not limit.enabled and all(limit.allow(1) == 0 for _ in range(10_000))


def test_a_gzip_bomb_is_refused_with_413_after_reading_no_more_than_the_limit(engine: Engine, db_url: str) -> None:
    settings = Settings(database_url=db_url, ingest_max_bytes=64 * 1024)  # type: ignore[call-arg]
    client = TestClient(create_app(Services(settings=settings, engine=engine)))
    token = new_token(engine)
    bomb = gzip.compress(b'{"records": [' + b" " * (50 * 1024 * 1024) + b"]}")  # 50 MB of spaces, ~50 KB zipped
    assert len(bomb) < 64 * 1024
    before = row_counts(engine)
    response = client.post(
        "/v1/usage",
        content=bomb,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 413
    assert row_counts(engine) == before


def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(engine: Engine, db_url: str) -> None:
    settings = Settings(database_url=db_url, ingest_max_bytes=64 * 1024)  # type: ignore[call-arg]
    client = TestClient(create_app(Services(settings=settings, engine=engine)))
    token = new_token(engine)

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"records": ['
        for i in range(10_000):
            yield json.dumps(usage(f"s{i}")).encode() + b","

    response = client.post(
        "/v1/usage", content=chunks(), headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert row_counts(engine)["usage_record"] == 0


def test_tokens_are_stored_only_as_their_sha256_and_appear_in_no_table(engine: Engine) -> None:
    token = new_token(engine, "hashed")
    assert token.startswith("tw_") and len(token) > 40
    tables = MetaData()
    tables.reflect(engine)
    with engine.connect() as connection:
        dump = "\n".join(  # raw rows: reflection reads SQLite's integer times as text, which they no longer are
            repr(row)
            for table in tables.sorted_tables
            for row in connection.exec_driver_sql(f'SELECT * FROM "{table.name}"').all()
        )
    assert token not in dump and token[3:] not in dump
    assert hash_token(token) in dump


def test_a_token_is_refused_if_any_character_differs_or_the_source_is_revoked(engine: Engine) -> None:
    token = new_token(engine, "exact")
    with session_scope(engine) as session:
        assert authenticate(session, token) is not None
        near = token[:-1] + ("A" if token[-1] != "A" else "B")
        for wrong in (near, token + "x", token[:-1], token.upper(), " " + token, hash_token(token), "", None):
            assert authenticate(session, wrong) is None, wrong
        sources.revoke_source(session, "exact")
        assert authenticate(session, token) is None


def test_token_lookup_is_by_digest_and_compared_in_constant_time() -> None:
    """Timing can tell an attacker about a SHA-256 digest at most, never about the token itself."""
    code = inspect.getsource(authenticate)
    assert "hash_token(token)" in code and "hmac.compare_digest" in code
    assert "== token" not in code and "token ==" not in code


def test_a_source_cannot_attach_usage_or_outcomes_to_another_sources_run(engine: Engine, db_url: str) -> None:
    client = TestClient(create_app(Services(settings=Settings(database_url=db_url), engine=engine)))  # type: ignore[call-arg]
    mine, theirs = new_token(engine, "mine"), new_token(engine, "theirs", outcomes=True)
    run = {"external_id": "job-1", "email": "ana@example.com", "agent": "devin", "started_at": "2026-11-24T09:00:00Z"}
    assert client.post("/v1/runs", json={"runs": [run]}, headers={"Authorization": f"Bearer {mine}"}).status_code == 200
    before = row_counts(engine)
    hijack = {**usage("h1"), "run_external_id": "job-1"}
    response = client.post("/v1/usage", json={"records": [hijack]}, headers={"Authorization": f"Bearer {theirs}"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "run_external_id"
    outcome = {"external_id": "pr-1", "run_external_id": "job-1", "kind": "pr_merged"}
    response = client.post("/v1/outcomes", json={"outcomes": [outcome]}, headers={"Authorization": f"Bearer {theirs}"})
    assert response.status_code == 422
    assert row_counts(engine) == before
