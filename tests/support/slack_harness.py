"""The running app for Slack tests: real FastAPI + Bolt on a loopback port, the stand-in as Slack,
and requests signed as Slack signs them. `harness` is registered for every test (tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from bot.app import create_app
from bot.config import Settings
from bot.devtools.console import LocalServer
from bot.devtools.slack_requests import FORM, JSON, SignedRequest, SlackRequests
from bot.devtools.slack_standin import Call, SlackStandIn
from bot.services import Services
from handlers.slack.middleware import LAZY_WORK
from handlers.slack.people import SlackPeople
from storage.models import AgentRun, Annotation, Membership, Outcome, Person, Source, Team, UsageRecord, table_of
from storage.people import get_or_create_person
from tests.support.samples import SAMPLES

SIGNING_SECRET = "test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test"
ADA, GRACE, ALAN = "W111", "U111", "U222"  # the stand-in's seeded users
EMAILS = {ADA: "ada@example.com", GRACE: "grace@example.com", ALAN: "alan@example.com"}


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def sample_form(name: str) -> dict[str, str]:
    """A form-encoded sample (first non-comment line) as a dict, in Slack's field order."""
    line = next(x for x in sample(name).splitlines() if x.strip() and not x.startswith("#"))
    return dict(parse_qsl(line.strip(), keep_blank_values=True))


@dataclass
class Harness:
    slack: SlackStandIn
    services: Services
    http: httpx.Client
    signer: SlackRequests
    engine: Engine
    http_app: Any = None  # the FastAPI app (its state.bolt is the Bolt app)

    def post(self, request: SignedRequest) -> httpx.Response:
        return self.http.post("/slack/events", content=request.body, headers=request.headers)

    def command(self, text: str, user_id: str = ADA, **kwargs: Any) -> tuple[httpx.Response, str]:
        """A /tokenwise command built from the shared slash-command sample, signed now."""
        fields = sample_form("slack_slash_command.txt")
        url = self.slack.response_url()
        fields.update(
            command="/tokenwise",
            text=text,
            user_id=user_id,
            response_url=url,
            team_id=self.slack.team_id,
            api_app_id="A111",
            is_enterprise_install="false",
        )
        return self.post(self.signer.sign(urlencode(fields), FORM, kwargs.get("timestamp"))), url

    def respond_to(self, url: str, count: int = 1, timeout: float = 15) -> list[dict[str, Any]]:
        """The bodies posted to one response_url (waits for `count` of them)."""
        path = "/" + url.split("/", 3)[3]

        def posted() -> list[Call]:
            return [c for c in self.slack.calls("response_url") if c.path == path]

        if len(posted()) < count:
            self.slack.wait_until(lambda: len(posted()) >= count, timeout)
        return [c.args for c in posted()]

    def idle(self, timeout: float = 15) -> None:
        """Wait until every lazy listener has finished, including what it records after its answer (the
        looks of the audit trail, the caller's time zone)."""
        LAZY_WORK.wait_idle(timeout)

    def click(
        self, action_id: str, value: str, user_id: str = ADA, *, home: bool = False, timestamp: int | None = None
    ) -> tuple[httpx.Response, str]:
        """A button click built from the shared block_actions sample."""
        payload = json.loads(sample("slack_block_actions.json"))
        url = self.slack.response_url()
        payload["user"]["id"] = user_id
        payload["team"] = {"id": self.slack.team_id, "domain": "tokenwise-test"}
        payload["actions"][0].update(action_id=action_id, value=value, block_id=f"run:{value}")
        payload["trigger_id"] = f"{datetime.now(UTC).timestamp():.0f}.222.valid"
        if home:
            payload["container"] = {"type": "view", "view_id": "VHOME"}
            payload["view"] = {"id": "VHOME", "type": "home", "blocks": [], "private_metadata": ""}
            payload.pop("response_url", None)
            payload.pop("channel", None)
        else:
            payload["response_url"] = url
        return self.post(self.signer.interactive(payload, timestamp)), url

    def submit(self, view: dict[str, Any], values: dict[str, Any], user_id: str = ADA) -> httpx.Response:
        """A view_submission built from the shared sample, carrying the modal the app opened."""
        payload = json.loads(sample("slack_view_submission.json"))
        payload["user"]["id"] = user_id
        payload["team"] = {"id": self.slack.team_id, "domain": "tokenwise-test"}
        payload["view"].update(
            type="modal",
            callback_id=view["callback_id"],
            private_metadata=view["private_metadata"],
            blocks=view["blocks"],
            state={"values": values},
        )
        return self.post(self.signer.interactive(payload))

    def home_opened(self, user_id: str = ADA, tab: str = "home") -> httpx.Response:
        envelope = json.loads(sample("slack_app_home_opened_event_callback.json"))
        envelope["team_id"] = self.slack.team_id
        envelope["event"].update(user=user_id, tab=tab)
        return self.post(self.signer.sign(json.dumps(envelope), JSON))


def make_settings(slack: SlackStandIn, db_url: str, **extra: Any) -> Settings:
    return Settings(
        database_url=db_url,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.url,
        slack_client_id=None,
        slack_client_secret=None,
        public_url="https://tokenwise.example.com",
        min_group_size=3,
        **extra,
    )


@pytest.fixture(name="harness")
def harness_fixture(engine: Engine, db_url: str) -> Iterator[Harness]:
    with SlackStandIn(token=BOT_TOKEN) as slack:
        settings = make_settings(slack, db_url)
        services = Services(settings=settings, engine=engine, people=SlackPeople(60))
        api = create_app(services)
        with LocalServer(api) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            slack.reset()  # forget the auth.test Bolt made at start-up: tests see only what requests cause
            yield Harness(slack, services, http, SlackRequests(SIGNING_SECRET, team_id=slack.team_id), engine, api)


# -- data ------------------------------------------------------------------------------------------
def in_last_week() -> timedelta:
    """How long ago Wednesday noon (UTC) of the last whole week was: inside every team view's window."""
    now = datetime.now(UTC)
    monday = (now - timedelta(days=now.weekday() + 7)).replace(hour=12, minute=0, second=0, microsecond=0)
    return now - (monday + timedelta(days=2))


def person(session: Session, user_id: str, timezone: str = "UTC") -> Person:
    found = get_or_create_person(session, email=EMAILS[user_id], display_name=EMAILS[user_id].split("@")[0].title())
    found.timezone = timezone
    session.add(found)
    session.flush()
    return found


def source(session: Session) -> Source:
    existing = session.execute(select(Source).where(Source.name == "tests")).scalars().first()  # type: ignore[arg-type]
    if existing:
        return existing
    made = Source(name="tests", kind="test")
    session.add(made)
    session.flush()
    return made


def run(
    session: Session,
    owner: Person,
    title: str,
    *,
    tokens: int = 1000,
    cost: str | None = "0.10",
    ago: timedelta = timedelta(minutes=5),
    outcome: bool = False,
    project: str | None = None,
) -> AgentRun:
    started = datetime.now(UTC) - ago
    made = AgentRun(
        source_id=source(session).id or 0,
        external_id=f"{title}-{owner.id}",
        person_id=owner.id or 0,
        agent="claude-code",
        started_at=started,
        title=title,
        repo="acme/api",
        project=project,
    )
    session.add(made)
    session.flush()
    session.add(
        UsageRecord(
            source_id=made.source_id,
            person_id=made.person_id,
            run_id=made.id,
            occurred_at=started,
            agent="claude-code",
            model="claude-sonnet-4",
            input_tokens=tokens,
            cost_usd=Decimal(cost) if cost else None,
            dedupe_key=f"u-{made.id}",
        )
    )
    if outcome:
        session.add(
            Outcome(
                run_id=made.id,
                person_id=made.person_id,
                kind="pr_merged",
                weight=Decimal(3),
                occurred_at=started,
                evidence=True,
                counted=True,
                agent_assisted=True,
            )
        )
    session.flush()
    return made


def team(session: Session, name: str, members: list[Person]) -> Team:
    made = Team(name=name)
    session.add(made)
    session.flush()
    for member in members:
        session.add(Membership(person_id=member.id or 0, team_id=made.id or 0))
    session.flush()
    return made


def annotations(engine: Engine) -> list[Annotation]:
    with Session(engine) as session:
        return list(session.execute(select(Annotation).order_by(Annotation.id)).scalars())  # type: ignore[arg-type]


def count(engine: Engine, model: type) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table_of(model))).scalar_one())
