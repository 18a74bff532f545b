"""`tokenwise serve` (the HTTP server: Slack endpoints and the ingest API, with the jobs) and `tokenwise
scheduler` (the jobs alone)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Annotated

import typer

from bot.app import build_services, create_app
from bot.cli.digest import check_slack
from bot.cli.root import app, err, fail, open_engine, out, settings
from bot.jobs import build_scheduler
from bot.log_safety import access_log_config
from storage.db import WalCheckpointer


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    socket: Annotated[
        bool, typer.Option("--socket", help="Take Slack's requests over Socket Mode (SLACK_APP_TOKEN) instead of HTTP.")
    ] = False,
    no_scheduler: Annotated[
        bool,
        typer.Option(
            "--no-scheduler", help="Do not run background jobs here (digests, nudges, retention, usage pulls)."
        ),
    ] = False,
) -> None:
    """Serve the ingest API and Slack's endpoints over HTTP (or Slack over Socket Mode with --socket)."""
    import uvicorn

    from handlers.slack.app import SlackNotConfigured

    config = settings()
    if socket and not (config.slack_app_token or "").startswith("xapp-"):
        fail("Socket Mode needs SLACK_APP_TOKEN, an app-level token starting with xapp- (scope connections:write).")
    services = build_services(config, open_engine(config))
    try:
        api = create_app(services)
    except SlackNotConfigured as error:
        fail(str(error))
    if socket:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        bolt = getattr(api.state, "bolt", None)
        if bolt is None:
            fail("Socket Mode needs Slack settings: SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN.")
        handler = SocketModeHandler(bolt, config.slack_app_token)
        handler.connect()  # type: ignore[no-untyped-call]  # a background thread; Slack over WebSocket
        out.print("Slack connected over Socket Mode.")
    scheduler = None
    if not no_scheduler:
        scheduler = build_scheduler(services)
        scheduler.start()
        out.print("Scheduler running: digests, nudges, retention, usage pulls (`--no-scheduler` turns it off).")
    # Threads waiting on the database hand Python's GIL back within 1 ms instead of 5 ms of a thread that
    # parses a batch: the database's turn (SQLite's one writer) is not kept waiting (docs/performance.md).
    sys.setswitchinterval(0.001)
    checkpointer = WalCheckpointer(services.engine).start()  # SQLite: the WAL is copied back off-request
    out.print(f"Tokenwise listening on http://{host}:{port} (OpenAPI at /openapi.json)")
    try:
        # Access log lines name the path without its query string: a token pasted into a URL stays out of logs.
        uvicorn.run(api, host=host, port=port, log_level="info", log_config=access_log_config())
    finally:
        checkpointer.stop()
        if scheduler is not None:
            scheduler.shutdown(wait=False)


@app.command("scheduler")
def scheduler_command() -> None:
    """Run the scheduler alone (digests, nudges, retention), without the HTTP server."""
    from bot.app import build_services
    from bot.jobs import build_scheduler

    config = settings()
    check_slack(config)
    engine = open_engine(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    scheduler = build_scheduler(build_services(config, engine))
    scheduler.start()
    err.print("Tokenwise scheduler running (digests, nudges, retention, usage pulls); Ctrl-C stops it.")
    stop.wait()
    scheduler.shutdown(wait=True)
    engine.dispose()
