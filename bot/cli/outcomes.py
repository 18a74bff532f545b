"""`tokenwise outcomes explain`: why a pull request counts as an outcome (or does not), and for which runs."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.root import UserError, app, database, out, settings
from storage.audit import record_event
from storage.github import find_pull_request, settle_one
from storage.models import AgentRun, Person

outcomes_app = typer.Typer(help="Outcomes: why a pull request counts, and for which runs.", no_args_is_help=True)
app.add_typer(outcomes_app, name="outcomes")


@outcomes_app.command("explain")
def explain(
    url: Annotated[str, typer.Argument(help="The pull request's URL, e.g. https://github.com/o/r/pull/7.")],
) -> None:
    """Why a pull request is (or is not) an outcome, and which runs it is linked to, with the evidence.

    It is worked out again from everything GitHub sent, so what it prints is what the figures use."""
    config = settings()
    with database(config) as session:
        pr = find_pull_request(session, url)
        if pr is None:
            raise UserError(
                f"No pull request at '{url}' has reached Tokenwise; GitHub sends it once the webhook is set up "
                "(docs/ingest.md), or `tokenwise import github` fetches its history."
            )
        result = settle_one(session, pr.repo, pr.number, config.link_rules())
        record_event(session, actor="cli", action="outcomes.explain", scope=f"github:{pr.repo}#{pr.number}")
        author = session.get(Person, result.person_id) if result.person_id else None
        out.print(f"{pr.repo}#{pr.number}  {pr.url}", highlight=False)
        state = f"merged {pr.merged_at:%Y-%m-%d %H:%M} UTC" if pr.merged_at else "not merged"
        merged_by = f" by {pr.merged_by_login}" if pr.merged_by_login else ""
        out.print(f"  {state}{merged_by}; author {pr.author_login or '(unknown)'}", highlight=False)
        out.print(f"  person: {author.email if author else 'none: the GitHub login is linked to nobody'}")
        if pr.merged_at is not None:
            out.print(f"  evidence: {'yes' if result.evidence else 'no'}")
        trailer = f"yes ({result.agent_trailer})" if result.agent_trailer else "no"
        out.print(f"  agent trailer in its commits: {trailer}", highlight=False)
        out.print(f"  counts: {'yes' if result.reason == 'counted' else 'no: ' + result.reason}", highlight=False)
        if not result.links:
            out.print("  linked runs: none")
        for run_id, evidence, detail, active in result.links:
            run = session.get(AgentRun, run_id)
            started = f"{run.started_at:%Y-%m-%d %H:%M}" if run else "?"
            status = "" if active else "  [removed by the run's owner]"
            out.print(f"  run {run_id} ({started}): {evidence}, {detail}{status}", highlight=False)
