"""The HTTP ingest API, through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.app import create_app
from bot.config import Settings
from bot.services import Services
from storage.db import make_engine, session_scope
from storage.models import AgentRun, Outcome, Person, UsageRecord
from storage.sources import revoke_source
from tests.support.ingest_fixtures import make_app, new_token, row_counts, running_server


def usage(key: str = "u1", **overrides: Any) -> dict[str, Any]:
    record = {
        "dedupe_key": key,
        "email": "ana@example.com",
        "occurred_at": "2026-11-24T10:00:00Z",
        "agent": "claude-code",
        "model": "claude-sonnet-4-20250514",
        "input_tokens": 100,
        "output_tokens": 50,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 10,
        "cost_usd": "0.0123",
    }
    record.update(overrides)
    return record


def run(external_id: str = "r1", **overrides: Any) -> dict[str, Any]:
    item = {
        "external_id": external_id,
        "email": "ana@example.com",
        "agent": "claude-code",
        "started_at": "2026-11-24T09:00:00Z",
        "ended_at": "2026-11-24T09:30:00+00:00",
        "title": "Fix flaky test",
        "repo": "acme/api",
        "status": "done",
    }
    item.update(overrides)
    return item


@pytest.fixture
def client(engine: Engine, db_url: str) -> TestClient:
    return TestClient(make_app(engine, db_url))


@pytest.fixture
def auth(engine: Engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {new_token(engine, outcomes=True)}"}


def test_a_usage_batch_is_written_once_and_resending_it_changes_nothing(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    batch = {"records": [usage("u1"), usage("u2", slack_user_id="U123", email=None, cost_usd=0.5), usage("u1")]}
    first = client.post("/v1/usage", json=batch, headers=auth)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 2, "duplicates": 1}
    counts = row_counts(engine)
    again = client.post("/v1/usage", json=batch, headers=auth)
    assert again.json() == {"accepted": 0, "duplicates": 3}
    assert row_counts(engine) == counts
    with Session(engine) as session:
        records = session.exec(select(UsageRecord).order_by(UsageRecord.dedupe_key)).all()
        assert [r.cost_usd for r in records] == [Decimal("0.0123"), Decimal("0.5")]
        assert records[0].cache_read_tokens == 1000
        people = session.exec(select(Person).order_by(Person.id)).all()
        assert {(p.email, p.slack_user_id) for p in people} == {("ana@example.com", None), (None, "U123")}


def test_a_batch_mixing_stored_and_new_records_writes_the_new_ones_and_their_new_people(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    """On PostgreSQL a batch of new keys is COPYed straight in; one with a stored key falls back, behind a
    savepoint, to the path that skips stored keys, keeping what the transaction wrote before (new people)."""
    assert client.post("/v1/usage", json={"records": [usage("a"), usage("c")]}, headers=auth).json() == {
        "accepted": 2,
        "duplicates": 0,
    }
    mixed = [usage("b", email="new@example.com"), usage("c"), usage("a", cost_usd="9"), usage("d"), usage("b")]
    assert client.post("/v1/usage", json={"records": mixed}, headers=auth).json() == {"accepted": 2, "duplicates": 3}
    with Session(engine) as session:
        records = session.exec(select(UsageRecord).order_by(UsageRecord.dedupe_key)).all()
        assert [(r.dedupe_key, r.cost_usd) for r in records] == [
            ("a", Decimal("0.0123")),
            ("b", Decimal("0.0123")),
            ("c", Decimal("0.0123")),
            ("d", Decimal("0.0123")),
        ]
        newcomer = session.exec(select(Person).where(Person.email == "new@example.com")).one()
        assert records[1].person_id == newcomer.id


def test_outcomes_take_the_run_owner_and_the_configured_weight(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    assert client.post("/v1/runs", json={"runs": [run("r1")]}, headers=auth).json() == {"accepted": 1, "duplicates": 0}
    linked = {"external_id": "o1", "run_external_id": "r1", "kind": "pr_merged", "url": "https://x/pr/1"}
    unlinked = {
        "external_id": "o2",
        "email": "bo@example.com",
        "occurred_at": "2026-11-24T12:00:00Z",
        "kind": "deploy",
    }
    response = client.post("/v1/outcomes", json={"outcomes": [linked, unlinked]}, headers=auth)
    assert response.json() == {"accepted": 2, "duplicates": 0}
    response = client.post("/v1/usage", json={"records": [usage("u9", run_external_id="r1")]}, headers=auth)
    assert response.json() == {"accepted": 1, "duplicates": 0}
    counts = row_counts(engine)
    assert client.post("/v1/runs", json={"runs": [run("r1", title="Renamed")]}, headers=auth).json() == {
        "accepted": 0,
        "duplicates": 1,
    }
    again = client.post("/v1/outcomes", json={"outcomes": [linked, unlinked]}, headers=auth)
    assert again.json() == {"accepted": 0, "duplicates": 2}
    assert row_counts(engine) == counts
    with Session(engine) as session:
        the_run = session.exec(select(AgentRun)).one()
        outcomes = {o.external_id: o for o in session.exec(select(Outcome)).all()}
        record = session.exec(select(UsageRecord)).one()
    assert outcomes["o1"].run_id == the_run.id and outcomes["o1"].person_id == the_run.person_id
    assert outcomes["o1"].weight == Decimal("3")  # pr_merged default
    assert outcomes["o1"].occurred_at == the_run.ended_at  # no time given: the run's end
    assert outcomes["o2"].run_id is None and outcomes["o2"].weight == Decimal("2")  # deploy default; never sent
    assert record.run_id == the_run.id


def test_configured_weights_apply_to_outcomes(engine: Engine, db_url: str) -> None:
    client = TestClient(make_app(engine, db_url, outcome_weights={"commit": Decimal("0.75")}))
    token = new_token(engine, outcomes=True)
    item = {"external_id": "c1", "email": "a@x.io", "occurred_at": "2026-11-24T12:00:00Z", "kind": "commit"}
    client.post("/v1/outcomes", json={"outcomes": [item]}, headers={"Authorization": f"Bearer {token}"})
    with Session(engine) as session:
        assert session.exec(select(Outcome.weight)).one() == Decimal("0.75")


BAD_BATCHES: list[tuple[str, str, Any, str]] = [
    ("usage", "negative tokens", {"records": [usage("a"), usage("b", input_tokens=-1)]}, "input_tokens"),
    ("usage", "fractional tokens", {"records": [usage("b", output_tokens=1.5)]}, "output_tokens"),
    ("usage", "no person", {"records": [usage("b", email=None)]}, "email"),
    ("usage", "naive time", {"records": [usage("b", occurred_at="2026-11-24T10:00:00")]}, "occurred_at"),
    ("usage", "epoch time", {"records": [usage("b", occurred_at=1764000000)]}, "occurred_at"),
    ("usage", "bad cost", {"records": [usage("b", cost_usd="cheap")]}, "cost_usd"),
    ("usage", "unknown run", {"records": [usage("b", run_external_id="nope")]}, "run_external_id"),
    ("usage", "prompt text", {"records": [usage("b", prompt="secret")]}, "prompt"),
    ("usage", "not an object", {"records": [usage("a"), 7]}, None),
    ("usage", "no list", {"items": []}, "records"),
    ("runs", "end before start", {"runs": [run(ended_at="2026-11-24T08:00:00Z")]}, "ended_at"),
    ("outcomes", "unknown kind", {"outcomes": [{"external_id": "x", "email": "a@b.c", "kind": "vibes"}]}, "kind"),
    (
        "outcomes",
        "unlinked without time",
        {"outcomes": [{"external_id": "x", "email": "a@b.c", "kind": "doc"}]},
        "occurred_at",
    ),
]


@pytest.mark.parametrize(("path", "case", "body", "field"), BAD_BATCHES, ids=[c[1] for c in BAD_BATCHES])
def test_an_invalid_batch_is_rejected_whole_with_422_and_writes_nothing(
    client: TestClient, auth: dict[str, str], engine: Engine, path: str, case: str, body: Any, field: str | None
) -> None:
    before = row_counts(engine)
    response = client.post(f"/v1/{path}", json=body, headers=auth)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(e["field"] == field for e in errors), errors
    assert all(set(e) == {"index", "field", "message"} and e["message"] for e in errors)
    assert row_counts(engine) == before


def test_an_unknown_outcome_kind_names_the_valid_kinds(client: TestClient, auth: dict[str, str]) -> None:
    item = {"external_id": "x", "email": "a@b.c", "kind": "vibes", "occurred_at": "2026-11-24T12:00:00Z"}
    response = client.post("/v1/outcomes", json={"outcomes": [item]}, headers=auth)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "index": 0,
            "field": "kind",
            "message": "unknown outcome kind 'vibes'; valid kinds are pr_merged, pr_opened, commit, tests_passed, "
            "deploy, ticket_closed, doc, other",
        }
    ]


def test_every_problem_in_a_batch_is_reported_with_its_index(client: TestClient, auth: dict[str, str]) -> None:
    body = {"records": [usage("a"), usage("b", input_tokens=-1), usage("c", model="")]}
    errors = client.post("/v1/usage", json=body, headers=auth).json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(1, "input_tokens"), (2, "model")]


def test_missing_unknown_and_revoked_tokens_get_401_and_write_nothing(
    client: TestClient, engine: Engine, auth: dict[str, str]
) -> None:
    before = row_counts(engine)
    body = {"records": [usage()]}
    assert client.post("/v1/usage", json=body).status_code == 401
    assert client.post("/v1/usage", json=body, headers={"Authorization": "Bearer tw_nope"}).status_code == 401
    assert client.post("/v1/usage", json=body, headers={"Authorization": "Basic abc"}).status_code == 401
    with session_scope(engine) as session:
        revoke_source(session, "ci")
    response = client.post("/v1/usage", json=body, headers=auth)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "revoked" in response.json()["errors"][0]["message"]
    assert row_counts(engine) == before


def test_a_body_that_is_not_json_gets_415_and_writes_nothing(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    before = row_counts(engine)
    as_json = {**auth, "Content-Type": "application/json"}
    assert client.post("/v1/usage", content=b"records=1", headers=as_json).status_code == 415
    assert client.post("/v1/usage", content=b"\xff\xfe", headers=as_json).status_code == 415
    as_csv = {**auth, "Content-Type": "text/csv"}
    assert client.post("/v1/runs", content=json.dumps({"runs": [run()]}), headers=as_csv).status_code == 415
    assert row_counts(engine) == before


def test_a_body_over_5_mb_or_10000_items_gets_413_and_writes_nothing(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    before = row_counts(engine)
    padding = "x" * 300
    big = {"records": [usage(f"k{i}", agent=padding[:64], model=padding[:120]) for i in range(20_000)]}
    body = json.dumps(big).encode()
    assert len(body) > 5 * 1024 * 1024
    response = client.post("/v1/usage", content=body, headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 413
    many = {"records": [usage(f"k{i}") for i in range(10_001)]}
    response = client.post("/v1/usage", json=many, headers=auth)
    assert response.status_code == 413
    assert "10000" in response.json()["errors"][0]["message"]
    assert row_counts(engine) == before


def test_exactly_10000_items_are_accepted(client: TestClient, auth: dict[str, str], engine: Engine) -> None:
    many = {"records": [usage(f"k{i}") for i in range(10_000)]}
    assert client.post("/v1/usage", json=many, headers=auth).json() == {"accepted": 10_000, "duplicates": 0}
    assert row_counts(engine)["usage_record"] == 10_000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    broken=st.fixed_dictionaries({}, optional={k: json_values for k in usage()}) | json_values,
    position=st.integers(0, 2),
)
def test_any_batch_gets_200_or_422_and_a_rejected_one_writes_nothing(
    client: TestClient, auth: dict[str, str], engine: Engine, broken: Any, position: int
) -> None:
    items: list[Any] = [usage("good-1"), usage("good-2")]
    items.insert(position, broken)
    before = row_counts(engine)
    response = client.post("/v1/usage", json={"records": items}, headers=auth)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert row_counts(engine) == before
        assert {e["index"] for e in response.json()["errors"]} == {position}


def test_healthz_reports_503_when_the_database_does_not_answer(tmp_path: Any, engine: Engine, db_url: str) -> None:
    assert TestClient(make_app(engine, db_url)).get("/healthz").status_code == 200
    dead = make_engine(f"sqlite:///{tmp_path}/missing-dir/x.db")
    app = create_app(Services(settings=Settings(database_url="sqlite://"), engine=dead))  # type: ignore[call-arg]
    response = TestClient(app).get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "down"


def test_openapi_documents_the_ingest_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/usage", "/v1/runs", "/v1/outcomes", "/v1/otlp/v1/metrics", "/v1/otlp/v1/logs"):
        assert path in paths
    schema = paths["/v1/usage"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "dedupe_key" in schema["properties"]["records"]["items"]["properties"]


def test_concurrent_overlapping_batches_over_real_http_end_with_exactly_the_distinct_records(
    engine: Engine, db_url: str
) -> None:
    token = new_token(engine)
    batches = [
        {"records": [usage(f"k{i}", email=f"p{i % 3}@example.com") for i in range(start, start + 60)][::step]}
        for start, step in ((0, 1), (20, -1), (40, 1), (30, -1))
    ]  # overlapping keys, and new people met in opposite orders
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(batches))

    with running_server(make_app(engine, db_url)) as base:

        def send(batch: dict[str, Any]) -> None:
            try:
                start.wait()
                with httpx.Client(base_url=base, timeout=30) as http:
                    response = http.post("/v1/usage", json=batch, headers={"Authorization": f"Bearer {token}"})
                    response.raise_for_status()
                    results.append(response.json())
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=send, args=(b,)) for b in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert httpx.get(f"{base}/healthz").json()["database"] == "up"
    assert not errors, errors
    distinct = 100  # keys k0..k99
    assert sum(r["accepted"] for r in results) == distinct
    assert sum(r["accepted"] + r["duplicates"] for r in results) == 240
    counts = row_counts(engine)
    assert counts["usage_record"] == distinct
    assert counts["person"] == 3


def test_an_unreachable_database_gets_a_503_with_retry_after_not_a_traceback(tmp_path: Any) -> None:
    dead = make_engine(f"sqlite:///{tmp_path}/missing-dir/x.db")
    app = create_app(Services(settings=Settings(database_url="sqlite://"), engine=dead))  # type: ignore[call-arg]
    client = TestClient(app, raise_server_exceptions=False)
    response = client.post("/v1/usage", json={"records": [usage()]}, headers={"Authorization": "Bearer tw_x"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "nothing was written" in response.json()["errors"][0]["message"]
    response = client.post(
        "/v1/otlp/v1/metrics",
        content=b"{}",
        headers={"Authorization": "Bearer tw_x", "Content-Type": "application/json"},
    )
    assert response.status_code == 503


def test_rows_are_stored_exactly_as_sent_and_of_two_with_one_key_the_first_is_kept(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    """The bulk paths (COPY on PostgreSQL, one JSON statement on SQLite) convert values as the ORM does."""
    batch = {
        "records": [
            usage("k", occurred_at="2026-11-24T12:30:00.123456+02:00", cost_usd="0.000000001", input_tokens=10**15),
            usage("k", occurred_at="2026-11-01T00:00:00Z", cost_usd="9", input_tokens=1),
            usage("z", cost_usd=None, model="o3", run_external_id=None),
        ],
        "runs": [run("r1"), run("r1", title="second"), run("r2", ended_at=None)],
    }
    records = client.post("/v1/usage", json={"records": batch["records"]}, headers=auth)
    assert records.json() == {"accepted": 2, "duplicates": 1}
    runs = client.post("/v1/runs", json={"runs": batch["runs"]}, headers=auth)
    assert runs.json() == {"accepted": 2, "duplicates": 1}
    with Session(engine) as session:
        kept, other = session.exec(select(UsageRecord).order_by(UsageRecord.dedupe_key)).all()
        assert kept.occurred_at == datetime(2026, 11, 24, 10, 30, 0, 123456, tzinfo=UTC)
        assert (kept.cost_usd, kept.input_tokens) == (Decimal("0.000000001"), 10**15)
        assert (other.cost_usd, other.model, other.run_id) == (None, "o3", None)
        stored = session.exec(select(AgentRun).order_by(AgentRun.external_id)).all()
        assert [(r.external_id, r.title, r.ended_at is None) for r in stored] == [
            ("r1", "Fix flaky test", False),
            ("r2", "Fix flaky test", True),
        ]
        orm = UsageRecord(**{**kept.model_dump(exclude={"id"}), "dedupe_key": "orm"})
        session.add(orm)
        session.commit()
    with engine.connect() as connection:  # the very same text or timestamp: range comparisons depend on it
        stored_times = connection.exec_driver_sql(
            "SELECT dedupe_key, occurred_at FROM usage_record WHERE dedupe_key IN ('k', 'orm')"
        ).all()
    assert len({time for _key, time in stored_times}) == 1 and len(stored_times) == 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    known=st.lists(st.integers(0, 30), max_size=12, unique=True),
    asked=st.lists(st.integers(0, 60), max_size=40),
)
def test_lookup_finds_exactly_the_people_that_exist_in_one_statement(
    engine: Engine, known: list[int], asked: list[int]
) -> None:
    from sqlalchemy import delete

    from storage.upsert import lookup

    with session_scope(engine) as session:
        session.execute(delete(Person))
        ids = {}
        for number in known:
            person = Person(email=f"p{number}@example.com")
            session.add(person)
            session.flush()
            ids[f"p{number}@example.com"] = person.id
    names = sorted({f"p{number}@example.com" for number in asked})
    with session_scope(engine) as session:
        found = lookup(session, "person", "email", ["id"], names)
    assert sorted(found) == sorted((name, ids[name]) for name in names if name in ids)


def test_a_nul_is_reported_with_the_other_problems_of_its_item() -> None:
    from storage.ingest_schemas import BatchInvalid, validate_batch

    with pytest.raises(BatchInvalid) as raised:
        validate_batch("records", [usage("k", agent="a\x00b", input_tokens=-1)])
    assert {(e["field"], e["message"].split(" ")[0]) for e in raised.value.errors} == {
        ("agent", "must"),
        ("input_tokens", "Input"),
    }
    assert validate_batch("records", [usage("k")], nul_possible=False)[0].agent == "claude-code"


_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**16),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", " ANA@Example.com ", "2026-11-24T10:00:00", "2026-11-24T10:00:00+02:00", "0.5", "1e3"]),
)


@settings(max_examples=200, deadline=None)
@given(
    overrides=st.lists(
        st.dictionaries(
            st.sampled_from(["email", "slack_user_id", "occurred_at", "cost_usd", "input_tokens", "agent", "extra"]),
            _ODD_VALUES,
            max_size=3,
        ),
        max_size=4,
    ),
    wrapper=st.sampled_from(["records", "runs", "other"]),
)
def test_the_one_pass_parser_accepts_only_what_the_careful_one_accepts_and_parses_it_alike(
    overrides: list[dict[str, Any]], wrapper: str
) -> None:
    """parse_valid_batch is a fast path: it must decline (None) or agree with json.loads + validate_batch."""
    from storage.ingest_schemas import BatchInvalid, parse_valid_batch, validate_batch

    records = [{**usage(f"k{i}"), **changes} for i, changes in enumerate(overrides)]
    body = json.dumps({wrapper: records}).encode()
    fast = parse_valid_batch("records", body, max_items=3)
    if fast is None:
        return
    assert wrapper == "records" and len(records) <= 3
    try:
        careful = validate_batch("records", json.loads(body)["records"])
    except BatchInvalid as invalid:
        raise AssertionError(f"the fast path accepted a batch the careful one rejects: {invalid.errors}") from None
    assert [item.model_dump() for item in fast] == [item.model_dump() for item in careful]


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9998, 12, 30)),
    offset_minutes=st.one_of(st.none(), st.integers(-23 * 60 - 59, 23 * 60 + 59)),
)
def test_the_bulk_time_conversion_gives_what_utcdatetime_gives(moment: datetime, offset_minutes: int | None) -> None:
    """The COPY and SQLite bulk paths convert times with naive_utc and sqlite_micros instead of UTCDateTime's
    bind processor; and what SQLite stores reads back as the same moment."""
    from datetime import timedelta, timezone

    from sqlalchemy.dialects import postgresql, sqlite

    from storage.bulk_load import _sqlite_value
    from storage.types import UTCDateTime
    from storage.upsert import naive_utc, sqlite_micros

    if offset_minutes is not None:
        moment = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    expected = UTCDateTime().process_bind_param(moment, postgresql.dialect())
    assert naive_utc(moment) == expected and naive_utc(moment).tzinfo is None  # type: ignore[union-attr]
    stored = UTCDateTime().process_bind_param(moment, sqlite.dialect())
    assert isinstance(stored, int) and sqlite_micros(moment) == stored == _sqlite_value(moment)
    back = UTCDateTime().process_result_value(stored, sqlite.dialect())
    assert back == (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) and back.utcoffset() == timedelta(0)
    assert naive_utc(None) is None and sqlite_micros(None) is None


def test_usage_rows_are_converted_by_the_columns_own_types(engine: Engine) -> None:
    """plan_usage builds COPY rows itself: they must be the values SQLAlchemy would bind for the ORM."""
    from storage.ingest import USAGE, USAGE_COLUMNS, plan_usage
    from storage.ingest_schemas import parse_valid_batch

    body = json.dumps(
        {"records": [usage("a", occurred_at="2026-11-24T12:30:00.123456+02:00", cost_usd="0.0000000015")]}
    ).encode()
    items = parse_valid_batch("records", body, 10)
    assert items is not None
    with session_scope(engine) as session:
        plan = plan_usage(session, 1, items)
        dialect = session.get_bind().dialect
    item = items[0]
    row = dict(zip(USAGE_COLUMNS, plan.values[0], strict=True))
    for name in ("occurred_at", "cost_usd", "agent", "input_tokens", "dedupe_key"):
        process = USAGE.c[name].type.dialect_impl(dialect).bind_processor(dialect) or (lambda value: value)
        assert row[name] == process(getattr(item, name)), name
    assert row["person_id"] is None and row["run_id"] is None and row["source_id"] == 1
