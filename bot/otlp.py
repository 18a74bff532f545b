"""OTLP/HTTP exports (JSON or protobuf) turned into usage, runs and outcomes.

Claude Code reports `claude_code.*` metrics and, with its log exporter on, an `api_request` event per API
call; other tools use the GenAI semantic conventions (`gen_ai.usage.*`) on spans and log records. Events
and metrics of one session repeat the same tokens: storage/ingest.py (settle_sessions) counts the session
from its events, the more precise of the two.
Prompt and completion text may ride along in log records: nothing here reads a body or an attribute it
does not map, so none of it is ever stored.

Re-sent exports must not double count. A cumulative sum is kept as one running total per series
(merged with max, so the latest total wins whatever the order); a delta point is keyed by its interval;
an event by its identity. Counts of commits and pull requests become one outcome per unit, keyed by the
series and the unit's number, so a running total of 4 after 2 adds exactly 2.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from bot.pricing import price
from storage.ingest_schemas import JsonRefused, SeenOutcome, SeenRun, SeenUsage, Telemetry, load_json

Signal = Literal["metrics", "logs", "traces"]
DELTA, CUMULATIVE = 1, 2
LATEST_NANOS = 4_102_444_800 * 10**9  # 2100-01-01: later timestamps are broken clocks, not data
MAX_UNITS_PER_POINT = 1000  # a commit counter beyond this is a broken exporter, not a day's work

TOKEN_TYPES = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cacheRead": "cache_read_tokens",
    "cacheCreation": "cache_write_tokens",
}
# Token attributes of one event, by column: Claude Code's `api_request` log event, and the GenAI conventions.
CLAUDE_CODE_TOKENS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_creation_tokens",
}
GENAI_TOKENS = {
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "cache_read_tokens": "gen_ai.usage.cache_read.input_tokens",
    "cache_write_tokens": "gen_ai.usage.cache_creation.input_tokens",
}
OUTCOME_METRICS = {"claude_code.commit.count": "commit", "claude_code.pull_request.count": "pr_opened"}

_REQUESTS: dict[str, type[Message]] = {
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "traces": trace_service_pb2.ExportTraceServiceRequest,
}
_RESPONSES: dict[str, type[Message]] = {
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
    "traces": trace_service_pb2.ExportTraceServiceResponse,
}
_REJECTED_FIELD = {"metrics": "rejectedDataPoints", "logs": "rejectedLogRecords", "traces": "rejectedSpans"}


class OtlpError(ValueError):
    """The body is not an OTLP export this endpoint understands."""


def decode(signal: Signal, body: bytes, protobuf: bool) -> dict[str, Any]:
    """The export as OTLP JSON (the protobuf form is converted, ids as hex like the JSON encoding)."""
    if protobuf:
        try:
            message = _REQUESTS[signal].FromString(body)
        except (DecodeError, ValueError) as error:
            raise OtlpError(f"not an OTLP {signal} protobuf export: {error}") from error
        export: dict[str, Any] = json_format.MessageToDict(message, use_integers_for_enums=True)
        _ids_to_hex(export)
        return export
    try:
        export = load_json(body)
    except JsonRefused as refused:
        raise OtlpError(str(refused)) from refused
    if not isinstance(export, dict):
        raise OtlpError("an OTLP export is a JSON object")
    return export


def response_body(signal: Signal, telemetry: Telemetry, protobuf: bool) -> tuple[bytes, str]:
    """An Export*ServiceResponse, with partialSuccess when some points were rejected."""
    payload: dict[str, Any] = {}
    if telemetry.rejected:
        payload["partialSuccess"] = {
            _REJECTED_FIELD[signal]: str(telemetry.rejected),
            "errorMessage": "; ".join(sorted(set(telemetry.problems)))[:1000],
        }
    if protobuf:
        message = json_format.ParseDict(payload, _RESPONSES[signal]())
        return message.SerializeToString(), "application/x-protobuf"
    return json.dumps(payload).encode(), "application/json"


def _ids_to_hex(export: dict[str, Any]) -> None:
    for resource, scopes, items in (
        ("resourceSpans", "scopeSpans", "spans"),
        ("resourceLogs", "scopeLogs", "logRecords"),
    ):
        for block in export.get(resource, []):
            for scope in block.get(scopes, []):
                for item in scope.get(items, []):
                    for key in ("traceId", "spanId"):
                        if key in item:
                            with contextlib.suppress(binascii.Error, ValueError):
                                item[key] = base64.b64decode(item[key]).hex()


def attributes(items: Any) -> dict[str, Any]:
    """OTLP KeyValue list -> plain dict (scalars only; arrays and maps are not needed)."""
    out: dict[str, Any] = {}
    if not isinstance(items, list):
        return out
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            continue
        value = item.get("value") or {}
        for kind in ("stringValue", "intValue", "doubleValue", "boolValue"):
            if kind in value:
                scalar = value[kind]
                # PostgreSQL text cannot hold NUL: drop it, so both databases store the same thing
                out[item["key"]] = scalar.replace("\x00", "") if isinstance(scalar, str) else scalar
                break
    return out


def _nanos(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        nanos = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return nanos if 0 < nanos < LATEST_NANOS else None


def _time(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos // 10**9, UTC).replace(microsecond=(nanos // 1000) % 1_000_000)


def _number(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() and number >= 0 else None


def _count(value: Any) -> int | None:
    number = _number(value)
    if number is None or number > 10**15:
        return None
    return int(number)


def _key(*parts: object) -> str:
    text = ":".join(str(p) for p in parts)
    if len(text) <= 300:
        return text
    return f"{parts[0]}:sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def _agent(resource: Mapping[str, Any]) -> str:
    name = resource.get("service.name")
    return str(name)[:64] if name else "otlp"


def _with_person(attrs: dict[str, Any], person: str | None) -> dict[str, Any]:
    """`attrs`, with `user.email` set to `person` when it names nobody (a token limited to one person)."""
    if person and not str(attrs.get("user.email") or "").strip():
        attrs["user.email"] = person
    return attrs


def _person(attrs: Mapping[str, Any]) -> str | None:
    email = attrs.get("user.email")
    return str(email).strip().lower() if isinstance(email, str) and "@" in email else None


def _points(metric: Mapping[str, Any]) -> Iterator[tuple[int | None, Mapping[str, Any]]]:
    for kind in ("sum", "gauge"):
        body = metric.get(kind)
        if isinstance(body, dict):
            temporality = body.get("aggregationTemporality") if kind == "sum" else DELTA
            for point in body.get("dataPoints") or []:
                if isinstance(point, dict):
                    yield temporality, point


def from_metrics(export: Mapping[str, Any], person: str | None = None) -> Telemetry:
    """Claude Code's metrics: token and cost usage per session and model, sessions as runs, commits and PRs."""
    telemetry = Telemetry()
    usage: dict[str, SeenUsage] = {}
    points: list[tuple[str, str, Any, Mapping[str, Any], dict[str, Any]]] = []
    for resource_metrics in _list(export.get("resourceMetrics")):
        resource = attributes((resource_metrics.get("resource") or {}).get("attributes"))
        agent = _agent(resource)
        for scope in _list(resource_metrics.get("scopeMetrics")):
            for metric in _list(scope.get("metrics")):
                name = metric.get("name")
                if not isinstance(name, str) or not name.startswith("claude_code."):
                    continue
                for temporality, point in _points(metric):
                    attrs = _with_person({**resource, **attributes(point.get("attributes"))}, person)
                    points.append((agent, name, temporality, point, attrs))
    starts = _interval_starts(points)
    for agent, name, temporality, point, attrs in points:
        problem = _map_point(telemetry, usage, agent, name, temporality, point, attrs, starts)
        if problem:
            telemetry.rejected += 1
            telemetry.problems.append(problem)
    telemetry.usage.extend(usage.values())
    return telemetry


def _identity(attrs: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Another identity a point carries when it names no email: Claude Code's account uuid, else its user
    id. Usage under it is kept as unattributed until an operator links it (`tokenwise people link`)."""
    for attribute, kind in (("user.account_uuid", "account-uuid"), ("user.id", "user-id")):
        value = attrs.get(attribute)
        if isinstance(value, str) and value.strip():
            return kind, value.strip()[:200]
    return None, None


def _series_name(attrs: Mapping[str, Any]) -> str:
    """The session a point belongs to, else the person (or the identity) it names."""
    session_id = str(attrs.get("session.id") or "")
    return session_id or f"user:{_person(attrs) or ':'.join(str(part) for part in _identity(attrs))}"


def _model(attrs: Mapping[str, Any]) -> str:
    """The model, named as the events name it: Claude Code's metrics add a context-window suffix (`[1m]`)."""
    name = str(attrs.get("model") or "unknown").strip()
    return re.sub(r"\[\d+[km]\]$", "", name)[:120] or "unknown"


def _interval(temporality: Any, point: Mapping[str, Any], attrs: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes a usage record: the series (session, model and every attribute but `type`) and, for delta
    points, the collection they belong to. Not the start time: SDKs give each attribute set (input, output,
    cache, cost) a start of its own, microseconds apart, and they are one session's usage."""
    model = _model(attrs)
    series = _series_name(attrs)
    collected = _nanos(point.get("timeUnixNano")) if temporality == DELTA else None
    return (series, model, _series(attrs), temporality, collected)


def _interval_starts(
    points: list[tuple[str, str, Any, Mapping[str, Any], dict[str, Any]]],
) -> dict[tuple[Any, ...], int]:
    """The earliest start time of each usage interval in an export: the start all its points are keyed by,
    so a session's token and cost points make one record (the same in every export of a cumulative series)."""
    starts: dict[tuple[Any, ...], int] = {}
    for _agent, name, temporality, point, attrs in points:
        if name not in {"claude_code.token.usage", "claude_code.cost.usage"}:
            continue
        start = _nanos(point.get("startTimeUnixNano")) or _nanos(point.get("timeUnixNano"))
        if start is not None:
            interval = _interval(temporality, point, attrs)
            starts[interval] = min(start, starts.get(interval, start))
    return starts


def _map_point(
    telemetry: Telemetry,
    usage: dict[str, SeenUsage],
    agent: str,
    name: str,
    temporality: Any,
    point: Mapping[str, Any],
    attrs: Mapping[str, Any],
    starts: Mapping[tuple[Any, ...], int] | None = None,
) -> str | None:
    known = name in {"claude_code.token.usage", "claude_code.cost.usage", "claude_code.session.count"}
    if not known and name not in OUTCOME_METRICS:
        return None  # lines of code, active time, decisions: volume, not outcomes; accepted and not stored
    email = _person(attrs)
    usage_point = name in {"claude_code.token.usage", "claude_code.cost.usage"}
    if email is None and not usage_point:  # usage with no person is kept as unattributed; the rest needs one
        return f"{name}: no user.email attribute"
    if temporality not in (DELTA, CUMULATIVE):
        return f"{name}: unknown aggregationTemporality"
    time = _nanos(point.get("timeUnixNano"))
    start = _nanos(point.get("startTimeUnixNano")) or time
    if time is None or start is None:
        return f"{name}: a data point needs timeUnixNano"
    value = point.get("asDouble", point.get("asInt"))
    session_id = str(attrs.get("session.id") or "") or None
    series = _series_name(attrs)
    if session_id and email:
        telemetry.runs.append(SeenRun(external_id=session_id, email=email, agent=agent, started_at=_time(start)))
    if name == "claude_code.session.count":
        return None
    if name in OUTCOME_METRICS:
        units = _count(value)
        if units is None:
            return f"{name}: value is not a non-negative number"
        kind = OUTCOME_METRICS[name]
        window = (start, _series(attrs)) if temporality == CUMULATIVE else (start, time, _series(attrs))
        for unit in range(1, min(units, MAX_UNITS_PER_POINT) + 1):
            telemetry.outcomes.append(
                SeenOutcome(
                    external_id=_key("otlp", series, kind, *window, unit),
                    email=email,
                    run_external_id=session_id,
                    kind=kind,
                    occurred_at=_time(time),
                )
            )
        return None
    model = _model(attrs)
    start = (starts or {}).get(_interval(temporality, point, attrs), start)
    if temporality == CUMULATIVE:
        key, when = _key("otlp:c", series, model, start, _series(attrs)), _time(start)
    else:
        key, when = _key("otlp:d", series, model, start, time, _series(attrs)), _time(time)
    identity_kind, identity_value = (None, None) if email else _identity(attrs)
    record = usage.setdefault(
        key,
        SeenUsage(
            dedupe_key=key,
            email=email,
            occurred_at=when,
            agent=agent,
            model=model,
            run_external_id=session_id,
            identity_kind=identity_kind,
            identity_value=identity_value,
        ),
    )
    if name == "claude_code.cost.usage":
        cost = _number(value)
        if cost is None:
            return f"{name}: value is not a non-negative number"
        record.cost_usd = max(record.cost_usd or cost, cost)
        return None
    column = TOKEN_TYPES.get(str(attrs.get("type")))
    tokens = _count(value)
    if column is None or tokens is None:
        return f"{name}: needs a type of {', '.join(TOKEN_TYPES)} and a non-negative value"
    setattr(record, column, max(getattr(record, column), tokens))
    return None


def _series(attrs: Mapping[str, Any]) -> str:
    """A short id of a point's attribute set: points that differ in any attribute are separate series.

    `type` is left out because it only says which token column a value fills, so a session's input,
    output and cache points (and its cost point) share one usage record.
    """
    blob = json.dumps(sorted((k, str(v)) for k, v in attrs.items() if k != "type"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _event_usage(attrs: Mapping[str, Any], agent: str, when: int, identity: str) -> tuple[SeenUsage | None, str | None]:
    """A usage record from one event: Claude Code's `api_request` log event (one API call), or GenAI
    semantic-convention attributes on a span or log record; (None, None) when it reports no usage."""
    genai = "gen_ai.usage.input_tokens" in attrs or "gen_ai.usage.output_tokens" in attrs
    names = GENAI_TOKENS if genai else CLAUDE_CODE_TOKENS if attrs.get("event.name") == "api_request" else None
    if names is None:
        return None, None
    counts = {column: _count(attrs.get(name, 0)) for column, name in names.items()}
    if any(v is None for v in counts.values()):
        return None, "token counts must be non-negative integers"
    if genai:  # GenAI conventions count cached tokens inside input_tokens; Tokenwise keeps them beside it.
        cached = (counts["cache_read_tokens"] or 0) + (counts["cache_write_tokens"] or 0)
        counts["input_tokens"] = max((counts["input_tokens"] or 0) - cached, 0)
        model = str(attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or "unknown")[:120]
    else:
        model = _model(attrs)
    tokens = {column: value or 0 for column, value in counts.items()}
    cost, priced = _number(attrs["cost_usd"]) if "cost_usd" in attrs else None, False
    if cost is None:
        cost = price(model, *tokens.values())
        priced = cost is not None
    email = _person(attrs)
    identity_kind, identity_value = (None, None) if email else _identity(attrs)
    record = SeenUsage(
        dedupe_key=_key("otlp:e", identity),
        email=email,
        occurred_at=_time(when),
        agent=agent,
        model=model,
        run_external_id=str(attrs.get("session.id") or "")[:200] or None,
        cost_usd=cost,
        cost_source="priced" if priced else None,
        identity_kind=identity_kind,
        identity_value=identity_value,
        input_tokens=tokens["input_tokens"],
        output_tokens=tokens["output_tokens"],
        cache_read_tokens=tokens["cache_read_tokens"],
        cache_write_tokens=tokens["cache_write_tokens"],
    )
    return record, None


def _event_identity(attrs: Mapping[str, Any], when: int) -> str:
    """A stable id for an event that has none: its time and the attributes we map, hashed."""
    picked = {k: attrs[k] for k in sorted(attrs) if not k.startswith(("prompt", "gen_ai.prompt", "gen_ai.completion"))}
    blob = json.dumps([when, picked], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def from_logs(export: Mapping[str, Any], person: str | None = None) -> Telemetry:
    """Usage from log records with GenAI attributes; bodies are never read."""
    telemetry = Telemetry()
    for resource_logs in _list(export.get("resourceLogs")):
        resource = attributes((resource_logs.get("resource") or {}).get("attributes"))
        agent = _agent(resource)
        for scope in _list(resource_logs.get("scopeLogs")):
            for record in _list(scope.get("logRecords")):
                attrs = _with_person({**resource, **attributes(record.get("attributes"))}, person)
                when = _nanos(record.get("timeUnixNano")) or _nanos(record.get("observedTimeUnixNano"))
                if when is None:
                    stamp = attrs.get("event.timestamp")
                    when = _iso_nanos(stamp) if isinstance(stamp, str) else None
                if when is None:
                    usage = "gen_ai.usage.input_tokens" in attrs or "gen_ai.usage.output_tokens" in attrs
                    if usage or attrs.get("event.name") == "api_request":
                        telemetry.rejected += 1
                        telemetry.problems.append("log record without a time")
                    continue
                _add_event(telemetry, attrs, agent, when, _event_identity(attrs, when))
    return telemetry


def from_traces(export: Mapping[str, Any], person: str | None = None) -> Telemetry:
    """Usage from spans carrying GenAI semantic-convention attributes, keyed by trace and span id."""
    telemetry = Telemetry()
    for resource_spans in _list(export.get("resourceSpans")):
        resource = attributes((resource_spans.get("resource") or {}).get("attributes"))
        agent = _agent(resource)
        for scope in _list(resource_spans.get("scopeSpans")):
            for span in _list(scope.get("spans")):
                attrs = _with_person({**resource, **attributes(span.get("attributes"))}, person)
                when = _nanos(span.get("endTimeUnixNano")) or _nanos(span.get("startTimeUnixNano"))
                if when is None:
                    continue
                identity = f"{span.get('traceId', '')}:{span.get('spanId', '')}"
                if identity == ":":
                    identity = _event_identity(attrs, when)
                _add_event(telemetry, attrs, agent, when, identity)
    return telemetry


def _add_event(telemetry: Telemetry, attrs: Mapping[str, Any], agent: str, when: int, identity: str) -> None:
    record, problem = _event_usage(attrs, agent, when, identity)
    if problem:
        telemetry.rejected += 1
        telemetry.problems.append(problem)
    if record is None:
        return
    telemetry.usage.append(record)
    if record.run_external_id and record.email:
        telemetry.runs.append(
            SeenRun(external_id=record.run_external_id, email=record.email, agent=agent, started_at=record.occurred_at)
        )


def _iso_nanos(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _nanos(int(moment.timestamp()) * 10**9 + moment.microsecond * 1000)


def to_telemetry(signal: Signal, export: Mapping[str, Any], person: str | None = None) -> Telemetry:
    """What an export reports. `person`: the email points that name nobody (no `user.email`) are counted for,
    when the token is limited to one person; points naming someone else keep their `user.email`."""
    if signal == "metrics":
        return from_metrics(export, person)
    if signal == "logs":
        return from_logs(export, person)
    return from_traces(export, person)
