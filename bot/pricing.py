"""Cost from model and tokens, via genai-prices, when a source reports none.

Anthropic-style usage reports cache tokens beside input tokens; genai-prices counts them inside
`input_tokens` (OpenAI's convention). `price()` takes the Anthropic-style split and converts.
"""

from __future__ import annotations

import warnings
from bisect import bisect_left
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from genai_prices import Usage, calc_price
from genai_prices.types import TieredPrices

from storage.types import NANO

EXACT_TOKENS = 10**12  # below this, a token count times a rate stays exact in Decimal's 28 digits


@lru_cache(maxsize=4096)
def _known(model: str) -> bool:
    try:
        calc_price(Usage(input_tokens=1, output_tokens=1), model_ref=model)
    except LookupError:
        return False
    return True


def ready() -> None:
    """Load genai-prices' price list now (it loads at the first price): before forking processes that price,
    so that they share it instead of each loading it."""
    _known("claude-sonnet-4-5")


def price(
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Decimal | None:
    """USD cost of one call, or None when the model is unknown (unknown is never zero)."""
    if not model or not _known(model):
        return None
    usage = Usage(
        input_tokens=input_tokens + cache_read_tokens + cache_write_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return Decimal(calc_price(usage, model_ref=model).total_price)
        except (LookupError, ValueError):
            return None


@dataclass(frozen=True)
class _Linear:
    """A model's price inside one tier: a fixed part plus a rate per token of each kind."""

    fixed: Decimal
    rates: tuple[Decimal, Decimal, Decimal, Decimal]

    def __call__(self, tokens: tuple[int, int, int, int]) -> Decimal:
        r = self.rates  # written out, not sum() over a generator: an importer prices every record
        return self.fixed + (r[0] * tokens[0] + r[1] * tokens[1] + r[2] * tokens[2] + r[3] * tokens[3])


@lru_cache(maxsize=1024)
def _tier_starts(model: str) -> tuple[int, ...] | None:
    """Total-input-token thresholds above which the model's prices change; None when it has no price."""
    if not model or not _known(model):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            prices = calc_price(Usage(input_tokens=1, output_tokens=1), model_ref=model).model_price
        except (LookupError, ValueError):
            return None
    return tuple(sorted({t.start for v in vars(prices).values() if isinstance(v, TieredPrices) for t in v.tiers}))


@lru_cache(maxsize=4096)
def _linear(model: str, tier: int) -> _Linear | None:
    """The model's price in one tier, read off price() at a few points and checked at another one.

    None when the price is not linear there (then fast_price() asks genai-prices every time).
    """
    starts = _tier_starts(model) or ()
    total = (starts[tier - 1] if tier else 0) + 2  # tiers apply above their start
    end = starts[tier] if tier < len(starts) else None
    if end is not None and total + 1_100 > end:
        return None
    points = [
        price(model, total, 0),
        price(model, total + 1, 0),
        price(model, total, 1),
        price(model, total - 1, 0, 1, 0),
        price(model, total - 1, 0, 0, 0),
        price(model, total - 1, 0, 0, 1),
    ]
    if any(p is None for p in points):
        return None
    base, one_more, with_output, with_read, less_one, with_write = (p for p in points if p is not None)
    rates = (one_more - base, with_output - base, with_read - less_one, with_write - less_one)
    linear = _Linear(base - rates[0] * total, rates)
    check = (total + 1_000, 7, 11, 13)
    expected = price(model, *check)
    return linear if expected is not None and linear(check) == expected else None


def fast_price(
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Decimal | None:
    """Exactly price(), at the cost of a dictionary lookup: for importers that price every log line.

    genai-prices takes about a third of a millisecond per call, which made pricing most of the time of a
    large import. Within one price tier a model's cost is linear in its token counts, so the rates are
    read once per model and tier (tests/test_performance.py checks the two agree).
    """
    starts = _tier_starts(model)
    if starts is None:
        return None
    tokens = (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    total = input_tokens + cache_read_tokens + cache_write_tokens
    linear = _linear(model, bisect_left(starts, total))  # how many tiers start below the total (starts sorted)
    if linear is None:
        return price(model, *tokens)
    return linear(tokens)


@lru_cache(maxsize=4096)
def _nano_rates(model: str, tier: int) -> tuple[int, int, int, int, int] | None:
    """The model's price in one tier in whole nano-dollars (fixed part, then per token of each kind), or None
    when a rate is not a whole number of nano-dollars (or the price is not linear there)."""
    linear = _linear(model, tier)
    if linear is None:
        return None
    scaled = [value * NANO for value in (linear.fixed, *linear.rates)]
    if any(value != value.to_integral_value() for value in scaled):
        return None
    fixed, input_rate, output_rate, read_rate, write_rate = (int(value) for value in scaled)
    return fixed, input_rate, output_rate, read_rate, write_rate


def price_nano(
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> int | None:
    """fast_price() in whole nano-dollars (what a cost is stored as), computed in integers: exactly the
    stored value of fast_price's Decimal whenever this answers. None when it cannot be exact that way (an
    unknown model, a rate finer than a nano-dollar a token, counts of a trillion tokens or more): then ask
    fast_price(). genai-prices' rates for the common models are whole nano-dollars a token."""
    starts = _tier_starts(model)
    if starts is None:
        return None
    total = input_tokens + cache_read_tokens + cache_write_tokens
    rates = _nano_rates(model, bisect_left(starts, total))
    if rates is None or total >= EXACT_TOKENS or output_tokens >= EXACT_TOKENS:
        return None
    fixed, input_rate, output_rate, read_rate, write_rate = rates
    return (
        fixed
        + input_rate * input_tokens
        + output_rate * output_tokens
        + read_rate * cache_read_tokens
        + write_rate * cache_write_tokens
    )
