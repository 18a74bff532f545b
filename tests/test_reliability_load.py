"""Load, bounded: 200 concurrent signed slash commands against a real `tokenwise serve` process, each
acked and answered once (the time to ack is `make bench`'s); 50 concurrent ingest clients sending overlapping
duplicate batches end with exactly the distinct records."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from bot.devtools.slack_standin import SlackStandIn
from tests.support import slack_load
from tests.support.ingest_fixtures import make_app, new_token, row_counts, running_server
from tests.support.slack_harness import BOT_TOKEN

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it

COMMANDS = 200
CLIENTS = 50


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=BOT_TOKEN) as standin:
        yield standin


@pytest.fixture
def served(db_url: str, slack: SlackStandIn) -> Iterator[str]:
    with slack_load.served(db_url, slack) as url:
        yield url


def test_200_concurrent_slash_commands_are_all_acked_and_each_answered_once(served: str, slack: SlackStandIn) -> None:
    """Every one acked and answered once. How long the acks take is measured by `make bench` (acks), not
    asserted here: a wall clock in a test fails when the machine is busy, not when the code is slow."""
    slack_load.warm_up(served, slack)
    requests, urls = slack_load.burst(slack, COMMANDS)
    results = slack_load.fire(served, requests)

    assert [status for status, _, _ in results] == [200] * COMMANDS
    lazy = [i for i, (_, body, _) in enumerate(results) if not body]  # help is answered in the ack itself
    assert len(lazy) == COMMANDS - COMMANDS // len(slack_load.TEXTS)
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
