"""Money and times are stored exactly and read back the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
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


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2999, 12, 30), timezones=st.just(UTC)),
        min_size=2,
        max_size=6,
    ),
    st.integers(-14 * 60, 14 * 60),
)
def test_any_time_round_trips_and_orders_and_compares_in_the_database_as_in_python(
    engine: Engine, moments: list[datetime], offset_minutes: int
) -> None:
    """Times stored (integer microseconds on SQLite, timestamps on PostgreSQL) read back to the microsecond,
    sort in SQL as they do in Python and compare with a bound time the same way, whatever its zone."""
    zone = timezone(timedelta(minutes=offset_minutes))
    with Session(engine) as session:
        src = f.source(session)
        ada = f.person(session, f"ada{f._counter.__next__()}@example.com")
        ids = []
        for moment in moments:
            record = f.usage(session, src, ada, "2026-11-02 10:00", "1")
            record.occurred_at = moment.astimezone(zone)
            ids.append(record.id)
        session.commit()
        session.expire_all()
        mine = UsageRecord.person_id == ada.id
        stored = session.scalars(select(UsageRecord.occurred_at).where(mine).order_by(UsageRecord.occurred_at)).all()
        assert list(stored) == sorted(moments) and all(s.utcoffset() == timedelta(0) for s in stored)
        middle = sorted(moments)[len(moments) // 2].astimezone(zone)
        earlier = session.scalar(select(func.count()).where(mine, UsageRecord.occurred_at < middle))
        assert earlier == sum(moment < middle for moment in moments)
        assert session.scalar(select(func.max(UsageRecord.occurred_at)).where(mine)) == max(moments)
