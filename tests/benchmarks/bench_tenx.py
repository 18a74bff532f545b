"""Ten times the data (#17): per-request usage for a 5 000-person organisation, the suite's `tenx` section.

    .venv/bin/python -m tests.benchmarks.bench_suite --only tenx                 # BENCH_SCALE=1: up to 25x
    BENCH_SCALE=10 .venv/bin/python -m tests.benchmarks.bench_suite --only tenx  # up to 250x (~47 M records)

Sizes are multiples of today's 1x (189 517 usage records): 1x, 5x, 25x and 250x, each an organisation of
20 people per 1x (the 250x one: 5 000 people in 500 teams) with 56 weeks of history (a year falls outside a
30-day retention window) in per-request shape: each agent call is `REQUESTS` usage records, so a run has
tens of records, with GitHub-style merged pull requests and their links, outcomes and verdicts as
`tokenwise seed` writes them. `BENCH_SCALE` sets the largest size (25x the scale: 250x at 10), on
PostgreSQL; SQLite goes to half of it above scale 1 (`BENCH_SQLITE_SCALE`). Free disk is checked before each
size, and every database is dropped after its size.

At each size: the seed (timed), disk bytes per usage record with indexes (largest part named), and
`/tokenwise me`, `/tokenwise team`, App Home and `/tokenwise summary` (the model an LLM stand-in) from
signed request to answer, against `tokenwise serve` as its own process. At the largest size also: every
team's weekly digest sent by `tokenwise serve`'s scheduler (charts included) with the server's memory
sampled throughout; a burst of GitHub webhook deliveries into the full database; and last
`tokenwise retention purge` (TOKENWISE_RETENTION_DAYS=30: a year past the window) with `/tokenwise me`
timed while it runs. Before the sizes, today's shape (session aggregates, 37 weeks, 5.2 M records at
scale 1) is seeded for its disk figure, the baseline for bytes per record.

BENCH_TENX_ONLY=today,250x measures only those; BENCH_PURGE_SECONDS stops the purge (it commits batch by
batch) after that long and reports what it purged so far.
"""

from __future__ import annotations

import os
import queue
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import bindparam, text

from bot.devtools.slack_requests import SlackRequests
from bot.devtools.slack_standin import SlackStandIn
from bot.seed import TIMEZONES, person_email, seed_organisation
from storage.db import make_engine
from storage.types import UTCDateTime
from tests.support import slack_load
from tests.support.llm_standin import LLMStandIn

UNIT = 189_517  # today's 1x, in usage records
MULTIPLES = (1, 5, 25, 250)
PEOPLE_PER_UNIT = 20  # x 56 weeks x ~169 records a person-week ~ 189 517 records
WEEKS = 56
REQUESTS = 6  # usage records per agent call: ~169 a person-week, where session aggregates give ~28
TODAY_PEOPLE, TODAY_WEEKS = 5_000, 37  # today's bench organisation (5.19 M records at scale 1)
RETENTION_DAYS = 30
BUDGET_MS = 300.0
ROOT = Path(__file__).resolve().parents[2]
Scratch = Callable[[str, str], AbstractContextManager[str]]
# Disk the seed needs per usage record, generous (measured: see docs/performance.md), and what is left to
# the machine's other work afterwards.
BYTES_PER_RECORD = {"postgresql": 420, "sqlite": 300}
DISK_RESERVE = 8 << 30


def sizes(kind: str, factor: float) -> list[tuple[str, int]]:
    """(label, people) of each size for `kind` at BENCH_SCALE `factor`: the multiples up to 25 x the scale."""
    if kind == "sqlite":
        factor = float(os.environ.get("BENCH_SQLITE_SCALE") or (factor / 2 if factor > 1 else factor))
    top = 25 * factor
    chosen = [m for m in MULTIPLES if m < top - 1e-9] + ([top] if top >= 1 else [])
    return [(f"{m:g}x", max(PEOPLE_PER_UNIT, round(PEOPLE_PER_UNIT * m))) for m in chosen or [1]]


# -- disk -----------------------------------------------------------------------------------------
def free_disk(kind: str, url: str) -> tuple[int, str]:
    """Free bytes where `kind` keeps its files, and that place."""
    place = str(Path(os.environ.get("BENCH_DIR", "/tmp/tokenwise-bench")))
    if kind == "postgresql":
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                place = str(connection.exec_driver_sql("SHOW data_directory").scalar_one())
        except Exception:  # not allowed to ask: the root file system is the best guess
            place = "/"
        finally:
            engine.dispose()
        if not os.path.exists(place):
            place = "/"
    return shutil.disk_usage(place).free, place


def enough_disk(kind: str, url: str, records: int) -> str | None:
    """None when there is room for `records`, or a plain sentence saying there is not."""
    free, place = free_disk(kind, url)
    needed = records * BYTES_PER_RECORD[kind] + DISK_RESERVE
    if free >= needed:
        return None
    return (
        f"not enough free disk for {records:,} usage records on {kind}: it needs about {needed / 1e9:.0f} GB"
        f" (with {DISK_RESERVE >> 30} GB left for other work), {free / 1e9:.0f} GB is free on {place}"
    )


def disk_use(url: str) -> dict[str, Any]:
    """Bytes on disk per usage record, with the indexes: of usage_record alone and of the whole database,
    and every part of usage_record (the table, each index) with the largest named."""
    engine = make_engine(url)
    parts: dict[str, int] = {}
    with engine.connect() as connection:
        records = connection.execute(text("SELECT count(*) FROM usage_record")).scalar_one()
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("CHECKPOINT")
            parts["usage_record (table)"] = connection.exec_driver_sql(
                "SELECT pg_table_size('usage_record')"
            ).scalar_one()
            for name, size in connection.exec_driver_sql(
                "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes"
                " WHERE relname = 'usage_record'"
            ):
                parts[name] = int(size)
            database = connection.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
        else:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            names = dict(
                connection.exec_driver_sql(
                    "SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"
                ).all()
            )
            for name, size in connection.exec_driver_sql("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
                if names.get(name) == "usage_record":
                    parts["usage_record (table)" if name == "usage_record" else name] = int(size)
            database = Path(str(engine.url.database)).stat().st_size
    engine.dispose()
    largest = max(parts, key=lambda name: parts[name])
    usage = sum(parts.values())
    return {
        "usage_records": records,
        "usage_bytes": usage,
        "database_bytes": int(database),
        "bytes_per_record": usage / max(1, records),
        "database_bytes_per_record": int(database) / max(1, records),
        "parts": parts,
        "largest": largest,
        "largest_share": parts[largest] / max(1, usage),
    }


# -- tokenwise serve ------------------------------------------------------------------------------
@contextmanager
def serve(db_url: str, slack: SlackStandIn, scheduler: bool = False, **env: str) -> Iterator[tuple[str, int]]:
    """`tokenwise serve` as its own process (scheduler on or off) with the stand-in as Slack; (URL, pid)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "TOKENWISE_"))}
    environment |= {
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": slack_load.BOT_TOKEN,
        "SLACK_SIGNING_SECRET": slack_load.SIGNING_SECRET,
        "SLACK_API_URL": slack.url,
        "COLUMNS": "200",
        **env,
    }
    options = [] if scheduler else ["--no-scheduler"]
    process = subprocess.Popen(
        [sys.executable, "-c", "from bot.cli import main; main()", "serve", "--port", "0", *options],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stream = process.stdout
    assert stream is not None
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    try:
        while True:
            found = re.search(r"Tokenwise listening on (http://127\.0\.0\.1:\d+)", lines.get(timeout=120))
            if found:
                yield found.group(1), process.pid
                break
    finally:
        process.terminate()
        process.wait(timeout=60)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _add_people(slack: SlackStandIn, indexes: list[int]) -> None:
    for index in indexes:
        slack.add_user(f"U{1000000 + index}", person_email(index), tz=TIMEZONES[index % len(TIMEZONES)])


def _summary_ms(values: list[float]) -> dict[str, float]:
    from tests.benchmarks.bench_suite import percentile

    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50_ms": percentile(values, 0.5) * 1000,
        "p95_ms": percentile(values, 0.95) * 1000,
        "max_ms": max(values) * 1000,
    }


class Caller:
    """Signed requests to the served app, each timed until its answer reaches the stand-in."""

    def __init__(self, base: str, slack: SlackStandIn) -> None:
        self.slack = slack
        self.signer = SlackRequests(slack_load.SIGNING_SECRET, team_id=slack.team_id)
        self.http = httpx.Client(base_url=base, timeout=60)

    def command(self, text_: str, user: str) -> tuple[str, float]:
        """Seconds from the signed POST to the final answer at response_url (past any 'working' message)."""
        response_url = self.slack.response_url()
        path = "/" + response_url.split("/", 3)[3]
        request = self.signer.slash_command(text_, user, response_url)
        started = time.perf_counter()
        ack = self.http.post("/slack/events", content=request.body, headers=request.headers)
        if ack.status_code != 200:
            raise RuntimeError(f"/tokenwise {text_} was answered {ack.status_code}: {ack.text[:200]}")
        final: list[str] = []

        def answered() -> bool:
            for call in self.slack.calls("response_url")[-12:]:
                if call.path == path and (call.args.get("replace_original") or text_ != "summary"):
                    final.append(str(call.args.get("text", "")))
                    return True
                if call.path == path and "Writing" not in str(call.args.get("text", "")):
                    final.append(str(call.args.get("text", "")))  # refused at once: no model
                    return True
            return False

        self.slack.wait_until(answered, timeout=120)
        return final[0], time.perf_counter() - started

    def home(self, user: str) -> float:
        """Seconds from the signed app_home_opened event to the published Home view."""
        before = len([c for c in self.slack.calls("views.publish") if c.args.get("user_id") == user])
        request = self.signer.app_home_opened(user)
        started = time.perf_counter()
        ack = self.http.post("/slack/events", content=request.body, headers=request.headers)
        if ack.status_code != 200:
            raise RuntimeError(f"app_home_opened was answered {ack.status_code}")
        self.slack.wait_until(
            lambda: len([c for c in self.slack.calls("views.publish") if c.args.get("user_id") == user]) > before,
            timeout=120,
        )
        return time.perf_counter() - started

    def close(self) -> None:
        self.http.close()


def bench_commands(url: str, people: int, teams: int, samples: int, seed: int = 7) -> dict[str, Any]:
    """/tokenwise me, team, App Home and summary (managers, the LLM a stand-in), `samples` people each."""
    rng = random.Random(seed)
    picks = rng.sample(range(people), min(samples, people))
    managers = rng.sample(range(teams), min(samples, teams))  # seeded person i < teams manages team i + 1
    timings: dict[str, list[float]] = {"me": [], "team": [], "home": [], "summary": []}
    problems: list[str] = []
    with SlackStandIn(token=slack_load.BOT_TOKEN) as slack, LLMStandIn() as llm:
        llm.reply = "Verified spend and merged pull requests lead this team's use of agents."
        _add_people(slack, sorted(set(picks) | set(managers)))
        model = {"OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": llm.base_url}
        with serve(url, slack, **model) as (base, _pid):
            caller = Caller(base, slack)
            caller.command("me", f"U{1000000 + picks[0]}")  # warm up: imports, first connection,
            caller.command("summary", f"U{1000000 + managers[0]}")  # and the model's client
            for name, who in (("me", picks), ("team", picks), ("summary", managers)):
                for index in who:
                    answer, seconds = caller.command(name, f"U{1000000 + index}")
                    timings[name].append(seconds)
                    if answer.startswith(("Sorry", "Tokenwise is not answering")):
                        problems.append(f"{name} for person {index + 1}: {answer[:120]}")
            for index in picks:
                timings["home"].append(caller.home(f"U{1000000 + index}"))
            caller.close()
    return {"samples": len(picks), "problems": problems, **{k: _summary_ms(v) for k, v in timings.items()}}


# -- digests through tokenwise serve --------------------------------------------------------------
def bench_served_digests(url: str, teams: int | None = None, timeout: float = 900) -> dict[str, Any]:
    """Every team's weekly digest, sent by `tokenwise serve`'s own scheduler (each due a minute ago, UTC, so
    well inside the catch-up grace at any time of day): seconds from the server's start to the last one
    posted, and the server's RSS sampled throughout."""
    engine = make_engine(url)
    now = datetime.now(UTC)
    due = now - timedelta(minutes=1)
    with engine.begin() as connection:
        team_ids = [row[0] for row in connection.execute(text("SELECT id FROM team ORDER BY id"))]
        team_ids = team_ids[:teams] if teams else team_ids
        connection.execute(
            text(
                "INSERT INTO digest_subscription (slack_team_id, channel_id, team_id, weekday, hour, minute,"
                " timezone, created_at) VALUES (:slack, :channel, :team, :weekday, :hour, :minute, 'UTC', :now)"
            ).bindparams(bindparam("now", type_=UTCDateTime())),
            [
                {
                    "slack": "T111",
                    "channel": f"C{team:07d}",
                    "team": team,
                    "weekday": due.weekday(),
                    "hour": due.hour,
                    "minute": due.minute,
                    "now": now - timedelta(days=8),  # subscribed long before: this week's digest is owed
                }
                for team in team_ids
            ],
        )
    samples: list[tuple[float, float]] = []
    posted = 0
    with SlackStandIn(token=slack_load.BOT_TOKEN) as slack:
        for team in team_ids:
            slack.add_channel(f"C{team:07d}", f"team-{team}")
        with engine.begin() as connection:  # the stand-in's workspace
            connection.execute(text("UPDATE digest_subscription SET slack_team_id = :t"), {"t": slack.team_id})
        started = time.perf_counter()
        with serve(url, slack, scheduler=True) as (_base, pid):
            listening = time.perf_counter() - started  # its scheduler started just before: digests are going
            deadline = started + timeout
            while time.perf_counter() < deadline:
                samples.append((time.perf_counter() - started, rss_mb(pid)))
                with engine.connect() as connection:
                    posted = connection.execute(
                        text("SELECT count(*) FROM digest_post WHERE status = 'posted'")
                    ).scalar_one()
                if posted >= len(team_ids):
                    break
                time.sleep(0.5)
            seconds = time.perf_counter() - started
            charts = len(slack.calls("files.completeUploadExternal"))
    engine.dispose()
    memory = [mb for _, mb in samples]
    tenth = max(1, len(memory) // 10)
    return {
        "teams": len(team_ids),
        "posted": posted,
        "charts": charts,
        "seconds": seconds,
        "startup_seconds": listening,  # process start to "listening": imports, migrations check, Slack check
        "rss_mb_start": memory[0] if memory else 0.0,
        "rss_mb_after_first_tenth": memory[tenth] if len(memory) > tenth else memory[-1],
        "rss_mb_end": memory[-1],
        "rss_mb_peak": max(memory),
        "rss_samples": len(memory),
    }


# -- retention purge under load -------------------------------------------------------------------
def bench_purge(url: str, people: int, samples: int, seed: int = 13) -> dict[str, Any]:
    """`tokenwise retention purge` (TOKENWISE_RETENTION_DAYS=30) as its own process, with /tokenwise me
    sent again and again to `tokenwise serve` while it runs; the purge's seconds and rows, and me's times."""
    rng = random.Random(seed)
    picks = rng.sample(range(people), min(samples, people))
    engine = make_engine(url)
    with engine.connect() as connection:
        before = connection.execute(text("SELECT count(*) FROM usage_record")).scalar_one()
    timings: list[float] = []
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "TOKENWISE_"))}
    environment |= {"DATABASE_URL": url, "TOKENWISE_RETENTION_DAYS": str(RETENTION_DAYS), "COLUMNS": "200"}
    with SlackStandIn(token=slack_load.BOT_TOKEN) as slack:
        _add_people(slack, picks)
        with serve(url, slack) as (base, _pid):
            caller = Caller(base, slack)
            for index in picks:  # profiles cached and the server warm, as in the slash section
                caller.command("me", f"U{1000000 + index}")
            started = time.perf_counter()
            purge = subprocess.Popen(
                [sys.executable, "-c", "from bot.cli import main; main()", "retention", "purge"],
                cwd=ROOT,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            turn = 0
            limit = float(os.environ.get("BENCH_PURGE_SECONDS") or "inf")
            stopped = False
            while purge.poll() is None:
                if time.perf_counter() - started > limit:  # safe: the purge commits batch by batch
                    purge.terminate()
                    purge.wait(timeout=60)
                    stopped = True
                    break
                _answer, seconds = caller.command("me", f"U{1000000 + picks[turn % len(picks)]}")
                timings.append(seconds)
                turn += 1
            purge_seconds = time.perf_counter() - started
            out, errors = purge.communicate()
            caller.close()
    with engine.connect() as connection:
        after = connection.execute(text("SELECT count(*) FROM usage_record")).scalar_one()
    engine.dispose()
    if purge.returncode != 0 and not stopped:
        raise RuntimeError(f"tokenwise retention purge failed: {errors.strip()[-300:]}")
    return {
        "retention_days": RETENTION_DAYS,
        "usage_before": before,
        "usage_after": after,
        "purged_usage": before - after,
        "seconds": purge_seconds,
        "stopped_at_limit": stopped,  # BENCH_PURGE_SECONDS: the purge was stopped part way (rows so far)
        "output": out.strip(),
        "me_during": _summary_ms(timings),
        "budget_ms": BUDGET_MS,
    }


# -- GitHub into the full database ----------------------------------------------------------------
def bench_github_full(url: str, deliveries: int) -> dict[str, Any]:
    """The GitHub burst (tests/benchmarks/bench_github.py) into this size's database, its seeded pull
    requests and links already there: what is lost is counted against the rows before the burst."""
    from tests.benchmarks.bench_github import _rows, bench_github

    engine = make_engine(url)
    before = _rows(engine)
    engine.dispose()
    result = bench_github(url, deliveries)
    prs = result["pull_requests"]
    expected = {"github_delivery": result["deliveries"], "pull_request": prs, "github_commit": 3 * prs,
                "github_check": 2 * prs, "pr_merged counted": prs, "tests_passed counted": prs,
                "deploy counted": prs, "outcome_link": prs}  # fmt: skip
    added = {name: result["rows"].get(name, 0) - before.get(name, 0) for name in expected}
    result["rows_added"] = added
    result["lost"] = {name: expected[name] - added[name] for name in expected if added[name] != expected[name]}
    result["ok"] = (
        result["statuses"] == {"200": result["deliveries"]} and result["slowest_s"] < result["limit_s"]
    ) and not result["lost"]
    return result


# -- the section ----------------------------------------------------------------------------------
def tenx_section(
    kind: str,
    scratch: Scratch,
    factor: float,
    samples: int = 40,
    say: Callable[[str, str, Any], None] = lambda *_: None,
    github_deliveries: int = 2_000,
    weeks: int = WEEKS,
    today_weeks: int = TODAY_WEEKS,
) -> dict[str, Any]:
    """The `tenx` section on one database: today's disk baseline, then every size, largest last."""
    from tests.benchmarks.bench_suite import END

    result: dict[str, Any] = {"sizes": {}, "skipped": {}}
    wanted = {part.strip() for part in os.environ.get("BENCH_TENX_ONLY", "").split(",") if part.strip()}
    today_people = max(20, round(TODAY_PEOPLE * min(1.0, factor)))
    with nullcontext("") if wanted and "today" not in wanted else scratch(kind, "today") as url:
        records = round(today_people * today_weeks * 28.1)
        refusal = "not asked for (BENCH_TENX_ONLY)" if not url else enough_disk(kind, url, records)
        if refusal:
            result["skipped"]["today"] = refusal
            say(kind, "tenx today: skipped", refusal)
        else:
            engine = make_engine(url)
            started = time.perf_counter()
            seeded = seed_organisation(engine, today_people, today_people // 10, today_weeks, seed=1, end=END)
            engine.dispose()
            result["today"] = {
                "people": today_people,
                "weeks": today_weeks,
                "seed_seconds": time.perf_counter() - started,
                "usage_records": seeded.usage_records,
                "disk": disk_use(url),
            }
            say(kind, "tenx today", result["today"])
    chosen = sizes(kind, factor)
    for position, (label, people) in enumerate(chosen):
        largest = position == len(chosen) - 1
        if wanted and label not in wanted:
            result["skipped"][label] = "not asked for (BENCH_TENX_ONLY)"
            continue
        teams = max(2, people // 10)
        with scratch(kind, f"tenx{label.replace('.', '_')}") as url:
            records = round(UNIT * people / PEOPLE_PER_UNIT * weeks / WEEKS)
            refusal = enough_disk(kind, url, records)
            if refusal:
                result["skipped"][label] = refusal
                say(kind, f"tenx {label}: skipped", refusal)
                continue
            row: dict[str, Any] = {"people": people, "teams": teams, "weeks": weeks, "requests_per_call": REQUESTS}
            result["sizes"][label] = row
            engine = make_engine(url)
            started = time.perf_counter()
            seeded = seed_organisation(
                engine, people, teams, weeks, seed=1, end=datetime.now(UTC).date(), requests_per_call=REQUESTS
            )
            row["seed_seconds"] = time.perf_counter() - started
            engine.dispose()
            row |= {"usage_records": seeded.usage_records, "runs": seeded.runs, "outcomes": seeded.outcomes,
                    "annotations": seeded.annotations}  # fmt: skip
            say(kind, f"tenx {label} seed", row)
            row["disk"] = disk_use(url)
            say(kind, f"tenx {label} disk", row["disk"])
            row["commands"] = bench_commands(url, people, teams, samples)
            say(kind, f"tenx {label} commands", row["commands"])
            if largest:
                from tests.benchmarks.bench_suite import bench_digest

                row["digests_in_process"] = bench_digest(url, now=datetime.now(UTC).date())
                say(kind, f"tenx {label} digests in process", row["digests_in_process"])
                row["digests"] = bench_served_digests(url)
                say(kind, f"tenx {label} digests", row["digests"])
                row["github"] = bench_github_full(url, github_deliveries)
                say(kind, f"tenx {label} github", {k: v for k, v in row["github"].items() if k != "rows"})
                row["purge"] = bench_purge(url, people, min(samples, 20))
                say(kind, f"tenx {label} purge", row["purge"])
    return result


def render(results: dict[str, Any]) -> str:
    """The tables of the `tenx` section of a results file."""
    out: list[str] = []
    databases = [db for db in ("sqlite", "postgresql") if "tenx" in results.get(db, {})]
    if not databases:
        return ""
    out += [
        "| database | data | people / teams | usage records | seed s | command | p50 ms | p95 ms | max ms |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for db in databases:
        for label, row in results[db]["tenx"]["sizes"].items():
            for name, title in (("me", "/tokenwise me"), ("team", "/tokenwise team"), ("home", "App Home"),
                                ("summary", "/tokenwise summary")):  # fmt: skip
                timing = row.get("commands", {}).get(name, {})
                if not timing.get("count"):
                    continue
                out.append(
                    f"| {db} | {label} | {row['people']:,} / {row['teams']:,} | {row['usage_records']:,} |"
                    f" {row['seed_seconds']:.0f} | {title} | {timing['p50_ms']:.1f} | {timing['p95_ms']:.1f} |"
                    f" {timing['max_ms']:.1f} |"
                )
    out += ["", "| database | shape | usage records | bytes per record (usage_record + indexes) |"
            " whole database per record | largest part |",
            "| --- | --- | ---: | ---: | ---: | --- |"]  # fmt: skip
    for db in databases:
        tenx = results[db]["tenx"]
        shapes = [("today's (aggregates, 37 weeks)", tenx["today"])] if "today" in tenx else []
        shapes += [(f"per-request {label}", row) for label, row in tenx["sizes"].items() if "disk" in row]
        for shape, row in shapes:
            disk = row["disk"]
            out.append(
                f"| {db} | {shape} | {disk['usage_records']:,} | {disk['bytes_per_record']:.0f} |"
                f" {disk['database_bytes_per_record']:.0f} | {disk['largest']} ({disk['largest_share']:.0%}) |"
            )
    out.append("")
    largest = [(db, label, row) for db in databases for label, row in results[db]["tenx"]["sizes"].items()]
    digests = [(db, label, row["digests"]) for db, label, row in largest if "digests" in row]
    if digests:
        out += ["| database | data | teams | posted | charts | seconds | startup s | serve RSS MB 0, 1/10, end, peak |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
        for db, label, d in digests:
            sized = next(row for db_, label_, row in largest if db_ == db and label_ == label)
            built = sized.get("digests_in_process")
            if built:
                out.append(
                    f"| {db} | {label} (in process: build {built['build_seconds']:.1f} s + charts"
                    f" {built['chart_seconds']:.1f} s) | {built['teams']} | {built['shown']} shown | |"
                    f" {built['seconds']:.1f} | |"
                    f" process RSS {built['rss_mb_after_first_tenth']:.0f}, {built['rss_mb_at_end']:.0f},"
                    f" {built['rss_mb_peak']:.0f} |"
                )
            out.append(
                f"| {db} | {label} | {d['teams']} | {d['posted']} | {d['charts']} | {d['seconds']:.1f} |"
                f" {d.get('startup_seconds', float('nan')):.1f} |"
                f" {d['rss_mb_start']:.0f}, {d['rss_mb_after_first_tenth']:.0f}, {d['rss_mb_end']:.0f},"
                f" {d['rss_mb_peak']:.0f} |"
            )
        out.append("")
    purges = [(db, label, row["purge"]) for db, label, row in largest if "purge" in row]
    if purges:
        out += ["| database | data | usage before | purged | purge s | /tokenwise me during: n | p50 ms | p95 ms |"
                " max ms | budget ms |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for db, label, p in purges:
            me = p["me_during"]
            out.append(
                f"| {db} | {label} | {p['usage_before']:,} | {p['purged_usage']:,} | {p['seconds']:.1f} |"
                f" {me.get('count', 0)} | {me.get('p50_ms', 0):.1f} | {me.get('p95_ms', 0):.1f} |"
                f" {me.get('max_ms', 0):.1f} | {p['budget_ms']:.0f} |"
            )
        out.append("")
    hooks = [(db, label, row["github"]) for db, label, row in largest if "github" in row]
    if hooks:
        out += ["| database | data | deliveries | all 200 | p50 s | p95 s | slowest s | limit s | settled s | lost |",
                "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
        for db, label, g in hooks:
            out.append(
                f"| {db} | {label} | {g['deliveries']:,} | {g['statuses'] == {'200': g['deliveries']}} |"
                f" {g['p50_s']:.2f} | {g['p95_s']:.2f} | {g['slowest_s']:.2f} | {g['limit_s']:.0f} |"
                f" {g.get('settled_s', float('nan')):.2f} | {g['lost'] or 'none'} |"
            )
        out.append("")
    skipped = [(db, label, why) for db in databases for label, why in results[db]["tenx"]["skipped"].items()]
    for db, label, why in skipped:
        out.append(f"- {db} {label}: skipped, {why}")
    return "\n".join(out)


def own_database(url: str) -> Scratch:
    """A `scratch` that hands out one database already made (tests)."""
    return lambda _kind, _label: nullcontext(url)
