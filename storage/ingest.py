"""Validate and write ingest batches: all of a batch or none of it, and never a record twice.

Every write is an `INSERT ... ON CONFLICT DO NOTHING` on the natural key (source + dedupe key or
external id), so a re-sent batch, or two overlapping batches racing each other, end with exactly the
distinct records. Totals that a source re-reports as they grow (OTLP cumulative sums, OpenAI daily
buckets) are merged with `ON CONFLICT DO UPDATE` instead, so the latest running total wins.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy import (
    BigInteger,
    Engine,
    String,
    Subquery,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from storage.daily_usage import DAILY_KINDS, SESSION_KINDS, settle_days, utc_day
from storage.db import session_scope, sqlite_writer
from storage.github import LateWatch, LinkRules, record_run_commits, relink_runs, watch_late_usage
from storage.identities import keep_unattributed, linked_people
from storage.ingest_schemas import (
    BatchInvalid,
    BatchKind,
    OutcomeIn,
    RunIn,
    SeenOutcome,
    SeenRun,
    SeenUsage,
    Telemetry,
    UsageIn,
    UsageJson,
    batch_error,
    validate_batch,
)
from storage.models import AgentRun, Outcome, Person, Source, UsageRecord, id_of, table_of
from storage.people import get_or_create_person, normalize_email, slack_id_mismatches
from storage.types import UTCDateTime
from storage.upsert import (
    _greatest,
    column_processors,
    dialect_insert,
    execute_many,
    insert_new,
    insert_values,
    lookup,
    merge_usage_totals,
)

USAGE = table_of(UsageRecord)
RUNS = table_of(AgentRun)
OUTCOMES = table_of(Outcome)

T = TypeVar("T")


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    notes: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, int]:
        return {"accepted": self.accepted, "duplicates": self.duplicates}


class PersonCache:
    """Resolve people once per batch (unknown people are created, to be linked to Slack later)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._ids: dict[tuple[str | None, str | None], int] = {}

    def preload(self, people: Iterable[tuple[str | None, str | None]]) -> None:
        """Resolve everyone up front in one sorted order, so concurrent batches lock people in the same order."""
        wanted = sorted(set(people), key=lambda p: (p[0] or "", p[1] or ""))
        self._known(wanted)
        for email, slack_user_id in wanted:
            self.id_for(email, slack_user_id)

    def find(self, people: Iterable[tuple[str | None, str | None]]) -> dict[tuple[str | None, str | None], int]:
        """The ids of those of `people` who exist already (named by email alone, or Slack id alone); reads only."""
        self._known(sorted(set(people), key=lambda p: (p[0] or "", p[1] or "")))
        return dict(self._ids)

    def _known(self, wanted: Sequence[tuple[str | None, str | None]]) -> None:
        """People named by email alone (or Slack id alone) who exist already, found in one query per column.

        For them get_or_create_person would only read, so this gives the same ids with two queries per
        batch instead of one per person; everyone else still goes through get_or_create_person.
        """
        for column, position in (("email", 0), ("slack_user_id", 1)):
            keys: dict[str, tuple[str | None, str | None]] = {}
            for key in wanted:
                name, other = key[position], key[1 - position]
                if name and not other and key not in self._ids:
                    keys[normalize_email(name) if position == 0 else name] = key
            for name, person_id in lookup(self.session, "person", column, ["id"], sorted(keys)):
                self._ids[keys[name]] = person_id

    def id_for(self, email: str | None, slack_user_id: str | None) -> int:
        key = (email, slack_user_id)
        if key not in self._ids:
            if self.session.get_bind().dialect.name != "postgresql":  # SQLite writers take turns (BEGIN IMMEDIATE)
                person = get_or_create_person(self.session, email=email, slack_user_id=slack_user_id)
            else:
                try:
                    with self.session.begin_nested():  # a concurrent batch may be creating this person too
                        person = get_or_create_person(self.session, email=email, slack_user_id=slack_user_id)
                except IntegrityError:  # it won, and has committed: use its row
                    person = get_or_create_person(self.session, email=email, slack_user_id=slack_user_id)
            self._ids[key] = id_of(person)
        return self._ids[key]


class _NamesPerson(Protocol):
    email: str | None
    slack_user_id: str | None


def check_slack_ids(session: Session, items: Sequence[_NamesPerson], first_index: int = 0) -> None:
    """BatchInvalid for every item whose `slack_user_id` is not the one Slack bound to its email's person.

    Only a signed Slack request binds a Slack id to a person (storage.people.bind_slack_user); a source
    may repeat that binding, never make or change it. A Slack id sent without an email is taken as it is.
    """
    pairs = [(email, slack_id) for item in items if (email := item.email) and (slack_id := item.slack_user_id)]
    wrong = slack_id_mismatches(session, pairs)
    if not wrong:
        return
    errors = [
        batch_error(
            first_index + index,
            "slack_user_id",
            f"'{item.slack_user_id}' is not the Slack user bound to {item.email}; send the email alone "
            "(Tokenwise learns a Slack id when its owner first uses /tokenwise)",
        )
        for index, item in enumerate(items)
        if item.email and item.slack_user_id and (normalize_email(item.email), item.slack_user_id) in wrong
    ]
    raise BatchInvalid(errors)


def run_ids(session: Session, source_id: int, external_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
    """external id -> (run id, person id) for this source's runs."""
    found = lookup(session, "agent_run", "external_id", ["id", "person_id"], sorted(set(external_ids)), source_id)
    return {external_id: (run_id, person_id) for external_id, run_id, person_id in found}


def _missing_runs(items: Sequence[UsageIn | UsageJson | OutcomeIn], known: Mapping[str, Any], first_index: int) -> None:
    errors = [
        batch_error(
            first_index + index,
            "run_external_id",
            f"no run '{item.run_external_id}' from this source; send it to /v1/runs first",
        )
        for index, item in enumerate(items)
        if item.run_external_id is not None and item.run_external_id not in known
    ]
    if errors:
        raise BatchInvalid(errors)


USAGE_COLUMNS = (
    "source_id",
    "person_id",
    "run_id",
    "occurred_at",
    "agent",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "dedupe_key",
    "cost_source",
)
PERSON = USAGE_COLUMNS.index("person_id")
OCCURRED = USAGE_COLUMNS.index("occurred_at")
COST = USAGE_COLUMNS.index("cost_usd")


@dataclass
class UsagePlan:
    """A usage batch ready to write: values converted for the database, runs and known people resolved.

    Everything here is read, so it is done before the write transaction (`write_prepared`), and on SQLite
    outside the one writer's turn: the turn then holds only the INSERT and any new people.
    """

    values: list[list[Any]]
    new_people: dict[tuple[str | None, str | None], list[int]]  # person -> their rows, when not found
    late: LateWatch | None = None  # the owner's own usage for runs linked to a merge already

    def write(self, session: Session) -> BatchResult:
        if self.new_people:
            people = PersonCache(session)
            people.preload(self.new_people)
            for (email, slack_user_id), rows in self.new_people.items():
                person_id = people.id_for(email, slack_user_id)
                for row in rows:
                    self.values[row][PERSON] = person_id
        accepted = insert_values(session, USAGE, USAGE_COLUMNS, self.values, ("source_id", "dedupe_key"))
        if self.late is not None and accepted:
            self.late.mark(session)
        return BatchResult(accepted=accepted, duplicates=len(self.values) - accepted)


def plan_usage(
    session: Session, source_id: int, items: Sequence[UsageIn | UsageJson], first_index: int = 0
) -> UsagePlan:
    """Check a usage batch's runs and look up its people (reads only); BatchInvalid when a run is unknown.

    The rows are built straight from the parsed items, as lists in the order of USAGE_COLUMNS, with the
    columns' own conversions (`column_processors`) called inline: no dict per row.
    """
    runs = run_ids(session, source_id, (i.run_external_id for i in items if i.run_external_id))
    _missing_runs(items, runs, first_index)
    check_slack_ids(session, items, first_index)
    known = PersonCache(session).find((item.email, item.slack_user_id) for item in items)
    processors = dict(column_processors(session.get_bind().dialect, USAGE, USAGE_COLUMNS))
    occurred = processors.pop(OCCURRED, _same)
    cost = processors.pop(COST, _same)
    new_people: dict[tuple[str | None, str | None], list[int]] = {}
    values = []
    for index, item in enumerate(items):
        person = (item.email, item.slack_user_id)
        person_id = known.get(person)
        if person_id is None:
            new_people.setdefault(person, []).append(index)
        run = item.run_external_id
        values.append(
            [
                source_id,
                person_id,
                runs[run][0] if run else None,
                occurred(item.occurred_at),
                item.agent,
                item.model,
                item.input_tokens,
                item.output_tokens,
                item.cache_read_tokens,
                item.cache_write_tokens,
                cost(item.cost_usd),
                item.dedupe_key,
                None if item.cost_usd is None else "reported",
            ]
        )
    for position, process in processors.items():  # none today: the other columns are taken as they are
        for row in values:
            row[position] = process(row[position])
    # Read here, before the write (a link made meanwhile lets at most this batch through; docs/metrics.md).
    late = watch_late_usage(session, source_id, (run_id for run_id, _ in runs.values()))
    return UsagePlan(values, new_people, late)


def _same(value: T) -> T:
    return value


def ingest_usage(session: Session, source_id: int, items: Sequence[UsageIn], first_index: int = 0) -> BatchResult:
    """Write usage records; a dedupe key this source has sent before is a duplicate, not an error."""
    return plan_usage(session, source_id, items, first_index).write(session)


def ingest_runs(
    session: Session, source_id: int, items: Sequence[RunIn], rules: LinkRules | None = None
) -> BatchResult:
    check_slack_ids(session, items)
    people = PersonCache(session)
    people.preload((item.email, item.slack_user_id) for item in items)
    rows = [
        {
            "source_id": source_id,
            "external_id": item.external_id,
            "person_id": people.id_for(item.email, item.slack_user_id),
            "agent": item.agent,
            "started_at": item.started_at,
            "ended_at": item.ended_at,
            "title": item.title,
            "repo": item.repo,
            "branch": item.branch,
            "status": item.status,
        }
        for item in items
    ]
    accepted = insert_new(session, RUNS, rows, ("source_id", "external_id"))
    if rules is not None and any(item.branch for item in items):  # a pull request merged before its runs came
        known = run_ids(session, source_id, (item.external_id for item in items if item.branch))
        relink_runs(session, [run_id for run_id, _ in known.values()], rules)
    return BatchResult(accepted=accepted, duplicates=len(rows) - accepted)


def ingest_outcomes(
    session: Session,
    source_id: int,
    items: Sequence[OutcomeIn],
    weight_for: Callable[[str], Decimal],
    first_index: int = 0,
    rules: LinkRules | None = None,
) -> BatchResult:
    """Write outcomes; the person comes from the linked run when there is one. An outcome is evidence when its
    source is the operator's (not limited to one person); a commit SHA links its run to pull requests."""
    runs = run_ids(session, source_id, (i.run_external_id for i in items if i.run_external_id))
    _missing_runs(items, runs, first_index)
    run_times = _run_times(session, [run_id for run_id, _ in runs.values()])
    check_slack_ids(session, items, first_index)
    people = PersonCache(session)
    people.preload((item.email, item.slack_user_id) for item in items if not item.run_external_id)
    evidence = is_evidence_source(session, source_id)
    rows = []
    commits: list[tuple[int, str]] = []
    for item in items:
        if item.run_external_id:
            run_id, person_id = runs[item.run_external_id]
            if item.commit_sha:
                commits.append((run_id, item.commit_sha))
            occurred_at = item.occurred_at or run_times[run_id]
        else:
            run_id, person_id = None, people.id_for(item.email, item.slack_user_id)
            assert item.occurred_at is not None
            occurred_at = item.occurred_at
        rows.append(
            {
                "source_id": source_id,
                "external_id": item.external_id,
                "run_id": run_id,
                "person_id": person_id,
                "kind": item.kind,
                "weight": weight_for(item.kind),  # the operator's, never the sender's (OutcomeIn.weight)
                "url": item.url,
                "occurred_at": occurred_at,
                "evidence": evidence,
                "counted": evidence,
                "agent_assisted": run_id is not None,
            }
        )
    accepted = insert_new(session, OUTCOMES, rows, ("source_id", "external_id"))
    if commits and rules is not None:
        record_run_commits(session, commits, rules)
    return BatchResult(accepted=accepted, duplicates=len(rows) - accepted)


def is_evidence_source(session: Session, source_id: int) -> bool:
    """Whether a source's outcomes are evidence from outside the person they name: an operator's source,
    not limited to one person, and not Claude Code's own counters (docs/metrics.md "Evidence")."""
    source = session.get(Source, source_id)
    return bool(source and source.kind not in ("otlp",) and source.person_id is None and not source.personal)


def cost_source(usage: SeenUsage) -> str | None:
    """Who put the figure on a record's cost: the source ("reported"), unless it says Tokenwise priced it."""
    if usage.cost_usd is None:
        return None
    return usage.cost_source or "reported"


def _run_times(session: Session, ids: Sequence[int]) -> dict[int, datetime]:
    """When each run's outcomes happened by default: its end, else its start."""
    if not ids:
        return {}
    when = type_coerce(func.coalesce(RUNS.c.ended_at, RUNS.c.started_at), UTCDateTime())
    query = select(RUNS.c.id, when).where(RUNS.c.id.in_(ids))
    return {run_id: moment for run_id, moment in session.connection().execute(query)}


def ingest_telemetry(
    session: Session,
    source_id: int,
    telemetry: Telemetry,
    weight_for: Callable[[str], Decimal],
    usage_mode: Literal["max", "replace", "new"] = "max",
) -> BatchResult:
    """Write runs, usage and outcomes that a telemetry source reported, idempotently.

    Runs are created on first sight (the earliest start wins); usage under a dedupe key is merged as a
    running total (`max`), replaced (`replace`) or written once (`new`); outcomes are written once.
    """
    check_slack_ids(session, [*telemetry.runs, *telemetry.usage, *telemetry.outcomes])
    kept = _attribute_or_keep(session, source_id, telemetry, replace=usage_mode == "replace")
    people = PersonCache(session)
    people.preload(
        [(r.email, r.slack_user_id) for r in telemetry.runs]
        + [(u.email, u.slack_user_id) for u in telemetry.usage]
        + [(o.email, o.slack_user_id) for o in telemetry.outcomes]
    )
    bounds: dict[tuple[int, str], SeenRun] = {}
    for run in telemetry.runs:
        person_id = people.id_for(run.email, run.slack_user_id)
        seen = bounds.setdefault((person_id, run.external_id), SeenRun(**{**run.__dict__}))
        seen.started_at = min(seen.started_at, run.started_at)
        ends = [t for t in (seen.ended_at, run.ended_at) if t is not None]
        seen.ended_at = max(ends) if ends else None
        seen.project, seen.branch = seen.project or run.project, seen.branch or run.branch
    person_ids = [people.id_for(u.email, u.slack_user_id) for u in telemetry.usage]
    wanted = {
        *bounds,
        *(
            (person_id, u.run_external_id)
            for u, person_id in zip(telemetry.usage, person_ids, strict=True)
            if u.run_external_id
        ),
        *(
            (people.id_for(o.email, o.slack_user_id), o.run_external_id)
            for o in telemetry.outcomes
            if o.run_external_id
        ),
    }
    known = session_runs(session, source_id, wanted)
    run_rows = [_run_row(source_id, key[0], run, known.get(key)) for key, run in bounds.items()]
    result = BatchResult()
    result.notes["runs"] = _widen_runs(session, [row for row in run_rows if row["known"] is None])
    _widen_known_runs(session, [row for row in run_rows if row["known"] is not None])
    result.notes["unattributed"] = kept
    made = _session_runs(session, source_id, wanted - set(known))
    runs = known | {key: run_id for key, (run_id, _source) in made.items()}
    # The last usage record stored before this write's (read after the runs: a concurrent writer's run this
    # write waited on is committed, with its records): `_unsettled` checks the runs it takes for new with it.
    stored_before = int(session.execute(select(func.max(USAGE.c.id))).scalar_one() or 0) if made else 0
    late = watch_late_usage(session, source_id, runs.values()) if telemetry.usage else None
    if usage_mode == "new":
        values = _usage_values(session, source_id, telemetry.usage, person_ids, runs)
        accepted = insert_values(session, USAGE, USAGE_COLUMNS, values, ("source_id", "dedupe_key"))
        result.accepted += accepted
        result.duplicates += len(values) - accepted
        if late is not None:
            late.mark(session)
    else:
        usage_rows = [
            {
                "source_id": source_id,
                "person_id": person_id,
                "run_id": runs.get((person_id, u.run_external_id or "")),
                "occurred_at": u.occurred_at,
                "agent": u.agent,
                "model": u.model,
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "cache_read_tokens": u.cache_read_tokens,
                "cache_write_tokens": u.cache_write_tokens,
                "cost_usd": u.cost_usd,
                "cost_source": cost_source(u),
                "dedupe_key": u.dedupe_key,
            }
            for u, person_id in zip(telemetry.usage, person_ids, strict=True)
        ]
        grown = late.grown(session, usage_rows) if late is not None else []
        result.accepted += merge_usage_totals(session, usage_rows, usage_mode)
        if late is not None:
            late.mark(session, grown)
    sessions = {(p, u.run_external_id) for u, p in zip(telemetry.usage, person_ids, strict=True) if u.run_external_id}
    settle_sessions(session, _unsettled(session, source_id, telemetry.usage, person_ids, sessions, made, stored_before))
    source = session.get(Source, source_id)
    if source is not None and source.kind in (*SESSION_KINDS, *DAILY_KINDS):  # one count per person, day, tool
        settle_days(
            session,
            {(p, utc_day(u.occurred_at), u.agent) for u, p in zip(telemetry.usage, person_ids, strict=True)},
        )
    outcome_rows = []
    for o in telemetry.outcomes:
        person_id = people.id_for(o.email, o.slack_user_id)
        linked = runs.get((person_id, o.run_external_id)) if o.run_external_id else None
        outcome_rows.append(
            {
                "source_id": source_id,
                "external_id": o.external_id,
                "run_id": linked,
                "person_id": person_id,
                "kind": o.kind,
                "weight": weight_for(o.kind),
                "url": None,
                "occurred_at": o.occurred_at,
                "evidence": False,  # Claude Code's own counters: what the tool says it did, not evidence
                "counted": False,
                "agent_assisted": False,
            }
        )
    result.notes["outcomes"] = insert_new(session, OUTCOMES, outcome_rows, ("source_id", "external_id"))
    return result


Converters = tuple[Callable[[Any], Any], Callable[[Any], Any]]


def usage_converters(dialect: Any) -> Converters:
    """What `usage_record`'s time and cost become for the driver on this database (`column_processors`):
    for callers that build storage rows themselves (`ingest_usage_rows`), converting each value once."""
    processors = dict(column_processors(dialect, USAGE, USAGE_COLUMNS))
    return processors.get(OCCURRED, _same), processors.get(COST, _same)


def _run_row(source_id: int, person_id: int, run: SeenRun, known: int | None) -> dict[str, Any]:
    """A session's run as `_widen_runs` and `_widen_known_runs` take it (`known`: its id, when it exists)."""
    return {
        "source_id": source_id,
        "external_id": run.external_id,
        "person_id": person_id,
        "agent": run.agent,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "project": run.project,
        "branch": run.branch,
        "known": known,
    }


def ingest_usage_rows(
    session: Session,
    source_id: int,
    email: str,
    runs: Sequence[SeenRun],
    rows: Sequence[tuple[Any, ...]],
    days: Iterable[tuple[date, str]],
) -> BatchResult:
    """`ingest_telemetry(..., usage_mode="new")` for one person's usage records of one precision (Claude
    Code's log lines), given as storage rows: tuples in the order of USAGE_COLUMNS, times and costs
    converted already (`usage_converters`), the source and person left for this to fill (their places hold
    None), and the run's place holding the record's session id (each one of `runs`, which span their
    records) or None. `days`: the (UTC day, tool) pairs of the rows. The person is looked up once: what
    ingest_telemetry does for each record is done here once a batch."""
    person_id = PersonCache(session).id_for(normalize_email(email), None)
    bounds = {(person_id, run.external_id): run for run in runs}
    known = session_runs(session, source_id, set(bounds))
    run_rows = [_run_row(source_id, person_id, run, known.get(key)) for key, run in bounds.items()]
    result = BatchResult()
    result.notes["runs"] = _widen_runs(session, [row for row in run_rows if row["known"] is None])
    _widen_known_runs(session, [row for row in run_rows if row["known"] is not None])
    made = _session_runs(session, source_id, set(bounds) - set(known))
    run_of = {external_id: run_id for (_, external_id), run_id in known.items()}
    run_of.update((external_id, run_id) for (_, external_id), (run_id, _source) in made.items())
    late = watch_late_usage(session, source_id, run_of.values()) if rows else None
    stored_before = int(session.execute(select(func.max(USAGE.c.id))).scalar_one() or 0) if made else 0
    # concatenated, not unpacked: a fifth quicker, and this runs once a record
    values = [(source_id, person_id, None if row[2] is None else run_of[row[2]]) + row[3:] for row in rows]  # noqa: RUF005
    accepted = insert_values(session, USAGE, USAGE_COLUMNS, values, ("source_id", "dedupe_key"))
    result.accepted, result.duplicates = accepted, len(rows) - accepted
    if late is not None:
        late.mark(session)
    settle_sessions(session, _unsettled(session, source_id, [], [], set(bounds), made, stored_before))
    source = session.get(Source, source_id)
    if source is not None and source.kind in (*SESSION_KINDS, *DAILY_KINDS):  # one count per person, day, tool
        settle_days(session, {(person_id, day, agent) for day, agent in days})
    return result


def _unsettled(
    session: Session,
    source_id: int,
    usage: Sequence[SeenUsage],
    person_ids: Sequence[int],
    sessions: set[tuple[int, str]],
    made: Mapping[tuple[int, str], tuple[int, int]],
    stored_before: int = 0,
) -> set[tuple[int, str]]:
    """The sessions of this write that may need settling again: all but those whose run this write made
    (this source's, absent before it) and whose records here are all of one precision. Such a run holds only
    these records, all counted (a new record is), so nothing of it can change; it is the usual case of an
    import, whose sessions are mostly new (settling them all read every session's records back).

    "Absent before it" is checked, not assumed: on PostgreSQL two writers of one new session (Claude Code's
    events and metrics, sent at once) both find the run absent, and the second, having waited on the first's
    insert, finds it as its source's. A run holding any record stored before this write's
    (`stored_before`, the highest id then) is settled."""
    ours = {key for key, (_run, run_source) in made.items() if run_source == source_id}
    if ours:
        run_of = {made[key][0]: key for key in ours}
        c = USAGE.c
        ids = sorted(run_of)
        for start in range(0, len(ids), 500):
            ours -= {
                run_of[int(run_id)]
                for (run_id,) in session.execute(
                    select(c.run_id).where(c.run_id.in_(ids[start : start + 500]), c.id <= stored_before).distinct()
                )
            }
    if not ours:
        return sessions
    source = session.get(Source, source_id)
    if source is not None and source.kind == "claude-code-logs":  # log lines: all of one precision
        return sessions - ours
    levels: dict[tuple[int, str], set[int]] = {}
    for u, person_id in zip(usage, person_ids, strict=True):
        key = (person_id, u.run_external_id or "")
        if key in ours:
            levels.setdefault(key, set()).add(_key_precision(u.dedupe_key))
    return sessions - {key for key in ours if len(levels.get(key, ())) <= 1}


def _key_precision(dedupe_key: str) -> int:
    """`_precision` for a record of a source other than Claude Code's logs, in Python."""
    if dedupe_key.startswith("otlp:e:"):
        return EVENTS
    return METRICS if dedupe_key.startswith(("otlp:c:", "otlp:d:")) else 0


def _usage_values(
    session: Session,
    source_id: int,
    usage: Sequence[SeenUsage],
    person_ids: Sequence[int],
    runs: Mapping[tuple[int, str], int],
) -> list[list[Any]]:
    """Usage rows as `insert_values` takes them: lists in the order of USAGE_COLUMNS, converted by the
    columns' own types (`column_processors`), with no dict per row (as `plan_usage` builds them)."""
    processors = dict(column_processors(session.get_bind().dialect, USAGE, USAGE_COLUMNS))
    occurred = processors.pop(OCCURRED, _same)
    cost = processors.pop(COST, _same)
    values = [
        [
            source_id,
            person_id,
            runs.get((person_id, u.run_external_id or "")),
            occurred(u.occurred_at),
            u.agent,
            u.model,
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            cost(u.cost_usd),
            u.dedupe_key,
            cost_source(u),
        ]
        for u, person_id in zip(usage, person_ids, strict=True)
    ]
    for position, process in processors.items():  # none today: the other columns are taken as they are
        for row in values:
            row[position] = process(row[position])
    return values


# How precisely a source reports a session: Claude Code's log lines (one record per API call), then OTLP log
# events (per request), then OTLP metrics (totals per interval); other sources carry no session (0).
LOG_LINES, EVENTS, METRICS = 3, 2, 1


def _precision(source_kind: Any, dedupe_key: Any) -> Any:
    return case(
        (source_kind == "claude-code-logs", LOG_LINES),
        (dedupe_key.like("otlp:e:%"), EVENTS),
        (or_(dedupe_key.like("otlp:c:%"), dedupe_key.like("otlp:d:%")), METRICS),
        else_=0,
    )


def settle_sessions(session: Session, sessions: set[tuple[int, str]]) -> int:
    """Count each (person, session id) once across sources: only the records of its most precise source
    count; the others stay stored with `counted` false. Run after every write of session-carrying usage, so
    the order in which sources arrive does not matter. Records of sources that carry no session are never
    touched. How many records changed."""
    if not sessions:
        return 0
    u, r, s = USAGE.c, RUNS.c, table_of(Source).c
    precision = _precision(s.kind, u.dedupe_key)
    wanted = session_keys(session, sessions)
    joined = (
        wanted.join(RUNS, and_(r.person_id == wanted.c.person_id, r.external_id == wanted.c.external_id))
        .join(USAGE, u.run_id == r.id)
        .join(table_of(Source), s.id == u.source_id)
    )
    records = select(r.person_id, r.external_id, precision.label("level"), u.counted).select_from(joined).subquery()
    # First the kinds of records each session has, counted in the database (a few rows a session): most
    # writes change nothing (a session's new log lines are counted already), and then no record is read.
    kinds = session.execute(select(records).group_by(*records.c)).all()
    top: dict[tuple[int, str], int] = {}
    for person_id, external_id, level, _counted in kinds:
        top[(person_id, external_id)] = max(top.get((person_id, external_id), 0), int(level))
    unsettled = {
        (person_id, external_id)
        for person_id, external_id, level, counted in kinds
        if level and bool(counted) != (int(level) == top[(person_id, external_id)])
    }
    if not unsettled:
        return 0
    wanted = session_keys(session, unsettled)
    joined = (
        wanted.join(RUNS, and_(r.person_id == wanted.c.person_id, r.external_id == wanted.c.external_id))
        .join(USAGE, u.run_id == r.id)
        .join(table_of(Source), s.id == u.source_id)
    )
    rows = session.execute(select(u.id, r.person_id, r.external_id, precision, u.counted).select_from(joined)).all()
    best: dict[tuple[int, str], int] = {}
    for _id, person_id, external_id, level, _counted in rows:
        best[(person_id, external_id)] = max(best.get((person_id, external_id), 0), int(level))
    changes: dict[bool, list[int]] = {True: [], False: []}
    for record_id, person_id, external_id, level, counted in rows:
        if level:
            wanted_now = int(level) == best[(person_id, external_id)]
            if bool(counted) != wanted_now:
                changes[wanted_now].append(int(record_id))
    for counts, ids in changes.items():
        for start in range(0, len(ids), 500):
            session.execute(update(USAGE).where(u.id.in_(ids[start : start + 500])).values(counted=counts))
    return len(changes[True]) + len(changes[False])


def session_keys(session: Session, sessions: Iterable[tuple[int, str]]) -> Subquery:
    """The (person id, session id) pairs as a table to join, from one parameter whatever their number:
    a JSON list on SQLite, two arrays on PostgreSQL. An `IN` of pairs cost SQLAlchemy a parameter a value
    and a compilation for each look-up (a third of a second a chunk of an import), and SQLite's planner
    read it as a scan of each person's runs; joined from this table, each pair is one index search."""
    pairs = sorted(sessions)
    if session.get_bind().dialect.name == "postgresql":
        query = text(
            "SELECT * FROM unnest(CAST(:persons AS bigint[]), CAST(:external_ids AS text[]))"
            " AS pairs(person_id, external_id)"
        ).bindparams(persons=[p for p, _ in pairs], external_ids=[e for _, e in pairs])
    else:
        query = text(
            "SELECT json_extract(value, '$[0]') AS person_id, json_extract(value, '$[1]') AS external_id"
            " FROM json_each(:pairs)"
        ).bindparams(pairs=json.dumps(pairs))
    return query.columns(person_id=BigInteger(), external_id=String()).subquery("wanted")


def _attribute_or_keep(session: Session, source_id: int, telemetry: Telemetry, replace: bool = False) -> int:
    """Usage that names nobody goes to the person an operator linked its identity to, or is kept as
    unattributed (storage/identities.py); it is never dropped. Leaves `telemetry.usage` naming people only.
    `replace`: a vendor's re-pulled day, whose kept rows take the new figures as a person's would."""
    nameless = [u for u in telemetry.usage if not (u.email or u.slack_user_id)]
    if not nameless:
        return 0
    linked = linked_people(
        session, [(u.identity_kind, u.identity_value) for u in nameless if u.identity_kind and u.identity_value]
    )
    people = {id_of(p): p for p in (session.get(Person, person_id) for person_id in set(linked.values())) if p}
    unattributed = []
    for item in nameless:
        person = people.get(linked.get((item.identity_kind or "", item.identity_value or ""), -1))
        if person is not None:
            item.email, item.slack_user_id = person.email, None if person.email else person.slack_user_id
            continue
        unattributed.append(
            {
                "source_id": source_id,
                "identity_kind": item.identity_kind,
                "identity_value": item.identity_value,
                "run_external_id": item.run_external_id,
                "occurred_at": item.occurred_at,
                "agent": item.agent,
                "model": item.model,
                "input_tokens": item.input_tokens,
                "output_tokens": item.output_tokens,
                "cache_read_tokens": item.cache_read_tokens,
                "cache_write_tokens": item.cache_write_tokens,
                "cost_usd": item.cost_usd,
                "cost_source": cost_source(item),
                "dedupe_key": item.dedupe_key,
            }
        )
    telemetry.usage = [u for u in telemetry.usage if u.email or u.slack_user_id]
    return keep_unattributed(session, unattributed, "replace" if replace else "max") if unattributed else 0


# Sources whose runs are sessions (storage/daily_usage.py: SESSION_KINDS): one person's session is one run
# whichever of them reports it, so its verdict, outcomes and usage meet on one run and it is counted once.


def session_runs(session: Session, source_id: int, wanted: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """(person id, session id) -> the run that is that person's session: this source's, or one a source of
    sessions made (the earliest, should two writers have made one each at the same moment)."""
    return {key: run_id for key, (run_id, _source) in _session_runs(session, source_id, wanted).items()}


def _session_runs(
    session: Session, source_id: int, wanted: set[tuple[int, str]]
) -> dict[tuple[int, str], tuple[int, int]]:
    """`session_runs` with the source of each run: (person id, session id) -> (run id, source id)."""
    if not wanted:
        return {}
    r, s = RUNS.c, table_of(Source).c
    pairs = session_keys(session, wanted)
    found: dict[tuple[int, str], tuple[int, int]] = {}
    rows = session.execute(
        select(r.person_id, r.external_id, r.id, r.source_id)
        .select_from(
            pairs.join(RUNS, and_(r.person_id == pairs.c.person_id, r.external_id == pairs.c.external_id)).join(
                table_of(Source), s.id == r.source_id
            )
        )
        .where(or_(r.source_id == source_id, s.kind.in_(SESSION_KINDS)))
        .order_by(r.id)
    )
    for person_id, external_id, run_id, run_source in rows:
        found.setdefault((person_id, external_id), (run_id, run_source))
    return found


def _widen_known_runs(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Widen runs that exist already (maybe another source's): earliest start, latest end, first place.

    One UPDATE, compiled once and executed for every run in id order (an executemany), rather than a
    statement built per run; runs seen here without an end keep theirs."""
    r = RUNS.c
    started = bindparam("b_started", type_=r.started_at.type)
    ended = bindparam("b_ended", type_=r.ended_at.type)  # NULL (no end seen) leaves the stored end as it is
    statement = (
        update(RUNS)
        .where(r.id == bindparam("b_id"))
        .values(
            started_at=case((r.started_at > started, started), else_=r.started_at),
            ended_at=case((or_(r.ended_at.is_(None), r.ended_at < ended), ended), else_=r.ended_at),
            project=func.coalesce(r.project, bindparam("b_project", type_=r.project.type)),
            branch=func.coalesce(r.branch, bindparam("b_branch", type_=r.branch.type)),
        )
    )
    params = [
        {
            "b_id": row["known"],
            "b_started": row["started_at"],
            "b_ended": row["ended_at"],
            "b_project": row["project"],
            "b_branch": row["branch"],
        }
        for row in sorted(rows, key=lambda row: row["known"])
    ]
    if params:
        execute_many(session, statement, params)


def _widen_runs(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Create runs first seen here; a run seen again keeps its earliest start and latest end."""
    rows = sorted(
        ({k: v for k, v in row.items() if k != "known"} for row in rows),
        key=lambda row: (row["source_id"], row["external_id"]),
    )
    if rows:  # one statement compiled once, executed for every row (see insert_new)
        statement = dialect_insert(session, RUNS)
        new = statement.excluded
        least = func.least if session.get_bind().dialect.name == "postgresql" else func.min
        statement = statement.on_conflict_do_update(
            index_elements=["source_id", "external_id"],
            set_={
                "started_at": least(RUNS.c.started_at, new.started_at),
                "ended_at": _greatest(
                    session,
                    func.coalesce(RUNS.c.ended_at, new.ended_at),
                    func.coalesce(new.ended_at, RUNS.c.ended_at),
                ),
                "project": func.coalesce(RUNS.c.project, new.project),  # where the session started
                "branch": func.coalesce(RUNS.c.branch, new.branch),
            },
        )
        execute_many(session, statement, rows)
    return len(rows)


def _worth_retrying(error: OperationalError) -> bool:
    """SQLite busy, or a PostgreSQL deadlock or serialization failure: the retry will see the winner's rows."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    return sqlstate in {"40P01", "40001"} or "locked" in str(error).lower()


def write_atomically(engine: Engine, work: Callable[[Session], T], attempts: int = 5) -> T:
    """Run `work` in one transaction, retried when a concurrent writer won a race (a new person, a lock)."""
    return write_prepared(engine, lambda _session: work, attempts)


def write_prepared(engine: Engine, prepare: Callable[[Session], Callable[[Session], T]], attempts: int = 5) -> T:
    """`write_atomically` for work with a read-only part: `prepare` reads in a transaction of its own
    and returns the work that writes. Both are redone on a retry, so the writing never uses stale reads.

    On SQLite the reading happens before this process's writer turn (`sqlite_writer`), while another
    batch is being written, so a turn lasts only as long as the writing itself. On PostgreSQL, whose
    writers do not take turns, both happen in one transaction: a connection checkout (and its ping)
    and a commit fewer per batch.
    """
    for attempt in range(1, attempts + 1):
        try:
            if engine.dialect.name != "sqlite":  # writers run side by side: read and write in one transaction
                with session_scope(engine) as session:
                    return prepare(session)(session)
            with session_scope(engine) as session:
                work = prepare(session)
            with sqlite_writer(engine), session_scope(engine) as session:
                # Take the write lock up front (waiting up to busy_timeout) instead of failing when a
                # read transaction cannot be upgraded because another writer got there first.
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
                return work(session)
        except IntegrityError:
            if attempt == attempts:
                raise
        except OperationalError as error:
            if attempt == attempts or not _worth_retrying(error):
                raise
    raise AssertionError("unreachable")


__all__ = [
    "BatchInvalid",
    "BatchResult",
    "OutcomeIn",
    "RunIn",
    "SeenOutcome",
    "SeenRun",
    "SeenUsage",
    "Telemetry",
    "UsageIn",
    "batch_error",
    "ingest_outcomes",
    "ingest_runs",
    "ingest_telemetry",
    "ingest_usage",
    "ingest_usage_rows",
    "insert_new",
    "merge_usage_totals",
    "validate_batch",
    "write_atomically",
    "write_prepared",
]


def write_batch(
    engine: Engine,
    kind: BatchKind,
    source_id: int,
    items: Sequence[Any],
    weight_for: Callable[[str], Decimal],
    rules: LinkRules | None = None,
) -> BatchResult:
    """Write one parsed batch in the transaction protocol its kind needs: usage is planned (runs and people
    looked up) before the write transaction and only inserted inside it (`write_prepared`); runs and
    outcomes are written in one transaction (`write_atomically`). Both retry a busy database."""
    if kind == "records":
        return write_prepared(engine, lambda session: plan_usage(session, source_id, items).write)
    if kind == "runs":
        return write_atomically(engine, lambda session: ingest_runs(session, source_id, items, rules))
    return write_atomically(engine, lambda session: ingest_outcomes(session, source_id, items, weight_for, 0, rules))
