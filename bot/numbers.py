"""How every screen writes a number: money, shares, counts and trends (Slack, the terminal, summaries)."""

from __future__ import annotations

from decimal import Decimal


def money(value: Decimal | float | None) -> str:
    return "—" if value is None else f"${Decimal(str(value)):,.2f}"


def whole_percent(value: Decimal | float) -> int:
    """A fraction as a whole percentage, rounded half to even; never minus zero ("-0%")."""
    return round(float(value) * 100)


def share(value: Decimal | float | None) -> str:
    return "—" if value is None else f"{whole_percent(value)}%"


def signed_percent(value: float | None) -> str | None:
    """A change as "+12%" or "-3%"; one that rounds to nothing is "0%", never "-0%"."""
    if value is None:
        return None
    percent = whole_percent(value)
    return f"{percent:+d}%" if percent else "0%"


def number(value: int | Decimal | float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{float(value):,.1f}".removesuffix(".0")


def trend(value: float | None) -> str:
    if value is None:
        return ""
    percent = whole_percent(value)
    arrow = "▲" if percent > 0 else "▼" if percent < 0 else "="
    return f"{arrow} {abs(percent)}%"
