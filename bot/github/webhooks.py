"""GitHub's webhook deliveries: which GitHub source signed one, what its event says in Tokenwise's terms
(pull requests, commits, checks), and writing those facts with the outcomes they settle (docs/ingest.md
"GitHub"). Reading a payload is pure; only `take_deliveries` and `settle_waiting` touch the database.

What is kept is what linking and display need: no bodies, diffs or commit messages (a commit keeps only the
agent trailer line that marked it), and a pull request's title only when TOKENWISE_GITHUB_TITLES is on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from gidgethub import BadRequest, ValidationFailure
from gidgethub.sansio import Event, validate_event
from sqlalchemy import Engine
from sqlmodel import Session

from bot.config import Settings
from storage.db import database_unreachable, session_scope, take_turns
from storage.github import (
    CheckSeen,
    CommitSeen,
    LinkRules,
    PullRequestSeen,
    claim_deliveries,
    prs_touched,
    queue_settle,
    record_checks,
    record_commits,
    record_pull_request,
    settle,
    settle_queued,
    unsettled_repo,
)
from storage.ingest import write_atomically, write_prepared
from storage.sources import webhook_secrets

# GitHub caps a delivery's payload at 25 MB; a bigger body is no GitHub delivery.
MAX_BYTES = 25 * 1024 * 1024
EVENTS = ("pull_request", "push", "workflow_run", "check_suite", "deployment_status")  # what makes facts
SIGNATURE_PREFIX = "sha256="
BRANCH_REF = "refs/heads/"


class NotADelivery(ValueError):
    """A signed request that is not a usable delivery (no event or delivery id, not JSON, not the event's
    shape): the sender can fix it, so it is answered with the reason."""


@dataclass(frozen=True)
class Verified:
    """A delivery whose X-Hub-Signature-256 one active GitHub source's secret made."""

    source_id: int
    event: Event


@dataclass(frozen=True)
class Reading:
    """How a payload is read, from the operator's settings."""

    trailers: tuple[re.Pattern[str], ...] = ()
    titles: bool = False

    @classmethod
    def of(cls, settings: Settings) -> Reading:
        return cls(_compiled(tuple(settings.agent_trailers)), settings.github_titles)


@lru_cache(maxsize=8)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(pattern, re.IGNORECASE | re.MULTILINE) for pattern in patterns)


@dataclass
class Facts:
    """What one delivery says, and what it names of the repository's pull requests (to settle them)."""

    repo: str
    pull_request: PullRequestSeen | None = None
    commits: list[CommitSeen] = field(default_factory=list)
    check: CheckSeen | None = None
    numbers: list[int] = field(default_factory=list)
    branches: list[str] = field(default_factory=list)
    shas: list[str] = field(default_factory=list)


# -- who signed it ------------------------------------------------------------------------------------------
def verify(headers: Mapping[str, str], body: bytes, secrets: Sequence[tuple[int, str]]) -> Verified | None:
    """The delivery and its sender: the first source whose secret makes its X-Hub-Signature-256 (HMAC-SHA256
    of the raw body, compared in constant time by gidgethub), or None. The older SHA-1 header is not taken.

    `headers` has lower-case names. NotADelivery when the signature holds but the request is no delivery.
    """
    signature = headers.get("x-hub-signature-256", "").strip()
    if not signature.startswith(SIGNATURE_PREFIX):
        return None
    for source_id, secret in secrets:
        try:
            validate_event(body, signature=signature, secret=secret)
        except ValidationFailure:
            continue
        return Verified(source_id, _event(headers, body, signature, secret))
    return None


def _event(headers: Mapping[str, str], body: bytes, signature: str, secret: str) -> Event:
    for name in ("x-github-event", "x-github-delivery"):
        if not headers.get(name, "").strip():
            raise NotADelivery(f"The {name.title()} header is missing; GitHub sends it with every delivery.")
    signed = {
        "content-type": headers.get("content-type", ""),
        "x-hub-signature-256": signature,  # checked again by from_http, with the secret that made it
        "x-github-event": headers["x-github-event"].strip(),
        "x-github-delivery": headers["x-github-delivery"].strip(),
    }
    try:
        return Event.from_http(signed, body, secret=secret)
    except BadRequest as error:
        raise NotADelivery("Send the delivery as JSON: set the webhook's content type to application/json.") from error


# -- what it says ---------------------------------------------------------------------------------------------
def read_event(event: str, payload: Any, reading: Reading) -> Facts | None:
    """The facts a verified delivery carries, or None for an event or action Tokenwise does not use (a
    tag push, a failed run, a pending deployment...). NotADelivery when the payload is not the event's shape."""
    if event not in EVENTS:
        return None
    try:
        if not isinstance(payload, dict):
            raise TypeError("not an object")
        repo = str(payload["repository"]["full_name"])
        if event == "pull_request":
            return _pull_request(repo, payload["pull_request"], reading)
        if event == "push":
            return _push(repo, payload, reading)
        if event == "deployment_status":
            return _deployment(repo, payload)
        return _tests_passed(repo, event, payload)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise NotADelivery(f"This {event} payload is not shaped as GitHub sends it ({error!r}).") from error


def _pull_request(repo: str, pr: dict[str, Any], reading: Reading) -> Facts:
    merged_at = _when(pr.get("merged_at"))
    number = int(pr["number"])
    seen = PullRequestSeen(
        repo=repo,
        number=number,
        url=str(pr["html_url"]),
        author_login=_login(pr.get("user")),
        merged_by_login=_login(pr.get("merged_by")),
        head_branch=pr["head"].get("ref") or None,
        head_sha=pr["head"].get("sha") or None,
        # Before the merge GitHub's merge_commit_sha is a test merge, rewritten on every push: kept only once merged.
        merge_sha=(pr.get("merge_commit_sha") or None) if merged_at else None,
        opened_at=_when(pr.get("created_at")),
        merged_at=merged_at,
        closed_at=_when(pr.get("closed_at")),
        updated_at=_when(pr.get("updated_at")),
        additions=_count(pr.get("additions")),
        deletions=_count(pr.get("deletions")),
        title=(pr.get("title") or None) if reading.titles else None,
    )
    return Facts(repo, pull_request=seen, numbers=[number])


def _push(repo: str, payload: dict[str, Any], reading: Reading) -> Facts | None:
    ref = str(payload["ref"])
    if not ref.startswith(BRANCH_REF) or payload.get("deleted"):
        return None  # a tag, or a branch deleted: no commits to keep
    branch = ref[len(BRANCH_REF) :]
    commits = [
        CommitSeen(
            repo=repo,
            sha=str(commit["id"]),
            branch=branch,
            author_login=(commit.get("author") or {}).get("username") or None,
            author_email=(commit.get("author") or {}).get("email") or None,
            agent_trailer=agent_trailer(str(commit.get("message") or ""), reading.trailers),
            committed_at=_when(commit.get("timestamp")),
        )
        for commit in payload["commits"]
    ]
    if not commits:
        return None
    return Facts(repo, commits=commits, branches=[branch], shas=[c.sha for c in commits])


def _tests_passed(repo: str, event: str, payload: dict[str, Any]) -> Facts | None:
    """A workflow run or check suite that completed with success: the tests passed on its head commit."""
    run = payload[event]
    if payload.get("action") != "completed" or run.get("conclusion") != "success":
        return None
    numbers = [int(pr["number"]) for pr in run.get("pull_requests") or []]
    branch = run.get("head_branch") or None
    check = CheckSeen(
        repo=repo,
        kind="tests_passed",
        external_id=f"{event}:{run['id']}",
        sha=str(run["head_sha"]),
        completed_at=_when(run.get("updated_at")) or _now(),
        branch=branch,
        pr_numbers=numbers,
    )
    return Facts(repo, check=check, numbers=numbers, branches=[branch] if branch else [], shas=[check.sha])


def _deployment(repo: str, payload: dict[str, Any]) -> Facts | None:
    """A deployment that succeeded: its commit is the merge of the pull requests it shipped."""
    status, deployment = payload["deployment_status"], payload["deployment"]
    if status.get("state") != "success":
        return None
    check = CheckSeen(
        repo=repo,
        kind="deploy",
        external_id=f"deployment:{deployment['id']}:{status['id']}",
        sha=str(deployment["sha"]),
        completed_at=_when(status.get("updated_at")) or _when(status.get("created_at")) or _now(),
        environment=status.get("environment") or deployment.get("environment") or None,
    )
    return Facts(repo, check=check, shas=[check.sha])


def agent_trailer(message: str, trailers: Sequence[re.Pattern[str]]) -> str | None:
    """The first line of a commit message that an agent trailer pattern matches, cut to 100 characters: all
    that is kept of a message."""
    for line in message.splitlines():
        if any(pattern.search(line) for pattern in trailers):
            return line.strip()[:100] or None
    return None


def _login(user: Any) -> str | None:
    return str(user["login"]) if isinstance(user, dict) and user.get("login") else None


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


# -- taking deliveries ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Incoming:
    """A request to the webhook URL as it came: its headers (lower-case names) and raw body."""

    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Handled:
    """What became of one delivery; the HTTP edge renders it."""

    status: int  # 200 written, a re-delivery or a ping; 202 not used; 400 no delivery; 401 unsigned; 500 error
    event: str = ""
    delivery_id: str = ""
    duplicate: bool = False
    message: str = ""  # why a 400
    error: Exception | None = None  # unexpected (the database, mostly): nothing of it was written


@dataclass
class _Usable:
    index: int
    source_id: int
    event: Event
    facts: Facts


def take_deliveries(
    engine: Engine, incoming: Sequence[Incoming], reading: Reading, rules: LinkRules, later: bool = False
) -> list[Handled]:
    """Verify, read and write deliveries that arrived together, in one transaction: each delivery's id is
    claimed in it with its facts, and each pull request they touch is settled once, after all of them are
    written; with `later`, queued to be settled instead (`settle_waiting`), which is what a burst does.
    Under a burst this is what keeps every answer within GitHub's 10 seconds: one commit and one look-up of
    the secrets for the whole group, and the settling, most of the work, after the answers.

    Should the group fail as a whole (but for an unreachable database), each delivery is retried in a
    transaction of its own, so one that cannot be written does not take the others with it."""
    try:
        return write_prepared(engine, lambda session: _prepare(session, incoming, reading, rules, later))
    except Exception as error:
        if len(incoming) == 1 or database_unreachable(error):  # alone, each would wait for the database again
            return [Handled(500, error=error) for _ in incoming]
    return [take_deliveries(engine, [one], reading, rules, later)[0] for one in incoming]


SETTLE_BATCH = 25  # pull requests settled in one transaction after a burst: a delivery arriving waits for one


def settle_waiting(engine: Engine, rules: LinkRules, most: int = SETTLE_BATCH) -> int:
    """Settle up to `most` queued pull requests of one repository (the one waiting longest), in a
    transaction of its own; how many (0: none waits). Run it until it says 0 to settle every one."""
    while True:
        with session_scope(engine) as session:
            repo = unsettled_repo(session)
        if repo is None:
            return 0

        def work(session: Session, repo: str = repo) -> int:
            take_turns(session, f"github:{repo}")
            return settle_queued(session, repo, rules, most)

        settled = write_atomically(engine, work)
        if settled:
            return settled
        # Another process or writer settled that repository while this one waited for its turn: look again.


def _prepare(
    session: Session, incoming: Sequence[Incoming], reading: Reading, rules: LinkRules, later: bool
) -> Callable[[Session], list[Handled]]:
    """The reading half (secrets, signatures, payloads; outside SQLite's writer turn), returning the writing."""
    secrets = webhook_secrets(session)
    handled = [Handled(401) for _ in incoming]
    usable: list[_Usable] = []
    for index, one in enumerate(incoming):
        try:
            verified = verify(one.headers, one.body, secrets)
            if verified is None:
                continue
            event = verified.event
            facts = None if event.event == "ping" else read_event(event.event, event.data, reading)
        except NotADelivery as error:
            handled[index] = Handled(400, message=str(error))
            continue
        if facts is None:
            handled[index] = Handled(200 if event.event == "ping" else 202, event.event, event.delivery_id)
        else:
            usable.append(_Usable(index, verified.source_id, event, facts))

    def write(session: Session) -> list[Handled]:
        for repo in sorted({u.facts.repo.strip().lower() for u in usable}):
            take_turns(session, f"github:{repo}")  # in one order everywhere, so no two groups wait in a circle
        claimed = claim_deliveries(session, [(u.source_id, u.event.delivery_id, u.event.event) for u in usable])
        written = []
        for u in usable:
            if u.event.delivery_id[:64] in claimed:
                claimed.discard(u.event.delivery_id[:64])  # the first of an id sent twice in one group
                written.append(u)
            else:
                handled[u.index] = Handled(200, u.event.event, u.event.delivery_id, duplicate=True)
        _record(session, written)
        named: dict[str, tuple[set[int], set[str], set[str]]] = {}
        for u in written:
            numbers, branches, shas = named.setdefault(u.facts.repo.strip().lower(), (set(), set(), set()))
            numbers.update(u.facts.numbers)
            branches.update(u.facts.branches)
            shas.update(u.facts.shas)
            handled[u.index] = Handled(200, u.event.event, u.event.delivery_id)
        for repo, (numbers, branches, shas) in sorted(named.items()):
            touched = prs_touched(session, repo, numbers, branches, shas)
            if later:
                queue_settle(session, repo, touched)
            else:
                settle(session, repo, touched, rules)
        return handled

    return write


def _record(session: Session, written: Sequence[_Usable]) -> None:
    """Write the facts of the deliveries claimed: each pull request as it came (the later `updated_at` wins),
    the commits and the checks of the whole group in one statement each."""
    for u in written:
        if u.facts.pull_request is not None:
            record_pull_request(session, u.source_id, u.facts.pull_request)
    by_source: dict[int, tuple[list[CommitSeen], list[CheckSeen]]] = {}
    for u in written:
        commits, checks = by_source.setdefault(u.source_id, ([], []))
        commits.extend(u.facts.commits)
        if u.facts.check is not None:
            checks.append(u.facts.check)
    for source_id, (commits, checks) in sorted(by_source.items()):
        record_commits(session, source_id, commits)
        record_checks(session, source_id, checks)
