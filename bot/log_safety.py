"""Tracebacks without data: what a log at INFO and above may say about an unexpected error.

An exception's message can quote what it failed on: a database error its row (an email, a note), a
Slack API error the response. Logs keep the traceback's frames, which are code, and the error's type;
the message goes to DEBUG only.
"""

from __future__ import annotations

import logging
import traceback


def frames(error: BaseException) -> str:
    """The traceback of `error` and the errors it came from, oldest first, messages withheld."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    blocks = [
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_tb(item.__traceback__))
        + f"{type(item).__module__}.{type(item).__qualname__} (message withheld from logs)"
        for item in reversed(chain)
    ]
    return "\n\nwhich led to:\n\n".join(blocks)


def log_failure(log: logging.Logger, message: str, *args: object, error: BaseException) -> None:
    """Log an unexpected failure at ERROR with its frames, and its full message only at DEBUG."""
    log.error(message + "\n%s", *args, frames(error))
    log.debug("Details of the failure above", exc_info=error)
