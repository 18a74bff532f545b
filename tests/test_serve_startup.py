"""`tokenwise serve` starting as a real process: Slack unreachable or the token rejected degrades it (ingest
serves, `/healthz` says so, Slack answers once it is back); a taken port stops it before any job runs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from bot.devtools.slack_requests import SignedRequest, SlackRequests
from bot.devtools.slack_standin import SlackStandIn
from storage.db import make_engine, session_scope
from storage.models import DigestPost, table_of
from tests.support.ingest_fixtures import new_token, serve_process

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it

ROOT = Path(__file__).resolve().parent.parent
SECRET = "startup-signing-secret-0123456789"
TOKEN = "xoxb-test"
ADA = "W111"  # one of the stand-in's seeded users


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    shutil.copyfile(sqlite_template, tmp_path / "tokenwise.db")
    return f"sqlite:///{tmp_path / 'tokenwise.db'}"


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment(db_url: str, slack_api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "TOKENWISE_"))}
    return env | {
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack_api_url,
        "TOKENWISE_HEALTH_CHECK_SECONDS": "0.2",
        "TOKENWISE_PUBLIC_URL": "https://tokenwise.example.com",
        "COLUMNS": "300",
        "PYTHONUNBUFFERED": "1",
    }


def command(http: httpx.Client, response_url: str) -> httpx.Response:
    """`/tokenwise me` from Ada, signed as Slack signs it."""
    request: SignedRequest = SlackRequests(SECRET).slash_command("me", ADA, response_url)
    return http.post("/slack/events", content=request.body, headers=request.headers)


def wait_for_health(http: httpx.Client, slack: str, timeout: float = 60) -> dict[str, str]:
    """`/healthz` once it reports Slack in state `slack` (the background re-check runs every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, str] = http.get("/healthz").json()
        if body.get("slack") == slack or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def ingest_works(http: httpx.Client, engine: Engine) -> bool:
    auth = {"Authorization": f"Bearer {new_token(engine, f'startup-{time.monotonic_ns()}')}"}
    run = {"external_id": "r1", "email": "ana@example.com", "agent": "devin", "started_at": "2026-11-24T09:00:00Z"}
    return http.post("/v1/runs", json={"runs": [run]}, headers=auth).status_code == 200


def warnings(output: list[str]) -> list[str]:
    return [line for line in output if "warn" in line.lower() or "Traceback" in line]


def test_serve_with_slack_unreachable_warns_once_serves_ingest_and_answers_slack_once_it_is_reachable(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    port = free_port()  # nothing listens here until the stand-in starts on it
    output: list[str] = []
    with (
        serve_process(environment(sqlite_url, f"http://127.0.0.1:{port}/api/"), output) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        (warning,) = warnings(output)
        assert "Slack is unreachable" in warning and "SLACK_API_URL" in warning and "SLACK_BOT_TOKEN" in warning
        assert ingest_works(http, sqlite_engine)
        response = http.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "degraded", "database": "up", "slack": "unreachable"}
        refused = command(http, f"http://127.0.0.1:{port}/response/early")
        assert refused.status_code == 200 and "cannot use Slack right now" in refused.text
        with SlackStandIn(TOKEN, port=port) as slack:
            assert wait_for_health(http, "up") == {"status": "ok", "database": "up", "slack": "up"}
            answered = command(http, slack.response_url("me"))
            assert answered.status_code == 200 and answered.text == ""
            (reply,) = slack.wait_for("response_url", 1, timeout=60)
            assert reply.args["response_type"] == "ephemeral"


def test_serve_with_a_rejected_token_warns_naming_it_and_answers_once_slack_accepts_it(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    output: list[str] = []
    with (
        SlackStandIn("xoxb-some-other-token") as slack,
        serve_process(environment(sqlite_url, slack.url), output) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        (warning,) = warnings(output)
        assert "Slack rejected SLACK_BOT_TOKEN" in warning
        assert ingest_works(http, sqlite_engine)
        assert http.get("/healthz").json() == {"status": "degraded", "database": "up", "slack": "token rejected"}
        assert "cannot use Slack right now" in command(http, slack.response_url("early")).text
        slack.accept_token(TOKEN)  # reinstalled in Slack: the same token now works
        assert wait_for_health(http, "up")["status"] == "ok"
        assert command(http, slack.response_url("me")).status_code == 200
        assert len(slack.wait_for("response_url", 1, timeout=60)) == 1


def test_serve_in_socket_mode_with_slack_unreachable_warns_once_and_serves_ingest(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    output: list[str] = []
    env = environment(sqlite_url, f"http://127.0.0.1:{free_port()}/api/") | {"SLACK_APP_TOKEN": "xapp-1-test"}
    with serve_process(env, output, "--socket") as url, httpx.Client(base_url=url, timeout=30) as http:
        (slack_warning,) = [line for line in warnings(output) if "Slack" in line]  # one line, not one per part
        assert "unreachable" in slack_warning and "SLACK_API_URL" in slack_warning
        assert not any("Traceback" in line for line in output)
        assert ingest_works(http, sqlite_engine)
        assert http.get("/healthz").json() == {"status": "degraded", "database": "up", "slack": "unreachable"}


def test_a_normal_start_prints_no_library_warning(sqlite_url: str) -> None:
    output: list[str] = []
    with SlackStandIn(TOKEN) as slack, serve_process(environment(sqlite_url, slack.url), output) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "database": "up", "slack": "up"}
    assert warnings(output) == []
    assert not any("will be unused" in line for line in output)


def test_a_start_without_a_public_address_warns_the_operator_once(sqlite_url: str) -> None:
    output: list[str] = []
    env = {k: v for k, v in environment(sqlite_url, "").items() if k != "TOKENWISE_PUBLIC_URL"}
    with SlackStandIn(TOKEN) as slack, serve_process(env | {"SLACK_API_URL": slack.url}, output) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
    (warning,) = warnings(output)
    assert "TOKENWISE_PUBLIC_URL is not set" in warning and "/tokenwise connect" in warning


def test_a_second_serve_on_a_taken_port_exits_2_with_one_line_and_runs_no_job(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    from storage.schedules import Schedule
    from storage.subscriptions import subscribe
    from tests.support.digest_seed import seed_team

    earlier = datetime.now(UTC) - timedelta(hours=1)  # a digest due an hour ago: the first tick would post it
    with session_scope(sqlite_engine) as session:
        team = seed_team(session, "platform", 5, datetime.now(UTC) - timedelta(days=9)).team
        schedule = Schedule(earlier.weekday(), earlier.hour, earlier.minute, "UTC")
        subscribe(session, channel_id="C111", team_id=team.id, schedule=schedule)
    with SlackStandIn(TOKEN) as slack:
        env = environment(sqlite_url, slack.url)
        with serve_process(env) as first:  # --no-scheduler: the first process posts nothing either
            port = first.rsplit(":", 1)[1]
            second = subprocess.run(
                [sys.executable, "-m", "bot", "serve", "--port", port],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert second.returncode == 2
            assert second.stderr.strip() == f"Error: port {port} is in use; pass --port"
            assert second.stdout == ""  # neither "listening" nor "Scheduler running"
        assert slack.calls("chat.postMessage") == []
    with sqlite_engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(table_of(DigestPost))).scalar_one() == 0


def test_healthz_names_the_model_down_as_degraded_and_up_once_its_server_answers(sqlite_engine: Engine) -> None:
    from fastapi.testclient import TestClient

    from bot.app import build_services, build_watch, create_app
    from bot.config import Settings
    from tests.support.llm_standin import LLMStandIn

    def health_with_model_at(base_url: str) -> tuple[int, dict[str, str], list[str]]:
        url = str(sqlite_engine.url)
        settings = Settings(database_url=url, slack_signing_secret=None, openai_api_key="k", openai_base_url=base_url)
        services = build_services(settings, sqlite_engine)
        services.health = build_watch(services)
        lines = services.health.check()
        response = TestClient(create_app(services)).get("/healthz")
        return response.status_code, response.json(), lines

    status, body, (line,) = health_with_model_at(f"http://127.0.0.1:{free_port()}/v1")
    assert (status, body) == (200, {"status": "degraded", "database": "up", "llm": "unreachable"})
    assert "OPENAI_BASE_URL" in line
    with LLMStandIn() as llm:
        assert health_with_model_at(llm.base_url)[:2] == (200, {"status": "ok", "database": "up", "llm": "up"})
