"""A pull request whose author was nobody known links once an operator says who they are: `tokenwise people
link github LOGIN EMAIL` and `tokenwise import org` (its github column, or a commit author's email) settle
the pull requests again at once, so the runs link then, not at the next delivery (in-process CLI runs, the
deliveries signed and sent to the real app, on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

import bot.cli.commands  # noqa: F401  (registers the commands)
from bot.cli.root import app
from bot.config import get_settings
from storage.models import AgentRun, Outcome, OutcomeLink, Person, table_of
from tests.support import github_payloads as gh
from tests.support.github_payloads import REPO, Commit, sha
from tests.support.ingest_fixtures import make_app, new_token, running_server

runner = CliRunner()
MERGED = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


@dataclass
class Host:
    http: httpx.Client
    engine: Engine
    secret: str
    api_token: str

    def deliver(self, event: str, payload: dict[str, Any]) -> None:
        made = gh.delivery(event, payload, self.secret)
        assert self.http.post("/v1/github/webhook", content=made.body, headers=made.headers()).status_code == 200

    def run_on(self, email: str, branch: str) -> None:
        item = {"external_id": f"{email}-{branch}", "email": email, "agent": "claude-code", "repo": REPO,
                "branch": branch, "started_at": (MERGED - timedelta(days=1)).isoformat()}  # fmt: skip
        answer = self.http.post(
            "/v1/runs", json={"runs": [item]}, headers={"Authorization": f"Bearer {self.api_token}"}
        )
        assert answer.status_code == 200, answer.text

    def merge(self, number: int, author: str | None, branch: str, commits: list[Commit] = ()) -> None:  # type: ignore[assignment]
        if commits:
            self.deliver("push", gh.push(branch, list(commits)))
        head = commits[-1].sha if commits else sha(f"head-{number}")
        pr = gh.PullRequest(number, author or "someone-else", branch, head, MERGED - timedelta(hours=5))
        self.deliver(
            "pull_request", pr.payload("closed", merged_at=MERGED, merged_by="a-reviewer", merge_sha=sha(f"m{number}"))
        )

    def linked_runs(self) -> dict[str, list[str]]:
        """pull request URL -> the external ids of the runs its counted merge is linked to."""
        o, link, run = table_of(Outcome).c, table_of(OutcomeLink).c, table_of(AgentRun).c
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(o.url, run.external_id)
                .join(table_of(OutcomeLink), link.outcome_id == o.id)
                .join(table_of(AgentRun), run.id == link.run_id)
                .where(o.kind == "pr_merged", o.counted.is_(True), link.removed_at.is_(None))
                .order_by(o.url, run.external_id)
            )
            found: dict[str, list[str]] = {}
            for url, external_id in rows:
                found.setdefault(str(url).rsplit("/", 1)[-1], []).append(str(external_id))
            return found


@pytest.fixture
def host(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    secret = new_token(engine, "acme-github", "github")
    api_token = new_token(engine, "agent-platform", "api")
    with running_server(make_app(engine, db_url)) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield Host(http, engine, secret, api_token)
    get_settings.cache_clear()


def tokenwise(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_people_link_github_settles_the_logins_pull_requests_so_their_runs_link_now(host: Host) -> None:
    host.run_on("bo@example.com", "bo/retries")
    host.merge(7, "bo-dev", "bo/retries")
    assert host.linked_runs() == {}  # bo-dev is nobody known yet: kept, unlinked
    url = f"https://github.com/{REPO}/pull/7"
    code, why = tokenwise("outcomes", "explain", url)
    assert code == 0 and "person: none: the GitHub login is linked to nobody" in why

    code, said = tokenwise("people", "link", "github", "Bo-Dev", "bo@example.com")
    assert code == 0, said
    assert "1 pull request settled again" in said
    assert host.linked_runs() == {"7": ["bo@example.com-bo/retries"]}
    code, why = tokenwise("outcomes", "explain", url)
    assert code == 0 and "person: bo@example.com" in why and "evidence: yes" in why and "counts: yes" in why
    assert "branch, the author's run on acme/payments branch bo/retries, before the merge" in why
    assert tokenwise("people", "link", "github", "bo-dev", "bo@example.com")[0] == 0  # again: no change
    assert host.linked_runs() == {"7": ["bo@example.com-bo/retries"]}


def test_import_org_settles_the_pull_requests_its_logins_and_emails_name(host: Host, tmp_path: Path) -> None:
    host.run_on("cy@example.com", "cy/refunds")
    host.merge(8, "cy-dev", "cy/refunds")  # Cy is known by email only: her login comes with the file
    claude = "Co-authored-by: Claude <noreply@anthropic.com>"
    by_email = [Commit("dee-1", "dee@example.com", None, MERGED - timedelta(hours=6), trailers=[claude])]
    host.merge(9, "dee-dev", "dee/ledger", by_email)  # Dee is nobody yet; her commit's email names her
    assert host.linked_runs() == {} and merged_outcomes(host) == {}

    org = tmp_path / "org.csv"
    org.write_text("email,team,role,github\ncy@example.com,payments,member,cy-dev\ndee@example.com,payments,member,\n")
    code, said = tokenwise("import", "org", str(org))
    assert code == 0, said
    assert "1 GitHub logins linked, 2 pull requests settled again" in said
    assert host.linked_runs() == {"8": ["cy@example.com-cy/refunds"]}
    assert merged_outcomes(host) == {"8": "cy@example.com", "9": "dee@example.com"}  # 9 by its agent trailer


def merged_outcomes(host: Host) -> dict[str, str]:
    """pull request number -> the email of the person its counted merge is for."""
    o = table_of(Outcome).c
    people = table_of(Person).c
    with host.engine.connect() as connection:
        rows = connection.execute(
            select(o.url, people.email)
            .join(table_of(Person), people.id == o.person_id)
            .where(o.kind == "pr_merged", o.counted.is_(True))
        )
        return {str(url).rsplit("/", 1)[-1]: str(email) for url, email in rows}


def test_importing_claude_code_logs_after_the_merge_links_their_session_to_it(host: Host, tmp_path: Path) -> None:
    """A history imported a week after the merge: the session on the PR's branch, in a checkout of its
    repository, links once the import has written it (no new delivery needed)."""
    import json

    assert tokenwise("people", "link", "github", "eve-dev", "eve@example.com")[0] == 0
    host.merge(11, "eve-dev", "eve/exports")
    assert host.linked_runs() == {}
    folder = tmp_path / "claude" / "projects" / "-home-eve-src-payments"
    folder.mkdir(parents=True)
    line = {
        "type": "assistant",
        "sessionId": "5e551011-0000-4000-8000-000000000011",
        "cwd": "/home/eve/src/payments",
        "gitBranch": "eve/exports",
        "timestamp": (MERGED - timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        "requestId": "req_011",
        "message": {
            "id": "msg_011",
            "model": "claude-sonnet-4-5",
            "usage": {"input_tokens": 1200, "output_tokens": 300, "cache_read_input_tokens": 0,
                      "cache_creation_input_tokens": 0},
        },
    }  # fmt: skip
    (folder / "5e551011-0000-4000-8000-000000000011.jsonl").write_text(json.dumps(line) + "\n")
    code, said = tokenwise("import", "claude-code", str(tmp_path / "claude"), "--email", "eve@example.com")
    assert code == 0, said
    assert "1 merged pull requests settled again" in said
    assert host.linked_runs() == {"11": ["5e551011-0000-4000-8000-000000000011"]}


def test_an_org_file_naming_600_logins_imports_and_a_second_import_settles_nothing(host: Host, tmp_path: Path) -> None:
    """One statement per login used to exceed SQLite's expression depth (the whole import rolled back); and a
    re-import changes no identity, so it settles nothing again."""
    host.merge(12, "dev-599", "dev-599/work")
    org = tmp_path / "org.csv"
    lines = [f"dev{i}@example.com,platform,member,dev-{i}" for i in range(600)]
    org.write_text("email,team,role,github\n" + "\n".join(lines) + "\n")
    code, said = tokenwise("import", "org", str(org))
    assert code == 0, said
    assert "600 GitHub logins linked, 1 pull requests settled again" in said
    with host.engine.connect() as connection:
        o, people = table_of(Outcome).c, table_of(Person).c
        owner = connection.execute(
            select(people.email).join(table_of(Outcome), o.person_id == people.id).where(o.kind == "pr_merged")
        ).scalar_one()
    assert owner == "dev599@example.com"  # the merge is now dev-599's (evidence; no run to count it for)
    code, again = tokenwise("import", "org", str(org))
    assert code == 0, again
    assert "settled again" not in again and "GitHub logins linked" not in again
