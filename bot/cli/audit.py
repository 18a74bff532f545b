"""`tokenwise audit`: who looked at which scope, and when."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.root import app, database, out, print_json
from storage.audit import list_events


@app.command("audit")
def audit_command(
    limit: Annotated[int, typer.Option(help="How many events, newest first.", min=1, max=10_000)] = 100,
    action: Annotated[str | None, typer.Option(help="Only actions starting with this, e.g. summary.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Who looked at which scope, and when: summaries, team views, previews, forget-me."""
    with database() as session:
        events = list_events(session, limit=limit, action=action)
    rows = [
        {
            "at": e.occurred_at.isoformat(),
            "actor": e.actor,
            "action": e.action,
            "scope": e.scope,
            "detail": e.detail,
        }
        for e in events
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("No audit events yet.")
    for row in rows:
        detail = f" — {row['detail']}" if row["detail"] else ""
        out.print(f"{row['at']}  {row['actor']}  {row['action']}  {row['scope']}{detail}", highlight=False)
