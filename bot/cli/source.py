"""`tokenwise source`: ingest sources and their bearer tokens (shown once, stored as a hash)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bot.cli.root import UserError, app, database, out, settings
from bot.sources.admin_api import VendorPull
from bot.sources.vendors import configured_pulls
from storage.github import unmatched_logins
from storage.identities import UnattributedIdentity, source_activity, unattributed_identities
from storage.models import VendorPullState
from storage.people import normalize_email
from storage.sources import (
    SOURCE_KINDS,
    SourceError,
    create_source,
    list_sources,
    revoke_source,
    source_people,
)
from storage.vendors import pull_states, unknown_people

source_app = typer.Typer(help="Ingest sources and their bearer tokens.", no_args_is_help=True)
app.add_typer(source_app, name="source")


@source_app.command("create")
def source_create(
    name: Annotated[str, typer.Argument(help="A name for the sender, e.g. claude-code-otel or ci.")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help=f"One of: {', '.join(SOURCE_KINDS)}. api: /v1/usage and /v1/runs; otlp: /v1/otlp/v1/*; "
            "github: a webhook secret for /v1/github/webhook instead of a token.",
        ),
    ] = "api",
    person: Annotated[
        str | None,
        typer.Option("--person", help="Limit the token to this person's data (their email); others are refused."),
    ] = None,
    outcomes: Annotated[
        bool,
        typer.Option("--outcomes", help="May send outcomes (/v1/outcomes; OTLP commit and pull-request counts)."),
    ] = False,
) -> None:
    """Create a source and print its bearer token (shown once; only a hash is stored), or for --kind github
    the webhook secret and what to set in GitHub."""
    with database() as session:
        try:
            created = create_source(session, name, kind, person_email=person, outcomes=outcomes)
        except SourceError as error:
            raise UserError(str(error)) from error
        scope = f", only {normalize_email(person)}'s data" if person else ""
        scope += ", outcomes too" if outcomes else ""
    if created.source.kind == "github":
        _print_github_setup(created.source.name, created.token)
        return
    out.print(
        f"Created source '{created.source.name}' ({created.source.kind}{scope}). Its token, shown only this once:"
    )
    print(created.token)
    out.print("Send it as 'Authorization: Bearer <token>'. Lost it? Revoke the source and create another.")


def _print_github_setup(name: str, secret: str) -> None:
    public_url = settings().public_url
    url = f"{(public_url or 'https://TOKENWISE-ADDRESS').rstrip('/')}/v1/github/webhook"
    if not public_url:
        out.print(
            "TOKENWISE_PUBLIC_URL is not set: put the address GitHub reaches this server at in place of "
            "https://TOKENWISE-ADDRESS below.",
            highlight=False,
        )
    out.print(f"Created source '{name}' (github). Its webhook secret, shown only this once:", highlight=False)
    print(secret)
    out.print(
        "Add a webhook to a repository or an organisation (Settings > Webhooks > Add webhook), or set it as your "
        "GitHub App's webhook:",
        highlight=False,
    )
    print(f"  Payload URL:   {url}")
    print("  Content type:  application/json")
    print("  Secret:        the secret above")
    print("  Events:        Pull requests, Pushes, Workflow runs, Check suites, Deployment statuses")
    out.print(
        "GitHub's ping should answer 200 (Recent Deliveries). Lost the secret? Revoke the source and create another.",
        highlight=False,
    )


@source_app.command("list")
def source_list() -> None:
    """Every source: its kind, whose data it may send, whether it may send outcomes and whether its token works
    (tokens are never shown). Personal tokens from `/tokenwise connect` are listed too."""
    with database() as session:
        sources = list_sources(session)
        people = source_people(session, sources)
    if not sources:
        out.print("No sources yet. Create one with `tokenwise source create NAME --kind KIND`.")
        return
    table = Table("name", "kind", "person", "personal", "outcomes", "created", "status")
    for source in sources:
        if source.token_hash is None and source.kind != "github":
            status = "importer (no token)"
        elif source.revoked_at:
            status = f"revoked {source.revoked_at:%Y-%m-%d %H:%M} UTC"
        else:
            status = "active"
        owner = people.get(source.person_id) if source.person_id is not None else None
        who = (owner.email or f"slack:{owner.slack_user_id}") if owner else "anyone"
        table.add_row(
            source.name,
            source.kind,
            who,
            "yes" if source.personal else "no",
            "yes" if source.outcomes else "no",
            f"{source.created_at:%Y-%m-%d}",
            status,
        )
    out.print(table)


@source_app.command("status")
def source_status(
    name: Annotated[str | None, typer.Argument(help="One source; default: every source.")] = None,
) -> None:
    """What each source sent: its records, the latest usage it reported, and the identities whose usage names
    nobody known (kept, never dropped), with the command that links each to its person."""
    config = settings()
    pulls = [pull for pull in configured_pulls(config) if not name or pull.name == name]
    with database(config) as session:
        activity = source_activity(session, name)
        loose = unattributed_identities(session, name)
        states = pull_states(session)
        strangers = {pull.name: unknown_people(session, pull.name) for pull in pulls}
        if name and not activity and not pulls:
            raise UserError(f"No source called '{name}'. `tokenwise source list` shows them.")
        shows_github = not name or any(item.kind == "github" for item in activity)
        logins = unmatched_logins(session) if shows_github else []
    if activity:
        table = Table("source", "kind", "records", "unattributed", "latest usage")
        for item in activity:
            when = f"{item.last_seen:%Y-%m-%d %H:%M} UTC" if item.last_seen else "nothing yet"
            table.add_row(item.name, item.kind, f"{item.records:,}", f"{item.unattributed:,}", when)
        out.print(table)
    if pulls:
        _print_pulls(pulls, states, loose, strangers)
    if logins:
        listed = ", ".join(f"{login} ({count:,} pull request{'' if count == 1 else 's'})" for login, count in logins)
        out.print(
            f"GitHub logins linked to nobody: {listed}. Their pull requests are kept and count once linked: "
            "`tokenwise people link github LOGIN EMAIL`, or a github column in `tokenwise import org`.",
            highlight=False,
        )
    if not loose:
        out.print("All usage names a known person.")
        return
    identities = Table("source", "identity", "records", "tokens", "known cost", "latest")
    for one in loose:
        who = f"{one.kind} {one.value}" if one.kind else "none (no email, no other identity)"
        cost = f"${one.cost_usd:,.2f}" if one.cost_usd is not None else "unknown"
        identities.add_row(one.source, who, f"{one.records:,}", f"{one.tokens:,}", cost, f"{one.last_seen:%Y-%m-%d}")
    out.print(identities)
    out.print(
        "Usage above names no known person. Link an identity to its person with "
        "`tokenwise people link KIND VALUE EMAIL`; with no identity, have the sender set "
        "OTEL_RESOURCE_ATTRIBUTES=user.email=... or use a personal token from `/tokenwise connect`."
    )


def _print_pulls(
    pulls: list[VendorPull],
    states: dict[str, VendorPullState],
    loose: list[UnattributedIdentity],
    strangers: dict[str, list[str]],
) -> None:
    """The vendor pulls whose key is set: last success, last error, and the people they name that nobody
    knows: identities linked to no one (kept as unattributed usage) and emails with no Slack user or team."""
    table = Table("vendor pull", "key", "last successful pull", "error", "unmatched people", title="Vendor pulls")
    for pull in pulls:
        state = states.get(pull.name)
        success = state.last_success_at if state else None
        when = f"{success:%Y-%m-%d %H:%M} UTC" if success else "never"
        error = (state.last_error or "") if state else "not pulled yet"
        unmatched = sorted(
            {f"{one.kind} {one.value}" if one.kind else "no identity" for one in loose if one.source == pull.name}
        )
        unmatched += [f"email {email} (no Slack user or team)" for email in strangers.get(pull.name, [])]
        table.add_row(
            f"{pull.label} ({pull.name})", pull.key_env, when, error or "none", ", ".join(unmatched) or "none"
        )
    out.print(table)
    if any(strangers.values()) or any(one.source in {p.name for p in pulls} for one in loose):
        out.print(
            "Unmatched people: `tokenwise people link KIND VALUE EMAIL` links an identity; an email counts once "
            "its person uses Slack or is in a team (`tokenwise import org`).",
            highlight=False,
        )


@source_app.command("revoke")
def source_revoke(name: Annotated[str, typer.Argument(help="The source's name (personal tokens too).")]) -> None:
    """Revoke a source's token at once (its data stays)."""
    with database() as session:
        before = next((s.revoked_at for s in list_sources(session) if s.name == name.strip()), None)
        source = revoke_source(session, name)
    if before is not None:
        out.print(f"'{source.name}' was already revoked on {before:%Y-%m-%d %H:%M} UTC; nothing changed.")
        return
    what = "deliveries signed with its webhook secret" if source.kind == "github" else "requests with its token"
    out.print(f"Revoked '{source.name}'; {what} now get 401.")
