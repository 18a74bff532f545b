"""Manager summaries against a loopback OpenAI-compatible server, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from bot.config import Settings
from bot.summaries import SummaryWriter, build_summary_writer, facts_prompt, request_summary
from storage.db import session_scope
from storage.models import AuditEvent, Source, UsageRecord
from storage.roles import add_manager
from tests.support.digest_seed import seed_team
from tests.support.llm_standin import LLMStandIn

NOW = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)  # the summary covers 2026-03-02 .. 2026-03-29
FIRST_WEEK = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn() as standin:
        yield standin


def llm_settings(db_url: str, llm: LLMStandIn, timeout: float = 5.0) -> Settings:
    return Settings(
        database_url=db_url,
        min_group_size=5,
        openai_api_key="sk-test",
        openai_base_url=llm.base_url,
        llm_model="gpt-4o-mini",
        llm_timeout_seconds=timeout,
        llm_max_retries=0,
    )


def setup(engine: Engine, size: int = 6) -> tuple[int, int]:
    """A team with a manager (its first member) and a member who is not one."""
    with session_scope(engine) as session:
        seeded = seed_team(session, "platform", size, FIRST_WEEK, weeks=4)
        add_manager(session, seeded.team.id or 0, seeded.people[0].id or 0)
        return seeded.people[0].id or 0, seeded.people[1].id or 0


def ask(engine: Engine, config: Settings, person_id: int, writer: SummaryWriter | None, team: str | None = None):  # type: ignore[no-untyped-def]
    return request_summary(
        engine,
        requester_id=person_id,
        actor=f"test:{person_id}",
        team_name=team,
        writer=writer,
        settings=config,
        now=NOW,
    )


def audit(session: Session) -> list[tuple[str, str]]:
    return [(e.action, e.scope) for e in session.exec(select(AuditEvent).order_by(AuditEvent.id)).all()]  # type: ignore[arg-type]


def test_a_manager_gets_the_models_narrative_when_every_number_is_a_fact(
    engine: Engine, db_url: str, llm: LLMStandIn
) -> None:
    manager, _member = setup(engine)
    config = llm_settings(db_url, llm)
    # 6 people x 8 runs x $2.50 = $120.00 over four weeks.
    llm.reply = "The team made 48 agent runs and spent $120.00."
    summary = ask(engine, config, manager, build_summary_writer(config))
    assert (summary.source, summary.fallback_reason) == ("llm", None)
    assert summary.narrative == llm.reply
    with session_scope(engine) as session:
        assert audit(session) == [("summary", "team:platform")]


def test_the_model_is_shown_aggregates_only_never_names_titles_or_the_team(
    engine: Engine, db_url: str, llm: LLMStandIn
) -> None:
    manager, _ = setup(engine)
    config = llm_settings(db_url, llm)
    ask(engine, config, manager, build_summary_writer(config))
    (request,) = llm.requests
    prompt = " ".join(message["content"] for message in request["messages"]).lower()
    assert "agent runs: 48" in prompt and "known spend (estimated): $120.00" in prompt
    assert "useful" not in prompt and "reviewed" not in prompt  # the owners' own verdicts are no team fact
    for private in ("platform", "person", "@example.com", "secret title", "fixed the flaky"):
        assert private not in prompt
    assert request["auth"] == "Bearer sk-test"


def test_a_made_up_number_makes_the_summary_fall_back_to_the_template_and_say_so(
    engine: Engine, db_url: str, llm: LLMStandIn
) -> None:
    manager, _ = setup(engine)
    config = llm_settings(db_url, llm)
    llm.reply = "The team made 48 runs and saved 37 hours of work."
    summary = ask(engine, config, manager, build_summary_writer(config))
    assert summary.source == "template"
    assert "37" not in summary.narrative
    assert summary.narrative.startswith(
        "Written from a template because the language model used a number that is not among the facts."
    )
    assert "48 agent runs" in summary.narrative


def test_the_bots_own_summary_tokens_are_recorded_as_tokenwise_usage(
    engine: Engine, db_url: str, llm: LLMStandIn
) -> None:
    manager, _ = setup(engine)
    config = llm_settings(db_url, llm)
    llm.reply = "Made up: 999 runs."  # rejected, but the tokens were still spent
    ask(engine, config, manager, build_summary_writer(config))
    with session_scope(engine) as session:
        source = session.exec(select(Source).where(Source.name == "tokenwise")).one()
        (record,) = session.exec(select(UsageRecord).where(UsageRecord.source_id == source.id)).all()
        assert (record.person_id, record.agent, record.model) == (manager, "tokenwise", "gpt-4o-mini")
        assert (record.input_tokens, record.output_tokens) == (321, 54)
        assert record.cost_usd is not None and record.cost_usd > Decimal(0)


def test_a_model_that_hangs_times_out_quickly_and_the_template_is_used(
    engine: Engine, db_url: str, llm: LLMStandIn
) -> None:
    manager, _ = setup(engine)
    config = llm_settings(db_url, llm, timeout=0.5)
    llm.hang = True
    started = time.monotonic()
    summary = ask(engine, config, manager, build_summary_writer(config))
    assert time.monotonic() - started < 5
    assert summary.source == "template"
    assert summary.fallback_reason == "the language model did not answer in time"


def test_a_failing_model_falls_back_too(engine: Engine, db_url: str, llm: LLMStandIn) -> None:
    manager, _ = setup(engine)
    config = llm_settings(db_url, llm)
    llm.status = 500
    summary = ask(engine, config, manager, build_summary_writer(config))
    assert (summary.source, summary.fallback_reason) == (
        "template",
        "the language model answered with an error (HTTP 500)",
    )


def test_an_unreachable_model_falls_back_too(engine: Engine, db_url: str, llm: LLMStandIn) -> None:
    manager, _ = setup(engine)
    config = llm_settings(db_url, llm).model_copy(update={"openai_base_url": "http://127.0.0.1:9/v1"})
    summary = ask(engine, config, manager, build_summary_writer(config))
    assert (summary.source, summary.fallback_reason) == ("template", "the language model could not be reached")


def test_without_a_configured_model_the_template_says_so(engine: Engine, db_url: str) -> None:
    manager, _ = setup(engine)
    config = Settings(database_url=db_url, min_group_size=5)
    assert build_summary_writer(config) is None
    summary = ask(engine, config, manager, None)
    assert summary.narrative.startswith("Written from a template because no language model is configured.")


def test_a_non_manager_gets_a_polite_refusal_and_no_model_call(engine: Engine, db_url: str, llm: LLMStandIn) -> None:
    _manager, member = setup(engine)
    config = llm_settings(db_url, llm)
    summary = ask(engine, config, member, build_summary_writer(config), team="platform")
    assert summary.refused and summary.facts == [] and summary.narrative == ""
    assert summary.refusal is not None and summary.refusal.startswith("Sorry, summaries of platform are only for")
    assert llm.requests == []
    alone = ask(engine, config, member, build_summary_writer(config))
    assert alone.refusal == "Summaries are for team managers, and you are not a manager of any team in Tokenwise."
    with session_scope(engine) as session:
        assert audit(session) == [("summary.refused", "team:platform"), ("summary.refused", "team:?")]


def test_a_summary_of_a_team_below_the_minimum_size_is_withheld_without_a_model_call(
    engine: Engine, db_url: str, llm: LLMStandIn
) -> None:
    manager, _ = setup(engine, size=4)
    config = llm_settings(db_url, llm)
    summary = ask(engine, config, manager, build_summary_writer(config))
    assert summary.source == "withheld" and summary.narrative.startswith("Withheld: fewer than 5 people")
    assert llm.requests == []
    with session_scope(engine) as session:
        assert audit(session) == [("summary.withheld", "team:platform")]
        assert (
            session.exec(select(func.count()).select_from(UsageRecord).where(UsageRecord.agent == "tokenwise")).one()
            == 0
        )


def test_the_prompt_lists_each_fact_once() -> None:
    from bot.summaries import Fact

    assert facts_prompt([Fact("a", "Runs", "3")]) == "Facts about the team:\n- Runs: 3"


def test_an_unknown_team_is_refused_with_the_known_teams_and_audited(engine: Engine, db_url: str) -> None:
    manager, _ = setup(engine)
    summary = ask(engine, Settings(database_url=db_url, min_group_size=5), manager, None, team="platfrom")
    assert summary.refusal == "No team called 'platfrom'. Teams: platform."
    with session_scope(engine) as session:
        assert audit(session) == [("summary.refused", "team:platfrom")]
