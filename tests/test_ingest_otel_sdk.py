"""Usage as the real OpenTelemetry SDK exports it: the Python SDK's OTLP/HTTP exporter against a running
Tokenwise, counters shaped like Claude Code's, delta and cumulative temporality, several export cycles and
an export sent twice. One session and model make one usage record whose cost joins its tokens."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from sqlalchemy import Engine
from sqlmodel import Session, select

from storage.models import UsageRecord
from tests.support.ingest_fixtures import make_app, new_token, running_server

SESSION, MODEL = "5e55-10n", "claude-sonnet-4-5"
TEMPORALITIES = {"cumulative": AggregationTemporality.CUMULATIVE, "delta": AggregationTemporality.DELTA}


@pytest.fixture
def endpoint(engine: Engine, db_url: str) -> Iterator[tuple[str, str]]:
    with running_server(make_app(engine, db_url)) as url:
        yield f"{url}/v1/otlp/v1/metrics", new_token(engine, "claude-code-otel", "otlp")


def claude_code(endpoint: tuple[str, str], temporality: str) -> tuple[MeterProvider, PeriodicExportingMetricReader]:
    """A meter provider like Claude Code's: its resource names the person, exports go to Tokenwise."""
    url, token = endpoint
    exporter = OTLPMetricExporter(
        endpoint=url,
        headers={"Authorization": f"Bearer {token}"},
        preferred_temporality={Counter: TEMPORALITIES[temporality]},
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)  # exported by hand
    resource = Resource.create({"service.name": "claude-code", "user.email": "ada@example.com"})
    return MeterProvider(resource=resource, metric_readers=[reader]), reader


def records(engine: Engine) -> list[UsageRecord]:
    with Session(engine) as session:
        return list(session.exec(select(UsageRecord)).all())


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_a_session_exported_by_the_real_sdk_is_counted_exactly_with_its_cost(
    engine: Engine, endpoint: tuple[str, str], temporality: str
) -> None:
    provider, reader = claude_code(endpoint, temporality)
    meter = provider.get_meter("com.anthropic.claude_code")
    tokens = meter.create_counter("claude_code.token.usage", unit="tokens")
    cost = meter.create_counter("claude_code.cost.usage", unit="USD")
    session = {"session.id": SESSION, "model": f"{MODEL}[1m]"}
    sent = {"input": 0, "output": 0, "cacheRead": 0, "cacheCreation": 0}
    spent = Decimal(0)
    for cycle in range(1, 4):  # three export cycles, as a session goes on
        for kind, amount in (("input", 1200), ("output", 300 * cycle), ("cacheRead", 5000), ("cacheCreation", 40)):
            tokens.add(amount, {**session, "type": kind})
            sent[kind] += amount
        cost.add(0.25 * cycle, session)
        spent += Decimal("0.25") * cycle
        assert reader.force_flush()
    assert reader.force_flush()  # an export with nothing new (cumulative: the same totals sent again)
    provider.shutdown()

    stored = records(engine)
    assert {r.model for r in stored} == {MODEL}
    assert sum(r.cost_usd is None for r in stored) == 0  # no record of unknown cost: the cost joined its tokens
    if temporality == "cumulative":
        assert len(stored) == 1  # one session and model, however many attribute sets and exports
    totals = {
        "input": sum(r.input_tokens for r in stored),
        "output": sum(r.output_tokens for r in stored),
        "cacheRead": sum(r.cache_read_tokens for r in stored),
        "cacheCreation": sum(r.cache_write_tokens for r in stored),
    }
    assert totals == sent
    assert sum((r.cost_usd or Decimal(0)) for r in stored) == spent
