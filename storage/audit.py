"""The audit trail: who asked to see which scope, when, and what they got."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, col, select

from storage.models import AuditEvent


def record_event(
    session: Session,
    *,
    actor: str,
    action: str,
    scope: str,
    actor_person_id: int | None = None,
    detail: str | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    """Add one event to the caller's transaction (so it is written exactly when the request is)."""
    event = AuditEvent(
        occurred_at=now or datetime.now(UTC),
        actor_person_id=actor_person_id,
        actor=actor[:100],
        action=action[:60],
        scope=scope[:200],
        detail=detail[:500] if detail else None,
    )
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session, *, limit: int = 100, action: str | None = None, since: datetime | None = None
) -> list[AuditEvent]:
    """Newest first."""
    query = select(AuditEvent).order_by(col(AuditEvent.occurred_at).desc(), col(AuditEvent.id).desc()).limit(limit)
    if action:
        query = query.where(col(AuditEvent.action).startswith(action))
    if since:
        query = query.where(col(AuditEvent.occurred_at) >= since)
    return list(session.exec(query).all())
