"""`tokenwise serve`: the HTTP server (Slack endpoints and the ingest API) in one process."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.app import build_services, create_app
from bot.cli import app, open_engine, out, settings


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
) -> None:
    """Serve the ingest API and Slack's endpoints over HTTP."""
    import uvicorn

    config = settings()
    services = build_services(config, open_engine(config))
    out.print(f"Tokenwise listening on http://{host}:{port} (OpenAPI at /openapi.json)")
    uvicorn.run(create_app(services), host=host, port=port, log_level="info")
