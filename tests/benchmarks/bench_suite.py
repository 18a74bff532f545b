"""The benchmark suite behind docs/performance.md. Not a test: `make bench` runs it, `make test` does not.

    .venv/bin/python -m tests.benchmarks.bench_suite                      # everything, both databases
    .venv/bin/python -m tests.benchmarks.bench_suite --db sqlite --only slash,ingest
    BENCH_SCALE=0.01 .venv/bin/python -m tests.benchmarks.bench_suite     # a 1% smoke run

BENCH_SCALE scales the organisation (1 = 5 000 people in 500 teams with ~5 M usage records; the slash
commands are also measured at 1/25 and 1/5 of that) and the Claude Code logs (1 = 1 GB). Every figure is
measured next to its database floor, in the same run: the same rows written by a bare COPY/executemany, the
same sums read by a bare GROUP BY. Results are printed and saved as JSON under BENCH_DIR (default
/tmp/tokenwise-bench). PostgreSQL databases are created as tokenwise_bench_* and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
from sqlalchemy import bindparam, text
from sqlalchemy.engine import make_url

from bot.app import create_app
from bot.config import Settings
from bot.devtools.console import LocalServer
from bot.devtools.slack_requests import SlackRequests
from bot.devtools.slack_standin import SlackStandIn
from bot.periods import complete_weeks, parse_period
from bot.reports import build_report
from bot.seed import TIMEZONES, USAGE_COLUMNS, person_email, seed_organisation
from bot.services import Services
from bot.sources import claude_code
from handlers.slack.people import SlackPeople
from storage.bulk_load import bulk_transaction, copy_rows
from storage.db import make_engine, normalize_url, session_scope, upgrade
from storage.metrics import Scope
from storage.sources import create_source
from storage.types import UTCDateTime
from tests.benchmarks.bench_github import DELIVERIES as GITHUB_DELIVERIES
from tests.benchmarks.bench_github import github_section
from tests.support.claude_logs import CCUSAGE_HOME, CCUSAGE_VERSION, compact, find_ccusage
from tests.support.claude_logs import write_claude_logs as write_dense_truth
from tests.support.ingest_fixtures import serve_process

FULL_PEOPLE = 5_000
PEOPLE_PER_TEAM = 10
WEEKS = 37  # ~27 usage records per person-week in the seed: 5 000 people x 37 weeks ~ 5 M records
FULL_LOG_BYTES = 1 << 30
END = date(2026, 11, 25)  # a Wednesday: "this week" has data and a previous week
SECRET = "bench-signing-secret-0123456789"
BOT_TOKEN = "xoxb-bench"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def bench_dir() -> Path:
    path = Path(os.environ.get("BENCH_DIR", "/tmp/tokenwise-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def scale() -> float:
    return float(os.environ.get("BENCH_SCALE", "1"))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


# -- databases ------------------------------------------------------------------------------------
@contextmanager
def scratch_database(kind: str, label: str) -> Iterator[str]:
    """A new, migrated, empty database, removed afterwards."""
    if kind == "sqlite":
        path = bench_dir() / f"bench-{label}.db"
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        url = f"sqlite:///{path}"
        upgrade_url(url)
        try:
            yield url
        finally:
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink()
        return
    admin_url = normalize_url(
        os.environ.get("TOKENWISE_BENCH_POSTGRES_URL")
        or os.environ.get("TOKENWISE_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES_URL
    )
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"tokenwise_bench_{label}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_url(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def upgrade_url(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()


def org_shape(people: int) -> tuple[int, int]:
    people = max(PEOPLE_PER_TEAM * 2, people)
    return people, people // PEOPLE_PER_TEAM


# -- seed -----------------------------------------------------------------------------------------
def bench_seed(url: str, people: int, weeks: int = WEEKS) -> dict[str, Any]:
    """`tokenwise seed`'s work, timed; and the floor: a bare COPY of as many usage-shaped rows."""
    people, teams = org_shape(people)
    engine = make_engine(url)
    started = time.perf_counter()
    summary = seed_organisation(engine, people, teams, weeks, seed=1, end=END)
    seconds = time.perf_counter() - started
    floor = copy_floor(engine, summary.usage_records)
    engine.dispose()
    return {
        "people": people,
        "teams": teams,
        "weeks": weeks,
        "usage_records": summary.usage_records,
        "rows": summary.usage_records + summary.runs + summary.outcomes + summary.annotations,
        "seconds": seconds,
        "floor_seconds": floor,
    }


def copy_floor(engine: Any, count: int) -> float:
    """Seconds to COPY (PostgreSQL) / executemany (SQLite) `count` usage-shaped rows into a bare table.

    The rows come from a cheap generator (about a microsecond each) and the table has no index, key or
    constraint: what the database needs at least to take in that many rows. Rolled back afterwards.
    """
    base = datetime(2026, 1, 1)
    rows = (
        (i, 1, 1 + i % 5000, i // 4 + 1, base + timedelta(seconds=i), "claude-code", "claude-sonnet-4-5",
         12_000, 2_000, 70_000, 7_000, 81_000_000, f"floor-{i}", "priced")
        for i in range(1, count + 1)
    )  # fmt: skip
    with engine.connect() as connection:
        connection.exec_driver_sql("CREATE TABLE bench_floor AS SELECT * FROM usage_record WHERE 1 = 0")
        started = time.perf_counter()
        copy_rows(connection, "bench_floor", USAGE_COLUMNS, rows)
        seconds = time.perf_counter() - started
        connection.rollback()
    return seconds


# -- slash commands -------------------------------------------------------------------------------
def bench_slash(url: str, people: int, samples: int = 40, seed: int = 7) -> dict[str, Any]:
    """/tokenwise me and /tokenwise team from signed request to the answer posted to response_url.

    Each sampled person runs `me` (their Slack profile not yet cached, as on a first command) and then
    `team` (their own team). Also timed, for the same people: the report alone (build_report, in process)
    and the floor, a bare GROUP BY of the same usage rows.
    """
    people, _teams = org_shape(people)
    rng = random.Random(seed)
    picks = rng.sample(range(people), min(samples, people))
    engine = make_engine(url, pool_size=8)
    timings: dict[str, list[float]] = {"me": [], "team": []}
    problems: list[str] = []
    with SlackStandIn(token=BOT_TOKEN) as slack:
        for index in picks:
            slack.add_user(f"U{1000000 + index}", person_email(index), tz=TIMEZONES[index % len(TIMEZONES)])
        settings = Settings(
            database_url=url,
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SECRET,
            slack_api_url=slack.url,
            slack_client_id=None,
            slack_client_secret=None,
            public_url="https://tokenwise.example.com",
        )
        services = Services(settings=settings, engine=engine, people=SlackPeople(3600))
        signer = SlackRequests(SECRET, team_id=slack.team_id)
        with LocalServer(create_app(services)) as server, httpx.Client(base_url=server.url, timeout=60) as http:
            for text_ in ("help",):  # warm up: imports, first connection
                http.post("/slack/events", **_signed(signer, text_, "U1000000", slack.response_url()))
            for text_ in ("me", "team"):
                for index in picks:
                    answer, seconds = _timed_command(http, slack, signer, text_, f"U{1000000 + index}")
                    timings[text_].append(seconds)
                    if "Sorry" in answer:
                        problems.append(f"{text_} for person {index + 1}: {answer[:120]}")
    report_times, floor_times = _report_and_floor(engine, [i + 1 for i in picks])
    engine.dispose()
    result: dict[str, Any] = {"people": people, "samples": len(picks), "problems": problems}
    for name in ("me", "team"):
        result[name] = _summary(timings[name])
        result[f"{name}_report"] = _summary(report_times[name])
        result[f"{name}_floor"] = _summary(floor_times[name])
    return result


def _signed(signer: SlackRequests, text_: str, user_id: str, response_url: str) -> dict[str, Any]:
    request = signer.slash_command(text_, user_id, response_url)
    return {"content": request.body, "headers": request.headers}


def _timed_command(
    http: httpx.Client, slack: SlackStandIn, signer: SlackRequests, text_: str, user_id: str
) -> tuple[str, float]:
    response_url = slack.response_url()
    path = "/" + response_url.split("/", 3)[3]
    started = time.perf_counter()
    ack = http.post("/slack/events", **_signed(signer, text_, user_id, response_url))
    if ack.status_code != 200:
        raise RuntimeError(f"/tokenwise {text_} was answered {ack.status_code}: {ack.text[:200]}")

    def answered() -> bool:
        return any(call.path == path for call in slack.calls("response_url")[-8:])

    slack.wait_until(answered, timeout=60)
    seconds = time.perf_counter() - started
    (call,) = [c for c in slack.calls("response_url") if c.path == path]
    return str(call.args.get("text", "")), seconds


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(values) * 1000,
        "p95_ms": percentile(values, 0.95) * 1000,
        "max_ms": max(values) * 1000,
    }


ME_FLOOR = """
SELECT count(*), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd)
FROM usage_record WHERE person_id = :who AND occurred_at >= :start AND occurred_at < :end
"""
TEAM_FLOOR = """
SELECT u.person_id, count(*), sum(u.input_tokens), sum(u.output_tokens), sum(u.cost_usd)
FROM usage_record u JOIN membership m ON m.person_id = u.person_id
WHERE m.team_id = :who AND u.occurred_at >= :start AND u.occurred_at < :end GROUP BY u.person_id
"""


def _report_and_floor(engine: Any, person_ids: list[int]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """The report alone (both windows, as the command builds it) and the bare GROUP BY, per person."""
    reports: dict[str, list[float]] = {"me": [], "team": []}
    floors: dict[str, list[float]] = {"me": [], "team": []}
    times = [bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime())]
    queries = {"me": text(ME_FLOOR).bindparams(*times), "team": text(TEAM_FLOOR).bindparams(*times)}
    with session_scope(engine) as session:
        for person_id in person_ids:
            tz = TIMEZONES[(person_id - 1) % len(TIMEZONES)]
            period = parse_period("", END, tz)
            team_id = session.execute(
                text("SELECT team_id FROM membership WHERE person_id = :p ORDER BY team_id"), {"p": person_id}
            ).scalar_one()
            team_week = complete_weeks(END, 1, "UTC")  # a team's window: its last whole week, in its zone
            for name, scope, who, window in (
                ("me", Scope.person(person_id), person_id, period),
                ("team", Scope.team(team_id), team_id, team_week),
            ):
                started = time.perf_counter()
                build_report(session, scope, window, 5)
                reports[name].append(time.perf_counter() - started)
                started = time.perf_counter()
                session.execute(queries[name], {"who": who, "start": window.start, "end": window.end}).all()
                floors[name].append(time.perf_counter() - started)
    return reports, floors


# -- ingest ---------------------------------------------------------------------------------------
def bench_ingest(
    url: str, people: int, batches: int = 100, size: int = 1_000, senders: tuple[int, ...] = (1, 2, 4), seed: int = 11
) -> dict[str, Any]:
    """POST /v1/usage in batches of `size` to `tokenwise serve`, run as its own process as in production,
    with its default settings (request budget included) and a real token: `batches` batches for each
    number of concurrent `senders`. The floor is as many rows of the same kind (people already resolved),
    written by a bare COPY/executemany, one transaction per batch: new rows, not the ones just sent, whose
    index entries would land next to the ones just written, on pages still in the cache."""
    people, _teams = org_shape(people)
    rng = random.Random(seed)
    engine = make_engine(url, pool_size=8)
    with session_scope(engine) as session:
        token = create_source(session, f"bench-{uuid.uuid4().hex[:8]}", "api").token
    base = datetime.combine(END, datetime.min.time(), tzinfo=UTC)
    run_tag = uuid.uuid4().hex[:8]
    bodies: list[bytes] = []
    for b in range(batches * (len(senders) + 1)):  # the last `batches` are the floor's
        records = []
        for j in range(size):
            records.append(
                {
                    "email": person_email(rng.randrange(people)),
                    "dedupe_key": f"bench-{run_tag}-{b}-{j}",
                    "occurred_at": (base - timedelta(seconds=rng.randrange(7 * 86400))).isoformat(),
                    "agent": "claude-code",
                    "model": "claude-sonnet-4-5",
                    "input_tokens": rng.randrange(2_000, 40_000),
                    "output_tokens": rng.randrange(200, 5_000),
                    "cache_read_tokens": rng.randrange(150_000),
                    "cache_write_tokens": rng.randrange(15_000),
                    "cost_usd": f"{rng.randrange(1, 900_000) / 1_000_000:.6f}",
                }
            )
        bodies.append(json.dumps({"records": records}).encode())
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "TOKENWISE_"))}
    environment["DATABASE_URL"] = url
    runs: dict[str, dict[str, float]] = {}
    with serve_process(environment) as server_url:
        for index, count in enumerate(senders):
            runs[str(count)] = _send_batches(
                server_url, bodies[index * batches : (index + 1) * batches], headers, count, size
            )
    floor = _ingest_floor(engine, bodies[-batches:], size)
    engine.dispose()
    return {
        "records": batches * size,
        "batch": size,
        "senders": runs,
        "records_per_s": max(run["records_per_s"] for run in runs.values()),
        "floor_seconds": floor,
        "floor_records_per_s": batches * size / floor,
    }


def _send_batches(
    base_url: str, bodies: list[bytes], headers: dict[str, str], senders: int, size: int
) -> dict[str, float]:
    """POST `bodies` from `senders` concurrent clients (threads); records/s over the whole run."""
    latencies: list[float] = []
    failures: list[str] = []

    def send(mine: list[bytes]) -> None:
        with httpx.Client(base_url=base_url, timeout=120) as http:
            for body in mine:
                sent = time.perf_counter()
                response = http.post("/v1/usage", content=body, headers=headers)
                latencies.append(time.perf_counter() - sent)
                if response.status_code != 200 or response.json()["accepted"] != size:
                    failures.append(f"{response.status_code}: {response.text[:300]}")

    threads = [threading.Thread(target=send, args=(bodies[i::senders],)) for i in range(senders)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"ingest failed: {failures[0]}")
    return {
        "records": len(bodies) * size,
        "seconds": seconds,
        "records_per_s": len(bodies) * size / seconds,
        "batch_p95_ms": percentile(latencies, 0.95) * 1000,
    }


def _ingest_floor(engine: Any, bodies: list[bytes], size: int) -> float:
    with engine.connect() as connection:
        ids = dict(connection.execute(text("SELECT email, id FROM person")).all())
        source_id = connection.execute(text("SELECT max(id) FROM source")).scalar_one()
    batches = []
    for body in bodies:
        rows = []
        for item in json.loads(body)["records"]:
            occurred = datetime.fromisoformat(item["occurred_at"]).astimezone(UTC).replace(tzinfo=None)
            cost = int(Decimal(item["cost_usd"]) * 1_000_000_000)
            rows.append(
                (source_id, ids[item["email"]], None, occurred, item["agent"], item["model"], item["input_tokens"],
                 item["output_tokens"], item["cache_read_tokens"], item["cache_write_tokens"], cost,
                 "floor-" + item["dedupe_key"], "reported")
            )  # fmt: skip
        batches.append(rows)
    columns = USAGE_COLUMNS[1:]
    started = time.perf_counter()
    for rows in batches:
        with engine.begin() as connection:
            copy_rows(connection, "usage_record", columns, rows)
    return time.perf_counter() - started


# -- weekly digests ------------------------------------------------------------------------------
TEAM_FLOOR_ALL = """
SELECT m.team_id, count(*), sum(u.input_tokens), sum(u.output_tokens), sum(u.cost_usd)
FROM usage_record u JOIN membership m ON m.person_id = u.person_id
WHERE u.occurred_at >= :start AND u.occurred_at < :end GROUP BY m.team_id
"""


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_digest(url: str, teams: int | None = None, charts: bool = True, now: date = END) -> dict[str, Any]:
    """Every team's weekly digest for last week, as the scheduler builds it (build_digest: the report,
    four trend weeks, merged PRs, unreviewed runs, shared wins), one team after another, and its chart.
    Memory is sampled after each team. The floor: one bare GROUP BY giving every team's week totals. Also
    timed: one organisation-wide digest (a subscription with no team), which reads the whole week's rows."""
    from bot.digest import build_digest
    from bot.digest_chart import render_chart

    engine = make_engine(url)
    with engine.connect() as connection:
        team_ids = [row[0] for row in connection.execute(text("SELECT id FROM team ORDER BY id"))]
    team_ids = team_ids[:teams] if teams else team_ids
    period = parse_period("last week", now, "UTC")
    rss = [_rss_mb()]
    shown = 0
    build_seconds = chart_seconds = 0.0
    for team_id in team_ids:
        with session_scope(engine) as session:
            started = time.perf_counter()
            digest = build_digest(session, Scope.team(team_id, f"team {team_id}"), period, 5)
            build_seconds += time.perf_counter() - started
        if charts:
            started = time.perf_counter()
            render_chart(digest)
            chart_seconds += time.perf_counter() - started
        shown += digest.shown
        rss.append(_rss_mb())
    with session_scope(engine) as session:  # an organisation-wide subscription reads every team's rows
        started = time.perf_counter()
        build_digest(session, Scope.org(), period, 5)
        org_seconds = time.perf_counter() - started
    times = [bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime())]
    with engine.connect() as connection:
        started = time.perf_counter()
        connection.execute(text(TEAM_FLOOR_ALL).bindparams(*times), {"start": period.start, "end": period.end}).all()
        floor = time.perf_counter() - started
    engine.dispose()
    tenth = max(1, len(rss) // 10)
    return {
        "teams": len(team_ids),
        "shown": shown,
        "build_seconds": build_seconds,
        "chart_seconds": chart_seconds,
        "seconds": build_seconds + chart_seconds,
        "rss_mb_after_first_tenth": rss[tenth],
        "rss_mb_at_end": rss[-1],
        "rss_mb_peak": max(rss),
        "floor_seconds": floor,
        "org_seconds": org_seconds,
    }


# -- Claude Code logs -----------------------------------------------------------------------------
# The record-dense set: logs as Claude Code writes them (tests/support/claude_logs.py), ~209 MB holding
# ~130 000 assistant lines at scale 1, as the issue measured; the 1 GB set has far fewer usage lines a MB.
DENSE_SESSIONS = 7_800
DENSE_TEXT_BYTES = 700
Tokens = tuple[int, int, int, int]


class CcusageUnavailable(RuntimeError):
    """ccusage could not be installed; the message says why, in one line."""


def write_claude_logs(root: Path, total_bytes: int, seed: int = 5) -> dict[str, Any]:
    """Claude Code-shaped session logs under root/projects, about `total_bytes` in all, and a hand count.

    Each session alternates user and assistant lines (text padded to real sizes, never stored by the
    importer); one assistant line in ten is streamed again with the same message and request id, which
    ccusage and the importer must count once. Compact JSON, as Claude Code writes it (ccusage 20 reads
    nothing else).
    """
    rng = random.Random(seed)
    projects = root / "projects"
    if projects.exists():
        shutil.rmtree(projects)
    written = 0
    counts = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0, "entries": 0}
    per_day: dict[str, Tokens] = {}
    start = datetime(2026, 9, 1, 8, tzinfo=UTC)
    session_number = 0
    padding = "x" * 4000
    while written < total_bytes:
        session_number += 1
        session_id = str(uuid.UUID(int=rng.getrandbits(128)))
        folder = projects / f"-home-dev-repo{session_number % 20}"
        folder.mkdir(parents=True, exist_ok=True)
        moment = start + timedelta(minutes=session_number * 37 % (80 * 24 * 60))
        lines = []
        for turn in range(rng.randrange(20, 120)):
            moment += timedelta(seconds=rng.randrange(5, 90))
            stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            user = {"type": "user", "sessionId": session_id, "timestamp": stamp, "cwd": "/home/dev/repo",
                    "message": {"role": "user", "content": padding[: rng.randrange(100, 2000)]}}  # fmt: skip
            lines.append(compact(user))
            usage = {
                "input_tokens": rng.randrange(1, 4_000),
                "output_tokens": rng.randrange(1, 3_000),
                "cache_read_input_tokens": rng.randrange(0, 150_000),
                "cache_creation_input_tokens": rng.randrange(0, 15_000),
            }
            line = {
                "type": "assistant", "sessionId": session_id, "timestamp": stamp,
                "requestId": f"req_{session_number}_{turn}", "isSidechain": False, "version": "2.0.14",
                "cwd": "/home/dev/repo",
                "message": {"id": f"msg_{session_number}_{turn}", "type": "message", "role": "assistant",
                            "model": "claude-sonnet-4-5-20250929", "usage": usage,
                            "content": [{"type": "text", "text": padding[: rng.randrange(200, 3000)]}]},
            }  # fmt: skip
            text_ = compact(line)
            lines.append(text_)
            if rng.random() < 0.1:
                lines.append(text_)  # a streamed repeat
            tokens = (
                usage["input_tokens"],
                usage["output_tokens"],
                usage["cache_read_input_tokens"],
                usage["cache_creation_input_tokens"],
            )
            for name, value in zip(("input", "output", "cache_read", "cache_write"), tokens, strict=True):
                counts[name] += value
            counts["entries"] += 1
            before = per_day.get(stamp[:10], (0, 0, 0, 0))
            per_day[stamp[:10]] = (
                before[0] + tokens[0],
                before[1] + tokens[1],
                before[2] + tokens[2],
                before[3] + tokens[3],
            )
        content = "\n".join(lines) + "\n"
        (folder / f"{session_id}.jsonl").write_text(content)
        written += len(content)
    return {"bytes": written, "files": session_number, "days": len(per_day), "per_day": per_day, **counts}


def write_dense_logs(root: Path, factor: float) -> dict[str, Any]:
    """The record-dense set, scaled (1 = ~209 MB); its truth as write_claude_logs gives it."""
    if root.exists():
        shutil.rmtree(root)
    truth = write_dense_truth(root, sessions=max(12, round(DENSE_SESSIONS * factor)), text_bytes=DENSE_TEXT_BYTES)
    tokens = [sum(day[i] for day in truth.per_day.values()) for i in range(4)]
    return {
        "bytes": sum(f.stat().st_size for f in root.glob("projects/**/*.jsonl")),
        "files": truth.files,
        "days": len(truth.per_day),
        "per_day": truth.per_day,
        "entries": truth.calls,
        **dict(zip(("input", "output", "cache_read", "cache_write"), tokens, strict=True)),
    }


def _rss_wrapper(command: list[str]) -> list[str]:
    """Run `command` under a tiny Python parent that reports the peak RSS of its whole process tree and the
    CPU time (user + system) of the tree."""
    script = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]);"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN);"
        "sys.stderr.write('\\nPEAK_RSS_KB=%d CPU_SECONDS=%.3f\\n' % (u.ru_maxrss, u.ru_utime + u.ru_stime));"
        "sys.exit(r.returncode)"
    )
    return [sys.executable, "-c", script, *command]


def measured(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    seconds, peak_mb, _cpu, out = measured_with_cpu(command, env)
    return seconds, peak_mb, out


def measured_with_cpu(command: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """(wall seconds, peak memory MB, CPU seconds, stdout) of a command: CPU time moves less than wall time
    with the load of a shared machine, so both are reported. The peak memory is that of the command's whole
    process tree (`TreeMemory`); where /proc does not tell, the largest RSS of one of its processes."""
    started = time.perf_counter()
    process = subprocess.Popen(
        _rss_wrapper(command), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with TreeMemory(process.pid) as tree:
        stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {stderr[-800:]}")
    report = stderr.rsplit("PEAK_RSS_KB=", 1)[1].split()
    peak_kb, cpu = int(report[0]), float(report[1].removeprefix("CPU_SECONDS="))
    return seconds, (tree.peak_kb or peak_kb) / 1024, cpu, stdout


class TreeMemory:
    """The peak, over the life of a process tree, of the sum of its processes' proportional set sizes (PSS:
    each page shared by N processes counts 1/N in each), sampled every 50 ms from /proc: the memory a
    command takes however many processes it forks. 0 where /proc has no smaps_rollup (not Linux)."""

    def __init__(self, root: int) -> None:
        self.root, self.peak_kb = root, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeMemory:
        if Path(f"/proc/{self.root}/smaps_rollup").exists():
            self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        if self.thread.ident is not None:
            self.thread.join()

    def _sample(self) -> None:
        while not self.done.wait(0.05):
            self.peak_kb = max(self.peak_kb, sum(map(_pss_kb, _tree(self.root))))


def _tree(root: int) -> list[int]:
    found, waiting = [], [root]
    while waiting:
        pid = waiting.pop()
        found.append(pid)
        with suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with suppress(OSError):
                    waiting += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
    return found


def _pss_kb(pid: int) -> int:
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def ccusage_command(install: bool = True) -> list[str] | None:
    """`ccusage claude daily --json --offline -z UTC` from ccusage 20.0.24 as its users run it (the npm
    package's `ccusage`, which starts its native binary), installed with npm into CCUSAGE_HOME, outside the
    repository, when it is missing. None when it is missing and `install` is False; CcusageUnavailable when
    npm cannot install it."""
    found = find_ccusage()
    if found is None and install:
        _install_ccusage()
        found = find_ccusage()
        if found is None:
            raise CcusageUnavailable(f"npm installed ccusage into {CCUSAGE_HOME}, but not version {CCUSAGE_VERSION}")
    return [found, "claude", "daily", "--json", "--offline", "-z", "UTC"] if found else None


def _install_ccusage() -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise CcusageUnavailable(
            f"npm is not installed: install Node.js and npm to compare with ccusage {CCUSAGE_VERSION}"
            f" (or set TOKENWISE_CCUSAGE to a ccusage {CCUSAGE_VERSION}, or run --only without import)"
        )
    packages = [f"ccusage@{CCUSAGE_VERSION}"]
    if sys.platform == "linux" and platform.machine() == "x86_64":
        packages.append(f"@ccusage/ccusage-linux-x64@{CCUSAGE_VERSION}")  # its native binary
    CCUSAGE_HOME.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--prefix", str(CCUSAGE_HOME), "--no-audit", "--no-fund", *packages]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = ([line for line in done.stderr.splitlines() if line.strip()] or ["no output"])[-1]
        raise CcusageUnavailable(f"npm could not install ccusage {CCUSAGE_VERSION} into {CCUSAGE_HOME}: {last}")


def bench_import(
    url: str, log_bytes: int, compare: bool = True, install: bool = True, dense: bool = False
) -> dict[str, Any]:
    """`tokenwise import claude-code` on generated logs (time, peak RSS, totals per UTC day) against ccusage
    20.0.24 on the same files and against the floor. `dense`: the record-dense set, scaled like the 1 GB
    one (log_bytes / 1 GB). ccusage is left out when `compare` is False, or when it is not installed and
    `install` is False."""
    root = bench_dir() / ("claude-logs-dense" if dense else "claude-logs")
    truth = write_dense_logs(root, log_bytes / FULL_LOG_BYTES) if dense else write_claude_logs(root, log_bytes)
    env = {**os.environ, "DATABASE_URL": url}
    tokenwise = [str(Path(sys.executable).with_name("tokenwise")), "import", "claude-code", str(root), "--email"]
    load_before = os.getloadavg()[0]
    seconds, peak_mb, cpu_seconds, _out = measured_with_cpu([*tokenwise, "bench@example.com"], env)
    ours = _stored_per_day(url)
    truth_per_day = truth.pop("per_day")
    result: dict[str, Any] = {
        "set": "dense" if dense else "1gb",
        "log_bytes": truth["bytes"],
        "files": truth["files"],
        "database": "postgresql" if url.startswith("postgresql") else "sqlite",
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_rss_mb": peak_mb,
        "totals_match_hand_count": ours == truth_per_day,
        "hand_count": truth,
        "tokenwise": _totals(ours),
        "floor": bench_import_floor(root, url),
    }
    command = ccusage_command(install) if compare else None
    if command is not None:
        cc_seconds, cc_peak_mb, cc_cpu, out = measured_with_cpu(command, {**os.environ, "CLAUDE_CONFIG_DIR": str(root)})
        theirs = {
            day["date"]: (day["inputTokens"], day["outputTokens"], day["cacheReadTokens"], day["cacheCreationTokens"])
            for day in json.loads(out)["daily"]
        }
        result["ccusage"] = {
            "version": CCUSAGE_VERSION,
            "seconds": cc_seconds,
            "cpu_seconds": cc_cpu,
            "peak_rss_mb": cc_peak_mb,
        }
        result["ccusage"].update(_totals(theirs))
        result["ccusage_matches_hand_count"] = theirs == truth_per_day
        result["ratio"] = seconds / cc_seconds
        result["cpu_ratio"] = cpu_seconds / cc_cpu if cc_cpu else None
    result["load_average"] = [load_before, os.getloadavg()[0]]  # 1-minute load on the machine, before and after
    return result


def _stored_per_day(url: str) -> dict[str, Tokens]:
    engine = make_engine(url)
    per_day: dict[str, Tokens] = {}
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT u.occurred_at, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens"
                " FROM usage_record u JOIN source s ON s.id = u.source_id WHERE s.name = 'claude-code-logs'"
            ).columns(occurred_at=UTCDateTime())
        )
        for when, *tokens in rows:
            day = when.date().isoformat()
            before = per_day.get(day, (0, 0, 0, 0))
            per_day[day] = (before[0] + tokens[0], before[1] + tokens[1], before[2] + tokens[2], before[3] + tokens[3])
    engine.dispose()
    return per_day


def _totals(per_day: dict[str, Tokens]) -> dict[str, int]:
    names = ("input", "output", "cache_read", "cache_write")
    return {name: sum(day[i] for day in per_day.values()) for i, name in enumerate(names)}


FLOOR_TABLES = ("person", "source", "agent_run", "usage_record")


def bench_import_floor(root: Path, url: str) -> dict[str, Any]:
    """The least an importer in Python can do with these logs, in the benchmark's process: read every file in
    large blocks and decode every line with msgspec into the fields usage needs (the importer's own decoder,
    `claude_code._Line`, with no filter, no de-duplication, no pricing), then insert the rows the import
    wrote (its runs and usage records, read back from its database) into a fresh database with
    `storage.bulk_load.copy_rows` in one bulk transaction: a COPY on PostgreSQL, multi-row INSERTs on SQLite.
    No start-up, no look-ups, no conflict checks."""
    decode = msgspec.json.Decoder(claude_code._Line).decode
    started = time.perf_counter()
    lines = 0
    for path in sorted(root.glob("projects/**/*.jsonl")):
        with path.open("rb") as handle:
            for raw in handle.read().split(b"\n"):
                if raw:
                    lines += 1
                    with suppress(msgspec.DecodeError):
                        decode(raw)
    parse_seconds = time.perf_counter() - started
    source = make_engine(url)
    with source.connect() as connection:
        logs = "(SELECT id FROM source WHERE name = 'claude-code-logs')"
        tables = {
            table: (list(result.keys()), [tuple(row) for row in result])
            for table in FLOOR_TABLES
            for where in [f" WHERE source_id IN {logs}" if table in FLOOR_TABLES[2:] else ""]
            for result in [connection.exec_driver_sql(f"SELECT * FROM {table}{where} ORDER BY id")]
        }
    source.dispose()
    kind = "postgresql" if url.startswith("postgresql") else "sqlite"
    with scratch_database(kind, "import-floor") as floor_url:
        engine = make_engine(floor_url)
        with bulk_transaction(engine) as connection:
            for table in FLOOR_TABLES[:2]:  # who and where from: not part of the timing
                copy_rows(connection, table, *tables[table])
            started = time.perf_counter()
            for table in FLOOR_TABLES[2:]:
                copy_rows(connection, table, *tables[table])
            insert_seconds = time.perf_counter() - started
        engine.dispose()
    return {
        "lines": lines,
        "parse_seconds": parse_seconds,
        "insert_seconds": insert_seconds,
        "seconds": parse_seconds + insert_seconds,
        "runs": len(tables["agent_run"][1]),
        "usage_records": len(tables["usage_record"][1]),
    }


# -- the suite ------------------------------------------------------------------------------------
SECTIONS = ("seed", "slash", "acks", "ingest", "digest", "import", "github", "csv", "tenx")
ACK_BURST = 200
SLACK_ACK_LIMIT = 3.0


def bench_acks(url: str, commands: int = ACK_BURST) -> dict[str, Any]:
    """Slack's 3-second limit under a burst: `commands` signed slash commands sent at once to `tokenwise serve`
    as its own process, after one warm-up command; seconds from sending to each ack."""
    from tests.support import slack_load

    with SlackStandIn(token=slack_load.BOT_TOKEN) as slack, slack_load.served(url, slack) as base:
        slack_load.warm_up(base, slack)
        requests, _urls = slack_load.burst(slack, commands)
        results = slack_load.fire(base, requests)
    seconds = sorted(elapsed for _, _, elapsed in results)
    return {
        "commands": commands,
        "all_acked": all(status == 200 for status, _, _ in results),
        "p50_s": statistics.median(seconds),
        "p95_s": seconds[int(len(seconds) * 0.95) - 1],
        "slowest_s": seconds[-1],
        "limit_s": SLACK_ACK_LIMIT,
    }


def run_suite(databases: list[str], only: set[str], factor: float, samples: int = 40) -> dict[str, Any]:
    results: dict[str, Any] = {"scale": factor, "started": datetime.now(UTC).isoformat(timespec="seconds")}
    for kind in databases:
        here: dict[str, Any] = {}
        results[kind] = here
        if "acks" in only:
            with scratch_database(kind, "acks") as url:
                here["acks"] = bench_acks(url)
                _say(kind, "acks", here["acks"])
        sizes = {"1x": FULL_PEOPLE * factor / 25, "5x": FULL_PEOPLE * factor / 5, "25x": FULL_PEOPLE * factor}
        if only & {"seed", "slash", "ingest", "digest"}:
            for label, people in sizes.items():
                largest = label == "25x"
                if not largest and "slash" not in only:
                    continue
                with scratch_database(kind, label) as url:
                    seeded = bench_seed(url, round(people))
                    here.setdefault("seed", {})[label] = seeded
                    _say(kind, f"seed {label}", seeded)
                    if "slash" in only:
                        here.setdefault("slash", {})[label] = bench_slash(url, seeded["people"], samples)
                        _say(kind, f"slash {label}", here["slash"][label])
                    if largest and "ingest" in only:
                        here["ingest"] = bench_ingest(
                            url, seeded["people"], batches=max(4, round(100 * min(1, factor)))
                        )
                        _say(kind, "ingest", here["ingest"])
                    if largest and "digest" in only:
                        here["digest"] = bench_digest(url)
                        _say(kind, "digest", here["digest"])
        if "csv" in only and kind == databases[0]:
            from tests.benchmarks.bench_csv import bench_csv

            here["csv"] = bench_csv(kind, max(2.0, 1024 * factor))  # a 1 GB file at full scale, and a tenth
            _say(kind, "csv", here["csv"])
        if "github" in only:
            deliveries = max(50, round(GITHUB_DELIVERIES * min(1.0, factor)))  # 2 000 at full scale
            here["github"] = github_section(kind, scratch_database, deliveries)
            _say(kind, "github", here["github"])
        if "tenx" in only:  # ten times the data (#17): tests/benchmarks/bench_tenx.py
            from tests.benchmarks.bench_tenx import tenx_section

            here["tenx"] = tenx_section(
                kind,
                scratch_database,
                factor,
                samples,
                say=lambda db, what, value: _say(db, what, value),
                github_deliveries=max(50, round(GITHUB_DELIVERIES * min(1.0, factor))),
            )
        if "import" in only:  # on each database: the same logs, and ccusage again beside each
            for dense in (True, False):
                with scratch_database(kind, "import") as url:
                    row = bench_import(url, max(1 << 20, round(FULL_LOG_BYTES * factor)), dense=dense)
                    here.setdefault("imports", []).append(row)
                    _say(kind, f"import {row['set']}", row)
    return results


# -- the report -----------------------------------------------------------------------------------
def _maybe(value: float | None, digits: int) -> str:
    """A figure, or nothing for results files written before it was measured."""
    return "" if value is None else f"{value:.{digits}f}"


def render(results: dict[str, Any]) -> str:
    """Markdown tables of one results file, as docs/performance.md shows them."""
    out: list[str] = []
    databases = [k for k in ("sqlite", "postgresql") if k in results]
    slash = [
        (db, label, results[db]["seed"][label], row)
        for db in databases
        for label, row in results[db].get("slash", {}).items()
    ]
    if slash:
        out += [
            "| database | data | usage records | command | p50 ms | p95 ms | report alone p95 ms | floor p95 ms | p95 / floor |",  # noqa: E501
            "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for db, label, seeded, row in slash:
            for name in ("me", "team"):
                p95, floor = row[name]["p95_ms"], row[f"{name}_floor"]["p95_ms"]
                out.append(
                    f"| {db} | {label} | {seeded['usage_records']:,} | /tokenwise {name} | {row[name]['p50_ms']:.1f} |"
                    f" {p95:.1f} | {row[f'{name}_report']['p95_ms']:.1f} | {floor:.2f} | {p95 / floor:.0f}x |"
                )
        out.append("")
    acks = [(db, results[db]["acks"]) for db in databases if "acks" in results[db]]
    if acks:
        out += [
            "| database | concurrent commands | all acked | p50 s | p95 s | slowest s | Slack's limit s |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        for db, row in acks:
            out.append(
                f"| {db} | {row['commands']} | {row['all_acked']} | {row['p50_s']:.2f} | {row['p95_s']:.2f} |"
                f" {row['slowest_s']:.2f} | {row['limit_s']:.0f} |"
            )
        out.append("")
    seeds = [(db, label, row) for db in databases for label, row in results[db].get("seed", {}).items()]
    if seeds:
        out += [
            "| database | data | people / teams | usage records | all rows | seconds | s per 1 M records | floor s | ratio |",  # noqa: E501
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for db, label, row in seeds:
            per_million = row["seconds"] / row["usage_records"] * 1e6
            out.append(
                f"| {db} | {label} | {row['people']:,} / {row['teams']:,} | {row['usage_records']:,} | {row['rows']:,} |"  # noqa: E501
                f" {row['seconds']:.1f} | {per_million:.1f} | {row['floor_seconds']:.1f} |"
                f" {row['seconds'] / row['floor_seconds']:.1f}x |"
            )
        out.append("")
    ingests = [(db, results[db]["ingest"]) for db in databases if "ingest" in results[db]]
    if ingests:
        out += [
            "| database | senders | records | batch | records/s | batch p95 ms | floor records/s | floor / ours |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for db, row in ingests:
            for senders, run in row["senders"].items():
                out.append(
                    f"| {db} | {senders} | {run['records']:,} | {row['batch']:,} | {run['records_per_s']:,.0f} |"
                    f" {run['batch_p95_ms']:.0f} | {row['floor_records_per_s']:,.0f} |"
                    f" {row['floor_records_per_s'] / run['records_per_s']:.1f}x |"
                )
        out.append("")
    digests = [(db, results[db]["digest"]) for db in databases if "digest" in results[db]]
    if digests:
        out += [
            "| database | teams | shown | build s | charts s | total s | RSS MB after 1/10, end, peak | floor s |"
            " organisation digest s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        for db, row in digests:
            out.append(
                f"| {db} | {row['teams']} | {row['shown']} | {row['build_seconds']:.1f} | {row['chart_seconds']:.1f} |"
                f" {row['seconds']:.1f} | {row['rss_mb_after_first_tenth']:.0f}, {row['rss_mb_at_end']:.0f},"
                f" {row['rss_mb_peak']:.0f} | {row['floor_seconds']:.2f} | {row.get('org_seconds', float('nan')):.2f} |"
            )
        out.append("")
    csvs = [(db, results[db]["csv"]) for db in databases if "csv" in results[db]]
    if csvs:
        from tests.benchmarks.bench_csv import render as render_csv

        for db, rows in csvs:
            out += [render_csv(db, rows), ""]
    hooks = [(db, results[db]["github"]) for db in databases if "github" in results[db]]
    if hooks:
        out += [
            "| database | deliveries | pull requests | all 200 | p50 s | p95 s | slowest s | GitHub's limit s"
            " | all settled s | rows lost |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for db, row in hooks:
            out.append(
                f"| {db} | {row['deliveries']:,} | {row['pull_requests']:,} |"
                f" {row['statuses'] == {'200': row['deliveries']}} |"
                f" {row['p50_s']:.2f} | {row['p95_s']:.2f} | {row['slowest_s']:.2f} | {row['limit_s']:.0f} |"
                f" {row.get('settled_s', float('nan')):.2f} | {row['lost'] or 'none'} |"
            )
        out.append("")
    from tests.benchmarks.bench_tenx import render as render_tenx

    tenx = render_tenx(results)
    if tenx:
        out += [tenx, ""]
    imports = [(db, row) for db in databases for row in results[db].get("imports", [])]
    for db, row in imports:
        size = f"{row['log_bytes'] / 1e6:,.0f} MB"
        name = {"dense": "record-dense logs", "1gb": "1 GB set"}[row["set"]]
        entries = row["hand_count"]["entries"]
        load = row.get("load_average")
        out += [
            f"{name}: {size}, {row['files']:,} files, {entries:,} API calls"
            + (f" (load average {load[0]:.1f} before, {load[1]:.1f} after)" if load else ""),
            "",
            "| importer | seconds | ratio to ccusage | CPU seconds | CPU ratio | peak memory MB | totals per UTC day = truth |",  # noqa: E501
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
            f"| tokenwise import claude-code ({db}) | {row['seconds']:.1f} | {row.get('ratio', float('nan')):.2f} |"
            f" {_maybe(row.get('cpu_seconds'), 1)} | {_maybe(row.get('cpu_ratio'), 2)} |"
            f" {row['peak_rss_mb']:.0f} | {row['totals_match_hand_count']} |",
        ]
        if "ccusage" in row:
            cc = row["ccusage"]
            out.append(
                f"| ccusage {cc['version']} claude daily --json --offline -z UTC | {cc['seconds']:.1f} | 1.00 |"
                f" {_maybe(cc.get('cpu_seconds'), 1)} | 1.00 | {cc['peak_rss_mb']:.0f} |"
                f" {row['ccusage_matches_hand_count']} |"
            )
        floor = row["floor"]
        cc_seconds = row["ccusage"]["seconds"] if "ccusage" in row else float("nan")
        out.append(
            f"| floor: read + msgspec-decode every line ({floor['parse_seconds']:.1f} s), copy_rows the same"
            f" {floor['runs']:,} runs and {floor['usage_records']:,} records ({floor['insert_seconds']:.1f} s) |"
            f" {floor['seconds']:.1f} | {floor['seconds'] / cc_seconds:.2f} | | | | |"
        )
        out.append("")
    return "\n".join(out)


def _say(kind: str, what: str, value: Any) -> None:
    print(f"[{kind}] {what}: {json.dumps(value, default=str)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both (comma-separated)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections: {', '.join(SECTIONS)}")
    parser.add_argument("--samples", type=int, default=40, help="people sampled per slash command")
    parser.add_argument("--report", type=Path, help="print the tables of a saved results file and stop")
    args = parser.parse_args(argv)
    if args.report:
        print(render(json.loads(args.report.read_text())))
        return 0
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    try:
        results = run_suite([d.strip() for d in args.db.split(",")], only, scale(), args.samples)
    except CcusageUnavailable as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    out = bench_dir() / f"results-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(render(results))
    print(f"Results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
