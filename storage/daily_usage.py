"""Per-person-per-day usage from vendors' admin APIs, counted once with the sources that carry sessions.

A vendor pull (Claude Code Analytics, Cursor, Copilot, OpenAI's usage) reports one row per person, UTC day,
tool and model, stamped at the day's midnight UTC. A source that carries sessions (Claude Code's logs, its
OTLP export) reports the same work call by call. The rule (docs/ingest.md "Once across sources"): a
per-day vendor row counts only for a (person, UTC day, tool) that no session-carrying source covers;
otherwise it stays stored with `counted` false, for reconciliation. `settle_days` applies it after every
write of either kind, so the order in which they arrive does not matter.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import exists, literal, select, union_all, update
from sqlmodel import Session

from storage.models import Source, UsageRecord, table_of

# Sources whose runs are sessions (Claude Code's `session.id`/`sessionId`).
SESSION_KINDS = ("otlp", "claude-code-logs")
# Sources whose usage is one row per person, UTC day, tool (`agent`) and model: the vendor pulls. A new
# vendor pull adds its source kind here.
DAILY_KINDS = ("openai-usage", "claude-code-analytics", "cursor", "copilot")

DayKey = tuple[int, date, str]  # person id, UTC day, tool (usage_record.agent)
USAGE = table_of(UsageRecord)
SOURCES = table_of(Source)
CHUNK = 100


def day_start(day: date) -> datetime:
    """The moment a per-day row is stamped at: the day's midnight UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def utc_day(moment: datetime) -> date:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def settle_days(session: Session, keys: Iterable[DayKey]) -> int:
    """Count each per-day vendor row of these (person, day, tool) keys only where no session-carrying source
    has usage for the same person, UTC day and tool; how many rows changed. Cheap when the keys have no
    vendor rows (one query of the sources), as for most OTLP and log writes."""
    wanted = sorted(set(keys))
    if not wanted:
        return 0
    u, s = USAGE.c, SOURCES.c
    # The vendor pulls' sources first (none, the usual case, ends it here): the rows are then found by
    # source, not by a scan of each person's usage in the days, which an import's own rows keep growing.
    vendors = [int(i) for (i,) in session.execute(select(s.id).where(s.kind.in_(DAILY_KINDS)).order_by(s.id))]
    if not vendors:
        return 0
    by_person: dict[int, set[tuple[date, str]]] = {}
    for person_id, day, agent in wanted:
        by_person.setdefault(person_id, set()).add((day, agent))
    people = sorted(by_person)
    first = day_start(min(day for _, day, _ in wanted))
    last = day_start(max(day for _, day, _ in wanted)) + timedelta(days=1)
    daily: list[tuple[int, DayKey, bool]] = []
    for start in range(0, len(people), 500):
        rows = session.execute(
            select(u.id, u.person_id, u.occurred_at, u.agent, u.counted)
            .where(u.source_id.in_(vendors), u.person_id.in_(people[start : start + 500]))
            .where(u.occurred_at >= first, u.occurred_at < last)
        )
        for record_id, person_id, occurred_at, agent, counted in rows:
            key = (int(person_id), utc_day(occurred_at), str(agent))
            if (key[1], key[2]) in by_person[key[0]]:
                daily.append((int(record_id), key, bool(counted)))
    if not daily:
        return 0
    covered = covered_keys(session, {key for _, key, _ in daily})
    changes: dict[bool, list[int]] = {True: [], False: []}
    for record_id, key, counted in daily:
        should = key not in covered
        if counted != should:
            changes[should].append(record_id)
    for should, ids in changes.items():
        for start in range(0, len(ids), 500):
            session.execute(update(USAGE).where(u.id.in_(ids[start : start + 500])).values(counted=should))
    return len(changes[True]) + len(changes[False])


def covered_keys(session: Session, keys: Iterable[DayKey]) -> set[DayKey]:
    """The keys for which a session-carrying source has usage (counted or not): one query per 100 keys,
    each an EXISTS the (person_id, occurred_at) index answers."""
    u, s = USAGE.c, SOURCES.c
    ordered = sorted(set(keys))
    found: set[DayKey] = set()
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        probes = [
            select(literal(position)).where(
                exists(
                    select(u.id)
                    .select_from(USAGE.join(SOURCES, s.id == u.source_id))
                    .where(
                        u.person_id == person_id,
                        u.agent == agent,
                        u.occurred_at >= day_start(day),
                        u.occurred_at < day_start(day) + timedelta(days=1),
                        s.kind.in_(SESSION_KINDS),
                    )
                )
            )
            for position, (person_id, day, agent) in enumerate(chunk)
        ]
        query = probes[0] if len(probes) == 1 else union_all(*probes)
        for (position,) in session.execute(query):
            found.add(chunk[int(position)])
    return found
