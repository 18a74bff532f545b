"""Block Kit builders: Slack's limits enforced by graceful truncation, a text fallback always set."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.periods import Period
from bot.reports import Figures, Report
from handlers.slack import blocks
from storage.metrics import Metrics, Scope
from storage.runs import RunView

PERIOD = Period(date(2026, 11, 16), date(2026, 11, 22), "UTC")


def a_run(i: int = 1, title: str | None = "A run", **kwargs: Any) -> RunView:
    values: dict[str, Any] = {
        "id": i,
        "agent": "claude-code",
        "title": title,
        "repo": "acme/api",
        "started_at": datetime(2026, 11, 20, 9, tzinfo=UTC),
        "tokens": 12_345,
        "cost_usd": Decimal("0.42"),
        "outcomes": 1,
    }
    values.update(kwargs)
    return RunView(**values)


def a_report(metrics: Metrics | None, withheld: str | None = None, scope: Scope | None = None) -> Report:
    return Report(
        scope or Scope.person(1, "ada@example.com"),
        PERIOD,
        Figures(PERIOD, metrics, withheld),
        Figures(PERIOD.previous(), Metrics(runs=2, cost_usd=Decimal(1))),
    )


def every_text(value: Any) -> list[tuple[str, str]]:
    """(kind, text) of every text object, button and value in a payload."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        if value.get("type") in {"plain_text", "mrkdwn"} and isinstance(value.get("text"), str):
            found.append((value["type"], value["text"]))
        if value.get("type") == "button":
            found.append(("button", value["text"]["text"]))
            found.append(("value", value.get("value", "")))
        for item in value.values():
            found += every_text(item)
    elif isinstance(value, list):
        for item in value:
            found += every_text(item)
    return found


def assert_within_limits(payload_blocks: list[dict[str, Any]], max_blocks: int) -> None:
    assert len(payload_blocks) <= max_blocks
    for kind, text in every_text(payload_blocks):
        assert len(text) <= {"button": 75, "value": 2000}.get(kind, 3000), (kind, len(text))
    for block in payload_blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        assert len(block.get("fields", [])) <= 10
        assert len(block.get("elements", [])) <= 25


def test_a_long_runs_list_is_cut_to_50_blocks_with_a_line_saying_so() -> None:
    message = blocks.runs_message([a_run(i) for i in range(1, 60)], "UTC")
    assert len(message.blocks) == 50
    assert "more blocks not shown" in message.blocks[-1]["elements"][0]["text"]
    assert_within_limits(message.blocks, 50)


def test_a_huge_title_and_note_are_truncated_with_an_ellipsis() -> None:
    run = a_run(title="x" * 10_000, verdict="useful", note="n" * 10_000, link="https://e.com/" + "a" * 1900)
    message = blocks.runs_message([], "UTC", reviewed=run)
    assert_within_limits(message.blocks, 50)
    assert any("x…" in text and "n…" in text for _, text in every_text(message.blocks))


def test_the_home_view_never_exceeds_100_blocks() -> None:
    many = [a_run(i) for i in range(1, 80)]
    wins = [a_run(i, verdict="useful", share_as_win=True, note="won") for i in range(1, 40)]
    view = blocks.home_view(a_report(Metrics(runs=3)), 200, many, wins, "UTC")
    assert view["type"] == "home"
    assert_within_limits(view["blocks"], 100)


def test_a_header_is_cut_to_150_characters() -> None:
    message = blocks.team_message(a_report(Metrics(runs=1), scope=Scope.team(1, "t" * 400)))
    assert len(message.blocks[0]["text"]["text"]) == 150


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=5000), st.integers(min_value=1, max_value=3000))
def test_clip_never_exceeds_its_limit_and_keeps_short_text(text: str, limit: int) -> None:
    clipped = blocks.clip(text, limit)
    assert len(clipped) <= limit
    if len(text) <= limit:
        assert clipped == text


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=400), st.text(max_size=3000))
def test_buttons_respect_label_and_value_limits(label: str, value: str) -> None:
    element = blocks.button(label * 3, "run_note", value)
    assert len(element["text"]["text"]) <= 75
    assert len(element.get("value", "")) <= 2000


def test_every_builder_sets_a_text_fallback() -> None:
    messages = [
        blocks.help_message([("/tokenwise me", "x")]),
        blocks.help_message([("/tokenwise me", "x")], error="bad"),
        blocks.error_message("bad"),
        blocks.apology(),
        blocks.me_message(a_report(Metrics()), 0),
        blocks.me_message(a_report(Metrics(runs=2, input_tokens=10)), 3, "note"),
        blocks.team_message(a_report(None, "Withheld: too few.", Scope.team(1, "x"))),
        blocks.runs_message([], "UTC"),
        blocks.connect_message("https://t.example.com"),
    ]
    for message in messages:
        assert message.text.strip()
        assert message.blocks


def test_user_text_cannot_mention_or_link() -> None:
    run = a_run(title="<!channel> <https://evil.example|click>")
    shown = " ".join(text for _, text in every_text(blocks.run_blocks(run, "UTC")))
    assert "<!channel>" not in shown and "&lt;!channel&gt;" in shown


def test_the_note_modal_prefills_an_existing_review_and_round_trips_its_values() -> None:
    from bot.devtools.slack_requests import modal_values

    run = a_run(verdict="partly", note="ok", link="https://e.com", share_as_win=True)
    view = blocks.note_modal(run, {"run_id": 1, "response_url": "https://hooks.slack.com/x"})
    assert view["callback_id"] == blocks.VIEW_NOTE and len(view["title"]["text"]) <= 24
    answers = {"verdict": "useful", "note": "better", "link": "https://e.com/2", "win": "win"}
    assert blocks.note_values({"values": modal_values(view, answers)}) == {
        "verdict": "useful",
        "note": "better",
        "link": "https://e.com/2",
        "share_as_win": True,
    }


def test_oversized_modal_metadata_keeps_only_the_run_id() -> None:
    view = blocks.note_modal(a_run(7), {"run_id": 7, "response_url": "https://x/" + "a" * 4000})
    assert view["private_metadata"] == '{"run_id":7}'


def test_coaching_appears_only_for_many_tokens_with_no_outcome_and_no_review() -> None:
    assert blocks.coaching_note(600_000, 0, 0, 500_000)
    assert blocks.coaching_note(600_000, 1, 0, 500_000) is None
    assert blocks.coaching_note(600_000, 0, 1, 500_000) is None
    assert blocks.coaching_note(400_000, 0, 0, 500_000) is None


def test_every_payload_round_trips_through_slack_sdks_block_kit_models() -> None:
    """slack_sdk's models validate Slack's documented limits and drop unknown fields: equal means valid."""
    from slack_sdk.models.blocks import Block
    from slack_sdk.models.views import View

    messages = [
        blocks.help_message([("/tokenwise me", "x")], error="bad"),
        blocks.me_message(a_report(Metrics(runs=2, input_tokens=5)), 3, "note"),
        blocks.team_message(a_report(Metrics(runs=1), scope=Scope.team(1, "x"))),
        blocks.team_message(a_report(None, "Withheld: too few.", Scope.team(1, "x"))),
        blocks.runs_message(
            [a_run(1), a_run(2, verdict="useful", note="n", link="https://e.com", share_as_win=True)],
            "UTC",
            reviewed=a_run(3, verdict="partly"),
        ),
        blocks.connect_message("https://x.example.com"),
        blocks.apology(),
    ]
    for message in messages:
        for block in message.blocks:
            parsed = Block.parse(block)
            assert parsed is not None
            parsed.validate_json()
            assert parsed.to_dict() == block
    views = [
        blocks.note_modal(a_run(1, verdict="useful", note="x", link="https://e.com", share_as_win=True), {"run_id": 1}),
        blocks.home_view(a_report(Metrics(runs=2)), 3, [a_run(1)], [a_run(2, note="w")], "UTC"),
    ]
    for view in views:
        model = View(**view)
        model.validate_json()
        assert model.to_dict() == view
