"""`tokenwise import github`: merged pull requests and their commits read back from a loopback GitHub REST API
(pages, rate limits), stored and settled as the webhooks store them; and GitHub logins from the org CSV."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from bot.config import Settings
from bot.github.backfill import SOURCE_NAME, BackfillSummary, GitHubRest, backfill, rate_limit_wait
from bot.sources.csv_files import CsvInvalid, import_org
from storage.github import PullRequestSeen, record_pull_request, settle
from storage.models import AgentRun, GithubCommit, Outcome, OutcomeLink, Person, PersonLink, PullRequest, Source, id_of
from tests.support import factories
from tests.support.github_rest_standin import GitHubRestStandIn, iso

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "ghp_standin_token"
REPO = "acme/payments"
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
NOW = 1_790_000_000.0  # the injected clock, epoch seconds
TRAILER = "CO-AUTHORED-BY: Claude <noreply@anthropic.com>"


def fill(github: GitHubRestStandIn) -> None:
    """Eleven closed pull requests over four pages (three a page, newest update first) and one open one."""

    def merged(number: int, user: str, when: str, by: str = "bob", **extra: Any) -> None:
        github.add_pull(
            number, user=user, created_at=iso("2026-09-01 09:00"), updated_at=iso(when.replace(":00", ":30")),
            merged_at=iso(when), merged_by=by, **extra,
        )  # fmt: skip

    merged(101, "Ana-Dev", "2026-11-20 10:00", head_ref="feature/retry", additions=120, deletions=4)
    github.add_commit(
        101, "1" * 40, message=f"Add retries\n\nThe body says why.\n\n{TRAILER}\n", login="Ana-Dev",
        email="ana@example.com", date=iso("2026-11-19 15:00"),
    )  # fmt: skip
    github.add_commit(
        101, "2" * 40, message="Tests", login="Ana-Dev", email="ana@example.com", date=iso("2026-11-19 16:00")
    )
    github.add_commit(101, "3" * 40, message="Docs", login=None, email="ana@example.com", date=iso("2026-11-19 17:00"))
    merged(102, "Ana-Dev", "2026-11-18 10:00", head_ref="fix/timeout")  # an agent run on its branch: linked
    github.add_commit(
        102, "4" * 40, message="Fix", login="Ana-Dev", email="ana@example.com", date=iso("2026-11-17 12:00")
    )
    github.add_pull(
        103, user="Ana-Dev", created_at=iso("2026-11-10 09:00"), updated_at=iso("2026-11-15 09:00"),
        closed_at=iso("2026-11-15 09:00"),
    )  # closed, never merged  # fmt: skip
    merged(104, "Unknown-Dev", "2026-11-12 10:00")  # nobody is linked to this login
    github.add_commit(
        104, "5" * 40, message="Theirs", login="Unknown-Dev", email="u@elsewhere.org", date=iso("2026-11-11 10:00")
    )
    merged(105, "Ana-Dev", "2026-11-10 10:00", by="Ana-Dev")  # merged by its own author
    github.add_commit(
        105,
        "6" * 40,
        message=f"Self\n\n{TRAILER}",
        login="Ana-Dev",
        email="ana@example.com",
        date=iso("2026-11-09 10:00"),
    )
    merged(106, "Ana-Dev", "2026-11-08 10:00", additions=0, deletions=0)  # an empty merge
    github.add_commit(
        106, "7" * 40, message="Empty", login="Ana-Dev", email="ana@example.com", date=iso("2026-11-07 10:00")
    )
    merged(112, "bo", "2026-11-05 10:00")  # evidence, but no agent in sight
    github.add_commit(112, "8" * 40, message="Plain", login="bo", email="bo@example.com", date=iso("2026-11-04 10:00"))
    github.add_pull(
        107, user="bo", created_at=iso("2026-10-01 09:00"), updated_at=iso("2026-11-02 09:00"),
        merged_at=iso("2026-10-20 10:00"), merged_by="bob",
    )  # updated since, merged before  # fmt: skip
    for number, day in ((108, "2026-10-02"), (109, "2026-09-20"), (110, "2026-09-10")):
        merged(number, "bo", f"{day} 10:00")  # older than --since: paging stops at the first of them
    github.add_pull(
        111, user="bo", created_at=iso("2026-11-21 09:00"), updated_at=iso("2026-11-21 09:00"), state="open"
    )


@pytest.fixture
def github() -> Iterator[GitHubRestStandIn]:
    with GitHubRestStandIn(token=TOKEN, repo=REPO, reset_at=int(NOW) + 30) as standin:
        fill(standin)
        yield standin


@pytest.fixture
def people(engine: Engine) -> dict[str, int]:
    """Ana and Bo, with their GitHub logins linked; an agent run of Ana's on #102's branch before its merge."""
    from storage.identities import link_identity

    with Session(engine, expire_on_commit=False) as session:
        ana = factories.person(session, "ana@example.com")
        bo = factories.person(session, "bo@example.com")
        link_identity(session, "github", "Ana-Dev", id_of(ana))
        link_identity(session, "github", "bo", id_of(bo))
        source = factories.source(session, "claude-code")
        run = AgentRun(
            source_id=id_of(source), external_id="session-1", person_id=id_of(ana), agent="claude-code",
            started_at=factories.at("2026-11-17 09:00"), repo=REPO, branch="fix/timeout",
        )  # fmt: skip
        session.add(run)
        session.commit()
        return {"ana": id_of(ana), "bo": id_of(bo), "run": id_of(run)}


class Recorded:
    """The backfill's injected sleep and notices."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.notices: list[str] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def run_backfill(
    engine: Engine, github: GitHubRestStandIn, recorded: Recorded | None = None, **settings: Any
) -> BackfillSummary:
    recorded = recorded or Recorded()
    config = Settings(**settings)

    async def go() -> BackfillSummary:
        async with httpx2.AsyncClient(timeout=10) as client:
            api = GitHubRest(
                client, TOKEN, github.base_url, sleep=recorded.sleep, clock=lambda: NOW, max_wait=120,
                notice=recorded.notices.append,
            )  # fmt: skip
            return await backfill(api, engine, REPO, SINCE, config)

    return asyncio.run(go())


def merged_outcomes(engine: Engine) -> dict[str, tuple[int, bool, bool, bool]]:
    """external id -> (person, evidence, counted, agent_assisted) of every pr_merged outcome."""
    with Session(engine) as session:
        rows = session.execute(select(Outcome).where(Outcome.kind == "pr_merged")).scalars()
        return {str(o.external_id): (o.person_id, o.evidence, o.counted, o.agent_assisted) for o in rows}


def snapshot(engine: Engine) -> list[list[str]]:
    """Every stored pull request, commit, outcome and run link, each row written out whole."""
    with Session(engine) as session:
        return [
            sorted(repr(sorted(row.model_dump().items())) for row in session.scalars(select(model)))
            for model in (PullRequest, GithubCommit, Outcome, OutcomeLink)
        ]


# -- the backfill -------------------------------------------------------------------------------------------
def test_backfill_stores_merged_pull_requests_and_their_commits_across_pages(
    engine: Engine, github: GitHubRestStandIn, people: dict[str, int]
) -> None:
    recorded = Recorded()
    summary = run_backfill(engine, github, recorded)

    with Session(engine) as session:
        prs = {pr.number: pr for pr in session.scalars(select(PullRequest))}
        commits = {c.sha: c for c in session.scalars(select(GithubCommit))}
        source = session.scalars(select(Source).where(Source.name == SOURCE_NAME)).one()
    assert sorted(prs) == [101, 102, 104, 105, 106, 112]  # merged since the date; not 103, 107, 108-111
    first = prs[101]
    assert (first.repo, first.url, first.author_login, first.merged_by_login) == (
        REPO, "https://github.com/acme/payments/pull/101", "ana-dev", "bob",
    )  # fmt: skip
    assert (first.head_branch, first.additions, first.deletions, first.title) == ("feature/retry", 120, 4, None)
    assert first.merged_at == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert first.source_id == id_of(source) and source.kind == "github"
    assert len(commits) == 8 and {c.pr_number for c in commits.values()} == set(prs)
    assert [c.sha[0] for c in commits.values() if c.pr_number == 101] == ["1", "2", "3"]  # both pages of #101
    assert commits["1" * 40].agent_trailer == TRAILER and commits["2" * 40].agent_trailer is None
    assert commits["3" * 40].author_login is None and commits["3" * 40].author_email == "ana@example.com"
    assert commits["1" * 40].branch == "feature/retry"

    lists = [r for r in github.requests if r.startswith(f"/repos/{REPO}/pulls?")]
    assert len(lists) == 3 and "page=4" not in " ".join(github.requests)  # stopped at the first older update
    assert all("state=closed" in r and "sort=updated" in r and "direction=desc" in r for r in lists)
    assert (summary.closed, summary.merged, summary.commits) == (8, 6, 8)


def test_backfill_waits_out_a_rate_limit_until_its_reset(
    engine: Engine, github: GitHubRestStandIn, people: dict[str, int]
) -> None:
    github.rate_limit_next("/pulls/102", "primary")  # a 403 with x-ratelimit-remaining 0, reset in 30 s
    recorded = Recorded()
    summary = run_backfill(engine, github, recorded)
    assert recorded.sleeps == [31.0]  # until the reset, and the second it resets in
    assert summary.waited == 31.0 and summary.merged == 6
    assert [r for r in github.requests if r == f"/repos/{REPO}/pulls/102"] == [f"/repos/{REPO}/pulls/102"] * 2
    assert recorded.notices == ["GitHub's rate limit: waiting 31 s (until 14:13:51 UTC)."]


def test_a_secondary_rate_limit_waits_its_retry_after_and_a_long_wait_is_capped(
    engine: Engine, github: GitHubRestStandIn, people: dict[str, int]
) -> None:
    github.rate_limit_next("/pulls/101/commits", "secondary", retry_after=7)
    github.rate_limit_next("/pulls/112/commits", "secondary", retry_after=3600)
    recorded = Recorded()
    summary = run_backfill(engine, github, recorded)
    assert recorded.sleeps == [7.0, 120.0]  # max_wait=120 in run_backfill
    assert "longest Tokenwise waits at once" in recorded.notices[1]
    assert summary.merged == 6 and summary.commits == 8


def test_rate_limit_waits_follow_githubs_headers() -> None:
    assert rate_limit_wait(429, {"retry-after": "12"}, "", NOW) == 12
    assert rate_limit_wait(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 5)}, "", NOW) == 6
    assert rate_limit_wait(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 5)}, "", NOW) == 1
    assert rate_limit_wait(403, {}, "You have exceeded a secondary rate limit.", NOW) == 60
    assert rate_limit_wait(429, {}, "", NOW) == 60
    assert rate_limit_wait(403, {"x-ratelimit-remaining": "4999"}, "Resource not accessible", NOW) is None
    assert rate_limit_wait(401, {"retry-after": "3"}, "Bad credentials", NOW) is None


def test_outcomes_say_evidence_counted_and_agent_assisted(
    engine: Engine, github: GitHubRestStandIn, people: dict[str, int]
) -> None:
    summary = run_backfill(engine, github)
    ana, bo = people["ana"], people["bo"]
    assert merged_outcomes(engine) == {
        "github:acme/payments#101:merged": (ana, True, True, True),  # an agent trailer, merged by someone else
        "github:acme/payments#102:merged": (ana, True, True, True),  # linked to Ana's run on its branch
        "github:acme/payments#105:merged": (ana, False, False, True),  # merged by its own author
        "github:acme/payments#106:merged": (ana, False, False, False),  # no line changed
        "github:acme/payments#112:merged": (bo, True, False, False),  # no agent: evidence, not counted
    }  # #104's author is no known person: stored, no outcome
    with Session(engine) as session:
        links = session.scalars(select(OutcomeLink)).all()
    assert [(link.run_id, link.evidence) for link in links] == [(people["run"], "branch")]
    assert (summary.linked, summary.assisted, summary.counted, summary.unknown_author) == (1, 3, 2, 1)
    assert summary.unknown_logins == {"unknown-dev"}


def test_a_pull_request_also_delivered_by_webhook_counts_once(
    engine: Engine, github: GitHubRestStandIn, people: dict[str, int]
) -> None:
    pull = github.pulls[101]
    seen = PullRequestSeen(
        repo="Acme/Payments", number=101, url=pull["html_url"], author_login="Ana-Dev", merged_by_login="bob",
        head_branch="feature/retry", head_sha=pull["head"]["sha"], merge_sha=pull["merge_commit_sha"],
        opened_at=factories.at("2026-09-01 09:00"), merged_at=factories.at("2026-11-20 10:00"), additions=120,
        deletions=4,
    )  # fmt: skip
    rules = Settings().link_rules()  # type: ignore[call-arg]
    with Session(engine, expire_on_commit=False) as session:
        webhook = factories.source(session, "github-webhook")
        record_pull_request(session, id_of(webhook), seen)
        settle(session, REPO, [101], rules)
        session.commit()
    run_backfill(engine, github)
    with Session(engine) as session:  # the webhook again, after the backfill
        record_pull_request(session, id_of(webhook), seen)
        settle(session, REPO, [101], rules)
        session.commit()
        prs = session.scalars(select(PullRequest).where(PullRequest.number == 101)).all()
        outcomes = session.scalars(select(Outcome).where(Outcome.url == pull["html_url"])).all()
    assert len(prs) == 1 and prs[0].source_id == id_of(webhook)  # the first to see it keeps it
    assert sorted((o.kind, o.external_id, o.counted) for o in outcomes) == [
        ("pr_merged", "github:acme/payments#101:merged", True),
        ("pr_opened", "github:acme/payments#101:opened", False),  # self-reported, once
    ]  # the webhook knew no commits; the backfill's trailer made it count


def test_running_the_backfill_twice_changes_nothing(
    engine: Engine, github: GitHubRestStandIn, people: dict[str, int]
) -> None:
    first = run_backfill(engine, github)
    before = snapshot(engine)
    second = run_backfill(engine, github)
    assert snapshot(engine) == before
    assert (first.merged, first.commits, first.counted) == (second.merged, second.commits, second.counted) == (6, 8, 2)


def test_titles_are_kept_only_when_the_setting_says_so(
    engine: Engine, github: GitHubRestStandIn, people: dict[str, int]
) -> None:
    run_backfill(engine, github, TOKENWISE_GITHUB_TITLES="true")
    with Session(engine) as session:
        titles = {pr.title for pr in session.scalars(select(PullRequest))}
    assert titles == {"A change"}


# -- the command --------------------------------------------------------------------------------------------
def tokenwise(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    environment |= {"DATABASE_URL": db_url, "COLUMNS": "200", **env}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def test_the_command_backfills_and_says_what_it_found(db_url: str, github: GitHubRestStandIn) -> None:
    result = tokenwise(
        db_url, "import", "github", "--repo", REPO, "--since", "2026-11-01",
        GITHUB_TOKEN=TOKEN, GITHUB_API_URL=github.base_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "acme/payments since 2026-11-01: 8 pull requests closed, 6 merged, 8 commits; 0 linked to agent runs, "
        "0 agent-assisted, 0 counted. 6 by GitHub logins linked to no one (ana-dev, bo, unknown-dev): "
        "tokenwise people link github LOGIN EMAIL, then run this again."
    )


def test_a_token_github_refuses_is_one_line_naming_github_token(db_url: str, github: GitHubRestStandIn) -> None:
    result = tokenwise(
        db_url, "import", "github", "--repo", REPO, "--since", "2026-11-01",
        GITHUB_TOKEN="ghp_wrong", GITHUB_API_URL=github.base_url,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: GitHub refused GITHUB_TOKEN (401 Bad credentials): set GITHUB_TOKEN to a valid token."
    )
    assert [r for r in github.requests if r.startswith(f"/repos/{REPO}/pulls?")]  # GitHub was asked


@pytest.mark.parametrize(
    "args",
    [
        ("--repo", REPO, "--since", "2026-11-01"),  # no GITHUB_TOKEN
        ("--repo", "payments", "--since", "2026-11-01"),
        ("--repo", REPO, "--since", "November"),
    ],
    ids=["no-token", "bad-repo", "bad-date"],
)
def test_what_the_operator_can_fix_is_refused_in_one_line_before_asking_github(
    tmp_path: Path, github: GitHubRestStandIn, args: tuple[str, ...]
) -> None:
    token = {} if "2026-11-01" in args and REPO in args else {"GITHUB_TOKEN": TOKEN}
    result = tokenwise(
        f"sqlite:///{tmp_path / 't.db'}", "import", "github", *args, GITHUB_API_URL=github.base_url, **token
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "GITHUB_TOKEN" in lines[0] or token
    assert not github.requests


# -- people: the org CSV's github column --------------------------------------------------------------------
def test_the_org_csv_links_each_persons_github_login(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "org.csv"
    path.write_text(
        "email,team,role,github\nana@example.com,platform,manager,Ana-Dev\nbo@example.com,platform,member,\n"
        "ana@example.com,data,member,ana-dev\n"
    )
    with Session(engine) as session:
        summary = import_org(session, path)
        again = import_org(session, path)
        session.commit()
        links = session.scalars(select(PersonLink)).all()
        ana = session.scalars(select(Person).where(Person.email == "ana@example.com")).one()
    assert (summary.people, summary.github_linked, again.github_linked) == (2, 1, 0)
    assert [(link.kind, link.value, link.person_id) for link in links] == [("github", "ana-dev", id_of(ana))]


def test_an_org_csv_giving_a_login_someone_else_has_imports_nothing(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "org.csv"
    path.write_text("email,team,role,github\nana@example.com,platform,member,ana-dev\n")
    other = tmp_path / "other.csv"
    other.write_text("email,team,role,github\ncy@example.com,data,member,Ana-Dev\n")
    twice = tmp_path / "twice.csv"
    twice.write_text("email,team,role,github\ndi@example.com,data,member,dee\ned@example.com,data,member,DEE\n")
    with Session(engine) as session:
        import_org(session, path)
        session.commit()
    for bad, says in ((other, "line 2, column github"), (twice, "line 3, column github")):
        with Session(engine) as session, pytest.raises(CsvInvalid, match=says):
            import_org(session, bad)
    with Session(engine) as session:
        people = {p for (p,) in session.execute(select(PersonLink.value))}
    assert people == {"ana-dev"}
