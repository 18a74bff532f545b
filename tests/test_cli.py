"""The `tokenwise` CLI, run as a real process against real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tokenwise(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"DATABASE_URL": db_url, "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


SEED = ("seed", "--people", "12", "--teams", "2", "--weeks", "3", "--seed", "5", "--end", "2026-11-22")
REPORT = ("report", "--since", "2026-11-02", "--until", "2026-11-22", "--by", "week", "--json")


def test_seed_then_report_json_is_identical_on_sqlite_and_postgresql(
    tmp_path: Path, sqlite_template: Path, postgres_url: str
) -> None:
    from tests.conftest import _truncate_postgres

    _truncate_postgres(postgres_url)
    outputs = []
    for url in (f"sqlite:///{tmp_path / 'a.db'}", postgres_url):
        assert tokenwise(url, *SEED).returncode == 0
        for scope in ((), ("--team", "platform"), ("--person", "alex.rivera@example.com")):
            result = tokenwise(url, *REPORT, *scope)
            assert result.returncode == 0, result.stderr
            outputs.append(json.loads(result.stdout))
    sqlite_reports, postgres_reports = outputs[:3], outputs[3:]
    assert sqlite_reports == postgres_reports
    org = sqlite_reports[0]
    assert org["scope"] == "organisation"
    assert org["totals"]["runs"] > 0 and org["totals"]["withheld"] is None
    assert [p["start"] for p in org["periods"]] == ["2026-11-02", "2026-11-09", "2026-11-16"]
    assert set(org["totals"]) >= {
        "runs", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
        "cost_unknown_records", "reviewed_share", "useful_runs", "outcome_value", "cost_per_useful_run",
        "cost_per_outcome", "verified_spend_share", "withheld",
    }  # fmt: skip


def test_seed_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    reports = []
    for name in ("one.db", "two.db"):
        url = f"sqlite:///{tmp_path / name}"
        assert tokenwise(url, *SEED).returncode == 0
        reports.append(tokenwise(url, *REPORT).stdout)
    assert reports[0] == reports[1]
    assert json.loads(reports[0])["totals"]["cost_usd"] > 0


def test_seed_refuses_a_database_that_already_has_people(db_url: str) -> None:
    assert tokenwise(db_url, *SEED).returncode == 0
    again = tokenwise(db_url, *SEED)
    assert again.returncode == 2
    assert "already has 12 people" in again.stderr


@pytest.fixture(scope="module")
def small_org(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'cli.db'}"
    assert tokenwise(url, "seed", "--people", "4", "--teams", "2", "--weeks", "1").returncode == 0
    return url


@pytest.mark.parametrize(
    "args, message",
    [
        (("report", "--person", "nobody@example.com"), "No person with email 'nobody@example.com'."),
        (("report", "--team", "platfrom"), "No team called 'platfrom'. Teams: data, platform."),
        (("report", "--since", "2026-02-30"), "Bad --since date '2026-02-30'"),
        (("report", "--since", "2026-11-10", "--until", "2026-11-01"), "The start 2026-11-10 is after the end"),
        (("report", "--tz", "Mars/Olympus"), "Unknown time zone 'Mars/Olympus'"),
        (("report", "--by", "month"), "Unknown --by 'month'; use day, week, project or branch."),
        (("report", "--team", "platform", "--by", "project"), "--by project is for a person's own report"),
    ],
)
def test_bad_report_input_prints_one_clear_line_and_exits_2(
    small_org: str, args: tuple[str, ...], message: str
) -> None:
    result = tokenwise(small_org, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (("report", "--team", "platform", "--by", "day"), "use --by week"),
        (("report", "--team", "platform", "--since", "2026-11-03"), "whole weeks, Monday to Sunday"),
        (("team", "set-timezone", "platform", "Mars/Base"), "Unknown time zone 'Mars/Base'"),
        (("source", "status", "nope"), "No source called 'nope'."),
        (("people", "link", "shoe-size", "42", "ada@example.com"), "Unknown kind 'shoe-size'"),
        (("people", "link", "account-uuid", "42", "not-an-email"), "'not-an-email' is not an email address"),
    ],
)
def test_bad_team_source_and_people_input_prints_one_clear_line_and_exits_2(
    small_org: str, args: tuple[str, ...], message: str
) -> None:
    result = tokenwise(small_org, *args)
    assert (result.returncode, result.stdout) == (2, "")
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_report_on_an_empty_organisation_is_withheld_not_zero(tmp_path: Path) -> None:
    result = tokenwise(f"sqlite:///{tmp_path / 'empty.db'}", "report", "--json")
    assert result.returncode == 0
    body = json.loads(result.stdout)
    assert body["totals"]["cost_usd"] is None
    assert "fewer than 5 people" in body["totals"]["withheld"]


def test_report_table_names_the_headline_metrics(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'table.db'}"
    tokenwise(url, *SEED)
    result = tokenwise(url, "report", "--person", "alex.rivera@example.com", "--until", "2026-11-22")
    assert result.returncode == 0
    for label in ("Verified-spend share", "Cost per useful run", "Outcome value", "Reviewed share"):
        assert label in result.stdout


def test_a_persons_report_by_project_and_by_branch_has_keyed_rows_that_add_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'projects.db'}"
    tokenwise(url, *SEED)
    person = ("--person", "alex.rivera@example.com", "--since", "2026-11-02", "--until", "2026-11-22")
    body = json.loads(tokenwise(url, "report", *person, "--by", "project", "--json").stdout)
    assert body["by"] == "project" and len({row["key"] for row in body["rows"]} - {None}) >= 2
    for column in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        assert sum(row[column] for row in body["rows"]) == body["totals"][column]
    costs = [row["cost_usd"] for row in body["rows"]]
    assert costs == sorted(costs, reverse=True)
    assert body["totals"]["cost_source"]["priced_usd"] == body["totals"]["cost_usd"]  # the seed prices its usage
    branches = json.loads(tokenwise(url, "report", *person, "--by", "branch", "--json").stdout)
    assert all(row["key"] is None or row["key"].startswith("tw/run-") for row in branches["rows"])  # a branch a run
    assert sum(row["runs"] for row in branches["rows"]) == sum(row["runs"] for row in body["rows"])
    table = tokenwise(url, "report", *person, "--by", "project")
    assert "By project" in table.stdout and str(body["rows"][0]["key"]) in table.stdout


def test_unreachable_database_is_one_clear_line() -> None:
    result = tokenwise("postgresql+psycopg://nobody@127.0.0.1:1/none", "report")
    assert result.returncode == 2
    assert "Cannot open the database at DATABASE_URL" in result.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    result = tokenwise(f"sqlite:///{tmp_path / 'new.db'}", "db", "upgrade")
    assert result.returncode == 0
    assert "up to date" in result.stdout
    assert (tmp_path / "new.db").exists()
