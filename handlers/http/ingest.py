"""HTTP ingest routes: authenticate, bound the body, parse, call one domain function, answer.

Status codes are part of the contract (docs/ingest.md): 401 missing or revoked token (or a token in the
query string), 403 a token whose kind does not open the route (handlers/http/scopes.py), 413 body over the byte
or item limit, 415 body that is not JSON (or, for OTLP, not JSON or protobuf), 422 invalid batch with every
problem listed (items naming someone other than a one-person token's person among them; for OTLP that is a
400), 429 over the token's request budget and 503 while the database does not answer (both with
Retry-After; nothing written), 200 with what was accepted.
"""

from __future__ import annotations

import logging
import zlib
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.otlp import OtlpError, Signal, decode, response_body, to_telemetry
from handlers.http.bodies import BodyTooLarge, bounded_body
from handlers.http.deps import Rejected, SenderDep, ServicesDep, failure
from handlers.http.scopes import (
    OtherPerson,
    Sender,
    attribute_raw,
    check_items,
    default_person,
    scope_telemetry,
)
from storage.ingest import (
    ingest_telemetry,
    write_atomically,
    write_batch,
)
from storage.ingest_schemas import (
    ITEM_MODELS,
    BatchInvalid,
    BatchKind,
    JsonRefused,
    batch_error,
    load_json,
    parse_valid_batch,
    validate_batch,
)

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["ingest"])


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it (or its gzip expansion) exceeds `limit` bytes."""
    too_big = Rejected(413, f"The body is over {limit} bytes; split it into smaller batches.")
    try:
        received = await bounded_body(request, limit)
    except BodyTooLarge:
        raise too_big from None
    if request.headers.get("content-encoding", "").lower() == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            expanded = inflater.decompress(received, limit + 1)
        except zlib.error as error:
            raise Rejected(400, f"The body is not valid gzip: {error}") from error
        if len(expanded) > limit:
            raise too_big
        return expanded
    return received


def _items_of(payload: Any, kind: BatchKind, max_items: int) -> list[Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get(kind), list):
        message = f'the body must be a JSON object with a "{kind}" list'
        raise Rejected(422, message, [batch_error(None, kind, message)])
    unknown = sorted(set(payload) - {kind})
    if unknown:
        errors = [batch_error(None, key, f'unknown top-level key; send only "{kind}"') for key in unknown]
        raise Rejected(422, "unknown keys", errors)
    items: list[Any] = payload[kind]
    if len(items) > max_items:
        raise Rejected(413, f"The batch has {len(items)} items; the limit is {max_items}. Split it.")
    return items


def _parse_batch(body: bytes, kind: BatchKind, max_items: int, sender: Sender) -> list[Any]:
    """The batch's items, parsed; for a token limited to one person, items naming nobody are that person's
    and items naming anyone else are refused (BatchInvalid)."""
    valid = parse_valid_batch(kind, body, max_items)
    if valid is None:
        try:
            payload = load_json(body)
        except JsonRefused as refused:
            raise Rejected(400 if refused.too_deep else 415, str(refused)) from refused
        items = attribute_raw(sender, _items_of(payload, kind, max_items))
        valid = validate_batch(kind, items, nul_possible=b"\\u0000" in body)
    check_items(sender, valid)
    return valid


async def _batch(request: Request, services: Services, sender: Sender, kind: BatchKind) -> Response:
    settings = services.settings
    try:
        media = _media_type(request)
        if media != "application/json" and not media.endswith("+json"):
            raise Rejected(415, "Send the batch as JSON with 'Content-Type: application/json'.")
        body = await _body(request, settings.ingest_max_bytes)
        parsed = await run_in_threadpool(_parse_batch, body, kind, settings.ingest_max_items, sender)
        result = await run_in_threadpool(
            write_batch, services.engine, kind, sender.id, parsed, settings.weight_for, settings.link_rules()
        )
    except BatchInvalid as invalid:
        return JSONResponse({"errors": invalid.errors}, status_code=422)
    except Rejected as rejected:
        return rejected.response()
    except Exception as error:
        return failure(error, services, f"Ingest of {kind}")
    return JSONResponse(result.as_json())


def _batch_doc(kind: BatchKind, summary: str) -> dict[str, Any]:
    schema = ITEM_MODELS[kind].model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    body = {"type": "object", "required": [kind], "properties": {kind: {"type": "array", "items": schema}}}
    return {
        "summary": summary,
        "openapi_extra": {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}},
        "responses": {
            200: {"description": '{"accepted": n, "duplicates": m}'},
            401: {"description": "Missing, unknown or revoked token, or a token in the query string"},
            403: {
                "description": "A token whose kind does not open this route (or, for outcomes, made without --outcomes)"
            },
            413: {"description": "Body over 5 MB or more than 10 000 items"},
            415: {"description": "Body is not JSON"},
            422: {"description": '{"errors": [{"index", "field", "message"}]}; nothing was written'},
            429: {"description": "Over the source's requests a minute; retry after Retry-After seconds"},
            503: {"description": "The database is not answering; nothing was written; retry after Retry-After"},
        },
    }


@router.post("/usage", **_batch_doc("records", "Ingest usage records"))
async def post_usage(request: Request, services: ServicesDep, sender: SenderDep) -> Response:
    return await _batch(request, services, sender, "records")


@router.post("/runs", **_batch_doc("runs", "Ingest agent runs"))
async def post_runs(request: Request, services: ServicesDep, sender: SenderDep) -> Response:
    return await _batch(request, services, sender, "runs")


@router.post("/outcomes", **_batch_doc("outcomes", "Ingest outcomes"))
async def post_outcomes(request: Request, services: ServicesDep, sender: SenderDep) -> Response:
    return await _batch(request, services, sender, "outcomes")


OTLP_TYPES: dict[str, Literal["json", "protobuf"]] = {
    "application/json": "json",
    "application/x-protobuf": "protobuf",
    "application/protobuf": "protobuf",
}


async def _otlp(request: Request, services: Services, sender: Sender, signal: Signal) -> Response:
    try:
        encoding = OTLP_TYPES.get(_media_type(request))
        if encoding is None:
            raise Rejected(415, "Send OTLP as application/json or application/x-protobuf.")
        body = await _body(request, services.settings.ingest_max_bytes)
        protobuf = encoding == "protobuf"
        try:
            telemetry = await run_in_threadpool(
                lambda: scope_telemetry(
                    sender, to_telemetry(signal, decode(signal, body, protobuf), default_person(sender))
                )
            )
        except (OtlpError, OtherPerson) as error:
            raise Rejected(400, str(error)) from error
        weight_for = services.settings.weight_for
        try:
            await run_in_threadpool(
                write_atomically, services.engine, lambda s: ingest_telemetry(s, sender.id, telemetry, weight_for)
            )
        except BatchInvalid as invalid:  # e.g. a slack.user_id that Slack did not bind to its user.email
            raise Rejected(400, invalid.errors[0]["message"], invalid.errors) from invalid
    except Rejected as rejected:
        return rejected.response()
    except Exception as error:
        return failure(error, services, f"OTLP {signal} export")
    content, media_type = response_body(signal, telemetry, protobuf)
    return Response(content=content, media_type=media_type)


@router.post("/otlp/v1/metrics", summary="OTLP/HTTP metrics (Claude Code's claude_code.* metrics)")
async def post_otlp_metrics(request: Request, services: ServicesDep, sender: SenderDep) -> Response:
    return await _otlp(request, services, sender, "metrics")


@router.post("/otlp/v1/logs", summary="OTLP/HTTP logs (api_request events, GenAI attributes)")
async def post_otlp_logs(request: Request, services: ServicesDep, sender: SenderDep) -> Response:
    return await _otlp(request, services, sender, "logs")


@router.post("/otlp/v1/traces", summary="OTLP/HTTP traces (spans with GenAI attributes)")
async def post_otlp_traces(request: Request, services: ServicesDep, sender: SenderDep) -> Response:
    return await _otlp(request, services, sender, "traces")
