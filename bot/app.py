"""The app factory: one FastAPI process serves Slack's endpoints and the ingest API.

Settings, the engine and every client are built here once and passed down; handlers never build
their own.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from bot.config import Settings
from bot.health import Dependency, DependencyWatch, Unavailable, health
from bot.services import Services
from bot.sources.openai_usage import build_admin_client
from bot.summaries import build_summary_writer
from handlers.http.deps import install as install_http_errors
from handlers.http.github import router as github_router
from handlers.http.ingest import router as ingest_router
from handlers.slack.people import SlackPeople
from storage.db import make_engine, upgrade

log = logging.getLogger("tokenwise")


def build_services(settings: Settings, engine: Engine | None = None) -> Services:
    engine = engine or make_engine(settings.database_url)
    upgrade(engine)
    return Services(
        settings=settings,
        engine=engine,
        people=SlackPeople(settings.slack_user_cache_seconds),
        summary_writer=build_summary_writer(settings),
        openai_admin=build_admin_client(settings),
    )


def create_app(services: Services) -> FastAPI:
    api = FastAPI(title="Tokenwise", version="0.1.0", description="Usage ingest and Slack endpoints.")
    api.state.services = services

    @api.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        """Each dependency's state: 503 only while the database is down; 200 `"degraded"` while Slack or the
        model is (ingest still serves, so a load balancer keeps the replica)."""
        status, body = health(services.engine, services.health)
        headers = {"Retry-After": str(services.settings.ingest_retry_after_seconds)} if status == 503 else None
        return JSONResponse(body, status_code=status, headers=headers)

    api.include_router(ingest_router)
    api.include_router(github_router)
    install_http_errors(api)

    mount_slack(api, services)
    return api


def mount_slack(api: FastAPI, services: Services) -> None:
    """Slack's endpoints, when Slack is configured (the ingest API works without Slack)."""
    from handlers.slack.app import create_bolt_app, slack_configured
    from handlers.slack.transport import slack_router

    if not slack_configured(services.settings):
        log.info("Slack is not configured (SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN); serving without /slack/events.")
        return
    bolt = create_bolt_app(services)
    api.state.bolt = bolt
    api.include_router(slack_router(bolt))


def build_watch(services: Services) -> DependencyWatch:
    """The health watch of `tokenwise serve`: Slack when configured, the model when OPENAI_API_KEY is set."""
    from handlers.slack.app import slack_configured, slack_dependency

    settings = services.settings
    dependencies = []
    if slack_configured(settings):
        dependencies.append(slack_dependency(settings))
    if services.summary_writer is not None:
        dependencies.append(llm_dependency(services))
    return DependencyWatch(dependencies, settings.health_check_seconds)


def llm_dependency(services: Services) -> Dependency:
    """The model's server as the watch sees it: any HTTP answer to a model listing is "up" (a server that
    lists no models can still complete), 401 or 403 is the key rejected, no answer is "unreachable"."""
    import openai

    writer = services.summary_writer
    assert writer is not None
    client = writer.client.with_options(max_retries=0, timeout=5)

    def probe() -> None:
        try:
            client.models.list()
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise Unavailable("key rejected") from error
        except openai.APIStatusError:
            return
        except openai.APIError as error:
            raise Unavailable("unreachable") from error

    def warning(state: str) -> str:
        where = services.settings.openai_base_url or "the OpenAI API"
        if state == "key rejected":
            return f"The model at {where} rejected OPENAI_API_KEY; summaries use the template meanwhile."
        return f"The model at {where} (OPENAI_BASE_URL) is unreachable; summaries use the template meanwhile."

    return Dependency("llm", probe, warning)
