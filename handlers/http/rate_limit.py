"""A per-source request budget for the ingest API: a token bucket per source, in the database on
PostgreSQL (`SharedRateLimit`: every replica spends from one budget) and in this process's memory on SQLite
(`SourceRateLimit`: a SQLite file serves one `tokenwise serve`). Both allow and refuse alike.

A source may send `per_minute` requests in any minute-long burst, refilled evenly; past that it gets 429
with Retry-After, which OTLP exporters and well-behaved clients honour. Keyed by source after the token is
checked, and every token is a source of its own (a personal token from `/tokenwise connect` too), so the
budget is per token: one noisy sender, or one person's flood, cannot crowd out the others. Hand-written (30
lines) because it needs a key known only after authentication and a clock tests can drive.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from storage.ingest_budgets import spend


@dataclass
class _Bucket:
    tokens: float
    updated: float


class SourceRateLimit:
    """`allow(source_id)` spends one of that token's requests; it returns 0 when allowed, else the seconds to wait."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def allow(self, source_id: int) -> int:
        if not self.enabled:
            return 0
        rate = self.per_minute / 60.0  # requests regained per second
        now = self.clock()
        with self._lock:
            bucket = self._buckets.setdefault(source_id, _Bucket(float(self.per_minute), now))
            bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0
            return max(1, math.ceil((1 - bucket.tokens) / rate))


class SharedRateLimit:
    """`SourceRateLimit` kept in the database (`storage/ingest_budgets.py`), shared by every replica; the
    clock is the wall clock, which replicas share too."""

    def __init__(self, engine: Engine, per_minute: int, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.per_minute = per_minute
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def allow(self, source_id: int) -> int:
        if not self.enabled:
            return 0
        return spend(self.engine, source_id, self.per_minute, self.clock())


def rate_limit_for(engine: Engine, per_minute: int) -> SourceRateLimit | SharedRateLimit:
    """In the database on PostgreSQL, where replicas share it; in memory on SQLite (one process)."""
    if engine.dialect.name == "postgresql":
        return SharedRateLimit(engine, per_minute)
    return SourceRateLimit(per_minute)
