"""What a source's token may send: routes by kind, outcomes only when allowed, one person's data only.

Checked in the HTTP layer, after the token and before anything reaches storage (docs/ingest.md, Tokens):

- a kind opens its routes only (`ROUTES`); another route is 403 with a sentence naming the kind it takes;
- `/v1/outcomes` needs a source created with `--outcomes`; OTLP commit and pull-request counters from a
  source without it are dropped silently;
- a source limited to one person (`--person`, or a personal token from `/tokenwise connect`) has every
  item that names nobody counted as that person's, and refuses any item naming someone else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage.ingest_schemas import BatchInvalid, SeenOutcome, SeenRun, SeenUsage, Telemetry, batch_error
from storage.models import Person, Source, id_of
from storage.people import normalize_email
from storage.sources import TOKEN_PREFIX

OTLP_ROUTES = ("/v1/otlp/v1/metrics", "/v1/otlp/v1/logs", "/v1/otlp/v1/traces")
ROUTES: dict[str, tuple[str, ...]] = {
    "api": ("/v1/usage", "/v1/runs", "/v1/outcomes"),
    "otlp": OTLP_ROUTES,
    "github": ("/v1/github/webhook",),
}
KIND_LABELS = {
    "api": "the JSON API (/v1/usage, /v1/runs)",
    "otlp": "OTLP",
    "github": "GitHub webhooks",
}
QUERY_TOKEN_NAMES = frozenset({"token", "access_token", "api_key"})
# An email no one can have: what OTLP points that name nobody are counted for when the token's person has
# no email (only a Slack id); swapped for that Slack id before storage.
_SLACK_ONLY = "slack-user@person.tokenwise.invalid"


@dataclass(frozen=True)
class Sender:
    """The authenticated source behind a request, with what it may send."""

    id: int
    name: str
    kind: str
    outcomes: bool
    person_email: str | None = None  # set with person_slack_user_id when limited to one person
    person_slack_user_id: str | None = None
    limited: bool = False

    @classmethod
    def of(cls, source: Source, person: Person | None) -> Sender:
        if person is None:
            return cls(id_of(source), source.name, source.kind, source.outcomes)
        return cls(
            id_of(source),
            source.name,
            source.kind,
            source.outcomes,
            person.email,
            None if person.email else person.slack_user_id,
            limited=True,
        )

    @property
    def who(self) -> str:
        return self.person_email or f"Slack user {self.person_slack_user_id}"


def route_refusal(sender: Sender, route: str) -> str | None:
    """Why this sender may not use this route (the 403 message), or None when it may."""
    needed = next((kind for kind, routes in ROUTES.items() if route in routes), None)
    if needed is None:
        return f"{route} takes no token."
    if sender.kind == needed:
        if route == "/v1/outcomes" and not sender.outcomes:
            return (
                "This token may not send outcomes; /v1/outcomes takes a token of kind api made with --outcomes: "
                "`tokenwise source create NAME --kind api --outcomes`."
            )
        return None
    label = KIND_LABELS.get(sender.kind, f"{sender.kind} imports, which send over no HTTP route")
    flags = " --outcomes" if route == "/v1/outcomes" else ""
    return (
        f"This token is for {label}; {route} takes a token of kind {needed}: "
        f"`tokenwise source create NAME --kind {needed}{flags}`."
    )


def token_in_query(query: Iterable[tuple[str, str]]) -> str | None:
    """The value of a query parameter that carries a token (`token=`, `access_token=`, `api_key=`, or any
    value starting with the token prefix), or None."""
    for key, value in query:
        value = value.strip()
        if value and (key.lower() in QUERY_TOKEN_NAMES or value.startswith(TOKEN_PREFIX)):
            return value
    return None


# -- JSON batches ------------------------------------------------------------------------------------
def _names_nobody(item: Mapping[str, Any]) -> bool:
    return item.get("email") is None and item.get("slack_user_id") is None


def attribute_raw(sender: Sender, items: Sequence[Any]) -> list[Any]:
    """Items as sent, those naming nobody given the sender's person (so they validate as that person's)."""
    if not sender.limited:
        return list(items)
    person = {"email": sender.person_email} if sender.person_email else {"slack_user_id": sender.person_slack_user_id}
    return [{**item, **person} if isinstance(item, dict) and _names_nobody(item) else item for item in items]


def check_items(sender: Sender, items: Sequence[Any]) -> None:
    """BatchInvalid for every parsed item naming someone other than the sender's person (index and field)."""
    if not sender.limited:
        return
    errors = []
    for index, item in enumerate(items):
        email, slack_user_id = item.email, item.slack_user_id
        if email is not None and normalize_email(email) != sender.person_email:
            errors.append(batch_error(index, "email", _only(sender, "email")))
        if slack_user_id is not None and (sender.person_email or slack_user_id != sender.person_slack_user_id):
            errors.append(batch_error(index, "slack_user_id", _only(sender, "slack_user_id")))
    if errors:
        raise BatchInvalid(errors)


def _only(sender: Sender, field_name: str) -> str:
    return (
        f"this token sends only {sender.who}'s data; leave {field_name} out (items naming nobody are "
        f"{sender.who}'s) or use a token that is not limited to one person"
    )


# -- OTLP ----------------------------------------------------------------------------------------------
class OtherPerson(ValueError):
    """An OTLP export from a source limited to one person names someone else: refused whole (400)."""


def default_person(sender: Sender) -> str | None:
    """What `bot.otlp.to_telemetry` counts points naming nobody for, when the sender is limited to one person."""
    if not sender.limited:
        return None
    return sender.person_email or _SLACK_ONLY


def scope_telemetry(sender: Sender, telemetry: Telemetry) -> Telemetry:
    """The telemetry this sender may write: OtherPerson when it names anyone but the sender's person, and
    without outcomes unless the source may send them (dropped silently: the rest of the export counts)."""
    if sender.limited:
        items: list[SeenRun | SeenUsage | SeenOutcome] = [*telemetry.runs, *telemetry.usage, *telemetry.outcomes]
        allowed = default_person(sender)
        if any(i.slack_user_id is not None or (i.email and normalize_email(i.email)) != allowed for i in items):
            raise OtherPerson(
                f"This token sends only {sender.who}'s telemetry, but the export's user.email attribute names "
                f"someone else; leave user.email out (points naming nobody are {sender.who}'s) or use a token "
                "that is not limited to one person. Nothing was written."
            )
        if sender.person_email is None:
            for item in items:
                item.email, item.slack_user_id = None, sender.person_slack_user_id
    if not sender.outcomes:
        telemetry.outcomes = []
    return telemetry
