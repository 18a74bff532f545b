"""OTLP/HTTP from Claude Code and GenAI-instrumented tools, through the real app, on both databases."""

from __future__ import annotations

import base64
import gzip
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from bot.otlp import OtlpError, decode, to_telemetry
from bot.pricing import price
from storage.models import AgentRun, Outcome, OutcomeLink, Person, UnattributedUsage, UsageRecord
from tests.support.ingest_fixtures import make_app, new_token, row_counts, running_server
from tests.support.samples import SAMPLES

SESSION = "5d0d3c9e-3333-4c6d-9e8f-000000000003"


def sample(name: str) -> bytes:
    return (SAMPLES / f"otlp_claude_code_metrics_{name}.json").read_bytes()


@pytest.fixture
def client(engine: Engine, db_url: str) -> TestClient:
    return TestClient(make_app(engine, db_url))


@pytest.fixture
def auth(engine: Engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {new_token(engine, 'claude', 'otlp', outcomes=True)}"}


def post_json(client: TestClient, auth: dict[str, str], body: bytes, signal: str = "metrics") -> httpx.Response:
    response = client.post(f"/v1/otlp/v1/{signal}", content=body, headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return response


def totals(engine: Engine) -> dict[str, Any]:
    with Session(engine) as session:
        records = session.exec(select(UsageRecord)).all()
        outcomes = session.exec(select(Outcome)).all()
        runs = session.exec(select(AgentRun)).all()
        people = session.exec(select(Person)).all()
    return {
        "input": sum(r.input_tokens for r in records),
        "output": sum(r.output_tokens for r in records),
        "cache_read": sum(r.cache_read_tokens for r in records),
        "cache_write": sum(r.cache_write_tokens for r in records),
        "cost": sum((r.cost_usd or Decimal(0) for r in records), Decimal(0)),
        "commits": sum(1 for o in outcomes if o.kind == "commit"),
        "prs": sum(1 for o in outcomes if o.kind == "pr_opened"),
        "runs": [r.external_id for r in runs],
        "people": [p.email for p in people],
        "linked": all(r.run_id == runs[0].id for r in records) and all(o.run_id == runs[0].id for o in outcomes),
    }


FIRST_INTERVAL = {
    "input": 1200,
    "output": 3400,
    "cache_read": 98000,
    "cache_write": 5600,
    "cost": Decimal("0.1234"),
    "commits": 2,
    "prs": 1,
    "runs": [SESSION],
    "people": ["ana@example.com"],
    "linked": True,
}
AFTER_BOTH_CUMULATIVE = {
    **FIRST_INTERVAL,
    "input": 2400,
    "output": 6800,
    "cache_read": 196000,
    "cache_write": 11200,
    "cost": Decimal("0.2468"),
    "commits": 4,
    "prs": 2,
}


def test_a_delta_export_lands_on_the_person_run_tokens_and_outcomes(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    response = post_json(client, auth, sample("delta"))
    assert response.json() == {}
    assert totals(engine) == FIRST_INTERVAL
    with Session(engine) as session:
        outcome = session.exec(select(Outcome).where(Outcome.kind == "commit")).first()
        assert outcome is not None and outcome.weight == Decimal("0.5")


def test_a_re_sent_delta_export_does_not_double_count(client: TestClient, auth: dict[str, str], engine: Engine) -> None:
    post_json(client, auth, sample("delta"))
    counts = row_counts(engine)
    post_json(client, auth, sample("delta"))
    assert row_counts(engine) == counts
    assert totals(engine) == FIRST_INTERVAL


@pytest.mark.parametrize("order", [("cumulative_1", "cumulative_2"), ("cumulative_2", "cumulative_1")])
def test_cumulative_exports_hold_the_latest_running_totals_not_their_sum(
    client: TestClient, auth: dict[str, str], engine: Engine, order: tuple[str, str]
) -> None:
    for name in order:
        post_json(client, auth, sample(name))
    assert totals(engine) == AFTER_BOTH_CUMULATIVE
    counts = row_counts(engine)
    post_json(client, auth, sample("cumulative_2"))
    post_json(client, auth, sample("cumulative_1"))
    assert row_counts(engine) == counts
    assert totals(engine) == AFTER_BOTH_CUMULATIVE


def test_a_protobuf_export_lands_like_the_json_one_and_gets_a_protobuf_answer(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    message = json_format.Parse(sample("cumulative_2"), ExportMetricsServiceRequest())
    body = gzip.compress(message.SerializeToString())
    headers = {**auth, "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    response = client.post("/v1/otlp/v1/metrics", content=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    ExportMetricsServiceResponse.FromString(response.content)
    post_json(client, auth, sample("cumulative_1"))
    assert totals(engine) == AFTER_BOTH_CUMULATIVE


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


SECRET = "please refactor the payroll module"  # prompt text that must never be stored


def logs_export() -> dict[str, Any]:
    common = [attr("user.email", "Bo@Example.com"), attr("session.id", "s-logs")]
    api_request = [  # Claude Code's event for one API call
        *common,
        attr("event.name", "api_request"),
        attr("model", "claude-opus-4-1-20250805"),
        attr("input_tokens", 10),
        attr("output_tokens", 20),
        {"key": "cost_usd", "value": {"doubleValue": 0.05}},
    ]
    prompt = [*common, attr("event.name", "user_prompt"), attr("prompt", SECRET), attr("prompt_length", 34)]
    genai = [
        *common,
        attr("gen_ai.request.model", "gpt-4o"),
        attr("gen_ai.usage.input_tokens", 1000),  # includes the 400 cached ones
        attr("gen_ai.usage.cache_read.input_tokens", 400),
        attr("gen_ai.usage.output_tokens", 30),
        attr("gen_ai.prompt", SECRET),
    ]
    no_person = [attr("gen_ai.request.model", "gpt-4o"), attr("gen_ai.usage.input_tokens", 1)]
    records = [
        {
            "timeUnixNano": "1764057600000000000",
            "body": {"stringValue": "claude_code.api_request"},
            "attributes": api_request,
        },
        {"timeUnixNano": "1764057601000000000", "body": {"stringValue": SECRET}, "attributes": prompt},
        {"timeUnixNano": "1764057602000000000", "body": {"stringValue": SECRET}, "attributes": genai},
        {"timeUnixNano": "1764057603000000000", "attributes": no_person},
    ]
    resource = {"attributes": [attr("service.name", "claude-code")]}
    return {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": records}]}]}


def test_log_records_give_usage_per_request_drop_prompts_and_keep_the_nameless(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    """Claude Code's `api_request` event (its cost as sent) and a GenAI log record (priced) are usage; the
    prompt is never stored; a record naming nobody is kept as unattributed, not refused."""
    body = json.dumps(logs_export()).encode()
    response = post_json(client, auth, body, "logs")
    assert "partialSuccess" not in response.json()
    counts = row_counts(engine)
    post_json(client, auth, body, "logs")
    assert row_counts(engine) == counts
    with Session(engine) as session:
        records = session.exec(select(UsageRecord).order_by(UsageRecord.occurred_at)).all()
        runs = session.exec(select(AgentRun)).all()
        nameless = session.exec(select(UnattributedUsage)).all()
    assert [(r.model, r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cost_source) for r in records] == [
        ("claude-opus-4-1-20250805", 10, 20, 0, "reported"),
        ("gpt-4o", 600, 30, 400, "priced"),
    ]
    assert records[0].cost_usd == Decimal("0.05") and all(r.counted for r in records)
    assert records[1].cost_usd == price("gpt-4o", 600, 30, 400) and records[1].cost_usd is not None
    assert [r.external_id for r in runs] == ["s-logs"] and {r.run_id for r in records} == {runs[0].id}
    assert [(u.model, u.input_tokens) for u in nameless] == [("gpt-4o", 1)]
    with engine.connect() as connection:
        for table in ("usage_record", "unattributed_usage", "agent_run", "outcome", "person", "source"):
            dump = repr(connection.execute(text(f"SELECT * FROM {table}")).all())
            assert "payroll" not in dump


def test_spans_with_genai_attributes_become_usage_once_in_json_and_protobuf(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "chat gpt-4o",
        "startTimeUnixNano": "1764057600000000000",
        "endTimeUnixNano": "1764057605000000000",
        "attributes": [
            attr("user.email", "cy@example.com"),
            attr("gen_ai.request.model", "gpt-4o"),
            attr("gen_ai.usage.input_tokens", 120),
            attr("gen_ai.usage.output_tokens", 80),
        ],
    }
    export = {
        "resourceSpans": [
            {"resource": {"attributes": [attr("service.name", "my-agent")]}, "scopeSpans": [{"spans": [span]}]}
        ]
    }
    post_json(client, auth, json.dumps(export).encode(), "traces")
    as_protobuf_json = json.loads(json.dumps(export))  # protobuf's JSON form carries ids as base64, OTLP's as hex
    for key in ("traceId", "spanId"):
        as_protobuf_json["resourceSpans"][0]["scopeSpans"][0]["spans"][0][key] = base64.b64encode(
            bytes.fromhex(span[key])
        ).decode()
    proto = json_format.ParseDict(as_protobuf_json, ExportTraceServiceRequest()).SerializeToString()
    response = client.post(
        "/v1/otlp/v1/traces", content=proto, headers={**auth, "Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 200
    with Session(engine) as session:
        records = session.exec(select(UsageRecord)).all()
    assert [(r.agent, r.model, r.input_tokens, r.output_tokens) for r in records] == [("my-agent", "gpt-4o", 120, 80)]


def test_metric_points_without_a_person_keep_their_usage_and_reject_the_rest(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    """Nothing vanishes: token and cost points naming nobody are kept as unattributed usage (not anyone's
    numbers); points that need a person (sessions, commits, pull requests) are refused and counted."""
    from sqlmodel import Session, select

    from storage.models import UnattributedUsage

    export = json.loads(sample("delta"))
    for rm in export["resourceMetrics"]:
        for sm in rm["scopeMetrics"]:
            for metric in sm["metrics"]:
                for point in metric["sum"]["dataPoints"]:
                    point["attributes"] = [a for a in point["attributes"] if a["key"] != "user.email"]
    response = post_json(client, auth, json.dumps(export).encode())
    assert int(response.json()["partialSuccess"]["rejectedDataPoints"]) >= 1
    assert row_counts(engine) == {"person": 0, "agent_run": 0, "usage_record": 0, "outcome": 0}
    with Session(engine) as session:
        kept = session.exec(select(UnattributedUsage)).all()
    assert kept and sum(row.input_tokens + row.output_tokens for row in kept) > 0


def test_bad_otlp_requests_get_their_status_and_write_nothing(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    before = row_counts(engine)
    body = sample("delta")
    assert (
        client.post("/v1/otlp/v1/metrics", content=body, headers={"Content-Type": "application/json"}).status_code
        == 401
    )
    assert (
        client.post("/v1/otlp/v1/metrics", content=body, headers={**auth, "Content-Type": "text/plain"}).status_code
        == 415
    )
    garbage = {**auth, "Content-Type": "application/x-protobuf"}
    assert client.post("/v1/otlp/v1/metrics", content=b"\xff\xff\xff", headers=garbage).status_code == 400
    assert (
        client.post(
            "/v1/otlp/v1/logs", content=b"{not json", headers={**auth, "Content-Type": "application/json"}
        ).status_code
        == 400
    )
    huge = b" " * (5 * 1024 * 1024 + 1)
    assert (
        client.post(
            "/v1/otlp/v1/metrics", content=huge, headers={**auth, "Content-Type": "application/json"}
        ).status_code
        == 413
    )
    bomb = gzip.compress(b" " * (6 * 1024 * 1024))
    headers = {**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert client.post("/v1/otlp/v1/metrics", content=bomb, headers=headers).status_code == 413
    assert row_counts(engine) == before


def test_claude_code_exports_over_real_http_land_once(engine: Engine, db_url: str) -> None:
    token = new_token(engine, "claude", "otlp", outcomes=True)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with running_server(make_app(engine, db_url)) as base, httpx.Client(base_url=base) as http:
        for name in ("cumulative_1", "cumulative_2", "cumulative_2"):
            assert http.post("/v1/otlp/v1/metrics", content=sample(name), headers=headers).status_code == 200
        logs = ExportLogsServiceRequest()
        proto_headers = {**headers, "Content-Type": "application/x-protobuf"}
        assert http.post("/v1/otlp/v1/logs", content=logs.SerializeToString(), headers=proto_headers).status_code == 200
    assert totals(engine) == AFTER_BOTH_CUMULATIVE


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["1764057600000000000", "input", "cacheRead", "a@b.c", "NaN", "1e999", "-5"])
)
attribute_lists = st.lists(
    st.fixed_dictionaries(
        {
            "key": st.sampled_from(
                [
                    "user.email",
                    "session.id",
                    "type",
                    "model",
                    "event.name",
                    "input_tokens",
                    "gen_ai.usage.input_tokens",
                    "x",
                ]
            ),
            "value": st.dictionaries(
                st.sampled_from(["stringValue", "intValue", "doubleValue", "boolValue"]), scalars, max_size=1
            ),
        }
    ),
    max_size=5,
)
points = st.fixed_dictionaries(
    {},
    optional={
        "attributes": attribute_lists,
        "startTimeUnixNano": scalars,
        "timeUnixNano": scalars,
        "asDouble": scalars,
        "asInt": scalars,
    },
)
metrics = st.fixed_dictionaries(
    {
        "name": st.sampled_from(
            [
                "claude_code.token.usage",
                "claude_code.cost.usage",
                "claude_code.commit.count",
                "claude_code.session.count",
                "other",
            ]
        )
    },
    optional={
        "sum": st.fixed_dictionaries(
            {}, optional={"aggregationTemporality": scalars, "dataPoints": st.lists(points | scalars, max_size=3)}
        )
    },
)
exports = st.fixed_dictionaries(
    {},
    optional={
        "resourceMetrics": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "resource": st.fixed_dictionaries({"attributes": attribute_lists}),
                    "scopeMetrics": st.lists(
                        st.fixed_dictionaries({"metrics": st.lists(metrics | scalars, max_size=3)}), max_size=2
                    ),
                },
            ),
            max_size=2,
        ),
        "resourceLogs": st.lists(
            st.fixed_dictionaries(
                {"scopeLogs": st.lists(st.fixed_dictionaries({"logRecords": st.lists(points, max_size=3)}), max_size=2)}
            ),
            max_size=2,
        ),
    },
)


@settings(max_examples=100, deadline=None)
@given(export=exports)
def test_any_otlp_json_maps_to_records_or_rejections_never_a_crash(export: dict[str, Any]) -> None:
    for signal in ("metrics", "logs", "traces"):
        telemetry = to_telemetry(signal, export)  # type: ignore[arg-type]
        assert telemetry.rejected >= 0
        for record in telemetry.usage:
            assert (
                min(record.input_tokens, record.output_tokens, record.cache_read_tokens, record.cache_write_tokens) >= 0
            )
            assert record.email and "@" in record.email


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=200))
def test_any_protobuf_body_decodes_or_is_a_clear_error(body: bytes) -> None:
    try:
        export = decode("metrics", body, protobuf=True)
    except OtlpError as error:
        assert "protobuf" in str(error)
        return
    assert isinstance(to_telemetry("metrics", export).usage, list)


def test_points_that_differ_in_any_attribute_are_separate_series_and_add_up(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    export = json.loads(sample("delta"))
    token_metric = next(
        m for m in export["resourceMetrics"][0]["scopeMetrics"][0]["metrics"] if m["name"] == "claude_code.token.usage"
    )
    extra = json.loads(json.dumps(token_metric["sum"]["dataPoints"]))
    for point in extra:  # the same session, model and type, from a sub-agent
        point["attributes"].append(attr("query_source", "subagent"))
    token_metric["sum"]["dataPoints"].extend(extra)
    body = json.dumps(export).encode()
    post_json(client, auth, body)
    post_json(client, auth, body)
    result = totals(engine)
    assert (result["input"], result["output"], result["cache_read"], result["cache_write"]) == (
        2400,
        6800,
        196000,
        11200,
    )
    assert result["cost"] == Decimal("0.1234")


def test_a_running_total_its_owner_grows_once_the_run_is_linked_to_a_merge_is_late_a_resend_is_not(
    client: TestClient, engine: Engine
) -> None:
    """Ana's own token (limited to her): her session's running totals were sent, then a colleague's merge
    linked the session; re-sending the same totals changes nothing, growing them marks them late (spend, never
    verified: docs/metrics.md "Late evidence"). An operator's token growing them would not."""
    own = {"Authorization": f"Bearer {new_token(engine, 'ana-otlp', 'otlp', person='ana@example.com')}"}
    post_json(client, own, sample("cumulative_1"))
    with Session(engine) as session:
        run = session.exec(select(AgentRun).where(AgentRun.external_id == SESSION)).one()
        merged = Outcome(run_id=None, person_id=run.person_id, kind="pr_merged", weight=Decimal(1),
                         occurred_at=run.started_at, evidence=True, counted=True)  # fmt: skip
        session.add(merged)
        session.flush()
        run_id = run.id or 0
        session.add(OutcomeLink(outcome_id=merged.id or 0, run_id=run_id, evidence="branch"))
        session.commit()

    def late_flags() -> list[bool]:
        with Session(engine) as session:
            return sorted(r.late for r in session.exec(select(UsageRecord).where(UsageRecord.run_id == run_id)))

    post_json(client, own, sample("cumulative_1"))  # the exporter's retry: the same totals
    assert late_flags() and not any(late_flags())
    post_json(client, own, sample("cumulative_2"))  # grown after the link
    assert any(late_flags())
