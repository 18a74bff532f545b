"""Monday review reminders: a private DM to each person with runs they have not reviewed yet."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from slack_sdk import WebClient
from sqlalchemy import Engine

from handlers.slack.blocks import nudge_message
from storage.db import session_scope
from storage.nudges import DueNudge, claim_nudge, due_nudges, finish_nudge
from storage.runs import unreviewed_runs

log = logging.getLogger(__name__)
RUNS_SHOWN = 5


@dataclass(frozen=True)
class NudgeResult:
    person_id: int
    status: str  # sent, failed, skipped
    error: str | None = None


def send_nudges(engine: Engine, client: WebClient, now: datetime | None = None) -> list[NudgeResult]:
    """DM everyone who is due a nudge; each person at most once a week (claimed before sending)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with session_scope(engine) as session:
        due = due_nudges(session, now)
    return [_send_one(engine, client, nudge, now) for nudge in due]


def _send_one(engine: Engine, client: WebClient, nudge: DueNudge, now: datetime) -> NudgeResult:
    nudge_id = claim_nudge(engine, nudge, now)
    if nudge_id is None:
        return NudgeResult(nudge.person_id, "skipped")
    try:
        with session_scope(engine) as session:
            runs = unreviewed_runs(session, nudge.person_id, RUNS_SHOWN)
        reminder = nudge_message(nudge.unreviewed, runs, nudge.timezone)
        client.chat_postMessage(channel=nudge.slack_user_id, **reminder.as_kwargs())
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        log.warning("review nudge for person %s failed: %s", nudge.person_id, reason)
        finish_nudge(engine, nudge_id, now, reason)
        return NudgeResult(nudge.person_id, "failed", reason)
    finish_nudge(engine, nudge_id, now)
    return NudgeResult(nudge.person_id, "sent")
