"""Digest subscriptions: which channel gets which team's weekly digest, and when."""

from __future__ import annotations

import logging

from sqlalchemy import ColumnElement, select
from sqlmodel import Session, col

from storage.models import (
    DigestSubscription,
    Team,
    table_of,
)
from storage.schedules import Schedule

log = logging.getLogger(__name__)

DS = table_of(DigestSubscription).c


def schedule_of(subscription: DigestSubscription) -> Schedule:
    return Schedule(subscription.weekday, subscription.hour, subscription.minute, subscription.timezone)


def _same_team(team_id: int | None) -> ColumnElement[bool]:
    column = col(DigestSubscription.team_id)
    return column.is_(None) if team_id is None else column == team_id


def subscribe(
    session: Session,
    *,
    channel_id: str,
    team_id: int | None,
    schedule: Schedule,
    slack_team_id: str | None = None,
    enterprise_id: str | None = None,
    created_by: int | None = None,
) -> tuple[DigestSubscription, bool]:
    """Subscribe a channel to a team's digest (None: the organisation); an existing one is rescheduled.

    Channel ids are unique across Slack, so a channel's subscription to a team is found whichever
    workspace (or the CLI, which knows none) created it. Returns the subscription and whether it is new.
    """
    subscription = session.scalars(
        select(DigestSubscription)
        .where(col(DigestSubscription.channel_id) == channel_id, _same_team(team_id))
        .order_by(col(DigestSubscription.id))
    ).first()
    created = subscription is None
    if subscription is None:
        subscription = DigestSubscription(channel_id=channel_id, team_id=team_id, created_by=created_by)
    subscription.slack_team_id = slack_team_id or subscription.slack_team_id
    subscription.enterprise_id = enterprise_id or subscription.enterprise_id
    subscription.weekday = schedule.weekday
    subscription.hour = schedule.hour
    subscription.minute = schedule.minute
    subscription.timezone = schedule.timezone
    session.add(subscription)
    session.flush()
    return subscription, created


def unsubscribe(session: Session, *, channel_id: str, team_id: int | None = None, every: bool = False) -> int:
    """Remove the channel's subscription to one team (or, with every=True, all of them); how many went."""
    conditions = [col(DigestSubscription.channel_id) == channel_id]
    if not every:
        conditions.append(_same_team(team_id))
    found = list(session.scalars(select(DigestSubscription).where(*conditions)))
    for subscription in found:
        session.delete(subscription)
    session.flush()
    return len(found)


def list_subscriptions(
    session: Session, *, channel_id: str | None = None, slack_team_id: str | None = None
) -> list[tuple[DigestSubscription, str]]:
    """Subscriptions with their team's name ("organisation" for the whole org), oldest first."""
    query = (
        select(DigestSubscription, col(Team.name))
        .outerjoin(Team, col(Team.id) == col(DigestSubscription.team_id))
        .order_by(col(DigestSubscription.id))
    )
    if channel_id is not None:
        query = query.where(col(DigestSubscription.channel_id) == channel_id)
    if slack_team_id is not None:
        query = query.where(col(DigestSubscription.slack_team_id) == slack_team_id)
    return [(row[0], row[1] or "organisation") for row in session.execute(query)]
