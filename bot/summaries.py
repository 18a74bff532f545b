"""Manager summaries: a team's aggregates and a short narrative that may only use the numbers given.

The language model sees aggregates only (no names, no run titles, not even the team's name). Its text
is accepted only if every number in it appears among the facts (`check_numbers`, rule in
docs/summaries.md); otherwise, or without a configured model, or when the call fails, the summary is
a deterministic template that says it is one. The bot's own tokens are recorded as usage of the
`tokenwise` source, and every request leaves an AuditEvent.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal

from openai import APIStatusError, APITimeoutError, OpenAI
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, select

from bot.config import Settings
from bot.numbers import money, number, share, signed_percent
from bot.periods import Period
from bot.pricing import price
from bot.reconcile import reconcile, reconcile_lines
from bot.reports import Disclosure, build_report, change, group_weeks, spend_label
from storage.audit import record_event
from storage.db import session_scope
from storage.digest_contents import merged_prs_with_agent_help
from storage.metrics import Metrics, Scope
from storage.models import Source, Team, UsageRecord, id_of
from storage.people import NotFound, find_team, is_manager
from storage.roles import managed_teams

log = logging.getLogger(__name__)

SUMMARY_WEEKS = 4  # whole weeks in the team's time zone, like every team view
TOKENWISE_SOURCE = "tokenwise"
SYSTEM_PROMPT = (
    "You write a short summary (three to five sentences) of one team's use of AI coding agents, for the "
    "team's manager. Tokenwise measures AI use by outcomes, not token volume: lead with verified spend, "
    "outcome value and merged pull requests, not with how much was spent. Use only the facts given. Copy "
    "every number exactly as it is written in the facts; never compute, round, combine or invent a number, "
    "and never spell a number out in words. The facts are team aggregates: do not mention or guess at "
    "individuals. Plain prose, no headings, no lists."
)


# -- facts -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    key: str
    label: str
    text: str  # exactly as shown to the model and the manager


def team_facts(
    metrics: Metrics,
    previous: Metrics | None,
    merged_prs: int,
    period: Period,
    hidden: Collection[str] = (),
    previous_hidden: Collection[str] = (),
) -> list[Fact]:
    """The aggregates a summary may talk about, formatted once so model and check see the same text.

    A figure the dominance rule withholds (`hidden`) is not among them, nor is its change: the model
    never sees what the manager may not."""
    facts = [
        Fact("since", "First day", period.since.isoformat()),
        Fact("until", "Last day", period.until.isoformat()),
        Fact("days", "Days covered", str(period.days)),
        Fact("active_people", "People active", number(metrics.active_people)),
        Fact("runs", "Agent runs", number(metrics.runs)),
        Fact(
            "cost_usd",
            f"Known spend ({spend_label(metrics)})",
            money(None if "cost_usd" in hidden else metrics.cost_usd),
        ),
        Fact(
            "cost_coverage",
            "Usage records whose cost is known",
            f"{metrics.cost_known_records:,} of {metrics.usage_records:,}" if metrics.cost_unknown_records else "—",
        ),
        Fact(
            "verified_spend_share",
            "Verified-spend share (spend in runs with evidence: merged PRs, CI, deploys)",
            share(None if "verified_spend_share" in hidden else metrics.verified_spend_share),
        ),
        Fact(
            "cost_per_merged_pr",
            "Cost per merged pull request",
            money(None if "cost_per_merged_pr" in hidden else metrics.cost_per_merged_pr),
        ),
        Fact("outcome_value", "Outcome value (weighted outcomes with evidence)", number(metrics.outcome_value)),
        Fact("merged_prs", "Merged pull requests with agent help", number(merged_prs)),
    ]
    for kind, count in sorted(metrics.outcomes_by_kind.items()):
        facts.append(Fact(f"outcomes_{kind}", f"Outcomes of kind {kind}", number(count)))
    if previous is not None:
        from bot.reports import Figures

        changes = change(
            Figures(period, metrics, hidden=dict.fromkeys(hidden, "")),
            Figures(period.previous(), previous, hidden=dict.fromkeys(previous_hidden, "")),
        )
        for key, label in (
            ("verified_spend_share", "Change in verified-spend share vs the previous period"),
            ("cost_per_merged_pr", "Change in cost per merged pull request vs the previous period"),
            ("outcome_value", "Change in outcome value vs the previous period"),
        ):
            shown = signed_percent(changes.get(key))
            if shown is not None:
                facts.append(Fact(f"change_{key}", label, shown))
    return [fact for fact in facts if fact.text != "—"]


def reconcile_facts(session: Session, period: Period, min_group_size: int) -> list[Fact]:
    """The organisation's estimated spend against what each vendor billed, per vendor and UTC day of the
    period (days with too few people behind the estimate are left out): organisation figures, said so.
    Only billed days are read: with no bill, nothing of the organisation's usage is (a summary answers
    inside Slack's time, whatever the organisation's size)."""
    rows = reconcile(session, period.since, period.until, min_group_size, billed_only=True)
    return [
        Fact(
            f"reconcile_{vendor}",
            f"{vendor.title()}, whole organisation: Tokenwise's estimated spend against the vendor's bill, per UTC day",
            line,
        )
        for vendor, line in sorted(reconcile_lines(rows).items())
    ]


def facts_prompt(facts: list[Fact]) -> str:
    return "Facts about the team:\n" + "\n".join(f"- {fact.label}: {fact.text}" for fact in facts)


# -- the numbers check -----------------------------------------------------------------------------

_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_NUMBER = re.compile(r"(?<![\w.])[-+−]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?")
# fmt: off
NUMBER_WORDS = frozenset((
    "zero", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "thirty",
    "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "hundreds", "thousand", "thousands",
    "million", "millions", "billion", "dozen", "dozens", "twice", "thrice", "double", "doubled", "triple",
    "tripled", "quadrupled", "half", "halved", "quarter",
))
# fmt: on
_WORD = re.compile(r"[a-z]+")


def normalise_number(token: str) -> Decimal | None:
    """'$1,234.50' -> 1234.5, '12%' -> 12, '-3' -> 3 (signs are words' business: 'fell 3%')."""
    cleaned = token.strip().lstrip("+-−").replace("$", "").replace(",", "").rstrip("%")
    try:
        return abs(Decimal(cleaned)).normalize()
    except InvalidOperation:
        return None


def numbers_in(text: str) -> list[str]:
    """Number tokens in a text, dates excluded (they are checked as whole dates)."""
    return _NUMBER.findall(_DATE.sub(" ", text))


def check_numbers(narrative: str, facts: list[Fact]) -> list[str]:
    """What in the narrative is not backed by a fact: numbers, dates and spelled-out numbers. Empty = ok."""
    fact_text = " ".join(fact.text for fact in facts)
    allowed = {value for token in numbers_in(fact_text) if (value := normalise_number(token)) is not None}
    allowed_dates = set(_DATE.findall(fact_text))
    problems = [date for date in _DATE.findall(narrative) if date not in allowed_dates]
    for token in numbers_in(narrative):
        value = normalise_number(token)
        if value is None or value not in allowed:
            problems.append(token)
    problems.extend(word for word in _WORD.findall(narrative.lower()) if word in NUMBER_WORDS)
    return problems


# -- the narrative ---------------------------------------------------------------------------------


def template_narrative(facts: list[Fact], reason: str) -> str:
    """Deterministic prose that uses the facts' own text, so it always passes the numbers check."""
    f = {fact.key: fact.text for fact in facts}
    labels = {fact.key: fact.label for fact in facts}
    sentences = [
        f"Written from a template because {reason}.",
        f"From {f['since']} to {f['until']} the team made {f['runs']} agent runs.",
    ]
    if "verified_spend_share" in f:  # never the owners' own verdicts: a group's facts leave those out
        sentences.append(
            f"{f['verified_spend_share']} of the {labels['cost_usd'].lower()} of {f['cost_usd']} went to runs with "
            "evidence from outside their owner: merged pull requests, CI, deploys."
        )
    if "cost_coverage" in f:
        sentences.append(f"Cost is known for {f['cost_coverage']} usage records.")
    sentences.append(
        f"Outcome value was {f['outcome_value']}, with {f['merged_prs']} merged pull requests made with agent help."
    )
    for key in sorted(k for k in f if k.startswith("reconcile_")):
        sentences.append(f"{labels[key]}: {f[key]}.")
    return " ".join(sentences)


@dataclass(frozen=True)
class Narrative:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    response_id: str | None


class SummaryWriter:
    """The OpenAI-compatible client, built once with a bounded timeout and retry count."""

    def __init__(self, client: OpenAI, model: str) -> None:
        self.client = client
        self.model = model

    def write(self, facts: list[Fact]) -> Narrative:
        response = self.client.chat.completions.create(
            model=self.model,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": facts_prompt(facts)},
            ],
        )  # no temperature or token cap: not every model accepts them, and the numbers check guards the text
        text = (response.choices[0].message.content or "").strip() if response.choices else ""
        usage = response.usage
        return Narrative(
            text=text,
            model=response.model or self.model,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            response_id=response.id,
        )


def build_summary_writer(settings: Settings) -> SummaryWriter | None:
    """None when no model is configured (no OPENAI_API_KEY): summaries then use the template."""
    if not settings.openai_api_key:
        return None
    client = OpenAI(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url or None,
        timeout=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
    )
    return SummaryWriter(client, settings.llm_model)


# -- the request -----------------------------------------------------------------------------------


@dataclass
class Summary:
    team: str
    period: Period | None = None
    facts: list[Fact] = field(default_factory=list)
    narrative: str = ""
    source: Literal["llm", "template", "withheld", "refused"] = "template"
    fallback_reason: str | None = None
    refusal: str | None = None

    @property
    def refused(self) -> bool:
        return self.refusal is not None


def _tokenwise_source(session: Session) -> Source:
    found = session.exec(select(Source).where(Source.name == TOKENWISE_SOURCE)).first()
    if found is not None:
        return found
    try:
        with session.begin_nested():
            source = Source(name=TOKENWISE_SOURCE, kind=TOKENWISE_SOURCE)
            session.add(source)
    except IntegrityError:  # created concurrently
        return session.exec(select(Source).where(Source.name == TOKENWISE_SOURCE)).one()
    return source


def record_own_usage(session: Session, person_id: int, narrative: Narrative, now: datetime) -> UsageRecord:
    """The bot's summary tokens, as usage of the `tokenwise` source on behalf of the requester."""
    source = _tokenwise_source(session)
    record = UsageRecord(
        source_id=id_of(source),
        person_id=person_id,
        occurred_at=now,
        agent=TOKENWISE_SOURCE,
        model=narrative.model[:120],
        input_tokens=narrative.input_tokens,
        output_tokens=narrative.output_tokens,
        cost_usd=price(narrative.model, narrative.input_tokens, narrative.output_tokens),
        dedupe_key=f"summary:{narrative.response_id or ''}:{uuid.uuid4().hex}"[:300],
    )
    session.add(record)
    session.flush()
    return record


def _choose_team(session: Session, requester_id: int, team_name: str | None) -> Team | str:
    """The team to summarise, or a refusal sentence."""
    if team_name:
        try:
            return find_team(session, team_name)
        except NotFound as error:
            return str(error)
    teams = managed_teams(session, requester_id)
    if len(teams) == 1:
        return teams[0]
    if not teams:
        return "Summaries are for team managers, and you are not a manager of any team in Tokenwise."
    names = ", ".join(team.name for team in teams)
    return f"You manage {names}; name one, for example `/tokenwise summary {teams[0].name}`."


@dataclass(frozen=True)
class SummaryDraft:
    """A granted summary whose facts are ready and whose narrative the model is still to write."""

    team: str
    period: Period
    facts: list[Fact]
    requester_id: int
    actor: str
    now: datetime

    @property
    def scope_label(self) -> str:
        return f"team:{self.team}"


@dataclass(frozen=True)
class Written:
    """What came back from the model (or the template instead), not yet recorded."""

    text: str
    source: Literal["llm", "template"]
    reason: str | None = None
    narrative: Narrative | None = None  # the model's answer, whose tokens are recorded as usage


def draft_summary(
    session: Session,
    *,
    requester_id: int,
    actor: str,
    team_name: str | None,
    writer: SummaryWriter | None,
    settings: Settings,
    now: datetime | None = None,
) -> Summary | SummaryDraft:
    """Everything before the model: the team, the manager check, the facts. A refusal, a withheld team
    and (with no model configured) the template summary are finished here, with their audit row; a summary
    the model is to write comes back as a draft, for `finish_summary` outside this transaction."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    chosen = _choose_team(session, requester_id, team_name)
    if isinstance(chosen, str):
        record_event(
            session,
            actor=actor,
            action="summary.refused",
            scope=f"team:{team_name or '?'}",
            actor_person_id=requester_id,
            detail=chosen,
            now=now,
        )
        return Summary(team=team_name or "", source="refused", refusal=chosen)
    team = chosen
    scope_label = f"team:{team.name}"
    if not is_manager(session, requester_id, id_of(team)):
        record_event(
            session,
            actor=actor,
            action="summary.refused",
            scope=scope_label,
            actor_person_id=requester_id,
            detail="not a manager of this team",
            now=now,
        )
        return Summary(
            team=team.name,
            source="refused",
            refusal=(
                f"Sorry, summaries of {team.name} are only for its managers. "
                f"`/tokenwise team {team.name}` shows the team's figures to everyone."
            ),
        )
    scope = Scope.team(id_of(team), team.name)
    period = group_weeks(session, scope, settings.timezone, SUMMARY_WEEKS, now)
    report = build_report(session, scope, period, Disclosure.of(settings))
    if report.totals.metrics is None:
        record_event(
            session,
            actor=actor,
            action="summary.withheld",
            scope=scope_label,
            actor_person_id=requester_id,
            detail=period.label(),
            now=now,
        )
        return Summary(team=team.name, period=period, narrative=report.totals.withheld or "", source="withheld")
    merged = merged_prs_with_agent_help(session, scope, period.start, period.end)
    facts = team_facts(
        report.totals.metrics, report.previous.metrics, merged, period, report.totals.hidden, report.previous.hidden
    )
    facts += reconcile_facts(session, period, settings.min_group_size)
    draft = SummaryDraft(team.name, period, facts, requester_id, actor, now)
    if writer is None:
        reason = "no language model is configured"
        return record_summary(session, draft, Written(template_narrative(facts, reason), "template", reason))
    return draft


def write_narrative(writer: SummaryWriter, facts: list[Fact]) -> Written:
    """The model's narrative if it passes the numbers check, else the template saying why. The one network
    call of a summary: never make it inside a database transaction (it may take the whole timeout)."""
    try:
        written = writer.write(facts)
    except Exception as error:  # timeouts, connection errors, 5xx after the client's own retries
        log.warning("summary model call failed: %s", type(error).__name__)
        reason = _failure_reason(error)
        return Written(template_narrative(facts, reason), "template", reason)
    if not written.text:
        reason = "the language model returned no text"
        return Written(template_narrative(facts, reason), "template", reason, written)
    invented = check_numbers(written.text, facts)
    if invented:
        log.info("summary narrative rejected: %d number(s) not among the facts", len(invented))
        reason = "the language model used a number that is not among the facts"
        return Written(template_narrative(facts, reason), "template", reason, written)
    return Written(written.text, "llm", None, written)


def record_summary(session: Session, draft: SummaryDraft, written: Written) -> Summary:
    """The bot's own tokens (when the model answered) and the audit row: a short write after the call."""
    if written.narrative is not None:
        record_own_usage(session, draft.requester_id, written.narrative, draft.now)
    record_event(
        session,
        actor=draft.actor,
        action="summary",
        scope=draft.scope_label,
        actor_person_id=draft.requester_id,
        detail=f"{draft.period.label()} {written.source}" + (f": {written.reason}" if written.reason else ""),
        now=draft.now,
    )
    return Summary(draft.team, draft.period, draft.facts, written.text, written.source, written.reason)


def finish_summary(engine: Engine, draft: SummaryDraft, writer: SummaryWriter) -> Summary:
    """The model's call with no transaction open, then what it cost and the audit row in a short one."""
    written = write_narrative(writer, draft.facts)
    try:
        with session_scope(engine) as session:
            return record_summary(session, draft, written)
    except SQLAlchemyError as error:  # the model's work is not thrown away because the database is busy
        log.warning(
            "Unrecorded look: %s summary %s at %s (%s; the model's tokens are not recorded either)",
            draft.actor,
            draft.scope_label,
            draft.now.isoformat(timespec="seconds"),
            type(error).__name__,
        )
        return Summary(draft.team, draft.period, draft.facts, written.text, written.source, written.reason)


def request_summary(
    engine: Engine,
    *,
    requester_id: int,
    actor: str,
    team_name: str | None,
    writer: SummaryWriter | None,
    settings: Settings,
    now: datetime | None = None,
) -> Summary:
    """A manager's summary of their team for its last four whole weeks (in the team's time zone): read and
    decide in one transaction, ask the model outside any, record in another."""
    with session_scope(engine) as session:
        draft = draft_summary(
            session,
            requester_id=requester_id,
            actor=actor,
            team_name=team_name,
            writer=writer,
            settings=settings,
            now=now,
        )
    if isinstance(draft, Summary):
        return draft
    assert writer is not None  # a draft is only left for the model to write
    return finish_summary(engine, draft, writer)


def _failure_reason(error: Exception) -> str:
    if isinstance(error, APITimeoutError):
        return "the language model did not answer in time"
    if isinstance(error, APIStatusError):
        return f"the language model answered with an error (HTTP {error.status_code})"
    return "the language model could not be reached"
