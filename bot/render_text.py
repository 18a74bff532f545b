"""Reports rendered for a terminal with rich tables."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from bot.reports import Figures, Report, change


def money(value: Decimal | float | None) -> str:
    return "—" if value is None else f"${Decimal(str(value)):,.2f}"


def share(value: Decimal | float | None) -> str:
    return "—" if value is None else f"{float(value) * 100:.0f}%"


def number(value: int | Decimal | float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{float(value):,.1f}".removesuffix(".0")


def trend(value: float | None) -> str:
    if value is None:
        return ""
    arrow = "▲" if value > 0 else "▼" if value < 0 else "="
    return f"{arrow} {abs(value) * 100:.0f}%"


def headline_rows(item: Figures) -> list[tuple[str, str]]:
    m = item.metrics
    if m is None:
        return []

    def shown(key: str, show: Callable[[Any], str]) -> str:
        return "withheld" if key in item.hidden else show(item.value(key))

    cost = shown("cost_usd", money)
    if m.cost_unknown_records:
        cost += f" (+{m.cost_unknown_records:,} records of unknown cost)"
    outcomes = ", ".join(f"{kind} {count}" for kind, count in sorted(m.outcomes_by_kind.items())) or "none"
    tokens = (
        "withheld"
        if "total_tokens" in item.hidden
        else f"{m.input_tokens:,} / {m.output_tokens:,} / {m.cache_read_tokens:,} / {m.cache_write_tokens:,}"
    )
    return [
        ("Verified-spend share", shown("verified_spend_share", share)),
        ("Cost per useful run", shown("cost_per_useful_run", money)),
        ("Cost per outcome value", shown("cost_per_outcome", money)),
        ("Outcome value", number(m.outcome_value)),
        ("Outcomes", outcomes),
        ("Runs", number(m.runs)),
        ("Reviewed share", share(m.reviewed_share)),
        ("Useful runs", number(m.useful_runs)),
        ("Useful rate (of reviewed)", share(m.useful_rate)),
        ("Known cost", cost),
        ("Tokens (in / out / cache read / cache write)", tokens),
    ]


def render_report(console: Console, report: Report) -> None:
    console.print(f"[bold]{report.scope.label()}[/bold]  {report.period.label()} ({report.period.tz})")
    if not report.totals.shown:
        console.print(report.totals.withheld or "Withheld.")
        return
    changes = change(report.totals, report.previous)
    keys = {
        "Verified-spend share": "verified_spend_share",
        "Cost per useful run": "cost_per_useful_run",
        "Cost per outcome value": "cost_per_outcome",
        "Outcome value": "outcome_value",
        "Runs": "runs",
        "Reviewed share": "reviewed_share",
        "Useful runs": "useful_runs",
    }
    table = Table(show_header=True, header_style="bold")
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    table.add_column("vs previous", justify="right")
    for label, value in headline_rows(report.totals):
        table.add_row(label, value, trend(changes.get(keys.get(label, ""))))
    console.print(table)
    reasons = sorted(set(report.totals.hidden.values()))
    if reasons:
        console.print(" ".join(reasons))
    if report.totals.withheld_weeks:
        weeks = ", ".join(week.isoformat() for week in report.totals.withheld_weeks)
        console.print(f"Left out of these totals, withheld on their own: the weeks of {weeks}.")
    if report.periods:
        by_period = Table(show_header=True, header_style="bold", title="By period")
        for column in ("Start", "Runs", "Known cost", "Useful runs", "Outcome value", "Verified share"):
            by_period.add_column(column, justify="right")
        for item in report.periods:
            m = item.metrics
            if m is None:
                by_period.add_row(item.period.since.isoformat(), "withheld", "", "", "", "")
                continue
            by_period.add_row(
                item.period.since.isoformat(),
                number(m.runs),
                "withheld" if "cost_usd" in item.hidden else money(m.cost_usd),
                number(m.useful_runs),
                number(m.outcome_value),
                "withheld" if "verified_spend_share" in item.hidden else share(m.verified_spend_share),
            )
        console.print(by_period)
