"""GitHub's webhooks under a burst: `deliveries` signed deliveries sent at once to `tokenwise serve`, run as
its own process, each answered within GitHub's 10 seconds and none lost (every row counted once the server
has settled the pull requests the burst queued, `settled_s` after the burst began).

    .venv/bin/python -m tests.benchmarks.bench_github --db sqlite,postgresql

The burst is what a busy organisation's webhook sends: for each pull request a push of three commits (one
with an agent trailer), `opened`, the merge, a successful workflow run and a successful deployment, spread
over 20 repositories and arriving in whatever order the server takes them. Each pull request's author has
a run on its branch, posted beforehand, so every merge is settled with a link. `make bench` calls
`bench_github(url)` through `github_section`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from storage.db import make_engine, normalize_url, session_scope, upgrade
from storage.identities import link_identity
from storage.models import (
    GithubCheck,
    GithubCommit,
    GithubDelivery,
    GithubUnsettled,
    Outcome,
    OutcomeLink,
    PullRequest,
    table_of,
)
from storage.people import get_or_create_person
from storage.sources import create_source
from tests.support import github_payloads as gh
from tests.support.ingest_fixtures import serve_process

GITHUB_LIMIT_S = 10.0
DELIVERIES = 2_000
PER_PR = 5  # push, opened, merged, workflow run, deployment
REPOS = 20
AUTHORS = 40
CONNECTIONS = 500  # sockets at once; a delivery waiting for one is timed too: every clock starts with the burst
CLAUDE = "Co-authored-by: Claude <noreply@anthropic.com>"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def bench_github(url: str, deliveries: int = DELIVERIES) -> dict[str, Any]:
    """Seconds from sending to each answer for a burst of `deliveries` deliveries, and the rows they left."""
    prs = max(1, deliveries // PER_PR)
    engine = make_engine(url)
    tag = uuid.uuid4().hex[:6]
    with session_scope(engine) as session:
        secret = create_source(session, f"bench-github-{tag}", "github").token
        api_token = create_source(session, f"bench-runs-{tag}", "api").token
        for author in range(AUTHORS):
            person = get_or_create_person(session, email=f"dev{author}@bench.example.com")
            assert person.id is not None
            link_identity(session, "github", f"bench-dev-{author}", person.id)
    merged_at = datetime(2026, 11, 24, 16, tzinfo=UTC)
    runs, requests = [], []
    for n in range(prs):
        repo, author = f"acme/service-{n % REPOS}", n % AUTHORS
        branch, login = f"feature/{tag}-{n}", f"bench-dev-{author}"
        email = f"dev{author}@bench.example.com"
        opened = merged_at - timedelta(hours=6 + n % 48)
        commits = [
            gh.Commit(f"{tag}-{n}-{i}", email, login, opened - timedelta(minutes=30 - i), trailers=[CLAUDE] * (i == 2))
            for i in range(3)
        ]
        pr = gh.PullRequest(n + 1, login, branch, commits[-1].sha, opened, repo=repo)
        merge_sha = gh.sha(f"{tag}-{n}-merge")
        merge = pr.payload("closed", merged_at=merged_at, merged_by="bench-reviewer", merge_sha=merge_sha)
        ci = gh.workflow_run(pr.head_sha, branch, merged_at, run_id=10_000 + n, pr_numbers=(n + 1,), repo=repo)
        deployed = merged_at + timedelta(minutes=20)
        deploy = gh.deployment_status(merge_sha, deployed, deployment_id=20_000 + n, status_id=30_000 + n, repo=repo)
        events = [
            ("push", gh.push(branch, commits, repo=repo)),
            ("pull_request", pr.payload("opened")),
            ("pull_request", merge),
            ("workflow_run", ci),
            ("deployment_status", deploy),
        ]
        requests += [gh.delivery(event, payload, secret) for event, payload in events]
        runs.append(
            {
                "external_id": f"{tag}-run-{n}",
                "email": email,
                "agent": "claude-code",
                "started_at": (opened - timedelta(hours=1)).isoformat(),
                "repo": repo,
                "branch": branch,
            }
        )
    requests = requests[:deliveries]
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "TOKENWISE_"))}
    environment["DATABASE_URL"] = url
    with serve_process(environment) as base:
        with httpx.Client(base_url=base, timeout=60) as http:
            headers = {"Authorization": f"Bearer {api_token}"}
            for start in range(0, len(runs), 500):
                posted = http.post("/v1/runs", json={"runs": runs[start : start + 500]}, headers=headers)
                assert posted.status_code == 200, posted.text
            ping = gh.delivery("ping", gh.ping(), secret)  # warm up: a server that has served before
            assert http.post("/v1/github/webhook", content=ping.body, headers=ping.headers()).status_code == 200
        started = time.monotonic()
        results = fire(base, requests)
        burst_s = time.monotonic() - started
        settled_s = _settled(engine, started)
    seconds = sorted(elapsed for _, elapsed in results)
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    rows = _rows(engine)
    engine.dispose()
    expected = {
        "github_delivery": len(requests),
        "pull_request": prs,
        "github_commit": 3 * prs,
        "github_check": 2 * prs,
        "pr_merged counted": prs,
        "tests_passed counted": prs,
        "deploy counted": prs,
        "outcome_link": prs,
    }
    lost = {name: expected[name] - rows.get(name, 0) for name in expected if rows.get(name, 0) != expected[name]}
    return {
        "deliveries": len(requests),
        "pull_requests": prs,
        "statuses": statuses,
        "burst_s": burst_s,
        "settled_s": settled_s,
        "p50_s": statistics.median(seconds),
        "p95_s": seconds[max(0, int(len(seconds) * 0.95) - 1)],
        "slowest_s": seconds[-1],
        "limit_s": GITHUB_LIMIT_S,
        "rows": rows,
        "lost": lost,
        "ok": statuses == {"200": len(requests)} and seconds[-1] < GITHUB_LIMIT_S and not lost,
    }


def fire(base: str, requests: list[gh.Delivery], connections: int = CONNECTIONS) -> list[tuple[int, float]]:
    """Send every delivery at once; each one's status and seconds from the start of the burst to its answer.

    A lean HTTP/1.1 client on `connections` keep-alive sockets (a Python HTTP client with thousands of
    connections would measure itself, on the same CPUs): every delivery's clock starts with the burst,
    so one waiting for a free socket is timed as waiting for the server."""
    url = httpx.URL(base)
    host, port = url.host, url.port or 80

    def raw(delivery: gh.Delivery) -> bytes:
        head = ["POST /v1/github/webhook HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(delivery.body)}"]
        head += [f"{name}: {value}" for name, value in delivery.headers().items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + delivery.body

    async def all_at_once() -> list[tuple[int, float]]:
        results: list[tuple[int, float]] = [(0, 0.0)] * len(requests)
        pending = list(reversed(range(len(requests))))
        started = time.monotonic()

        async def worker() -> None:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                while pending:
                    index = pending.pop()
                    writer.write(raw(requests[index]))
                    await writer.drain()
                    status = int((await reader.readline()).split()[1])
                    length = 0
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        name, _, value = line.decode().partition(":")
                        if name.strip().lower() == "content-length":
                            length = int(value)
                    await reader.readexactly(length)
                    results[index] = (status, time.monotonic() - started)
            finally:
                writer.close()

        await asyncio.gather(*(worker() for _ in range(min(connections, len(requests)))))
        return results

    return asyncio.run(all_at_once())


def _settled(engine: Any, started: float, patience_s: float = 300.0) -> float:
    """Seconds from the start of the burst until the server had settled every pull request the burst
    queued (it answers each delivery once written and settles right after; github_unsettled empty)."""
    unsettled = table_of(GithubUnsettled)
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if not connection.execute(select(func.count()).select_from(unsettled)).scalar_one():
                return time.monotonic() - started
        time.sleep(0.1)
    return float("nan")


def _rows(engine: Any) -> dict[str, int]:
    outcomes = table_of(Outcome).c
    with engine.connect() as connection:
        found = {
            name: connection.execute(select(func.count()).select_from(table_of(model))).scalar_one()
            for name, model in {
                "github_delivery": GithubDelivery,
                "pull_request": PullRequest,
                "github_commit": GithubCommit,
                "github_check": GithubCheck,
                "outcome_link": OutcomeLink,
            }.items()
        }
        for kind, count in connection.execute(
            select(outcomes.kind, func.count())
            .where(outcomes.external_id.like("github:%"), outcomes.counted.is_(True))
            .group_by(outcomes.kind)
        ):
            found[f"{kind} counted"] = int(count)
    return found


def github_section(
    kind: str, scratch: Callable[[str, str], AbstractContextManager[str]], deliveries: int = DELIVERIES
) -> dict[str, Any]:
    """The suite's `github` section on one database: a scratch database of `kind`, the burst, its results."""
    with scratch(kind, "github") as url:
        return bench_github(url, deliveries)


@contextmanager
def _scratch(kind: str, label: str) -> Iterator[str]:
    """A new migrated database for a standalone run, removed afterwards."""
    if kind == "sqlite":
        path = f"/tmp/tokenwise-bench-{label}-{uuid.uuid4().hex[:6]}.db"
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        try:
            yield url
        finally:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
        return
    admin_url = normalize_url(os.environ.get("TOKENWISE_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES_URL)
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"tokenwise_bench_{label}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both (comma-separated)")
    parser.add_argument("--deliveries", type=int, default=DELIVERIES)
    args = parser.parse_args(argv)
    ok = True
    for kind in (part.strip() for part in args.db.split(",") if part.strip()):
        with _scratch(kind, "github") as url:
            result = bench_github(url, args.deliveries)
        print(f"[{kind}] github: {json.dumps(result)}", flush=True)
        ok = ok and result["ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
