"""What every edge needs, built once per process by the app factory (`bot.app.build_services`).

A leaf module: it imports no handler at load time (only for typing), so handlers and jobs can depend on
it without depending on the composition root.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from bot.config import Settings

if TYPE_CHECKING:
    from openai import OpenAI

    from bot.health import DependencyWatch
    from bot.summaries import SummaryWriter
    from handlers.http.rate_limit import SharedRateLimit, SourceRateLimit
    from handlers.slack.people import SlackPeople
    from handlers.slack.retries import Deliveries


def _new(module: str, name: str, *args: Any) -> Any:
    """An instance of an edge's class, imported only when a Services is made (this module stays a leaf)."""
    return getattr(importlib.import_module(module), name)(*args)


@dataclass
class Services:
    """What handlers need, built once per process. Slack's user cache (`people`, TTL one hour) is fresh per
    process; the memory of Slack's retries (`slack_deliveries`) and, on PostgreSQL, the ingest rate limit
    (`ingest_rate`) live in the database, shared by every replica, unless given."""

    settings: Settings
    engine: Engine
    people: SlackPeople = field(default_factory=lambda: _new("handlers.slack.people", "SlackPeople"))
    summary_writer: SummaryWriter | None = None  # the OpenAI-compatible client, when OPENAI_API_KEY is set
    openai_admin: OpenAI | None = None  # admin client when OPENAI_ADMIN_KEY is set (usage pulls)
    ingest_rate: SourceRateLimit | SharedRateLimit | None = None  # per-token budget; from settings when None
    slack_deliveries: Deliveries | None = None  # built from the engine when None (in the database, shared)
    health: DependencyWatch | None = None  # Slack and the model, re-checked in the background (`tokenwise serve`)

    def __post_init__(self) -> None:
        if self.ingest_rate is None:
            limit = self.settings.ingest_rate_limit
            self.ingest_rate = _new("handlers.http.rate_limit", "rate_limit_for", self.engine, limit)
        if self.slack_deliveries is None:
            seconds = importlib.import_module("handlers.slack.retries").RETRY_MEMORY_SECONDS
            self.slack_deliveries = _new("handlers.slack.retries", "Deliveries", seconds, time.monotonic, self.engine)

    def __deepcopy__(self, _memo: dict[int, object]) -> Services:
        """Shared, never copied: Bolt deep-copies the request context for lazy listeners."""
        return self
