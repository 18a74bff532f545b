"""Load, bounded: 200 concurrent signed slash commands against a real `tokenwise serve` process, each
acked within Slack's 3 seconds and each answered; 50 concurrent ingest clients sending overlapping
duplicate batches end with exactly the distinct records."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from bot.devtools.slack_requests import SlackRequests
from bot.devtools.slack_standin import SlackStandIn
from tests.support.ingest_fixtures import make_app, new_token, row_counts, running_server, serve_process
from tests.support.slack_harness import ADA, ALAN, BOT_TOKEN, GRACE, SIGNING_SECRET

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it

COMMANDS = 200
SLACK_ACK_LIMIT = 3.0
CLIENTS = 50


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=BOT_TOKEN) as standin:
        yield standin


@pytest.fixture
def served(db_url: str, slack: SlackStandIn) -> Iterator[str]:
    """`tokenwise serve` as its own process, with the stand-in as Slack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_"))}
    env |= {
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.url,
        "COLUMNS": "200",
    }
    with serve_process(env) as url:
        yield url


async def fire(base: str, requests: list[Any]) -> list[tuple[int, bytes, float]]:
    """Send every request at once; each one's status, body and seconds to its answer."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        start = asyncio.Event()

        async def one(request: Any) -> tuple[int, bytes, float]:
            await start.wait()
            began = time.monotonic()
            response = await http.post("/slack/events", content=request.body, headers=request.headers)
            return response.status_code, response.content, time.monotonic() - began

        tasks = [asyncio.create_task(one(r)) for r in requests]
        await asyncio.sleep(0)  # let every task reach the start line
        start.set()
        return await asyncio.gather(*tasks)


def test_200_concurrent_slash_commands_are_all_acked_within_3_seconds_and_all_answered(
    served: str, slack: SlackStandIn
) -> None:
    signer = SlackRequests(SIGNING_SECRET, team_id=slack.team_id)
    warm = signer.slash_command("help", ADA, slack.response_url())  # a server that has served before
    assert httpx.post(f"{served}/slack/events", content=warm.body, headers=warm.headers).status_code == 200
    texts = ["me", "runs", "help", "me last week", "connect"]
    users = [ADA, GRACE, ALAN]
    urls = [slack.response_url() for _ in range(COMMANDS)]
    requests = [signer.slash_command(texts[i % len(texts)], users[i % len(users)], urls[i]) for i in range(COMMANDS)]
    results = asyncio.run(fire(served, requests))

    assert [status for status, _, _ in results] == [200] * COMMANDS
    slowest = max(seconds for _, _, seconds in results)
    assert slowest < SLACK_ACK_LIMIT, f"slowest ack {slowest:.2f}s"
    lazy = [i for i, (_, body, _) in enumerate(results) if not body]  # help is answered in the ack itself
    assert len(lazy) == COMMANDS - COMMANDS // len(texts)
    slack.wait_until(lambda: len(slack.calls("response_url")) >= len(lazy), timeout=120)
    answers = slack.calls("response_url")
    assert len(answers) == len(lazy)
    assert {c.path for c in answers} == {"/" + urls[i].split("/", 3)[3] for i in lazy}  # one answer per command
    assert not [c for c in answers if "Sorry" in str(c.args.get("text"))]


def test_50_concurrent_ingest_clients_with_overlapping_duplicates_end_with_exactly_the_distinct_records(
    engine: Engine, db_url: str
) -> None:
    token = new_token(engine)
    batches: list[list[dict[str, Any]]] = []
    for client in range(CLIENTS):
        keys = list(range(client * 6, client * 6 + 40))  # each overlaps its neighbours' keys
        for turn in range(2):
            ordered = keys if (client + turn) % 2 else keys[::-1]  # opposite orders, to provoke lock races
            batches.append(
                [
                    {
                        "dedupe_key": f"k{k}",
                        "email": f"dev{k % 11}@example.com",  # people met for the first time concurrently
                        "occurred_at": "2026-11-24T10:00:00Z",
                        "agent": "claude-code",
                        "model": "claude-sonnet-4-20250514",
                        "input_tokens": k,
                        "output_tokens": 1,
                    }
                    for k in ordered
                ]
            )
    distinct = {record["dedupe_key"] for batch in batches for record in batch}
    results: list[dict[str, int]] = []
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS)

    with running_server(make_app(engine, db_url)) as base:

        def client(mine: list[list[dict[str, Any]]]) -> None:
            with httpx.Client(base_url=base, timeout=60) as http:
                barrier.wait()
                for batch in mine:
                    response = http.post(
                        "/v1/usage", json={"records": batch}, headers={"Authorization": f"Bearer {token}"}
                    )
                    with lock:
                        if response.status_code == 200:
                            results.append(response.json())
                        else:
                            failures.append(f"{response.status_code} {response.text}")

        threads = [threading.Thread(target=client, args=(batches[i * 2 : i * 2 + 2],)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "clients still running after 120 s"
    assert failures == []
    assert len(results) == len(batches)
    assert sum(r["accepted"] for r in results) == len(distinct)
    assert sum(r["accepted"] + r["duplicates"] for r in results) == sum(len(b) for b in batches)
    counts = row_counts(engine)
    assert counts["usage_record"] == len(distinct)
    assert counts["person"] == 11
