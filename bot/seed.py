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
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, text

from bot.config import DEFAULT_OUTCOME_WEIGHTS
from bot.pricing import price
from storage.bulk_load import advance_sequences, bulk_load, bulk_transaction, copy_rows
from storage.models import Membership, Person, PersonLink, Source, Team, table_of
from storage.types import utc_micros

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
UNPRICED_AGENT = "meshclaw"
PRICED_AGENTS = [agent for agent in AGENTS if agent != UNPRICED_AGENT]
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


def _rates(model: str) -> tuple[int, int, int, int] | None:
    """Integer nano-dollars per token (input, output, cache read, cache write), or None when unknown."""
    parts = [price(model, 1000, 0), price(model, 0, 1000), price(model, 0, 0, 1000, 0), price(model, 0, 0, 0, 1000)]
    if any(p is None for p in parts):
        return None
    return tuple(int(p * 1_000_000) for p in parts if p is not None)  # type: ignore[return-value]


@dataclass
class _Persona:
    productivity: float
    diligence: float
    tokenmaxxer: bool
    agents: list[str]


RUN_COLUMNS = (
    "id",
    "source_id",
    "external_id",
    "person_id",
    "agent",
    "started_at",
    "ended_at",
    "title",
    "repo",
    "status",
    "project",
    "branch",
)
USAGE_COLUMNS = (
    "id", "source_id", "person_id", "run_id", "occurred_at", "agent", "model", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "cost_usd", "dedupe_key", "cost_source",
)  # fmt: skip
OUTCOME_COLUMNS = (
    "id", "source_id", "external_id", "run_id", "person_id", "kind", "weight", "url", "occurred_at", "evidence",
    "counted", "agent_assisted",
)  # fmt: skip
ANNOTATION_COLUMNS = (
    "id", "run_id", "person_id", "verdict", "note", "link", "share_as_win", "created_at", "updated_at",
)  # fmt: skip
PULL_REQUEST_COLUMNS = (
    "id", "source_id", "repo", "number", "url", "author_login", "merged_by_login", "head_branch", "opened_at",
    "merged_at", "closed_at", "additions", "deletions",
)  # fmt: skip
LINK_COLUMNS = ("id", "outcome_id", "run_id", "evidence", "detail", "created_at")
TABLES = {
    "agent_run": RUN_COLUMNS,
    "usage_record": USAGE_COLUMNS,
    "outcome": OUTCOME_COLUMNS,
    "annotation": ANNOTATION_COLUMNS,
    "pull_request": PULL_REQUEST_COLUMNS,
    "outcome_link": LINK_COLUMNS,
}
SELF_REPORTED_KINDS = ("pr_opened", "commit")  # as Claude Code's own counters report them: shown, not counted
MILLI_WEIGHTS = {kind: int(weight * 1000) for kind, weight in DEFAULT_OUTCOME_WEIGHTS.items()}


class _Writer:
    """Buffers storage-value tuples per table and writes them in bulk, parents before children."""

    def __init__(self, connection: Connection, chunk: int = 50_000) -> None:
        self.connection = connection
        self.chunk = chunk
        self.buffers: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLES}
        self.next_ids: dict[str, int] = {}
        self.github_id = 0
        for name in TABLES:
            current = connection.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {name}")).scalar_one()
            self.next_ids[name] = int(current) + 1

    def maybe_flush(self) -> None:
        if sum(map(len, self.buffers.values())) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        for name, columns in TABLES.items():
            rows = self.buffers[name]
            if rows:
                copy_rows(self.connection, name, columns, rows)
                rows.clear()


def seed_organisation(
    engine: Engine,
    people: int,
    teams: int,
    weeks: int,
    seed: int = 1,
    end: date | None = None,
    progress: Callable[[int], None] | None = None,
    requests_per_call: int = 1,
) -> SeedSummary:
    """Write a synthetic organisation ending on `end` (default today, UTC). One transaction.

    `requests_per_call` gives usage its per-request shape: each of a run's calls is written as that many
    records (its tokens split between them, the first taking the remainder), as request-level sources
    (vendor APIs, Claude Code logs) report it, instead of one session-aggregate record. 1 (the default)
    writes the same rows as ever for a seed.
    """
    if people < 1 or teams < 1 or weeks < 1 or requests_per_call < 1:
        raise SeedError("--people, --teams, --weeks and --requests must each be at least 1.")
    if teams > people:
        raise SeedError(f"{teams} teams need at least {teams} people; got {people}.")
    end = end or datetime.now(UTC).date()
    rng = random.Random(seed)
    summary = SeedSummary(people=people, teams=teams, first_email=person_email(0))
    models = {agent: [(model, _rates(model)) for model in names] for agent, names in AGENTS.items()}
    with bulk_transaction(engine) as connection:
        existing = connection.execute(select(func.count()).select_from(table_of(Person))).scalar_one()
        if existing:
            raise SeedError(f"The database already has {existing} people; seed into an empty database.")
        source_id = connection.execute(
            insert(table_of(Source))
            .values(name=SEED_SOURCE, kind="seed", created_at=datetime.now(UTC))
            .returning(table_of(Source).c.id)
        ).scalar_one()
        github_id = connection.execute(  # merged pull requests come from GitHub, linked to the runs behind them
            insert(table_of(Source))
            .values(name=f"{SEED_SOURCE}-github", kind="github", created_at=datetime.now(UTC))
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
        connection.execute(
            insert(table_of(PersonLink)),
            [
                {"kind": "github", "value": github_login(i + 1), "person_id": i + 1, "created_at": now}
                for i in range(people)
            ],
        )
        personas = _personas(rng, people)
        summary.tokenmaxxers = [person_email(i) for i, p in enumerate(personas) if p.tokenmaxxer]
        writer = _Writer(connection)
        writer.github_id = github_id
        first_ids = dict(writer.next_ids)
        first_day = end - timedelta(days=7 * weeks - 1)
        as_micros = connection.dialect.name == "sqlite"
        with bulk_load(connection, list(TABLES)):  # indexes and foreign keys built once, after the rows
            for week in range(weeks):
                clock = _clock(first_day + timedelta(days=7 * week), as_micros)
                for index, persona in enumerate(personas):
                    _person_week(writer, rng, source_id, index + 1, persona, clock, models, requests_per_call)
                    writer.maybe_flush()
                    if progress:
                        progress(1)
            writer.flush()
        written = {name: writer.next_ids[name] - first_ids[name] for name in TABLES}
        summary.runs, summary.usage_records = written["agent_run"], written["usage_record"]
        summary.outcomes, summary.annotations = written["outcome"], written["annotation"]
        advance_sequences(connection, ["team", "person", "membership", *TABLES])
    return summary


def _personas(rng: random.Random, people: int) -> list[_Persona]:
    personas = []
    for i in range(people):
        # Priced as real sources are: most usage comes from tools whose models genai-prices knows; the
        # in-house agent (cost unknown) is a minority tool, used beside a priced one and for 1 run in 8.
        agents = rng.sample(PRICED_AGENTS, k=rng.randint(1, 3))
        if rng.random() < 0.3:
            agents += [UNPRICED_AGENT] + [agents[0]] * 6  # one pick in 8 of its runs, at most
        personas.append(
            _Persona(
                productivity=rng.uniform(0.35, 0.9),
                diligence=rng.uniform(0.3, 0.95),
                tokenmaxxer=rng.random() < 0.08 or (people >= 10 and i == people // 2),
                agents=agents,
            )
        )
    return personas


# Every seed time is a whole half minute after the midnight that starts its week: runs start at 07:00 plus
# whole minutes, their calls 30 s apart, and the rest follows in whole minutes. So the hot loop counts in
# half minutes and looks the storage value up in a table of the week's (`_clock`) instead of adding a
# timedelta per value and converting each datetime for SQLite: some 3 s per million records.
HALF_MINUTES_A_DAY = 2 * 24 * 60
CLOCK_DAYS = 8  # the latest time a week's runs reach: day 6, 07:00 + 719 + 95 + 599 minutes, before day 8
DAY_START = 2 * 7 * 60  # 07:00
HALF_MINUTE_MICROS = 30_000_000


def _clock(week_start: date, as_micros: bool) -> list[Any]:
    """Each half minute of the `CLOCK_DAYS` days from `week_start`'s midnight, as storage values.

    For SQLite the integer microseconds `copy_rows` would make of the naive datetime (`utc_micros`); for
    PostgreSQL the datetimes themselves, so COPY gets exactly what it got before.
    """
    midnight = datetime.combine(week_start, time())
    if as_micros:
        start = utc_micros(midnight)
        return [start + HALF_MINUTE_MICROS * k for k in range(CLOCK_DAYS * HALF_MINUTES_A_DAY)]
    return [midnight + timedelta(seconds=30 * k) for k in range(CLOCK_DAYS * HALF_MINUTES_A_DAY)]


def _person_week(
    writer: _Writer,
    rng: random.Random,
    source_id: int,
    person_id: int,
    persona: _Persona,
    clock: list[Any],
    models_of: dict[str, list[tuple[str, tuple[int, int, int, int] | None]]],
    requests: int = 1,
) -> None:
    """One person's week of runs, usage, outcomes and verdicts: the hot loop, so cheap random calls, locals
    instead of attribute look-ups and times as half-minute indexes into `clock`.

    The random numbers are drawn in the same order as ever: the same seed gives the same rows.
    """
    chance = rng.random
    buffers = writer.buffers
    add_run = buffers["agent_run"].append
    add_usage = buffers["usage_record"].append
    add_outcome = buffers["outcome"].append
    add_annotation = buffers["annotation"].append
    add_pull_request = buffers["pull_request"].append
    add_link = buffers["outcome_link"].append
    github_id = writer.github_id
    login = github_login(person_id)
    ids = writer.next_ids
    run_id = ids["agent_run"] - 1
    record_id = ids["usage_record"] - 1
    outcome_id = ids["outcome"]
    annotation_id = ids["annotation"]
    agents = persona.agents
    tokenmaxxer = persona.tokenmaxxer
    runs = 12 + int(chance() * 13) if tokenmaxxer else 2 + int(chance() * 8)
    scale = 3 if tokenmaxxer else 1
    extra_steps = 3 if tokenmaxxer else 0
    review_chance = 0.05 if tokenmaxxer else persona.diligence
    for _ in range(runs):
        agent = agents[int(chance() * len(agents))]
        models = models_of[agent]
        start = DAY_START + HALF_MINUTES_A_DAY * int(chance() * 7) + 2 * int(chance() * 720)
        end = start + 2 * (3 + int(chance() * 93))
        started = clock[start]
        ended = clock[end]
        run_id += 1
        title = f"{VERBS[int(chance() * len(VERBS))]} {THINGS[int(chance() * len(THINGS))]}"
        repo = REPOS[int(chance() * len(REPOS))]
        branch = f"tw/run-{run_id}"
        add_run(
            (run_id, source_id, f"seed-run-{run_id}", person_id, agent, started, ended, title, repo, "completed",
             repo.rsplit("/", 1)[-1], branch)
        )  # fmt: skip
        for step in range(1 + int(chance() * 6) + extra_steps):
            model, rate = models[int(chance() * len(models))]
            tin = (2_000 + int(chance() * 38_000)) * scale
            tout = (200 + int(chance() * 4_800)) * scale
            tcr = int(chance() * 150_000) * scale
            tcw = int(chance() * 15_000) * scale
            unlinked = agent == "openai-api" and chance() < 0.2
            if requests == 1:
                cost = None if rate is None else tin * rate[0] + tout * rate[1] + tcr * rate[2] + tcw * rate[3]
                record_id += 1
                add_usage(
                    (
                        record_id, source_id, person_id, None if unlinked else run_id, clock[start + step], agent,
                        model, tin, tout, tcr, tcw, cost, f"seed-usage-{record_id}", None if cost is None else "priced",
                    )
                )  # fmt: skip
                continue
            # Per-request shape: the call's tokens split over `requests` records, a few seconds apart.
            run = None if unlinked else run_id
            qin, qout, qcr, qcw = tin // requests, tout // requests, tcr // requests, tcw // requests
            for k in range(requests):
                rin, rout, rcr, rcw = (
                    (qin, qout, qcr, qcw) if k else
                    (tin - qin * (requests - 1), tout - qout * (requests - 1), tcr - qcr * (requests - 1),
                     tcw - qcw * (requests - 1))
                )  # fmt: skip
                cost = None if rate is None else rin * rate[0] + rout * rate[1] + rcr * rate[2] + rcw * rate[3]
                record_id += 1
                add_usage(
                    (
                        record_id, source_id, person_id, run, clock[start + step + (k >> 3)], agent, model,
                        rin, rout, rcr, rcw, cost, f"seed-usage-{record_id}", None if cost is None else "priced",
                    )
                )  # fmt: skip
        kinds = [] if tokenmaxxer else _outcome_kinds(rng, persona.productivity)
        for kind in kinds:
            url = f"https://github.com/{repo}/pull/{100 + int(chance() * 9900)}" if kind.startswith("pr_") else None
            when = clock[end + 2 * (5 + int(chance() * 595))]
            if kind == "pr_merged":  # from GitHub: merged by a colleague, linked to the run by its branch
                number = outcome_id
                url = f"https://github.com/{repo}/pull/{number}"
                add_outcome(
                    (outcome_id, github_id, f"github:{repo}#{number}:merged", None, person_id, kind,
                     MILLI_WEIGHTS[kind], url, when, True, True, True),
                )  # fmt: skip
                add_pull_request(
                    (outcome_id, github_id, repo, number, url, login, "reviewer", branch, ended, when, when,
                     40 + number % 400, number % 90)
                )  # fmt: skip
                add_link(
                    (outcome_id, outcome_id, run_id, "branch", f"the author's run on {repo} branch {branch}", when)
                )
            else:
                evidence = kind not in SELF_REPORTED_KINDS
                add_outcome(
                    (outcome_id, source_id, f"seed-outcome-{outcome_id}", run_id if evidence else None, person_id,
                     kind, MILLI_WEIGHTS[kind], url, when, evidence, evidence, evidence),
                )  # fmt: skip
            outcome_id += 1
        if chance() < review_chance:
            verdict = _verdict(rng, bool(kinds))
            reviewed = clock[end + 2 * (10 + int(chance() * 290))]
            win = verdict == "useful" and chance() < 0.2
            add_annotation((annotation_id, run_id, person_id, verdict, None, None, win, reviewed, reviewed))
            annotation_id += 1
    ids["agent_run"] = run_id + 1
    ids["usage_record"] = record_id + 1
    ids["outcome"] = outcome_id
    ids["annotation"] = annotation_id


def github_login(person_id: int) -> str:
    """A seeded person's GitHub login (linked to them, as `tokenwise import org`'s github column would)."""
    return person_email(person_id - 1).split("@")[0].replace(".", "-")


def _outcome_kinds(rng: random.Random, productivity: float) -> list[str]:
    kinds: list[str] = []
    if rng.random() < productivity:
        kinds.append(("pr_opened", "commit", "tests_passed")[int(rng.random() * 3)])
        if rng.random() < 0.6:
            kinds.append("pr_merged")
    if rng.random() < 0.08:
        kinds.append(rng.choice(["deploy", "ticket_closed", "doc", "other"]))
    return kinds


def _verdict(rng: random.Random, produced: bool) -> str:
    useful, partly = (0.7, 0.9) if produced else (0.15, 0.5)
    roll = rng.random()
    return "useful" if roll < useful else "partly" if roll < partly else "not_useful"
