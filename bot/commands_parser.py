"""`/tokenwise` text -> a request: pure, fast (it runs before Slack's 3-second ack) and never raises.

Subcommands live in one table, `SUBCOMMANDS` (name -> usage, summary, argument parser). Adding one is
an entry here plus a handler of the same name in `handlers/commands.py` (see docs/slack.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from bot.periods import PERIOD_HELP, PeriodError, parse_period

COMMAND = "/tokenwise"
MAX_TEXT = 4000  # Slack caps slash-command text well below this; anything longer is not ours
CHECK_DAY = date(2026, 1, 15)  # periods are validated against a fixed day; the handler uses the real one


class CommandError(ValueError):
    """The text is not a valid use of a subcommand; the message is one line saying what would be."""


ArgumentParser = Callable[[str], dict[str, Any]]


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str  # "me [period]"
    summary: str  # one line for the help
    parse: ArgumentParser
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandRequest:
    """What someone asked for. `name` is "help" for help; `error` says what was wrong, if anything."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    text: str = ""

    @property
    def answers_at_once(self) -> bool:
        """Help and errors are answered in the ack itself; everything else after it."""
        return self.name == "help" or self.error is not None


def no_arguments(name: str) -> ArgumentParser:
    def parse(args: str) -> dict[str, Any]:
        if args:
            raise CommandError(f"`{name}` takes nothing after it; try `{COMMAND} {name}`.")
        return {}

    return parse


def period_argument(args: str) -> dict[str, Any]:
    try:
        parse_period(args, CHECK_DAY, "UTC")
    except PeriodError as error:
        raise CommandError(str(error)) from error
    return {"period": args}


def team_argument(args: str) -> dict[str, Any]:
    if len(args) > 100:
        raise CommandError("Team names are at most 100 characters.")
    return {"team": args or None}


SUBCOMMANDS: dict[str, Subcommand] = {}


def add_subcommand(subcommand: Subcommand) -> Subcommand:
    """Register a subcommand (and its aliases) in the table the parser and the help read."""
    for name in (subcommand.name, *subcommand.aliases):
        SUBCOMMANDS[name] = subcommand
    return subcommand


add_subcommand(Subcommand("help", "help", "This list.", no_arguments("help")))
add_subcommand(
    Subcommand(
        "me",
        "me [this week|last week|30d|YYYY-MM-DD..YYYY-MM-DD]",
        "Your own numbers, privately, against the period before.",
        period_argument,
    )
)
add_subcommand(Subcommand("runs", "runs", "Your latest unreviewed runs, to mark useful or not.", no_arguments("runs")))
add_subcommand(
    Subcommand("team", "team [name]", "A team's totals for last week (never anyone's own numbers).", team_argument)
)
add_subcommand(
    Subcommand(
        "connect",
        "connect",
        "Your own ingest token (replaces the last one) and how to send usage.",
        no_arguments("connect"),
    )
)


def _digest_arguments(args: str) -> dict[str, Any]:
    from bot.subscriptions import parse_digest
    from storage.digests import SubscriptionError

    try:
        parse_digest(args, "UTC")  # validated here; the handler parses again in the caller's time zone
    except SubscriptionError as error:
        raise CommandError(str(error)) from error
    return {"digest": args}


def _switch_argument(parser_name: str) -> ArgumentParser:
    def parse(args: str) -> dict[str, Any]:
        from bot import subscriptions
        from storage.digests import SubscriptionError

        try:
            return {"value": getattr(subscriptions, parser_name)(args)}
        except SubscriptionError as error:
            raise CommandError(str(error)) from error

    return parse


add_subcommand(
    Subcommand(
        "digest",
        "digest subscribe [team] [weekday HH:MM] [time zone] | unsubscribe [team] | list | preview [team]",
        "This channel's weekly team digest (team figures only, never a ranking).",
        _digest_arguments,
    )
)
add_subcommand(
    Subcommand(
        "summary", "summary [team]", "For a team's managers: its aggregates with a short summary.", team_argument
    )
)
add_subcommand(
    Subcommand(
        "nudges", "nudges on|off", "Your private Monday reminder to review runs.", _switch_argument("parse_nudges")
    )
)
add_subcommand(
    Subcommand(
        "forget-me",
        "forget-me [confirm]",
        "Delete all your annotations and notes (asks to confirm first).",
        _switch_argument("parse_forget_me"),
    )
)


def help_lines() -> list[tuple[str, str]]:
    """(usage, summary) of each subcommand once, in the order they were added."""
    seen: dict[str, Subcommand] = {}
    for subcommand in SUBCOMMANDS.values():
        seen.setdefault(subcommand.name, subcommand)
    return [(f"{COMMAND} {s.usage}", s.summary) for s in seen.values()]


def parse_command(text: str | None) -> CommandRequest:
    """Any text gives help, an error with help, or a request; it never raises."""
    cleaned = " ".join((text or "").replace("\u00a0", " ").split())
    if not cleaned:
        return CommandRequest("help", text="")
    if len(cleaned) > MAX_TEXT:
        return CommandRequest("help", error="That is too long for a Tokenwise command.", text=cleaned[:100])
    word, _, rest = cleaned.partition(" ")
    subcommand = SUBCOMMANDS.get(word.lower())
    if subcommand is None:
        shown = word if len(word) <= 40 else word[:39] + "…"
        return CommandRequest("help", error=f"There is no `{shown}` subcommand.", text=cleaned)
    try:
        options = subcommand.parse(rest)
    except CommandError as error:
        return CommandRequest(subcommand.name, error=str(error), text=cleaned)
    return CommandRequest(subcommand.name, options=options, text=cleaned)


__all__ = [
    "COMMAND",
    "PERIOD_HELP",
    "SUBCOMMANDS",
    "CommandError",
    "CommandRequest",
    "Subcommand",
    "add_subcommand",
    "help_lines",
    "parse_command",
]
