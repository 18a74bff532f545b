"""Each ingest source's request budget, in the database so every replica of `tokenwise serve` spends
from the same one.

The budget is a token bucket of `per_minute` requests refilled evenly, kept as one number per source
(the generic cell rate algorithm): `ready_at`, the moment the bucket would be full again, less one
minute's burst. A request is allowed when spending it leaves `ready_at` at most one minute ahead of now;
then `ready_at` moves on by one request's share of the minute. That is one INSERT ... ON CONFLICT DO UPDATE
... WHERE ... RETURNING, the same statement on SQLite and PostgreSQL, and PostgreSQL's row lock orders the
replicas' requests. It allows and refuses exactly what the in-memory bucket (`handlers/http/rate_limit.py:
SourceRateLimit`) does.
"""

from __future__ import annotations

import math

from sqlalchemy import Engine, case, literal, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from storage.models import IngestBudget, table_of

BUDGET = table_of(IngestBudget)
WINDOW_SECONDS = 60.0


def spend(engine: Engine, source_id: int, per_minute: int, now: float) -> int:
    """Spend one of the source's requests at `now` (Unix seconds); 0 when allowed, else the seconds to wait."""
    interval = WINDOW_SECONDS / per_minute  # one request's share of the minute
    later = case((BUDGET.c.ready_at > now, BUDGET.c.ready_at), else_=literal(now)) + interval
    insert = postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(BUDGET)
        .values(source_id=source_id, ready_at=now + interval)
        .on_conflict_do_update(
            index_elements=[BUDGET.c.source_id],
            set_={"ready_at": later},
            where=later - now <= WINDOW_SECONDS,
        )
        .returning(BUDGET.c.ready_at)
    )
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # a crash forgets at most the last instant's spending
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        if connection.execute(statement).first() is not None:
            return 0
        ready_at = connection.execute(select(BUDGET.c.ready_at).where(BUDGET.c.source_id == source_id)).scalar_one()
    return max(1, math.ceil(float(ready_at) + interval - WINDOW_SECONDS - now - 1e-6))  # 1e-6: float dust
