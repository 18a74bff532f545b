"""Every vendor admin-API pull, in one list: `tokenwise serve`/`tokenwise scheduler` schedule those whose key
is set (bot/jobs.py) and `tokenwise source status` shows them. A new pull adds its module's `PULL` here."""

from __future__ import annotations

from bot.config import Settings
from bot.sources import anthropic_cost, claude_code_analytics, copilot_metrics, cursor_admin, openai_usage
from bot.sources.admin_api import VendorPull


def all_pulls() -> tuple[VendorPull, ...]:
    return (
        openai_usage.PULL,
        claude_code_analytics.PULL,
        anthropic_cost.PULL,
        cursor_admin.PULL,
        copilot_metrics.PULL,
    )


def configured_pulls(settings: Settings) -> list[VendorPull]:
    """The pulls whose key is set."""
    return [pull for pull in all_pulls() if pull.configured(settings)]
