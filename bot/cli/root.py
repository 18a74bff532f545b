"""`tokenwise`: the command line, the product's front door for operators."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from bot.config import Settings, get_settings
from bot.periods import Period, PeriodError, date_range, parse_date, zone
from storage.db import make_engine, session_scope, upgrade
from storage.people import NotFound

app = typer.Typer(
    help="Tokenwise: AI use measured by outcomes, not token volume.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console()
err = Console(stderr=True)


class UserError(Exception):
    """An error the user caused and can fix; printed as one line, exit status 2."""


def fail(message: str) -> NoReturn:
    err.print(f"[red]Error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as error:
        first = error.errors()[0]
        fail(f"Bad setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


def open_engine(config: Settings | None = None) -> Engine:
    """The configured database, upgraded to the current schema (cheap when already current)."""
    config = config or settings()
    backend = config.database_url.split(":", 1)[0].split("+", 1)[0]
    if backend not in {"sqlite", "postgresql", "postgres"}:
        fail(f"DATABASE_URL must be sqlite:///PATH or postgresql://…; got a '{backend}' URL.")
    try:
        engine = make_engine(config.database_url)
        upgrade(engine)
    except OperationalError as error:
        fail(f"Cannot open the database at DATABASE_URL: {error.orig}")
    except Exception as error:  # a malformed URL, an unknown driver
        if isinstance(error, typer.Exit):
            raise
        fail(f"Cannot use DATABASE_URL '{config.database_url}': {error}")
    return engine


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can cause into one clear line and exit status 2."""
    try:
        yield
    except (UserError, NotFound, PeriodError) as error:
        fail(str(error))


@contextmanager
def database(config: Settings | None = None) -> Iterator[Session]:
    engine = open_engine(config)
    try:
        with user_errors(), session_scope(engine) as session:
            yield session
    finally:
        engine.dispose()


def today_utc() -> date:
    return datetime.now(UTC).date()


def resolve_period(since: str | None, until: str | None, tz: str, default_days: int = 28) -> Period:
    """Inclusive local dates; without them, the last `default_days` days up to today."""
    zone(tz)
    end = parse_date(until, "--until date") if until else datetime.now(zone(tz)).date()
    start = parse_date(since, "--since date") if since else end - timedelta(days=default_days - 1)
    return date_range(start, end, tz)


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
