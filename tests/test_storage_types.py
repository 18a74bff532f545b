"""Money and times are stored exactly and read back the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from storage.models import UsageRecord
from tests.support import factories as f


def test_costs_sum_exactly(session: Session) -> None:
    src = f.source(session)
    ada = f.person(session, "ada@example.com")
    for _ in range(10):
        f.usage(session, src, ada, "2026-11-02 10:00", "0.1")
    f.usage(session, src, ada, "2026-11-02 10:00", "0.000000001")
    session.commit()
    total = session.scalar(select(func.sum(UsageRecord.cost_usd)))
    assert total == Decimal("1.000000001")


def test_times_come_back_as_aware_utc(session: Session) -> None:
    src = f.source(session)
    ada = f.person(session, "ada@example.com")
    record = f.usage(session, src, ada, "2026-11-02 10:00", "1")
    record.occurred_at = datetime(2026, 11, 2, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    session.commit()
    session.expire_all()
    stored = session.get(UsageRecord, record.id)
    assert stored is not None
    assert stored.occurred_at.utcoffset() == timedelta(0)
    assert stored.occurred_at.hour == 10


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.decimals(min_value=0, max_value=10**6, places=9, allow_nan=False, allow_infinity=False))
def test_any_nine_place_cost_round_trips(engine: Engine, cost: Decimal) -> None:
    with Session(engine) as session:
        src = f.source(session)
        ada = f.person(session, f"ada{f._counter.__next__()}@example.com")
        record = f.usage(session, src, ada, "2026-11-02 10:00", str(cost))
        session.commit()
        session.expire_all()
        stored = session.get(UsageRecord, record.id)
        assert stored is not None and stored.cost_usd == cost
