"""Events: opening the App Home publishes this week at a glance, runs to review and shared wins."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot import blocks
from bot.periods import this_week, zone
from bot.reports import build_report
from handlers.bolt import ack_only, apologetic, workspace_of
from storage.db import session_scope
from storage.metrics import Scope
from storage.runs import count_unreviewed, shared_wins, unreviewed_runs

if TYPE_CHECKING:
    from bot.app import Services

EVENTS = ("app_home_opened",)
HOME_RUNS = 5
HOME_WINS = 5


def register(app: App) -> None:
    app.event("app_home_opened")(ack=ack_only, lazy=[home_opened])


@apologetic
def home_opened(event: dict[str, Any], client: WebClient, context: BoltContext, services: Services) -> None:
    if event.get("tab", "home") != "home":
        return  # the Messages tab: nothing to publish
    publish_home(services, client, event["user"], workspace_of(context))


def publish_home(services: Services, client: WebClient, user_id: str, workspace: str = "") -> None:
    """Build and publish the Home tab of one user (also after they review a run from it)."""
    with session_scope(services.engine) as session:
        person, profile = services.people.resolve(session, client, user_id, workspace)
        assert person.id is not None
        period = this_week(datetime.now(zone(profile.tz)).date(), profile.tz)
        report = build_report(
            session, Scope.person(person.id, person.email or ""), period, services.settings.min_group_size
        )
        view = blocks.home_view(
            report,
            count_unreviewed(session, person.id, period.start, period.end),
            unreviewed_runs(session, person.id, HOME_RUNS),
            shared_wins(session, person.id, HOME_WINS),
            profile.tz,
        )
    client.views_publish(user_id=user_id, view=view)
