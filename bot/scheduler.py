"""Background jobs in the `tokenwise serve` process (APScheduler 3.x).

`build_scheduler` adds each job whose settings are present; add new jobs here the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from bot.app import Services
from bot.digest_scheduler import add_service_jobs
from bot.importers.openai_usage import pull_recent_usage


def build_scheduler(services: Services) -> BackgroundScheduler:
    """A scheduler (not started) with every job the configuration asks for."""
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
    if services.settings.openai_admin_key:
        scheduler.add_job(
            pull_recent_usage,
            "interval",
            hours=1,
            args=[services],
            id="openai-usage",
            name="Pull OpenAI organisation usage",
            next_run_time=datetime.now(UTC),
            replace_existing=True,
        )
    add_service_jobs(scheduler, services)  # digests, nudges, retention (docs/digests.md)
    return scheduler
