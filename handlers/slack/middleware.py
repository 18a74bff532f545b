"""What every Slack listener shares: the services in Bolt's context, replies, loud lazy failures, and
the refusal of replayed requests.

Bolt runs lazy listeners after the ack and swallows their exceptions (one log line, no traceback, and
silence for the user). `apologetic` wraps each lazy listener so a failure is logged with its traceback
and the user gets a short apology instead, or, when the database did not answer (down, or a writer held
its lock too long), a sentence saying so. After the listener has answered, it records what the listener's
caller left for later (`handlers.slack.caller.record_afterwards`: looks, the time zone).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_bolt.kwargs_injection.args import Args
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from bot.log_safety import log_failure
from handlers.slack.before_ack import BEFORE_ACK
from handlers.slack.blocks import Message, apology, database_busy
from handlers.slack.caller import record_afterwards
from handlers.slack.retries import header
from storage.db import database_unreachable
from storage.slack_requests_seen import SeenRequests

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger("tokenwise.slack")


def provide_services(app: App, services: Services) -> None:
    """Make `services` injectable by name into every listener (HTTP and Socket Mode alike)."""

    def middleware(context: BoltContext, next: Callable[[], None]) -> None:
        context["services"] = services
        next()

    app.use(middleware)


def workspace_of(context: BoltContext) -> str:
    """The cache key of the workspace (or Enterprise Grid org) a request came from."""
    return context.enterprise_id or context.team_id or ""


def user_of(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    if isinstance(user, dict):
        return user.get("id")
    return body.get("user_id") or (body.get("event") or {}).get("user")


def tell(body: dict[str, Any], client: WebClient | None, message: Message) -> None:
    """Answer the user privately: through the request's response_url when it has one, else by DM."""
    response_url = body.get("response_url") or next(
        (r.get("response_url") for r in body.get("response_urls") or [] if r.get("response_url")), None
    )
    if response_url:
        WebhookClient(response_url, timeout=10).send(
            **message.as_kwargs(), response_type="ephemeral", replace_original=False
        )
        return
    user = user_of(body)
    if user and client is not None:
        client.chat_postMessage(channel=user, **message.as_kwargs())


class LazyWork:
    """How many lazy listeners are running: `wait_idle` waits until every one has finished, its answer sent
    and what it left for after the answer recorded (tests wait on it before reading the audit trail)."""

    def __init__(self) -> None:
        self._running = 0
        self._changed = threading.Condition()

    def __enter__(self) -> None:
        with self._changed:
            self._running += 1

    def __exit__(self, *_exc: object) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout: float = 15.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._running == 0, timeout):
                raise TimeoutError(f"{self._running} lazy listener(s) still running after {timeout}s")


LAZY_WORK = LazyWork()


def apologetic(func: Callable[..., None]) -> Callable[[Args], None]:
    """A lazy listener that logs failures with a traceback and tells the user (an apology, or that the
    database is not answering), then records what its caller left for after the answer."""
    names = list(inspect.signature(func).parameters)

    def run(args: Args) -> None:
        kwargs = {name: getattr(args, name) if hasattr(args, name) else args.context.get(name) for name in names}
        with LAZY_WORK:
            try:
                func(**kwargs)
            except Exception as error:
                log_failure(log, "Slack listener %s failed (user %s)", func.__name__, user_of(args.body), error=error)
                try:
                    tell(args.body, args.client, database_busy() if database_unreachable(error) else apology())
                except Exception as second:
                    log_failure(log, "Could not send the apology for %s", func.__name__, error=second)
            finally:
                record_afterwards()

    # Copy the name for Bolt's logs, but no __wrapped__: Bolt must inject `args`, not func's arguments.
    run.__name__, run.__qualname__, run.__doc__ = func.__name__, func.__qualname__, func.__doc__
    return run


def ack_only(ack: Callable[..., Any]) -> None:
    """The ack of a listener whose work all happens lazily: Slack's 3-second clock stops here."""
    ack()


def refuse_replays(app: App, seen: SeenRequests) -> SeenRequests:
    """Install, as a global middleware, the check that a signed request runs at most once.

    Bolt's own middlewares run first, so the signature is verified (a bad one is a 401) before this
    claims it in the shared table (`storage/slack_requests_seen.py`); a signature claimed before is a
    replay, answered with an empty 200 while nothing runs. Socket Mode requests carry no signature and
    come over our own authenticated connection, so they are not checked. If the database cannot take
    the claim the request goes on: everything it could change is in that same database. Nor does it wait
    more than `before_ack.DEADLINE_SECONDS` for it (this process remembers the signature meanwhile).
    """

    def skip_replays(req: BoltRequest, next: Callable[[], BoltResponse]) -> BoltResponse | None:
        signature, timestamp = header(req, "X-Slack-Signature"), header(req, "X-Slack-Request-Timestamp")
        if req.mode == "socket_mode" or not signature or not timestamp or not timestamp.strip().isdigit():
            return next()
        fresh = seen.first_here(signature)  # this process's memory first: it stands in when the database cannot
        if fresh:
            try:
                fresh = BEFORE_ACK.run(
                    lambda: seen.claim_shared(signature, int(timestamp)), True, "Recording a Slack request"
                )
            except Exception as error:
                log_failure(log, "Could not record a Slack request as seen; handling it anyway", error=error)
                return next()
        if not fresh:
            log.warning("Refused a replayed Slack request (signed at %s)", timestamp)
            return BoltResponse(status=200, body="")
        return next()

    app.use(skip_replays)
    return seen
