"""Agent runs as people review them: the unreviewed queue, annotations (one per run and person) and wins.

A person reviews only their own runs: a run's verdict is its owner's annotation, so accepting anyone
else's would let a colleague's opinion change that person's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit

from sqlalchemy import and_, exists, func, select, type_coerce
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from storage.github import links_of_runs
from storage.models import VERDICTS, AgentRun, Annotation, Outcome, UsageRecord, table_of
from storage.people import NotFound
from storage.types import NANO, ScaledDecimal

R = table_of(AgentRun).c
A = table_of(Annotation).c
U = table_of(UsageRecord).c
OC = table_of(Outcome).c

NOTE_MAX = 2000
LINK_MAX = 2000
VERDICT_LABELS = {"useful": "Useful", "partly": "Partly useful", "not_useful": "Not useful"}


# One answer for a run that is someone else's and for one that does not exist: a different sentence
# would tell whoever crafts button values which run ids exist (how many runs others have, and when).
NOT_YOURS = "You can only review your own runs; this one is not yours, or no longer exists."


class RunNotFound(NotFound):
    """The run does not exist (any more). Its message is NotYourRun's, on purpose."""

    def __init__(self) -> None:
        super().__init__(NOT_YOURS)


class NotYourRun(PermissionError):
    """Someone tried to review a run that belongs to another person."""

    def __init__(self) -> None:
        super().__init__(NOT_YOURS)


class AnnotationError(ValueError):
    """An annotation a user typed is not valid; the message says how to fix it."""


@dataclass(frozen=True)
class RunView:
    """A run as the reviewer sees it: what it was, what it cost, and their verdict so far."""

    id: int
    agent: str
    title: str | None
    repo: str | None
    started_at: datetime
    tokens: int
    cost_usd: Decimal | None  # None: no known cost
    outcomes: int
    verdict: str | None = None
    note: str | None = None
    link: str | None = None
    share_as_win: bool = False
    # Merged pull requests linked to the run (its owner may remove a wrong link): (outcome id, URL, evidence).
    pull_requests: list[tuple[int, str, str, bool]] = field(default_factory=list)  # outcome, URL, evidence, late

    @property
    def label(self) -> str:
        return self.title or f"{self.agent} run"


def _own_unreviewed(person_id: int) -> list:  # type: ignore[type-arg]
    reviewed = exists().where(A.run_id == R.id, A.person_id == R.person_id)
    return [R.person_id == person_id, ~reviewed]


def unreviewed_runs(session: Session, person_id: int, limit: int = 5) -> list[RunView]:
    """The person's latest runs that they have not yet reviewed, newest first."""
    ids = session.execute(
        select(R.id).where(*_own_unreviewed(person_id)).order_by(R.started_at.desc(), R.id.desc()).limit(limit)
    ).scalars()
    return _views(session, list(ids))


def count_unreviewed(
    session: Session, person_id: int, start: datetime | None = None, end: datetime | None = None
) -> int:
    """How many of the person's runs (started in [start, end) when given) await their review."""
    conditions = _own_unreviewed(person_id)
    if start is not None:
        conditions.append(R.started_at >= start)
    if end is not None:
        conditions.append(R.started_at < end)
    return int(session.execute(select(func.count()).select_from(table_of(AgentRun)).where(*conditions)).scalar_one())


def own_run(session: Session, run_id: int, person_id: int) -> RunView:
    """One run of the person with their verdict; refuses other people's runs.

    A missing run and someone else's are refused with the same sentence (NOT_YOURS), so a refusal
    never tells the caller whether that run id exists.
    """
    owner = session.execute(select(R.person_id).where(R.id == run_id)).scalar_one_or_none()
    if owner is None:
        raise RunNotFound()
    if owner != person_id:
        raise NotYourRun()
    return _views(session, [run_id])[0]


def shared_wins(session: Session, person_id: int, limit: int = 5) -> list[RunView]:
    """The person's own runs they chose to share as a win, most recently reviewed first."""
    ids = session.execute(
        select(R.id)
        .join(table_of(Annotation), and_(A.run_id == R.id, A.person_id == R.person_id))
        .where(R.person_id == person_id, A.share_as_win.is_(True))
        .order_by(A.updated_at.desc(), R.id.desc())
        .limit(limit)
    ).scalars()
    return _views(session, list(ids))


def clean_link(link: str | None) -> str | None:
    """An http(s) link or None; anything else is refused with a sentence."""
    link = (link or "").strip()
    if not link:
        return None
    parts = urlsplit(link)
    if parts.scheme not in {"http", "https"} or not parts.netloc or any(c.isspace() for c in link):
        raise AnnotationError("The link must be a web address starting with https:// (or http://).")
    if len(link) > LINK_MAX:
        raise AnnotationError(f"The link is {len(link)} characters; the most is {LINK_MAX}.")
    # In Slack's <url|label> a "|" in the url would start the label: stored percent-encoded, the same address.
    return link.replace("|", "%7C")


def clean_note(note: str | None) -> str | None:
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise AnnotationError(f"The note is {len(note)} characters; the most is {NOTE_MAX}.")
    return note or None


def annotate_run(
    session: Session,
    run_id: int,
    person_id: int,
    verdict: str,
    note: str | None = None,
    link: str | None = None,
    share_as_win: bool = False,
    *,
    keep_details: bool = False,
    now: datetime | None = None,
) -> Annotation:
    """Record (or change) the person's verdict on their own run.

    With keep_details, an existing note, link and "share as a win" stay as they are (a button click
    changes only the verdict); otherwise they are replaced by what is given.
    """
    if verdict not in VERDICTS:
        raise AnnotationError(f"Unknown verdict '{verdict}'; use one of {', '.join(VERDICTS)}.")
    note, link = clean_note(note), clean_link(link)
    own_run(session, run_id, person_id)
    now = now or datetime.now(UTC)
    changed = ["verdict", "updated_at"] if keep_details else ["verdict", "note", "link", "share_as_win", "updated_at"]
    table = table_of(Annotation)
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(table).values(
        run_id=run_id,
        person_id=person_id,
        verdict=verdict,
        note=note,
        link=link,
        share_as_win=share_as_win,
        created_at=now,
        updated_at=now,
    )
    # One statement, so two quick clicks can never both insert (the unique key would refuse the second).
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[A.run_id, A.person_id], set_={name: statement.excluded[name] for name in changed}
        )
    )
    stored: Annotation = session.execute(
        select(Annotation).where(A.run_id == run_id, A.person_id == person_id).execution_options(populate_existing=True)
    ).scalar_one()
    return stored


def _views(session: Session, run_ids: list[int]) -> list[RunView]:
    if not run_ids:
        return []
    usage = {
        row[0]: (int(row[1]), row[2], int(row[3]))
        for row in session.execute(
            select(
                U.run_id,
                func.coalesce(
                    func.sum(U.input_tokens + U.output_tokens + U.cache_read_tokens + U.cache_write_tokens), 0
                ),
                type_coerce(func.sum(U.cost_usd), ScaledDecimal(NANO)),
                func.count(U.id),
            )
            .where(U.run_id.in_(run_ids))
            .group_by(U.run_id)
        )
    }
    outcomes = {
        run_id: int(n)
        for run_id, n in session.execute(
            select(OC.run_id, func.count(OC.id)).where(OC.run_id.in_(run_ids)).group_by(OC.run_id)
        )
    }
    rows = session.execute(
        select(R.id, R.agent, R.title, R.repo, R.started_at, A.verdict, A.note, A.link, A.share_as_win)
        .outerjoin(table_of(Annotation), and_(A.run_id == R.id, A.person_id == R.person_id))
        .where(R.id.in_(run_ids))
    ).all()
    by_id = {row[0]: row for row in rows}
    linked = links_of_runs(session, run_ids)
    views = []
    for run_id in run_ids:
        row = by_id[run_id]
        tokens, cost, _records = usage.get(run_id, (0, None, 0))
        views.append(
            RunView(
                id=row[0],
                agent=row[1],
                title=row[2],
                repo=row[3],
                started_at=row[4],
                tokens=tokens,
                cost_usd=cost,
                outcomes=int(outcomes.get(run_id, 0)),
                verdict=row[5],
                note=row[6],
                link=row[7],
                share_as_win=bool(row[8]),
                pull_requests=linked.get(run_id, []),
            )
        )
    return views
