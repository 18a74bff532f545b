"""How every screen writes a number: money, shares, counts and trends (Slack, the terminal, summaries)."""

from __future__ import annotations

from decimal import Decimal


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
