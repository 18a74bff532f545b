"""`/tokenwise` text -> a request: pure, fast (it runs before Slack's 3-second ack) and never raises.

Subcommands live in one table, `SUBCOMMANDS`: each entry is a `Subcommand` with its usage, its one-line
summary, the parser of its arguments (text -> values, checked once here), the handler that answers it
and its place in the help. Adding a subcommand is one entry, `add_subcommand(Subcommand(...))` in the
module of its handler (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.periods import PERIOD_HELP, PeriodError, parse_period_spec
from storage.schedules import SubscriptionError

if TYPE_CHECKING:
    from handlers.slack.blocks import Message
    from handlers.slack.caller import Caller

COMMAND = "/tokenwise"
MAX_TEXT = 4000  # Slack caps slash-command text well below this; anything longer is not ours


class CommandError(ValueError):
    """The text is not a valid use of a subcommand; the message is one line saying what would be."""


@dataclass(frozen=True)
class Later:
    """A reply that waits on a model or a vendor: `working` is sent at once and then replaced by what
    `finish()` returns, which runs after the caller's transaction has ended, never inside it."""

    working: Message
    finish: Callable[[], Message]


ArgumentParser = Callable[[str], dict[str, Any]]
Handler = Callable[["Caller", "CommandRequest"], "Message | Later"]


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str  # "me [period]"
    summary: str  # one line for the help
    parse: ArgumentParser
    handle: Handler | None = None  # None: answered in the ack (help)
    aliases: tuple[str, ...] = ()
    order: int = 100  # its place in the help, lowest first


@dataclass(frozen=True)
class CommandRequest:
    """What someone asked for. `name` is "help" for help; `error` says what was wrong, if anything;
    `options` holds the arguments as values (a period spec, a team name, a digest request...)."""

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
    """A period spec, checked now and resolved by the handler in the zone its view uses."""
    try:
        return {"period": parse_period_spec(args)}
    except PeriodError as error:
        raise CommandError(str(error)) from error


def team_argument(args: str) -> dict[str, Any]:
    if len(args) > 100:
        raise CommandError("Team names are at most 100 characters.")
    return {"team": args or None}


def checked(parser: Callable[[str], Any], key: str) -> ArgumentParser:
    """An argument parser from a parser that raises SubscriptionError: its value under `key`."""

    def parse(args: str) -> dict[str, Any]:
        try:
            return {key: parser(args)}
        except SubscriptionError as error:
            raise CommandError(str(error)) from error

    return parse


SUBCOMMANDS: dict[str, Subcommand] = {}


def add_subcommand(subcommand: Subcommand) -> Subcommand:
    """Register a subcommand (and its aliases) in the table the parser, the help and the answer read."""
    for name in (subcommand.name, *subcommand.aliases):
        SUBCOMMANDS[name] = subcommand
    return subcommand


HELP = add_subcommand(Subcommand("help", "help", "This list.", no_arguments("help"), order=0))


def help_lines() -> list[tuple[str, str]]:
    """(usage, summary) of each subcommand once, by `order`, then in the order they were added."""
    seen: dict[str, Subcommand] = {}
    for subcommand in SUBCOMMANDS.values():
        seen.setdefault(subcommand.name, subcommand)
    ranked = sorted(enumerate(seen.values()), key=lambda pair: (pair[1].order, pair[0]))
    return [(f"{COMMAND} {s.usage}", s.summary) for _, s in ranked]


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
    "Handler",
    "Subcommand",
    "add_subcommand",
    "checked",
    "help_lines",
    "parse_command",
]
