"""`tokenwise console`: try the Slack app in a terminal, with no Slack account."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from sqlmodel import select

from bot.cli.root import app, open_engine, out, settings
from bot.devtools.console import ConsoleLoop, console_app, line_reader, slack_user_id_for
from storage.db import session_scope
from storage.models import Person
from storage.people import NotFound, find_person


@app.command()
def console(
    as_email: Annotated[
        str | None, typer.Option("--as", help="Act as the person with this email. Default: the first person.")
    ] = None,
) -> None:
    """A Slack-like console: /tokenwise commands, buttons and the App Home, rendered in the terminal.

    With input from a pipe it runs one command a line and exits at the end of input:
    echo '/tokenwise me' | tokenwise console --as ada@example.com
    """
    config = settings()
    engine = open_engine(config)
    try:
        with session_scope(engine) as session:
            if as_email:
                try:
                    person: Person | None = find_person(session, email=as_email)
                except NotFound as error:
                    out.print(f"[red]Error:[/red] {error} Use the email of someone with usage.", highlight=False)
                    raise typer.Exit(2) from error
            else:
                person = session.exec(select(Person).order_by(Person.id)).first()  # type: ignore[arg-type]
            email = (person.email if person else None) or as_email or "you@example.com"
            user = {
                "id": (person.slack_user_id if person else None) or slack_user_id_for(email),
                "email": email,
                "name": (person.display_name if person else None) or email.split("@")[0],
                "tz": person.timezone if person else "UTC",
            }
        interactive = sys.stdin.isatty()
        out.print(f"Acting as [bold]{user['name']}[/bold] <{email}> (Slack user {user['id']}).", highlight=False)
        with console_app(config, engine, user) as slack:
            ConsoleLoop(slack, out, line_reader(sys.stdin, out, interactive)).run()
    finally:
        engine.dispose()
