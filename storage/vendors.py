"""What vendors' admin APIs report: billed cost (organisation totals), per-day usage replaced exactly when
re-pulled, and each pull's state for `tokenwise source status`.

- Billed cost (`billed_cost`) is what the vendor bills the organisation per day, model, workspace and line
  item. It is never added to usage: reconciliation sets it against the estimate. A re-pull of a day
  replaces that day's rows exactly (rows it no longer lists are removed); a finished day changes nothing.
- Per-day usage goes through `ingest_telemetry(..., usage_mode="replace")` under dedupe keys made by
  `daily_key`; `prune_days` then removes the rows of the pulled days the vendor no longer lists (a day it
  answers with nothing keeps what was stored: history past its window is never lost), so a
  re-pull of today gives today's figures exactly. Unknown token counts are NULL (`SeenUsage` with
  `input_tokens=None`...): left out of token sums, counted as coverage.
- `vendor_pull` keeps each pull's last attempt, success and error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import and_, case, delete, func, literal, or_, select, type_coerce, update
from sqlmodel import Session

from storage.daily_usage import day_start
from storage.models import (
    BilledCost,
    Membership,
    Outcome,
    Person,
    Source,
    ToolDecision,
    UnattributedUsage,
    UsageRecord,
    VendorPullState,
    table_of,
)
from storage.types import NANO, ScaledDecimal

T = TypeVar("T", int, Decimal)
BILLED = table_of(BilledCost)
USAGE = table_of(UsageRecord)
LOOSE = table_of(UnattributedUsage)
STATES = table_of(VendorPullState)


@dataclass(frozen=True)
class BilledLine:
    """One line of a vendor's bill for one UTC day."""

    day: date
    amount: Decimal | None  # in `currency`'s main unit (dollars, not cents); None: a line of tokens only
    currency: str = "USD"
    model: str = ""
    workspace: str = ""
    line_item: str = ""
    tokens: int | None = None

    @property
    def key(self) -> tuple[date, str, str, str]:
        return (self.day, self.model[:120], self.workspace[:120], self.line_item[:300])


@dataclass(frozen=True)
class BilledWrite:
    added: int = 0
    changed: int = 0
    removed: int = 0

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.changed or self.removed)


def daily_key(source: str, day: date, who: str, model: str) -> str:
    """The dedupe key of a per-day vendor row: one per (source, day, person, model)."""
    return f"{source}:{day.isoformat()}:{who}:{model}"[:300]


def replace_billed(
    session: Session, source: str, vendor: str, days: Iterable[date], lines: Sequence[BilledLine]
) -> BilledWrite:
    """Make the billed rows of `source` on `days` exactly `lines` (lines of the same key are summed)."""
    wanted_days = sorted(set(days) | {line.day for line in lines})
    merged: dict[tuple[date, str, str, str], tuple[Decimal | None, str, int | None]] = {}
    for line in lines:
        amount, _currency, tokens = merged.get(line.key, (None, line.currency, None))
        merged[line.key] = (_add(amount, line.amount), line.currency[:8], _add(tokens, line.tokens))
    if not wanted_days:
        return BilledWrite()
    b = BILLED.c
    stored = {
        (day, model, workspace, line_item): (row_id, (amount, currency, tokens))
        for row_id, day, model, workspace, line_item, amount, currency, tokens in session.execute(
            select(b.id, b.day, b.model, b.workspace, b.line_item, b.amount, b.currency, b.tokens).where(
                b.source == source, b.day.in_(wanted_days)
            )
        )
    }
    gone = [row_id for key, (row_id, _) in stored.items() if key not in merged]
    for start in range(0, len(gone), 500):
        session.execute(delete(BILLED).where(b.id.in_(gone[start : start + 500])))
    added = changed = 0
    for key, figures in sorted(merged.items()):
        amount, currency, tokens = figures
        if key not in stored:
            day, model, workspace, line_item = key
            session.add(
                BilledCost(
                    source=source,
                    vendor=vendor,
                    day=day,
                    model=model,
                    workspace=workspace,
                    line_item=line_item,
                    amount=amount,
                    currency=currency,
                    tokens=tokens,
                )
            )
            added += 1
        elif stored[key][1] != figures:
            session.execute(
                update(BILLED).where(b.id == stored[key][0]).values(amount=amount, currency=currency, tokens=tokens)
            )
            changed += 1
    session.flush()
    return BilledWrite(added, changed, len(gone))


def _add(total: T | None, more: T | None) -> T | None:
    if more is None:
        return total
    return more if total is None else total + more


@dataclass(frozen=True)
class BilledDay:
    vendor: str
    day: date
    currency: str
    amount: Decimal
    sources: tuple[str, ...]


def billed_by_day(session: Session, start: date, end: date, vendor: str | None = None) -> list[BilledDay]:
    """Billed totals per vendor, day and currency in [start, end)."""
    b = BILLED.c
    query = (
        select(b.vendor, b.day, b.currency, b.source, type_coerce(func.sum(b.amount), ScaledDecimal(NANO)))
        .where(b.day >= start, b.day < end, b.amount.is_not(None))
        .group_by(b.vendor, b.day, b.currency, b.source)
    )
    if vendor:
        query = query.where(b.vendor == vendor)
    totals: dict[tuple[str, date, str], tuple[Decimal, set[str]]] = {}
    for name, day, currency, source, amount in session.execute(query):
        total, sources = totals.get((name, day, currency), (Decimal(0), set()))
        totals[(name, day, currency)] = (total + (amount or Decimal(0)), {*sources, source})
    return [
        BilledDay(name, day, currency, amount, tuple(sorted(sources)))
        for (name, day, currency), (amount, sources) in sorted(totals.items())
    ]


def _stale(rows: Iterable[Any], kept: set[str]) -> list[int]:
    """The ids of rows whose key the vendor no longer lists, on days where it still lists some: a day it
    answered with nothing (history it no longer serves, an outage) keeps what was stored."""
    by_day: dict[date, list[tuple[int, bool]]] = {}
    for row_id, key, when in rows:
        by_day.setdefault(when.date(), []).append((int(row_id), key in kept))
    return [
        row_id
        for day_rows in by_day.values()
        if any(listed for _, listed in day_rows)
        for row_id, listed in day_rows
        if not listed
    ]


def prune_days(session: Session, source_id: int, days: Iterable[date], keep: Iterable[str]) -> int:
    """Remove the per-day rows (attributed or not) of `source_id` on `days` whose dedupe key is not in `keep`:
    what the vendor no longer lists for a re-pulled day (never a whole day it no longer answers for). How
    many rows went."""
    kept = set(keep)
    removed = 0
    wanted = list(days)
    for table in (USAGE, LOOSE):
        c = table.c
        spans = [and_(c.occurred_at >= day_start(d), c.occurred_at < day_start(d) + timedelta(days=1)) for d in wanted]
        if not spans:
            return 0
        stale = _stale(
            session.execute(select(c.id, c.dedupe_key, c.occurred_at).where(c.source_id == source_id, or_(*spans))),
            kept,
        )
        for start in range(0, len(stale), 500):
            session.execute(delete(table).where(c.id.in_(stale[start : start + 500])))
        removed += len(stale)
    return removed


def prune_outcomes(session: Session, source_id: int, days: Iterable[date], keep: Iterable[str]) -> int:
    """Remove the outcomes of `source_id` on `days` whose external id is not in `keep` (a count that shrank)."""
    c = table_of(Outcome).c
    kept = set(keep)
    spans = [and_(c.occurred_at >= day_start(d), c.occurred_at < day_start(d) + timedelta(days=1)) for d in days]
    if not spans:
        return 0
    stale = _stale(
        session.execute(select(c.id, c.external_id, c.occurred_at).where(c.source_id == source_id, or_(*spans))),
        kept,
    )
    for start in range(0, len(stale), 500):
        session.execute(delete(table_of(Outcome)).where(c.id.in_(stale[start : start + 500])))
    return len(stale)


@dataclass(frozen=True)
class Decisions:
    """A person's accepted and rejected proposals for one tool on one UTC day."""

    person_id: int
    day: date
    tool: str
    accepted: int
    rejected: int


def replace_decisions(session: Session, source_id: int, days: Iterable[date], rows: Sequence[Decisions]) -> int:
    """Make the tool decisions of `source_id` on `days` exactly `rows` (summed per person, day and tool)."""
    c = table_of(ToolDecision).c
    wanted: dict[tuple[int, date, str], tuple[int, int]] = {}
    for row in rows:
        accepted, rejected = wanted.get((row.person_id, row.day, row.tool), (0, 0))
        wanted[(row.person_id, row.day, row.tool[:40])] = (accepted + row.accepted, rejected + row.rejected)
    pulled = sorted(set(days) | {day for _, day, _ in wanted})
    if not pulled:
        return 0
    stored = {
        (person_id, day, tool): (row_id, (accepted, rejected))
        for row_id, person_id, day, tool, accepted, rejected in session.execute(
            select(c.id, c.person_id, c.day, c.tool, c.accepted, c.rejected).where(
                c.source_id == source_id, c.day.in_(pulled)
            )
        )
    }
    gone = [row_id for key, (row_id, _) in stored.items() if key not in wanted]
    if gone:
        session.execute(delete(table_of(ToolDecision)).where(c.id.in_(gone)))
    changed = len(gone)
    for (person_id, day, tool), figures in sorted(wanted.items()):
        if (person_id, day, tool) not in stored:
            session.add(ToolDecision(source_id=source_id, person_id=person_id, day=day, tool=tool,
                                     accepted=figures[0], rejected=figures[1]))  # fmt: skip
            changed += 1
        elif stored[(person_id, day, tool)][1] != figures:
            session.execute(
                update(table_of(ToolDecision))
                .where(c.id == stored[(person_id, day, tool)][0])
                .values(accepted=figures[0], rejected=figures[1])
            )
            changed += 1
    session.flush()
    return changed


@dataclass(frozen=True)
class DecisionTotals:
    accepted: int
    rejected: int

    @property
    def acceptance(self) -> Decimal | None:
        """The share of proposals accepted; None with none decided."""
        decided = self.accepted + self.rejected
        return None if decided == 0 else Decimal(self.accepted) / Decimal(decided)


def decision_totals(session: Session, person_id: int, first: date, last: date) -> DecisionTotals:
    """A person's accepted and rejected proposals over the days [first, last], every tool together."""
    c = table_of(ToolDecision).c
    accepted, rejected = session.execute(
        select(func.coalesce(func.sum(c.accepted), 0), func.coalesce(func.sum(c.rejected), 0)).where(
            c.person_id == person_id, c.day >= first, c.day <= last
        )
    ).one()
    return DecisionTotals(int(accepted), int(rejected))


def record_pull(
    session: Session, name: str, at: datetime, *, error: str | None = None, summary: str | None = None
) -> VendorPullState:
    """Remember a pull's attempt: a success clears the error; a failure keeps the last success."""
    state = session.get(VendorPullState, name) or VendorPullState(name=name)
    state.last_attempt_at = at
    if error is None:
        state.last_success_at, state.last_error, state.last_summary = at, None, (summary or "")[:500] or None
    else:
        state.last_error = error[:500]
    session.add(state)
    session.flush()
    return state


def pull_states(session: Session) -> dict[str, VendorPullState]:
    return {state.name: state for state in session.execute(select(VendorPullState)).scalars()}


def unknown_people(session: Session, source_name: str, limit: int = 20) -> list[str]:
    """Emails a source's usage names that nobody knows yet: no Slack binding and no team (their usage is
    kept and counts for them once they use Slack or join a team in `tokenwise import org`)."""
    p, s, m = table_of(Person).c, table_of(Source).c, table_of(Membership).c
    query = (
        select(p.email)
        .select_from(
            USAGE.join(table_of(Source), s.id == USAGE.c.source_id).join(table_of(Person), p.id == USAGE.c.person_id)
        )
        .where(s.name == source_name, p.slack_user_id.is_(None), p.email.is_not(None))
        .where(p.id.not_in(select(m.person_id)))
        .group_by(p.email)
        .order_by(p.email)
        .limit(limit)
    )
    return [str(email) for (email,) in session.execute(query)]


@dataclass(frozen=True)
class EstimatedPart:
    """Counted usage cost of one tool (agent) on one UTC day, from one source and cost_source; `person_id`
    None for usage that names nobody known (unattributed), which says whose it is in `identity`."""

    day: date
    agent: str
    source: str
    cost_source: str | None
    person_id: int | None
    cost_usd: Decimal | None
    records: int
    identity: str | None = None  # unattributed usage: "kind:value" (an API key's name, a GitHub login...)


def estimated_by_day(session: Session, days: Sequence[date], agents: Iterable[str]) -> list[EstimatedPart]:
    """What Tokenwise counted as spend per UTC day for these tools, by source, cost_source and person, in
    one query per table (a CASE picks each row's day, as the metrics engine picks windows)."""
    ordered = sorted(set(days))
    wanted = sorted(set(agents))
    if not ordered or not wanted:
        return []
    found: list[EstimatedPart] = []
    s = table_of(Source).c
    for table, counted in ((USAGE, True), (LOOSE, False)):
        c = table.c
        day = case(
            *(
                (and_(c.occurred_at >= day_start(d), c.occurred_at < day_start(d) + timedelta(days=1)), index)
                for index, d in enumerate(ordered)
            )
        ).label("day")
        person = c.person_id if counted else literal(None).label("person_id")
        who = (
            literal(None).label("identity")
            if counted
            else (func.coalesce(c.identity_kind, "") + ":" + func.coalesce(c.identity_value, "")).label("identity")
        )
        query = (
            select(
                day,
                c.agent,
                s.name,
                c.cost_source,
                person,
                type_coerce(func.sum(c.cost_usd), ScaledDecimal(NANO)),
                func.count(),
                who,
            )
            .select_from(table.join(table_of(Source), s.id == c.source_id))
            .where(c.occurred_at >= day_start(ordered[0]), c.occurred_at < day_start(ordered[-1]) + timedelta(days=1))
            .where(c.agent.in_(wanted))
            .group_by(
                day,
                c.agent,
                s.name,
                c.cost_source,
                *([c.person_id] if counted else [c.identity_kind, c.identity_value]),
            )
        )
        if counted:
            query = query.where(c.counted.is_(True))
        for index, agent, source, cost_source, person_id, cost, records, identity in session.execute(query):
            if index is None:
                continue
            found.append(
                EstimatedPart(ordered[int(index)], agent, source, cost_source, person_id, cost, int(records), identity)
            )
    return found
