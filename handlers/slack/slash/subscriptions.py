"""What people type after `/tokenwise digest`, `nudges` and `forget-me`, parsed into requests.

Pure functions: any text gives a request or a SubscriptionError whose message says what would work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from bot.periods import PeriodError, zone
from storage.schedules import WEEKDAYS, Schedule, SubscriptionError

DIGEST_USAGE = (
    "`/tokenwise digest subscribe [team] [weekday HH:MM] [time zone]`, `digest unsubscribe [team]`, "
    "`digest list` or `digest preview [team]`"
)
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_ABBREVIATIONS = {name[:3]: index for index, name in enumerate(WEEKDAYS)} | {"tues": 1, "thur": 3, "thurs": 3}


def parse_weekday(text: str) -> int:
    """Monday is 0. Full names or three-letter abbreviations, any case, optional trailing 's'."""
    word = text.strip().lower().rstrip(".")
    if word.endswith("s") and word[:-1] in WEEKDAYS:
        word = word[:-1]
    if word in WEEKDAYS:
        return WEEKDAYS.index(word)
    if word in _ABBREVIATIONS:
        return _ABBREVIATIONS[word]
    raise SubscriptionError(f"'{text.strip()}' is not a day of the week; use monday to sunday.")


def parse_time(text: str) -> tuple[int, int]:
    """24-hour HH:MM (or H:MM)."""
    match = _TIME.match(text.strip())
    if not match:
        raise SubscriptionError(f"'{text.strip()}' is not a time; use HH:MM in 24-hour form, for example 09:00.")
    return int(match.group(1)), int(match.group(2))


def _is_weekday(word: str) -> bool:
    try:
        parse_weekday(word)
    except SubscriptionError:
        return False
    return True


def _looks_like_zone(word: str) -> bool:
    return "/" in word or word.upper() in {"UTC", "GMT"}


@dataclass(frozen=True)
class SubscribeRequest:
    team: str | None
    schedule: Schedule
    zone_given: bool = True  # False: `schedule` is in the default zone, to be replaced by the caller's


def parse_subscribe(text: str, default_timezone: str = "UTC") -> SubscribeRequest:
    """`[team] [weekday HH:MM] [time zone]`, in any order; defaults Monday 09:00 in `default_timezone`."""
    weekday: int | None = None
    at: tuple[int, int] | None = None
    timezone: str | None = None
    team_words: list[str] = []
    for word in text.split():
        if _is_weekday(word):
            if weekday is not None:
                raise SubscriptionError("Give one day of the week, for example `monday 09:00`.")
            weekday = parse_weekday(word)
        elif ":" in word and "/" not in word:
            if at is not None:
                raise SubscriptionError("Give one time, for example `monday 09:00`.")
            at = parse_time(word)
        elif _looks_like_zone(word):
            if timezone is not None:
                raise SubscriptionError("Give one time zone, for example Europe/Berlin.")
            try:
                zone(word)
            except PeriodError as error:
                raise SubscriptionError(str(error)) from error
            timezone = "UTC" if word.upper() in {"UTC", "GMT"} else word
        else:
            team_words.append(word)
    hour, minute = at if at is not None else (9, 0)
    team = " ".join(team_words) or None
    if team is not None and len(team) > 100:
        raise SubscriptionError("That team name is too long; team names have at most 100 characters.")
    return SubscribeRequest(
        team,
        Schedule(weekday if weekday is not None else 0, hour, minute, timezone or default_timezone),
        zone_given=timezone is not None,
    )


DigestAction = Literal["subscribe", "unsubscribe", "list", "preview"]


@dataclass(frozen=True)
class DigestRequest:
    action: DigestAction
    team: str | None = None
    schedule: Schedule | None = None
    zone_given: bool = True

    def schedule_in(self, caller_tz: str) -> Schedule | None:
        """The schedule, in the caller's time zone when they named none."""
        if self.schedule is None or self.zone_given:
            return self.schedule
        return replace(self.schedule, timezone=caller_tz)


def parse_digest(text: str, default_timezone: str = "UTC") -> DigestRequest:
    """The words after `/tokenwise digest`."""
    words = text.split(maxsplit=1)
    if not words:
        raise SubscriptionError(f"Tell me what to do with digests: {DIGEST_USAGE}.")
    action, rest = words[0].lower(), (words[1] if len(words) > 1 else "")
    if action == "subscribe":
        request = parse_subscribe(rest, default_timezone)
        return DigestRequest("subscribe", request.team, request.schedule, request.zone_given)
    if action in {"unsubscribe", "preview"}:
        team = " ".join(rest.split()) or None
        if team is not None and len(team) > 100:
            raise SubscriptionError("That team name is too long; team names have at most 100 characters.")
        return DigestRequest(action, team)  # type: ignore[arg-type]
    if action == "list":
        if rest.strip():
            raise SubscriptionError("`digest list` takes nothing after it.")
        return DigestRequest("list")
    raise SubscriptionError(f"'{words[0]}' is not a digest command; use {DIGEST_USAGE}.")


def parse_nudges(text: str) -> bool:
    """`on` or `off` (yes/no, true/false, enable/disable also work)."""
    word = text.strip().lower()
    if word in {"on", "yes", "true", "enable", "enabled"}:
        return True
    if word in {"off", "no", "false", "disable", "disabled"}:
        return False
    raise SubscriptionError("Use `/tokenwise nudges on` or `/tokenwise nudges off`.")


FORGET_CONFIRMATION = "confirm"


def parse_forget_me(text: str) -> bool:
    """True when the caller confirmed (`forget-me confirm`); False asks them to confirm first."""
    word = text.strip().lower()
    if not word:
        return False
    if word == FORGET_CONFIRMATION:
        return True
    raise SubscriptionError("To delete your annotations and notes, type `/tokenwise forget-me confirm`.")
