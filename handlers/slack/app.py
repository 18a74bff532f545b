"""The Bolt app factory and the Slack Web API clients, configured once.

Mode: `process_before_response=True`. Every listener's ack function only acks (and, for help and
modal validation, computes a pure answer), so Slack's HTTP request is answered as soon as it is
verified; the work runs in lazy listeners on Bolt's thread pool and answers through respond(),
views.* or chat.*. The same app serves HTTP (`/slack/events`) and Socket Mode.

One workspace: SLACK_BOT_TOKEN. Many workspaces or an Enterprise Grid org: SLACK_CLIENT_ID and
SLACK_CLIENT_SECRET turn on the OAuth install flow; installations and OAuth states live in our
database (slack_sdk's SQLAlchemy stores; the tables come from our migrations) and tokens rotate.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from slack_sdk.oauth.token_rotation import TokenRotator
from sqlalchemy import Engine

from bot.config import Settings
from bot.health import UNKNOWN, UP, Dependency, Unavailable
from handlers.slack.client import build_slack_client
from storage.slack_tables import BOTS_TABLE, INSTALLATIONS_TABLE, OAUTH_STATES_TABLE

if TYPE_CHECKING:
    from collections.abc import Callable

    from bot.services import Services

log = logging.getLogger("tokenwise.slack")

BOT_SCOPES = (
    "commands",
    "chat:write",
    "im:write",
    "users:read",
    "users:read.email",
    "usergroups:read",
    "files:write",
    "channels:history",  # the digest's crash recovery looks for its own earlier post (docs/digests.md)
    "groups:history",
)
EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
ROTATE_MINUTES_BEFORE_EXPIRY = 120
OAUTH_STATE_SECONDS = 600


PROBE_TIMEOUT_SECONDS = 5
REJECTED = "token rejected"
UNREACHABLE = "unreachable"


class _WithoutClientTokenWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment itself and, given our client as well (built with that
    same token, SLACK_API_URL and our retry policy), warns on every start that the token "will be unused"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


logging.getLogger("slack_bolt.App").addFilter(_WithoutClientTokenWarning())


class SlackNotConfigured(RuntimeError):
    """Slack settings are missing; the message names the environment variables to set."""


def slack_configured(settings: Settings) -> bool:
    return bool(settings.slack_signing_secret and (settings.slack_bot_token or settings.slack_oauth_enabled))


def installation_store(settings: Settings, engine: Engine) -> SQLAlchemyInstallationStore:
    return SQLAlchemyInstallationStore(
        client_id=settings.slack_client_id or "",
        engine=engine,
        bots_table_name=BOTS_TABLE,
        installations_table_name=INSTALLATIONS_TABLE,
        logger=log,
    )


def oauth_state_store(engine: Engine) -> SQLAlchemyOAuthStateStore:
    return SQLAlchemyOAuthStateStore(
        expiration_seconds=OAUTH_STATE_SECONDS, engine=engine, table_name=OAUTH_STATES_TABLE, logger=log
    )


def create_bolt_app(services: Services) -> App:
    """The Slack app with every listener registered; raises SlackNotConfigured without its settings."""
    from handlers.slack import actions, retries, slash, views
    from handlers.slack import home as events
    from handlers.slack.before_ack import InstallationsInTime
    from handlers.slack.middleware import provide_services, refuse_replays
    from storage.slack_requests_seen import SeenRequests

    settings = services.settings
    if not settings.slack_signing_secret:
        raise SlackNotConfigured("Set SLACK_SIGNING_SECRET (Basic Information > App Credentials in Slack).")
    if settings.slack_oauth_enabled:
        # Bolt reads the installation before every ack: each read held to a deadline (before_ack.py).
        store = InstallationsInTime(installation_store(settings, services.engine))
        app = App(
            signing_secret=settings.slack_signing_secret,
            client=build_slack_client(None, settings.slack_api_url),
            process_before_response=True,
            before_authorize=wait_for_slack(services),
            installation_store=store,  # given here too so token rotation uses our client (SLACK_API_URL)
            oauth_settings=OAuthSettings(
                client_id=settings.slack_client_id,
                client_secret=settings.slack_client_secret,
                scopes=list(BOT_SCOPES),
                install_path=INSTALL_PATH,
                redirect_uri_path=REDIRECT_PATH,
                installation_store=store,
                state_store=oauth_state_store(services.engine),
                token_rotation_expiration_minutes=ROTATE_MINUTES_BEFORE_EXPIRY,
                logger=log,
            ),
        )
    elif settings.slack_bot_token:
        # No auth.test here: Slack unreachable or the token rejected must not stop ingest from serving.
        # The health watch checks the token in the background (`slack_dependency`), and `wait_for_slack`
        # answers Slack's requests with a sentence until it passes.
        app = App(
            signing_secret=settings.slack_signing_secret,
            client=build_slack_client(settings.slack_bot_token, settings.slack_api_url),
            process_before_response=True,
            token_verification_enabled=False,
            before_authorize=wait_for_slack(services),
        )
    else:
        raise SlackNotConfigured(
            "Set SLACK_BOT_TOKEN (one workspace), or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (OAuth install)."
        )
    provide_services(app, services)
    retries.register(app, services.slack_deliveries)  # a repeated Slack retry: skipped (and counted) first
    refuse_replays(app, SeenRequests(services.engine))  # then any signature already seen, on any replica
    for module in (slash, actions, views, events):
        module.register(app)
    return app


def slack_dependency(settings: Settings) -> Dependency:
    """Slack as the health watch sees it: auth.test with the bot token (one workspace), else api.test
    (OAuth mode has no token of its own), one attempt with a short timeout."""
    token = None if settings.slack_oauth_enabled else settings.slack_bot_token
    client = build_slack_client(token, settings.slack_api_url, PROBE_TIMEOUT_SECONDS, retry=False)

    def probe() -> None:
        try:
            client.auth_test() if token else client.api_test()
        except SlackApiError as error:
            raise Unavailable(REJECTED if token else UNREACHABLE) from error
        except Exception as error:
            raise Unavailable(UNREACHABLE) from error

    def warning(state: str) -> str:
        if state == REJECTED:
            return "Slack rejected SLACK_BOT_TOKEN; ingest and OTLP serve, Slack's requests wait for a valid token."
        return (
            f"Slack is unreachable at {settings.slack_api_url} (SLACK_API_URL), so SLACK_BOT_TOKEN is unchecked; "
            "ingest and OTLP serve, Slack answers once it is reachable."
        )

    return Dependency("slack", probe, warning)


def wait_for_slack(
    services: Services,
) -> Callable[[BoltRequest, BoltResponse, Callable[[], BoltResponse]], BoltResponse]:
    """Before authorization: while the health watch knows Slack to be down (unreachable, or the token
    rejected), a slash command is answered with a sentence in its ack (which reaches the person without
    Slack's Web API) and anything else with 503, which Slack retries. Without a watch, or before its first
    check, requests go on as usual."""

    def middleware(req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:
        watch = services.health
        state = watch.state("slack") if watch is not None else None
        if state in (None, UP, UNKNOWN) or req.body.get("type") == "url_verification":
            return next()
        if req.body.get("command"):
            return BoltResponse(status=200, body=f"Tokenwise cannot use Slack right now ({state}); try again soon.")
        return BoltResponse(status=503, body="", headers={"Retry-After": "60"})

    return middleware


class NotInstalled(LookupError):
    """Tokenwise is not installed in that workspace (OAuth mode)."""


def slack_client_for(services: Services, *, team_id: str | None = None, enterprise_id: str | None = None) -> WebClient:
    """A client for one workspace outside any Slack request (the scheduler's digests).

    In OAuth mode the installation's bot token is rotated first when it expires within two hours, and
    the new tokens are saved, so a weekly job never posts with an expired token.
    """
    settings = services.settings
    if not settings.slack_oauth_enabled:
        if not settings.slack_bot_token:
            raise SlackNotConfigured("Set SLACK_BOT_TOKEN to post to Slack.")
        return build_slack_client(settings.slack_bot_token, settings.slack_api_url)
    store = installation_store(settings, services.engine)
    installation = store.find_installation(enterprise_id=enterprise_id, team_id=team_id)
    if installation is None or not installation.bot_token:
        raise NotInstalled(f"Tokenwise is not installed in workspace {team_id or enterprise_id}.")
    if installation.bot_refresh_token:
        rotator = TokenRotator(
            client_id=settings.slack_client_id or "",
            client_secret=settings.slack_client_secret or "",
            client=build_slack_client(None, settings.slack_api_url),
        )
        rotated = rotator.perform_token_rotation(
            installation=installation, minutes_before_expiration=ROTATE_MINUTES_BEFORE_EXPIRY
        )
        if rotated is not None:
            store.save(rotated)
            installation = rotated
    return build_slack_client(installation.bot_token, settings.slack_api_url)
