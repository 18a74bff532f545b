"""Estimated against billed: per vendor and UTC day, the spend Tokenwise counted (what the tools reported,
what genai-prices priced, what a vendor bills per person) set against what the vendor billed the
organisation (`billed_cost`: Anthropic's cost report, OpenAI's `/organization/costs`).

The estimate is the counted usage of that vendor's tools (one count per request, storage/daily_usage.py),
usage that names nobody known included, since the bill includes it too. A day's figures are withheld when
fewer than the minimum group size of people (but at least one) make up its estimate, each identity that
names nobody known counted as one: an
organisation's vendor total can be one person's spend, and team figures stay withheld below the minimum
whatever the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from bot.numbers import money
from storage.vendors import billed_by_day, estimated_by_day

# Which vendor bills each tool's usage (usage_record.agent -> billed_cost.vendor).
VENDOR_OF_AGENT = {"claude-code": "anthropic", "openai-api": "openai", "cursor": "cursor", "copilot": "github"}
MAX_DAYS = 92


@dataclass(frozen=True)
class ReconcileRow:
    vendor: str
    day: date
    estimated_usd: Decimal | None  # None: nothing counted had a known cost (or withheld)
    billed_usd: Decimal | None  # None: the vendor reported no bill for the day (or withheld)
    sources: tuple[str, ...]  # "<cost_source>: <source>" for the estimate, "billed: <source>" for the bill
    withheld: str | None = None

    @property
    def difference_usd(self) -> Decimal | None:
        """Billed less estimated: positive when the bill is higher than the estimate."""
        if self.estimated_usd is None or self.billed_usd is None:
            return None
        return self.billed_usd - self.estimated_usd

    def as_json(self) -> dict[str, Any]:
        def usd(value: Decimal | None) -> float | None:
            return None if value is None else float(value.quantize(Decimal("0.000001")))

        return {
            "vendor": self.vendor,
            "day": self.day.isoformat(),
            "estimated_usd": usd(self.estimated_usd),
            "billed_usd": usd(self.billed_usd),
            "difference_usd": usd(self.difference_usd),
            "sources": list(self.sources),
            "withheld": self.withheld,
        }


def reconcile(
    session: Session, first: date, last: date, min_group_size: int, billed_only: bool = False
) -> list[ReconcileRow]:
    """One row per vendor and UTC day in [first, last] with an estimate or a bill, in order; with
    `billed_only`, the days a vendor billed (the organisation's usage is read for those days alone)."""
    if last < first:
        raise ValueError("the last day is before the first")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"reconcile at most {MAX_DAYS} days at a time")
    bills = billed_by_day(session, first, last + timedelta(days=1))
    if billed_only:
        days = sorted({line.day for line in bills if line.currency == "USD"})
    else:
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    estimated: dict[tuple[str, date], Decimal | None] = {}
    sources: dict[tuple[str, date], set[str]] = {}
    people: dict[tuple[str, date], set[int | str]] = {}  # known people, and identities that name nobody
    for part in estimated_by_day(session, days, VENDOR_OF_AGENT):
        key = (VENDOR_OF_AGENT[part.agent], part.day)
        total = estimated.get(key)
        if part.cost_usd is not None:
            total = (total or Decimal(0)) + part.cost_usd
        estimated[key] = total
        sources.setdefault(key, set()).add(f"{part.cost_source or 'unknown'}: {part.source}")
        who = part.person_id if part.person_id is not None else part.identity
        if who is not None:
            people.setdefault(key, set()).add(who)
    billed: dict[tuple[str, date], Decimal] = {}
    for line in bills:
        if line.currency != "USD":
            continue
        key = (line.vendor, line.day)
        billed[key] = billed.get(key, Decimal(0)) + line.amount
        sources.setdefault(key, set()).update(f"billed: {name}" for name in line.sources)
    rows = []
    for vendor, day in sorted({*estimated, *billed}):
        key = (vendor, day)
        few = len(people.get(key, ()))
        if 0 < few < min_group_size:
            reason = f"withheld: fewer than {min_group_size} people make up this estimate (TOKENWISE_MIN_GROUP_SIZE)"
            rows.append(ReconcileRow(vendor, day, None, None, tuple(sorted(sources.get(key, ()))), reason))
            continue
        rows.append(ReconcileRow(vendor, day, estimated.get(key), billed.get(key), tuple(sorted(sources.get(key, ())))))
    return rows


def reconcile_lines(rows: Sequence[ReconcileRow]) -> dict[str, str]:
    """Per vendor, one line of its billed days ("2026-11-23: estimated $1.20, billed $1.25, difference $0.05;
    ..."), for the manager summary's facts; withheld days, and days the vendor billed nothing for (no billed
    pull configured), are left out."""
    lines: dict[str, list[str]] = {}
    for row in rows:
        if row.withheld or row.billed_usd is None:
            continue
        parts = [f"estimated {money(row.estimated_usd)}" if row.estimated_usd is not None else "no estimate"]
        parts.append(f"billed {money(row.billed_usd)}")
        if row.difference_usd is not None:
            parts.append(f"difference {money(row.difference_usd)}")
        lines.setdefault(row.vendor, []).append(f"{row.day.isoformat()}: {', '.join(parts)}")
    return {vendor: "; ".join(days) for vendor, days in lines.items()}
