"""GitHub as evidence: pull requests, commits and checks as GitHub reported them, the outcomes they make and
the links from those outcomes to the agent runs that did the work (docs/ingest.md "GitHub").

Facts are written as they arrive, in any order (a push after the merge, CI after the merge, runs imported a
week later); every write then settles the pull requests it touches: `settle` recomputes a pull request's
outcomes and links from all the facts stored so far, so the result does not depend on the order. A link a
run's owner removed stays removed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, tuple_, update
from sqlmodel import Session

from storage.models import (
    AgentRun,
    GithubCheck,
    GithubCommit,
    GithubDelivery,
    GithubUnsettled,
    Outcome,
    OutcomeLink,
    Person,
    PersonLink,
    PullRequest,
    RepoMapping,
    RunCommit,
    Source,
    UsageRecord,
    table_of,
    utcnow,
)
from storage.people import normalize_email
from storage.upsert import dialect_insert, insert_new

PRS = table_of(PullRequest)
COMMITS = table_of(GithubCommit)
CHECKS = table_of(GithubCheck)
LINKS = table_of(OutcomeLink)
OUTCOMES = table_of(Outcome)
RUNS = table_of(AgentRun)
USAGE = table_of(UsageRecord)
SOURCES = table_of(Source)
UNSETTLED = table_of(GithubUnsettled)
NOREPLY = re.compile(r"^(?:\d+\+)?([A-Za-z0-9-]+)@users\.noreply\.github\.com$")


@dataclass(frozen=True)
class LinkRules:
    """How outcomes are made from GitHub's facts: the operator's settings (bot/config.py)."""

    window_days: int = 14
    weights: dict[str, Decimal] = field(default_factory=dict)
    self_merge_counts: bool = False

    def weight(self, kind: str) -> Decimal:
        return self.weights.get(kind, Decimal(1))


@dataclass
class PullRequestSeen:
    repo: str
    number: int
    url: str
    author_login: str | None = None
    merged_by_login: str | None = None
    head_branch: str | None = None
    head_sha: str | None = None
    merge_sha: str | None = None
    opened_at: datetime | None = None
    merged_at: datetime | None = None
    closed_at: datetime | None = None
    additions: int | None = None
    deletions: int | None = None
    title: str | None = None
    updated_at: datetime | None = None  # GitHub's: of two deliveries, the later one says what the PR is now


@dataclass
class CommitSeen:
    repo: str
    sha: str
    branch: str | None = None
    pr_number: int | None = None
    author_login: str | None = None
    author_email: str | None = None
    agent_trailer: str | None = None
    committed_at: datetime | None = None


@dataclass
class CheckSeen:
    repo: str
    kind: str  # tests_passed or deploy
    external_id: str
    sha: str
    completed_at: datetime
    branch: str | None = None
    pr_numbers: Sequence[int] = ()
    environment: str | None = None


def repo_name(value: str) -> str:
    return value.strip().lower()


# -- facts --------------------------------------------------------------------------------------------------
def claim_delivery(session: Session, source_id: int, delivery_id: str, event: str) -> bool:
    """Whether this delivery is new (then it is remembered): a re-delivery of the same id is a no-op."""
    return bool(claim_deliveries(session, [(source_id, delivery_id, event)]))


def claim_deliveries(session: Session, deliveries: Sequence[tuple[int, str, str]]) -> set[str]:
    """The ids of the deliveries (source, delivery id, event) that are new, now remembered, in one statement;
    of one id sent twice, the first is the one claimed."""
    rows: dict[str, dict[str, Any]] = {}
    now = utcnow()
    for source_id, delivery_id, event in deliveries:
        key = delivery_id[:64]
        rows.setdefault(key, {"delivery_id": key, "source_id": source_id, "event": event[:40], "received_at": now})
    if not rows:
        return set()
    table = table_of(GithubDelivery)
    statement = (
        dialect_insert(session, table)
        .values([rows[key] for key in sorted(rows)])  # in key order: concurrent groups never wait in a circle
        .on_conflict_do_nothing(index_elements=["delivery_id"])
        .returning(table.c.delivery_id)
    )
    return {str(claimed) for claimed in session.execute(statement).scalars()}


PR_COLUMNS = (
    "source_id", "repo", "number", "url", "author_login", "merged_by_login", "head_branch", "head_sha",
    "merge_sha", "opened_at", "merged_at", "closed_at", "updated_at", "additions", "deletions", "title",
)  # fmt: skip
MERGE_SEEN = ("merge_seen_run_id", "merge_seen_usage_id")
_PR_UPSERTS: dict[str, Any] = {}


def _pr_upsert(session: Session) -> Any:
    """The pull request's upsert, built once per database: of two deliveries, the one GitHub updated later
    says what the pull request is now (a late `opened` never overwrites a newer head, size or state); what
    either says fills what the other lacks, so a merge stays a merge whatever order they come in."""
    dialect = session.get_bind().dialect.name
    statement = _PR_UPSERTS.get(dialect)
    if statement is None:
        statement = dialect_insert(session, PRS)
        new, old = statement.excluded, PRS.c
        newer = or_(old.updated_at.is_(None), new.updated_at >= old.updated_at)
        statement = statement.on_conflict_do_update(
            index_elements=["repo", "number"],
            set_={
                column: case(
                    (newer, func.coalesce(new[column], old[column])), else_=func.coalesce(old[column], new[column])
                )
                for column in PR_COLUMNS
                if column not in ("source_id", "repo", "number")
            }
            | {column: func.coalesce(old[column], new[column]) for column in MERGE_SEEN},  # set once
        )
        _PR_UPSERTS[dialect] = statement
    return statement


def record_pull_request(session: Session, source_id: int, pr: PullRequestSeen) -> None:
    """Store or update what GitHub said about a pull request (see `_pr_upsert` for which delivery wins)."""
    values = {
        "source_id": source_id,
        "repo": repo_name(pr.repo),
        "number": pr.number,
        "url": pr.url[:500],
        "author_login": _login(pr.author_login),
        "merged_by_login": _login(pr.merged_by_login),
        "head_branch": (pr.head_branch or None) and pr.head_branch[:255],
        "head_sha": pr.head_sha,
        "merge_sha": pr.merge_sha,
        "opened_at": pr.opened_at,
        "merged_at": pr.merged_at,
        "closed_at": pr.closed_at,
        "updated_at": pr.updated_at,
        "additions": pr.additions,
        "deletions": pr.deletions,
        "title": (pr.title or None) and pr.title[:300],
        "merge_seen_run_id": None,
        "merge_seen_usage_id": None,
    }
    if pr.merged_at is not None:  # kept only by the first delivery that says merged (see MERGE_SEEN)
        values["merge_seen_run_id"], values["merge_seen_usage_id"] = _last_ids(session)
    session.execute(_pr_upsert(session), [values])


def _last_ids(session: Session) -> tuple[int, int]:
    """The highest run and usage record ids stored now: what came before Tokenwise learned of a merge."""
    runs = session.execute(select(func.max(RUNS.c.id))).scalar_one()
    usage = session.execute(select(func.max(USAGE.c.id))).scalar_one()
    return int(runs or 0), int(usage or 0)


def record_commits(session: Session, source_id: int, commits: Iterable[CommitSeen]) -> None:
    """Store commits; one seen again keeps what it had and gains what it lacked (its pull request)."""
    rows = [
        {
            "source_id": source_id,
            "repo": repo_name(c.repo),
            "sha": c.sha.lower(),
            "branch": (c.branch or None) and c.branch[:255],
            "pr_number": c.pr_number,
            "author_login": _login(c.author_login),
            "author_email": normalize_email(c.author_email)[:320] if c.author_email else None,
            "agent_trailer": (c.agent_trailer or None) and c.agent_trailer[:100],
            "committed_at": c.committed_at,
        }
        for c in commits
    ]
    if not rows:
        return
    statement = dialect_insert(session, COMMITS)
    new = statement.excluded
    keep = ("source_id", "repo", "sha")
    statement = statement.on_conflict_do_update(
        index_elements=["repo", "sha"],
        set_={column: func.coalesce(COMMITS.c[column], new[column]) for column in rows[0] if column not in keep},
    )
    session.execute(statement, sorted(rows, key=lambda row: (row["repo"], row["sha"])))


def record_check(session: Session, source_id: int, check: CheckSeen) -> bool:
    """Store a successful CI run or deployment once (by its id); whether it was new."""
    return record_checks(session, source_id, [check]) == 1


def record_checks(session: Session, source_id: int, checks: Sequence[CheckSeen]) -> int:
    """Store successful CI runs and deployments once each (by their ids); how many were new."""
    rows = [
        {
            "source_id": source_id,
            "repo": repo_name(check.repo),
            "kind": check.kind,
            "external_id": check.external_id[:100],
            "sha": check.sha.lower(),
            "branch": (check.branch or None) and check.branch[:255],
            "pr_numbers": ",".join(str(n) for n in check.pr_numbers)[:200] or None,
            "environment": (check.environment or None) and check.environment[:100],
            "completed_at": check.completed_at,
        }
        for check in checks
    ]
    return insert_new(session, CHECKS, rows, ("repo", "kind", "external_id"))


def _login(value: str | None) -> str | None:
    return value.strip().lower()[:100] if value and value.strip() else None


# -- which pull requests a fact touches ----------------------------------------------------------------------
def prs_touched(
    session: Session,
    repo: str,
    numbers: Iterable[int] = (),
    branches: Iterable[str] = (),
    shas: Iterable[str] = (),
) -> list[int]:
    """The numbers of a repository's pull requests that a fact names: by number, head branch, or a SHA
    (its head, its merge commit, or one of its commits)."""
    repo = repo_name(repo)
    numbers, branches, shas = set(numbers), {b for b in branches if b}, {s.lower() for s in shas if s}
    conditions = []
    if numbers:
        conditions.append(PRS.c.number.in_(sorted(numbers)))
    if branches:
        conditions.append(PRS.c.head_branch.in_(sorted(branches)))
    if shas:
        conditions.append(PRS.c.head_sha.in_(sorted(shas)))
        conditions.append(PRS.c.merge_sha.in_(sorted(shas)))
        in_commits = select(COMMITS.c.pr_number).where(
            COMMITS.c.repo == repo, COMMITS.c.sha.in_(sorted(shas)), COMMITS.c.pr_number.is_not(None)
        )
        conditions.append(PRS.c.number.in_(in_commits))
    if not conditions:
        return []
    found = session.execute(select(PRS.c.number).where(PRS.c.repo == repo, or_(*conditions)))
    return sorted({int(n) for (n,) in found})


# -- people ----------------------------------------------------------------------------------------------------
def person_for_github(session: Session, login: str | None, emails: Iterable[str] = ()) -> int | None:
    """A GitHub user's person: the operator's link of the login (`tokenwise import org` github column,
    `tokenwise people link github`), else a commit author email equal to a person's, or GitHub's noreply
    address of a linked login. Never a person made up from GitHub's data."""
    logins = {login.lower()} if login else set()
    addresses = set()
    for email in emails:
        match = NOREPLY.match(email.strip())
        if match:
            logins.add(match.group(1).lower())
        elif "@" in email:
            addresses.add(normalize_email(email))
    if logins:
        linked = session.execute(
            select(table_of(PersonLink).c.person_id)
            .where(table_of(PersonLink).c.kind == "github", table_of(PersonLink).c.value.in_(sorted(logins)))
            .order_by(table_of(PersonLink).c.person_id)
        ).first()
        if linked:
            return int(linked[0])
    if addresses:
        people = table_of(Person).c
        found = session.execute(
            select(people.id).where(people.email.in_(sorted(addresses))).order_by(people.id)
        ).first()
        if found:
            return int(found[0])
    return None


# -- outcomes and links ------------------------------------------------------------------------------------
@dataclass
class Settled:
    """What settling a pull request decided, for `tokenwise outcomes explain`."""

    pr: PullRequest | None
    person_id: int | None = None
    evidence: bool = False
    reason: str = ""
    agent_trailer: str | None = None
    links: list[tuple[int, str, str | None, bool]] = field(default_factory=list)  # run, evidence, detail, active
    late: set[int] = field(default_factory=set)  # linked runs sent by their owner after the merge was known
    outcomes: list[str] = field(default_factory=list)


def settle(session: Session, repo: str, numbers: Iterable[int], rules: LinkRules) -> list[Settled]:
    folders = _folders_of(session, repo_name(repo))  # once for all of the repository's pull requests
    return [settle_one(session, repo_name(repo), number, rules, folders) for number in sorted(set(numbers))]


# -- settling later, after a burst ---------------------------------------------------------------------------
def queue_settle(session: Session, repo: str, numbers: Iterable[int]) -> None:
    """Settle these pull requests later (`settle_queued`) instead of now: what a burst's deliveries do, so
    each is answered once its facts are written. Queued twice, a pull request is settled once."""
    rows = [{"repo": repo_name(repo), "number": number, "queued_at": utcnow()} for number in sorted(set(numbers))]
    if rows:
        session.execute(
            dialect_insert(session, UNSETTLED).values(rows).on_conflict_do_nothing(index_elements=["repo", "number"])
        )


def unsettled_repo(session: Session) -> str | None:
    """A repository with pull requests waiting to be settled (the one waiting longest), or None."""
    return session.execute(select(UNSETTLED.c.repo).order_by(UNSETTLED.c.queued_at).limit(1)).scalar()


def settle_queued(session: Session, repo: str, rules: LinkRules, most: int) -> int:
    """Settle up to `most` of a repository's queued pull requests and take them off the queue; how many.
    Call it in the repository's turn (`take_turns(session, "github:<repo>")`), as deliveries are written,
    so that none is queued while it reads."""
    repo = repo_name(repo)
    numbers = list(
        session.execute(
            select(UNSETTLED.c.number).where(UNSETTLED.c.repo == repo).order_by(UNSETTLED.c.number).limit(most)
        ).scalars()
    )
    if numbers:
        settle(session, repo, numbers, rules)
        session.execute(delete(UNSETTLED).where(UNSETTLED.c.repo == repo, UNSETTLED.c.number.in_(numbers)))
    return len(numbers)


def settle_one(
    session: Session,
    repo: str,
    number: int,
    rules: LinkRules,
    folders: Sequence[str] | None = None,
    claimed_now: Collection[int] = (),
) -> Settled:
    """Recompute one pull request's outcomes and run links from every fact stored about it. `claimed_now`:
    the runs whose source says, in this write, that they produced a commit (`record_run_commits`).

    Read as plain rows and written in as few statements as the facts allow: settling is what a burst of
    deliveries spends its time on (docs/performance.md, "GitHub's 10 seconds under a burst")."""
    found = session.execute(select(PRS).where(PRS.c.repo == repo, PRS.c.number == number)).mappings().first()
    if found is None:
        return Settled(None, reason="not seen")
    pr = PullRequest(**found)
    commits = _commits_of(session, pr)
    emails = [c.author_email for c in commits if c.author_email and c.author_login in (None, pr.author_login)]
    person_id = person_for_github(session, pr.author_login, emails)
    trailer = next((c.agent_trailer for c in commits if c.agent_trailer), None)
    result = Settled(pr, person_id, agent_trailer=trailer)
    if person_id is None:
        result.reason = f"its author {pr.author_login or '(unknown)'} is no known person (link the GitHub login)"
        return result
    if pr.opened_at is not None:  # self-reported (anyone can open one), whenever its delivery arrives
        _outcome(session, pr, "opened", "pr_opened", pr.opened_at, person_id, rules, False, False, False)
        result.outcomes.append("pr_opened")
    if pr.merged_at is None:
        result.reason = "not merged"
        return result
    empty = pr.additions == 0 and pr.deletions == 0
    self_merged = pr.merged_by_login is not None and pr.merged_by_login == pr.author_login
    result.evidence = not empty and (not self_merged or rules.self_merge_counts)
    if empty:
        result.reason = "an empty merge (no lines changed)"
    elif not result.evidence:
        result.reason = "merged by its own author (TOKENWISE_GITHUB_SELF_MERGE_COUNTS is off)"
    # The links the merge has (a removed one stays removed) and the runs it should link, then the outcome
    # with its flags in one upsert, then the new links.
    existing: dict[int, tuple[str, str | None, bool]] = {}
    for run_id, evidence, detail, removed, late in session.execute(
        select(LINKS.c.run_id, LINKS.c.evidence, LINKS.c.detail, LINKS.c.removed_at, LINKS.c.late)
        .join(OUTCOMES, OUTCOMES.c.id == LINKS.c.outcome_id)
        .where(OUTCOMES.c.source_id == pr.source_id, OUTCOMES.c.external_id == _external_id(pr, "merged"))
    ):
        existing[int(run_id)] = (str(evidence), detail, removed is None)
        if late:
            result.late.add(int(run_id))
    wanted = _runs_to_link(session, pr, commits, person_id, rules, folders)
    added = {run_id: link for run_id, link in wanted.items() if run_id not in existing}
    late_now = _sent_after_the_merge(session, pr, added, claimed_now)
    for run_id in late_now:
        evidence, detail = added[run_id]
        added[run_id] = (evidence, f"{detail}; sent by its owner after the merge was known: shown, not evidence")
    result.late |= late_now
    every = {**existing, **{run_id: (evidence, detail, True) for run_id, (evidence, detail) in added.items()}}
    result.links = [(run_id, *every[run_id]) for run_id in sorted(every)]
    # Only a run that was there before the merge was known can make it the work of an agent: a run its owner
    # sends afterwards is their word about a result they already know (docs/metrics.md "Late evidence").
    assisted = trailer is not None or any(active and run_id not in result.late for run_id, *_, active in result.links)
    counted = result.evidence and assisted
    if result.evidence and not assisted:
        result.reason = "no agent run is linked and no commit carries an agent trailer"
        if any(active for *_, active in result.links):
            result.reason = "its only linked runs were sent by their owner after the merge was known"
    elif counted:
        result.reason = "counted"
    merged = _outcome(
        session, pr, "merged", "pr_merged", pr.merged_at, person_id, rules, result.evidence, counted, assisted
    )
    if added:
        now = utcnow()
        values = [
            {
                "outcome_id": merged,
                "run_id": run_id,
                "evidence": evidence,
                "detail": detail[:300],
                "created_at": now,
                "late": run_id in late_now,
            }
            for run_id, (evidence, detail) in sorted(added.items())
        ]
        insert_new(session, LINKS, values, ("outcome_id", "run_id"))
        mark_late_usage(session, sorted(set(added) - late_now), pr.merge_seen_usage_id)
    result.outcomes.append("pr_merged")
    checks = session.execute(
        select(CHECKS.c.kind, CHECKS.c.environment, func.min(CHECKS.c.completed_at))
        .where(
            CHECKS.c.repo == pr.repo,
            or_(
                and_(CHECKS.c.kind == "tests_passed", CHECKS.c.sha.in_([s for s in (pr.head_sha, "~") if s])),
                and_(CHECKS.c.kind == "deploy", CHECKS.c.sha.in_([s for s in (pr.merge_sha, "~") if s])),
            ),
        )
        .group_by(CHECKS.c.kind, CHECKS.c.environment)
    ).all()
    for kind, environment, when in checks:  # each at its earliest success, whichever delivery came first
        name = "tests" if kind == "tests_passed" else f"deploy:{environment or 'default'}"
        _outcome(session, pr, name, kind, when, person_id, rules, result.evidence, counted, assisted)
        result.outcomes.append(kind)
    return result


def _commits_of(session: Session, pr: PullRequest) -> list[Any]:
    """The pull request's commits as rows (sha, author_login, author_email, agent_trailer)."""
    conditions = [COMMITS.c.pr_number == pr.number]
    if pr.head_branch:
        conditions.append(COMMITS.c.branch == pr.head_branch)
    shas = [s for s in (pr.head_sha, pr.merge_sha) if s]
    if shas:
        conditions.append(COMMITS.c.sha.in_(shas))
    c = COMMITS.c
    return list(
        session.execute(
            select(c.sha, c.author_login, c.author_email, c.agent_trailer)
            .where(c.repo == pr.repo, or_(*conditions))
            .order_by(c.id)
        )
    )


def _external_id(pr: PullRequest, suffix: str) -> str:
    return f"github:{pr.repo}#{pr.number}:{suffix}"[:200]


def _outcome(
    session: Session,
    pr: PullRequest,
    suffix: str,
    kind: str,
    when: datetime,
    person_id: int,
    rules: LinkRules,
    evidence: bool,
    counted: bool,
    assisted: bool,
) -> int:
    """Write one of the pull request's outcomes as it stands now, in one upsert: its person, URL, time and
    flags follow the facts; its weight is the one it was first given."""
    row = {
        "source_id": pr.source_id,
        "external_id": _external_id(pr, suffix),
        "run_id": None,
        "person_id": person_id,
        "kind": kind,
        "weight": rules.weight(kind),
        "url": pr.url,
        "occurred_at": when,
        "evidence": evidence,
        "counted": counted,
        "agent_assisted": assisted,
    }
    return int(session.execute(_outcome_upsert(session), [row]).scalar_one())


_OUTCOME_UPSERTS: dict[str, Any] = {}


def _outcome_upsert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    statement = _OUTCOME_UPSERTS.get(dialect)
    if statement is None:
        statement = dialect_insert(session, OUTCOMES)
        new = statement.excluded
        changing = ("person_id", "url", "occurred_at", "evidence", "counted", "agent_assisted")
        statement = statement.on_conflict_do_update(
            index_elements=["source_id", "external_id"], set_={column: new[column] for column in changing}
        ).returning(OUTCOMES.c.id)
        _OUTCOME_UPSERTS[dialect] = statement
    return statement


def _runs_to_link(
    session: Session,
    pr: PullRequest,
    commits: Sequence[Any],
    person_id: int,
    rules: LinkRules,
    folders: Sequence[str] | None = None,
) -> dict[int, tuple[str, str]]:
    """The runs the merged pull request links to (run -> evidence, detail), strongest evidence first: a run
    that produced one of its commits; else the author's runs on its repository and head branch, started
    within the window before the merge. Links already made (or removed by the run's owner) stay as they are."""
    shas = sorted({c.sha for c in commits} | {s for s in (pr.head_sha, pr.merge_sha) if s})
    rows: dict[int, tuple[str, str]] = {}
    if shas:
        # A run's commits are its sender's word: they link it only to the pull request of its owner, or of
        # a commit its owner authored, so nobody can claim a colleague's merge for their own run.
        run_commits = table_of(RunCommit).c
        claimed = session.execute(
            select(run_commits.run_id, run_commits.sha, RUNS.c.person_id)
            .join(RUNS, RUNS.c.id == run_commits.run_id)
            .where(run_commits.sha.in_(shas))
            .order_by(run_commits.run_id, run_commits.sha)
        ).all()
        authors = {person_id}
        if any(owner != person_id for *_, owner in claimed):
            authors |= {
                found
                for c in commits
                if (found := person_for_github(session, c.author_login, [c.author_email] if c.author_email else []))
            }
        for run_id, sha, owner in claimed:
            if owner in authors:
                rows.setdefault(int(run_id), ("commit", f"produced commit {sha[:12]}"))
    if pr.head_branch and pr.merged_at is not None:
        start = pr.merged_at - timedelta(days=rules.window_days)
        folders = _folders_of(session, pr.repo) if folders is None else folders
        r = RUNS.c
        for (run_id,) in session.execute(
            select(r.id).where(
                r.person_id == person_id,
                r.branch == pr.head_branch,
                r.started_at >= start,
                r.started_at <= pr.merged_at,
                or_(func.lower(r.repo) == pr.repo, func.lower(r.project).in_(folders)),
            )
        ):
            rows.setdefault(
                int(run_id), ("branch", f"the author's run on {pr.repo} branch {pr.head_branch}, before the merge")
            )
    return rows


@dataclass
class LateWatch:
    """A usage batch its owner sends for runs already linked to a merged pull request: what it adds to them,
    or grows of their running totals, is late (see `mark_late_usage`)."""

    source_id: int
    runs: list[int]  # the batch's runs that have a link
    last_id: int  # the highest usage record id before the batch was written

    def grown(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Read before a running-total merge: the keys, of rows on the watched runs, whose totals would grow."""
        watched = {str(row["dedupe_key"]): row for row in rows if row.get("run_id") in set(self.runs)}
        keys, grown = sorted(watched), []
        u = USAGE.c
        columns = (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)
        for start in range(0, len(keys), 500):
            for key, *stored in session.execute(
                select(u.dedupe_key, *columns, u.cost_usd).where(
                    u.source_id == self.source_id, u.dedupe_key.in_(keys[start : start + 500])
                )
            ):
                row = watched[str(key)]
                names = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
                more = any((row.get(name) or 0) > (old or 0) for name, old in zip(names, stored, strict=False))
                cost, old_cost = row.get("cost_usd"), stored[-1]
                if more or (cost is not None and (old_cost is None or cost > old_cost)):
                    grown.append(str(key))
        return grown

    def mark(self, session: Session, grown: Sequence[str] = ()) -> int:
        """Flag what the batch wrote on the watched runs (new records, and the running totals it grew)."""
        u = USAGE.c
        written = or_(u.id > self.last_id, u.dedupe_key.in_(list(grown))) if grown else u.id > self.last_id
        statement = (
            update(USAGE)
            .where(u.source_id == self.source_id, u.run_id.in_(self.runs), u.late.is_(False), written)
            .values(late=True)
        )
        return int(session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]


def watch_late_usage(session: Session, source_id: int, run_ids: Iterable[int | None]) -> LateWatch | None:
    """Before a usage batch is written: a watch when its source is limited to one person and some of its
    runs are linked to a merged pull request already (None, the usual case, costs one or two look-ups)."""
    wanted = sorted({run_id for run_id in run_ids if run_id is not None})
    if not wanted:
        return None
    owner = session.execute(select(SOURCES.c.person_id).where(SOURCES.c.id == source_id)).scalar_one_or_none()
    if owner is None:  # an operator's source vouches for what it sends
        return None
    linked: list[int] = []
    for start in range(0, len(wanted), 500):
        linked.extend(
            int(run_id)
            for (run_id,) in session.execute(
                select(LINKS.c.run_id)
                .where(LINKS.c.run_id.in_(wanted[start : start + 500]), LINKS.c.removed_at.is_(None))
                .distinct()
            )
        )
    if not linked:
        return None
    last = session.execute(select(func.max(USAGE.c.id))).scalar_one()
    return LateWatch(source_id, sorted(linked), int(last or 0))


def mark_late_usage(session: Session, run_ids: Sequence[int], after_id: int | None) -> int:
    """Flag as late the usage of newly linked runs that their owners sent themselves after the merge was
    known (stored after `after_id`, from a source limited to one person): it stays spend, never verified."""
    if after_id is None or not run_ids:
        return 0
    u = USAGE.c
    own = select(SOURCES.c.id).where(SOURCES.c.person_id.is_not(None))
    flagged = 0
    for start in range(0, len(run_ids), 500):
        statement = (
            update(USAGE)
            .where(u.run_id.in_(run_ids[start : start + 500]), u.id > after_id, u.source_id.in_(own))
            .where(u.late.is_(False))
            .values(late=True)
        )
        flagged += int(session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]
    return flagged


def _sent_after_the_merge(
    session: Session, pr: PullRequest, runs: Mapping[int, tuple[str, str]], claimed_now: Collection[int] = ()
) -> set[int]:
    """Of the runs about to be linked, those their owner sent themselves (a source limited to one person: a
    personal token, or `source create --person`) after Tokenwise learned of the merge: runs stored since, and
    older runs linked by a commit their source claims for them only now (the claim is the sender's word,
    given once the result was known). An operator's sources (an agent platform, `tokenwise import`) vouch
    for what they send, so history they import links in full."""
    if pr.merge_seen_run_id is None or not runs:
        return set()
    r, s = RUNS.c, SOURCES.c
    claims = sorted(run_id for run_id in set(claimed_now) if runs.get(run_id, ("",))[0] == "commit")
    late: set[int] = set()
    ids = sorted(runs)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        after = r.id > pr.merge_seen_run_id
        if claims:
            after = or_(after, r.id.in_([run_id for run_id in claims if run_id in set(chunk)]))
        late.update(
            int(run_id)
            for (run_id,) in session.execute(
                select(r.id).join(SOURCES, s.id == r.source_id).where(r.id.in_(chunk), after, s.person_id.is_not(None))
            )
        )
    return late


def _folders_of(session: Session, repo: str) -> list[str]:
    """The checkout folders that name a repository: its own name, and every folder an operator mapped to it."""
    mapped = session.execute(select(table_of(RepoMapping).c.folder).where(table_of(RepoMapping).c.repo == repo))
    return sorted({repo.rsplit("/", 1)[-1], *(folder.lower() for (folder,) in mapped)})


def prs_for_runs(session: Session, run_ids: Sequence[int], rules: LinkRules) -> list[tuple[str, int]]:
    """Merged pull requests that runs written late (a log import a week after the merge) may belong to:
    same head branch as a run, merged after it started, within the window."""
    if not run_ids:
        return []
    r = RUNS.c
    runs = session.execute(
        select(r.branch, func.min(r.started_at)).where(r.id.in_(run_ids), r.branch.is_not(None)).group_by(r.branch)
    ).all()
    found: set[tuple[str, int]] = set()
    for branch, earliest in runs:
        until = earliest + timedelta(days=rules.window_days)
        for repo, number in session.execute(
            select(PRS.c.repo, PRS.c.number).where(
                PRS.c.head_branch == branch, PRS.c.merged_at >= earliest, PRS.c.merged_at <= until
            )
        ):
            found.add((str(repo), int(number)))
    return sorted(found)


def relink_runs(session: Session, run_ids: Sequence[int], rules: LinkRules) -> int:
    """Settle the pull requests that runs written now may belong to; how many."""
    touched = prs_for_runs(session, run_ids, rules)
    for repo, number in touched:
        settle_one(session, repo, number, rules)
    return len(touched)


IDENTITY_CHUNK = 200  # logins or emails a statement: far below SQLite's limits on variables and expression depth


def settle_for_identities(session: Session, logins: Iterable[str], emails: Iterable[str], rules: LinkRules) -> int:
    """Settle again the pull requests that newly linked GitHub logins (or newly known people's emails) may
    make someone's: those they authored, or holding a commit by one of them; how many. Run after
    `tokenwise people link github` and `tokenwise import org`, so their runs link now, not at the next delivery."""
    names = sorted({name for login in logins if (name := _login(login))})
    addresses = sorted({normalize_email(email) for email in emails if "@" in email})
    if not names and not addresses:
        return 0
    c = COMMITS.c
    found: set[tuple[str, int]] = set()
    branches: dict[str, set[str]] = {}  # repo -> branches of commits not yet in a known pull request

    def add(repo: str, number: int | None, branch: str | None) -> None:
        if number is not None:
            found.add((str(repo), int(number)))
        elif branch:
            branches.setdefault(str(repo), set()).add(str(branch))

    for start in range(0, len(names), IDENTITY_CHUNK):
        chunk = names[start : start + IDENTITY_CHUNK]
        for repo, number in session.execute(select(PRS.c.repo, PRS.c.number).where(PRS.c.author_login.in_(chunk))):
            found.add((str(repo), int(number)))
        for repo, number, branch in session.execute(
            select(c.repo, c.pr_number, c.branch).where(c.author_login.in_(chunk)).distinct()
        ):
            add(repo, number, branch)
    if names:  # GitHub's noreply addresses (ID+login@users.noreply.github.com) name a login: matched here
        wanted = set(names)
        for repo, number, branch, email in session.execute(
            select(c.repo, c.pr_number, c.branch, c.author_email)
            .where(c.author_email.like("%@users.noreply.github.com"))
            .distinct()
        ):
            match = NOREPLY.match(str(email))
            if match and match.group(1).lower() in wanted:
                add(repo, number, branch)
    for start in range(0, len(addresses), IDENTITY_CHUNK):
        chunk = addresses[start : start + IDENTITY_CHUNK]
        for repo, number, branch in session.execute(
            select(c.repo, c.pr_number, c.branch).where(c.author_email.in_(chunk)).distinct()
        ):
            add(repo, number, branch)
    for repo, names_of_branches in sorted(branches.items()):
        found.update((repo, n) for n in prs_touched(session, repo, branches=sorted(names_of_branches)))
    for repo, number in sorted(found):
        settle_one(session, repo, number, rules)
    return len(found)


def record_run_commits(session: Session, pairs: Iterable[tuple[int, str]], rules: LinkRules) -> int:
    """Commits that runs produced (reported by their source); the pull requests holding them are settled."""
    pairs = sorted({(run_id, sha.lower()) for run_id, sha in pairs})
    rows = [{"run_id": run_id, "sha": sha} for run_id, sha in pairs]
    if not rows:
        return 0
    c = table_of(RunCommit).c
    runs = sorted({run_id for run_id, _ in pairs})
    known: set[tuple[int, str]] = set()
    for start in range(0, len(runs), 500):
        known.update(
            (int(run_id), str(sha))
            for run_id, sha in session.execute(select(c.run_id, c.sha).where(c.run_id.in_(runs[start : start + 500])))
        )
    insert_new(session, table_of(RunCommit), rows, ("run_id", "sha"))
    claimed_now = {run_id for run_id, sha in pairs if (run_id, sha) not in known}  # a claim repeated is not new
    shas = sorted({sha.lower() for _, sha in pairs})
    holders = session.execute(
        select(PRS.c.repo, PRS.c.number).where(
            or_(
                PRS.c.head_sha.in_(shas),
                PRS.c.merge_sha.in_(shas),
                tuple_(PRS.c.repo, PRS.c.number).in_(
                    select(COMMITS.c.repo, COMMITS.c.pr_number).where(COMMITS.c.sha.in_(shas))
                ),
                tuple_(PRS.c.repo, PRS.c.head_branch).in_(
                    select(COMMITS.c.repo, COMMITS.c.branch).where(COMMITS.c.sha.in_(shas))
                ),
            )
        )
    ).all()
    for repo, number in holders:
        settle_one(session, str(repo), int(number), rules, claimed_now=claimed_now)
    return len(rows)


def remove_link(session: Session, outcome_id: int, run_id: int, person_id: int, rules: LinkRules) -> bool:
    """The run's owner says a pull request is not their run's: the link is removed, and stays removed."""
    owner = session.execute(select(RUNS.c.person_id).where(RUNS.c.id == run_id)).scalar_one_or_none()
    if owner != person_id:
        return False
    done = session.execute(
        update(LINKS)
        .where(LINKS.c.outcome_id == outcome_id, LINKS.c.run_id == run_id, LINKS.c.removed_at.is_(None))
        .values(removed_at=utcnow())
    )
    if not getattr(done, "rowcount", 0):
        return False
    external_id = session.execute(select(OUTCOMES.c.external_id).where(OUTCOMES.c.id == outcome_id)).scalar_one()
    match = re.match(r"^github:(.+)#(\d+):", external_id or "")
    if match is not None:
        settle_one(session, match.group(1), int(match.group(2)), rules)
    return True


def links_of_runs(session: Session, run_ids: Sequence[int]) -> dict[int, list[tuple[int, str, str, bool]]]:
    """run id -> its active links: (outcome id, pull request URL, evidence, late: sent after the merge)."""
    if not run_ids:
        return {}
    found: dict[int, list[tuple[int, str, str, bool]]] = {}
    for run_id, outcome_id, url, evidence, late in session.execute(
        select(LINKS.c.run_id, LINKS.c.outcome_id, OUTCOMES.c.url, LINKS.c.evidence, LINKS.c.late)
        .join(OUTCOMES, OUTCOMES.c.id == LINKS.c.outcome_id)
        .where(LINKS.c.run_id.in_(run_ids), LINKS.c.removed_at.is_(None))
        .order_by(LINKS.c.run_id, LINKS.c.outcome_id)
    ):
        found.setdefault(int(run_id), []).append((int(outcome_id), str(url or ""), str(evidence), bool(late)))
    return found


def find_pull_request(session: Session, url: str) -> PullRequest | None:
    """The pull request at a URL (html `.../pull/N`), however it is written."""
    match = re.search(r"github[^/]*/([^/]+/[^/]+)/pulls?/(\d+)", url.strip())
    if match is None:
        return None
    return session.execute(
        select(PullRequest).where(PRS.c.repo == repo_name(match.group(1)), PRS.c.number == int(match.group(2)))
    ).scalar_one_or_none()


def unmatched_logins(session: Session, source_id: int | None = None) -> list[tuple[str, int]]:
    """GitHub logins whose pull requests name no known person, with how many: kept, listed, never invented."""
    rows = session.execute(
        select(PRS.c.author_login, func.count())
        .where(PRS.c.author_login.is_not(None), *([PRS.c.source_id == source_id] if source_id else []))
        .group_by(PRS.c.author_login)
        .order_by(PRS.c.author_login)
    ).all()
    return [(str(login), int(count)) for login, count in rows if person_for_github(session, str(login)) is None]


__all__ = [
    "CheckSeen",
    "CommitSeen",
    "LinkRules",
    "PullRequestSeen",
    "Settled",
    "claim_deliveries",
    "claim_delivery",
    "find_pull_request",
    "links_of_runs",
    "person_for_github",
    "prs_touched",
    "queue_settle",
    "record_check",
    "record_checks",
    "record_commits",
    "record_pull_request",
    "record_run_commits",
    "relink_runs",
    "remove_link",
    "repo_name",
    "settle",
    "settle_for_identities",
    "settle_one",
    "settle_queued",
    "unmatched_logins",
    "unsettled_repo",
    "watch_late_usage",
]
