"""`tokenwise people`: who is who, as operators say it (identities a source carries, linked to people)."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.root import UserError, app, database, out, settings
from storage.audit import record_event
from storage.github import settle_for_identities
from storage.identities import LinkError, link_identity
from storage.models import IDENTITY_KINDS, id_of
from storage.people import get_or_create_person, normalize_email

people_app = typer.Typer(help="People: link the identities sources carry to the people they are.", no_args_is_help=True)
app.add_typer(people_app, name="people")


@people_app.command("link")
def link_command(
    kind: Annotated[str, typer.Argument(help=f"The identity's kind: {', '.join(IDENTITY_KINDS)}.")],
    value: Annotated[str, typer.Argument(help="The identity, as the source sends it (e.g. an account uuid).")],
    email: Annotated[str, typer.Argument(help="Whose it is.")],
) -> None:
    """Say that an identity is a person's: its unattributed usage becomes theirs, and so does what comes next.

    `tokenwise source status` lists the identities with unattributed usage. Identities are linked only here,
    never because they appear together in data a source sent."""
    config = settings()
    settled = 0
    with database(config) as session:
        if "@" not in email:
            raise UserError(f"'{email}' is not an email address; give the person's email.")
        person = get_or_create_person(session, email=normalize_email(email))
        try:
            linked = link_identity(session, kind, value, id_of(person))
        except LinkError as error:
            raise UserError(str(error)) from error
        if kind == "github":  # their pull requests are settled again: their runs link now
            settled = settle_for_identities(session, [value], [], config.link_rules())
        record_event(session, actor="cli", action="people.link", scope=f"person:{id_of(person)}", detail=f"{kind}")
    noun = "record" if linked.moved == 1 else "records"
    prs = f"; {settled} pull request{'s' if settled != 1 else ''} settled again" if kind == "github" else ""
    out.print(f"Linked {kind} {value} to {person.email}; {linked.moved} unattributed usage {noun} moved to them{prs}.")
