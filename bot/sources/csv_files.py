"""CSV files: usage records (`tokenwise import csv`) and the organisation's structure (`import org`).

Both are atomic: every line is checked first, any problem rejects the whole file with line-numbered
messages, and the write is one transaction. Re-importing the same file changes nothing.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from bot.periods import next_week_start
from storage.identities import LinkError, link_identity
from storage.ingest import BatchResult, ingest_usage
from storage.ingest_schemas import BatchInvalid, UsageIn, validate_batch
from storage.models import ROLES, Membership, Person, Team, id_of, utcnow
from storage.people import get_or_create_person, normalize_email
from storage.sources import internal_source

USAGE_COLUMNS = tuple(c for c in UsageIn.model_fields if c != "run_external_id")  # runs come over HTTP
USAGE_REQUIRED = ("dedupe_key", "occurred_at", "agent", "model", "input_tokens", "output_tokens")
INTEGER_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
ORG_COLUMNS = ("email", "team", "role")
ORG_OPTIONAL = ("github",)  # the person's GitHub login, linked as `tokenwise people link github` links it
GITHUB_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
SOURCE_NAME = "csv"
MAX_ERRORS_SHOWN = 20
CHUNK_ROWS = 5_000  # lines checked and written at a time: memory stays flat whatever the file's size


class CsvInvalid(ValueError):
    """The file was rejected whole; the message lists the problems by line number."""


def _rows(
    path: Path, allowed: tuple[str, ...], required: tuple[str, ...], progress: Callable[[int], None] | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, cells) of each line after the header, read as they come; `progress` gets the
    characters read, line by line (a file's size in bytes is the total, near enough for a progress bar)."""
    if not path.is_file():
        raise CsvInvalid(f"No file at '{path}'.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        lines: Iterable[str] = handle if progress is None else _counted(handle, progress)
        reader = csv.DictReader(lines)
        header = [h.strip() for h in reader.fieldnames or []]
        if not header:
            raise CsvInvalid(f"'{path}' is empty; the first line must name the columns: {', '.join(allowed)}.")
        unknown = [h for h in header if h not in allowed]
        missing = [c for c in required if c not in header]
        if unknown or missing:
            parts = []
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown column(s) {', '.join(unknown)}")
            raise CsvInvalid(f"line 1: {'; '.join(parts)}. Columns: {', '.join(allowed)}.")
        reader.fieldnames = header
        for row in reader:
            if None in row:
                raise CsvInvalid(f"line {reader.line_num}: more cells than columns.")
            yield reader.line_num, {k: (v or "").strip() for k, v in row.items()}


def _counted(lines: Iterable[str], progress: Callable[[int], None]) -> Iterator[str]:
    for line in lines:
        progress(len(line))
        yield line


def _raise_with_lines(errors: list[str], total: int) -> None:
    shown = errors[:MAX_ERRORS_SHOWN]
    more = f"\n... and {total - len(shown)} more" if total > len(shown) else ""
    raise CsvInvalid("Nothing was imported:\n" + "\n".join(shown) + more)


def _usage_chunks(
    path: Path, progress: Callable[[int], None] | None = None
) -> Iterator[tuple[list[int], list[dict[str, Any]]]]:
    """The file's usage lines as (line numbers, raw items), CHUNK_ROWS at a time."""
    lines: list[int] = []
    items: list[dict[str, Any]] = []
    for line, row in _rows(path, USAGE_COLUMNS, USAGE_REQUIRED, progress):
        item: dict[str, Any] = {}
        for column, value in row.items():
            if value == "":
                continue
            if column in INTEGER_COLUMNS and value.lstrip("-").isdigit() and len(value) <= 30:
                item[column] = int(value)
            else:
                item[column] = value
        lines.append(line)
        items.append(item)
        if len(items) == CHUNK_ROWS:
            yield lines, items
            lines, items = [], []
    if items:
        yield lines, items


def _validated(lines: list[int], items: list[dict[str, Any]], errors: list[str]) -> list[UsageIn]:
    """The chunk's records; each problem is added to `errors` as "line N, column C: message"."""
    try:
        return validate_batch("records", items)
    except BatchInvalid as invalid:
        errors.extend(f"line {lines[e['index']]}, column {e['field'] or '?'}: {e['message']}" for e in invalid.errors)
        return []


def check_usage_csv(path: Path, progress: Callable[[int], None] | None = None) -> int:
    """Every line checked, a chunk at a time (memory stays flat whatever the size); how many records.
    CsvInvalid names the first bad lines and columns, and how many more there are."""
    shown: list[str] = []
    problems = count = 0
    for lines, items in _usage_chunks(path, progress):
        errors: list[str] = []
        _validated(lines, items, errors)
        problems += len(errors)
        shown.extend(errors[: MAX_ERRORS_SHOWN - len(shown)])
        count += len(items)
    if problems:
        _raise_with_lines(shown, problems)
    return count


def read_usage_csv(path: Path) -> list[UsageIn]:
    """Every record of a (small) file, checked; CsvInvalid names each bad line and column."""
    errors: list[str] = []
    records = [record for lines, items in _usage_chunks(path) for record in _validated(lines, items, errors)]
    if errors:
        _raise_with_lines(errors, len(errors))
    return records


def import_usage_csv(
    session: Session,
    path: Path,
    checking: Callable[[int], None] | None = None,
    writing: Callable[[int], None] | None = None,
) -> BatchResult:
    """The whole file or nothing: every line is checked first (a pass that writes nothing), then written a
    chunk at a time inside the caller's one transaction, so memory stays flat and a failure leaves no part
    of the file behind. `checking` and `writing` get the characters each pass has read."""
    check_usage_csv(path, checking)
    source_id = id_of(internal_source(session, SOURCE_NAME, "csv"))
    total = BatchResult()
    first = 0
    for lines, items in _usage_chunks(path, writing):
        errors: list[str] = []
        records = _validated(lines, items, errors)
        if errors:  # the file changed between the passes
            raise CsvInvalid(f"'{path}' changed while it was imported; nothing was imported. Run it again.")
        result = ingest_usage(session, source_id, records, first)
        total.accepted += result.accepted
        total.duplicates += result.duplicates
        first += len(items)
    return total


@dataclass
class OrgSummary:
    people: int = 0
    teams_created: int = 0
    memberships_added: int = 0
    roles_changed: int = 0
    github_linked: int = 0  # GitHub logins linked by this import (already linked ones are not counted)
    github_logins: list[str] = field(default_factory=list)  # the logins this import linked (new links only)
    emails: list[str] = field(default_factory=list)  # the people this import created (known ones were matched)


@dataclass(frozen=True)
class OrgRow:
    line: int
    email: str
    team: str
    role: str
    github: str | None = None  # lower-cased


def read_org_csv(path: Path) -> list[OrgRow]:
    rows: list[OrgRow] = []
    errors: list[str] = []
    logins: dict[str, str] = {}  # login -> the email of the first line naming it
    for line, row in _rows(path, ORG_COLUMNS + ORG_OPTIONAL, ORG_COLUMNS):
        email, team, role = normalize_email(row["email"]), row["team"], row["role"].lower() or "member"
        github = row.get("github", "").removeprefix("@").lower() or None
        if github is not None and not GITHUB_LOGIN.match(github):
            errors.append(f"line {line}, column github: '{row['github']}' is not a GitHub login")
        elif github is not None and logins.setdefault(github, email) != email:
            errors.append(f"line {line}, column github: '{github}' is {logins[github]}'s on an earlier line")
        if "@" not in email or " " in email or len(email) > 320:
            errors.append(f"line {line}, column email: '{row['email']}' is not an email address")
        if not team or len(team) > 100:
            errors.append(f"line {line}, column team: give a team name of 1 to 100 characters")
        if role not in ROLES:
            errors.append(f"line {line}, column role: '{row['role']}' is not a role; use {' or '.join(ROLES)}")
        rows.append(OrgRow(line, email, team, role, github))
    if errors:
        _raise_with_lines(errors, len(errors))
    return rows


def import_org(
    session: Session, path: Path, default_tz: str = "UTC", with_history: bool = False, now: datetime | None = None
) -> OrgSummary:
    """People, teams and roles from (email, team, role[, github]) lines; adds and updates, never removes.

    Everyone added counts for their team from the next Monday in its time zone (`Membership.since`), so no
    window ever changed or already shown changes; `with_history` (a first set-up, before anything was
    shown) lets the members of teams this import creates count with their whole history. A `github` login
    is linked to the line's person (a login linked to someone else already rejects the file).
    """
    rows = read_org_csv(path)
    summary = OrgSummary()
    people: dict[str, int] = {}
    teams: dict[str, int] = {}
    founded: set[int] = set()  # teams this import creates
    now = now or utcnow()
    created: set[str] = set()
    linked_logins: set[str] = set()
    for row in rows:
        if row.email not in people:
            if session.exec(select(Person.id).where(Person.email == row.email)).first() is None:
                created.add(row.email)
            person = get_or_create_person(session, email=row.email)
            people[row.email] = id_of(person)
        if row.team not in teams:
            team = session.exec(select(Team).where(Team.name == row.team)).first()
            if team is None:
                team = Team(name=row.team)
                session.add(team)
                session.flush()
                summary.teams_created += 1
                founded.add(id_of(team))
            teams[row.team] = id_of(team)
        person_id, team_id = people[row.email], teams[row.team]
        if row.github is not None:
            try:
                linked = link_identity(session, "github", row.github, person_id)
            except LinkError as error:
                raise CsvInvalid(f"Nothing was imported:\nline {row.line}, column github: {error}") from error
            summary.github_linked += linked.created
            if linked.created:
                linked_logins.add(row.github)
        membership = session.exec(
            select(Membership).where(Membership.person_id == person_id, Membership.team_id == team_id)
        ).first()
        if membership is None:
            team_row = session.get(Team, team_id)
            tz = (team_row.timezone if team_row else None) or default_tz
            since = None if with_history and team_id in founded else next_week_start(now, tz)
            session.add(Membership(person_id=person_id, team_id=team_id, role=row.role, since=since))
            session.flush()
            summary.memberships_added += 1
        elif membership.role != row.role:
            membership.role = row.role
            session.add(membership)
            session.flush()
            summary.roles_changed += 1
    summary.people = len(people)
    # What may make a pull request someone's that was no one's: only these need settling again.
    summary.emails = sorted(created)
    summary.github_logins = sorted(linked_logins)
    return summary
