"""`tokenwise repo map`: which checkout folder is which GitHub repository, for linking merged pull requests."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from bot.cli.root import UserError, app, database, out
from storage.audit import record_event
from storage.models import RepoMapping

repo_app = typer.Typer(help="Repositories: which checkout folder is which GitHub repository.", no_args_is_help=True)
app.add_typer(repo_app, name="repo")


@repo_app.command("map")
def map_folder(
    folder: Annotated[str, typer.Argument(help="The checkout folder runs name (the last part of their path).")],
    repo: Annotated[str, typer.Argument(help="The GitHub repository it is, OWNER/NAME.")],
) -> None:
    """Say that runs in a checkout FOLDER work on the GitHub repository OWNER/NAME (when the folder is not named
    after the repository), so that its merged pull requests link to them."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
        raise UserError(f"'{repo}' is not OWNER/NAME.")
    name = folder.strip().strip("/\\")
    if not name or "/" in name or "\\" in name:
        raise UserError(f"'{folder}' is not a folder name; give only its last part, e.g. 'api' for ~/src/api.")
    with database() as session:
        mapping = session.get(RepoMapping, name.lower()) or RepoMapping(folder=name.lower(), repo=repo.lower())
        mapping.repo = repo.lower()
        session.add(mapping)
        record_event(session, actor="cli", action="repo.map", scope=f"repo:{repo.lower()}", detail=name.lower())
    out.print(f"Runs in folders named '{name}' now count as work on {repo.lower()}.", highlight=False)
