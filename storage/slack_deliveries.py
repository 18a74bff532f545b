"""Slack deliveries already taken, in the database so a retry landing on another replica runs nothing.

A delivery's identity (`handlers/slack/retries.py: delivery_key`) is claimed with one INSERT ... ON
CONFLICT DO NOTHING RETURNING, as `storage/slack_requests_seen.py` claims signatures; the second claim
gets no row back. Rows older than `KEEP` (Slack retries three times within about five minutes) are
purged by `purge_deliveries`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from storage.models import SlackDeliverySeen, table_of
from storage.slack_requests_seen import claim_at_once

KEEP = timedelta(minutes=15)
KEY_MAX = 100

SEEN = table_of(SlackDeliverySeen)


def stored_key(key: str) -> str:
    """The key as stored: itself when short enough, else its hash (a trigger id or event id always fits)."""
    return key if len(key) <= KEY_MAX else "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def claim_delivery(engine: Engine, key: str, now: datetime | None = None) -> bool:
    """Remember a delivery; True the first time any replica claims it, False after."""
    insert = postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(SEEN)
        .values(delivery=stored_key(key), seen_at=now or datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=[SEEN.c.delivery])
        .returning(SEEN.c.delivery)
    )
    return claim_at_once(engine, statement)


def purge_deliveries(engine: Engine, now: datetime | None = None) -> int:
    """Forget deliveries Slack no longer retries; how many rows went."""
    cutoff = (now or datetime.now(UTC)) - KEEP
    with engine.begin() as connection:
        return int(connection.execute(delete(SEEN).where(SEEN.c.seen_at < cutoff)).rowcount or 0)
