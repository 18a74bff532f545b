"""The digest's chart: weekly spend split into verified and unverified (stacked bars), outcome value as a
line, drawn with Pillow from a `bot.digest.Digest`."""

from __future__ import annotations

import io
import itertools
import math
import unicodedata
from decimal import Decimal
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from bot.digest import Digest

CHART_SIZE = (700, 360)
_SUPERSAMPLE = 2  # the outcome line is drawn at twice the size and box-reduced: anti-aliased
_VERIFIED = "#2e7d32"
_UNVERIFIED = "#b0bec5"
_OUTCOME = "#1565c0"
_INK = "#333333"
_MUTED = "#757575"
_GRID = "#e8e8e8"
# The plot box, in final pixels: left and right margins hold tick labels and the rotated axis labels.
_LEFT, _RIGHT, _TOP, _BOTTOM = 74, CHART_SIZE[0] - 74, 58, CHART_SIZE[1] - 34
_LEGEND_Y = 40  # the legend's middle, between the title and the plot


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled Aileron at `size` px, loaded once per size (it holds no per-call state)."""
    return ImageFont.load_default(size=size)


def _finite(value: Decimal | None) -> float | None:
    """The value as a float, negative as 0; None for None, NaN and what a float cannot hold."""
    number = float(value) if value is not None and value.is_finite() else math.nan
    return max(number, 0.0) if math.isfinite(number) else None


def _axis(largest: float) -> list[float]:
    """Ticks from 0 in 1-2-2.5-5 x 10^k steps, 4 to 6 of them, the last one above `largest`."""
    top = max(largest * 1.05, 0.01) if largest > 0 else 1.0  # all zero: 0 to 1, not a hairline axis
    magnitude = 10.0 ** math.floor(math.log10(top / 5))
    steps = (m * magnitude for m in (1, 2, 2.5, 5, 10, 20, 25, 50, 100))  # 10 suffices; the rest absorb rounding
    step = next(step for step in steps if math.ceil(top / step - 1e-9) <= 5)
    return [i * step for i in range(max(math.ceil(top / step - 1e-9), 1) + 1)]


def _tick_label(value: float) -> str:
    """Short labels: 750, 1.25k, 12M, 2B, 0.25 (the steps make two decimals enough above 1 000)."""
    if value >= 1e15:
        return f"{value:.1e}"
    for unit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= unit:
            return f"{value / unit:.2f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"


def _fit(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> str:
    """`text` cut with an ellipsis to fit `width` (longest prefix that fits, by bisection)."""
    if font.getlength(text) <= width:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle].rstrip() + "\u2026") <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + "\u2026"


def _drawable(text: str) -> str:
    """One line of text the bundled font can draw: whitespace runs and line breaks made one space, control
    characters dropped, accents folded away (it covers little beyond ASCII): "Équipe" draws as "Equipe"."""
    decomposed = unicodedata.normalize("NFKD", " ".join(text.split()))
    return "".join(c for c in decomposed if not unicodedata.combining(c) and unicodedata.category(c)[0] != "C")


def _vertical_text(image: Image.Image, center: tuple[float, float], text: str, size: int, fill: str) -> None:
    """Text reading bottom to top, centred on `center`: drawn on its own mask, turned, then pasted."""
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    mask = Image.new("L", (int(right - left) + 1, int(bottom - top) + 1))
    ImageDraw.Draw(mask).text((-left, -top), text, font=font, fill=255)
    turned = mask.transpose(Image.Transpose.ROTATE_90)
    x, y = int(center[0] - turned.width / 2), int(center[1] - turned.height / 2)
    image.paste(fill, (x, y, x + turned.width, y + turned.height), turned)


def render_chart(digest: Digest) -> bytes | None:
    """PNG: weekly spend split into verified and unverified (stacked bars), outcome value as a line.

    Drawn directly with Pillow: the layout is fixed, so matplotlib's general artist and layout machinery was
    most of the ~90 ms a chart took, and hundreds of teams' charts can fall due at once; this takes ~8 ms.
    Calls share nothing but the cached fonts (Pillow's FreeType calls hold the GIL): safe in scheduler threads.
    """
    if not digest.shown or not digest.trend:
        return None
    trend = digest.trend
    verified = [_finite(p.verified_cost) or 0.0 for p in trend]
    unverified = [_finite(p.unverified_cost) or 0.0 for p in trend]
    value = [None if p.withheld else _finite(p.outcome_value) for p in trend]
    spend_ticks = _axis(max(v + u for v, u in zip(verified, unverified, strict=True)))
    value_ticks = _axis(max((v for v in value if v is not None), default=0.0))
    slot = (_RIGHT - _LEFT) / len(trend)
    centers = [_LEFT + slot * (i + 0.5) for i in range(len(trend))]
    half_bar = min(slot * 0.31, 48)

    def y_of(amount: float, ticks: list[float]) -> int:
        return round(_BOTTOM - min(amount / ticks[-1], 1.0) * (_BOTTOM - _TOP))

    width = CHART_SIZE[0]
    chart = Image.new("RGB", CHART_SIZE, "white")
    draw = ImageDraw.Draw(chart)

    def box(x0: float, y0: float, x1: float, y1: float, fill: str) -> None:  # [x0, x1) x [y0, y1), maybe empty
        if round(x1) > round(x0) and round(y1) > round(y0):
            draw.rectangle((round(x0), round(y0), round(x1) - 1, round(y1) - 1), fill=fill)

    for tick in spend_ticks:
        y = y_of(tick, spend_ticks)
        box(_LEFT, y, _RIGHT, y + 1, _GRID)
        box(_LEFT - 4, y, _LEFT, y + 1, _INK)
    for tick in value_ticks:
        box(_RIGHT, y_of(tick, value_ticks), _RIGHT + 4, y_of(tick, value_ticks) + 1, _INK)
    for center, point, low, high in zip(centers, trend, verified, unverified, strict=True):
        if not point.withheld:
            x0, x1 = round(center - half_bar), round(center + half_bar)
            y_low, y_high = y_of(low, spend_ticks), y_of(low + high, spend_ticks)
            box(x0, y_low, x1, _BOTTOM, _VERIFIED)
            box(x0, y_high, x1, y_low, _UNVERIFIED)
    box(_LEFT - 1, _TOP, _LEFT, _BOTTOM + 1, _INK)
    box(_RIGHT, _TOP, _RIGHT + 1, _BOTTOM + 1, _INK)
    box(_LEFT - 1, _BOTTOM, _RIGHT + 1, _BOTTOM + 1, _INK)

    # The outcome line joins consecutive shown weeks only: a withheld week breaks it, a lone week is a dot.
    # It is drawn on a mask at _SUPERSAMPLE times the size, reduced (anti-aliasing it), then painted blue.
    s, band = _SUPERSAMPLE, (_LEFT - 6, _LEGEND_Y - 6, _RIGHT + 6, _BOTTOM + 6)  # the legend and the plot
    mask = Image.new("L", ((band[2] - band[0]) * s, (band[3] - band[1]) * s))
    lines = ImageDraw.Draw(mask)

    def dot(x: float, y: float) -> None:
        x, y = (x - band[0]) * s, (y - band[1]) * s
        lines.ellipse((x - 4 * s, y - 4 * s, x + 4 * s, y + 4 * s), fill=255)

    def line(x0: float, y0: float, x1: float, y1: float) -> None:
        ends = ((x0 - band[0]) * s, (y0 - band[1]) * s, (x1 - band[0]) * s, (y1 - band[1]) * s)
        lines.line(ends, fill=255, width=2 * s)

    markers = [None if v is None else (c, y_of(v, value_ticks)) for c, v in zip(centers, value, strict=True)]
    for start, end in itertools.pairwise(markers):
        if start is not None and end is not None:
            line(*start, *end)
    for marker in markers:
        if marker is not None:
            dot(*marker)

    legend_font = _font(11)
    x = float(_LEFT)
    for colour, label in ((_VERIFIED, "Verified spend"), (_UNVERIFIED, "Unverified spend"), (_OUTCOME, None)):
        if label is None:
            line(x, _LEGEND_Y, x + 18, _LEGEND_Y)
            dot(x + 9, _LEGEND_Y)
            x += 18
            label = "Outcome value"
        else:
            box(x, _LEGEND_Y - 5, x + 10, _LEGEND_Y + 5, colour)
            x += 10
        draw.text((x + 5, _LEGEND_Y), label, font=legend_font, fill=_INK, anchor="lm")
        x += 5 + legend_font.getlength(label) + 16
    chart.paste(_OUTCOME, band, mask.reduce(s))

    # Text at the final size, where FreeType's own anti-aliasing and hinting keep it crisp.
    tick_font = _font(11)
    for tick in spend_ticks:
        draw.text((_LEFT - 7, y_of(tick, spend_ticks)), _tick_label(tick), font=tick_font, fill=_INK, anchor="rm")
    for tick in value_ticks:
        draw.text((_RIGHT + 7, y_of(tick, value_ticks)), _tick_label(tick), font=tick_font, fill=_INK, anchor="lm")
    # Long trends label every few weeks, counted back from the current one, so the labels never overlap.
    every = math.ceil((tick_font.getlength("May 00") + 8) / slot)
    fits_withheld = slot > _font(10).getlength("withheld") + 4
    for i, (center, point) in enumerate(zip(centers, trend, strict=True)):
        if (len(trend) - 1 - i) % every == 0:
            label = point.period.since.strftime("%b %d")
            draw.text((center, _BOTTOM + 7), label, font=tick_font, fill=_INK, anchor="mt")
        if point.withheld and fits_withheld:
            draw.text((center, _BOTTOM - 4), "withheld", font=_font(10), fill=_MUTED, anchor="md")
    title_font = _font(14)
    suffix = f": spend and outcome value, last {len(trend)} weeks"
    name = _fit(_drawable(digest.title), title_font, width - 20 - title_font.getlength(suffix))
    draw.text((width / 2, 10), name + suffix, font=title_font, fill=_INK, anchor="mt")
    _vertical_text(chart, (16, (_TOP + _BOTTOM) / 2), "Spend (USD)", 12, _INK)
    _vertical_text(chart, (width - 16, (_TOP + _BOTTOM) / 2), "Outcome value", 12, _INK)

    buffer = io.BytesIO()
    chart.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
