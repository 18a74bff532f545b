"""`tokenwise summary`: a manager's summary of their team, from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.root import app, open_engine, out, settings, user_errors
from storage.db import session_scope
from storage.models import id_of
from storage.people import find_person


@app.command("summary")
def summary_command(
    team: Annotated[str, typer.Option(help="The team's name.")],
    as_manager: Annotated[str, typer.Option("--as", help="The manager's email (the request is audited as theirs).")],
) -> None:
    """A manager's summary of their team, as `/tokenwise summary` would answer it."""
    from bot.summaries import build_summary_writer, request_summary
    from handlers.slack.blocks import summary_message
    from handlers.slack.terminal import terminal_lines

    config = settings()
    engine = open_engine(config)
    try:
        with user_errors():
            with session_scope(engine) as session:
                person = find_person(session, email=as_manager)
            result = request_summary(
                engine,
                requester_id=id_of(person),
                actor=f"cli:{person.email}",
                team_name=team,
                writer=build_summary_writer(config),
                settings=config,
            )
    finally:
        engine.dispose()
    for line in terminal_lines(summary_message(result).blocks):  # Slack's markup as terminal styles
        out.print(line, highlight=False)
    if result.refused:
        raise typer.Exit(2)
