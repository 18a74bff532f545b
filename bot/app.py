"""The app factory: one FastAPI process serves Slack's endpoints and the ingest API.

Settings, the engine and every client are built here once and passed down; handlers never build
their own.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from bot.config import Settings
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
        """Whether the database answers."""
        try:
            with services.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:
            retry_after = str(services.settings.ingest_retry_after_seconds)
            body = {"status": "unavailable", "database": "down"}
            return JSONResponse(body, status_code=503, headers={"Retry-After": retry_after})
        return JSONResponse({"status": "ok", "database": "up"})

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
