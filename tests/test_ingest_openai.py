"""OpenAI's organisation Usage API through the SDK, against a local server with the documented shapes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.config import DEFAULT_OUTCOME_WEIGHTS, Settings
from bot.jobs import build_scheduler
from bot.pricing import price
from bot.services import Services
from bot.sources.admin_api import KeyRejected
from bot.sources.openai_usage import build_admin_client, pull_recent_usage, pull_usage
from storage.models import BilledCost, Person, UsageRecord, VendorPullState
from tests.support.ingest_fixtures import row_counts

ADMIN_KEY = "sk-admin-test"
DAY_23 = int(datetime(2026, 11, 23, tzinfo=UTC).timestamp())
DAY_24 = int(datetime(2026, 11, 24, tzinfo=UTC).timestamp())
DAY = 86_400


def completions_result(
    user_id: str | None, model: str, project: str, inp: int, cached: int, out: int
) -> dict[str, Any]:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": inp,
        "output_tokens": out,
        "input_cached_tokens": cached,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "num_model_requests": 3,
        "project_id": project,
        "user_id": user_id,
        "api_key_id": None,
        "model": model,
        "batch": None,
    }


class FakeOpenAI:
    """What the server serves; tests change it between pulls."""

    def __init__(self) -> None:
        self.costs_status = 200
        self.bo_output = 300
        self.billed_mini = 0.0006
        self.refuse: int | None = None  # answer every request with this status (a revoked key: 401)
        self.requests: list[tuple[str, dict[str, list[str]], str]] = []

    def page(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if self.refuse:
            return self.refuse, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
        if path == "/v1/organization/users":
            users = [
                {
                    "object": "organization.user",
                    "id": "user-ana",
                    "name": "Ana",
                    "email": "Ana@Example.com",
                    "role": "owner",
                    "added_at": 1711471533,
                },
                {
                    "object": "organization.user",
                    "id": "user-bo",
                    "name": "Bo",
                    "email": "bo@example.com",
                    "role": "reader",
                    "added_at": 1711471534,
                },
            ]
            return 200, {
                "object": "list",
                "data": users,
                "first_id": "user-ana",
                "last_id": "user-bo",
                "has_more": False,
            }
        if path == "/v1/organization/usage/completions":
            if query.get("page") == ["page_2"]:
                results = [
                    completions_result("user-bo", "gpt-4o-mini", "proj_a", 2000, 1000, self.bo_output),
                    completions_result("user-ana", "gpt-4o-2024-08-06", "proj_a", 10, 0, 5),
                ]
                bucket = {"object": "bucket", "start_time": DAY_24, "end_time": DAY_24 + DAY, "results": results}
                return 200, {"object": "page", "data": [bucket], "has_more": False, "next_page": None}
            results = [
                completions_result("user-ana", "gpt-4o-2024-08-06", "proj_a", 1000, 400, 200),
                completions_result("user-ana", "gpt-4o-2024-08-06", "proj_b", 500, 0, 100),
                completions_result(None, "gpt-4o-2024-08-06", "proj_a", 99, 0, 9),  # an API key, no user
            ]
            bucket = {"object": "bucket", "start_time": DAY_23, "end_time": DAY_23 + DAY, "results": results}
            return 200, {"object": "page", "data": [bucket], "has_more": True, "next_page": "page_2"}
        if path == "/v1/organization/costs":
            if self.costs_status != 200:
                return self.costs_status, {"error": {"message": "not allowed", "type": "invalid_request_error"}}
            if "user_id" not in (query.get("group_by") or query.get("group_by[]") or []):
                return 200, self.organisation_costs(query)
            lines = [("gpt-4o-2024-08-06, input", 0.004), ("gpt-4o-2024-08-06, output", 0.003)]
            results = [
                {
                    "object": "organization.costs.result",
                    "amount": {"value": v, "currency": "usd"},
                    "line_item": item,
                    "project_id": None,
                    "user_id": "user-ana",
                }
                for item, v in lines
            ]
            buckets = [
                {"object": "bucket", "start_time": DAY_23, "end_time": DAY_23 + DAY, "results": results},
                {"object": "bucket", "start_time": DAY_24, "end_time": DAY_24 + DAY, "results": []},
            ]
            return 200, {"object": "page", "data": buckets, "has_more": False, "next_page": None}
        return 404, {"error": {"message": f"no route {path}"}}


def organisation_costs(self: FakeOpenAI, query: dict[str, list[str]]) -> dict[str, Any]:
    """The organisation's costs by line item and project, as OpenAI shapes them (no user), over two pages."""

    def result(item: str, value: float, project: str | None) -> dict[str, Any]:
        return {"object": "organization.costs.result", "amount": {"value": value, "currency": "usd"},
                "line_item": item, "project_id": project}  # fmt: skip

    if query.get("page") == ["costs_2"]:
        results = [result("gpt-4o-mini, input", self.billed_mini, "proj_a")]
        bucket = {"object": "bucket", "start_time": DAY_24, "end_time": DAY_24 + DAY, "results": results}
        return {"object": "page", "data": [bucket], "has_more": False, "next_page": None}
    results = [result("gpt-4o-2024-08-06, input", 0.004, "proj_a"), result("gpt-4o-2024-08-06, output", 0.003, None)]
    bucket = {"object": "bucket", "start_time": DAY_23, "end_time": DAY_23 + DAY, "results": results}
    return {"object": "page", "data": [bucket], "has_more": True, "next_page": "costs_2"}


FakeOpenAI.organisation_costs = organisation_costs  # type: ignore[attr-defined]


@contextmanager
def serve(state: FakeOpenAI) -> Iterator[tuple[FakeOpenAI, str]]:
    """The fake on a real HTTP server at 127.0.0.1 on a free port; yields (state, base URL)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            state.requests.append((url.path, query, self.headers.get("Authorization", "")))
            status, body = state.page(url.path, query)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    with serve(FakeOpenAI()) as served:
        yield served


def weight_for(kind: str) -> Decimal:
    return DEFAULT_OUTCOME_WEIGHTS[kind]


def client_for(base_url: str) -> Any:
    settings = Settings(openai_admin_key=ADMIN_KEY, openai_admin_base_url=base_url)  # type: ignore[call-arg]
    client = build_admin_client(settings)
    assert client is not None
    return client.with_options(max_retries=0)


def stored(engine: Engine) -> dict[tuple[str, str, str], tuple[int, int, int, Decimal | None]]:
    with Session(engine) as session:
        people = {p.id: p.email for p in session.exec(select(Person)).all()}
        return {
            (r.occurred_at.date().isoformat(), people[r.person_id] or "", r.model): (
                r.input_tokens,
                r.cache_read_tokens,
                r.output_tokens,
                r.cost_usd,
            )
            for r in session.exec(select(UsageRecord)).all()
        }


def test_two_pages_of_usage_land_per_user_day_and_model_with_cost(fake: tuple[FakeOpenAI, str], engine: Engine) -> None:
    state, base = fake
    summary = pull_usage(client_for(base), engine, date(2026, 11, 23), date(2026, 11, 24), weight_for)
    assert (summary.pages, summary.records, summary.unattributed) == (2, 3, 1)
    assert (summary.priced_by_openai, summary.priced_by_table) == (1, 2)
    assert stored(engine) == {
        ("2026-11-23", "ana@example.com", "gpt-4o-2024-08-06"): (1100, 400, 300, Decimal("0.007")),
        ("2026-11-24", "bo@example.com", "gpt-4o-mini"): (1000, 1000, 300, Decimal("0.000405")),
        ("2026-11-24", "ana@example.com", "gpt-4o-2024-08-06"): (10, 0, 5, price("gpt-4o-2024-08-06", 10, 5)),
    }
    usage_calls = [(q, auth) for path, q, auth in state.requests if path.endswith("/usage/completions")]
    assert len(usage_calls) == 2
    first, second = usage_calls
    assert first[0]["bucket_width"] == ["1d"] and first[1] == f"Bearer {ADMIN_KEY}"
    group_by = first[0].get("group_by") or first[0].get("group_by[]") or []
    assert sorted(group_by) == ["model", "project_id", "user_id"]
    assert first[0]["start_time"] == [str(DAY_23)] and first[0]["end_time"] == [str(DAY_24 + DAY)]
    assert second[0]["page"] == ["page_2"]


def test_pulling_again_changes_nothing_and_a_growing_bucket_is_updated_in_place(
    fake: tuple[FakeOpenAI, str], engine: Engine
) -> None:
    state, base = fake
    client = client_for(base)
    pull_usage(client, engine, date(2026, 11, 23), date(2026, 11, 24), weight_for)
    counts, before = row_counts(engine), stored(engine)
    pull_usage(client, engine, date(2026, 11, 23), date(2026, 11, 24), weight_for)
    assert row_counts(engine) == counts and stored(engine) == before
    state.bo_output = 900  # later in the day the bucket has grown
    pull_usage(client, engine, date(2026, 11, 23), date(2026, 11, 24), weight_for)
    assert row_counts(engine) == counts
    assert stored(engine)[("2026-11-24", "bo@example.com", "gpt-4o-mini")][2] == 900


def test_without_access_to_costs_the_price_table_is_used(fake: tuple[FakeOpenAI, str], engine: Engine) -> None:
    state, base = fake
    state.costs_status = 403
    summary = pull_usage(client_for(base), engine, date(2026, 11, 23), date(2026, 11, 24), weight_for)
    assert (summary.priced_by_openai, summary.priced_by_table) == (0, 3)
    ana_23 = stored(engine)[("2026-11-23", "ana@example.com", "gpt-4o-2024-08-06")]
    assert ana_23[3] == price("gpt-4o-2024-08-06", 1100, 300, 400, 0)


def test_a_failing_api_writes_nothing(fake: tuple[FakeOpenAI, str], engine: Engine) -> None:
    _, base = fake
    client = client_for(base.replace("/v1", "/missing"))
    services = Services(settings=Settings(openai_admin_key=ADMIN_KEY), engine=engine, openai_admin=client)  # type: ignore[call-arg]
    assert pull_recent_usage(services, now=datetime(2026, 11, 24, 12, tzinfo=UTC)) is None
    assert row_counts(engine) == {"person": 0, "agent_run": 0, "usage_record": 0, "outcome": 0}


def test_the_hourly_job_exists_only_with_an_admin_key_and_pulls_recent_days(
    fake: tuple[FakeOpenAI, str], engine: Engine
) -> None:
    _, base = fake
    without = build_scheduler(Services(settings=Settings(), engine=engine))  # type: ignore[call-arg]
    # no usage pull; retention and the settling of GitHub's bursts always run
    assert sorted(job.id for job in without.get_jobs()) == ["github:settle", "retention:purge"]
    settings = Settings(openai_admin_key=ADMIN_KEY, openai_admin_base_url=base, openai_usage_days=2)  # type: ignore[call-arg]
    services = Services(settings=settings, engine=engine, openai_admin=client_for(base))
    scheduler = build_scheduler(services)
    [job] = [job for job in scheduler.get_jobs() if job.id == "openai-usage"]
    assert job.trigger.interval.total_seconds() == 3600
    summary = job.func(*job.args, now=datetime(2026, 11, 24, 15, tzinfo=UTC))
    assert summary is not None and summary.records == 3


def test_the_organisations_billed_cost_lands_per_day_and_line_item_and_never_in_usage(
    fake: tuple[FakeOpenAI, str], engine: Engine
) -> None:
    state, base = fake
    client = client_for(base)
    summary = pull_usage(client, engine, date(2026, 11, 23), date(2026, 11, 24), weight_for)
    assert (summary.billed_lines, summary.billed_pages) == (3, 2)
    asked = [q for path, q, _ in state.requests if path.endswith("/organization/costs")]
    assert any(sorted(q.get("group_by") or q.get("group_by[]") or []) == ["line_item", "project_id"] for q in asked)

    def billed() -> list[tuple[str, date, str, str, str, Decimal | None]]:
        with Session(engine) as session:
            rows = session.exec(select(BilledCost).order_by(BilledCost.day, BilledCost.line_item)).all()  # type: ignore[arg-type]
            return [(r.vendor, r.day, r.model, r.workspace, r.line_item, r.amount) for r in rows]

    assert billed() == [
        ("openai", date(2026, 11, 23), "gpt-4o-2024-08-06", "proj_a", "gpt-4o-2024-08-06, input", Decimal("0.004")),
        ("openai", date(2026, 11, 23), "gpt-4o-2024-08-06", "", "gpt-4o-2024-08-06, output", Decimal("0.003")),
        ("openai", date(2026, 11, 24), "gpt-4o-mini", "proj_a", "gpt-4o-mini, input", Decimal("0.0006")),
    ]
    usage_total = sum((r[3] or 0) for r in stored(engine).values())
    before, counts = billed(), row_counts(engine)
    pull_usage(client, engine, date(2026, 11, 23), date(2026, 11, 24), weight_for)
    assert billed() == before and row_counts(engine) == counts  # a finished day re-pulled changes nothing
    state.billed_mini = 0.0009  # today's bill grows
    pull_usage(client, engine, date(2026, 11, 24), date(2026, 11, 24), weight_for)
    assert billed()[2][5] == Decimal("0.0009") and billed()[:2] == before[:2]
    assert sum((r[3] or 0) for r in stored(engine).values()) == usage_total  # billed cost never enters usage
    with Session(engine) as session:
        sources = {r.cost_source for r in session.exec(select(UsageRecord)).all()}
    assert sources == {"billed", "priced"}  # OpenAI's per-user figure, or genai-prices'


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_one_line_naming_the_variable_and_recorded_for_source_status(
    fake: tuple[FakeOpenAI, str], engine: Engine, status: int
) -> None:
    state, base = fake
    state.refuse = status
    with pytest.raises(KeyRejected) as refused:
        pull_usage(client_for(base), engine, date(2026, 11, 23), date(2026, 11, 24), weight_for)
    message = str(refused.value)
    assert "OPENAI_ADMIN_KEY" in message and str(status) in message and "\n" not in message
    with Session(engine) as session:
        recorded = session.get(VendorPullState, "openai-usage")
    assert recorded is not None and recorded.last_error == message and recorded.last_success_at is None
    assert row_counts(engine)["usage_record"] == 0
