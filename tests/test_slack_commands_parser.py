"""The /tokenwise parser: pure, table-driven, and total (any text gives help, an error or a request)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.periods import PeriodSpec
from handlers.slack import slash  # noqa: F401  (fills the table)
from handlers.slack.slash.registry import (
    SUBCOMMANDS,
    Subcommand,
    add_subcommand,
    help_lines,
    no_arguments,
    parse_command,
)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_help_or_a_result_and_never_a_crash(text: str) -> None:
    request = parse_command(text)
    assert request.name in SUBCOMMANDS
    assert request.error is None or (request.error.strip() and "\n" not in request.error)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["me", "runs", "team", "connect", "help"]), st.text(max_size=80))
def test_any_arguments_to_a_known_subcommand_give_that_subcommand(name: str, rest: str) -> None:
    request = parse_command(f"{name} {rest}")
    assert request.name == name or request.error


def test_empty_and_blank_text_is_help() -> None:
    for text in ("", "   ", None, "\u00a0"):
        request = parse_command(text)
        assert (request.name, request.error) == ("help", None)
        assert request.answers_at_once


def test_subcommands_are_case_insensitive_and_spacing_is_forgiven() -> None:
    request = parse_command("  ME   last    week ")
    assert (request.name, request.options, request.error) == ("me", {"period": PeriodSpec("last_week")}, None)
    assert not request.answers_at_once


def test_periods_are_validated_with_the_sentence_from_periods() -> None:
    assert parse_command("me 30d").options == {"period": PeriodSpec("days", days=30)}
    assert parse_command("me 2026-11-01..2026-11-07").error is None
    bad = parse_command("me 2026-11-07..2026-11-01")
    assert bad.name == "me" and bad.error == "The start 2026-11-07 is after the end 2026-11-01."
    assert parse_command("me 999d").error == "'999d' is out of range; pick 1d to 366d."


def test_team_keeps_the_name_as_typed() -> None:
    assert parse_command("team Data Science").options == {"team": "Data Science"}
    assert parse_command("team").options == {"team": None}


def test_unknown_subcommands_name_what_was_typed() -> None:
    request = parse_command("delete everything")
    assert request.name == "help"
    assert request.error == "There is no `delete` subcommand."


def test_extra_words_after_a_subcommand_without_arguments_are_an_error() -> None:
    assert parse_command("runs please").error == "`runs` takes nothing after it; try `/tokenwise runs`."


def test_help_lists_each_subcommand_once_in_order() -> None:
    usages = [usage.split()[1] for usage, _ in help_lines()]
    assert usages[:5] == ["help", "me", "runs", "team", "connect"]
    assert len(usages) == len(set(usages))


def test_every_subcommand_has_a_handler() -> None:
    assert all(s.handle is not None for s in SUBCOMMANDS.values() if s.name != "help")


def test_a_new_subcommand_is_one_table_entry() -> None:
    added = add_subcommand(Subcommand("ping", "ping", "Answers pong.", no_arguments("ping"), aliases=("p",)))
    try:
        assert parse_command("p").name == "ping"
        assert ("/tokenwise ping", "Answers pong.") in help_lines()
    finally:
        for name in ("ping", *added.aliases):
            SUBCOMMANDS.pop(name)
