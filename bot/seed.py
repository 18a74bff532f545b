"""A synthetic organisation: realistic enough to demo and to test the metrics, deterministic for a seed.

People run agents every week; most runs of most people lead somewhere (outcomes, useful verdicts), and
a few "tokenmaxxers" burn many tokens with nothing to show. Rows are written with bulk inserts and
explicit ids, so the same seed and end date give the same database on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from bot.config import DEFAULT_OUTCOME_WEIGHTS
from storage.db import is_postgres
from storage.models import (
    AgentRun,
    Annotation,
    Membership,
    Outcome,
    Person,
    Source,
    Team,
    UsageRecord,
    table_of,
)
from storage.pricing import price

TEAM_NAMES = ["platform", "data", "mobile", "web", "infra", "payments", "search", "growth", "security", "billing"]
FIRST_NAMES = [
    "Alex", "Sam", "Priya", "Jonas", "Mei", "Diego", "Amara", "Lena", "Omar", "Noor",
    "Kai", "Sofia", "Tomasz", "Yuki", "Ravi", "Elif", "Marcus", "Ines", "Chen", "Hana",
]  # fmt: skip
LAST_NAMES = [
    "Rivera", "Okafor", "Nakamura", "Schmidt", "Haddad", "Kowalski", "Lindqvist", "Mensah",
    "Fernandes", "Park", "Novak", "Adeyemi", "Moreau", "Iyer", "Costa", "Berg",
]  # fmt: skip
TIMEZONES = ["UTC", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Kolkata", "Europe/London"]
AGENTS: dict[str, list[str]] = {
    "claude-code": ["claude-sonnet-4-5", "claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"],
    "codex": ["gpt-5", "gpt-5-mini"],
    "openai-api": ["gpt-4o", "gpt-4o-mini"],
    "meshclaw": ["meshclaw-internal-2"],  # an in-house model: its cost is unknown
}
VERBS = ["Fix", "Add", "Refactor", "Investigate", "Document", "Speed up", "Migrate", "Test"]
THINGS = [
    "login retry", "invoice export", "search ranking", "flaky CI job", "feature flags", "payment webhooks",
    "onboarding emails", "cache eviction", "dashboard filters", "API pagination", "audit log", "rate limiter",
]  # fmt: skip
REPOS = ["acme/api", "acme/web", "acme/mobile", "acme/data-pipeline", "acme/infra"]
SEED_SOURCE = "seed"


class SeedError(ValueError):
    """The database cannot be seeded as asked."""


@dataclass
class SeedSummary:
    people: int = 0
    teams: int = 0
    runs: int = 0
    usage_records: int = 0
    outcomes: int = 0
    annotations: int = 0
    tokenmaxxers: list[str] = field(default_factory=list)
    first_email: str = ""


def person_email(index: int) -> str:
    first = FIRST_NAMES[index % len(FIRST_NAMES)]
    last = LAST_NAMES[(index // len(FIRST_NAMES)) % len(LAST_NAMES)]
    cycle = index // (len(FIRST_NAMES) * len(LAST_NAMES))
    suffix = str(cycle + 1) if cycle else ""
    return f"{first}.{last}{suffix}@example.com".lower()


def person_name(index: int) -> str:
    return f"{FIRST_NAMES[index % len(FIRST_NAMES)]} {LAST_NAMES[(index // len(FIRST_NAMES)) % len(LAST_NAMES)]}"


def team_name(index: int) -> str:
    return TEAM_NAMES[index] if index < len(TEAM_NAMES) else f"team-{index + 1}"


def _rates(model: str) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
    """Per-token USD rates (input, output, cache read, cache write), or None for an unknown model."""
    per = Decimal(1000)
    parts = [price(model, 1000, 0), price(model, 0, 1000), price(model, 0, 0, 1000, 0), price(model, 0, 0, 0, 1000)]
    if any(p is None for p in parts):
        return None
    return tuple(p / per for p in parts)  # type: ignore[return-value,operator]


@dataclass
class _Persona:
    productivity: float
    diligence: float
    tokenmaxxer: bool
    agents: list[str]


class _Writer:
    """Buffers rows per table and flushes them in bulk, keeping ids explicit and in order."""

    def __init__(self, connection: Any, chunk: int = 5000) -> None:
        self.connection = connection
        self.chunk = chunk
        self.buffers: dict[str, list[dict[str, Any]]] = {}
        self.next_ids: dict[str, int] = {}
        self.order = ["agent_run", "usage_record", "outcome", "annotation"]

    def next_id(self, table: str) -> int:
        if table not in self.next_ids:
            current = self.connection.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar_one()
            self.next_ids[table] = int(current) + 1
        value = self.next_ids[table]
        self.next_ids[table] = value + 1
        return value

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.buffers.setdefault(table, []).append(row)
        if len(self.buffers[table]) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        tables = {t.name: t for t in (table_of(m) for m in (AgentRun, UsageRecord, Outcome, Annotation))}
        for name in self.order:  # parents before children
            rows = self.buffers.pop(name, [])
            if rows:
                self.connection.execute(insert(tables[name]), rows)


def seed_organisation(
    engine: Engine,
    people: int,
    teams: int,
    weeks: int,
    seed: int = 1,
    end: date | None = None,
    progress: Callable[[int], None] | None = None,
) -> SeedSummary:
    """Write a synthetic organisation ending on `end` (default today, UTC). One transaction."""
    if people < 1 or teams < 1 or weeks < 1:
        raise SeedError("--people, --teams and --weeks must each be at least 1.")
    if teams > people:
        raise SeedError(f"{teams} teams need at least {teams} people; got {people}.")
    end = end or datetime.now(UTC).date()
    rng = random.Random(seed)
    summary = SeedSummary(people=people, teams=teams, first_email=person_email(0))
    rates = {model: _rates(model) for models in AGENTS.values() for model in models}
    with engine.begin() as connection:
        existing = connection.execute(select(func.count()).select_from(table_of(Person))).scalar_one()
        if existing:
            raise SeedError(f"The database already has {existing} people; seed into an empty database.")
        source_id = connection.execute(
            insert(table_of(Source))
            .values(name=SEED_SOURCE, kind="seed", created_at=datetime.now(UTC))
            .returning(table_of(Source).c.id)
        ).scalar_one()
        now = datetime.now(UTC)
        connection.execute(
            insert(table_of(Team)),
            [{"id": t + 1, "name": team_name(t), "created_at": now} for t in range(teams)],
        )
        connection.execute(
            insert(table_of(Person)),
            [
                {
                    "id": i + 1,
                    "email": person_email(i),
                    "slack_user_id": f"U{1000000 + i}",
                    "display_name": person_name(i),
                    "timezone": TIMEZONES[i % len(TIMEZONES)],
                    "nudges_enabled": True,
                    "created_at": now,
                }
                for i in range(people)
            ],
        )
        connection.execute(
            insert(table_of(Membership)),
            [
                {
                    "id": i + 1,
                    "person_id": i + 1,
                    "team_id": i % teams + 1,
                    "role": "manager" if i < teams else "member",
                }
                for i in range(people)
            ],
        )
        personas = _personas(rng, people)
        summary.tokenmaxxers = [person_email(i) for i, p in enumerate(personas) if p.tokenmaxxer]
        writer = _Writer(connection)
        first_day = end - timedelta(days=7 * weeks - 1)
        for week in range(weeks):
            week_start = first_day + timedelta(days=7 * week)
            for index, persona in enumerate(personas):
                _person_week(writer, rng, summary, source_id, index + 1, persona, week_start, rates)
                if progress:
                    progress(1)
        writer.flush()
        if is_postgres(engine):
            for table in ("team", "person", "membership", "agent_run", "usage_record", "outcome", "annotation"):
                connection.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 1)) FROM {table}")
                )
    return summary


def _personas(rng: random.Random, people: int) -> list[_Persona]:
    personas = []
    for i in range(people):
        agents = rng.sample(list(AGENTS), k=rng.randint(1, 3))
        personas.append(
            _Persona(
                productivity=rng.uniform(0.35, 0.9),
                diligence=rng.uniform(0.3, 0.95),
                tokenmaxxer=rng.random() < 0.08 or (people >= 10 and i == people // 2),
                agents=agents,
            )
        )
    return personas


def _person_week(
    writer: _Writer,
    rng: random.Random,
    summary: SeedSummary,
    source_id: int,
    person_id: int,
    persona: _Persona,
    week_start: date,
    rates: dict[str, tuple[Decimal, Decimal, Decimal, Decimal] | None],
) -> None:
    runs = rng.randint(12, 24) if persona.tokenmaxxer else rng.randint(2, 9)
    scale = 3 if persona.tokenmaxxer else 1
    for _ in range(runs):
        agent = rng.choice(persona.agents)
        day = week_start + timedelta(days=rng.randint(0, 6))
        started = datetime.combine(day, time(rng.randint(7, 18), rng.randint(0, 59)), tzinfo=UTC)
        ended = started + timedelta(minutes=rng.randint(3, 95))
        run_id = writer.next_id("agent_run")
        writer.add(
            "agent_run",
            {
                "id": run_id,
                "source_id": source_id,
                "external_id": f"seed-run-{run_id}",
                "person_id": person_id,
                "agent": agent,
                "started_at": started,
                "ended_at": ended,
                "title": f"{rng.choice(VERBS)} {rng.choice(THINGS)}",
                "repo": rng.choice(REPOS),
                "status": "completed",
            },
        )
        summary.runs += 1
        for step in range(rng.randint(1, 6) + (3 if persona.tokenmaxxer else 0)):
            model = rng.choice(AGENTS[agent])
            tokens = (
                rng.randint(2_000, 40_000) * scale,
                rng.randint(200, 5_000) * scale,
                rng.randint(0, 150_000) * scale,
                rng.randint(0, 15_000) * scale,
            )
            rate = rates[model]
            cost = (
                None if rate is None else sum((Decimal(t) * r for t, r in zip(tokens, rate, strict=True)), Decimal(0))
            )
            record_id = writer.next_id("usage_record")
            unlinked = agent == "openai-api" and rng.random() < 0.2
            writer.add(
                "usage_record",
                {
                    "id": record_id,
                    "source_id": source_id,
                    "person_id": person_id,
                    "run_id": None if unlinked else run_id,
                    "occurred_at": started + timedelta(seconds=30 * step),
                    "agent": agent,
                    "model": model,
                    "input_tokens": tokens[0],
                    "output_tokens": tokens[1],
                    "cache_read_tokens": tokens[2],
                    "cache_write_tokens": tokens[3],
                    "cost_usd": cost,
                    "dedupe_key": f"seed-usage-{record_id}",
                },
            )
            summary.usage_records += 1
        kinds = [] if persona.tokenmaxxer else _outcome_kinds(rng, persona.productivity)
        for kind in kinds:
            outcome_id = writer.next_id("outcome")
            writer.add(
                "outcome",
                {
                    "id": outcome_id,
                    "source_id": source_id,
                    "external_id": f"seed-outcome-{outcome_id}",
                    "run_id": run_id,
                    "person_id": person_id,
                    "kind": kind,
                    "weight": DEFAULT_OUTCOME_WEIGHTS[kind],
                    "url": f"https://github.com/{rng.choice(REPOS)}/pull/{rng.randint(100, 9999)}"
                    if kind.startswith("pr_")
                    else None,
                    "occurred_at": ended + timedelta(minutes=rng.randint(5, 600)),
                },
            )
            summary.outcomes += 1
        review_chance = 0.05 if persona.tokenmaxxer else persona.diligence
        if rng.random() < review_chance:
            verdict = _verdict(rng, bool(kinds))
            reviewed = ended + timedelta(minutes=rng.randint(10, 300))
            writer.add(
                "annotation",
                {
                    "id": writer.next_id("annotation"),
                    "run_id": run_id,
                    "person_id": person_id,
                    "verdict": verdict,
                    "note": None,
                    "link": None,
                    "share_as_win": verdict == "useful" and rng.random() < 0.2,
                    "created_at": reviewed,
                    "updated_at": reviewed,
                },
            )
            summary.annotations += 1


def _outcome_kinds(rng: random.Random, productivity: float) -> list[str]:
    kinds: list[str] = []
    if rng.random() < productivity:
        kinds.append(rng.choice(["pr_opened", "commit", "tests_passed"]))
        if rng.random() < 0.6:
            kinds.append("pr_merged")
    if rng.random() < 0.08:
        kinds.append(rng.choice(["deploy", "ticket_closed", "doc", "other"]))
    return kinds


def _verdict(rng: random.Random, produced: bool) -> str:
    weights = (0.7, 0.2, 0.1) if produced else (0.15, 0.35, 0.5)
    return rng.choices(["useful", "partly", "not_useful"], weights=weights)[0]
