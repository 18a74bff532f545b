"""The digest, nudge and retention jobs, for any APScheduler 3.x scheduler.

`add_digest_jobs(scheduler, ...)` adds:
- one CronTrigger job per subscription (its weekday, time and time zone; APScheduler does the DST
  arithmetic), kept in step with the database by the tick;
- a tick every TOKENWISE_DIGEST_TICK_SECONDS that re-syncs those jobs, retries failed or abandoned
  digests, sends Monday nudges, and on start catches up a digest missed within the grace window;
- a daily retention purge.
Every job ends in `send_due`, whose claim makes running it twice, or in two processes, harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlmodel import select

from bot.config import Settings
from bot.digest import SlackFor, send_due, with_digest_retries
from bot.nudges import send_nudges
from bot.periods import zone
from storage.db import session_scope
from storage.digests import DueDigest, Schedule, purge_expired, schedule_of
from storage.models import DigestSubscription

if TYPE_CHECKING:
    from bot.app import Services

log = logging.getLogger(__name__)

SUBSCRIPTION_JOB = "digest:subscription:"
TICK_JOB = "digest:tick"
PURGE_JOB = "retention:purge"


def cron_trigger(schedule: Schedule) -> CronTrigger:
    """Weekly at the subscription's local weekday and time (APScheduler counts Monday as 0, as we do)."""
    return CronTrigger(
        day_of_week=schedule.weekday, hour=schedule.hour, minute=schedule.minute, timezone=zone(schedule.timezone)
    )


@dataclass
class SyncReport:
    added: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)


@dataclass
class DigestJobs:
    """The jobs' shared state: built once per process with the engine and Slack client."""

    engine: Engine
    settings: Settings
    slack_for: SlackFor
    nudge_client: WebClient | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def send_for(self, subscription_id: int) -> None:
        """A subscription's CronTrigger fired."""
        self._guard(lambda: send_due(self.engine, self.settings, self.slack_for, self.clock(), [subscription_id]))

    def tick(self, scheduler: BaseScheduler | None = None) -> None:
        """Follow subscription changes, then send (or retry) whatever is due, then nudges."""
        if scheduler is not None:
            self._guard(lambda: sync_subscription_jobs(scheduler, self))
        now = self.clock()
        self._guard(lambda: send_due(self.engine, self.settings, self.slack_for, now))
        if self.nudge_client is not None:
            client = self.nudge_client
            self._guard(lambda: send_nudges(self.engine, client, now))

    def purge(self) -> None:
        def run() -> None:
            with session_scope(self.engine) as session:
                purged = purge_expired(session, self.clock(), self.settings.retention_days)
            log.info("retention: purged %d rows older than %d days", purged.total, self.settings.retention_days)

        self._guard(run)

    @staticmethod
    def _guard(job: Callable[[], Any]) -> None:
        try:
            job()
        except Exception:
            log.exception("scheduled job failed; it runs again on the next tick")


def sync_subscription_jobs(scheduler: BaseScheduler, jobs: DigestJobs) -> SyncReport:
    """Make the scheduler's per-subscription jobs match the database (added, rescheduled, removed)."""
    with session_scope(jobs.engine) as session:
        wanted = {s.id or 0: schedule_of(s) for s in session.exec(select(DigestSubscription)).all()}
    report = SyncReport()
    for job in scheduler.get_jobs():
        if job.id.startswith(SUBSCRIPTION_JOB):
            subscription_id = int(job.id.removeprefix(SUBSCRIPTION_JOB))
            if subscription_id not in wanted:
                scheduler.remove_job(job.id)
                report.removed.append(subscription_id)
    grace = int(jobs.settings.digest_grace_hours * 3600) or 1
    for subscription_id, schedule in wanted.items():
        job_id = f"{SUBSCRIPTION_JOB}{subscription_id}"
        existing = scheduler.get_job(job_id)
        if existing is None:
            scheduler.add_job(
                jobs.send_for,
                cron_trigger(schedule),
                args=[subscription_id],
                id=job_id,
                name=schedule.label(),
                misfire_grace_time=grace,
                coalesce=True,
                max_instances=1,
            )
            report.added.append(subscription_id)
        elif existing.name != schedule.label():
            scheduler.modify_job(job_id, name=schedule.label())
            scheduler.reschedule_job(job_id, trigger=cron_trigger(schedule))
            report.changed.append(subscription_id)
    return report


def digest_slack_for(services: Services) -> SlackFor:
    """A Web API client for each digest's workspace (OAuth installs rotate their token first), with the
    digest retry policy."""
    from bot.slack_app import slack_client_for

    def client_for(due: DueDigest) -> WebClient:
        client = slack_client_for(services, team_id=due.slack_team_id, enterprise_id=due.enterprise_id)
        return with_digest_retries(client)

    return client_for


def nudge_client_for(services: Services) -> WebClient | None:
    """Nudges are DMs in the bot token's workspace; with only OAuth installs they are off (docs/digests.md)."""
    from bot.slack_app import build_slack_client

    if not services.settings.slack_bot_token:
        return None
    return with_digest_retries(build_slack_client(services.settings, services.settings.slack_bot_token))


def add_service_jobs(scheduler: BaseScheduler, services: Services) -> DigestJobs | None:
    """What `bot.scheduler.build_scheduler` adds: the digest and nudge jobs when Slack is configured
    (a bot token, or OAuth installs), and the retention purge always."""
    settings = services.settings
    if settings.slack_bot_token or settings.slack_oauth_enabled:
        return add_digest_jobs(
            scheduler, services.engine, settings, digest_slack_for(services), nudge_client_for(services)
        )
    log.info("Slack is not configured: no digests or nudges are scheduled, only the retention purge.")
    add_retention_job(scheduler, DigestJobs(services.engine, settings, _no_slack))
    return None


def _no_slack(_due: DueDigest) -> WebClient:
    raise RuntimeError("Slack is not configured.")


def add_digest_jobs(
    scheduler: BaseScheduler,
    engine: Engine,
    settings: Settings,
    slack_for: SlackFor,
    nudge_client: WebClient | None = None,
) -> DigestJobs:
    """Add the digest, nudge and retention jobs; the tick runs once right away (catch-up on start)."""
    jobs = DigestJobs(engine, settings, slack_for, nudge_client)
    sync_subscription_jobs(scheduler, jobs)
    scheduler.add_job(
        jobs.tick,
        IntervalTrigger(seconds=settings.digest_tick_seconds, timezone=UTC),
        args=[scheduler],
        id=TICK_JOB,
        name="digests: sync, catch up, retry; nudges",
        next_run_time=datetime.now(UTC),
        coalesce=True,
        max_instances=1,
        replace_existing=True,
    )
    add_retention_job(scheduler, jobs)
    return jobs


def add_retention_job(scheduler: BaseScheduler, jobs: DigestJobs) -> None:
    """The daily purge of data older than TOKENWISE_RETENTION_DAYS."""
    scheduler.add_job(
        jobs.purge,
        CronTrigger(hour=3, minute=30, timezone=UTC),
        id=PURGE_JOB,
        name="retention purge",
        coalesce=True,
        max_instances=1,
        replace_existing=True,
    )
