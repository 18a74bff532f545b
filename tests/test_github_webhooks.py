"""GitHub webhooks through the real app (`tokenwise serve`'s FastAPI app on uvicorn), on SQLite and PostgreSQL:
deliveries signed as GitHub signs them, payloads built from GitHub's examples and checked against its schemas
(tests/support/github_payloads.py), outcomes and run links read back from the database."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from sqlalchemy import Engine, func, select

from bot.config import DEFAULT_AGENT_TRAILERS, Settings
from bot.github.webhooks import Incoming, Reading, agent_trailer, settle_waiting, take_deliveries
from bot.jobs import build_scheduler
from bot.services import Services
from storage.db import session_scope
from storage.identities import link_identity
from storage.models import (
    AgentRun,
    GithubCheck,
    GithubCommit,
    GithubDelivery,
    GithubUnsettled,
    Outcome,
    OutcomeLink,
    PullRequest,
    Source,
    table_of,
)
from storage.people import get_or_create_person
from storage.sources import revoke_source
from tests.support import github_payloads as gh
from tests.support.github_payloads import REPO, Commit, sha
from tests.support.ingest_fixtures import make_app, new_token, running_server

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK = "/v1/github/webhook"
ANA, ANA_LOGIN = "ana@example.com", "ana-dev"
REVIEWER = "bo-reviewer"
BRANCH = "fix/card-captures"
OPENED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MERGED = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
CLAUDE = "Co-authored-by: Claude <noreply@anthropic.com>"
GITHUB_TABLES = {
    "github_delivery": GithubDelivery,
    "pull_request": PullRequest,
    "github_commit": GithubCommit,
    "github_check": GithubCheck,
    "outcome": Outcome,
    "outcome_link": OutcomeLink,
    "agent_run": AgentRun,
    "github_unsettled": GithubUnsettled,
}


@dataclass
class GitHub:
    """The running app, a GitHub source's secret, an api source (runs, outcomes) and Ana, whose GitHub login
    an operator linked."""

    http: httpx.Client
    engine: Engine
    secret: str
    api_token: str

    def send(self, event: str, payload: dict[str, Any], delivery_id: str | None = None) -> httpx.Response:
        made = gh.delivery(event, payload, self.secret, delivery_id)
        return self.http.post(WEBHOOK, content=made.body, headers=made.headers())

    def post(self, route: str, kind: str, items: list[dict[str, Any]]) -> None:
        response = self.http.post(route, json={kind: items}, headers={"Authorization": f"Bearer {self.api_token}"})
        assert response.status_code == 200, response.text

    def settled(self) -> None:
        """Wait until the server has settled what a burst queued (it does so right after the burst)."""
        deadline = time.monotonic() + 30
        while self.counts()["github_unsettled"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.counts()["github_unsettled"] == 0, "the server did not settle the burst's pull requests"

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            return {
                name: connection.execute(select(func.count()).select_from(table_of(model))).scalar_one()
                for name, model in GITHUB_TABLES.items()
            }

    def outcomes(self) -> dict[str, dict[str, Any]]:
        """GitHub's outcomes by kind: (evidence, counted, agent_assisted, person's email, url)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(table_of(Outcome)).where(table_of(Outcome).c.external_id.like("github:%"))
            ).mappings()
            return {row["kind"]: dict(row) for row in rows}

    def links(self) -> list[tuple[str, str]]:
        """(run external id, evidence) of every link of a GitHub outcome."""
        links, runs = table_of(OutcomeLink).c, table_of(AgentRun).c
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(runs.external_id, links.evidence).join(table_of(AgentRun), runs.id == links.run_id)
            )
            return sorted((str(a), str(b)) for a, b in rows)


@pytest.fixture
def github(engine: Engine, db_url: str) -> Iterator[GitHub]:
    secret = new_token(engine, "acme-github", "github")
    api_token = new_token(engine, "agent-platform", "api", outcomes=True)
    with session_scope(engine) as session:
        ana = get_or_create_person(session, email=ANA)
        assert ana.id is not None
        link_identity(session, "github", ANA_LOGIN, ana.id)
    with running_server(make_app(engine, db_url)) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield GitHub(http, engine, secret, api_token)


def the_pr(**overrides: Any) -> gh.PullRequest:
    values: dict[str, Any] = {
        "number": 412,
        "author": ANA_LOGIN,
        "head_branch": BRANCH,
        "head_sha": sha("head"),
        "opened_at": OPENED,
    }
    return gh.PullRequest(**(values | overrides))


def merged(pr: gh.PullRequest, at: datetime = MERGED) -> dict[str, Any]:
    return pr.payload("closed", merged_at=at, merged_by=REVIEWER, merge_sha=sha("merge"))


def run(external_id: str, started_at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "email": ANA,
        "agent": "claude-code",
        "started_at": started_at.isoformat(),
        "ended_at": (started_at + timedelta(minutes=40)).isoformat(),
    } | fields


def flags(outcome: dict[str, Any]) -> tuple[bool, bool, bool]:
    return bool(outcome["evidence"]), bool(outcome["counted"]), bool(outcome["agent_assisted"])


# -- links ------------------------------------------------------------------------------------------------
def test_a_merged_pull_request_is_linked_to_the_run_that_produced_one_of_its_commits(github: GitHub) -> None:
    github.post("/v1/runs", "runs", [run("session-1", OPENED - timedelta(hours=2))])  # no repo or branch
    produced = Commit("c2", ANA, ANA_LOGIN, OPENED - timedelta(hours=1), subject="Retry captures")
    github.post(
        "/v1/outcomes",
        "outcomes",
        [{"external_id": "session-1:c2", "run_external_id": "session-1", "kind": "commit", "commit_sha": produced.sha}],
    )
    first = Commit("c1", ANA, ANA_LOGIN, OPENED - timedelta(hours=3))
    assert github.send("push", gh.push(BRANCH, [first, produced])).status_code == 200
    pr = the_pr(head_sha=produced.sha)
    assert github.send("pull_request", pr.payload("opened")).status_code == 200
    answer = github.send("pull_request", merged(pr))
    assert answer.status_code == 200 and answer.json() == {
        "delivery": answer.request.headers["X-GitHub-Delivery"],
        "duplicate": False,
    }
    outcomes = github.outcomes()
    assert set(outcomes) == {"pr_opened", "pr_merged"}
    assert flags(outcomes["pr_merged"]) == (True, True, True)
    assert outcomes["pr_merged"]["url"] == f"https://github.com/{REPO}/pull/412"
    assert outcomes["pr_merged"]["occurred_at"].replace(tzinfo=UTC) == MERGED
    assert flags(outcomes["pr_opened"]) == (False, False, False)
    assert github.links() == [("session-1", "commit")]


def test_a_merged_pull_request_is_linked_to_the_authors_run_on_its_repository_and_branch(github: GitHub) -> None:
    github.post(
        "/v1/runs",
        "runs",
        [
            run("on-branch", MERGED - timedelta(days=2), repo=REPO, branch=BRANCH),
            run("other-branch", MERGED - timedelta(days=2), repo=REPO, branch="main"),
            run("too-old", MERGED - timedelta(days=30), repo=REPO, branch=BRANCH),
        ],
    )
    assert github.send("pull_request", merged(the_pr())).status_code == 200
    outcomes = github.outcomes()
    assert flags(outcomes["pr_merged"]) == (True, True, True)
    assert github.links() == [("on-branch", "branch")]


def test_an_agent_trailer_alone_makes_a_merge_agent_assisted_and_counted_without_links(github: GitHub) -> None:
    commits = [
        Commit("t1", ANA, ANA_LOGIN, OPENED, trailers=["Reviewed-by: Bo", CLAUDE]),
        Commit("t2", ANA, ANA_LOGIN, OPENED + timedelta(minutes=5)),
    ]
    assert github.send("push", gh.push(BRANCH, commits)).status_code == 200
    assert github.send("pull_request", merged(the_pr(head_sha=commits[-1].sha))).status_code == 200
    assert flags(github.outcomes()["pr_merged"]) == (True, True, True)
    assert github.links() == []
    with github.engine.connect() as connection:
        rows = connection.execute(select(GithubCommit.sha, GithubCommit.agent_trailer)).all()
    kept = {str(sha_): trailer for sha_, trailer in rows}
    assert kept == {commits[0].sha: CLAUDE, commits[1].sha: None}  # the trailer line only, never the message


def test_a_merge_with_no_run_and_no_trailer_is_evidence_but_not_counted(github: GitHub) -> None:
    assert github.send("push", gh.push(BRANCH, [Commit("h1", ANA, ANA_LOGIN, OPENED)])).status_code == 200
    assert github.send("pull_request", merged(the_pr(head_sha=sha("h1")))).status_code == 200
    assert flags(github.outcomes()["pr_merged"]) == (True, False, False)


def test_a_pull_request_closed_without_a_merge_makes_no_merge_and_links_nothing(github: GitHub) -> None:
    github.post("/v1/runs", "runs", [run("on-branch", OPENED, repo=REPO, branch=BRANCH)])
    pr = the_pr()
    assert github.send("pull_request", pr.payload("opened")).status_code == 200
    closed = github.send("pull_request", pr.payload("closed", closed_at=MERGED))
    assert closed.status_code == 200
    outcomes = github.outcomes()
    assert set(outcomes) == {"pr_opened"}
    assert flags(outcomes["pr_opened"]) == (False, False, False)
    assert github.links() == []
    with github.engine.connect() as connection:
        stored = connection.execute(select(PullRequest)).one()
    assert stored.merged_at is None and stored.merge_sha is None and stored.closed_at is not None


# -- deliveries -----------------------------------------------------------------------------------------------
def test_a_redelivery_is_a_no_op(github: GitHub) -> None:
    github.post("/v1/runs", "runs", [run("on-branch", OPENED, repo=REPO, branch=BRANCH)])
    payload = merged(the_pr())
    assert github.send("pull_request", payload, "delivery-1").json()["duplicate"] is False
    before, outcomes = github.counts(), github.outcomes()
    again = github.send("pull_request", payload, "delivery-1")
    assert again.status_code == 200 and again.json() == {"delivery": "delivery-1", "duplicate": True}
    assert github.counts() == before and github.outcomes() == outcomes


def test_a_burst_with_a_forgery_and_a_redelivery_in_it_is_written_as_if_sent_one_by_one(github: GitHub) -> None:
    """Deliveries that arrive together are written together (one transaction, one settle per pull request):
    the forged one is refused alone, the re-delivery is a no-op, and the outcome is the one of any order."""
    github.post("/v1/runs", "runs", [run("on-branch", OPENED, repo=REPO, branch=BRANCH)])
    pr = the_pr(head_sha=sha("b2"))
    commits = [Commit("b1", ANA, ANA_LOGIN, OPENED), Commit("b2", ANA, ANA_LOGIN, OPENED, trailers=[CLAUDE])]
    made = [
        gh.delivery("push", gh.push(BRANCH, commits), github.secret, "burst-push"),
        gh.delivery("pull_request", pr.payload("opened"), github.secret, "burst-opened"),
        gh.delivery("pull_request", merged(pr), github.secret, "burst-merged"),
        gh.delivery("pull_request", merged(pr), github.secret, "burst-merged"),  # GitHub redelivered it
        gh.delivery("workflow_run", gh.workflow_run(pr.head_sha, BRANCH, MERGED), github.secret, "burst-ci"),
        gh.delivery("deployment_status", gh.deployment_status(sha("merge"), MERGED), github.secret, "burst-deploy"),
        gh.delivery("pull_request", the_pr(number=9).payload("opened"), "forged", "burst-forged"),
    ] * 3
    with ThreadPoolExecutor(len(made)) as pool:
        answers = list(pool.map(lambda d: github.http.post(WEBHOOK, content=d.body, headers=d.headers()), made))
    statuses = [(d.delivery_id, a.status_code) for d, a in zip(made, answers, strict=True)]
    assert {status for delivery_id, status in statuses if delivery_id != "burst-forged"} == {200}
    assert {status for delivery_id, status in statuses if delivery_id == "burst-forged"} == {401}
    fresh = [a.json()["delivery"] for a in answers if a.status_code == 200 and not a.json()["duplicate"]]
    assert sorted(fresh) == sorted({d.delivery_id for d in made} - {"burst-forged"})  # each written once
    assert github.counts()["github_delivery"] == 5 and github.counts()["pull_request"] == 1
    github.settled()
    outcomes = {kind: flags(o) for kind, o in github.outcomes().items()}
    assert outcomes == {
        "pr_opened": (False, False, False),  # self-reported, in whatever order the burst was written
        "pr_merged": (True, True, True),
        "tests_passed": (True, True, True),
        "deploy": (True, True, True),
    }
    assert github.links() == [("on-branch", "branch")]


def _burst_of_one_pull_request(github: GitHub) -> list[Incoming]:
    github.post("/v1/runs", "runs", [run("on-branch", OPENED, repo=REPO, branch=BRANCH)])
    pr = the_pr(head_sha=sha("b2"))
    commits = [Commit("b1", ANA, ANA_LOGIN, OPENED), Commit("b2", ANA, ANA_LOGIN, OPENED, trailers=[CLAUDE])]
    made = [
        gh.delivery("push", gh.push(BRANCH, commits), github.secret),
        gh.delivery("pull_request", merged(pr), github.secret),
        gh.delivery("workflow_run", gh.workflow_run(pr.head_sha, BRANCH, MERGED), github.secret),
    ]
    return [Incoming({k.lower(): v for k, v in d.headers().items()}, d.body) for d in made]


def test_a_bursts_deliveries_are_written_first_and_their_pull_request_settled_after_as_at_once(
    github: GitHub,
) -> None:
    """Under a burst the server answers once the facts are written (`later`) and settles after: the facts and
    the delivery ids are committed, the pull request waits in github_unsettled with no outcome yet, and
    settling it then makes exactly what settling at once makes."""
    settings = Settings()
    incoming = _burst_of_one_pull_request(github)
    handled = take_deliveries(github.engine, incoming, Reading.of(settings), settings.link_rules(), later=True)
    assert [h.status for h in handled] == [200, 200, 200]
    counts = github.counts()
    assert (counts["github_delivery"], counts["pull_request"], counts["github_unsettled"]) == (3, 1, 1)
    assert github.outcomes() == {} and github.links() == []  # not settled yet
    assert settle_waiting(github.engine, settings.link_rules()) == 1
    assert settle_waiting(github.engine, settings.link_rules()) == 0
    assert github.counts()["github_unsettled"] == 0
    settled_later = ({kind: flags(o) for kind, o in github.outcomes().items()}, github.links())
    assert settled_later == (
        {"pr_opened": (False, False, False), "pr_merged": (True, True, True), "tests_passed": (True, True, True)},
        [("on-branch", "branch")],
    )


def test_what_a_restart_left_unsettled_is_settled_by_the_github_settle_job(github: GitHub, db_url: str) -> None:
    """A server stopped between a burst's answers and their settling leaves the pull requests queued in the
    database; the scheduler's `github:settle` job (first run right away) settles them."""
    settings = Settings(database_url=db_url)  # type: ignore[call-arg]
    incoming = _burst_of_one_pull_request(github)
    take_deliveries(github.engine, incoming, Reading.of(settings), settings.link_rules(), later=True)
    assert github.counts()["github_unsettled"] == 1 and github.outcomes() == {}
    jobs = {job.id: job for job in build_scheduler(Services(settings=settings, engine=github.engine)).get_jobs()}
    job = jobs["github:settle"]
    assert job.next_run_time is not None  # right away, after a restart
    job.func(*job.args)
    assert github.counts()["github_unsettled"] == 0
    assert set(github.outcomes()) == {"pr_opened", "pr_merged", "tests_passed"} and github.links() == [
        ("on-branch", "branch")
    ]


@pytest.mark.parametrize(
    "forgery",
    ["wrong secret", "no signature", "sha1 only", "tampered body", "revoked source", "not hex"],
)
def test_a_delivery_not_signed_by_an_active_github_source_is_401_and_writes_nothing(
    github: GitHub, forgery: str
) -> None:
    real = gh.delivery("pull_request", merged(the_pr()), github.secret)
    body, headers = real.body, real.headers()
    if forgery == "wrong secret":
        headers = gh.delivery("pull_request", merged(the_pr()), "not-the-secret").headers()
    elif forgery == "no signature":
        del headers["X-Hub-Signature-256"]
    elif forgery == "sha1 only":  # GitHub's older header, correct for the secret: not taken
        del headers["X-Hub-Signature-256"]
        headers["X-Hub-Signature"] = "sha1=" + hmac.new(github.secret.encode(), body, hashlib.sha1).hexdigest()
    elif forgery == "tampered body":
        body = body.replace(b'"additions": 40', b'"additions": 4000')
        assert body != real.body
    elif forgery == "revoked source":
        with session_scope(github.engine) as session:
            revoke_source(session, "acme-github")
    elif forgery == "not hex":
        headers["X-Hub-Signature-256"] = "sha256=" + "z" * 64
    before = github.counts()
    response = github.http.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code == 401
    assert "tokenwise source create NAME --kind github" in response.json()["errors"][0]["message"]
    assert github.counts() == before


def test_each_github_source_is_told_apart_by_the_secret_that_signs_its_delivery(github: GitHub) -> None:
    other_secret = new_token(github.engine, "acme-org-hook", "github")
    made = gh.delivery("pull_request", merged(the_pr()), other_secret)
    assert github.http.post(WEBHOOK, content=made.body, headers=made.headers()).status_code == 200
    with github.engine.connect() as connection:
        sender = connection.execute(
            select(table_of(Source).c.name).join(
                table_of(GithubDelivery), table_of(GithubDelivery).c.source_id == table_of(Source).c.id
            )
        ).scalar_one()
    assert sender == "acme-org-hook"


def test_ping_answers_200_and_stores_nothing(github: GitHub) -> None:
    before = github.counts()
    response = github.send("ping", gh.ping(), "ping-1")
    assert response.status_code == 200 and response.json() == {"pong": "ping-1"}
    assert github.counts() == before


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("deployment", gh.deployment(sha("merge"))),
        ("workflow_run", gh.workflow_requested(sha("head"), BRANCH)),
        ("workflow_run", gh.workflow_run(sha("head"), BRANCH, MERGED, conclusion="failure")),
        ("check_suite", gh.check_suite(sha("head"), BRANCH, MERGED, conclusion="failure")),
        ("deployment_status", gh.deployment_status(sha("merge"), MERGED, state="failure")),
        ("push", gh.example("push", "payload")),  # a tag
    ],
    ids=["deployment", "workflow requested", "workflow failed", "suite failed", "deploy failed", "tag push"],
)
def test_an_event_or_action_tokenwise_does_not_use_is_202_and_stores_nothing(
    github: GitHub, event: str, payload: dict[str, Any]
) -> None:
    before = github.counts()
    response = github.send(event, payload)
    assert response.status_code == 202 and response.json() == {"ignored": event}
    assert github.counts() == before


def test_a_body_over_githubs_25_mb_cap_is_413_whether_its_length_is_declared_or_not(github: GitHub) -> None:
    huge = Commit("huge", ANA, ANA_LOGIN, OPENED, subject="x" * (25 * 1024 * 1024))  # valid, and over the cap
    made = gh.delivery("push", gh.push(BRANCH, [huge]), github.secret)
    big = made.body
    declared = github.http.post(WEBHOOK, content=big, headers=made.headers())
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    streamed = github.http.post(WEBHOOK, content=chunks(), headers=made.headers())
    assert streamed.status_code == 413
    assert github.counts()["github_delivery"] == 0


# -- out of order ------------------------------------------------------------------------------------------
def test_a_push_after_the_merge_still_makes_the_merge_counted(github: GitHub) -> None:
    pr = the_pr(head_sha=sha("late-2"))
    assert github.send("pull_request", merged(pr)).status_code == 200
    assert flags(github.outcomes()["pr_merged"]) == (True, False, False)
    late = [Commit("late-1", ANA, ANA_LOGIN, OPENED), Commit("late-2", ANA, ANA_LOGIN, OPENED, trailers=[CLAUDE])]
    assert github.send("push", gh.push(BRANCH, late)).status_code == 200
    assert flags(github.outcomes()["pr_merged"]) == (True, True, True)


def test_ci_and_a_deploy_after_the_merge_make_their_outcomes_with_the_merges_flags(github: GitHub) -> None:
    github.post("/v1/runs", "runs", [run("on-branch", OPENED, repo=REPO, branch=BRANCH)])
    pr = the_pr()
    assert github.send("pull_request", merged(pr)).status_code == 200
    ci = gh.workflow_run(pr.head_sha, BRANCH, MERGED + timedelta(minutes=9), pr_numbers=(412,))
    assert github.send("workflow_run", ci).status_code == 200
    suite = gh.check_suite(pr.head_sha, BRANCH, MERGED + timedelta(minutes=7), pr_numbers=(412,))
    assert github.send("check_suite", suite).status_code == 200
    deploy = gh.deployment_status(sha("merge"), MERGED + timedelta(hours=1))
    assert github.send("deployment_status", deploy).status_code == 200
    outcomes = github.outcomes()
    assert set(outcomes) == {"pr_opened", "pr_merged", "tests_passed", "deploy"}
    assert flags(outcomes.pop("pr_opened")) == (False, False, False)  # the merge's payload says when it opened
    for kind in outcomes:
        assert flags(outcomes[kind]) == (True, True, True), kind
    assert outcomes["tests_passed"]["occurred_at"].replace(tzinfo=UTC) == MERGED + timedelta(minutes=7)
    assert outcomes["deploy"]["external_id"] == f"github:{REPO}#412:deploy:production"
    assert github.links() == [("on-branch", "branch")]


def test_an_opened_delivered_after_the_merge_still_makes_pr_opened(github: GitHub) -> None:
    pr = the_pr()
    assert github.send("pull_request", merged(pr)).status_code == 200
    assert github.send("pull_request", pr.payload("opened")).status_code == 200
    outcomes = github.outcomes()
    assert set(outcomes) == {"pr_merged", "pr_opened"}
    assert flags(outcomes["pr_opened"]) == (False, False, False)
    assert outcomes["pr_opened"]["occurred_at"].replace(tzinfo=UTC) == OPENED


def test_a_late_opened_delivery_does_not_overwrite_what_the_merge_said(github: GitHub) -> None:
    """GitHub's `updated_at` says which delivery is newer: an `opened` that arrives after the merge (an older
    head, and no lines yet) leaves the merged head, size and state as they are, so the merge stays evidence."""
    github.post("/v1/runs", "runs", [run("on-branch", OPENED, repo=REPO, branch=BRANCH)])
    final = the_pr(head_sha=sha("head-2"))
    assert github.send("pull_request", merged(final)).status_code == 200
    first = the_pr(head_sha=sha("head-1"), additions=0, deletions=0, title="WIP")
    assert github.send("pull_request", first.payload("opened")).status_code == 200
    with github.engine.connect() as connection:
        stored = connection.execute(select(PullRequest)).one()
    assert (stored.head_sha, stored.additions, stored.deletions) == (sha("head-2"), 40, 3)
    assert stored.merged_at is not None and stored.updated_at.replace(tzinfo=UTC) == MERGED
    assert flags(github.outcomes()["pr_merged"]) == (True, True, True)
    newer = the_pr(head_sha=sha("head-3"), opened_at=OPENED)  # a newer delivery does update it
    later = newer.payload("closed", merged_at=MERGED, merged_by=REVIEWER, merge_sha=sha("merge"))
    later["pull_request"]["updated_at"] = gh.stamp(MERGED + timedelta(minutes=5))
    assert github.send("pull_request", later).status_code == 200
    with github.engine.connect() as connection:
        assert connection.execute(select(PullRequest.head_sha)).scalar_one() == sha("head-3")


def test_tests_passed_and_deploy_take_their_earliest_success_whatever_order_they_arrive_in(github: GitHub) -> None:
    github.post("/v1/runs", "runs", [run("on-branch", OPENED, repo=REPO, branch=BRANCH)])
    pr = the_pr()
    assert github.send("pull_request", merged(pr)).status_code == 200
    late_ci = gh.workflow_run(pr.head_sha, BRANCH, MERGED + timedelta(minutes=30), run_id=2, pr_numbers=(412,))
    early_ci = gh.workflow_run(pr.head_sha, BRANCH, MERGED + timedelta(minutes=5), run_id=1, pr_numbers=(412,))
    late_deploy = gh.deployment_status(sha("merge"), MERGED + timedelta(hours=3), deployment_id=2, status_id=2)
    early_deploy = gh.deployment_status(sha("merge"), MERGED + timedelta(hours=1), deployment_id=1, status_id=1)
    for event, payload in (
        ("workflow_run", late_ci),
        ("deployment_status", late_deploy),
        ("workflow_run", early_ci),
        ("deployment_status", early_deploy),
    ):
        assert github.send(event, payload).status_code == 200
    outcomes = github.outcomes()
    assert outcomes["tests_passed"]["occurred_at"].replace(tzinfo=UTC) == MERGED + timedelta(minutes=5)
    assert outcomes["deploy"]["occurred_at"].replace(tzinfo=UTC) == MERGED + timedelta(hours=1)
    assert flags(outcomes["tests_passed"]) == flags(outcomes["deploy"]) == (True, True, True)


def test_ci_before_the_pull_request_is_seen_counts_once_the_merge_arrives(github: GitHub) -> None:
    pr = the_pr()
    ci = gh.workflow_run(pr.head_sha, BRANCH, OPENED + timedelta(hours=1), pr_numbers=(412,))
    assert github.send("workflow_run", ci).status_code == 200
    assert github.outcomes() == {}
    github.send("push", gh.push(BRANCH, [Commit("head", ANA, ANA_LOGIN, OPENED, trailers=[CLAUDE])]))
    assert github.send("pull_request", merged(pr)).status_code == 200
    assert {kind: flags(o) for kind, o in github.outcomes().items()} == {
        "pr_opened": (False, False, False),
        "pr_merged": (True, True, True),
        "tests_passed": (True, True, True),
    }


# -- what is kept ----------------------------------------------------------------------------------------------
def test_a_pull_requests_title_is_kept_only_when_the_operator_turns_titles_on(engine: Engine, db_url: str) -> None:
    secret = new_token(engine, "acme-github", "github")
    titles = []
    for number, setting in ((1, False), (2, True)):
        made = gh.delivery("pull_request", the_pr(number=number).payload("opened"), secret)
        with running_server(make_app(engine, db_url, github_titles=setting)) as url:
            assert httpx.post(url + WEBHOOK, content=made.body, headers=made.headers()).status_code == 200
        with engine.connect() as connection:
            titles.append(
                connection.execute(select(PullRequest.title).where(PullRequest.number == number)).scalar_one()
            )
    assert titles == [None, "Retry failed card captures"]


def test_the_first_line_matching_an_agent_trailer_is_kept_cut_to_100_characters() -> None:
    reading = Reading.of(Settings(database_url="sqlite://"))
    assert len(reading.trailers) == len(DEFAULT_AGENT_TRAILERS)
    long = "CO-AUTHORED-BY: Claude " + "x" * 200
    assert agent_trailer(f"Fix\n\nSigned-off-by: Ana\n{long}\n{CLAUDE}", reading.trailers) == long[:100]
    assert agent_trailer("Fix\n\nco-authored-by: Ana <ana@example.com>", reading.trailers) is None
    assert agent_trailer("Mention Claude in a subject line", reading.trailers) is None


# -- set-up ------------------------------------------------------------------------------------------------------
def test_source_create_kind_github_prints_the_secret_once_and_the_url_and_deliveries_verify(
    engine: Engine, db_url: str
) -> None:
    env = os.environ | {"DATABASE_URL": db_url, "TOKENWISE_PUBLIC_URL": "https://tokenwise.acme.test", "COLUMNS": "200"}

    def tokenwise(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    created = tokenwise("source", "create", "acme-github", "--kind", "github")
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    secret = lines[lines.index(next(line for line in lines if "shown only this once" in line)) + 1].strip()
    assert len(secret) == 64
    assert "https://tokenwise.acme.test/v1/github/webhook" in created.stdout
    assert "application/json" in created.stdout and "Pull requests" in created.stdout
    listed = tokenwise("source", "list")
    assert listed.returncode == 0 and "acme-github" in listed.stdout and secret not in listed.stdout
    assert "active" in listed.stdout
    with engine.connect() as connection:
        stored = connection.execute(select(Source).where(Source.name == "acme-github")).one()
    assert stored.token_hash is None and stored.webhook_secret == secret  # no bearer token
    with running_server(make_app(engine, db_url)) as url:
        made = gh.delivery("ping", gh.ping(), secret)
        assert httpx.post(url + WEBHOOK, content=made.body, headers=made.headers()).status_code == 200


def test_a_github_source_has_no_bearer_token_its_secret_opens_no_ingest_route(github: GitHub) -> None:
    before = github.counts()
    for route in ("/v1/usage", "/v1/runs", "/v1/outcomes", "/v1/otlp/v1/metrics"):
        response = github.http.post(route, json={}, headers={"Authorization": f"Bearer {github.secret}"})
        assert response.status_code == 401, route
    assert github.counts() == before


# -- the payloads themselves --------------------------------------------------------------------------------------
def test_the_schemas_refuse_a_payload_github_would_not_send() -> None:
    payload = merged(the_pr())
    payload["pull_request"]["merged_at"] = 1732464000
    with pytest.raises(jsonschema.ValidationError):
        gh.validate("pull_request", payload)
    opened = the_pr().payload("opened")
    opened["pull_request"]["state"] = "closed"
    with pytest.raises(jsonschema.ValidationError):
        gh.validate("pull_request", opened)
