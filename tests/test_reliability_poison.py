"""Poison batches: bodies that well-behaved senders would retry forever if they got a 5xx.

A date outside the representable range, nesting past any sane depth, an integer thousands of digits long:
each is a 4xx naming what is wrong (the item and field where there is one), and nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from tests.support.ingest_fixtures import make_app, new_token, row_counts, running_server


@pytest.fixture
def server(engine: Engine, db_url: str) -> Iterator[tuple[httpx.Client, httpx.Client, Engine]]:
    app = make_app(engine, db_url)
    with running_server(app) as base:
        api = {"Authorization": f"Bearer {new_token(engine, outcomes=True)}"}
        otlp = {"Authorization": f"Bearer {new_token(engine, 'otel', 'otlp', outcomes=True)}"}
        with (
            httpx.Client(base_url=base, headers=api, timeout=30) as a,
            httpx.Client(base_url=base, headers=otlp, timeout=30) as o,
        ):
            yield a, o, engine


def usage(**overrides: Any) -> dict[str, Any]:
    record = {
        "email": "ada@example.com",
        "agent": "claude-code",
        "model": "claude-sonnet-4-5",
        "occurred_at": "2026-11-24T09:00:00Z",
        "input_tokens": 10,
        "output_tokens": 5,
        "dedupe_key": "poison-1",
    }
    return record | overrides


def run(**overrides: Any) -> dict[str, Any]:
    item = {"external_id": "run-1", "email": "ada@example.com", "agent": "devin", "started_at": "2026-11-24T09:00:00Z"}
    return item | overrides


def outcome(**overrides: Any) -> dict[str, Any]:
    item = {
        "external_id": "o-1",
        "kind": "pr_merged",
        "email": "ada@example.com",
        "occurred_at": "2026-11-24T09:00:00Z",
    }
    return item | overrides


EDGE_OF_TIME = "0001-01-01T00:00:00+14:00"  # in UTC, a day before year 1
END_OF_TIME = "9999-12-31T23:59:59-14:00"  # in UTC, past year 9999
HUGE = "__5000_digits__"  # replaced in the JSON text: Python itself refuses to make such an int from text

GOOD = {
    "records": usage(dedupe_key="good-0"),
    "runs": run(external_id="good-0"),
    "outcomes": outcome(external_id="good-0"),
}
POISON_ITEMS = [
    ("usage", "records", usage(occurred_at=EDGE_OF_TIME), "occurred_at"),
    ("usage", "records", usage(occurred_at=END_OF_TIME), "occurred_at"),
    ("usage", "records", usage(input_tokens=HUGE), "input_tokens"),
    ("usage", "records", usage(cost_usd=HUGE), "cost_usd"),
    ("runs", "runs", run(started_at=EDGE_OF_TIME), "started_at"),
    ("runs", "runs", run(ended_at=END_OF_TIME), "ended_at"),
    ("runs", "runs", run(external_id=HUGE), "external_id"),
    ("outcomes", "outcomes", outcome(occurred_at=EDGE_OF_TIME), "occurred_at"),
    ("outcomes", "outcomes", outcome(external_id=HUGE), "external_id"),
]


@pytest.mark.parametrize(("route", "key", "item", "field"), POISON_ITEMS)
def test_a_poison_item_is_a_422_naming_its_index_and_field_and_writes_nothing(
    server: tuple[httpx.Client, httpx.Client, Engine], route: str, key: str, item: dict[str, Any], field: str
) -> None:
    api, _, engine = server
    before = row_counts(engine)
    body = json.dumps({key: [GOOD[key], item]}).replace(f'"{HUGE}"', "9" * 5000)
    response = api.post(f"/v1/{route}", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(1, field)], errors
    assert row_counts(engine) == before


@pytest.mark.parametrize("route", ["usage", "runs", "outcomes", "otlp/v1/metrics", "otlp/v1/logs"])
def test_a_body_nested_100_000_deep_is_a_4xx_not_a_500(
    server: tuple[httpx.Client, httpx.Client, Engine], route: str
) -> None:
    api, otlp, engine = server
    client = otlp if route.startswith("otlp") else api
    before = row_counts(engine)
    body = "[" * 100_000 + "]" * 100_000
    response = client.post(f"/v1/{route}", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert "nests" in response.json()["errors"][0]["message"]
    assert row_counts(engine) == before


@pytest.mark.parametrize("route", ["otlp/v1/metrics", "otlp/v1/logs"])
def test_an_otlp_body_with_5000_digit_integers_is_refused_not_a_500(
    server: tuple[httpx.Client, httpx.Client, Engine], route: str
) -> None:
    """OTLP's JSON encoding writes 64-bit integers as strings, but a sender may write bare numbers: a bare
    5 000-digit one used to stop Python's JSON reader (ValueError, answered 500). Now the point is rejected
    in partialSuccess, like any other point with a value out of range, and nothing is written."""
    _, otlp, engine = server
    before = row_counts(engine)
    resource = {"attributes": [{"key": "user.email", "value": {"stringValue": "ada@example.com"}}]}
    if route.endswith("metrics"):
        point = {"asInt": HUGE, "timeUnixNano": HUGE, "startTimeUnixNano": "1"}
        point["attributes"] = [{"key": "type", "value": {"stringValue": "input"}}]
        metric = {"name": "claude_code.token.usage", "sum": {"dataPoints": [point], "aggregationTemporality": 1}}
        body = {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": [metric]}]}]}
    else:
        attributes = [
            {"key": "event.name", "value": {"stringValue": "api_request"}},
            {"key": "input_tokens", "value": {"intValue": HUGE}},
            {"key": "model", "value": {"stringValue": "claude-sonnet-4-5"}},
            {"key": "session.id", "value": {"stringValue": "s-1"}},
        ]
        body = {
            "resourceLogs": [
                {
                    "resource": resource,
                    "scopeLogs": [{"logRecords": [{"timeUnixNano": HUGE, "attributes": attributes}]}],
                }
            ]
        }
    text = json.dumps(body).replace(f'"{HUGE}"', "9" * 5000)
    response = otlp.post(f"/v1/{route}", content=text, headers={"Content-Type": "application/json"})
    assert response.status_code < 500, response.text
    assert response.status_code == 400 or response.json()["partialSuccess"], response.text
    assert row_counts(engine) == before


POISON_VALUES = st.sampled_from(
    [
        "9" * 5000,
        "-" + "9" * 4301,
        "1e999999",
        "[" * 5000 + "]" * 5000,
        json.dumps(EDGE_OF_TIME),
        json.dumps(END_OF_TIME),
        json.dumps("9999-12-31T23:59:59.999999-23:59"),
        json.dumps("0001-01-01T00:00:00+23:59"),
    ]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["records", "runs", "outcomes"]),
    field=st.sampled_from(["occurred_at", "started_at", "ended_at", "input_tokens", "cost_usd", "external_id"]),
    poison=POISON_VALUES,
    at=st.integers(0, 2),
)
def test_any_poison_value_in_any_field_is_a_4xx_and_writes_nothing(
    server: tuple[httpx.Client, httpx.Client, Engine], kind: str, field: str, poison: str, at: int
) -> None:
    assume(not (field == "external_id" and poison.startswith('"')))  # a date is a fine id
    api, _, engine = server
    route = {"records": "usage", "runs": "runs", "outcomes": "outcomes"}[kind]
    items = [dict(GOOD[kind], **{"dedupe_key" if kind == "records" else "external_id": f"i-{i}"}) for i in range(3)]
    items[at][field] = "__poison__"
    body = json.dumps({kind: items}).replace('"__poison__"', poison)
    before = row_counts(engine)
    response = api.post(f"/v1/{route}", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    if response.status_code == 422:
        assert {e["index"] for e in response.json()["errors"]} == {at}, response.text
    assert row_counts(engine) == before
