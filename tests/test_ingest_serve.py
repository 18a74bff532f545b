"""`tokenwise serve` as a real process: the ingest API and OTLP over its own HTTP server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from tests.support.ingest_fixtures import new_token, row_counts, serve_process
from tests.test_ingest_otlp import AFTER_BOTH_CUMULATIVE, sample, totals

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it


@pytest.fixture
def served(db_url: str) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env |= {"DATABASE_URL": db_url, "COLUMNS": "200"}
    with serve_process(env) as url:
        yield url


def test_tokenwise_serve_ingests_over_http_and_refuses_bad_input_without_writing(served: str, engine: Engine) -> None:
    auth = {"Authorization": f"Bearer {new_token(engine, 'e2e')}"}
    otlp = {"Authorization": f"Bearer {new_token(engine, 'e2e-otel', 'otlp', outcomes=True)}"}
    with httpx.Client(base_url=served, timeout=30) as http:
        assert http.get("/healthz").json() == {"status": "ok", "database": "up"}
        before = row_counts(engine)
        run = {"external_id": "r1", "email": "ana@example.com", "agent": "devin", "started_at": "2026-11-24T09:00:00Z"}
        assert http.post("/v1/runs", json={"runs": [run]}).status_code == 401
        assert (
            http.post("/v1/runs", content=b"<runs/>", headers={**auth, "Content-Type": "application/xml"}).status_code
            == 415
        )
        bad = {**run, "started_at": "yesterday"}
        response = http.post("/v1/runs", json={"runs": [run, bad]}, headers=auth)
        assert response.status_code == 422
        assert response.json()["errors"][0]["index"] == 1
        assert row_counts(engine) == before
        assert http.post("/v1/runs", json={"runs": [run]}, headers=auth).json() == {"accepted": 1, "duplicates": 0}
        assert http.post("/v1/runs", json={"runs": [run]}, headers=auth).json() == {"accepted": 0, "duplicates": 1}
        headers = {**otlp, "Content-Type": "application/json"}
        for name in ("cumulative_2", "cumulative_1", "cumulative_2"):
            assert http.post("/v1/otlp/v1/metrics", content=sample(name), headers=headers).status_code == 200
        assert "/v1/usage" in http.get("/openapi.json").json()["paths"]
    result = totals(engine)
    assert {k: result[k] for k in ("input", "output", "cost", "commits", "prs")} == {
        k: AFTER_BOTH_CUMULATIVE[k] for k in ("input", "output", "cost", "commits", "prs")
    }
