"""`tokenwise serve`: the HTTP server (Slack endpoints and the ingest API) in one process."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.app import build_services, create_app
from bot.cli import app, open_engine, out, settings
from bot.scheduler import build_scheduler


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    no_scheduler: Annotated[
        bool, typer.Option("--no-scheduler", help="Do not run background jobs (e.g. the hourly OpenAI usage pull).")
    ] = False,
) -> None:
    """Serve the ingest API and Slack's endpoints over HTTP."""
    import uvicorn

    config = settings()
    services = build_services(config, open_engine(config))
    scheduler = None if no_scheduler else build_scheduler(services)
    if scheduler is not None:
        scheduler.start()
    out.print(f"Tokenwise listening on http://{host}:{port} (OpenAPI at /openapi.json)")
    try:
        uvicorn.run(create_app(services), host=host, port=port, log_level="info")
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)
