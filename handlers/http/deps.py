"""FastAPI dependencies of the HTTP routes, stated in each route's signature: the services (`ServicesDep`)
and the source behind the request's bearer token (`SenderDep`, documented in OpenAPI as a bearer scheme).

A refusal is raised as `Rejected` and answered by the handler `install` adds: 401 for a missing, unknown
or revoked token or one in the query string, 429 over the token's budget, 403 for a route its kind does
not open, 503 while the database does not answer.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from bot.log_safety import log_failure
from bot.services import Services
from handlers.http.scopes import Sender, route_refusal, token_in_query
from storage.db import database_unreachable, session_scope
from storage.ingest_schemas import batch_error
from storage.models import Person
from storage.sources import authenticate, source_of_token

log = logging.getLogger("handlers.http.ingest")
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="IngestToken",
    description="An ingest token: a personal one from `/tokenwise connect`, or `tokenwise source create`.",
)


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
        self.prebuilt: JSONResponse | None = None

    @classmethod
    def answered(cls, response: JSONResponse) -> Rejected:
        """A refusal whose answer is already made (an unexpected failure's 500 or 503)."""
        rejected = cls(response.status_code, "answered")
        rejected.prebuilt = response
        return rejected

    def response(self) -> JSONResponse:
        if self.prebuilt is not None:
            return self.prebuilt
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        return JSONResponse({"errors": self.errors}, status_code=self.status, headers=headers | self.headers)


def failure(error: Exception, services: Services, what: str) -> JSONResponse:
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


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_sender(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Sender:
    """The source behind the request's bearer token, if it may use this route: 401, 429 or 403 otherwise."""
    try:
        return await _sender(request, services, credentials)
    except Rejected:
        raise
    except Exception as error:  # the database, mostly: answered as the route's own failures are
        raise Rejected.answered(failure(error, services, f"Authenticating {request.url.path}")) from error


SenderDep = Annotated[Sender, Depends(get_sender)]


async def _sender(request: Request, services: Services, credentials: HTTPAuthorizationCredentials | None) -> Sender:
    await _no_token_in_query(request, services)
    token = credentials.credentials if credentials and credentials.scheme.lower() == "bearer" else ""
    if not token.strip():
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
    # The budget may live in the database (PostgreSQL, shared by replicas): spent off the event loop.
    wait = await run_in_threadpool(services.ingest_rate.allow, sender.id) if services.ingest_rate else 0
    if wait:
        per_minute = services.settings.ingest_rate_limit
        raise Rejected(
            429,
            f"This token is over its {per_minute} requests a minute; retry in {wait} s, or send bigger batches.",
            headers={"Retry-After": str(wait)},
        )
    route = request.scope.get("route")
    refusal = route_refusal(sender, getattr(route, "path", request.url.path))  # "/v1/usage", behind any root path
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


def install(api: FastAPI) -> None:
    """Answer a `Rejected` raised anywhere in a route or its dependencies with its status and message."""

    async def answer(_request: Request, rejected: Exception) -> JSONResponse:
        assert isinstance(rejected, Rejected)
        return rejected.response()

    api.add_exception_handler(Rejected, answer)
