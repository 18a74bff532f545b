"""HTTP ingest routes: authenticate, bound the body, parse, call one domain function, answer.

Status codes are part of the contract (docs/ingest.md): 401 missing or revoked token (or a token in the
query string), 403 a token whose kind does not open the route (handlers/scopes.py), 413 body over the byte
or item limit, 415 body that is not JSON (or, for OTLP, not JSON or protobuf), 422 invalid batch with every
problem listed (items naming someone other than a one-person token's person among them; for OTLP that is a
400), 429 over the token's request budget and 503 while the database does not answer (both with
Retry-After; nothing written), 200 with what was accepted.
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.log_safety import log_failure
from bot.otlp import OtlpError, Signal, decode, response_body, to_telemetry
from handlers.bodies import BodyTooLarge, bounded_body
from handlers.scopes import (
    OtherPerson,
    Sender,
    attribute_raw,
    check_items,
    default_person,
    route_refusal,
    scope_telemetry,
    token_in_query,
)
from storage.db import database_unreachable, session_scope
from storage.ingest import (
    ITEM_MODELS,
    BatchInvalid,
    BatchKind,
    BatchResult,
    batch_error,
    ingest_outcomes,
    ingest_runs,
    ingest_telemetry,
    parse_valid_batch,
    plan_usage,
    validate_batch,
    write_atomically,
    write_prepared,
)
from storage.models import Person
from storage.sources import authenticate, source_of_token

if TYPE_CHECKING:
    from bot.app import Services

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["ingest"])


class Rejected(Exception):
    """An answer other than 200, with the message a sender needs to fix the request."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or [batch_error(None, None, message)]
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        return JSONResponse({"errors": self.errors}, status_code=self.status, headers=headers | self.headers)


def _failure(error: Exception, services: Services, what: str) -> JSONResponse:
    """An unexpected failure; the transaction was rolled back, so the sender can simply retry.

    A database that does not answer is 503 with Retry-After (exporters back off and retry by
    themselves); anything else is logged with its traceback and answered 500. Logs at INFO and above
    name the error's type, never its message: database errors can quote rows (emails, notes).
    """
    if database_unreachable(error):
        log.warning(
            "%s: the database is unreachable (%s); answered 503, nothing was written", what, type(error).__name__
        )
        log.debug("Details of the unreachable database", exc_info=error)
        seconds = services.settings.ingest_retry_after_seconds
        message = f"The database is not answering; nothing was written. Retry the same batch in {seconds} s."
        return JSONResponse(
            {"errors": [batch_error(None, None, message)]}, status_code=503, headers={"Retry-After": str(seconds)}
        )
    log_failure(log, "%s failed; nothing was written", what, error=error)
    message = "Sorry, something went wrong on our side and nothing was written; please retry the batch."
    return JSONResponse({"errors": [batch_error(None, None, message)]}, status_code=500)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _sender(request: Request, services: Services, route: str) -> Sender:
    """The source behind the request's bearer token, if it may use this route: 401, 429 or 403 otherwise."""
    await _no_token_in_query(request, services)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Rejected(401, "Send 'Authorization: Bearer <token>'; create a token with `tokenwise source create`.")

    def lookup() -> Sender | None:
        with session_scope(services.engine) as session:
            source = authenticate(session, token.strip())
            if source is None:
                return None
            person = session.get(Person, source.person_id) if source.person_id is not None else None
            return Sender.of(source, person)

    sender = await run_in_threadpool(lookup)
    if sender is None:
        raise Rejected(401, "This token is unknown or revoked; create a new one with `tokenwise source create`.")
    wait = services.ingest_rate.allow(sender.id) if services.ingest_rate else 0
    if wait:
        per_minute = services.settings.ingest_rate_limit
        raise Rejected(
            429,
            f"This token is over its {per_minute} requests a minute; retry in {wait} s, or send bigger batches.",
            headers={"Retry-After": str(wait)},
        )
    refusal = route_refusal(sender, route)
    if refusal:
        raise Rejected(403, refusal)
    return sender


async def _no_token_in_query(request: Request, services: Services) -> None:
    """401 for a token in the URL, which proxies and access logs keep: it has leaked and must be revoked."""
    leaked = token_in_query(request.query_params.multi_items())
    if leaked is None:
        return

    def name() -> str | None:
        with session_scope(services.engine) as session:
            source = source_of_token(session, leaked)
            return source.name if source else None

    try:
        found = await run_in_threadpool(name)
    except Exception:  # the refusal matters more than the name in it
        found = None
    raise Rejected(
        401,
        "Send the token in the Authorization header, never in the URL; "
        f"revoke this one: `tokenwise source revoke {found or 'NAME'}`.",
    )


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
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise Rejected(415, f"The body is not JSON: {error}") from error
        items = attribute_raw(sender, _items_of(payload, kind, max_items))
        valid = validate_batch(kind, items, nul_possible=b"\\u0000" in body)
    check_items(sender, valid)
    return valid


BATCH_ROUTES: dict[str, str] = {"records": "/v1/usage", "runs": "/v1/runs", "outcomes": "/v1/outcomes"}


async def _batch(request: Request, kind: BatchKind) -> Response:
    services = _services(request)
    settings = services.settings
    try:
        sender = await _sender(request, services, BATCH_ROUTES[kind])
        source_id = sender.id
        media = _media_type(request)
        if media != "application/json" and not media.endswith("+json"):
            raise Rejected(415, "Send the batch as JSON with 'Content-Type: application/json'.")
        body = await _body(request, settings.ingest_max_bytes)
        parsed = await run_in_threadpool(_parse_batch, body, kind, settings.ingest_max_items, sender)

        def write(session: Any) -> BatchResult:
            if kind == "runs":
                return ingest_runs(session, source_id, parsed)
            return ingest_outcomes(session, source_id, parsed, settings.weight_for)

        if kind == "records":  # looked up before the write transaction (storage.ingest.write_prepared)
            result = await run_in_threadpool(
                write_prepared, services.engine, lambda session: plan_usage(session, source_id, parsed).write
            )
        else:
            result = await run_in_threadpool(write_atomically, services.engine, write)
    except BatchInvalid as invalid:
        return JSONResponse({"errors": invalid.errors}, status_code=422)
    except Rejected as rejected:
        return rejected.response()
    except Exception as error:
        return _failure(error, services, f"Ingest of {kind}")
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
async def post_usage(request: Request) -> Response:
    return await _batch(request, "records")


@router.post("/runs", **_batch_doc("runs", "Ingest agent runs"))
async def post_runs(request: Request) -> Response:
    return await _batch(request, "runs")


@router.post("/outcomes", **_batch_doc("outcomes", "Ingest outcomes"))
async def post_outcomes(request: Request) -> Response:
    return await _batch(request, "outcomes")


OTLP_TYPES: dict[str, Literal["json", "protobuf"]] = {
    "application/json": "json",
    "application/x-protobuf": "protobuf",
    "application/protobuf": "protobuf",
}


async def _otlp(request: Request, signal: Signal) -> Response:
    services = _services(request)
    try:
        sender = await _sender(request, services, f"/v1/otlp/v1/{signal}")
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
        return _failure(error, services, f"OTLP {signal} export")
    content, media_type = response_body(signal, telemetry, protobuf)
    return Response(content=content, media_type=media_type)


@router.post("/otlp/v1/metrics", summary="OTLP/HTTP metrics (Claude Code's claude_code.* metrics)")
async def post_otlp_metrics(request: Request) -> Response:
    return await _otlp(request, "metrics")


@router.post("/otlp/v1/logs", summary="OTLP/HTTP logs (api_request events, GenAI attributes)")
async def post_otlp_logs(request: Request) -> Response:
    return await _otlp(request, "logs")


@router.post("/otlp/v1/traces", summary="OTLP/HTTP traces (spans with GenAI attributes)")
async def post_otlp_traces(request: Request) -> Response:
    return await _otlp(request, "traces")
