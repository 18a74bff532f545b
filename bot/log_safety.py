"""Tracebacks without data: what a log at INFO and above may say about an unexpected error; access log
lines without query strings.

An exception's message can quote what it failed on: a database error its row (an email, a note), a
Slack API error the response. Logs keep the traceback's frames, which are code, and the error's type;
the message goes to DEBUG only.
"""

from __future__ import annotations

import copy
import logging
import traceback
from typing import Any


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


class PathWithoutQuery(logging.Filter):
    """uvicorn's access log line with the path only: a query string can carry what must not be logged (a
    token pasted into a URL, which the ingest API refuses with 401; a one-time OAuth code)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].split("?", 1)[0], *args[3:])
        return True


def access_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration, its access log lines carrying no query string (`PathWithoutQuery`)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["path_without_query"] = {"()": PathWithoutQuery}
    config["loggers"]["uvicorn.access"]["filters"] = ["path_without_query"]
    return config
