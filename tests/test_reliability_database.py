"""The database going away mid-ingest: 503 with Retry-After, no partial batch, and recovery without a
restart. PostgreSQL is reached through a loopback proxy the test cuts (the shared server is never
touched); SQLite's unreachable case is a file the process cannot open."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from bot.app import create_app
from bot.config import Settings
from bot.devtools.slack_standin import SlackStandIn
from bot.services import Services
from handlers.slack import blocks
from handlers.slack.people import SlackPeople
from storage.db import make_engine
from tests.conftest import _truncate_postgres
from tests.support.ingest_fixtures import new_token, row_counts, running_server
from tests.support.slack_harness import ADA, BOT_TOKEN, SIGNING_SECRET, make_settings
from tests.support.tcp_proxy import CuttableProxy, cuttable_proxy

BATCH = 1200


def usage(i: int, prefix: str = "k") -> dict[str, Any]:
    return {
        "dedupe_key": f"{prefix}{i}",
        "email": f"dev{i % 7}@example.com",
        "occurred_at": "2026-11-24T10:00:00Z",
        "agent": "claude-code",
        "model": "claude-sonnet-4-20250514",
        "input_tokens": 100 + i,
        "output_tokens": 50,
    }


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    _truncate_postgres(postgres_url)
    return postgres_url


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[CuttableProxy, str]]:
    real = make_url(pg_url)
    with cuttable_proxy(real.host or "127.0.0.1", real.port or 5432) as proxy:
        url = real.set(host="127.0.0.1", port=proxy.port, query={"sslmode": "disable"})
        yield proxy, url.render_as_string(hide_password=False)


@pytest.fixture
def direct(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def test_postgresql_stopped_mid_batch_gets_503_writes_nothing_and_the_service_recovers_by_itself(
    proxied: tuple[CuttableProxy, str], direct: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="handlers.http.ingest")  # a 503 for another reason says which
    proxy, url = proxied
    token = new_token(direct)
    auth = {"Authorization": f"Bearer {token}"}
    engine = make_engine(url)
    app = create_app(Services(settings=Settings(database_url=url), engine=engine))  # type: ignore[call-arg]
    batch = {"records": [usage(i) for i in range(BATCH)]}
    try:
        with running_server(app) as base, httpx.Client(base_url=base, timeout=30) as http:
            assert http.post("/v1/usage", json={"records": [usage(0, "warm")]}, headers=auth).status_code == 200
            before = row_counts(direct)

            for _attempt in range(3):
                # The batch's transaction has written its seven new people; it dies as its usage rows go out.
                proxy.cut_when(b'COPY "usage_record"', occurrence=1)
                response = http.post("/v1/usage", json=batch, headers=auth)
                if proxy.tripped.is_set():
                    break
                # Failed before the cut for another reason (rarely seen on a loaded shared machine): it must
                # still have been a 503 that wrote nothing; then the cut is tried again.
                assert response.status_code == 503, (response.status_code, response.text, caplog.text[-3000:])
                assert row_counts(direct) == before
                proxy.restore()
            assert proxy.tripped.is_set(), (response.status_code, response.text, caplog.text[-3000:])
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "5"
            assert "nothing was written" in response.json()["errors"][0]["message"]
            assert row_counts(direct) == before  # not the new people, not a single usage row

            # Still down: new connections are refused, and everything says so without a traceback.
            assert http.post("/v1/usage", json=batch, headers=auth).status_code == 503
            otlp = http.post("/v1/otlp/v1/metrics", content=b"{}", headers={**auth, "Content-Type": "application/json"})
            assert otlp.status_code == 503 and otlp.headers["Retry-After"] == "5"
            health = http.get("/healthz")
            assert health.status_code == 503 and health.headers["Retry-After"] == "5"
            assert proxy.refused > 0

            proxy.restore()  # the database is back; the process was never restarted
            assert http.get("/healthz").json() == {"status": "ok", "database": "up"}
            assert http.post("/v1/usage", json=batch, headers=auth).json() == {"accepted": BATCH, "duplicates": 0}
            assert http.post("/v1/usage", json=batch, headers=auth).json() == {"accepted": 0, "duplicates": BATCH}
    finally:
        engine.dispose()
    after = row_counts(direct)
    assert after["usage_record"] == before["usage_record"] + BATCH
    assert after["person"] == 7


def test_a_database_cut_between_requests_costs_one_503_at_most_then_pooled_connections_are_replaced(
    proxied: tuple[CuttableProxy, str], direct: Engine
) -> None:
    proxy, url = proxied
    auth = {"Authorization": f"Bearer {new_token(direct)}"}
    engine = make_engine(url)
    app = create_app(Services(settings=Settings(database_url=url), engine=engine))  # type: ignore[call-arg]
    try:
        with running_server(app) as base, httpx.Client(base_url=base, timeout=30) as http:
            for i in range(3):  # fill the pool with connections that will all be dead
                assert http.post("/v1/usage", json={"records": [usage(i)]}, headers=auth).status_code == 200
            proxy.cut()
            proxy.restore()  # a restart between two requests: every pooled connection is now broken
            statuses = [
                http.post("/v1/usage", json={"records": [usage(i)]}, headers=auth).status_code for i in range(3, 9)
            ]
    finally:
        engine.dispose()
    assert statuses == [200] * 6  # pre-ping finds the dead connections before any work is done
    assert row_counts(direct)["usage_record"] == 9


def test_slash_commands_are_acked_while_the_database_is_down_and_the_user_hears_it_is_not_answering(
    proxied: tuple[CuttableProxy, str], direct: Engine
) -> None:
    proxy, url = proxied
    engine = make_engine(url)
    with SlackStandIn(token=BOT_TOKEN) as slack:
        services = Services(settings=make_settings(slack, url), engine=engine, people=SlackPeople(60))
        from bot.devtools.console import LocalServer
        from bot.devtools.slack_requests import SlackRequests

        signer = SlackRequests(SIGNING_SECRET, team_id=slack.team_id)
        try:
            with LocalServer(create_app(services)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
                proxy.cut()
                response_url = slack.response_url()
                request = signer.slash_command("me", ADA, response_url)
                response = http.post("/slack/events", content=request.body, headers=request.headers)
                assert response.status_code == 200 and response.content == b""  # the ack needs no database
                (said,) = slack.wait_for("response_url")
                assert said.args["text"] == blocks.DATABASE_BUSY

                proxy.restore()
                again = slack.response_url()
                request = signer.slash_command("me", ADA, again)
                assert http.post("/slack/events", content=request.body, headers=request.headers).status_code == 200
                slack.wait_until(lambda: len(slack.calls("response_url")) == 2, timeout=30)
                assert "Your Tokenwise numbers" in slack.calls("response_url")[1].args["text"]
        finally:
            engine.dispose()


def test_a_database_that_stops_answering_does_not_hold_the_ack_past_slacks_three_seconds(
    proxied: tuple[CuttableProxy, str], direct: Engine
) -> None:
    """Before the ack, the request's signature and delivery are claimed in the database. A database that
    stops answering (no refusal, no reset: a partition) must not hold them: the pooled connection's ping and
    a new connection's start-up would wait for it, past Slack's 3 seconds. Nor may going on without the
    claims let a replay through."""
    from handlers.slack.before_ack import BEFORE_ACK

    proxy, url = proxied
    engine = make_engine(url)
    with SlackStandIn(token=BOT_TOKEN) as slack:
        services = Services(settings=make_settings(slack, url), engine=engine, people=SlackPeople(60))
        from bot.devtools.console import LocalServer
        from bot.devtools.slack_requests import SlackRequests

        signer = SlackRequests(SIGNING_SECRET, team_id=slack.team_id)
        late_before = BEFORE_ACK.late
        try:
            with LocalServer(create_app(services)) as server, httpx.Client(base_url=server.url, timeout=3.0) as http:
                request = signer.slash_command("me", ADA, slack.response_url())
                assert http.post("/slack/events", content=request.body, headers=request.headers).status_code == 200
                slack.wait_until(lambda: len(slack.calls("response_url")) == 1, timeout=30)  # the pool is warm

                proxy.stall()
                sent = []
                for _ in range(3):  # the pooled connection waits for an answer, then new ones for their start-up
                    request = signer.slash_command("me", ADA, slack.response_url())
                    response = http.post("/slack/events", content=request.body, headers=request.headers)
                    assert response.status_code == 200 and response.content == b""  # within httpx's 3 s
                    sent.append(request)
                assert BEFORE_ACK.late >= late_before + 4  # the third went on at once: every claim thread waits
                # A replay of the last, while the database still says nothing: this process remembers it.
                replay = http.post("/slack/events", content=sent[-1].body, headers=sent[-1].headers)
                assert replay.status_code == 200 and replay.content == b""
                proxy.restore()  # the claims and the lazy answers waiting on the database go on
                slack.wait_until(lambda: len(slack.calls("response_url")) == 4, timeout=30)
                time.sleep(1)  # the replay, had it run, would have answered by now
                answers = [call.args["text"] for call in slack.calls("response_url")]
                assert len(answers) == 4  # each command once, the replay not at all
                assert all("Your Tokenwise numbers" in text or text == blocks.DATABASE_BUSY for text in answers)
        finally:
            proxy.restore()
            engine.dispose()


def test_in_oauth_mode_a_database_that_stops_answering_does_not_hold_the_ack_either(
    proxied: tuple[CuttableProxy, str], direct: Engine
) -> None:
    """In OAuth mode Bolt reads the workspace's installation before the ack, on every request: held to the
    same deadline, the last answer this process had stands in while the database says nothing."""
    from bot.devtools.console import LocalServer
    from bot.devtools.slack_requests import SlackRequests
    from tests.test_slack_oauth import CLIENT_ID, CLIENT_SECRET, OAuthApp, install

    proxy, url = proxied
    engine = make_engine(url)
    with SlackStandIn(token="xoxb-unused") as slack:
        slack.oauth_clients[CLIENT_ID] = CLIENT_SECRET
        settings = make_settings(slack, url).model_copy(
            update={"slack_bot_token": None, "slack_client_id": CLIENT_ID, "slack_client_secret": CLIENT_SECRET}
        )
        services = Services(settings=settings, engine=engine, people=SlackPeople(60))
        signer = SlackRequests(SIGNING_SECRET, team_id="T111")
        try:
            with LocalServer(create_app(services)) as server, httpx.Client(base_url=server.url, timeout=3.0) as http:
                assert install(OAuthApp(slack, services, http)).status_code == 200
                request = signer.slash_command("runs", "W111", slack.response_url())
                assert http.post("/slack/events", content=request.body, headers=request.headers).status_code == 200
                slack.wait_until(lambda: len(slack.calls("response_url")) == 1, timeout=30)

                proxy.stall()
                for sender in ("W111", "W222"):  # the installer, and someone else (Bolt then asks for theirs)
                    request = signer.slash_command("runs", sender, slack.response_url())
                    response = http.post("/slack/events", content=request.body, headers=request.headers)
                    assert response.status_code == 200 and response.content == b""  # within httpx's 3 s
                proxy.restore()
                slack.wait_until(lambda: len(slack.calls("response_url")) == 3, timeout=30)
        finally:
            proxy.restore()
            engine.dispose()


def test_an_unexpected_database_error_is_a_500_apology_and_writes_nothing(engine: Engine, db_url: str) -> None:
    """A fault that retrying will not cure (here a trigger refusing every usage row) is 500, not 503."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text(
                    "CREATE FUNCTION refuse_usage() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'refused %', NEW.dedupe_key; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text("CREATE TRIGGER refuse BEFORE INSERT ON usage_record FOR EACH ROW EXECUTE FUNCTION refuse_usage()")
            )
        else:
            connection.execute(
                text("CREATE TRIGGER refuse BEFORE INSERT ON usage_record BEGIN SELECT RAISE(ABORT, 'refused'); END")
            )
    auth = {"Authorization": f"Bearer {new_token(engine)}"}
    app = create_app(Services(settings=Settings(database_url=db_url), engine=engine))  # type: ignore[call-arg]
    before = row_counts(engine)
    try:
        with running_server(app) as base, httpx.Client(base_url=base, timeout=30) as http:
            response = http.post("/v1/usage", json={"records": [usage(1)]}, headers=auth)
        assert response.status_code == 500
        assert "Retry-After" not in response.headers
        assert "nothing was written" in response.json()["errors"][0]["message"]
        assert row_counts(engine) == before
    finally:
        with engine.begin() as connection:
            connection.execute(
                text("DROP TRIGGER refuse" + (" ON usage_record" if db_url.startswith("postgres") else ""))
            )
            if engine.dialect.name == "postgresql":
                connection.execute(text("DROP FUNCTION refuse_usage()"))
