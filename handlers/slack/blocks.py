"""Every Block Kit message, modal and Home tab Tokenwise shows, built from plain values.

Slack refuses a payload that breaks its limits, and a refused message is silence for the user, so
each builder here truncates gracefully instead: long texts end in "…", long lists end in a line
saying how many more there are. Every message carries a `text` fallback for notifications and
screen readers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from bot.numbers import money, number, share, trend
from bot.reports import SELF_REPORTED, Report, change, coverage_note, shown_or_why, spend_label
from storage.metrics import Slice
from storage.models import VERDICTS
from storage.runs import NOTE_MAX, VERDICT_LABELS, RunView
from storage.vendors import DecisionTotals

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_TEXT = 3000
MAX_HEADER = 150
MAX_BUTTON = 75
MAX_VALUE = 2000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS = 25
MAX_MODAL_TITLE = 24
MAX_OPTION = 75
MAX_PRIVATE_METADATA = 3000
MAX_FALLBACK = 4000

# Interactive ids: handlers register these, manifest tests read them.
ACTION_VERDICT = {"useful": "run_useful", "partly": "run_partly", "not_useful": "run_not_useful"}
ACTION_NOTE = "run_note"
ACTION_UNLINK = "run_unlink"  # "not this run's": the owner removes a pull request's link to their run
ACTION_REVIEW = "review_runs"
ACTION_FORGET_ME = "forget_me"
ACTIONS = (*ACTION_VERDICT.values(), ACTION_NOTE, ACTION_UNLINK, ACTION_REVIEW, ACTION_FORGET_ME)
VIEW_NOTE = "run_note_modal"
VIEWS = (VIEW_NOTE,)
BUTTON_LABELS = {"useful": "Useful", "partly": "Partly", "not_useful": "Not useful"}
APOLOGY = "Sorry, something went wrong on our side and Tokenwise could not answer. Please try again in a minute."
DATABASE_BUSY = "Tokenwise's database is not answering right now, so this could not be answered. Try again in a minute."
SUMMARY_WORKING = "Writing the summary… (the language model is thinking; this message is replaced with it)"


@dataclass(frozen=True)
class Message:
    """A message: blocks plus the plain-text fallback Slack shows in notifications."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


# -- limits -----------------------------------------------------------------------------------------
def clip(text: str, limit: int) -> str:
    """Text cut to `limit` characters, ending in "…" when cut."""
    text = text or ""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def plain(text: str, limit: int = MAX_TEXT) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit) or " ", "emoji": True}


def mrkdwn(text: str, limit: int = MAX_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(text, limit) or " "}


def escape(text: str) -> str:
    """User- or operator-provided text shown in mrkdwn: no mentions (`<!channel>`, `<@U…>`) or links.

    Slack's three control characters become entities, which Slack shows as the characters themselves.
    Not for plain_text objects (headers, buttons, modal titles, inputs): Slack shows those literally
    and never parses them for mentions or links.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": plain(text, MAX_HEADER)}


def section(text: str | None, fields: Sequence[str] = (), accessory: dict[str, Any] | None = None) -> dict[str, Any]:
    """A section; with fields only, no text at all (Slack refuses blank text)."""
    block: dict[str, Any] = {"type": "section"}
    if text or not fields:
        block["text"] = mrkdwn(text or " ")
    if fields:
        block["fields"] = [mrkdwn(f, MAX_FIELD_TEXT) for f in fields[:MAX_FIELDS]]
    if accessory:
        block["accessory"] = accessory
    return block


def context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [mrkdwn(t) for t in texts[:MAX_CONTEXT_ELEMENTS]]}


def divider() -> dict[str, Any]:
    return {"type": "divider"}


def button(label: str, action_id: str, value: str = "", style: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "text": plain(label, MAX_BUTTON), "action_id": action_id}
    if value:
        element["value"] = clip(value, MAX_VALUE)
    if style in {"primary", "danger"}:
        element["style"] = style
    return element


def actions(*elements: dict[str, Any], block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "actions", "elements": list(elements[:MAX_ACTIONS])}
    if block_id:
        block["block_id"] = clip(block_id, 255)
    return block


def fit(blocks: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most `limit` blocks; when cut, the last one says how many were left out."""
    if len(blocks) <= limit:
        return blocks
    kept = blocks[: limit - 1]
    return [*kept, context(f"…and {len(blocks) - len(kept)} more blocks not shown; Slack shows at most {limit}.")]


def message(text: str, blocks: list[dict[str, Any]]) -> Message:
    """A message from its fallback text, given *unescaped*, and its blocks.

    Slack shows the fallback `text` (notifications, screen readers, clients without blocks) as mrkdwn,
    where `<!channel>` pings a channel and `<https://…|label>` is a disguised link. Builders put team
    names, titles and other people's text in it, so it is escaped here, once, for all of them: the
    fallback never carries a real mention or link.
    """
    return Message(clip(escape(text), MAX_FALLBACK) or "Tokenwise", fit(blocks, MAX_MESSAGE_BLOCKS))


# -- messages --------------------------------------------------------------------------------------
def help_message(lines: Sequence[tuple[str, str]], error: str | None = None) -> Message:
    body = "\n".join(f"`{usage}`  {summary}" for usage, summary in lines)
    blocks = []
    if error:
        blocks.append(section(f":warning: {escape(error)}"))
    blocks.append(section("*Tokenwise* measures AI use by outcomes, not token volume.\n" + body))
    blocks.append(context("Only you see these answers. Nobody sees another person's individual numbers."))
    text = (f"{error}\n" if error else "") + "\n".join(usage for usage, _ in lines)
    return message(text, blocks)


def error_message(text: str) -> Message:
    return message(text, [section(f":warning: {escape(text)}")])


def apology() -> Message:
    return message(APOLOGY, [section(f":face_with_head_bandage: {APOLOGY}")])


def database_busy() -> Message:
    """The database did not answer (down, or another writer held it too long): nothing to fix but to wait."""
    return message(DATABASE_BUSY, [section(f":hourglass: {DATABASE_BUSY}")])


def summary_working() -> Message:
    """Sent at once while the model writes a summary; the summary replaces it."""
    return message(SUMMARY_WORKING, [section(f":hourglass_flowing_sand: {SUMMARY_WORKING}")])


def _figure_fields(report: Report) -> list[str]:
    """The headline figures: evidence first (docs/metrics.md); a person's own verdicts only in their own view."""
    item = report.totals
    metrics = item.metrics
    if metrics is None:
        return []
    changes = change(report.totals, report.previous)

    def line(label: str, value: str, key: str) -> str:
        arrow = trend(changes.get(key))
        return f"*{label}*\n{value}" + (f"  _{arrow}_" if arrow else "")

    cost = money(item.value("cost_usd")) if "cost_usd" not in item.hidden else "withheld"
    if note := coverage_note(metrics):
        cost += f" ({note})"
    tokens = "withheld" if "total_tokens" in item.hidden else f"{metrics.total_tokens:,}"
    fields = [
        line("Verified-spend share", _or_withheld(item, "verified_spend_share", share), "verified_spend_share"),
        line("Cost per merged PR", _or_withheld(item, "cost_per_merged_pr", money), "cost_per_merged_pr"),
        line("Outcome value", number(metrics.outcome_value), "outcome_value"),
        line("Merged PRs with agent help", number(metrics.merged_prs), "merged_prs"),
    ]
    if not report.scope.is_group:  # their own verdicts: their feedback loop, never a team's figure
        fields.append(line("Useful runs (your verdicts)", number(metrics.useful_runs), "useful_runs"))
        fields.append(line("Reviewed", share(metrics.reviewed_share), "reviewed_share"))
    runs = "Runs (volume, not value)" if report.scope.is_group else "Runs"  # anyone can start more runs
    fields += [line(runs, number(metrics.runs), "runs"), f"*Known cost*\n{cost}", f"*Tokens*\n{tokens}"]
    return fields


def self_reported_line(report: Report) -> str | None:
    """What the person's own tools said they did (Claude Code's commit counters, a personal token): shown as
    such, never counted."""
    metrics = report.totals.metrics
    if metrics is None or not metrics.self_reported_by_kind:
        return None
    parts = ", ".join(
        f"{count:,} {kind.replace('_', ' ')}" for kind, count in sorted(metrics.self_reported_by_kind.items())
    )
    return f"Self-reported, not counted: {parts}."


def edits_line(edits: DecisionTotals | None) -> str | None:
    """The agent edits the person accepted, as their tool counts them: a quality signal, shown as such."""
    if edits is None or edits.acceptance is None:
        return None
    decided = edits.accepted + edits.rejected
    return (
        f"Agent edits you accepted: {share(edits.acceptance)} ({edits.accepted:,} of {decided:,}; "
        f"{edits.rejected:,} rejected), as your tools count them: a quality signal, self-reported, not counted."
    )


def _or_withheld(item: Any, key: str, show: Any) -> str:
    """A figure, or why not: "withheld" when the dominance rule holds it back, "not enough priced usage"
    when it would be a share of a sliver of the spend (item: a bot.reports.Figures)."""
    return shown_or_why(item, key, lambda value: str(show(value)))


def withheld_note(hidden: dict[str, str]) -> str | None:
    """One line saying why some shown figures are withheld, or None (a group's self-reported figures are
    not shown at all, so they need no note)."""
    reasons = sorted({reason for key, reason in hidden.items() if key not in SELF_REPORTED})
    return " ".join(reasons) if reasons else None


PROJECTS_SHOWN = 5


def projects_line(projects: Sequence[Slice]) -> str | None:
    """The caller's costliest projects, one line (only when some run said where it ran)."""
    if not any(item.key for item in projects):
        return None
    parts = []
    for item in projects[:PROJECTS_SHOWN]:
        cost = money(item.cost_usd) if item.cost_usd or not item.cost_unknown_records else "unknown cost"
        parts.append(f"{escape(item.key or '(no project)')} {cost}")
    more = len(projects) - PROJECTS_SHOWN
    return "*By project*  " + " · ".join(parts) + (f" · {more:,} more" if more > 0 else "")


def me_message(
    report: Report,
    unreviewed: int,
    coaching: str | None = None,
    projects: Sequence[Slice] = (),
    edits: DecisionTotals | None = None,
) -> Message:
    """The caller's own numbers, change against the previous period, their projects, and what awaits review."""
    period = f"{report.period.label()} ({report.period.tz})"
    blocks = [
        header("Your AI use, by outcomes"),
        context(f"{period} · compared with the period before · only you see this"),
    ]
    metrics = report.totals.metrics
    if metrics is None or not (metrics.runs or metrics.total_tokens or metrics.outcomes):
        blocks.append(
            section(
                "No usage recorded for you in this period yet. `/tokenwise me last week` or `/tokenwise me 30d` "
                "shows a longer stretch; if you have never sent any, `/tokenwise connect` shows how."
            )
        )
        text = f"Your Tokenwise numbers for {period}: no usage recorded yet."
    else:
        blocks.append(section(None, fields=_figure_fields(report)))
        by_project = projects_line(projects)
        if by_project:
            blocks.append(context(by_project))
        reported = self_reported_line(report)
        if reported:
            blocks.append(context(reported))
        accepted = edits_line(edits)
        if accepted:
            blocks.append(context(accepted))
        note = withheld_note(report.totals.hidden)  # a person's own: only the coverage rule hides anything
        if note:
            blocks.append(context(escape(note)))
        text = (
            f"Your Tokenwise numbers for {period}: {number(metrics.runs)} runs, "
            f"{number(metrics.useful_runs)} useful, outcome value {number(metrics.outcome_value)}, "
            f"known cost {money(metrics.cost_usd)}."
        )
    if unreviewed:
        noun = "run awaits" if unreviewed == 1 else "runs await"
        blocks.append(
            section(
                f"*{unreviewed:,}* {noun} your review in this period.",
                accessory=button("Review them", ACTION_REVIEW, "review", "primary"),
            )
        )
        text += f" {unreviewed:,} {noun} review."
    if coaching:
        blocks.append(section(f":bulb: {coaching}"))
    return message(text, blocks)


def team_message(report: Report) -> Message:
    """A team's totals only: no names, no per-person figures; withheld below the group minimum."""
    name = report.scope.name or "team"
    period = f"{report.period.label()} ({report.period.tz})"
    blocks = [header(f"Team {name}"), context(f"{period} · team totals only, never individuals")]
    if report.totals.metrics is None:
        reason = report.totals.withheld or "Withheld to protect individuals."
        blocks.append(section(f":lock: {escape(reason)}"))
        return message(f"Team {name}, {period}: {reason}", blocks)
    metrics = report.totals.metrics
    blocks.append(section(None, fields=_figure_fields(report)))
    blocks.append(context(f"{metrics.active_people:,} people active in this period."))
    note = withheld_note(report.totals.hidden)
    if note:
        blocks.append(context(f":lock: {note}"))
    text = (
        f"Team {name}, {period}: {number(metrics.runs)} runs, {number(metrics.merged_prs)} merged PRs, "
        f"outcome value {number(metrics.outcome_value)}."
    )
    return message(text, blocks)


def _run_line(run: RunView, tz: str) -> str:
    started = run.started_at.astimezone(ZoneInfo(tz)).strftime("%a %d %b %H:%M")
    details = [escape(run.agent), started, f"{run.tokens:,} tokens", money(run.cost_usd)]
    if run.repo:
        details.insert(1, escape(run.repo))
    if run.outcomes:
        details.append(f"{run.outcomes} outcome{'s' if run.outcomes != 1 else ''}")
    line = f"*{escape(clip(run.label, 200))}*\n" + " · ".join(details)
    if run.verdict:
        line += f"\n:white_check_mark: You said: *{VERDICT_LABELS[run.verdict]}*"
        if run.share_as_win:
            line += " · shared as a win"
        if run.note:
            line += f"\n> {escape(clip(run.note, 500))}"
        if run.link:
            line += f"\n{escape(run.link)}"
    return line


def run_blocks(run: RunView, tz: str) -> list[dict[str, Any]]:
    """A run with its review buttons; the chosen verdict's button is highlighted."""
    buttons = [
        button(BUTTON_LABELS[v], ACTION_VERDICT[v], str(run.id), "primary" if run.verdict == v else None)
        for v in VERDICTS
    ]
    buttons.append(button("Add note" if not run.note else "Edit note", ACTION_NOTE, str(run.id)))
    found = [section(_run_line(run, tz)), actions(*buttons, block_id=f"run:{run.id}")]
    for outcome_id, url, evidence, late in run.pull_requests:
        why = (
            "it produced one of its commits" if evidence == "commit" else "same repository and branch, before the merge"
        )
        verdict = (
            "you sent this run after the merge was known, so it is shown but verifies nothing."
            if late
            else "it verifies this run's spend, but not spend you sent yourself after the merge was known."
        )
        found.append(
            section(
                f":link: Linked to merged <{escape(url)}|{escape(_pr_name(url))}> ({why}): {verdict}",
                accessory=button("Not this run's", ACTION_UNLINK, f"{outcome_id}:{run.id}"),
            )
        )
    return found


def _pr_name(url: str) -> str:
    parts = url.rstrip("/").split("/")
    return f"{parts[-4]}/{parts[-3]}#{parts[-1]}" if len(parts) >= 4 and parts[-2] == "pull" else url


def runs_message(runs: Sequence[RunView], tz: str, reviewed: RunView | None = None) -> Message:
    """Unreviewed runs to review; after a click, the run just reviewed stays on top, still editable."""
    blocks: list[dict[str, Any]] = []
    if reviewed is not None:
        blocks += [
            section(f"Thanks, noted: *{VERDICT_LABELS.get(reviewed.verdict or '', 'reviewed')}*."),
            *run_blocks(reviewed, tz),
        ]
        blocks.append(divider())
    runs = [r for r in runs if reviewed is None or r.id != reviewed.id]
    if not runs:
        blocks.append(section("Nothing left to review. :tada:"))
        text = "Nothing left to review."
    else:
        blocks.append(section(f"*Your latest unreviewed runs* ({len(runs)} shown). Was each one worth it?"))
        for run in runs:
            blocks += run_blocks(run, tz)
        text = f"{len(runs)} of your runs await review."
    if reviewed is not None:
        text = f"Noted: {VERDICT_LABELS.get(reviewed.verdict or '', 'reviewed')}. " + text
    return message(text, blocks)


NO_PUBLIC_URL = "https://TOKENWISE-ADDRESS"  # a stand-in that cannot be mistaken for a working address
NO_PUBLIC_URL_NOTE = (
    ":warning: Your Tokenwise operator has not set Tokenwise's public address yet (`TOKENWISE_PUBLIC_URL`), so "
    "the address below is a placeholder: ask them for it, and put it in place of `https://TOKENWISE-ADDRESS`."
)


def connect_message(
    public_url: str | None, token: str | None = None, replaced: int = 0, email: str | None = None
) -> Message:
    """How to send usage: with `token`, the caller's new personal OTLP token (shown this once) in Claude
    Code's OpenTelemetry variables, and how many earlier personal tokens it revoked; the import commands.
    Without the operator's public address, a placeholder and a note saying so (never a localhost URL)."""
    raw_base = (public_url or NO_PUBLIC_URL).rstrip("/")
    base = escape(raw_base)  # an operator's setting, shown in mrkdwn
    unset = [section(NO_PUBLIC_URL_NOTE)] if not public_url else []
    otel = "\n".join(
        [
            "export CLAUDE_CODE_ENABLE_TELEMETRY=1",
            "export OTEL_METRICS_EXPORTER=otlp",
            "export OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            f"export OTEL_EXPORTER_OTLP_ENDPOINT={base}/v1/otlp",
            f'export OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer {token or "&lt;source token&gt;"}"',
        ]
    )
    imports = section(
        "*Import what you already have:*\n"
        "```tokenwise import claude-code ~/.claude --email you@company.com\n"
        "tokenwise import csv usage.csv```"
    )
    privacy = context("Tokenwise stores token counts, costs and outcomes, never your prompts or completions.")
    if token is None:
        blocks = [
            header("Send your AI usage to Tokenwise"),
            *unset,
            section(
                "*1. A source token* from your Tokenwise admin: `tokenwise source create NAME --kind otlp`.\n"
                f"*2. The ingest URL* is `{base}/v1/`: `POST /v1/usage`, `/v1/runs`, `/v1/outcomes` (JSON batches, "
                "`Authorization: Bearer &lt;source token&gt;`) and OTLP at `/v1/otlp`."
            ),
            section(f"*3. Claude Code* (OpenTelemetry), in your shell profile or managed settings:\n```{otel}```"),
            imports,
            privacy,
        ]
        return message(
            f"How to send usage: ingest URL {raw_base}/v1/, OpenTelemetry endpoint {raw_base}/v1/otlp.", blocks
        )
    if replaced == 1:
        earlier = "Your previous personal token is revoked: it no longer works."
    elif replaced:
        earlier = f"Your {replaced} previous personal tokens are revoked: they no longer work."
    else:
        earlier = "You had no personal token before."
    yours = f" ({escape(email)})" if email else ""
    blocks = [
        header("Your personal Tokenwise token"),
        *unset,
        section(
            f"*Your new personal token*, shown only this once (Tokenwise keeps only its hash):\n```{token}```\n"
            f"It sends only your own data: everything it sends counts as yours{yours}, and data naming anyone "
            f"else is refused. {earlier} Each `/tokenwise connect` revokes your personal token and makes a new one."
        ),
        section(f"*Claude Code* (OpenTelemetry), in your shell profile or managed settings:\n```{otel}```"),
        section(
            f"*The ingest URL* is `{base}/v1/`. This token is for OTLP at `{base}/v1/otlp`; JSON batches "
            "(`POST /v1/usage`, `/v1/runs`) take an `api` token from your Tokenwise admin. Keep the token in a "
            "header, never in a URL: a token in a URL is refused."
        ),
        imports,
        privacy,
    ]
    fallback = (
        f"Your new personal Tokenwise token is in this message (shown once); OpenTelemetry endpoint {raw_base}/v1/otlp."
    )
    return message(fallback, blocks)


# -- modal -----------------------------------------------------------------------------------------
def note_modal(run: RunView, private_metadata: dict[str, Any]) -> dict[str, Any]:
    """The "Add note" modal: verdict, note, link and "share as a win", prefilled when editing."""
    options = [{"text": plain(VERDICT_LABELS[v], MAX_OPTION), "value": v} for v in VERDICTS]
    verdict: dict[str, Any] = {"type": "radio_buttons", "action_id": "verdict", "options": options}
    if run.verdict:
        verdict["initial_option"] = options[VERDICTS.index(run.verdict)]
    note: dict[str, Any] = {"type": "plain_text_input", "action_id": "note", "multiline": True, "max_length": NOTE_MAX}
    if run.note:
        note["initial_value"] = clip(run.note, NOTE_MAX)
    link: dict[str, Any] = {"type": "url_text_input", "action_id": "link"}
    if run.link:
        link["initial_value"] = run.link
    win_option = {"text": plain("Share as a win (your team digest may mention it)"), "value": "win"}
    win: dict[str, Any] = {"type": "checkboxes", "action_id": "win", "options": [win_option]}
    if run.share_as_win:
        win["initial_options"] = [win_option]
    metadata = json.dumps(private_metadata, separators=(",", ":"))
    if len(metadata) > MAX_PRIVATE_METADATA:  # never cut JSON in half: keep only what identifies the run
        metadata = json.dumps({"run_id": run.id}, separators=(",", ":"))
    blocks = [
        section(
            f"*{escape(clip(run.label, 200))}*\n{escape(run.agent)} · {run.tokens:,} tokens · {money(run.cost_usd)}"
        ),
        {"type": "input", "block_id": "verdict", "label": plain("Was it worth it?"), "element": verdict},
        {"type": "input", "block_id": "note", "label": plain("Note"), "element": note, "optional": True},
        {
            "type": "input",
            "block_id": "link",
            "label": plain("Link (PR, doc, ticket)"),
            "element": link,
            "optional": True,
        },
        {"type": "input", "block_id": "win", "label": plain("Win"), "element": win, "optional": True},
    ]
    return {
        "type": "modal",
        "callback_id": VIEW_NOTE,
        "title": plain("Review a run", MAX_MODAL_TITLE),
        "submit": plain("Save", MAX_MODAL_TITLE),
        "close": plain("Cancel", MAX_MODAL_TITLE),
        "private_metadata": metadata,
        "blocks": fit(blocks, MAX_VIEW_BLOCKS),
    }


def note_values(state: dict[str, Any]) -> dict[str, Any]:
    """The modal's submitted values: verdict, note, link, share_as_win."""
    values = state.get("values", {})

    def element(block: str) -> dict[str, Any]:
        found = values.get(block, {})
        return next(iter(found.values()), {}) if isinstance(found, dict) else {}

    selected = element("verdict").get("selected_option") or {}
    return {
        "verdict": selected.get("value"),
        "note": element("note").get("value"),
        "link": element("link").get("value"),
        "share_as_win": bool(element("win").get("selected_options")),
    }


# -- App Home --------------------------------------------------------------------------------------
def home_view(
    report: Report, unreviewed: int, runs: Sequence[RunView], wins: Sequence[RunView], tz: str
) -> dict[str, Any]:
    """The Home tab: this week at a glance, runs to review with the same buttons, and shared wins."""
    blocks: list[dict[str, Any]] = [
        header("This week at a glance"),
        context(f"{report.period.label()} ({tz}) · only you see this"),
    ]
    fields = _figure_fields(report)
    metrics = report.totals.metrics
    if fields and metrics is not None and (metrics.runs or metrics.total_tokens or metrics.outcomes):
        blocks.append(section(None, fields=fields))
    else:
        blocks.append(section("No usage recorded for you this week yet. `/tokenwise connect` shows how to send it."))
    blocks += [divider(), header("Runs to review")]
    if runs:
        more = f" ({unreviewed:,} this week)" if unreviewed > len(runs) else ""
        blocks.append(context(f"Your latest unreviewed runs{more}. A run's verdict is yours alone."))
        for run in runs:
            blocks += run_blocks(run, tz)
    else:
        blocks.append(section("Nothing to review. :tada:"))
    blocks += [divider(), header("Your shared wins")]
    if wins:
        for win in wins:
            line = f":trophy: *{escape(clip(win.label, 200))}*"
            if win.note:
                line += f"\n{escape(clip(win.note, 500))}"
            if win.link:
                line += f"\n{escape(win.link)}"
            blocks.append(section(line))
    else:
        blocks.append(context('None yet: tick "Share as a win" when you add a note to a run.'))
    return {"type": "home", "blocks": fit(blocks, MAX_VIEW_BLOCKS)}


def coaching_note(total_tokens: int, outcomes: int, reviewed_runs: int, min_tokens: int) -> str | None:
    """A private nudge when the pattern looks like token burning: many tokens, no outcome, no review."""
    if total_tokens >= min_tokens and outcomes == 0 and reviewed_runs == 0:
        return (
            f"You used {total_tokens:,} tokens in this period with no recorded outcome and no reviewed run. "
            "Marking which runs helped (`/tokenwise runs`) shows what is worth the spend; "
            "only you see this note."
        )
    return None


# -- digests (bot/digest.py) -----------------------------------------------------------------------
DIGEST_PRIVACY_NOTE = "Team figures only: nobody is ranked and no one's individual numbers are shown."


def _with_trend(value: str, change: float | None) -> str:
    arrow = trend(change)
    return f"{value}  _{arrow} vs the week before_" if arrow else value


def digest_message(digest: Any) -> Message:
    """A team's weekly digest (a bot.digest.Digest): outcome-weighted headline, four-week trend, the
    reviewed share with a nudge, and the wins owners chose to share. Team figures only, no names."""
    period = digest.period
    when = f"{period.since.strftime('%b %d')} – {period.until.strftime('%b %d, %Y')} ({period.tz})"
    title = f"Weekly AI outcomes · {digest.title}"
    blocks: list[dict[str, Any]] = [header(title), context(when)]
    if not digest.shown:
        reason = digest.withheld or "Withheld to protect individuals."
        blocks.append(section(f":lock: {escape(reason)}"))
        return message(f"{title}: {reason}", blocks)
    m = digest.metrics
    changes = digest.changes
    totals = digest.figures
    cost = _or_withheld(totals, "cost_usd", money)
    if note := coverage_note(m):
        cost += f" ({note})"
    verified_share = _or_withheld(totals, "verified_spend_share", share)
    per_merged_pr = _or_withheld(totals, "cost_per_merged_pr", money)
    fields = [
        f"*Verified-spend share*\n{_with_trend(verified_share, changes.get('verified_spend_share'))}",
        f"*Cost per merged PR*\n{_with_trend(per_merged_pr, changes.get('cost_per_merged_pr'))}",
        f"*Outcome value*\n{_with_trend(number(m.outcome_value), changes.get('outcome_value'))}",
        f"*Merged PRs with agent help*\n{number(digest.merged_prs_with_agent)}",
        f"*Known spend ({spend_label(m)})*\n{cost}",
        f"*Runs (volume, not value)*\n{number(m.runs)}",
    ]
    blocks.append(section(" ", fields=fields))
    if digest.trend:
        values = " → ".join("withheld" if p.withheld else number(p.outcome_value) for p in digest.trend)
        shares = " → ".join("withheld" if p.withheld else share(p.verified_spend_share) for p in digest.trend)
        blocks.append(
            section(f"*Last {len(digest.trend)} weeks*\nOutcome value: {values}\nVerified-spend share: {shares}")
        )
    if digest.unreviewed_runs:
        runs = "run is" if digest.unreviewed_runs == 1 else "runs are"
        blocks.append(
            section(
                f":mag: {number(digest.unreviewed_runs)} of last week's {runs} still unreviewed. "
                "A one-click verdict on your own runs (`/tokenwise runs`) is your private record of which runs "
                "were worth it; no team figure counts it. Spend is verified by evidence: merged PRs, CI, deploys."
            )
        )
    if digest.wins:
        lines = []
        for win in digest.wins:
            text = escape(clip(win.text, 280))
            lines.append(f"• <{escape(win.link)}|{text}>" if win.link else f"• {text}")
        blocks.append(section(":trophy: *Wins shared this week*\n" + "\n".join(lines)))
    note = withheld_note(totals.hidden)
    blocks.append(context(DIGEST_PRIVACY_NOTE + (f" :lock: {note}" if note else "")))
    text = (
        f"{title}: verified-spend share {verified_share}, "
        f"cost per merged PR {per_merged_pr}, outcome value {number(m.outcome_value)}."
    )
    return message(text, blocks)


def nudge_message(unreviewed: int, runs: Sequence[RunView], tz: str) -> Message:
    """The Monday DM: how many of your runs await a verdict, with the review buttons for the latest."""
    noun = "run" if unreviewed == 1 else "runs"
    text = f"You have {unreviewed:,} {noun} from last week to review. It takes one click each."
    blocks: list[dict[str, Any]] = [section(f":wave: {text}")]
    for run in runs:
        blocks += run_blocks(run, tz)
    blocks.append(context("Only you get this reminder. Turn it off with `/tokenwise nudges off`."))
    return message(text, blocks)


# -- manager summaries, nudges setting, forget-me (handlers/slack/slash/) ----------------------------


def summary_message(summary: Any) -> Message:
    """A manager's summary (a bot.summaries.Summary): the aggregates and the narrative, labelled."""
    if summary.refused:
        return message(summary.refusal, [section(f":no_entry: {escape(summary.refusal)}")])
    period = summary.period
    when = f"{period.label()} ({period.tz})" if period else ""
    blocks: list[dict[str, Any]] = [header(f"Summary · {summary.team}"), context(f"{when} · for the team's managers")]
    if summary.source == "withheld":
        blocks.append(section(f":lock: {escape(summary.narrative)}"))
        return message(f"Summary of {summary.team}: {summary.narrative}", blocks)
    blocks.append(section(escape(summary.narrative)))
    shown = [f for f in summary.facts if f.key not in {"since", "until", "days"}]
    blocks.append(section(" ", fields=[f"*{escape(f.label)}*\n{f.text}" for f in shown[:MAX_FIELDS]]))
    origin = (
        "Narrative written by a language model from these aggregates only; every number in it was checked."
        if summary.source == "llm"
        else "Narrative from a template (no language model text was used)."
    )
    blocks.append(context(origin))
    return message(f"Summary of {summary.team}: {summary.narrative}", blocks)


def notice_message(text: str) -> Message:
    """A short private confirmation."""
    return message(text, [section(escape(text))])


def forget_me_prompt(annotations: int) -> Message:
    """What forget-me will delete, with a button that asks Slack's own "are you sure?" first."""
    noun = "annotation" if annotations == 1 else "annotations"
    text = (
        f"This deletes your {annotations:,} {noun} (verdicts, notes, links and shared wins) for good. "
        "Your usage records stay, as they come from your tools. To go ahead, press the button or type "
        "`/tokenwise forget-me confirm`."
    )
    delete = button(f"Delete my {noun}", ACTION_FORGET_ME, "confirm", "danger")
    delete["confirm"] = {
        "title": plain("Delete for good?", 100),
        "text": mrkdwn(f"Your {annotations:,} {noun} will be deleted. This cannot be undone.", 300),
        "confirm": plain("Delete", 30),
        "deny": plain("Keep them", 30),
        "style": "danger",
    }
    return message(text, [section(f":warning: {text}"), actions(delete)])


def digest_list_message(rows: Sequence[tuple[str, str, str]]) -> Message:
    """This channel's digests: (team, schedule, next time) each."""
    if not rows:
        text = "This channel has no digest yet. `/tokenwise digest subscribe [team]` adds one."
        return message(text, [section(text)])
    lines = [f"• *{escape(team)}*: {schedule} (next {when})" for team, schedule, when in rows]
    return message(
        f"{len(rows)} digest(s) in this channel.", [section("*Digests in this channel*\n" + "\n".join(lines))]
    )
