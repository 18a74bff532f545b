"""`tokenwise import`: one-off imports from files and vendor APIs (safe to run again).

Each command imports its importer when it runs, so that one import does not wait for the libraries of the
others (the OpenAI and GitHub clients): `tokenwise import claude-code` is a hot path for every team
onboarding its history, and its start-up is part of its time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bot.cli.root import UserError, app, database, fail, open_engine, out, settings, today_utc, user_errors
from bot.periods import parse_date

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bot.config import Settings
    from bot.github.backfill import BackfillSummary
    from bot.sources.admin_api import Progress as PullProgress
    from bot.sources.admin_api import VendorPull

# A vendor import's work: (settings, engine, first day, last day, progress) -> the line to print when done.
VendorWork = Callable[["Settings", "Engine", date, date, "PullProgress"], str]

import_app = typer.Typer(help="Import usage from files and APIs (safe to run again).", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("claude-code")
def import_claude_code(
    email: Annotated[str, typer.Option("--email", help="Whose logs these are.")],
    path: Annotated[
        Path | None,
        typer.Argument(
            help="~/.claude or its projects folder; default: CLAUDE_CONFIG_DIR, ~/.config/claude, ~/.claude."
        ),
    ] = None,
) -> None:
    """Claude Code's local session logs: one run per session, one usage record per API call."""
    from bot.sources.claude_code import LogsNotFound, default_folders, find_logs, import_logs
    from bot.sources.forked import ReaderEnded

    config = settings()
    if "@" not in email:
        fail(f"'{email}' is not an email address; pass --email you@company.com.")
    engine = open_engine(config)
    try:
        with user_errors():
            try:
                folders = [path] if path else default_folders()
                files, size = find_logs(*folders)
            except LogsNotFound as error:
                raise UserError(str(error)) from error
            columns = (TextColumn("Reading logs"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
            # Drawn as the reading advances, not by a thread of its own: the reading processes fork from a
            # process of one thread.
            with Progress(*columns, console=out, transient=True, auto_refresh=False) as progress:
                task = progress.add_task("logs", total=size)
                try:
                    summary = import_logs(
                        engine,
                        folders,
                        email,
                        config.weight_for,
                        lambda n: progress.update(task, advance=n, refresh=True),
                        rules=config.link_rules(),
                        files=files,
                    )
                except (OSError, ReaderEnded) as error:  # a log gone or unreadable mid-import, a reader killed
                    what = (
                        f"Could not read {error.filename}: {error.strerror}"
                        if isinstance(error, OSError)
                        else str(error)
                    )
                    raise UserError(
                        f"{what}. What was read before it is imported; run the import again to finish"
                        " (nothing is added twice)."
                    ) from error
    finally:
        engine.dispose()
    out.print(
        f"Imported {summary.written} new usage records from {summary.files} files ({summary.sessions} sessions); "
        f"{summary.duplicates} already known or streamed repeats; {summary.malformed} malformed lines skipped."
        + (
            f" {summary.pull_requests_settled} merged pull requests settled again for these sessions' branches."
            if summary.pull_requests_settled
            else ""
        )
    )


@import_app.command("openai-usage")
def import_openai_usage(
    since: Annotated[str, typer.Option("--since", help="First day, YYYY-MM-DD.")],
    until: Annotated[str | None, typer.Option("--until", help="Last day, YYYY-MM-DD. Default: today.")] = None,
) -> None:
    """OpenAI's organisation Usage API (needs OPENAI_ADMIN_KEY; OPENAI_ADMIN_BASE_URL to point elsewhere)."""
    from bot.sources.admin_api import AdminApiError
    from bot.sources.openai_usage import build_admin_client, pull_usage

    config = settings()
    client = build_admin_client(config)
    if client is None:
        fail("Set OPENAI_ADMIN_KEY to an OpenAI admin key (Settings > Organization > Admin keys).")
    engine = open_engine(config)
    try:
        with user_errors():
            first = parse_date(since, "--since date")
            last = parse_date(until, "--until date") if until else today_utc()
            if last < first:
                raise UserError("--until is before --since.")
            try:
                summary = pull_usage(client, engine, first, last, config.weight_for)
            except AdminApiError as error:
                raise UserError(str(error)) from error
    finally:
        engine.dispose()
    out.print(
        f"Imported {summary.records} (day, user, model) buckets from {summary.pages} pages; "
        f"{summary.unattributed} results had no known user and were skipped."
    )


@import_app.command("claude-code-analytics")
def import_claude_code_analytics(
    since: Annotated[str, typer.Option("--since", help="First UTC day, YYYY-MM-DD.")],
    until: Annotated[str | None, typer.Option("--until", help="Last UTC day, YYYY-MM-DD. Default: today.")] = None,
) -> None:
    """Anthropic's Claude Code Analytics API: every person's Claude Code tokens, estimated cost, commits, pull
    requests and edit decisions per day (needs ANTHROPIC_ADMIN_KEY; ANTHROPIC_API_URL to point elsewhere)."""
    from bot.sources import claude_code_analytics as analytics

    def work(config: Settings, engine: Engine, first: date, last: date, progress: PullProgress) -> str:
        pulled = analytics.pull(config, engine, first, last, progress)
        unnamed = f"; {pulled.skipped} records named nobody and were skipped" if pulled.skipped else ""
        return f"Imported {pulled.describe()}{unnamed}. `tokenwise source status` lists anyone not yet matched."

    run_vendor_import(analytics.PULL, since, until, work)


@import_app.command("anthropic-cost")
def import_anthropic_cost(
    since: Annotated[str, typer.Option("--since", help="First UTC day, YYYY-MM-DD.")],
    until: Annotated[str | None, typer.Option("--until", help="Last UTC day, YYYY-MM-DD. Default: today.")] = None,
) -> None:
    """Anthropic's Usage & Cost API: what the organisation was billed per day, model, workspace and line item,
    and the tokens billed (needs ANTHROPIC_ADMIN_KEY). Billed cost is never added to usage: see
    `tokenwise report --reconcile`."""
    from bot.sources import anthropic_cost

    def work(config: Settings, engine: Engine, first: date, last: date, progress: PullProgress) -> str:
        return f"Imported {anthropic_cost.pull(config, engine, first, last, progress).describe()}."

    run_vendor_import(anthropic_cost.PULL, since, until, work)


@import_app.command("github")
def import_github(
    repo: Annotated[str, typer.Option("--repo", help="The repository, OWNER/NAME.")],
    since: Annotated[str, typer.Option("--since", help="Pull requests merged on or after this day, YYYY-MM-DD (UTC).")],
) -> None:
    """Merged pull requests and their commits from GitHub's REST API, settled into outcomes (needs GITHUB_TOKEN;
    GITHUB_API_URL for GitHub Enterprise Server). Safe to run again, and beside the webhook."""
    import asyncio

    from bot.github.backfill import REPO, GitHubUnavailable, import_history

    config = settings()
    repo = repo.strip()
    if not REPO.match(repo):
        fail(f"'{repo}' is not a repository; pass --repo OWNER/NAME, for example --repo acme/payments.")
    if not config.github_token:
        fail(f"Set GITHUB_TOKEN to a GitHub token that can read {repo}'s pull requests.")
    with user_errors():
        day = parse_date(since, "--since date")
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    engine = open_engine(config)
    try:
        with user_errors():
            columns = (TextColumn("Pull requests"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=out, transient=True) as progress:
                task = progress.add_task("pulls", total=None)

                def advance(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total)

                def notice(message: str) -> None:
                    progress.console.print(message, highlight=False, soft_wrap=True)

                try:
                    summary = asyncio.run(import_history(config, engine, repo, start, advance, notice))
                except GitHubUnavailable as error:
                    raise UserError(str(error)) from error
    finally:
        engine.dispose()
    out.print(_github_summary(repo, day.isoformat(), summary), highlight=False, soft_wrap=True)


def _github_summary(repo: str, since: str, summary: BackfillSummary) -> str:
    line = (
        f"{repo} since {since}: {summary.closed} pull requests closed, {summary.merged} merged, "
        f"{summary.commits} commits; {summary.linked} linked to agent runs, {summary.assisted} agent-assisted, "
        f"{summary.counted} counted."
    )
    if summary.unknown_logins:
        logins = ", ".join(sorted(summary.unknown_logins)[:5]) + (", ..." if len(summary.unknown_logins) > 5 else "")
        line += (
            f" {summary.unknown_author} by GitHub logins linked to no one ({logins}): "
            "tokenwise people link github LOGIN EMAIL, then run this again."
        )
    return line


@import_app.command("csv")
def import_csv(
    file: Annotated[Path, typer.Argument(help="A CSV of usage records (columns in docs/ingest.md).")],
) -> None:
    """Usage records from a CSV file: all lines or none (checked first, then written in one transaction)."""
    from bot.sources.csv_files import CsvInvalid, import_usage_csv

    size = file.stat().st_size if file.is_file() else None
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with database() as session, Progress(*columns, console=out, transient=True) as progress:
        checking = progress.add_task("Checking", total=size)
        writing = progress.add_task("Writing", total=size, start=False)

        def wrote(n: int) -> None:
            progress.start_task(writing)
            progress.advance(writing, n)

        try:
            result = import_usage_csv(session, file, lambda n: progress.advance(checking, n), wrote)
        except CsvInvalid as error:
            raise UserError(str(error)) from error
    out.print(f"Imported {result.accepted} usage records; {result.duplicates} were already there.")


@import_app.command("org")
def import_org_csv(
    file: Annotated[Path, typer.Argument(help="A CSV with columns email, team, role and optionally github.")],
    with_history: Annotated[
        bool,
        typer.Option(
            "--with-history",
            help="Members of teams this file creates count with their whole history (first set-up only).",
        ),
    ] = False,
) -> None:
    """People, teams and roles (member or manager) from a CSV file, and each person's GitHub login (an optional
    github column): all lines or none.

    New members count for their team from next Monday in its time zone, so no week already shown changes. A
    GitHub login is linked to its person as `tokenwise people link github LOGIN EMAIL` links it."""
    from bot.sources.csv_files import CsvInvalid, import_org
    from storage.github import settle_for_identities

    config = settings()
    with database(config) as session:
        try:
            summary = import_org(session, file, config.timezone, with_history)
        except CsvInvalid as error:
            raise UserError(str(error)) from error
        # Pull requests their logins or emails name are settled again, in the same transaction: runs link now.
        settled = settle_for_identities(session, summary.github_logins, summary.emails, config.link_rules())
    linked = f", {summary.github_linked} GitHub logins linked" if summary.github_linked else ""
    linked += f", {settled} pull requests settled again" if settled else ""
    out.print(
        f"{summary.people} people; {summary.teams_created} new teams, {summary.memberships_added} new memberships, "
        f"{summary.roles_changed} roles changed{linked}."
    )


def run_vendor_import(pull: VendorPull, since: str, until: str | None, work: VendorWork) -> None:
    """What every `tokenwise import VENDOR --since DATE [--until DATE]` shares: the key checked (a one-line
    error naming its variable), the dates parsed, a progress bar while `work` pulls, and its failures said in
    one line (a refused key names the variable to fix)."""
    from bot.sources.admin_api import AdminApiError

    config = settings()
    if not pull.configured(config):
        fail(f"Set {pull.key_env} to {pull.key_help}.")
    engine = open_engine(config)
    try:
        with user_errors():
            first = parse_date(since, "--since date")
            last = parse_date(until, "--until date") if until else today_utc()
            if last < first:
                raise UserError("--until is before --since.")
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=out, transient=True) as bar:
                task = bar.add_task(pull.label, total=None)

                def progress(done: int, total: int | None, what: str) -> None:
                    bar.update(task, completed=done, total=total, description=what or pull.label)

                try:
                    said = work(config, engine, first, last, progress)
                except AdminApiError as error:
                    raise UserError(str(error)) from error
    finally:
        engine.dispose()
    out.print(said, highlight=False)


@import_app.command("cursor")
def import_cursor(
    since: Annotated[str, typer.Option("--since", help="First day, YYYY-MM-DD (UTC).")],
    until: Annotated[str | None, typer.Option("--until", help="Last day, YYYY-MM-DD. Default: today.")] = None,
) -> None:
    """Cursor's Admin API: each person's daily requests (tokens unknown) and, on a pull reaching today, their
    spend in the billing cycle (needs CURSOR_ADMIN_KEY; CURSOR_API_URL to point elsewhere). Safe to run again."""
    from bot.sources import cursor_admin

    def work(config: Settings, engine: Engine, first: date, last: date, progress: PullProgress) -> str:
        api = cursor_admin.build_api(config)
        assert api is not None  # run_vendor_import checked the key
        with api:
            summary = cursor_admin.pull(api, engine, config, first, last, progress=progress)
        skipped = f" {summary.skipped} rows without a day or a spend were skipped." if summary.skipped else ""
        return f"Cursor {first.isoformat()} to {last.isoformat()}: {summary.describe()}.{skipped}"

    run_vendor_import(cursor_admin.PULL, since, until, work)


@import_app.command("copilot")
def import_copilot(
    since: Annotated[str, typer.Option("--since", help="First day, YYYY-MM-DD (UTC).")],
    until: Annotated[str | None, typer.Option("--until", help="Last day, YYYY-MM-DD. Default: today.")] = None,
) -> None:
    """GitHub Copilot's per-user daily reports (needs TOKENWISE_COPILOT_ORG and GITHUB_TOKEN, or
    TOKENWISE_COPILOT_GITHUB_TOKEN, with the organisation's Copilot metrics permission). Safe to run again."""
    from bot.sources import copilot_metrics

    missing = copilot_metrics.missing_setting(settings())
    if missing:
        fail(missing)

    def work(config: Settings, engine: Engine, first: date, last: date, progress: PullProgress) -> str:
        apis = copilot_metrics.build_apis(config)
        assert apis is not None  # missing_setting said nothing is missing
        with apis:
            summary = copilot_metrics.pull(apis, engine, config, first, last, progress)
        line = f"Copilot {first.isoformat()} to {last.isoformat()}: {summary.describe()}."
        if summary.unmatched:
            logins = sorted(summary.unmatched)
            shown = ", ".join(logins[:5]) + (", ..." if len(logins) > 5 else "")
            line += f" Kept for: {shown}; `tokenwise people link github LOGIN EMAIL` moves their days to them."
        return line

    run_vendor_import(copilot_metrics.PULL, since, until, work)
