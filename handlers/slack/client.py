"""The Slack Web API client, built one way with one explicit retry policy.

429s are retried after Slack's Retry-After (Slack did nothing). Server errors and dropped connections
are retried only for calls that create nothing: after an ambiguous failure, `chat.postMessage` may have
posted, and a retry could post twice; those are left to the caller (the digest's next tick checks the
channel before posting again, docs/digests.md).
"""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

API_TIMEOUT_SECONDS = 10
# Methods that create something in Slack: a retry after an ambiguous failure could create it twice, so
# they are retried only on 429 (Slack did nothing) and otherwise left to the caller.
NON_IDEMPOTENT = ("chat.postMessage", "files.completeUploadExternal", "chat.postEphemeral")


class _OnlyIdempotent(RetryHandler):
    """Wraps a retry handler so it never retries a call that may have created a message."""

    def __init__(self, inner: RetryHandler) -> None:
        super().__init__(inner.max_retry_count, inner.interval_calculator)
        self.inner = inner

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if any(request.url.endswith(method) for method in NON_IDEMPOTENT):
            return False
        return self.inner._can_retry(state=state, request=request, response=response, error=error)


def slack_retry_handlers(rate_limit_retries: int = 8, server_error_retries: int = 3) -> list[RetryHandler]:
    """429s are always retried after Retry-After; 5xx and broken connections only for safe calls."""
    return [
        RateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
        _OnlyIdempotent(ServerErrorRetryHandler(max_retry_count=server_error_retries)),
        _OnlyIdempotent(ConnectionErrorRetryHandler(max_retry_count=server_error_retries)),
    ]


def build_slack_client(
    token: str | None = None, base_url: str | None = None, timeout: int = API_TIMEOUT_SECONDS, *, retry: bool = True
) -> WebClient:
    """The one way Tokenwise makes a Slack Web API client: for SLACK_API_URL (`base_url`), with the retry
    policy of `slack_retry_handlers`, for every caller (listeners, digests, nudges, the console). Without
    `retry` (the health probe, which runs again anyway), one attempt answers at once."""
    return WebClient(
        token=token,
        base_url=base_url or WebClient.BASE_URL,
        timeout=timeout,
        retry_handlers=slack_retry_handlers() if retry else [],
    )
