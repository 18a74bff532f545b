"""`tokenwise serve` (the HTTP server: Slack endpoints and the ingest API, with the jobs) and `tokenwise
scheduler` (the jobs alone)."""

from __future__ import annotations

import errno
import logging
import signal
import socket as net
import sys
import threading
import time
from typing import Annotated, Any

import typer

from bot.app import build_services, build_watch, create_app
from bot.cli.digest import check_slack
from bot.cli.root import app, err, fail, open_engine, out, settings
from bot.health import UNKNOWN, UP
from bot.jobs import build_scheduler
from bot.log_safety import access_log_config
from storage.db import WalCheckpointer

log = logging.getLogger("tokenwise")


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
    listener = bind(host, port)  # before any job runs: a second `serve` on a taken port does nothing at all
    services = build_services(config, open_engine(config))
    services.health = build_watch(services)
    for line in services.health.check():  # Slack or the model down: one line each, and serve anyway
        err.print(f"[yellow]Warning:[/yellow] {line}", highlight=False, soft_wrap=True)
    if not config.public_url:
        err.print(
            "[yellow]Warning:[/yellow] TOKENWISE_PUBLIC_URL is not set: `/tokenwise connect` cannot tell people "
            "where to send usage. Set it to the address other machines reach this server at "
            "(e.g. https://tokenwise.example.com).",
            highlight=False,
            soft_wrap=True,
        )
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
        slack_down = services.health.state("slack") not in (None, UP, UNKNOWN)  # its warning said so already
        connect_socket_mode(handler, config.health_check_seconds, quiet=slack_down)
    services.health.start()
    scheduler = None
    if not no_scheduler:
        scheduler = build_scheduler(services)
        scheduler.start()
        out.print("Scheduler running: digests, nudges, retention, usage pulls (`--no-scheduler` turns it off).")
    # Threads waiting on the database hand Python's GIL back within 1 ms instead of 5 ms of a thread that
    # parses a batch: the database's turn (SQLite's one writer) is not kept waiting (docs/performance.md).
    sys.setswitchinterval(0.001)
    checkpointer = WalCheckpointer(services.engine).start()  # SQLite: the WAL is copied back off-request
    bound_host, bound_port = listener.getsockname()[:2]
    out.print(f"Tokenwise listening on http://{bound_host}:{bound_port} (OpenAPI at /openapi.json)", soft_wrap=True)
    try:
        # Access log lines name the path without its query string: a token pasted into a URL stays out of logs.
        server = uvicorn.Server(
            uvicorn.Config(api, host=host, port=port, log_level="info", log_config=access_log_config())
        )
        server.run(sockets=[listener])
    finally:
        checkpointer.stop()
        services.health.stop()
        if scheduler is not None:
            scheduler.shutdown(wait=False)


def connect_socket_mode(handler: Any, every_seconds: float, quiet: bool = False) -> None:
    """Slack over WebSocket; Slack unreachable is one warning line and a retry every `every_seconds` in the
    background, while ingest serves (`quiet`: the health check's warning already said Slack is down)."""
    try:
        handler.connect()  # a background thread; Slack over WebSocket
    except Exception:
        if not quiet:
            err.print(
                "[yellow]Warning:[/yellow] Socket Mode could not connect to Slack with SLACK_APP_TOKEN (SLACK_API_URL "
                f"unreachable or the token rejected); ingest and OTLP serve, retrying every {every_seconds:g} s.",
                highlight=False,
                soft_wrap=True,
            )

        def retry() -> None:
            while True:
                time.sleep(every_seconds)
                try:
                    handler.connect()
                except Exception:
                    continue
                log.warning("Slack connected over Socket Mode.")
                return

        threading.Thread(target=retry, name="socket-mode-connect", daemon=True).start()
        return
    out.print("Slack connected over Socket Mode.")


def bind(host: str, port: int) -> net.socket:
    """The listening socket, taken first; a port in use is one line and exit status 2."""
    family = net.AF_INET6 if ":" in host else net.AF_INET
    listener = net.socket(family, net.SOCK_STREAM)
    listener.setsockopt(net.SOL_SOCKET, net.SO_REUSEADDR, 1)  # not SO_REUSEPORT: a taken port stays taken
    try:
        listener.bind((host, port))
        listener.listen(2048)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            fail(f"port {port} is in use; pass --port")
        fail(f"Cannot listen on {host}:{port}: {error.strerror}")
    return listener


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
