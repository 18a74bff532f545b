"""The app factory: one FastAPI process serves Slack's endpoints and the ingest API.

Settings, the engine and every client are built here once and passed down; handlers never build
their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from openai import OpenAI
from sqlalchemy import Engine, text

from bot.config import Settings
from bot.importers.openai_usage import build_admin_client
from handlers.ingest import router as ingest_router
from storage.db import make_engine, upgrade


@dataclass
class Services:
    """What handlers need, built once per process."""

    settings: Settings
    engine: Engine
    openai_admin: OpenAI | None = None  # admin client when OPENAI_ADMIN_KEY is set (usage pulls)


def build_services(settings: Settings, engine: Engine | None = None) -> Services:
    engine = engine or make_engine(settings.database_url)
    upgrade(engine)
    return Services(settings=settings, engine=engine, openai_admin=build_admin_client(settings))


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

    return api
