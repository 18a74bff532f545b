"""Tokenmaxxing does not pay: nothing one person could do alone improves a team headline.

First, burning ten times the tokens with nothing to show, on the metrics engine. Then each row of
docs/metrics.md "What a person could do alone", tried by Ada, one of a five-person team whose week already
holds real evidence (pull requests merged by colleagues, CI, a deploy), through the real edges: signed Slack
clicks to the real Bolt app, tokens limited to her on POST /v1/runs, /v1/usage, /v1/outcomes and OTLP, and
signed GitHub deliveries to POST /v1/github/webhook. Headlines are read as the digest, `/tokenwise team` and
the manager summary read them (bot.reports, bot.digest, bot.summaries), for the team and the organisation,
on SQLite and PostgreSQL: none may improve, and none may turn withheld (that would hide, not guard).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, insert, select
from sqlmodel import Session

from bot.app import create_app
from bot.devtools.console import LocalServer
from bot.devtools.slack_requests import SlackRequests
from bot.devtools.slack_standin import SlackStandIn
from bot.digest import build_digest
from bot.periods import Period
from bot.reports import Disclosure, build_report, group_weeks
from bot.seed import seed_organisation
from bot.services import Services
from bot.summaries import normalise_number, team_facts
from handlers.slack.people import SlackPeople
from storage.db import session_scope
from storage.identities import link_identity
from storage.metrics import Metrics, Scope, compute
from storage.models import (
    AgentRun,
    Annotation,
    Membership,
    Outcome,
    OutcomeLink,
    Person,
    PullRequest,
    UsageRecord,
    table_of,
)
from storage.people import get_or_create_person
from tests.support import github_payloads as gh
from tests.support.github_payloads import Commit, sha
from tests.support.ingest_fixtures import new_token
from tests.support.slack_harness import ADA, BOT_TOKEN, SIGNING_SECRET, Harness, in_last_week, make_settings
from tests.support.slack_harness import team as make_team
from tests.test_slack_app import buttons

# -- tenfold tokens, on the metrics engine -------------------------------------------------------------------
END = date(2026, 11, 22)
PERIOD = Period(date(2026, 11, 9), END)


def _tokenmaxx(engine: Engine, person_id: int) -> None:
    """Add nine more copies of every usage record of the person, in new runs nobody reviews."""
    runs, usage = table_of(AgentRun), table_of(UsageRecord)
    with engine.begin() as connection:
        next_run = connection.execute(select(func.max(runs.c.id))).scalar_one() + 1
        next_usage = connection.execute(select(func.max(usage.c.id))).scalar_one() + 1
        records = connection.execute(select(usage).where(usage.c.person_id == person_id)).mappings().all()
        for copy in range(9):
            for record in records:
                connection.execute(
                    insert(runs).values(
                        id=next_run,
                        source_id=record["source_id"],
                        external_id=f"maxx-{next_run}",
                        person_id=person_id,
                        agent=record["agent"],
                        started_at=record["occurred_at"],
                    )
                )
                row = dict(record) | {"id": next_usage, "run_id": next_run, "dedupe_key": f"maxx-{copy}-{next_usage}"}
                connection.execute(insert(usage).values(**row))
                next_run += 1
                next_usage += 1


def _metric_headlines(m: Metrics) -> dict[str, Decimal | None]:
    return {
        "verified_spend_share": m.verified_spend_share,
        "cost_per_useful_run": m.cost_per_useful_run,
        "cost_per_outcome": m.cost_per_outcome,
        "outcome_value": m.outcome_value,
        "useful_runs": m.useful_runs,
    }


def test_tenfold_tokens_without_outcomes_improve_no_headline_metric(engine: Engine) -> None:
    seed_organisation(engine, people=12, teams=2, weeks=3, seed=3, end=END)
    with Session(engine) as session:
        # An ordinary, productive person with priced usage turns into a tokenmaxxer.
        gamer = next(
            p
            for p in session.scalars(select(Person).order_by(Person.id))
            if (m := compute(session, Scope.person(p.id or 0), PERIOD.start, PERIOD.end)).cost_usd > 0
            and m.outcome_value > 0
        )
        team_id = session.scalars(select(Membership.team_id).where(Membership.person_id == gamer.id)).one()
        team, me = Scope.team(team_id), Scope.person(gamer.id or 0)
        before_team = compute(session, team, PERIOD.start, PERIOD.end)
        before_me = compute(session, me, PERIOD.start, PERIOD.end)
    _tokenmaxx(engine, gamer.id or 0)
    with Session(engine) as session:
        after_team = compute(session, team, PERIOD.start, PERIOD.end)
        after_me = compute(session, me, PERIOD.start, PERIOD.end)

    assert after_me.total_tokens == 10 * before_me.total_tokens
    assert after_team.total_tokens > before_team.total_tokens
    b, a = _metric_headlines(before_team), _metric_headlines(after_team)
    assert a["outcome_value"] == b["outcome_value"]
    assert a["useful_runs"] == b["useful_runs"]
    assert a["verified_spend_share"] is not None and b["verified_spend_share"] is not None
    assert a["verified_spend_share"] < b["verified_spend_share"]
    assert a["cost_per_useful_run"] is not None and b["cost_per_useful_run"] is not None
    assert a["cost_per_useful_run"] > b["cost_per_useful_run"]
    assert a["cost_per_outcome"] is not None and b["cost_per_outcome"] is not None
    assert a["cost_per_outcome"] > b["cost_per_outcome"]
    assert after_team.reviewed_share is not None and before_team.reviewed_share is not None
    assert after_team.reviewed_share < before_team.reviewed_share
    assert before_me.verified_spend_share is not None and after_me.verified_spend_share is not None
    assert after_me.verified_spend_share < before_me.verified_spend_share


# -- each row, through the real edges ------------------------------------------------------------------------
REPO = gh.REPO
CLAUDE = "Co-authored-by: Claude <noreply@anthropic.com>"
MIN_GROUP = 3
# The team: Ada (the Slack user who games) and four colleagues, each with a GitHub login an operator linked.
PEOPLE = {
    "ada@example.com": "ada-gh",
    "grace@example.com": "grace-gh",
    "alan@example.com": "alan-gh",
    "dan@example.com": "dan-gh",
    "eve@example.com": "eve-gh",
}
ADA_EMAIL = "ada@example.com"
HIGHER_IS_BETTER = ("verified_spend_share", "outcome_value", "merged_prs", "merged_prs_with_agent_help")
LOWER_IS_BETTER = ("cost_per_merged_pr", "cost_per_outcome")
SUMMARY_FACTS = ("verified_spend_share", "cost_per_merged_pr", "outcome_value", "merged_prs")


@dataclass
class Week:
    """The running app (Slack stand-in, ingest and GitHub routes), the team, and its last whole week."""

    harness: Harness
    github_secret: str
    operator_token: str  # the team's agent platform: an operator's api source
    wednesday: datetime  # noon, in the last whole week: inside every team view's window
    team_id: int

    @property
    def engine(self) -> Engine:
        return self.harness.engine

    def at(self, days: float, hours: float = 0) -> datetime:
        return self.wednesday + timedelta(days=days, hours=hours)

    def send(self, route: str, kind: str, items: list[dict[str, Any]], token: str) -> httpx.Response:
        response = self.harness.http.post(route, json={kind: items}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        return response

    def deliver(
        self, event: str, payload: dict[str, Any], delivery_id: str | None = None, secret: str | None = None
    ) -> httpx.Response:
        made = gh.delivery(event, payload, secret or self.github_secret, delivery_id)
        return self.harness.http.post("/v1/github/webhook", content=made.body, headers=made.headers())

    def token_for_ada(self, kind: str = "api") -> str:
        """A token limited to Ada (an operator's `--person`, allowed outcomes): what she can send as herself."""
        return new_token(self.engine, f"ada-{kind}", kind, outcomes=True, person=ADA_EMAIL)

    def headlines(self) -> dict[str, Any]:
        return headlines(self.engine, self.team_id)


def run_item(external_id: str, email: str, started: datetime, branch: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "email": email,
        "agent": "claude-code",
        "started_at": started.isoformat(),
        "ended_at": (started + timedelta(minutes=30)).isoformat(),
        "repo": REPO,
        "branch": branch,
    } | extra


def usage_item(key: str, email: str, at: datetime, run: str | None, cost: str, tokens: int = 20_000) -> dict[str, Any]:
    return {
        "dedupe_key": key,
        "email": email,
        "occurred_at": at.isoformat(),
        "agent": "claude-code",
        "model": "claude-sonnet-4-5",
        "input_tokens": tokens,
        "output_tokens": tokens // 10,
        "cost_usd": cost,
        "run_external_id": run,
    }


def merged_by(pr: gh.PullRequest, login: str, at: datetime) -> dict[str, Any]:
    return pr.payload("closed", merged_at=at, merged_by=login, merge_sha=sha(f"merge-{pr.number}"))


# -- the headlines, as each screen reads them --------------------------------------------------------------
def headlines(engine: Engine, team_id: int) -> dict[str, Any]:
    """Every figure the digest, `/tokenwise team` and the manager summary lead with, for the team and the
    organisation, in the last whole week; None where withheld."""
    found: dict[str, Any] = {}
    rules = Disclosure(min_group_size=MIN_GROUP)
    with Session(engine) as session:
        for scope in (Scope.team(team_id, "payments"), Scope.org()):
            period = group_weeks(session, scope, "UTC")
            report = build_report(session, scope, period, rules)  # `/tokenwise team`, `tokenwise report --team`
            digest = build_digest(session, scope, period, rules)  # the weekly digest
            totals = report.totals
            assert totals.metrics is not None, totals.withheld
            for key in (*HIGHER_IS_BETTER, *LOWER_IS_BETTER):
                if key != "merged_prs_with_agent_help":
                    found[f"{scope.kind}:{key}"] = totals.value(key)
            found[f"{scope.kind}:merged_prs_with_agent_help"] = digest.merged_prs_with_agent
            for kind, count in totals.metrics.outcomes_by_kind.items():
                found[f"{scope.kind}:outcomes:{kind}"] = count
            assert digest.figures is not None and digest.metrics is not None
            assert digest.figures.value("verified_spend_share") == totals.value("verified_spend_share")
            facts = team_facts(totals.metrics, None, digest.merged_prs_with_agent, period, totals.hidden)
            shown = {fact.key: fact.text for fact in facts}  # the summary's facts, as the model sees them
            for key in SUMMARY_FACTS:
                found[f"{scope.kind}:summary:{key}"] = normalise_number(shown[key]) if key in shown else None
    return found


def improvements(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Each headline that got better (or turned withheld) from `before` to `after`."""
    problems = []
    for key in sorted(before.keys() | after.keys()):
        was, now = before.get(key), after.get(key)
        name = key.rsplit(":", 1)[-1]
        if was is not None and now is None:
            problems.append(f"{key} withheld after ({was})")
        elif key.split(":")[1] == "outcomes":
            if (now or 0) > (was or 0):
                problems.append(f"{key}: {was} -> {now}")
        elif was is None or now is None:
            continue
        elif (name in LOWER_IS_BETTER and now < was) or (name not in LOWER_IS_BETTER and now > was):
            problems.append(f"{key}: {was} -> {now}")
    return problems


def no_headline_improves(week: Week, act: Callable[[], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    before = week.headlines()
    assert before["team:merged_prs"] == 3 and Decimal(0) < before["team:verified_spend_share"] < 1
    act()
    after = week.headlines()
    assert improvements(before, after) == []
    return before, after


def ada_alone(week: Week) -> Any:
    """Ada's own figures for the week (what her own view shows), to check that what she did arrived."""
    with Session(week.engine) as session:
        ada = get_or_create_person(session, email=ADA_EMAIL)
        period = group_weeks(session, Scope.team(week.team_id), "UTC")
        return compute(session, Scope.person(ada.id or 0), period.start, period.end)


# -- the team and its week ---------------------------------------------------------------------------------
@pytest.fixture
def week(request: pytest.FixtureRequest, engine: Engine, db_url: str) -> Iterator[Week]:
    """The real app (as the `harness` fixture, with settings a test may add by indirect parametrization) and a
    team's week of ordinary work with real evidence: each person has a run on a feature branch and one on
    main; Ada's and Grace's pull requests are merged by colleagues and linked to their feature runs by branch;
    Dan's carries Claude's trailer (agent-assisted, linked to no run); CI passed on Ada's, Grace's was deployed."""
    extra = getattr(request, "param", {})
    with SlackStandIn(token=BOT_TOKEN) as slack:
        settings = make_settings(slack, db_url, **extra)  # min_group_size=3, MIN_GROUP
        services = Services(settings=settings, engine=engine, people=SlackPeople(60))
        with LocalServer(create_app(services)) as server, httpx.Client(base_url=server.url, timeout=60) as http:
            slack.reset()
            harness = Harness(slack, services, http, SlackRequests(SIGNING_SECRET, team_id=slack.team_id), engine)
            yield _seed(harness)


def _seed(harness: Harness) -> Week:
    engine = harness.engine
    secret = new_token(engine, "acme-github", "github")
    operator = new_token(engine, "agent-platform", "api", outcomes=True)
    with session_scope(engine) as session:
        people = []
        for email, login in PEOPLE.items():
            made = get_or_create_person(session, email=email, display_name=login)
            link_identity(session, "github", login, made.id or 0)
            people.append(made)
        team_id = make_team(session, "payments", people).id or 0
    wednesday = datetime.now(UTC) - in_last_week()
    week = Week(harness, secret, operator, wednesday, team_id)
    runs, usage = [], []
    for email, login in PEOPLE.items():
        name = login.removesuffix("-gh")
        for suffix, branch in (("feature", f"{name}/feature"), ("main", "main")):
            external = f"{name}-{suffix}"
            runs.append(run_item(external, email, week.at(-1), branch))
            usage.append(usage_item(external, email, week.at(-1, 1), external, "3.00"))
    week.send("/v1/runs", "runs", runs, operator)
    week.send("/v1/usage", "records", usage, operator)
    prs = {
        "ada": gh.PullRequest(1, "ada-gh", "ada/feature", sha("ada-head"), week.at(-1, 2)),
        "grace": gh.PullRequest(2, "grace-gh", "grace/feature", sha("grace-head"), week.at(-1, 2)),
        "dan": gh.PullRequest(3, "dan-gh", "dan/docs", sha("dan-head"), week.at(-1, 2)),  # no run on its branch
    }
    trailer = Commit("dan-head", "dan@example.com", "dan-gh", week.at(-1, 2), trailers=[CLAUDE])
    assert week.deliver("push", gh.push("dan/docs", [trailer]), "seed-push").status_code == 200
    for name, merger in (("ada", "grace-gh"), ("grace", "alan-gh"), ("dan", "eve-gh")):
        assert week.deliver("pull_request", prs[name].payload("opened"), f"seed-opened-{name}").status_code == 200
        merge = merged_by(prs[name], merger, week.at(1))
        assert week.deliver("pull_request", merge, f"seed-merged-{name}").status_code == 200
    ci = gh.workflow_run(sha("ada-head"), "ada/feature", week.at(1, -1), run_id=11, pr_numbers=(1,))
    assert week.deliver("workflow_run", ci, "seed-ci").status_code == 200
    deploy = gh.deployment_status(sha("merge-2"), week.at(1, 2))
    assert week.deliver("deployment_status", deploy, "seed-deploy").status_code == 200
    return week


def test_the_seeded_week_has_evidence_behind_its_headlines(week: Week) -> None:
    found = week.headlines()
    # $30 of spend, $6 of it on the two runs linked to merges by colleagues; three counted merges (Dan's by
    # its trailer), CI on Ada's and a deploy of Grace's: 3 * 3 + 0.5 + 2.
    assert found["team:verified_spend_share"] == 0.2
    assert found["team:merged_prs"] == found["team:merged_prs_with_agent_help"] == 3
    assert found["team:outcome_value"] == 11.5
    assert found["team:cost_per_merged_pr"] == 10.0
    assert found["team:summary:verified_spend_share"] == 20
    team = {key.removeprefix("team:"): value for key, value in found.items() if key.startswith("team:")}
    org = {key.removeprefix("org:"): value for key, value in found.items() if key.startswith("org:")}
    assert team == org  # the organisation knows these five people only


# -- the rows ------------------------------------------------------------------------------------------------
def test_burning_ten_times_the_tokens_on_her_own_token_improves_no_headline(week: Week) -> None:
    token = week.token_for_ada()
    spent_before = ada_alone(week).cost_usd

    def burn() -> None:
        week.send("/v1/runs", "runs", [run_item("burn", ADA_EMAIL, week.at(0), "ada/experiments")], token)
        records = [usage_item(f"burn-{n}", ADA_EMAIL, week.at(0, 1), "burn", "6.00", 200_000) for n in range(9)]
        week.send("/v1/usage", "records", records, token)

    before, after = no_headline_improves(week, burn)
    assert ada_alone(week).cost_usd == spent_before + 54
    assert after["team:verified_spend_share"] < before["team:verified_spend_share"]
    assert after["team:cost_per_merged_pr"] > before["team:cost_per_merged_pr"]


def test_starting_sixty_more_runs_improves_no_headline(week: Week) -> None:
    token = week.token_for_ada()

    def more_runs() -> None:
        runs = [run_item(f"more-{n}", ADA_EMAIL, week.at(0, n / 10), "ada/experiments") for n in range(60)]
        week.send("/v1/runs", "runs", runs, token)
        records = [usage_item(f"more-{n}", ADA_EMAIL, week.at(0, n / 10), f"more-{n}", "0.50") for n in range(60)]
        week.send("/v1/usage", "records", records, token)

    before, after = no_headline_improves(week, more_runs)
    assert ada_alone(week).runs == 62
    assert after["team:verified_spend_share"] < before["team:verified_spend_share"]


def test_many_tiny_runs_improve_no_headline(week: Week) -> None:
    token = week.token_for_ada()

    def tiny_runs() -> None:
        runs = [run_item(f"tiny-{n}", ADA_EMAIL, week.at(0, n / 100), None) for n in range(200)]
        week.send("/v1/runs", "runs", runs, token)
        records = [
            usage_item(f"tiny-{n}", ADA_EMAIL, week.at(0, n / 100), f"tiny-{n}", "0.000001", 1) for n in range(200)
        ]
        week.send("/v1/usage", "records", records, token)

    no_headline_improves(week, tiny_runs)
    assert ada_alone(week).runs == 202


def test_clicking_useful_on_every_run_slack_offers_her_improves_no_headline(week: Week) -> None:
    token = week.token_for_ada()
    runs = [run_item(f"cheap-{n}", ADA_EMAIL, week.at(0, n), "ada/feature") for n in range(8)]
    week.send("/v1/runs", "runs", runs, token)  # after the merge: no link
    records = [usage_item(f"cheap-{n}", ADA_EMAIL, week.at(0, n), f"cheap-{n}", "0.10") for n in range(8)]
    week.send("/v1/usage", "records", records, token)

    def click_useful_on_everything() -> None:
        for _ in range(5):  # `/tokenwise runs` offers five unreviewed runs at a time
            _, url = week.harness.command("runs", user_id=ADA)
            (answer,) = week.harness.respond_to(url)
            offered = [b["value"] for b in buttons(answer) if b["action_id"] == "run_useful"]
            if not offered:
                return
            for value in offered:
                response, clicked = week.harness.click("run_useful", value, user_id=ADA)  # signed block_actions
                assert response.status_code == 200
                week.harness.respond_to(clicked)

    no_headline_improves(week, click_useful_on_everything)
    with Session(week.engine) as session:
        useful = session.scalar(select(func.count()).where(table_of(Annotation).c.verdict == "useful"))
    assert useful == 10  # every run of hers, the two seeded and the eight cheap ones
    assert ada_alone(week).useful_runs == 10  # her own view has them: her feedback loop


def test_outcomes_sent_with_her_own_token_improve_no_headline(week: Week) -> None:
    """Merges, deploys and CI she reports herself, on runs of hers and on none, and a commit of a colleague's
    merged pull request claimed for her run: self-reported, shown to her, counted nowhere."""
    token = week.token_for_ada()
    week.send("/v1/runs", "runs", [run_item("claims", ADA_EMAIL, week.at(-1, 3), "ada/claims")], token)
    week.send("/v1/usage", "records", [usage_item("claims", ADA_EMAIL, week.at(-1, 3), "claims", "3.00")], token)

    def report_outcomes() -> None:
        items: list[dict[str, Any]] = [
            {"external_id": f"mine-{kind}-{n}", "run_external_id": "claims", "kind": kind}
            for kind in ("pr_merged", "deploy", "tests_passed", "ticket_closed")
            for n in range(5)
        ]
        items += [
            {
                "external_id": f"loose-{n}",
                "kind": "pr_merged",
                "email": ADA_EMAIL,
                "occurred_at": week.at(0).isoformat(),
            }
            for n in range(5)
        ]
        items.append(  # "my run produced Grace's merged commit": would link her run to Grace's merge
            {"external_id": "steal", "run_external_id": "claims", "kind": "commit", "commit_sha": sha("grace-head")}
        )
        week.send("/v1/outcomes", "outcomes", items, token)

    no_headline_improves(week, report_outcomes)
    assert ada_alone(week).self_reported_by_kind["pr_merged"] == 10
    with Session(week.engine) as session:
        claimed = session.execute(
            select(func.count())
            .select_from(table_of(OutcomeLink).join(table_of(AgentRun), AgentRun.id == OutcomeLink.run_id))  # type: ignore[arg-type]
            .where(table_of(AgentRun).c.external_id == "claims", table_of(OutcomeLink).c.removed_at.is_(None))
        ).scalar_one()
    assert claimed == 0  # Grace's merge is not linked to Ada's run


def test_claude_codes_own_commit_and_pr_counters_improve_no_headline(week: Week) -> None:
    token = week.token_for_ada("otlp")
    nanos = str(int(week.at(0).timestamp() * 1e9))

    def point(value: int, **attributes: str) -> dict[str, Any]:
        shaped = [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()]
        return {"attributes": shaped, "startTimeUnixNano": nanos, "timeUnixNano": nanos, "asInt": str(value)}

    def counters() -> None:
        resource = [
            {"key": key, "value": {"stringValue": value}}
            for key, value in (("service.name", "claude-code"), ("user.email", ADA_EMAIL), ("session.id", "s-1"))
        ]
        metrics = [
            {"name": "claude_code.commit.count", "sum": {"aggregationTemporality": 1, "dataPoints": [point(40)]}},
            {"name": "claude_code.pull_request.count", "sum": {"aggregationTemporality": 1, "dataPoints": [point(12)]}},
        ]
        export = {"resourceMetrics": [{"resource": {"attributes": resource}, "scopeMetrics": [{"metrics": metrics}]}]}
        response = week.harness.http.post(
            "/v1/otlp/v1/metrics",
            content=json.dumps(export),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert response.status_code == 200 and "partialSuccess" not in response.json(), response.text

    no_headline_improves(week, counters)
    mine = ada_alone(week).self_reported_by_kind
    assert mine.get("commit", 0) > 0 and mine.get("pr_opened", 0) > 0


def test_opening_and_closing_pull_requests_without_merging_improves_no_headline(week: Week) -> None:
    token = week.token_for_ada()
    runs = [run_item(f"pr-run-{n}", ADA_EMAIL, week.at(-1, n), f"ada/pr-{n}") for n in range(6)]
    week.send("/v1/runs", "runs", runs, token)
    records = [usage_item(f"pr-run-{n}", ADA_EMAIL, week.at(-1, n), f"pr-run-{n}", "1.00") for n in range(6)]
    week.send("/v1/usage", "records", records, token)

    def open_and_close() -> None:
        for n in range(6):
            pr = gh.PullRequest(100 + n, "ada-gh", f"ada/pr-{n}", sha(f"pr-{n}"), week.at(0, n))
            assert week.deliver("pull_request", pr.payload("opened")).status_code == 200
            closed = pr.payload("closed", closed_at=week.at(0, n + 0.5))
            assert week.deliver("pull_request", closed).status_code == 200

    no_headline_improves(week, open_and_close)
    assert ada_alone(week).self_reported_by_kind.get("pr_opened", 0) == 7  # her seeded one and six more


def _branch_full_of_runs(week: Week, branch: str, count: int = 10) -> None:
    token = week.token_for_ada()
    runs = [run_item(f"{branch}-{n}", ADA_EMAIL, week.at(-1, n), branch) for n in range(count)]
    week.send("/v1/runs", "runs", runs, token)
    records = [usage_item(f"{branch}-{n}", ADA_EMAIL, week.at(-1, n), f"{branch}-{n}", "2.00") for n in range(count)]
    week.send("/v1/usage", "records", records, token)


def _merge_her_own(week: Week, number: int, branch: str, additions: int, deletions: int) -> None:
    commit = Commit(f"own-{number}", ADA_EMAIL, "ada-gh", week.at(0), trailers=[CLAUDE])
    assert week.deliver("push", gh.push(branch, [commit])).status_code == 200
    pr = gh.PullRequest(number, "ada-gh", branch, commit.sha, week.at(0), additions=additions, deletions=deletions)
    assert week.deliver("pull_request", pr.payload("opened")).status_code == 200
    assert week.deliver("pull_request", merged_by(pr, "ada-gh", week.at(1))).status_code == 200  # by herself


def _merge_outcome(week: Week, number: int) -> Outcome:
    with Session(week.engine) as session:
        return session.execute(
            select(Outcome).where(table_of(Outcome).c.external_id == f"github:{REPO}#{number}:merged")
        ).scalar_one()


def test_merging_her_own_pull_request_on_a_branch_full_of_runs_improves_no_headline(week: Week) -> None:
    _branch_full_of_runs(week, "ada/self")
    no_headline_improves(week, lambda: _merge_her_own(week, 200, "ada/self", additions=400, deletions=20))
    merge = _merge_outcome(week, 200)
    assert (merge.evidence, merge.counted) == (False, False)  # TOKENWISE_GITHUB_SELF_MERGE_COUNTS is off


@pytest.mark.parametrize("week", [{"github_self_merge_counts": True}], indirect=True)
def test_an_empty_merge_on_a_branch_full_of_runs_improves_no_headline_even_when_self_merges_count(
    week: Week,
) -> None:
    _branch_full_of_runs(week, "ada/empty")
    no_headline_improves(week, lambda: _merge_her_own(week, 201, "ada/empty", additions=0, deletions=0))
    merge = _merge_outcome(week, 201)
    assert (merge.evidence, merge.counted) == (False, False)


def test_redelivered_and_replayed_webhooks_improve_no_headline(week: Week) -> None:
    """GitHub redelivers (the same X-GitHub-Delivery); a captured delivery replayed under new ids (the id is not
    signed): a pull request, a CI run and a deployment are each one outcome whatever arrives."""
    pr = gh.PullRequest(1, "ada-gh", "ada/feature", sha("ada-head"), week.at(-1, 2))
    merge = merged_by(pr, "grace-gh", week.at(1))
    ci = gh.workflow_run(sha("ada-head"), "ada/feature", week.at(1, -1), run_id=11, pr_numbers=(1,))
    deploy = gh.deployment_status(sha("merge-2"), week.at(1, 2))

    def redeliver() -> None:
        assert week.deliver("pull_request", merge, "seed-merged-ada").json()["duplicate"] is True
        for n in range(5):
            assert week.deliver("pull_request", merge, f"replay-merge-{n}").json()["duplicate"] is False
            assert week.deliver("pull_request", pr.payload("opened"), f"replay-opened-{n}").status_code == 200
            assert week.deliver("workflow_run", ci, f"replay-ci-{n}").status_code == 200
            assert week.deliver("deployment_status", deploy, f"replay-deploy-{n}").status_code == 200

    before, after = no_headline_improves(week, redeliver)
    assert after == before


def test_a_forged_merge_is_refused_and_improves_no_headline(week: Week) -> None:
    _branch_full_of_runs(week, "ada/forged")
    pr = gh.PullRequest(300, "ada-gh", "ada/forged", sha("forged"), week.at(0))

    def forge() -> None:
        answer = week.deliver("pull_request", merged_by(pr, "grace-gh", week.at(1)), secret="a-guessed-secret")
        assert answer.status_code == 401

    no_headline_improves(week, forge)
    with Session(week.engine) as session:
        assert session.execute(select(func.count()).select_from(table_of(PullRequest))).scalar_one() == 3


# -- what is left ------------------------------------------------------------------------------------------------
def test_runs_piled_on_a_branch_a_colleague_merged_improve_no_headline(week: Week) -> None:
    no_headline_improves(week, lambda: _branch_full_of_runs(week, "ada/feature", count=20))


def _her_pull_request_merged_by_a_colleague(week: Week, number: int, branch: str) -> None:
    """Ada's pull request on `branch`, no agent trailer, merged by Grace: ordinary review."""
    commit = Commit(f"plain-{number}", ADA_EMAIL, "ada-gh", week.at(0))
    assert week.deliver("push", gh.push(branch, [commit])).status_code == 200
    pr = gh.PullRequest(number, "ada-gh", branch, commit.sha, week.at(0), additions=40, deletions=4)
    assert week.deliver("pull_request", pr.payload("opened")).status_code == 200
    assert week.deliver("pull_request", merged_by(pr, "grace-gh", week.at(1))).status_code == 200


def test_spend_piled_on_her_linked_run_after_the_merge_verifies_nothing(week: Week) -> None:
    """Her own run, sent with her own token before the merge, verifies what it spent then; more spend she
    sends for it once the merge is known is counted as spend but verifies nothing."""
    token = week.token_for_ada()
    week.send("/v1/runs", "runs", [run_item("ada-own", ADA_EMAIL, week.at(-1), "ada/own")], token)
    week.send("/v1/usage", "records", [usage_item("ada-own-1", ADA_EMAIL, week.at(-1), "ada-own", "1.00")], token)
    _her_pull_request_merged_by_a_colleague(week, 300, "ada/own")
    before = ada_alone(week)
    assert before.verified_cost_usd == Decimal("4.00")  # the seed's feature run (3.00) and this run's 1.00

    def pile_on() -> None:
        items = [usage_item(f"ada-own-late-{n}", ADA_EMAIL, week.at(-1, n), "ada-own", "5.00") for n in range(10)]
        week.send("/v1/usage", "records", items, token)

    before_pile = week.headlines()  # her pull request counts: four merges now
    pile_on()
    assert improvements(before_pile, week.headlines()) == []
    after = ada_alone(week)
    assert (after.cost_usd - before.cost_usd, after.verified_cost_usd) == (Decimal(50), before.verified_cost_usd)


def test_a_run_sent_after_a_colleague_merged_makes_no_merge_agent_assisted(week: Week) -> None:
    _her_pull_request_merged_by_a_colleague(week, 301, "ada/plain")
    assert (_merge_outcome(week, 301).agent_assisted, _merge_outcome(week, 301).counted) == (False, False)
    no_headline_improves(week, lambda: _branch_full_of_runs(week, "ada/plain", count=3))
    merge = _merge_outcome(week, 301)
    assert (merge.evidence, merge.agent_assisted, merge.counted) == (True, False, False)
    with Session(week.engine) as session:
        links = session.execute(select(OutcomeLink).where(table_of(OutcomeLink).c.outcome_id == merge.id)).scalars()
        assert sorted((link.evidence, link.late) for link in links) == [("branch", True)] * 3  # shown, not evidence


def test_history_an_operator_imports_after_the_merge_still_links_and_verifies(week: Week) -> None:
    """An operator's source (here the agent platform; `tokenwise import` too) vouches for what it sends: a
    team's history imported after its merges is evidence as it would have been live."""
    _her_pull_request_merged_by_a_colleague(week, 302, "ada/history")
    spent = ada_alone(week).verified_cost_usd
    runs = [run_item("ada-history", ADA_EMAIL, week.at(-1), "ada/history")]
    week.send("/v1/runs", "runs", runs, week.operator_token)
    usage = [usage_item("ada-history-1", ADA_EMAIL, week.at(-1), "ada-history", "2.00")]
    week.send("/v1/usage", "records", usage, week.operator_token)
    merge = _merge_outcome(week, 302)
    assert (merge.agent_assisted, merge.counted) == (True, True)
    assert ada_alone(week).verified_cost_usd == spent + Decimal("2.00")


def test_an_older_run_claiming_her_merged_commit_after_the_merge_verifies_nothing(week: Week) -> None:
    """A run of hers stored before the merge, on no branch of the pull request, that she says produced its
    commit only once a colleague merged it: the claim is her word given after the result was known, so the
    link is late (shown, not evidence) and the merge stays without agent help."""
    token = week.token_for_ada()
    week.send("/v1/runs", "runs", [run_item("ada-idle", ADA_EMAIL, week.at(-1), "ada/elsewhere")], token)
    week.send("/v1/usage", "records", [usage_item("ada-idle-1", ADA_EMAIL, week.at(-1), "ada-idle", "9.00")], token)
    _her_pull_request_merged_by_a_colleague(week, 304, "ada/claimed")
    assert (_merge_outcome(week, 304).agent_assisted, _merge_outcome(week, 304).counted) == (False, False)
    verified = ada_alone(week).verified_cost_usd

    def claim() -> None:
        item = {
            "external_id": "claim-304",
            "run_external_id": "ada-idle",
            "kind": "commit",
            "commit_sha": sha("plain-304"),
        }
        week.send("/v1/outcomes", "outcomes", [item], token)

    no_headline_improves(week, claim)
    merge = _merge_outcome(week, 304)
    assert (merge.evidence, merge.agent_assisted, merge.counted) == (True, False, False)
    assert ada_alone(week).verified_cost_usd == verified
    with Session(week.engine) as session:
        links = session.execute(select(OutcomeLink).where(table_of(OutcomeLink).c.outcome_id == merge.id)).scalars()
        assert sorted((link.evidence, link.late) for link in links) == [("commit", True)]  # shown, not evidence
