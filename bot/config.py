"""Settings, read once from the environment (and an optional .env file)."""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.github import LinkRules
from storage.models import OUTCOME_KINDS

DEFAULT_OUTCOME_WEIGHTS: dict[str, Decimal] = {
    "pr_merged": Decimal("3"),
    "pr_opened": Decimal("1"),
    "commit": Decimal("0.5"),
    "tests_passed": Decimal("0.5"),
    "deploy": Decimal("2"),
    "ticket_closed": Decimal("2"),
    "doc": Decimal("1"),
    "other": Decimal("1"),
}


# Commit-message trailers that say an agent wrote the commit (matched per line, ignoring case). Claude Code
# adds the first; GitHub Copilot's coding agent, Cursor, Codex, Aider and Gemini add the others.
DEFAULT_AGENT_TRAILERS = (
    r"^co-authored-by:.*\bclaude\b",
    r"^co-authored-by:.*noreply@anthropic\.com",
    r"^co-authored-by:.*\bcopilot\b",
    r"^co-authored-by:.*\bcursor(agent)?\b",
    r"^co-authored-by:.*\b(codex|openai)\b",
    r"^co-authored-by:.*\baider\b",
    r"^co-authored-by:.*\bgemini\b",
    r"^(generated|assisted)-by:",
)


class Settings(BaseSettings):
    """Every tunable of Tokenwise; each field is documented in the README."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field("sqlite:///./tokenwise.db", validation_alias=AliasChoices("DATABASE_URL"))
    min_group_size: int = Field(5, ge=2, validation_alias=AliasChoices("TOKENWISE_MIN_GROUP_SIZE"))
    # Disclosure control (docs/metrics.md): who counts as active, and how much of a sum one person may make.
    active_min_tokens: int = Field(1000, ge=1, validation_alias=AliasChoices("TOKENWISE_ACTIVE_MIN_TOKENS"))
    active_min_cost_usd: Decimal = Field(
        Decimal("0.01"), gt=0, validation_alias=AliasChoices("TOKENWISE_ACTIVE_MIN_COST_USD")
    )
    dominance_share: Decimal = Field(
        Decimal("0.85"), gt=Decimal("0.5"), le=1, validation_alias=AliasChoices("TOKENWISE_DOMINANCE_SHARE")
    )
    timezone: str = Field("UTC", validation_alias=AliasChoices("TOKENWISE_TIMEZONE"))
    # Below this share of usage records with a known cost, shares of spend and costs per outcome are shown
    # as "not enough priced usage" instead of a percentage of a sliver (docs/metrics.md, "Cost coverage").
    min_cost_coverage: Decimal = Field(
        Decimal("0.5"), ge=0, le=1, validation_alias=AliasChoices("TOKENWISE_MIN_COST_COVERAGE")
    )
    outcome_weights: dict[str, Decimal] = Field(
        default_factory=dict, validation_alias=AliasChoices("TOKENWISE_OUTCOME_WEIGHTS")
    )

    # Slack (docs/slack.md)
    slack_bot_token: str | None = Field(None, validation_alias=AliasChoices("SLACK_BOT_TOKEN"))
    slack_signing_secret: str | None = Field(None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET"))
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=AliasChoices("SLACK_API_URL"))
    slack_app_token: str | None = Field(None, validation_alias=AliasChoices("SLACK_APP_TOKEN"))
    slack_client_id: str | None = Field(None, validation_alias=AliasChoices("SLACK_CLIENT_ID"))
    slack_client_secret: str | None = Field(None, validation_alias=AliasChoices("SLACK_CLIENT_SECRET"))
    slack_user_cache_seconds: int = Field(
        3600, ge=0, validation_alias=AliasChoices("TOKENWISE_SLACK_USER_CACHE_SECONDS")
    )
    # The address other machines reach this server at (https://tokenwise.example.com); unset, set-up text
    # says so instead of showing an address that works only on the server itself.
    public_url: str | None = Field(None, validation_alias=AliasChoices("TOKENWISE_PUBLIC_URL"))
    health_check_seconds: float = Field(
        30, gt=0, le=3600, validation_alias=AliasChoices("TOKENWISE_HEALTH_CHECK_SECONDS")
    )
    coaching_min_tokens: int = Field(500_000, ge=1, validation_alias=AliasChoices("TOKENWISE_COACHING_MIN_TOKENS"))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from storage.periods import zone

        zone(value)
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @property
    def copilot_token(self) -> tuple[str, str] | None:
        """The Copilot pull's token and the variable it came from: TOKENWISE_COPILOT_GITHUB_TOKEN, else
        GITHUB_TOKEN (one token serves both pulls when it has both permissions)."""
        if self.copilot_github_token:
            return self.copilot_github_token, "TOKENWISE_COPILOT_GITHUB_TOKEN"
        if self.github_token:
            return self.github_token, "GITHUB_TOKEN"
        return None

    @property
    def slack_oauth_enabled(self) -> bool:
        """Many workspaces (OAuth install flow) instead of one bot token."""
        return bool(self.slack_client_id and self.slack_client_secret)

    # Digests, nudges, retention and manager summaries (docs/digests.md, docs/summaries.md)
    digest_grace_hours: float = Field(12, ge=0, le=168, validation_alias=AliasChoices("TOKENWISE_DIGEST_GRACE_HOURS"))
    digest_lease_minutes: float = Field(
        10, gt=0, le=1440, validation_alias=AliasChoices("TOKENWISE_DIGEST_LEASE_MINUTES")
    )
    digest_tick_seconds: int = Field(60, ge=5, le=3600, validation_alias=AliasChoices("TOKENWISE_DIGEST_TICK_SECONDS"))
    # Digests due together are sent this many at a time (each has its own claim: none is posted twice).
    digest_workers: int = Field(4, ge=1, le=16, validation_alias=AliasChoices("TOKENWISE_DIGEST_WORKERS"))
    retention_days: int = Field(400, ge=30, validation_alias=AliasChoices("TOKENWISE_RETENTION_DAYS"))
    openai_api_key: str | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=AliasChoices("OPENAI_BASE_URL"))
    llm_model: str = Field("gpt-4o-mini", min_length=1, validation_alias=AliasChoices("TOKENWISE_LLM_MODEL"))
    llm_timeout_seconds: float = Field(20, gt=0, le=300, validation_alias=AliasChoices("TOKENWISE_LLM_TIMEOUT_SECONDS"))
    llm_max_retries: int = Field(1, ge=0, le=5, validation_alias=AliasChoices("TOKENWISE_LLM_MAX_RETRIES"))

    # Ingest (docs/ingest.md)
    ingest_max_bytes: int = Field(5 * 1024 * 1024, ge=1024, validation_alias=AliasChoices("TOKENWISE_INGEST_MAX_BYTES"))
    ingest_max_items: int = Field(10_000, ge=1, validation_alias=AliasChoices("TOKENWISE_INGEST_MAX_ITEMS"))
    ingest_rate_limit: int = Field(6000, ge=0, validation_alias=AliasChoices("TOKENWISE_INGEST_RATE_LIMIT"))
    ingest_retry_after_seconds: int = Field(
        5, ge=1, le=3600, validation_alias=AliasChoices("TOKENWISE_INGEST_RETRY_AFTER_SECONDS")
    )
    openai_admin_key: str | None = Field(None, validation_alias=AliasChoices("OPENAI_ADMIN_KEY"))
    openai_usage_days: int = Field(2, ge=1, le=31, validation_alias=AliasChoices("TOKENWISE_OPENAI_USAGE_DAYS"))
    # The OpenAI usage and cost pulls' base URL (tests, proxies), separate from the summaries' OPENAI_BASE_URL.
    openai_admin_base_url: str | None = Field(None, validation_alias=AliasChoices("OPENAI_ADMIN_BASE_URL"))
    # Vendor admin-API pulls (docs/ingest.md): Anthropic's Claude Code Analytics and Usage & Cost APIs.
    anthropic_admin_key: str | None = Field(None, validation_alias=AliasChoices("ANTHROPIC_ADMIN_KEY"))
    anthropic_api_url: str = Field("https://api.anthropic.com", validation_alias=AliasChoices("ANTHROPIC_API_URL"))
    # How many days (today included) each hourly vendor pull refreshes: the vendors settle late figures.
    vendor_pull_days: int = Field(3, ge=1, le=31, validation_alias=AliasChoices("TOKENWISE_VENDOR_PULL_DAYS"))
    link_window_days: int = Field(14, ge=1, le=365, validation_alias=AliasChoices("TOKENWISE_LINK_WINDOW_DAYS"))
    agent_trailers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_AGENT_TRAILERS), validation_alias=AliasChoices("TOKENWISE_AGENT_TRAILERS")
    )
    github_titles: bool = Field(False, validation_alias=AliasChoices("TOKENWISE_GITHUB_TITLES"))
    # `tokenwise import github` (docs/ingest.md "GitHub history"): a token that reads the repository's pull
    # requests, and the REST API's base URL (GitHub Enterprise Server: https://HOST/api/v3).
    github_token: str | None = Field(None, validation_alias=AliasChoices("GITHUB_TOKEN"))
    github_api_url: str = Field("https://api.github.com", validation_alias=AliasChoices("GITHUB_API_URL"))
    github_self_merge_counts: bool = Field(False, validation_alias=AliasChoices("TOKENWISE_GITHUB_SELF_MERGE_COUNTS"))
    # Cursor's Admin API and GitHub Copilot's usage metrics (docs/ingest.md "Cursor", "GitHub Copilot").
    cursor_admin_key: str | None = Field(None, validation_alias=AliasChoices("CURSOR_ADMIN_KEY"))
    cursor_api_url: str = Field("https://api.cursor.com", validation_alias=AliasChoices("CURSOR_API_URL"))
    # The Copilot pull's token when GITHUB_TOKEN lacks the organisation's Copilot metrics permission.
    copilot_github_token: str | None = Field(None, validation_alias=AliasChoices("TOKENWISE_COPILOT_GITHUB_TOKEN"))
    copilot_org: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$", validation_alias=AliasChoices("TOKENWISE_COPILOT_ORG")
    )
    # A Copilot seat's price per month, spread evenly over the month's days for each person active that day;
    # unset, Copilot's cost stays unknown (GitHub reports no cost per person).
    copilot_seat_usd: Decimal | None = Field(
        None, ge=0, le=100_000, validation_alias=AliasChoices("TOKENWISE_COPILOT_SEAT_USD")
    )

    @field_validator("outcome_weights")
    @classmethod
    def _known_kinds_only(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        unknown = sorted(set(value) - set(OUTCOME_KINDS))
        if unknown:
            raise ValueError(f"unknown outcome kind(s) {unknown}; kinds are {', '.join(OUTCOME_KINDS)}")
        if any(w < 0 for w in value.values()):
            raise ValueError("outcome weights must not be negative")
        return value

    @field_validator("agent_trailers")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"'{pattern}' is not a regular expression: {error}") from error
        return value

    def weight_for(self, kind: str) -> Decimal:
        """The configured weight of an outcome kind, falling back to the documented default."""
        return self.outcome_weights.get(kind, DEFAULT_OUTCOME_WEIGHTS[kind])

    def link_rules(self) -> LinkRules:
        """How GitHub's facts become outcomes and run links (storage/github.py)."""
        weights = {kind: self.weight_for(kind) for kind in OUTCOME_KINDS}
        return LinkRules(self.link_window_days, weights, self.github_self_merge_counts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # read from the environment
