"""Fuzzing through the real edges: schemathesis against /openapi.json, hypothesis for every ingest
schema (runs, outcomes, OTLP bodies; usage is in test_ingest_api.py) and any slash-command text.
Nothing answers 5xx, and a refused request writes nothing (row counts before and after)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from sqlalchemy import Engine

from storage.models import OUTCOME_KINDS
from tests.support.ingest_fixtures import make_app, new_token, row_counts, running_server
from tests.support.slack_harness import ADA, Harness

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it

FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@pytest.fixture
def server(engine: Engine, db_url: str) -> Iterator[tuple[str, dict[str, str], Engine]]:
    app = make_app(engine, db_url)
    with running_server(app) as base:
        yield base, {"Authorization": f"Bearer {new_token(engine, outcomes=True)}"}, engine


@pytest.fixture
def otlp_auth(server: tuple[str, dict[str, str], Engine]) -> dict[str, str]:
    """An OTLP token: the OTLP routes take no other kind."""
    return {"Authorization": f"Bearer {new_token(server[2], 'otel', 'otlp', outcomes=True)}"}


@pytest.fixture
def http(server: tuple[str, dict[str, str], Engine]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], headers=server[1], timeout=30) as client:
        yield client


# -- schemathesis --------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURES)
@given(data=st.data())
def test_schemathesis_finds_no_5xx_and_no_partial_write_anywhere_in_the_openapi_schema(
    server: tuple[str, dict[str, str], Engine], data: st.DataObject
) -> None:
    base, auth, engine = server
    schema = schemathesis.openapi.from_dict(httpx.get(f"{base}/openapi.json").json())
    case = data.draw(schema.as_strategy(generation_mode=data.draw(st.sampled_from(list(GenerationMode)))))
    before = row_counts(engine)
    response = case.call(base_url=base, headers=auth)
    assert response.status_code < 500, (case.method, case.path, case.body, response.text)
    if response.status_code != 200:
        assert row_counts(engine) == before, (case.method, case.path, response.status_code)


# -- runs and outcomes: any batch is 200 or 422, and a refused one writes nothing ------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)


def good_run(i: int) -> dict[str, Any]:
    return {
        "external_id": f"run-{i}",
        "email": f"dev{i % 3}@example.com",
        "agent": "devin",
        "started_at": "2026-11-24T09:00:00Z",
        "ended_at": "2026-11-24T09:30:00Z",
    }


def good_outcome(i: int) -> dict[str, Any]:
    return {
        "external_id": f"pr-{i}",
        "email": f"dev{i % 3}@example.com",
        "kind": "pr_merged",
        "occurred_at": "2026-11-24T09:30:00Z",
    }


@pytest.mark.parametrize(
    ("path", "kind", "good"), [("/v1/runs", "runs", good_run), ("/v1/outcomes", "outcomes", good_outcome)]
)
@settings(max_examples=50, deadline=None, suppress_health_check=FIXTURES)
@given(
    broken=st.fixed_dictionaries(
        {},
        optional={
            k: json_values
            for k in (
                *good_run(0),
                *good_outcome(0),
                "title",
                "repo",
                "status",
                "run_external_id",
                "weight",
                "url",
                "slack_user_id",
            )
        },
    )
    | json_values,
    position=st.integers(0, 2),
)
def test_any_run_or_outcome_batch_gets_200_or_422_and_a_refused_one_writes_nothing(
    http: httpx.Client,
    server: tuple[str, dict[str, str], Engine],
    path: str,
    kind: str,
    good: Any,
    broken: Any,
    position: int,
) -> None:
    items: list[Any] = [good(1), good(2)]
    items.insert(position, broken)
    before = row_counts(server[2])
    response = http.post(path, json={kind: items})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert row_counts(server[2]) == before
        assert {e["index"] for e in response.json()["errors"]} <= {position}


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(
    ids=st.lists(st.integers(0, 30), min_size=1, max_size=40),
    kinds=st.lists(st.sampled_from(OUTCOME_KINDS), min_size=1, max_size=40),
)
def test_valid_runs_and_outcomes_with_repeats_store_exactly_the_distinct_ones(
    http: httpx.Client, server: tuple[str, dict[str, str], Engine], ids: list[int], kinds: list[str]
) -> None:
    engine = server[2]
    before = row_counts(engine)
    runs = [good_run(i) for i in ids]
    first = http.post("/v1/runs", json={"runs": runs}).json()
    outcomes = [{**good_outcome(i), "kind": kinds[n % len(kinds)]} for n, i in enumerate(ids)]
    http.post("/v1/outcomes", json={"outcomes": outcomes})
    again = http.post("/v1/runs", json={"runs": runs}).json()
    after = row_counts(engine)
    new = after["agent_run"] - before["agent_run"]
    assert first["accepted"] == new <= len(set(ids))
    assert first["accepted"] + first["duplicates"] == len(ids)
    assert again == {"accepted": 0, "duplicates": len(ids)}
    assert after["outcome"] - before["outcome"] <= len(set(ids))


# -- OTLP: any body is answered 200, 400, 413 or 415, never 5xx; a refused one writes nothing -------
otlp_json = st.fixed_dictionaries(
    {},
    optional={
        "resourceMetrics": st.lists(json_values, max_size=2),
        "resourceLogs": st.lists(json_values, max_size=2),
        "resourceSpans": st.lists(json_values, max_size=2),
    },
).map(lambda value: json.dumps(value).encode())


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(
    signal=st.sampled_from(["metrics", "logs", "traces"]),
    media=st.sampled_from(["application/json", "application/x-protobuf", "text/plain"]),
    body=otlp_json | st.binary(max_size=300),
    gzipped=st.booleans(),
)
def test_any_otlp_body_gets_a_4xx_or_200_and_a_refused_one_writes_nothing(
    http: httpx.Client,
    server: tuple[str, dict[str, str], Engine],
    otlp_auth: dict[str, str],
    signal: str,
    media: str,
    body: bytes,
    gzipped: bool,
) -> None:
    headers = {**otlp_auth, "Content-Type": media}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    before = row_counts(server[2])
    response = http.post(f"/v1/otlp/v1/{signal}", content=body, headers=headers)
    assert response.status_code in (200, 400, 413, 415), response.text
    if response.status_code != 200:
        assert row_counts(server[2]) == before


# -- Slack: any command text is acked, with help or nothing ------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(text=st.text(max_size=200))
def test_any_slash_command_text_is_acked_at_once_with_help_or_nothing(harness: Harness, text: str) -> None:
    response = harness.post(harness.signer.slash_command(text, ADA, harness.slack.response_url()))
    assert response.status_code == 200
    if response.content:
        body = response.json()
        assert body["response_type"] == "ephemeral" and "/tokenwise" in body["text"] + json.dumps(body["blocks"])


# -- found by schemathesis: PostgreSQL text cannot hold NUL, so it must never reach the database ----
def test_a_nul_character_in_any_text_field_is_a_422_on_both_databases(
    http: httpx.Client, server: tuple[str, dict[str, str], Engine]
) -> None:
    before = row_counts(server[2])
    record = {**good_run(1), "agent": "dev\x00in"}
    response = http.post("/v1/runs", json={"runs": [record]})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"index": 0, "field": "agent", "message": "must not contain the NUL character (\\u0000)"}
    ]
    assert row_counts(server[2]) == before


def test_nul_characters_in_otlp_attributes_are_dropped_not_a_500(
    http: httpx.Client, server: tuple[str, dict[str, str], Engine], otlp_auth: dict[str, str]
) -> None:
    def attribute(key: str, value: str) -> dict[str, Any]:
        return {"key": key, "value": {"stringValue": value}}

    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "chat",
        "startTimeUnixNano": "1764000000000000000",
        "endTimeUnixNano": "1764000001000000000",
        "attributes": [
            attribute("gen_ai.request.model", "gpt-4o\x00"),
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "5"}},
        ],
    }
    export = {
        "resourceSpans": [
            {
                "resource": {"attributes": [attribute("user.email", "ana\x00@example.com")]},
                "scopeSpans": [{"spans": [span]}],
            }
        ]
    }
    headers = {**otlp_auth, "Content-Type": "application/json"}
    response = http.post("/v1/otlp/v1/traces", content=json.dumps(export), headers=headers)
    assert response.status_code == 200, response.text
    assert row_counts(server[2])["usage_record"] == 1
