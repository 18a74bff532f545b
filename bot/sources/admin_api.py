"""What every vendor admin-API pull shares: one HTTP client, pagination, the pull's protocol and its registration.

- `AdminApi`: a JSON client configured once (base URL, auth headers, timeout), built on httpx2. It retries
  429 and 5xx answers (and dropped connections) with exponential backoff, honouring `retry-after` (seconds
  or an HTTP date) up to `max_wait`, and a 403 that says when to come back (GitHub's rate limits:
  `retry-after`, or `x-ratelimit-remaining: 0` until `x-ratelimit-reset`); any other 401 or 403 is
  `KeyRejected`, one line that names the environment variable to fix; any other refusal is an
  `AdminApiError`, one line too.
- `pages(...)`: follows `has_more`/`next_page`-style cursors (names configurable), for JSON answers and for
  SDK objects alike (`cursor_pages`).
- `run_pull(...)`: fetch everything first (the network), then write it in one transaction (`write_atomically`),
  then record the pull's state (`vendor_pull`) in a short transaction of its own: never a network call inside
  a database write transaction, and a failed pull writes no usage.
- `VendorPull`: what a pull registers (bot/sources/vendors.py lists them) so that `tokenwise serve` and
  `tokenwise scheduler` schedule it when its key is set and `tokenwise source status` shows it.
- `Progress`: the hook a pull calls as it goes (`tokenwise import` draws a rich progress bar from it).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx2
from sqlalchemy import Engine
from sqlmodel import Session

from bot.config import Settings
from storage.db import session_scope
from storage.ingest import write_atomically
from storage.vendors import record_pull

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRIED = frozenset({429, 500, 502, 503, 504, 529})  # 529: Anthropic's "overloaded"


class AdminApiError(Exception):
    """A vendor API failure, said in one line (what answered what, and what to do)."""


class KeyRejected(AdminApiError):
    """401 or 403: the key is wrong, revoked or lacks the permission; the message names the variable."""


class Progress(Protocol):
    """Called as a pull goes: `done` of `total` units (days, pages; `total` None when unknown), and what."""

    def __call__(self, done: int, total: int | None, what: str) -> None: ...


def no_progress(done: int, total: int | None, what: str) -> None:
    return None


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from a `retry-after` header (delta seconds or an HTTP date); None without one."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            return max(parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now), 0.0)
        except (TypeError, ValueError):
            return None


def rate_limited(headers: Mapping[str, str]) -> bool:
    """A 403 that is GitHub's rate limit, not a refused token: it says when to come back."""
    return bool(headers.get("retry-after")) or headers.get("x-ratelimit-remaining") == "0"


def reset_wait(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds until `x-ratelimit-reset` (epoch seconds, GitHub's primary limit), or None without one."""
    try:
        reset = float(headers.get("x-ratelimit-reset") or "")
    except ValueError:
        return None
    return max(reset - (time.time() if now is None else now), 0.0) + 1.0  # the second it resets in must be over


def _said(response: httpx2.Response) -> str:
    """The error message an API put in its body ({"error": {"message"}} or {"message"}), short."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or ""
    error = body.get("error") if isinstance(body, dict) else None
    message = (error.get("message") if isinstance(error, dict) else error) or (
        body.get("message") if isinstance(body, dict) else None
    )
    return " ".join(str(message or response.reason_phrase or "").split())[:200]


@dataclass
class AdminApi:
    """One vendor's admin API: built once per pull (or per process) and closed after."""

    vendor: str  # as people name it: "Anthropic", "Cursor"
    base_url: str
    key_env: str  # the environment variable holding the key, named in a refusal's message
    key_hint: str = "an admin key with read access"  # what the variable should hold, said in that message
    sends_key: bool = True  # False: signed links, sent no key, so a refusal is the link's (expired), not a key's
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None  # basic auth (Cursor's key as the user name), when the vendor wants it
    timeout: float = 60.0
    attempts: int = 5
    max_wait: float = 300.0  # a longer retry-after fails the pull (the next scheduled one tries again)
    backoff: float = 1.0  # first wait without a retry-after; doubled each time, with jitter
    sleep: Callable[[float], None] = time.sleep
    requests: int = 0  # requests sent, retries included
    _client: httpx2.Client | None = None

    @property
    def client(self) -> httpx2.Client:
        if self._client is None:
            self._client = httpx2.Client(
                base_url=self.base_url.rstrip("/") + "/",
                headers={"accept": "application/json", "user-agent": "tokenwise", **self.headers},
                auth=self.auth,
                timeout=self.timeout,
                follow_redirects=True,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> AdminApi:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET a JSON answer (a path relative to the base URL, or an absolute URL)."""
        return self.request("GET", path, params=params).json()

    def request(self, method: str, path: str, *, allow: Collection[int] = (), **kwargs: Any) -> httpx2.Response:
        """One request, retried on 429/5xx and dropped connections; refusals raise one-line errors, except the
        statuses in `allow`, which are answers (GitHub's 404 for a report not published yet)."""
        url = path if path.startswith(("http://", "https://")) else path.lstrip("/")
        for attempt in range(1, self.attempts + 1):
            self.requests += 1
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx2.TransportError as error:
                if attempt == self.attempts:
                    raise AdminApiError(
                        f"{self.vendor}'s API at {self.base_url} could not be reached ({type(error).__name__}); "
                        "nothing was written."
                    ) from error
                self._wait(None, attempt)
                continue
            limited = response.status_code == 403 and rate_limited(response.headers)
            if response.status_code in (401, 403) and not limited and not self.sends_key:
                raise AdminApiError(
                    f"{self.vendor} refused a download link (HTTP {response.status_code}: "
                    f"{_said(response) or 'forbidden'}); such links expire soon after they are made, so run the "
                    "pull again. Nothing was written."
                )
            if response.status_code in (401, 403) and not limited:
                raise KeyRejected(
                    f"{self.vendor} refused the key in {self.key_env} (HTTP {response.status_code}: "
                    f"{_said(response) or 'unauthorized'}); set {self.key_env} to {self.key_hint}."
                )
            if (response.status_code in RETRIED or limited) and attempt < self.attempts:
                asked = retry_after(response.headers)
                self._wait(asked if asked is not None else reset_wait(response.headers), attempt)
                continue
            if response.is_error and response.status_code not in allow:
                raise AdminApiError(
                    f"{self.vendor} answered HTTP {response.status_code} for {path.split('?')[0]}"
                    f"{f' ({_said(response)})' if _said(response) else ''}"
                    f"{f' after {attempt} attempts' if attempt > 1 else ''}; nothing was written."
                )
            return response
        raise AssertionError("unreachable")

    def _wait(self, asked: float | None, attempt: int) -> None:
        wait = asked if asked is not None else self.backoff * 2 ** (attempt - 1) * (1 + random.random() / 4)
        if wait > self.max_wait:
            raise AdminApiError(
                f"{self.vendor} asked to wait {wait:.0f} s (retry-after), longer than {self.max_wait:.0f} s; "
                "nothing was written. The next pull tries again."
            )
        log.info("%s: waiting %.1f s before retrying (attempt %d)", self.vendor, wait, attempt)
        self.sleep(wait)

    def pages(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        cursor_param: str = "page",
        next_field: str = "next_page",
        has_more_field: str | None = "has_more",
        max_pages: int = 10_000,
    ) -> Iterator[Any]:
        """Each page of a cursor-paginated list: the next request sends `cursor_param` = the previous answer's
        `next_field`, while `has_more_field` is true (or, with None, while a cursor comes back)."""
        return cursor_pages(
            lambda cursor: self.get(path, {**params, **({cursor_param: cursor} if cursor else {})}),
            next_field=next_field,
            has_more_field=has_more_field,
            max_pages=max_pages,
        )


def _field(page: Any, name: str) -> Any:
    return page.get(name) if isinstance(page, Mapping) else getattr(page, name, None)


def cursor_pages(
    fetch: Callable[[str | None], T],
    *,
    next_field: str = "next_page",
    has_more_field: str | None = "has_more",
    max_pages: int = 10_000,
) -> Iterator[T]:
    """Pages from `fetch(cursor)` (None first), for JSON dicts and SDK objects alike; stops when the answer
    says there is no more, or repeats a cursor (a server bug must not loop forever)."""
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(max_pages):
        page = fetch(cursor)
        yield page
        following = _field(page, next_field)
        more = bool(following) if has_more_field is None else bool(_field(page, has_more_field)) and bool(following)
        if not more or str(following) in seen:
            return
        cursor = str(following)
        seen.add(cursor)


def days_between(since: date, until: date) -> list[date]:
    """Every UTC day in [since, until]."""
    return [since + timedelta(days=n) for n in range((until - since).days + 1)]


def day_unix(day: date) -> int:
    """A UTC day's midnight in Unix seconds."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def unix_day(unix: int) -> date:
    return datetime.fromtimestamp(unix, UTC).date()


def run_pull(
    engine: Engine,
    name: str,
    fetch: Callable[[], T],
    write: Callable[[Session, T], Any],
    *,
    describe: Callable[[T], str] = lambda _fetched: "",
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> T:
    """A pull's protocol: fetch (network, no transaction), write it all in one transaction, record the state.
    A failure is recorded as the pull's error (one line) and raised; a success clears it."""
    try:
        fetched = fetch()
        write_atomically(engine, lambda session: write(session, fetched))
    except Exception as error:
        message = str(error) if isinstance(error, AdminApiError) else f"{type(error).__name__}: {error}"
        _record(engine, name, now(), error=" ".join(message.split()))
        raise
    _record(engine, name, now(), summary=describe(fetched))
    return fetched


def _record(engine: Engine, name: str, at: datetime, **what: str | None) -> None:
    try:
        with session_scope(engine) as session:
            record_pull(session, name, at, **what)
    except Exception:  # the pull's own outcome matters more than its bookkeeping
        log.exception("could not record the state of the %s pull", name)


@dataclass(frozen=True)
class VendorPull:
    """A scheduled vendor pull, as bot/sources/vendors.py registers it.

    `name` is its source's name (usage rows, unattributed identities), its `vendor_pull` row and, unless
    `job_id` says otherwise, its job id `vendor:<name>`. `pull_recent(services)` is the hourly job: it
    refreshes the last days and never raises (it logs, and records the error for `source status`).
    """

    name: str
    label: str
    key_env: str
    configured: Callable[[Settings], bool]
    pull_recent: Callable[[Services], object]
    job_id: str | None = None
    hours: int = 1
    key_help: str = "an admin key"  # what to put in key_env: "an Anthropic Admin API key (sk-ant-admin...)"

    @property
    def job(self) -> str:
        return self.job_id or f"vendor:{self.name}"


def recent_days(days: int, now: datetime | None = None) -> tuple[date, date]:
    """An hourly job's window: the last `days` UTC days, today included (late figures settle)."""
    today = (now or datetime.now(UTC)).date()
    return today - timedelta(days=max(days, 1) - 1), today


def guarded(name: str, job: Callable[[], T]) -> T | None:
    """Run a scheduled pull: a failure is logged in one line (run_pull recorded it) and the next run retries."""
    try:
        return job()
    except AdminApiError as error:
        log.warning("%s pull failed: %s", name, error)
    except Exception:
        log.exception("%s pull failed; the next run retries", name)
    return None
