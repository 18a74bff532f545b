"""OAuth mode: the install flow stores installations in our database, and tokens rotate, also outside
any request (the scheduler's client). Slack is the stand-in; every step is real HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine, select, update

from bot.app import create_app
from bot.devtools.console import LocalServer
from bot.devtools.slack_requests import SlackRequests
from bot.devtools.slack_standin import SlackStandIn
from bot.services import Services
from handlers.slack.app import NotInstalled, installation_store, slack_client_for
from handlers.slack.people import SlackPeople
from storage.slack_tables import slack_metadata
from tests.support.slack_harness import SIGNING_SECRET, make_settings

CLIENT_ID, CLIENT_SECRET = "111.222", "oauth-secret"


@dataclass
class OAuthApp:
    slack: SlackStandIn
    services: Services
    http: httpx.Client


@pytest.fixture
def oauth_app(engine: Engine, db_url: str) -> Iterator[OAuthApp]:
    with SlackStandIn(token="xoxb-unused") as slack:
        slack.oauth_clients[CLIENT_ID] = CLIENT_SECRET
        settings = make_settings(slack, db_url).model_copy(
            update={"slack_bot_token": None, "slack_client_id": CLIENT_ID, "slack_client_secret": CLIENT_SECRET}
        )
        services = Services(settings=settings, engine=engine, people=SlackPeople(60))
        with LocalServer(create_app(services)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            yield OAuthApp(slack, services, http)


def install(app: OAuthApp) -> httpx.Response:
    page = app.http.get("/slack/install")
    assert page.status_code == 200
    state = re.search(r"state=([\w-]+)", page.text)
    assert state and f"client_id={CLIENT_ID}" in page.text
    cookie = page.headers["set-cookie"].split(";")[0]
    return app.http.get(
        "/slack/oauth_redirect", params={"code": "the-code", "state": state.group(1)}, headers={"Cookie": cookie}
    )


def installations(engine: Engine) -> list[dict]:
    table = slack_metadata().tables["slack_installations"]
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(table))]


def test_installing_stores_the_installation_with_a_refresh_token(oauth_app: OAuthApp) -> None:
    response = install(oauth_app)
    assert response.status_code == 200
    (stored,) = installations(oauth_app.services.engine)
    assert stored["team_id"] == "T111"
    assert stored["bot_token"].startswith("xoxe.xoxb-")
    assert stored["bot_refresh_token"].startswith("xoxe-1-")
    assert oauth_app.slack.calls("oauth.v2.access")[0].args["code"] == "the-code"


def test_a_callback_with_a_forged_state_installs_nothing(oauth_app: OAuthApp) -> None:
    response = oauth_app.http.get("/slack/oauth_redirect", params={"code": "c", "state": "forged"})
    assert response.status_code >= 400
    assert installations(oauth_app.services.engine) == []


def test_an_installed_workspace_is_answered_with_its_own_token(oauth_app: OAuthApp) -> None:
    install(oauth_app)
    token = installations(oauth_app.services.engine)[0]["bot_token"]
    signer = SlackRequests(SIGNING_SECRET, team_id="T111")
    url = oauth_app.slack.response_url()
    response = oauth_app.http.post(
        "/slack/events", content=(r := signer.slash_command("runs", "W111", url)).body, headers=r.headers
    )
    assert response.status_code == 200
    oauth_app.slack.wait_for("response_url")
    assert oauth_app.slack.calls("users.info")[0].token == token


def test_an_uninstalled_workspace_gets_no_answer(oauth_app: OAuthApp) -> None:
    signer = SlackRequests(SIGNING_SECRET, team_id="T999")
    r = signer.slash_command("runs", "W111", oauth_app.slack.response_url())
    response = oauth_app.http.post("/slack/events", content=r.body, headers=r.headers)
    assert response.status_code == 200  # Bolt's polite "not installed" answer, nothing else happens
    assert oauth_app.slack.calls("users.info") == []


def expire_tokens(engine: Engine) -> None:
    for name in ("slack_installations", "slack_bots"):
        table = slack_metadata().tables[name]
        with engine.begin() as connection:
            connection.execute(
                update(table).values(bot_token_expires_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1))
            )


def test_the_schedulers_client_rotates_an_expiring_token_and_saves_it(oauth_app: OAuthApp) -> None:
    install(oauth_app)
    old = installations(oauth_app.services.engine)[0]["bot_token"]
    expire_tokens(oauth_app.services.engine)
    client = slack_client_for(oauth_app.services, team_id="T111")
    assert client.token != old
    assert client.auth_test()["ok"]
    assert oauth_app.slack.calls("oauth.v2.access")[-1].args["grant_type"] == "refresh_token"
    store = installation_store(oauth_app.services.settings, oauth_app.services.engine)
    latest = store.find_installation(enterprise_id=None, team_id="T111")
    assert latest is not None and latest.bot_token == client.token


def test_a_request_after_expiry_is_answered_with_a_rotated_token(oauth_app: OAuthApp) -> None:
    install(oauth_app)
    old = installations(oauth_app.services.engine)[0]["bot_token"]
    expire_tokens(oauth_app.services.engine)
    signer = SlackRequests(SIGNING_SECRET, team_id="T111")
    r = signer.slash_command("runs", "W111", oauth_app.slack.response_url())
    assert oauth_app.http.post("/slack/events", content=r.body, headers=r.headers).status_code == 200
    oauth_app.slack.wait_for("response_url")
    assert oauth_app.slack.calls("users.info")[0].token != old
    assert [c.args.get("grant_type") for c in oauth_app.slack.calls("oauth.v2.access")][-1] == "refresh_token"


def test_the_schedulers_client_refuses_a_workspace_that_never_installed(oauth_app: OAuthApp) -> None:
    with pytest.raises(NotInstalled):
        slack_client_for(oauth_app.services, team_id="T404")


def test_installation_reads_past_the_deadline_use_the_last_answer_or_fail_at_once(oauth_app: OAuthApp) -> None:
    """InstallationsInTime (what Bolt reads before each ack): the real store, held as a database that does
    not answer would hold it; the last answer stands in without its refresh token (no rotation, a write,
    against that database), a workspace never read fails at once, and a person's own installation (Bolt
    asks when the sender is not the installer; Tokenwise asks for no user scopes) needs no read."""
    import threading

    from handlers.slack.before_ack import BeforeAck, DatabaseNotAnswering, InstallationsInTime

    install(oauth_app)
    real = installation_store(oauth_app.services.settings, oauth_app.services.engine)
    held, released = threading.Event(), threading.Event()

    class Held(type(real)):  # type: ignore[misc]
        def find_installation(self, **kwargs):  # type: ignore[no-untyped-def]
            if held.is_set():
                released.wait(10)
            return real.find_installation(**kwargs)

    store = InstallationsInTime(Held(client_id=CLIENT_ID, engine=oauth_app.services.engine), BeforeAck(seconds=2))
    try:
        first = store.find_installation(enterprise_id=None, team_id="T111")
        assert first is not None and first.bot_token and first.bot_refresh_token
        held.set()
        again = store.find_installation(enterprise_id=None, team_id="T111")  # past the deadline: the last answer
        assert again is not None and again.bot_token == first.bot_token and again.bot_refresh_token is None
        assert store.find_installation(enterprise_id=None, team_id="T111", user_id="W222") is None
        with pytest.raises(DatabaseNotAnswering):
            store.find_installation(enterprise_id=None, team_id="T222")  # never read here: nothing to stand in
    finally:
        released.set()
