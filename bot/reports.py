"""Reports: metrics for a scope and period, with the privacy rule applied, as plain values.

The CLI, Slack and the digest all render these; none of them computes a number of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlmodel import Session

from bot.periods import Period
from storage.metrics import Metrics, Scope, compute_windows

METRIC_KEYS = (
    "runs",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "cost_unknown_records",
    "reviewed_share",
    "useful_runs",
    "useful_rate",
    "outcome_value",
    "cost_per_useful_run",
    "cost_per_outcome",
    "verified_spend_share",
)
MONEY = Decimal("0.000001")
SHARE = Decimal("0.0001")


@dataclass
class Figures:
    """Metrics for one window, or the reason they are withheld."""

    period: Period
    metrics: Metrics | None
    withheld: str | None = None

    @property
    def shown(self) -> bool:
        return self.metrics is not None


@dataclass
class Report:
    scope: Scope
    period: Period
    totals: Figures
    previous: Figures
    periods: list[Figures] = field(default_factory=list)


def withheld_reason(active: int, min_group_size: int) -> str:
    return (
        f"Withheld: fewer than {min_group_size} people were active in this group and period, "
        "so its figures could point at individuals."
    )


def figures_for(session: Session, scope: Scope, periods: Sequence[Period], min_group_size: int) -> list[Figures]:
    """Metrics for each of several windows that do not overlap, read together (one statement per table); a
    group below the minimum size gets a reason instead of numbers."""
    found = compute_windows(session, scope, [(period.start, period.end) for period in periods])
    return [
        _privacy_rule(scope, period, metrics, min_group_size) for period, metrics in zip(periods, found, strict=True)
    ]


def _privacy_rule(scope: Scope, period: Period, metrics: Metrics, min_group_size: int) -> Figures:
    if scope.is_group and metrics.active_people < min_group_size:
        return Figures(period, None, withheld_reason(metrics.active_people, min_group_size))
    return Figures(period, metrics)


def build_report(session: Session, scope: Scope, period: Period, min_group_size: int, by: str | None = None) -> Report:
    previous, totals = figures_for(session, scope, [period.previous(), period], min_group_size)
    return Report(
        scope=scope,
        period=period,
        totals=totals,
        previous=previous,
        periods=figures_for(session, scope, list(period.split(by)), min_group_size) if by else [],
    )


def _money(value: Decimal | None) -> float | None:
    return None if value is None else float(value.quantize(MONEY, rounding=ROUND_HALF_EVEN))


def _share(value: Decimal | None) -> float | None:
    return None if value is None else float(value.quantize(SHARE, rounding=ROUND_HALF_EVEN))


def metric_values(metrics: Metrics | None) -> dict[str, Any]:
    """The documented metric keys with JSON-ready values; all None when withheld."""
    if metrics is None:
        return dict.fromkeys(METRIC_KEYS)
    return {
        "runs": metrics.runs,
        "input_tokens": metrics.input_tokens,
        "output_tokens": metrics.output_tokens,
        "cache_read_tokens": metrics.cache_read_tokens,
        "cache_write_tokens": metrics.cache_write_tokens,
        "cost_usd": _money(metrics.cost_usd),
        "cost_unknown_records": metrics.cost_unknown_records,
        "reviewed_share": _share(metrics.reviewed_share),
        "useful_runs": float(metrics.useful_runs),
        "useful_rate": _share(metrics.useful_rate),
        "outcome_value": float(metrics.outcome_value),
        "cost_per_useful_run": _money(metrics.cost_per_useful_run),
        "cost_per_outcome": _money(metrics.cost_per_outcome),
        "verified_spend_share": _share(metrics.verified_spend_share),
    }


def figures_json(item: Figures) -> dict[str, Any]:
    body: dict[str, Any] = {"start": item.period.since.isoformat(), "end": item.period.until.isoformat()}
    body.update(metric_values(item.metrics))
    body["outcomes_by_kind"] = dict(item.metrics.outcomes_by_kind) if item.metrics else None
    body["withheld"] = item.withheld
    return body


def change(current: Figures, previous: Figures) -> dict[str, float | None]:
    """Relative change of each metric against the previous window (None where undefined)."""
    now, before = metric_values(current.metrics), metric_values(previous.metrics)
    result: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        a, b = now[key], before[key]
        result[key] = None if a is None or b is None or b == 0 else round((a - b) / abs(b), 4)
    return result


def report_json(report: Report) -> dict[str, Any]:
    return {
        "scope": report.scope.label(),
        "since": report.period.since.isoformat(),
        "until": report.period.until.isoformat(),
        "tz": report.period.tz,
        "totals": figures_json(report.totals),
        "previous": figures_json(report.previous),
        "change": change(report.totals, report.previous),
        "periods": [figures_json(item) for item in report.periods],
    }
