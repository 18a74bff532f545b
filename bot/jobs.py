"""Every scheduled job of `tokenwise serve` and `tokenwise scheduler` (APScheduler 3.x), with explicit ids.

`build_scheduler(services)` adds each job whose settings are present:
- each vendor admin-API pull whose key is set (bot/sources/vendors.py): hourly, id `vendor:<name>`, or its own
  (`openai-usage`: the OpenAI organisation usage pull, when OPENAI_ADMIN_KEY is set);
- `digest:subscription:<id>`: one CronTrigger job per digest subscription (its weekday, time and time
  zone; APScheduler does the DST arithmetic), kept in step with the database by the tick;
- `digest:tick`: every TOKENWISE_DIGEST_TICK_SECONDS, re-syncs those jobs, retries failed or abandoned
  digests, sends Monday nudges, and on start catches up a digest missed within the grace window;
- `retention:purge`: the daily purge;
- `github:settle`: right away and every few minutes, settles the pull requests a burst of GitHub deliveries
  left queued (the server settles them itself once a burst is over; this takes what a restart left).
Every digest job ends in `send_due`, whose claim makes running it twice, or in two processes, harmless.
Add a job here, in `build_scheduler`, with an explicit id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlmodel import select

from bot.config import Settings
from bot.github.webhooks import settle_waiting
from bot.log_safety import log_failure
from bot.periods import zone
from bot.services import Services
from bot.sources.vendors import configured_pulls
from handlers.slack.client import build_slack_client
from handlers.slack.digest_posts import SlackFor, send_due
from handlers.slack.nudges import send_nudges
from storage.db import session_scope
from storage.digest_posts import DueDigest
from storage.models import DigestSubscription, id_of
from storage.retention import purge_in_batches
from storage.schedules import Schedule
from storage.subscriptions import schedule_of

log = logging.getLogger(__name__)


SUBSCRIPTION_JOB = "digest:subscription:"
TICK_JOB = "digest:tick"
PURGE_JOB = "retention:purge"
SETTLE_JOB = "github:settle"
SETTLE_MINUTES = 5


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
        guarded(lambda: send_due(self.engine, self.settings, self.slack_for, self.clock(), [subscription_id]))

    def tick(self, scheduler: BaseScheduler | None = None) -> None:
        """Follow subscription changes, then send (or retry) whatever is due, then nudges."""
        if scheduler is not None:
            guarded(lambda: sync_subscription_jobs(scheduler, self))
        now = self.clock()
        guarded(lambda: send_due(self.engine, self.settings, self.slack_for, now))
        if self.nudge_client is not None:
            client = self.nudge_client
            guarded(lambda: send_nudges(self.engine, client, now))

    def purge(self) -> None:
        def run() -> None:
            purged = purge_in_batches(self.engine, self.clock(), self.settings.retention_days)
            log.info("retention: purged %d rows older than %d days", purged.total, self.settings.retention_days)

        guarded(run)


def guarded(job: Callable[[], Any]) -> None:
    """Run a scheduled job: a failure is logged and the job runs again at its next time."""
    try:
        job()
    except Exception as error:
        log_failure(log, "scheduled job failed; it runs again at its next time", error=error)


def sync_subscription_jobs(scheduler: BaseScheduler, jobs: DigestJobs) -> SyncReport:
    """Make the scheduler's per-subscription jobs match the database (added, rescheduled, removed)."""
    with session_scope(jobs.engine) as session:
        wanted = {id_of(s): schedule_of(s) for s in session.exec(select(DigestSubscription)).all()}
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
    """A Web API client for each digest's workspace (OAuth installs rotate their token first)."""
    from handlers.slack.app import slack_client_for

    def client_for(due: DueDigest) -> WebClient:
        return slack_client_for(services, team_id=due.slack_team_id, enterprise_id=due.enterprise_id)

    return client_for


def nudge_client_for(services: Services) -> WebClient | None:
    """Nudges are DMs in the bot token's workspace; with only OAuth installs they are off (docs/digests.md)."""
    if not services.settings.slack_bot_token:
        return None
    return build_slack_client(services.settings.slack_bot_token, services.settings.slack_api_url)


def add_service_jobs(scheduler: BaseScheduler, services: Services) -> DigestJobs | None:
    """What `build_scheduler` adds: the digest and nudge jobs when Slack is configured
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


def add_vendor_jobs(scheduler: BaseScheduler, services: Services) -> list[str]:
    """Each vendor admin-API pull whose key is set, every `hours` (hourly), first run right away; the ids."""
    ids = []
    for pull in configured_pulls(services.settings):
        scheduler.add_job(
            pull.pull_recent,
            IntervalTrigger(hours=pull.hours, timezone=UTC),
            args=[services],
            id=pull.job,
            name=f"Pull {pull.label}",
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            replace_existing=True,
        )
        ids.append(pull.job)
    return ids


def settle_all_waiting(services: Services) -> int:
    """Settle every pull request queued by a burst of GitHub deliveries; how many."""
    rules, settled = services.settings.link_rules(), 0
    while done := settle_waiting(services.engine, rules):
        settled += done
    if settled:
        log.info("github: settled %d pull requests a burst of deliveries had queued", settled)
    return settled


def add_github_settle_job(scheduler: BaseScheduler, services: Services) -> None:
    """What a burst of GitHub deliveries left to settle: right away (after a restart), then every few minutes."""
    scheduler.add_job(
        guarded,
        IntervalTrigger(minutes=SETTLE_MINUTES, timezone=UTC),
        args=[lambda: settle_all_waiting(services)],
        id=SETTLE_JOB,
        name="settle pull requests a burst of GitHub deliveries queued",
        next_run_time=datetime.now(UTC),
        coalesce=True,
        max_instances=1,
        replace_existing=True,
    )


def build_scheduler(services: Services) -> BackgroundScheduler:
    """A scheduler (not started) with every job the configuration asks for."""
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
    add_vendor_jobs(scheduler, services)
    add_service_jobs(scheduler, services)  # digests, nudges, retention (docs/digests.md)
    add_github_settle_job(scheduler, services)
    return scheduler
