"""Cost from model and tokens, via genai-prices, when a source reports none.

Anthropic-style usage reports cache tokens beside input tokens; genai-prices counts them inside
`input_tokens` (OpenAI's convention). `price()` takes the Anthropic-style split and converts.
"""

from __future__ import annotations

import warnings
from decimal import Decimal
from functools import lru_cache

from genai_prices import Usage, calc_price


@lru_cache(maxsize=4096)
def _known(model: str) -> bool:
    try:
        calc_price(Usage(input_tokens=1, output_tokens=1), model_ref=model)
    except LookupError:
        return False
    return True


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
