"""Usage that names no known person, and the identities operators link to people.

A source may report usage with no email: Claude Code logged in with an API key sends an account uuid and
a user id instead. Such usage is never dropped: it is kept in `unattributed_usage` under the identity it
carries, shown by `tokenwise source status` and the organisation report, and moved to the person's own
usage when an operator links that identity (`tokenwise people link`). Identities are never linked because
they appear together in ingested data: only an operator says who is who.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import delete, func, select, tuple_, type_coerce
from sqlmodel import Session

from storage.daily_usage import settle_days, utc_day
from storage.models import IDENTITY_KINDS, PersonLink, Source, UnattributedUsage, table_of
from storage.types import NANO, ScaledDecimal
from storage.upsert import merge_usage_totals

UN = table_of(UnattributedUsage).c
LINKS = table_of(PersonLink).c
TOTALS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
Identity = tuple[str, str]
TOKENS = func.coalesce(func.sum(UN.input_tokens + UN.output_tokens + UN.cache_read_tokens + UN.cache_write_tokens), 0)
COST = type_coerce(func.sum(UN.cost_usd), ScaledDecimal(NANO))  # NULL when no row has a known cost


class LinkError(ValueError):
    """A link an operator asked for that cannot be made; the message says why and what would work."""


def linked_people(session: Session, identities: Iterable[Identity]) -> dict[Identity, int]:
    """The people operators linked to these identities (kind, value)."""
    wanted = sorted(set(identities))
    if not wanted:
        return {}
    rows = session.execute(
        select(LINKS.kind, LINKS.value, LINKS.person_id).where(tuple_(LINKS.kind, LINKS.value).in_(wanted))
    )
    return {(kind, value): int(person_id) for kind, value, person_id in rows}


def keep_unattributed(
    session: Session, rows: Sequence[Mapping[str, Any]], mode: Literal["max", "replace"] = "max"
) -> int:
    """Store usage rows that name nobody known (with `identity_kind`/`identity_value` when the source
    carried one), merged as running totals like attributed usage (`max`), or replaced as a vendor's
    re-pulled day is (`replace`); how many distinct rows."""
    return merge_usage_totals(session, rows, mode, table_of(UnattributedUsage))


@dataclass(frozen=True)
class Linked:
    link: PersonLink
    moved: int  # unattributed rows that became the person's usage
    created: bool = False  # False: the link was there already


def link_identity(session: Session, kind: str, value: str, person_id: int) -> Linked:
    """Say that an identity is a person's, and move its unattributed usage to them (idempotent)."""
    if kind not in IDENTITY_KINDS:
        raise LinkError(f"Unknown kind '{kind}'; use one of {', '.join(IDENTITY_KINDS)}.")
    value = value.strip()
    if kind == "github":
        value = value.lower()  # GitHub logins ignore case; storage/github.py looks them up lower-cased
    if not value or len(value) > 200:
        raise LinkError("Give the identity's value (1 to 200 characters).")
    existing = session.execute(select(PersonLink).where(LINKS.kind == kind, LINKS.value == value)).scalar_one_or_none()
    if existing is not None and existing.person_id != person_id:
        raise LinkError(f"{kind} '{value}' is linked to someone else already; a link is made once, by an operator.")
    link = existing or PersonLink(kind=kind, value=value, person_id=person_id)
    session.add(link)
    session.flush()
    rows = session.execute(select(UnattributedUsage).where(UN.identity_kind == kind, UN.identity_value == value))
    usage = [
        {
            "source_id": row.source_id,
            "person_id": person_id,
            "run_id": None,
            "occurred_at": row.occurred_at,
            "agent": row.agent,
            "model": row.model,
            **{column: getattr(row, column) for column in TOTALS},
            "cost_usd": row.cost_usd,
            "cost_source": row.cost_source,
            "dedupe_key": row.dedupe_key,
        }
        for row in rows.scalars()
    ]
    if usage:
        merge_usage_totals(session, usage, "max")
        session.execute(delete(table_of(UnattributedUsage)).where(UN.identity_kind == kind, UN.identity_value == value))
        settle_days(session, {(person_id, utc_day(row["occurred_at"]), row["agent"]) for row in usage})
    return Linked(link, len(usage), existing is None)


@dataclass(frozen=True)
class UnattributedIdentity:
    """What one identity (or no identity at all) sent that names no known person, per source."""

    source: str
    kind: str | None
    value: str | None
    records: int
    tokens: int
    cost_usd: Decimal | None
    last_seen: datetime


def unattributed_identities(session: Session, source_name: str | None = None) -> list[UnattributedIdentity]:
    """Every identity with unattributed usage, largest first, for `tokenwise source status`."""
    s = table_of(Source).c
    query = (
        select(
            s.name,
            UN.identity_kind,
            UN.identity_value,
            func.count(),
            TOKENS,
            COST,
            func.max(UN.occurred_at),
        )
        .select_from(table_of(UnattributedUsage))
        .join(table_of(Source), s.id == UN.source_id)
        .group_by(s.name, UN.identity_kind, UN.identity_value)
    )
    if source_name:
        query = query.where(s.name == source_name)
    found = [
        UnattributedIdentity(name, kind, value, int(count), int(total), cost, last)
        for name, kind, value, count, total, cost, last in session.execute(query)
    ]
    return sorted(found, key=lambda item: (-item.tokens, item.source, item.kind or "", item.value or ""))


@dataclass(frozen=True)
class UnattributedTotals:
    records: int
    tokens: int
    cost_usd: Decimal | None


def unattributed_totals(session: Session, start: datetime, end: datetime) -> UnattributedTotals:
    """Usage in [start, end) that names no known person: what the organisation report adds as a line."""
    count, total, cost = session.execute(
        select(func.count(), TOKENS, COST).where(UN.occurred_at >= start, UN.occurred_at < end)
    ).one()
    return UnattributedTotals(int(count), int(total), cost)


@dataclass(frozen=True)
class SourceActivity:
    """What a source has sent: its records (attributed and not) and the latest time they cover."""

    name: str
    kind: str
    records: int
    unattributed: int
    last_seen: datetime | None


def source_activity(session: Session, source_name: str | None = None) -> list[SourceActivity]:
    """Each source (or the one named) with its records and the latest usage it reported."""
    from storage.models import UsageRecord

    s = table_of(Source).c
    u = table_of(UsageRecord).c
    attributed = {
        source_id: (int(count), last)
        for source_id, count, last in session.execute(
            select(u.source_id, func.count(), func.max(u.occurred_at)).group_by(u.source_id)
        )
    }
    kept = {
        source_id: (int(count), last)
        for source_id, count, last in session.execute(
            select(UN.source_id, func.count(), func.max(UN.occurred_at)).group_by(UN.source_id)
        )
    }
    query = select(s.id, s.name, s.kind).order_by(s.name)
    if source_name:
        query = query.where(s.name == source_name)
    found = []
    for source_id, name, kind in session.execute(query):
        count, last = attributed.get(source_id, (0, None))
        loose, loose_last = kept.get(source_id, (0, None))
        times = [t for t in (last, loose_last) if t is not None]
        found.append(SourceActivity(name, kind, count + loose, loose, max(times) if times else None))
    return found
