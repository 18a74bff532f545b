"""What ingest accepts, as types: the HTTP input models (validated strictly, every problem reported with
its index and field), the telemetry a source reported (OTLP, importers), and the batch error."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from storage.models import OUTCOME_KINDS
from storage.people import normalize_email

TokenCount = Annotated[int, Field(ge=0, le=10**15, strict=True)]
Text200 = Annotated[str, Field(min_length=1, max_length=200)]


class BatchInvalid(ValueError):
    """The batch was rejected whole; `errors` say which item and field, and why."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid item(s)")
        self.errors = errors


def batch_error(index: int | None, field_name: str | None, message: str) -> dict[str, Any]:
    return {"index": index, "field": field_name, "message": message}


class JsonRefused(ValueError):
    """A body refused before validation: not JSON at all, or JSON nested past Python's stack (`too_deep`)."""

    def __init__(self, message: str, *, too_deep: bool = False) -> None:
        super().__init__(message)
        self.too_deep = too_deep


class TooManyDigits:
    """An integer written with more than MAX_DIGITS digits: bigger than any field allows, so validation
    refuses it naming the item and field (Python itself refuses to read 4 300 digits or more)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"<an integer of {len(self.text)} digits>"


MAX_DIGITS = 30


def _bounded_int(text: str) -> int | TooManyDigits:
    return int(text) if len(text.lstrip("-")) <= MAX_DIGITS else TooManyDigits(text)


def load_json(body: bytes | str) -> Any:
    """`json.loads` for bodies from outside: every refusal is a JsonRefused with a message for the sender.

    Integers too long to mean anything come back as TooManyDigits (validation refuses them field by field);
    nesting deeper than Python's stack allows is refused whole, since no item or field can be named.
    """
    try:
        return json.loads(body, parse_int=_bounded_int)
    except RecursionError:
        raise JsonRefused("The body nests arrays or objects too deeply; no sender needs that.", too_deep=True) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise JsonRefused(f"The body is not JSON: {error}") from error


def _rfc3339_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string with a time-zone offset, e.g. 2026-11-25T14:03:00Z")
    return value


# Times a usage source can mean: a sender's clock gone wrong (or a poison batch: "0001-01-01T00:00:00+14:00"
# is before year 1 in UTC and cannot even be converted) is refused with the item and field, never a 500.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), Field(ge=EARLIEST, lt=LATEST)]


Email = Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
SlackUserId = Annotated[str, Field(min_length=1, max_length=32)]
DedupeKey = Annotated[str, Field(min_length=1, max_length=300)]
AgentName = Annotated[str, Field(min_length=1, max_length=64)]
ModelName = Annotated[str, Field(min_length=1, max_length=120)]
Cost = Annotated[Decimal, Field(ge=0, le=10**9, allow_inf_nan=False)]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: Email | None = None
    slack_user_id: SlackUserId | None = None

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return normalize_email(value) if value else value


class UsageIn(_Item):
    """One billed model call or usage bucket, as a source sends it."""

    dedupe_key: DedupeKey
    occurred_at: Rfc3339
    agent: AgentName
    model: ModelName
    input_tokens: TokenCount
    output_tokens: TokenCount
    cache_read_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0
    cost_usd: Cost | None = None
    run_external_id: Text200 | None = None

    @field_validator("cost_usd", mode="before")
    @classmethod
    def _decimal_text_or_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | float | None):
            raise ValueError('must be a decimal string such as "0.0123" or a number')
        return value


class UsageJson(BaseModel):
    """`UsageIn` for a JSON body, with no validator written in Python: pydantic's JSON parser does all of
    it in Rust (a Python validator per field per record was a third of the parsing time). Where UsageIn's
    validators refuse a JSON type, strict mode refuses it too: a time must be a string, a cost a string or a
    number, never a boolean. The email is lower-cased afterwards (`parse_valid_batch`), as UsageIn does.
    It accepts nothing UsageIn refuses and parses alike (tests/test_ingest_api.py); a body it refuses goes
    to `validate_batch`, which reports every problem in UsageIn's words.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: Email | None = None
    slack_user_id: SlackUserId | None = None
    dedupe_key: DedupeKey
    occurred_at: Annotated[AwareDatetime, Field(strict=True, ge=EARLIEST, lt=LATEST)]
    agent: AgentName
    model: ModelName
    input_tokens: TokenCount
    output_tokens: TokenCount
    cache_read_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0
    cost_usd: Annotated[Decimal, Field(strict=True, ge=0, le=10**9, allow_inf_nan=False)] | None = None
    run_external_id: Text200 | None = None


class RunIn(_Item):
    """One agent session or job."""

    external_id: Text200
    agent: Annotated[str, Field(min_length=1, max_length=64)]
    started_at: Rfc3339
    ended_at: Rfc3339 | None = None
    title: Annotated[str, Field(max_length=300)] | None = None
    repo: Annotated[str, Field(max_length=300)] | None = None  # owner/name on GitHub: links merged PRs
    branch: Annotated[str, Field(max_length=200)] | None = None  # the git branch it worked on
    status: Annotated[str, Field(max_length=40)] | None = None


class OutcomeIn(_Item):
    """Something a run produced: linked to a run, or to a person and a time."""

    external_id: Text200
    run_external_id: Text200 | None = None
    kind: str
    url: Annotated[str, Field(max_length=2000)] | None = None
    occurred_at: Rfc3339 | None = None
    # A commit the run produced (40 hex digits): links the run to the pull request that merges it.
    commit_sha: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{40}$")] | None = None
    # Refused whenever it is sent: an outcome's weight is the operator's to set, never a sender's.
    weight: SkipJsonSchema[Any] = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in OUTCOME_KINDS:
            raise ValueError(f"unknown outcome kind '{value}'; valid kinds are {', '.join(OUTCOME_KINDS)}")
        return value

    @field_validator("weight", mode="before")
    @classmethod
    def _no_weight(cls, _value: Any) -> Any:
        raise ValueError("weights come from the operator's TOKENWISE_OUTCOME_WEIGHTS; leave weight out")


BatchKind = Literal["records", "runs", "outcomes"]
ITEM_MODELS: dict[str, type[_Item]] = {"records": UsageIn, "runs": RunIn, "outcomes": OutcomeIn}


def _cross_checks(item: _Item) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    names_person = bool(item.email or item.slack_user_id)
    if isinstance(item, UsageIn | RunIn) and not names_person:
        problems.append(("email", "name the person by email or slack_user_id"))
    if isinstance(item, RunIn) and item.ended_at is not None and item.ended_at < item.started_at:
        problems.append(("ended_at", "must not be before started_at"))
    if isinstance(item, OutcomeIn) and item.run_external_id is None:
        if not names_person:
            problems.append(("run_external_id", "link the outcome to a run, or give email (or slack_user_id)"))
        if item.occurred_at is None:
            problems.append(("occurred_at", "required when the outcome is not linked to a run"))
    return problems


NUL_MESSAGE = "must not contain the NUL character (\\u0000)"


def validate_batch(kind: BatchKind, items: Sequence[Any], first_index: int = 0, nul_possible: bool = True) -> list[Any]:
    """Every item parsed, or BatchInvalid listing every problem (index, field, message).

    PostgreSQL text cannot hold NUL (SQLite can), so a NUL in any text is refused here and both databases
    answer 422 alike. JSON can only carry NUL escaped, so a caller that saw no `\\u0000` in the body may
    pass `nul_possible=False` and skip looking for it in every value.
    """
    model = ITEM_MODELS[kind]
    parsed: list[Any] = []
    errors: list[dict[str, Any]] = []
    for offset, raw in enumerate(items):
        index = first_index + offset
        if not isinstance(raw, dict):
            errors.append(batch_error(index, None, "must be a JSON object"))
            continue
        if nul_possible:
            errors.extend(
                batch_error(index, str(key), NUL_MESSAGE)
                for key, value in raw.items()
                if isinstance(value, str) and "\x00" in value
            )
        try:
            item = model.model_validate(raw)
        except ValidationError as error:
            for problem in error.errors(include_url=False):
                where = ".".join(str(part) for part in problem["loc"]) or None
                message = str(problem["msg"]).removeprefix("Value error, ")
                errors.append(batch_error(index, where, message))
            continue
        problems = _cross_checks(item)
        errors.extend(batch_error(index, where, message) for where, message in problems)
        parsed.append(item)
    if errors:
        raise BatchInvalid(errors)
    return parsed


class _Records(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[UsageJson]


class _Runs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    runs: list[RunIn]


class _Outcomes(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcomes: list[OutcomeIn]


_BATCH_MODELS: dict[str, type[BaseModel]] = {"records": _Records, "runs": _Runs, "outcomes": _Outcomes}


def parse_valid_batch(kind: BatchKind, body: bytes, max_items: int) -> list[Any] | None:
    """The items of a body that is a valid batch, parsed in one pass by pydantic's own JSON parser; None
    for any other body, which the caller then parses with json.loads and `validate_batch`, so that every
    problem is reported as always. Valid batches, the ones that matter for throughput, skip building
    Python dicts first: a third of the parsing time.
    """
    if b"\\u0000" in body:  # a NUL, maybe: validate_batch reports it field by field
        return None
    try:
        items: list[Any] = getattr(_BATCH_MODELS[kind].model_validate_json(body), kind)
    except ValidationError:
        return None
    if len(items) > max_items:
        return None
    if kind != "records":
        return None if any(_cross_checks(item) for item in items) else items
    lowered: dict[str, str] = {}
    for item in items:
        if not (item.email or item.slack_user_id):  # _cross_checks
            return None
        if email := item.email:  # UsageIn._lower; already stripped
            item.email = lowered.get(email) or lowered.setdefault(email, normalize_email(email))
    return items


@dataclass
class SeenUsage:
    """Usage totals reported under one dedupe key (a running total, an interval or one event)."""

    dedupe_key: str
    email: str | None
    occurred_at: datetime
    agent: str
    model: str
    run_external_id: str | None = None
    slack_user_id: str | None = None
    # None: the source does not give this count (a vendor's per-day requests); stored NULL, never zero.
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    cache_read_tokens: int | None = 0
    cache_write_tokens: int | None = 0
    cost_usd: Decimal | None = None
    # "priced" when Tokenwise priced the tokens, "billed" for a vendor's per-person bill; else the source's own
    cost_source: str | None = None
    identity_kind: str | None = None  # with no email: another identity the source carried (an account uuid)
    identity_value: str | None = None


@dataclass
class SeenRun:
    external_id: str
    email: str | None
    agent: str
    started_at: datetime
    slack_user_id: str | None = None
    ended_at: datetime | None = None
    project: str | None = None  # the checkout folder's name (the last component of the working directory)
    branch: str | None = None


@dataclass
class SeenOutcome:
    external_id: str
    email: str | None
    run_external_id: str | None
    kind: str
    occurred_at: datetime
    slack_user_id: str | None = None


@dataclass
class Telemetry:
    """What one telemetry export (OTLP, a log file chunk, an API page) says, before people are resolved."""

    usage: list[SeenUsage] = field(default_factory=list)
    runs: list[SeenRun] = field(default_factory=list)
    outcomes: list[SeenOutcome] = field(default_factory=list)
    rejected: int = 0
    problems: list[str] = field(default_factory=list)
