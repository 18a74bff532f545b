"""Every command group, imported so that each registers its commands on `bot.cli.root.app`."""

from bot.cli import (
    audit,
    console,
    db,
    digest,
    imports,
    outcomes,
    people,
    repo,
    report,
    retention,
    seed,
    serve,
    source,
    summary,
    team,
)

GROUPS = (
    audit,
    console,
    db,
    digest,
    imports,
    outcomes,
    people,
    repo,
    report,
    retention,
    seed,
    serve,
    source,
    summary,
    team,
)
