"""`tokenwise import github`: a repository's merged pull requests and their commits, read back from GitHub's
REST API and stored as the webhooks store them (storage/github.py), then settled into outcomes.

Everything about one pull request is fetched first and then written, with its settling, in one short
transaction: no transaction waits on the network, and an interrupted backfill keeps what it wrote. The rows
are keyed by repository and number (commits by SHA), so a re-run, or a webhook about the same pull request,
updates them and the same outcome. Requests go one at a time, as GitHub asks of integrations, and rate
limits are waited out: each wait is capped and announced.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2
from gidgethub import BadRequest, GitHubBroken, GitHubException, HTTPException, RateLimitExceeded
from gidgethub.httpx import GitHubAPI
from sqlalchemy import Engine
from sqlmodel import Session

from bot.config import Settings
from storage.db import take_turns
from storage.github import (
    CommitSeen,
    LinkRules,
    PullRequestSeen,
    Settled,
    prs_touched,
    record_commits,
    record_pull_request,
    repo_name,
    settle,
)
from storage.ingest import write_atomically
from storage.models import id_of
from storage.sources import internal_source

SOURCE_NAME = "github-backfill"
SOURCE_KIND = "github"
REQUESTER = "tokenwise"  # GitHub asks every client for a User-Agent naming it
API_VERSION = {"x-github-api-version": "2022-11-28"}
REPO = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")
PULLS = "/repos/{owner}/{repo}/pulls{?state,sort,direction,per_page}"
PULL = "/repos/{owner}/{repo}/pulls/{number}"
PULL_COMMITS = "/repos/{owner}/{repo}/pulls/{number}/commits{?per_page}"
MAX_WAIT_SECONDS = 15 * 60  # one wait at most; GitHub's hourly limit may take a few
MAX_RATE_LIMIT_WAITS = 8  # for one request, before giving up
SECONDARY_WAIT_SECONDS = 60  # GitHub: "wait for at least one minute" when a secondary limit names no time
MAX_SERVER_ERROR_RETRIES = 3

Sleep = Callable[[float], Awaitable[None]]
Notice = Callable[[str], None]
Progress = Callable[[int, int], None]  # (pull requests done, of how many)


class GitHubUnavailable(Exception):
    """GitHub refused or could not answer; the message is one line that says what to do."""


# -- the REST client ----------------------------------------------------------------------------------------
class GitHubRest(GitHubAPI):
    """gidgethub's httpx client (pagination by Link headers, rate-limit headers read) that also waits out
    GitHub's rate limits and server errors. The clock and the sleep are injectable, for tests."""

    def __init__(
        self,
        client: httpx2.AsyncClient,
        token: str,
        base_url: str = "https://api.github.com",
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        max_wait: float = MAX_WAIT_SECONDS,
        notice: Notice | None = None,
    ) -> None:
        super().__init__(client, REQUESTER, oauth_token=token, base_url=base_url)
        self._sleep, self._clock, self._max_wait = sleep, clock, max_wait
        self._notice = notice or (lambda _message: None)
        self.waited = 0.0  # seconds spent waiting, in all

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def handle_rate_limit_error(self, *, method: str, url: str, exception: HTTPException, attempt: int) -> bool:
        """Wait and retry a rate-limited request (or one GitHub failed to answer); False lets it fail."""
        if isinstance(exception, GitHubBroken):
            if attempt > MAX_SERVER_ERROR_RETRIES:
                return False
            wait = float(2**attempt)
            self._notice(f"GitHub answered {int(exception.status_code)}; asking again in {_duration(wait)}.")
        else:
            wanted = rate_limit_wait(int(exception.status_code), exception.headers, str(exception), self._clock())
            if wanted is None or attempt > MAX_RATE_LIMIT_WAITS:
                return False
            wait = min(wanted, self._max_wait)
            until = datetime.fromtimestamp(self._clock() + wanted, UTC).strftime("%H:%M:%S UTC")
            capped = (
                f"; {_duration(self._max_wait)} is the longest Tokenwise waits at once, then it asks again"
                if wanted > self._max_wait
                else ""
            )
            self._notice(f"GitHub's rate limit: waiting {_duration(wait)} (until {until}){capped}.")
        self.waited += wait
        await self.sleep(wait)
        return True


def rate_limit_wait(status: int, headers: Mapping[str, str], message: str, now: float) -> float | None:
    """How long GitHub asks us to wait before asking again, in seconds, or None if this is no rate limit.

    GitHub's rules: `retry-after` (seconds) when given; else, with `x-ratelimit-remaining: 0`, until
    `x-ratelimit-reset` (epoch seconds); else a secondary limit (a 429, or a 403 saying so) for a minute."""
    if status not in (403, 429):
        return None
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            return max(float(retry_after), 0.0)
        except ValueError:
            try:
                return max(parsedate_to_datetime(retry_after).timestamp() - now, 0.0)
            except (TypeError, ValueError):
                pass
    reset = headers.get("x-ratelimit-reset")
    if headers.get("x-ratelimit-remaining") == "0" and reset:
        try:
            return max(float(reset) - now, 0.0) + 1.0  # the second it resets in has to be over
        except ValueError:
            pass
    if status == 429 or "rate limit" in message.lower():
        return float(SECONDARY_WAIT_SECONDS)
    return None


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


# -- GitHub's shapes -> what storage keeps ------------------------------------------------------------------
def trailer_patterns(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """The agent-trailer settings, compiled once: matched per line of a commit message, ignoring case."""
    return [re.compile(pattern, re.IGNORECASE) for pattern in patterns]


def agent_trailer(message: str, patterns: Sequence[re.Pattern[str]]) -> str | None:
    """The first line of a commit message that says an agent wrote it (the message itself is not kept)."""
    for line in message.splitlines():
        line = line.strip()
        if any(pattern.search(line) for pattern in patterns):
            return line[:100]
    return None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _login(user: Any) -> str | None:
    login = user.get("login") if isinstance(user, Mapping) else None
    return login if isinstance(login, str) and login else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def pull_request_seen(repo: str, pull: Mapping[str, Any], titles: bool = False) -> PullRequestSeen:
    """A pull request as GitHub's REST API describes it (`GET /repos/{owner}/{repo}/pulls/{number}`)."""
    head = pull.get("head") or {}
    title = pull.get("title")
    return PullRequestSeen(
        repo=repo,
        number=int(pull["number"]),
        url=str(pull.get("html_url") or f"https://github.com/{repo}/pull/{pull['number']}"),
        author_login=_login(pull.get("user")),
        merged_by_login=_login(pull.get("merged_by")),
        head_branch=head.get("ref") or None,
        head_sha=head.get("sha") or None,
        merge_sha=pull.get("merge_commit_sha") or None,
        opened_at=_time(pull.get("created_at")),
        merged_at=_time(pull.get("merged_at")),
        closed_at=_time(pull.get("closed_at")),
        updated_at=_time(pull.get("updated_at")),
        additions=_int(pull.get("additions")),
        deletions=_int(pull.get("deletions")),
        title=title if titles and isinstance(title, str) else None,
    )


def commit_seen(pr: PullRequestSeen, item: Mapping[str, Any], patterns: Sequence[re.Pattern[str]]) -> CommitSeen:
    """A commit as GitHub lists it in a pull request (`GET .../pulls/{number}/commits`)."""
    commit = item.get("commit") or {}
    author, committer = commit.get("author") or {}, commit.get("committer") or {}
    return CommitSeen(
        repo=pr.repo,
        sha=str(item["sha"]),
        branch=pr.head_branch,
        pr_number=pr.number,
        author_login=_login(item.get("author")),
        author_email=author.get("email") or None,
        agent_trailer=agent_trailer(str(commit.get("message") or ""), patterns),
        committed_at=_time(committer.get("date")) or _time(author.get("date")),
    )


# -- fetching -----------------------------------------------------------------------------------------------
@dataclass
class FetchedPull:
    pr: PullRequestSeen
    commits: list[CommitSeen]


async def closed_since(api: GitHubRest, repo: str, since: datetime) -> list[Mapping[str, Any]]:
    """Closed pull requests updated since `since`: newest update first, paging stops at the first older one."""
    owner, name = repo.split("/", 1)
    found: list[Mapping[str, Any]] = []
    params: dict[str, str | int] = {
        "owner": owner,
        "repo": name,
        "state": "closed",
        "sort": "updated",
        "direction": "desc",
        "per_page": 100,
    }
    async with aclosing(api.getiter(PULLS, params, extra_headers=API_VERSION)) as pulls:
        async for pull in pulls:
            updated = _time(pull.get("updated_at"))
            if updated is not None and updated < since:
                break
            found.append(pull)
    return found


async def fetch_pull(
    api: GitHubRest, repo: str, number: int, patterns: Sequence[re.Pattern[str]], titles: bool
) -> FetchedPull:
    """The pull request itself (additions, deletions, merged_by are only there) and all its commits."""
    owner, name = repo.split("/", 1)
    where: dict[str, str | int] = {"owner": owner, "repo": name, "number": number}
    pull = await api.getitem(PULL, where, extra_headers=API_VERSION)
    pr = pull_request_seen(repo, pull, titles)
    commits = [
        commit_seen(pr, item, patterns)
        async for item in api.getiter(PULL_COMMITS, {**where, "per_page": 100}, extra_headers=API_VERSION)
    ]
    return FetchedPull(pr, commits)


# -- writing ------------------------------------------------------------------------------------------------
def write_pull(engine: Engine, fetched: FetchedPull, rules: LinkRules) -> Settled:
    """One short transaction: the pull request, its commits, and the settling of every pull request they
    touch (a commit may sit in more than one), taking its turn with the webhook's writers of the repository
    (storage.db.take_turns), so a delivery and the backfill never settle one pull request at once."""
    pr = fetched.pr

    def work(session: Session) -> Settled:
        take_turns(session, f"github:{repo_name(pr.repo)}")  # with the webhook's writers of this repository
        source_id = id_of(internal_source(session, SOURCE_NAME, SOURCE_KIND))
        record_pull_request(session, source_id, pr)
        record_commits(session, source_id, fetched.commits)
        shas = [c.sha for c in fetched.commits] + [s for s in (pr.head_sha, pr.merge_sha) if s]
        touched = set(prs_touched(session, pr.repo, [pr.number], shas=shas)) | {pr.number}
        settled = settle(session, pr.repo, touched, rules)
        return next(s for s in settled if s.pr is not None and s.pr.number == pr.number)

    return write_atomically(engine, work)


# -- the backfill -------------------------------------------------------------------------------------------
@dataclass
class BackfillSummary:
    closed: int = 0  # closed pull requests updated since the date
    merged: int = 0  # of them, merged since the date: stored and settled
    commits: int = 0
    linked: int = 0  # merged pull requests linked to at least one agent run
    assisted: int = 0  # linked, or carrying an agent trailer
    counted: int = 0  # evidence and assisted: what moves outcome value
    unknown_author: int = 0  # by a GitHub login no person is linked to
    unknown_logins: set[str] = field(default_factory=set)
    waited: float = 0.0


def _tally(summary: BackfillSummary, fetched: FetchedPull, settled: Settled) -> None:
    summary.merged += 1
    summary.commits += len(fetched.commits)
    linked = any(active and run_id not in settled.late for run_id, *_, active in settled.links)
    assisted = linked or settled.agent_trailer is not None
    summary.linked += linked
    summary.assisted += assisted and settled.person_id is not None
    summary.counted += assisted and settled.evidence
    if settled.person_id is None:
        summary.unknown_author += 1
        if fetched.pr.author_login:
            summary.unknown_logins.add(fetched.pr.author_login.lower())


async def backfill(
    api: GitHubRest,
    engine: Engine,
    repo: str,
    since: datetime,
    settings: Settings,
    progress: Progress | None = None,
) -> BackfillSummary:
    """Every pull request of `repo` merged since `since`, with its commits, stored and settled."""
    report = progress or (lambda _done, _total: None)
    patterns = trailer_patterns(settings.agent_trailers)
    rules = settings.link_rules()
    summary = BackfillSummary()
    try:
        closed = await closed_since(api, repo, since)
        summary.closed = len(closed)
        numbers = sorted(
            int(pull["number"])
            for pull in closed
            if (merged := _time(pull.get("merged_at"))) is not None and merged >= since
        )
        report(0, len(numbers))
        for done, number in enumerate(numbers, 1):
            fetched = await fetch_pull(api, repo, number, patterns, settings.github_titles)
            _tally(summary, fetched, write_pull(engine, fetched, rules))
            report(done, len(numbers))
    except GitHubException as error:
        raise GitHubUnavailable(explain(error, repo)) from error
    except httpx2.HTTPError as error:
        raise GitHubUnavailable(f"Cannot reach GitHub at {api.base_url} (GITHUB_API_URL): {error}") from error
    finally:
        summary.waited = api.waited
    return summary


def explain(error: GitHubException, repo: str) -> str:
    """GitHub's refusal as one line that names what to change."""
    said = " ".join(str(error).split())[:200]
    status = int(getattr(error, "status_code", 0))
    if isinstance(error, RateLimitExceeded) or (status in (403, 429) and "rate limit" in said.lower()):
        return f"GitHub's rate limit stayed exhausted ({status} {said}); run the backfill again later."
    if status == 401:
        return f"GitHub refused GITHUB_TOKEN ({status} {said}): set GITHUB_TOKEN to a valid token."
    if status == 403:
        return (
            f"GitHub refused GITHUB_TOKEN for {repo} ({status} {said}): "
            "give the token read access to the repository's pull requests."
        )
    if status == 404:
        return f"GitHub has no repository {repo}, or GITHUB_TOKEN cannot see it ({status} {said})."
    if isinstance(error, BadRequest | GitHubBroken | HTTPException):
        return f"GitHub answered {status} ({said}) for {repo}; nothing more was imported."
    return f"GitHub's answer could not be read ({said})."


async def import_history(
    settings: Settings,
    engine: Engine,
    repo: str,
    since: datetime,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> BackfillSummary:
    """The backfill with a client built from the settings (GITHUB_TOKEN, GITHUB_API_URL), closed after."""
    if not settings.github_token:
        raise GitHubUnavailable(f"Set GITHUB_TOKEN to a GitHub token that can read {repo}'s pull requests.")
    async with httpx2.AsyncClient(timeout=60.0, follow_redirects=True) as client:
        api = GitHubRest(client, settings.github_token, settings.github_api_url, notice=notice)
        return await backfill(api, engine, repo, since, settings, progress)


__all__ = [
    "SOURCE_NAME",
    "BackfillSummary",
    "GitHubRest",
    "GitHubUnavailable",
    "agent_trailer",
    "backfill",
    "commit_seen",
    "import_history",
    "pull_request_seen",
    "rate_limit_wait",
]
