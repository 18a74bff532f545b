"""Usage as the real OpenTelemetry SDK exports it: the Python SDK's OTLP/HTTP exporter against a running
Tokenwise, counters shaped like Claude Code's, delta and cumulative temporality, several export cycles and
an export sent twice. One session and model make one usage record whose cost joins its tokens."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
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


def test_api_request_events_from_the_real_sdk_count_the_session_over_its_metrics(
    engine: Engine, endpoint: tuple[str, str]
) -> None:
    """Claude Code with both exporters on: an `api_request` event per call (the real SDK's OTLP/HTTP log
    exporter) and the same tokens in its metrics. The session counts once, from the events, each call's cost
    as sent; the metrics record stays stored, not counted."""
    url, token = endpoint
    resource = Resource.create({"service.name": "claude-code", "user.email": "ada@example.com"})
    exporter = OTLPLogExporter(endpoint=url.replace("/metrics", "/logs"), headers={"Authorization": f"Bearer {token}"})
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logs.get_logger("com.anthropic.claude_code.events")
    calls = [(1200, 300, 5000, 40, 0.031), (800, 150, 6200, 0, 0.022)]
    for number, (inp, out, read, write, cost) in enumerate(calls):
        attributes = {
            "event.name": "api_request", "event.sequence": number, "session.id": SESSION, "model": MODEL,
            "input_tokens": inp, "output_tokens": out, "cache_read_tokens": read, "cache_creation_tokens": write,
            "cost_usd": cost, "duration_ms": 2100,
        }  # fmt: skip
        logger.emit(body="claude_code.api_request", attributes=attributes, event_name="claude_code.api_request")
    logs.shutdown()

    provider, reader = claude_code(endpoint, "cumulative")
    tokens = provider.get_meter("com.anthropic.claude_code").create_counter("claude_code.token.usage")
    for kind, amount in (("input", 2000), ("output", 450), ("cacheRead", 11200), ("cacheCreation", 40)):
        tokens.add(amount, {"session.id": SESSION, "model": f"{MODEL}[1m]", "type": kind})
    assert reader.force_flush()
    provider.shutdown()

    stored = records(engine)
    counted = [r for r in stored if r.counted]
    assert len(stored) == 3 and len(counted) == 2
    assert sorted((r.input_tokens, r.output_tokens, r.cost_usd, r.cost_source) for r in counted) == [
        (800, 150, Decimal("0.022"), "reported"),
        (1200, 300, Decimal("0.031"), "reported"),
    ]
