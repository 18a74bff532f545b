"""`tokenwise seed`: a synthetic organisation for demos, tests and benchmarks."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bot.cli.root import UserError, app, err, open_engine, out, user_errors
from bot.periods import parse_date
from bot.seed import SeedError, seed_organisation


@app.command()
def seed(
    people: Annotated[int, typer.Option(help="How many people.")] = 40,
    teams: Annotated[int, typer.Option(help="How many teams.")] = 4,
    weeks: Annotated[int, typer.Option(help="How many weeks of history, ending today.")] = 6,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same organisation.")] = 1,
    end: Annotated[str | None, typer.Option(help="Last day of the history, YYYY-MM-DD. Default: today (UTC).")] = None,
    requests: Annotated[
        int, typer.Option(help="Usage records per agent call: 1 = session aggregates, more = per-request records.")
    ] = 1,
) -> None:
    """Fill an empty database with a realistic synthetic organisation (deterministic for a seed)."""
    engine = open_engine()
    try:
        with user_errors():
            last_day = parse_date(end, "--end date") if end else None
            if people < 1 or teams < 1 or weeks < 1 or requests < 1 or teams > people:
                raise UserError(
                    "--people, --teams, --weeks and --requests must be at least 1, with no more teams than people."
                )
            with Progress(
                TextColumn("[bold]Seeding"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("person-weeks"),
                TimeElapsedColumn(),
                console=err,
                transient=True,  # gone when done: the summary line (or the error) is what stays
            ) as bar:
                task = bar.add_task("seed", total=people * weeks)
                try:
                    summary = seed_organisation(
                        engine,
                        people,
                        teams,
                        weeks,
                        seed=seed,
                        end=last_day,
                        progress=lambda n: bar.advance(task, n),
                        requests_per_call=requests,
                    )
                except SeedError as error:
                    raise UserError(str(error)) from error
    finally:
        engine.dispose()
    out.print(
        f"Seeded {summary.people} people in {summary.teams} team{'' if summary.teams == 1 else 's'}: "
        f"{summary.runs:,} runs, {summary.usage_records:,} usage records, {summary.outcomes:,} outcomes, "
        f"{summary.annotations:,} annotations. Try: tokenwise report --person {summary.first_email}"
    )
