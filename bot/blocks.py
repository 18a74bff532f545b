"""Block Kit, built in one place from plain values, within Slack's limits."""

from __future__ import annotations

from typing import Any

from bot.render_text import money, number, share, trend

Block = dict[str, Any]
TEXT_LIMIT = 3000
HEADER_LIMIT = 150
MAX_BLOCKS = 50


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, HEADER_LIMIT), "emoji": True}}


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, TEXT_LIMIT)}}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, TEXT_LIMIT)}]}


def fields(pairs: list[tuple[str, str]]) -> Block:
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": clip(f"*{label}*\n{value}", 2000)} for label, value in pairs[:10]],
    }


def escape(text: str) -> str:
    """Slack mrkdwn escaping for text people wrote."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain_lines(blocks: list[Block]) -> list[str]:
    """The text of blocks, one line per text element, for terminals and logs."""
    lines: list[str] = []
    for block in blocks:
        if "text" in block and isinstance(block["text"], dict):
            lines.extend(str(block["text"].get("text", "")).splitlines())
        for item in block.get("fields", []) + block.get("elements", []):
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                lines.extend(item["text"].splitlines())
    return lines


# -- digests ---------------------------------------------------------------------------------------

PRIVACY_NOTE = "Team figures only: nobody is ranked and no one's individual numbers are shown."


def _with_trend(value: str, change: float | None) -> str:
    arrow = trend(change)
    return f"{value}  ({arrow} vs the week before)" if arrow else value


def _trend_line(label: str, values: list[str]) -> str:
    return f"{label}: " + " → ".join(values)


def digest_message(digest: Any) -> tuple[str, list[Block]]:
    """A weekly digest (bot.digest.Digest) as fallback text and blocks."""
    period = digest.period
    when = f"{period.since.strftime('%b %d')} – {period.until.strftime('%b %d, %Y')} ({period.tz})"
    title = f"Weekly AI outcomes · {digest.title}"
    blocks: list[Block] = [header(title), context(when)]
    if not digest.shown:
        reason = digest.withheld or "Withheld."
        blocks.append(section(f":lock: {reason}"))
        return f"{title}: {reason}", blocks
    m = digest.metrics
    changes = digest.changes
    cost = money(m.cost_usd)
    if m.cost_unknown_records:
        cost += f" (+{m.cost_unknown_records:,} records of unknown cost)"
    blocks.append(
        fields(
            [
                (
                    "Verified-spend share",
                    _with_trend(share(m.verified_spend_share), changes.get("verified_spend_share")),
                ),
                ("Cost per useful run", _with_trend(money(m.cost_per_useful_run), changes.get("cost_per_useful_run"))),
                ("Outcome value", _with_trend(number(m.outcome_value), changes.get("outcome_value"))),
                ("Merged PRs with agent help", number(digest.merged_prs_with_agent)),
                ("Known spend", cost),
                ("Runs reviewed", f"{share(m.reviewed_share)} of {number(m.runs)}"),
            ]
        )
    )
    if digest.trend:
        value_points = ["withheld" if p.withheld else number(p.outcome_value) for p in digest.trend]
        share_points = ["withheld" if p.withheld else share(p.verified_spend_share) for p in digest.trend]
        blocks.append(
            section(
                f"*Last {len(digest.trend)} weeks*\n"
                + _trend_line("Outcome value", value_points)
                + "\n"
                + _trend_line("Verified-spend share", share_points)
            )
        )
    if digest.unreviewed_runs:
        runs = "run is" if digest.unreviewed_runs == 1 else "runs are"
        blocks.append(
            section(
                f":mag: {number(digest.unreviewed_runs)} of last week's {runs} still unreviewed. "
                "A one-click verdict on your own runs (`/tokenwise runs`) is what turns spend into verified spend."
            )
        )
    if digest.wins:
        lines = []
        for win in digest.wins:
            text = escape(clip(win.text, 280))
            lines.append(f"• <{win.link}|{text}>" if win.link else f"• {text}")
        blocks.append(section(":trophy: *Wins shared this week*\n" + "\n".join(lines)))
    blocks.append(context(PRIVACY_NOTE))
    text = (
        f"{title}: verified-spend share {share(m.verified_spend_share)}, "
        f"cost per useful run {money(m.cost_per_useful_run)}, outcome value {number(m.outcome_value)}."
    )
    return text, blocks[:MAX_BLOCKS]


# -- nudges ----------------------------------------------------------------------------------------


def nudge_message(unreviewed: int, runs: list[Any]) -> tuple[str, list[Block]]:
    """The Monday DM: how many of your runs await a verdict, and the latest few to review."""
    noun = "run" if unreviewed == 1 else "runs"
    text = f"You have {unreviewed} {noun} from last week to review. It takes one click each."
    blocks: list[Block] = [section(f":wave: {text}")]
    for run in runs:
        label = escape(clip(run.title or f"{run.agent} run", 200))
        blocks.append(section(f"• {label} ({run.started_at.strftime('%a %b %d')})"))
    blocks.append(context("Review them with `/tokenwise runs`. Turn these reminders off with `/tokenwise nudges off`."))
    return text, blocks
