"""The data model: usage is spend, outcomes and annotations are value.

Prompt and completion text has no column anywhere, by design. Every change here needs an Alembic
revision (`tests/test_migrations.py` fails when models and migrations disagree).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlmodel import Field, SQLModel

from storage.types import MILLI, NANO, ScaledDecimal, UTCDateTime

ROLES = ("member", "manager")
OUTCOME_KINDS = ("pr_merged", "pr_opened", "commit", "tests_passed", "deploy", "ticket_closed", "doc", "other")
VERDICTS = ("useful", "partly", "not_useful")
# Other identities a source may carry for a person; linked to one only by an operator (`tokenwise people link`).
IDENTITY_KINDS = ("account-uuid", "user-id", "api-key", "github")
VERDICT_VALUE = {"useful": Decimal(1), "partly": Decimal("0.5"), "not_useful": Decimal(0)}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _when(nullable: bool = False, index: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable, index=index)


class Person(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slack_user_id: str | None = Field(default=None, max_length=32, unique=True)
    email: str | None = Field(default=None, max_length=320, unique=True)
    display_name: str | None = Field(default=None, max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    nudges_enabled: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when())


class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    slack_usergroup_id: str | None = Field(default=None, max_length=32)
    timezone: str | None = Field(default=None, max_length=64)  # its windows' zone; None: TOKENWISE_TIMEZONE
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when())


class Membership(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("person_id", "team_id"),
        CheckConstraint("role IN ('member', 'manager')", name="ck_membership_role"),
        Index("ix_membership_team", "team_id", "person_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", ondelete="CASCADE")
    team_id: int = Field(foreign_key="team.id", ondelete="CASCADE")
    role: str = Field(default="member", max_length=16)
    # From when the person's usage counts for the team; None: their whole history (a team's first members).
    # Someone added later never changes a closed window (docs/metrics.md, "Disclosure control").
    since: datetime | None = Field(default=None, sa_column=_when(nullable=True))


class Source(SQLModel, table=True):
    """Where usage comes from; its ingest token is stored only as a SHA-256 hash.

    Its kind decides which routes it may write to; `person_id` limits it to one person's data (a personal
    token from `/tokenwise connect`, or `source create --person`); outcomes only with `outcomes`.
    """

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    kind: str = Field(max_length=40)
    token_hash: str | None = Field(default=None, max_length=64, unique=True)
    person_id: int | None = Field(default=None, foreign_key="person.id", ondelete="CASCADE")
    personal: bool = Field(default=False)  # made by /tokenwise connect; replaced by the next one
    outcomes: bool = Field(default=False)  # may post to /v1/outcomes
    # A GitHub source's webhook secret: kept (not hashed) because each delivery's HMAC is checked with it.
    webhook_secret: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when())
    revoked_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))


class AgentRun(SQLModel, table=True):
    """One agent session or job: the unit people annotate. Tokens and cost come from its usage."""

    __tablename__ = "agent_run"
    __table_args__ = (
        UniqueConstraint("source_id", "external_id"),
        Index("ix_agent_run_person_started", "person_id", "started_at"),
        Index("ix_agent_run_started", "started_at"),
        Index("ix_agent_run_person_session", "person_id", "external_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id")
    external_id: str = Field(max_length=200)
    person_id: int = Field(foreign_key="person.id")
    agent: str = Field(max_length=64)
    started_at: datetime = Field(sa_column=_when())
    ended_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    title: str | None = Field(default=None, max_length=300)
    repo: str | None = Field(default=None, max_length=300)
    status: str | None = Field(default=None, max_length=40)
    # Where the session ran, as Claude Code's logs say: the checkout folder (the last component of `cwd`,
    # never the full path, which carries a home folder's name) and the git branch, when first seen.
    project: str | None = Field(default=None, max_length=200)
    branch: str | None = Field(default=None, max_length=200)


class UsageRecord(SQLModel, table=True):
    """One billed model call or usage bucket. `cost_usd` NULL means unknown, never zero.

    `counted` is false for a record that another, more precise source also reported (the same session
    from Claude Code's logs and from its OTLP metrics): it stays stored and explainable, and every sum
    leaves it out (storage/ingest.py: settle_sessions, docs/ingest.md)."""

    __tablename__ = "usage_record"
    __table_args__ = (
        UniqueConstraint("source_id", "dedupe_key"),
        Index("ix_usage_person_time", "person_id", "occurred_at"),
        Index("ix_usage_run", "run_id"),
    )
    id: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    )
    source_id: int = Field(foreign_key="source.id")
    person_id: int = Field(foreign_key="person.id")
    run_id: int | None = Field(default=None, foreign_key="agent_run.id")
    occurred_at: datetime = Field(sa_column=_when())
    agent: str = Field(max_length=64)
    model: str = Field(max_length=120)
    # NULL: the source does not say (a vendor's per-day requests or spend without tokens); left out of every
    # token sum and shown as coverage, never read as zero (storage/vendors.py).
    input_tokens: int | None = Field(default=0, sa_column=Column(BigInteger, nullable=True, default=0))
    output_tokens: int | None = Field(default=0, sa_column=Column(BigInteger, nullable=True, default=0))
    cache_read_tokens: int | None = Field(default=0, sa_column=Column(BigInteger, nullable=True, default=0))
    cache_write_tokens: int | None = Field(default=0, sa_column=Column(BigInteger, nullable=True, default=0))
    cost_usd: Decimal | None = Field(default=None, sa_column=Column(ScaledDecimal(NANO), nullable=True))
    # Who put a figure on `cost_usd`: "reported" by the source (Claude Code's costUSD, an OTLP cost metric, an
    # API's cost_usd), "priced" by Tokenwise from the token counts (genai-prices), or "billed": what the vendor
    # bills for that person (a vendor admin API's per-person spend); NULL when unknown or older.
    cost_source: str | None = Field(default=None, max_length=8)
    dedupe_key: str = Field(max_length=300)
    counted: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=true()))
    # Sent by its owner (a source limited to one person) for a run already linked to a merged pull request,
    # or grown by them after the link: counted as spend, never verified (docs/metrics.md "Late evidence").
    late: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))


class Outcome(SQLModel, table=True):
    """Something a run produced. Linked to a run, or to a person and a time when unlinked."""

    __table_args__ = (
        UniqueConstraint("source_id", "external_id"),
        Index("ix_outcome_person_time", "person_id", "occurred_at"),
        Index("ix_outcome_run", "run_id"),
        CheckConstraint(f"kind IN ({', '.join(repr(kind) for kind in OUTCOME_KINDS)})", name="ck_outcome_kind"),
    )
    id: int | None = Field(default=None, primary_key=True)
    source_id: int | None = Field(default=None, foreign_key="source.id")
    external_id: str | None = Field(default=None, max_length=200)
    run_id: int | None = Field(default=None, foreign_key="agent_run.id")
    person_id: int = Field(foreign_key="person.id")
    kind: str = Field(max_length=20)
    weight: Decimal = Field(sa_column=Column(ScaledDecimal(MILLI), nullable=False))
    url: str | None = Field(default=None, max_length=2000)
    occurred_at: datetime = Field(sa_column=_when())
    # Evidence from outside the person (GitHub, an operator's CI or deploy source), as opposed to what they
    # report themselves (a personal token, Claude Code's own counters): docs/metrics.md "Evidence".
    evidence: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    # Whether it moves outcome value and verified spend: evidence, and for a pull request also the work of
    # an agent (linked to a run, or an agent trailer in its commits).
    counted: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    agent_assisted: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))


class Annotation(SQLModel, table=True):
    """A person's verdict on a run. A run's verdict is its owner's annotation."""

    __table_args__ = (
        UniqueConstraint("run_id", "person_id"),
        CheckConstraint("verdict IN ('useful', 'partly', 'not_useful')", name="ck_annotation_verdict"),
    )
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="agent_run.id", ondelete="CASCADE")
    person_id: int = Field(foreign_key="person.id")
    verdict: str = Field(max_length=16)
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    link: str | None = Field(default=None, max_length=2000)
    share_as_win: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_when())


class DigestSubscription(SQLModel, table=True):
    """A channel that gets a team's weekly digest at a local weekday and time."""

    __tablename__ = "digest_subscription"
    __table_args__ = (UniqueConstraint("slack_team_id", "channel_id", "team_id"),)
    id: int | None = Field(default=None, primary_key=True)
    slack_team_id: str | None = Field(default=None, max_length=32)
    enterprise_id: str | None = Field(default=None, max_length=32)
    channel_id: str = Field(max_length=32)
    team_id: int | None = Field(default=None, foreign_key="team.id", ondelete="CASCADE")
    weekday: int = Field(default=0, ge=0, le=6)
    hour: int = Field(default=9, ge=0, le=23)
    minute: int = Field(default=0, ge=0, le=59)
    timezone: str = Field(default="UTC", max_length=64)
    created_by: int | None = Field(default=None, foreign_key="person.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when())


class DigestPost(SQLModel, table=True):
    """One claimed digest for one period; the unique key is what prevents a double post."""

    __tablename__ = "digest_post"
    __table_args__ = (UniqueConstraint("subscription_id", "period_start"),)
    id: int | None = Field(default=None, primary_key=True)
    subscription_id: int = Field(foreign_key="digest_subscription.id", ondelete="CASCADE")
    period_start: datetime = Field(sa_column=_when())
    status: str = Field(default="claimed", max_length=16)
    attempts: int = Field(default=0)
    claimed_at: datetime = Field(default_factory=utcnow, sa_column=_when())
    posted_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    message_ts: str | None = Field(default=None, max_length=32)
    last_error: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))


class Nudge(SQLModel, table=True):
    """One Monday review reminder to one person; the unique key keeps it to one a week."""

    __table_args__ = (UniqueConstraint("person_id", "week_start"),)
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", ondelete="CASCADE")
    week_start: date
    status: str = Field(default="claimed", max_length=16)
    claimed_at: datetime = Field(default_factory=utcnow, sa_column=_when())
    sent_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))


class AuditEvent(SQLModel, table=True):
    """Who looked at which scope, when."""

    __tablename__ = "audit_event"
    id: int | None = Field(default=None, primary_key=True)
    occurred_at: datetime = Field(default_factory=utcnow, sa_column=_when(index=True))
    actor_person_id: int | None = Field(default=None, foreign_key="person.id")
    actor: str = Field(max_length=100)
    action: str = Field(max_length=60)
    scope: str = Field(max_length=200)
    detail: str | None = Field(default=None, max_length=500)


class PersonLink(SQLModel, table=True):
    """An identity a source carries (an account uuid, a user id, an API key name, a GitHub login) that an
    operator said is this person's: `tokenwise people link`, never inferred from ingested data."""

    __tablename__ = "person_link"
    __table_args__ = (
        UniqueConstraint("kind", "value"),
        CheckConstraint(f"kind IN ({', '.join(repr(kind) for kind in IDENTITY_KINDS)})", name="ck_person_link_kind"),
    )
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)
    value: str = Field(max_length=200)
    person_id: int = Field(foreign_key="person.id", ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when())


class UnattributedUsage(SQLModel, table=True):
    """Usage that names no known person: kept, shown (`tokenwise source status`, the organisation report)
    and moved to its person's usage when an operator links the identity it carries, never dropped."""

    __tablename__ = "unattributed_usage"
    __table_args__ = (
        UniqueConstraint("source_id", "dedupe_key"),
        Index("ix_unattributed_identity", "identity_kind", "identity_value"),
    )
    id: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    )
    source_id: int = Field(foreign_key="source.id")
    identity_kind: str | None = Field(default=None, max_length=20)
    identity_value: str | None = Field(default=None, max_length=200)
    run_external_id: str | None = Field(default=None, max_length=200)
    occurred_at: datetime = Field(sa_column=_when())
    agent: str = Field(max_length=64)
    model: str = Field(max_length=120)
    # NULL: the source does not say (a vendor's per-day requests or spend without tokens); left out of every
    # token sum and shown as coverage, never read as zero (storage/vendors.py).
    input_tokens: int | None = Field(default=0, sa_column=Column(BigInteger, nullable=True, default=0))
    output_tokens: int | None = Field(default=0, sa_column=Column(BigInteger, nullable=True, default=0))
    cache_read_tokens: int | None = Field(default=0, sa_column=Column(BigInteger, nullable=True, default=0))
    cache_write_tokens: int | None = Field(default=0, sa_column=Column(BigInteger, nullable=True, default=0))
    cost_usd: Decimal | None = Field(default=None, sa_column=Column(ScaledDecimal(NANO), nullable=True))
    cost_source: str | None = Field(default=None, max_length=8)
    dedupe_key: str = Field(max_length=300)


class BilledCost(SQLModel, table=True):
    """What a vendor billed the organisation (Anthropic's cost report, OpenAI's `/organization/costs`): one
    row per source, UTC day, model, workspace and line item, replaced when re-pulled. Organisation totals,
    never per person and never added to usage: `tokenwise report --reconcile` sets them against the
    estimate (storage/vendors.py)."""

    __tablename__ = "billed_cost"
    __table_args__ = (
        UniqueConstraint("source", "day", "model", "workspace", "line_item"),
        Index("ix_billed_cost_vendor_day", "vendor", "day"),
    )
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=40)  # the pull that wrote it: anthropic-cost, openai-costs
    vendor: str = Field(max_length=20)  # anthropic, openai: what reconciliation groups by
    day: date
    model: str = Field(default="", max_length=120)  # "" when the line names none
    workspace: str = Field(default="", max_length=120)
    line_item: str = Field(default="", max_length=300)
    # In `currency`'s main unit (dollars); NULL for a line that counts billed tokens only (Anthropic's usage report).
    amount: Decimal | None = Field(default=None, sa_column=Column(ScaledDecimal(NANO), nullable=True))
    currency: str = Field(default="USD", max_length=8)
    tokens: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))  # billed tokens, if given
    pulled_at: datetime = Field(default_factory=utcnow, sa_column=_when())


class ToolDecision(SQLModel, table=True):
    """How often a person accepted or rejected an agent's proposed edits on one UTC day, per tool, as the tool
    itself counts them (Claude Code Analytics' `tool_actions`): a self-reported quality signal for
    `/tokenwise me`, never a headline and never another person's to see."""

    __tablename__ = "tool_decision"
    __table_args__ = (
        UniqueConstraint("source_id", "day", "person_id", "tool"),
        Index("ix_tool_decision_person_day", "person_id", "day"),
    )
    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id", ondelete="CASCADE")
    person_id: int = Field(foreign_key="person.id", ondelete="CASCADE")
    day: date
    tool: str = Field(max_length=40)  # edit_tool, multi_edit_tool, write_tool, notebook_edit_tool
    accepted: int = Field(default=0)
    rejected: int = Field(default=0)


class VendorPullState(SQLModel, table=True):
    """A vendor admin-API pull's last attempt, last success and last error, for `tokenwise source status`."""

    __tablename__ = "vendor_pull"
    name: str = Field(primary_key=True, max_length=40)
    last_attempt_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    last_success_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    last_summary: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))


class GithubDelivery(SQLModel, table=True):
    """A GitHub webhook delivery already handled (`X-GitHub-Delivery`): a re-delivery writes nothing."""

    __tablename__ = "github_delivery"
    delivery_id: str = Field(primary_key=True, max_length=64)
    source_id: int = Field(foreign_key="source.id", ondelete="CASCADE")
    event: str = Field(max_length=40)
    received_at: datetime = Field(default_factory=utcnow, sa_column=_when(index=True))


class GithubUnsettled(SQLModel, table=True):
    """A pull request whose outcomes and run links wait to be recomputed: its facts came in a burst of
    deliveries, which were answered once the facts were written (bot/github/webhooks.py). Removed when the
    pull request is settled, right after the burst or by the next `github:settle` job."""

    __tablename__ = "github_unsettled"
    repo: str = Field(primary_key=True, max_length=200)  # owner/name, lower-cased
    number: int = Field(primary_key=True)
    queued_at: datetime = Field(default_factory=utcnow, sa_column=_when())


class PullRequest(SQLModel, table=True):
    """A pull request as GitHub reported it: what linking and display need, no body or diff (a title only
    when TOKENWISE_GITHUB_TITLES is on)."""

    __tablename__ = "pull_request"
    __table_args__ = (UniqueConstraint("repo", "number"), Index("ix_pull_request_head", "repo", "head_branch"))
    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id", ondelete="CASCADE")
    repo: str = Field(max_length=200)  # owner/name, lower-cased
    number: int
    url: str = Field(max_length=500)
    author_login: str | None = Field(default=None, max_length=100)
    merged_by_login: str | None = Field(default=None, max_length=100)
    head_branch: str | None = Field(default=None, max_length=255)
    head_sha: str | None = Field(default=None, max_length=40)
    merge_sha: str | None = Field(default=None, max_length=40)
    opened_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    merged_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    updated_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))  # GitHub's: newest wins
    additions: int | None = None
    deletions: int | None = None
    title: str | None = Field(default=None, max_length=300)
    # The last run and usage record stored when Tokenwise first learned of the merge (set once): what a
    # person sends themselves after that is not evidence for it (docs/metrics.md "Late evidence").
    merge_seen_run_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    merge_seen_usage_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class GithubCommit(SQLModel, table=True):
    """A commit pushed to a repository (or listed in a pull request by the backfill): its author and
    whether its message carries an agent trailer; never the message itself."""

    __tablename__ = "github_commit"
    __table_args__ = (UniqueConstraint("repo", "sha"), Index("ix_github_commit_branch", "repo", "branch"))
    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id", ondelete="CASCADE")
    repo: str = Field(max_length=200)
    sha: str = Field(max_length=40)
    branch: str | None = Field(default=None, max_length=255)  # the branch it was pushed to
    pr_number: int | None = None  # the pull request it belongs to, when known
    author_login: str | None = Field(default=None, max_length=100)
    author_email: str | None = Field(default=None, max_length=320)
    agent_trailer: str | None = Field(default=None, max_length=100)  # the trailer that marked it, if any
    committed_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))


class GithubCheck(SQLModel, table=True):
    """A successful CI run (`workflow_run`, `check_suite`) or deployment on a commit."""

    __tablename__ = "github_check"
    __table_args__ = (UniqueConstraint("repo", "kind", "external_id"), Index("ix_github_check_sha", "repo", "sha"))
    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id", ondelete="CASCADE")
    repo: str = Field(max_length=200)
    kind: str = Field(max_length=20)  # tests_passed or deploy
    external_id: str = Field(max_length=100)  # the workflow run, check suite or deployment id
    sha: str = Field(max_length=40)
    branch: str | None = Field(default=None, max_length=255)
    pr_numbers: str | None = Field(default=None, max_length=200)  # comma-separated, as GitHub listed them
    environment: str | None = Field(default=None, max_length=100)
    completed_at: datetime = Field(sa_column=_when())


class OutcomeLink(SQLModel, table=True):
    """Why an outcome (a merged pull request) is a run's: the evidence, and whether the run's owner removed
    the link (it then stays removed, whatever GitHub re-delivers)."""

    __tablename__ = "outcome_link"
    __table_args__ = (UniqueConstraint("outcome_id", "run_id"), Index("ix_outcome_link_run", "run_id"))
    id: int | None = Field(default=None, primary_key=True)
    outcome_id: int = Field(foreign_key="outcome.id", ondelete="CASCADE")
    run_id: int = Field(foreign_key="agent_run.id", ondelete="CASCADE")
    evidence: str = Field(max_length=16)  # commit (the run produced one of its commits) or branch
    detail: str | None = Field(default=None, max_length=300)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when())
    removed_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    # A run its owner sent themselves after Tokenwise learned of the merge: shown, but it neither makes the
    # merge agent-assisted nor verifies spend (docs/metrics.md "Late evidence").
    late: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))


class RunCommit(SQLModel, table=True):
    """A commit a run produced, as its source reported it: the strongest link to a pull request."""

    __tablename__ = "run_commit"
    run_id: int = Field(foreign_key="agent_run.id", ondelete="CASCADE", primary_key=True)
    sha: str = Field(max_length=40, primary_key=True)


class RepoMapping(SQLModel, table=True):
    """An operator's `tokenwise repo map FOLDER OWNER/NAME`: the checkout folder runs name, as a repository."""

    __tablename__ = "repo_mapping"
    folder: str = Field(primary_key=True, max_length=200)
    repo: str = Field(max_length=200)


class SlackRequestSeen(SQLModel, table=True):
    """A signed Slack request already handled, kept for the signature window: a replay runs nothing.

    In the database, so every replica of `tokenwise serve` shares it.
    """

    __tablename__ = "slack_request_seen"
    signature: str = Field(primary_key=True, max_length=100)
    request_timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))
    seen_at: datetime = Field(default_factory=utcnow, sa_column=_when(index=True))


class SlackDeliverySeen(SQLModel, table=True):
    """A Slack delivery already taken (its event_id, trigger_id or body hash), kept while Slack may retry
    it: a retry landing on any replica runs nothing."""

    __tablename__ = "slack_delivery_seen"
    delivery: str = Field(primary_key=True, max_length=100)
    seen_at: datetime = Field(default_factory=utcnow, sa_column=_when(index=True))


class IngestBudget(SQLModel, table=True):
    """A source's ingest request budget, shared by every replica: the moment (Unix seconds) its bucket
    would be full again, less one minute's burst (GCRA, `storage/ingest_budgets.py`)."""

    __tablename__ = "ingest_budget"
    source_id: int = Field(
        sa_column=Column(Integer, ForeignKey("source.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    )
    ready_at: float = Field(sa_column=Column(Float, nullable=False))


def id_of(row: SQLModel) -> int:
    """The primary key of a row that has been flushed (it has one from then on)."""
    value = getattr(row, "id", None)
    if not isinstance(value, int):
        raise ValueError(f"{type(row).__name__} has no id yet; flush it first")
    return value


def table_of(model: type[SQLModel]) -> Table:
    """The Core table behind a model, for SQL expressions that type-check."""
    return model.__table__  # type: ignore[attr-defined,no-any-return]
