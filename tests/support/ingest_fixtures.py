"""Shared pieces for the ingest tests: the real app on a real database, a token, row counts."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, func, select

from bot.app import create_app
from bot.config import Settings
from bot.services import Services
from storage.db import session_scope
from storage.models import AgentRun, Outcome, Person, Source, UsageRecord, table_of
from storage.sources import create_source

TABLES = {"person": Person, "agent_run": AgentRun, "usage_record": UsageRecord, "outcome": Outcome}


def make_app(engine: Engine, db_url: str, **settings: object) -> FastAPI:
    config = Settings(database_url=db_url, **settings)  # type: ignore[arg-type]
    return create_app(Services(settings=config, engine=engine))


def new_token(
    engine: Engine, name: str = "ci", kind: str = "api", *, outcomes: bool = False, person: str | None = None
) -> str:
    """A real token from `create_source`: of `kind`, allowed outcomes or not, limited to `person` or not."""
    with session_scope(engine) as session:
        return create_source(session, name, kind, person_email=person, outcomes=outcomes).token


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            name: connection.execute(select(func.count()).select_from(table_of(model))).scalar_one()
            for name, model in TABLES.items()
        }


def source_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table_of(Source))).scalar_one()


@contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a free 127.0.0.1 port, as `tokenwise serve` runs it."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_process(env: dict[str, str], output: list[str] | None = None, *options: str) -> Iterator[str]:
    """`tokenwise serve --port 0` as its own process with `env`; yields its base URL, stops it after.

    `options` are more of `serve`'s options (`--socket`). With `output`, everything the process writes
    (stdout, where uvicorn's access log goes, and stderr) is appended to it line by line as it comes.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", "from bot.cli import main; main()", "serve", "--port", "0", "--no-scheduler", *options],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stream = process.stdout
    assert stream is not None

    def read() -> None:
        for line in stream:
            lines.put(line)
            if output is not None:
                output.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            found = re.search(r"Tokenwise listening on (http://127\.0\.0\.1:\d+)", lines.get(timeout=60))
            if found:
                yield found.group(1)
                break
    finally:
        process.terminate()
        process.wait(timeout=30)
