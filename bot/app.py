"""The app factory: one FastAPI process serves Slack's endpoints and the ingest API.

Settings, the engine and every client are built here once and passed down; handlers never build
their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from openai import OpenAI
from sqlalchemy import Engine, text

from bot.config import Settings
from bot.importers.openai_usage import build_admin_client
from bot.people import SlackPeople
from bot.summaries import SummaryWriter, build_summary_writer
from handlers.ingest import router as ingest_router
from storage.db import make_engine, upgrade

log = logging.getLogger("tokenwise")


@dataclass
class Services:
    """What handlers need, built once per process."""

    settings: Settings
    engine: Engine
    people: SlackPeople = field(default_factory=SlackPeople)  # Slack user -> email/tz cache
    summary_writer: SummaryWriter | None = None  # the OpenAI-compatible client, when OPENAI_API_KEY is set
    openai_admin: OpenAI | None = None  # admin client when OPENAI_ADMIN_KEY is set (usage pulls)

    def __deepcopy__(self, _memo: dict[int, object]) -> Services:
        """Shared, never copied: Bolt deep-copies the request context for lazy listeners."""
        return self


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
            return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "up"})

    api.include_router(ingest_router)

    mount_slack(api, services)
    return api


def mount_slack(api: FastAPI, services: Services) -> None:
    """Slack's endpoints, when Slack is configured (the ingest API works without Slack)."""
    from bot.slack_app import create_bolt_app, slack_configured
    from handlers.slack_http import slack_router

    if not slack_configured(services.settings):
        log.info("Slack is not configured (SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN); serving without /slack/events.")
        return
    bolt = create_bolt_app(services)
    api.state.bolt = bolt
    api.include_router(slack_router(bolt))
