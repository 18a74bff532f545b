"""A burst of concurrent signed slash commands against `tokenwise serve` as its own process: shared by the
load test (everything acked and answered once) and `make bench` (how long the acks take)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from bot.devtools.slack_requests import SignedRequest, SlackRequests
from bot.devtools.slack_standin import SlackStandIn
from tests.support.ingest_fixtures import serve_process

BOT_TOKEN = "xoxb-test"
SIGNING_SECRET = "test-signing-secret-0123456789"
TEXTS = ("me", "runs", "help", "me last week", "connect")  # help is answered in the ack itself
USERS = ("W111", "U111", "U222")  # the stand-in's seeded users


@contextmanager
def served(db_url: str, slack: SlackStandIn) -> Iterator[str]:
    """`tokenwise serve` as its own process on `db_url`, with the stand-in as Slack; its base URL."""
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


def burst(slack: SlackStandIn, count: int) -> tuple[list[SignedRequest], list[str]]:
    """`count` signed commands cycling through TEXTS and USERS, each with its own response URL."""
    signer = SlackRequests(SIGNING_SECRET, team_id=slack.team_id)
    urls = [slack.response_url() for _ in range(count)]
    requests = [signer.slash_command(TEXTS[i % len(TEXTS)], USERS[i % len(USERS)], urls[i]) for i in range(count)]
    return requests, urls


def warm_up(base: str, slack: SlackStandIn) -> None:
    """One command first: a server that has served before."""
    signer = SlackRequests(SIGNING_SECRET, team_id=slack.team_id)
    warm = signer.slash_command("help", USERS[0], slack.response_url())
    assert httpx.post(f"{base}/slack/events", content=warm.body, headers=warm.headers).status_code == 200


def fire(base: str, requests: list[SignedRequest]) -> list[tuple[int, bytes, float]]:
    """Send every request at once; each one's status, body and seconds to its answer."""

    async def all_at_once() -> list[tuple[int, bytes, float]]:
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

    return asyncio.run(all_at_once())
