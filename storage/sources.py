"""Ingest sources, their bearer tokens and what each may send.

A token is shown once, when the source is created; only its SHA-256 hash is stored, so a database leak
does not leak working tokens. A source's kind decides which routes it may write to (handlers/http/scopes.py),
`outcomes` whether it may send outcomes, and `person_id` limits it to one person's data. A personal
source is the token `/tokenwise connect` gives a person: each new one revokes that person's previous ones.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select, update

from storage.models import Person, Source, utcnow
from storage.people import NotFound, get_or_create_person, normalize_email

SOURCE_KINDS = ("api", "otlp", "github", "claude-code-logs", "openai-usage", "csv")
TOKEN_PREFIX = "tw_"
PERSONAL_PREFIX = "personal-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class SourceError(ValueError):
    """A source request the user can fix (bad name, taken name, unknown kind)."""


@dataclass(frozen=True)
class NewSource:
    source: Source
    # Shown once: the bearer token (never stored, only its hash), or for a GitHub source, which has no
    # token, its webhook secret (stored as it is: each delivery's signature is checked with it).
    token: str
    revoked: int = 0  # personal sources: how many of the person's earlier tokens this one replaced


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _new_webhook_secret() -> str:
    return secrets.token_hex(32)


def create_source(
    session: Session, name: str, kind: str, *, person_email: str | None = None, outcomes: bool = False
) -> NewSource:
    """A new source with a fresh bearer token; the caller shows the token once. A GitHub source gets a
    webhook secret instead (GitHub signs its deliveries with it; it sends no bearer token).

    `person_email` limits it to that person's data (the person is found or created by email);
    `outcomes` lets it send outcomes (`/v1/outcomes`, or OTLP's commit and pull-request counters).
    """
    name = name.strip()
    if not _NAME.match(name):
        raise SourceError(
            f"'{name}' is not a usable source name; use letters, digits, '.', '_' or '-' (at most 100 characters)."
        )
    if kind not in SOURCE_KINDS:
        raise SourceError(f"Unknown source kind '{kind}'. Kinds: {', '.join(SOURCE_KINDS)}.")
    if session.exec(select(Source.id).where(Source.name == name)).first() is not None:
        raise SourceError(f"A source called '{name}' exists already; pick another name or revoke it first.")
    if kind == "github" and person_email is not None:
        raise SourceError("A GitHub source speaks for a whole repository or organisation; leave --person out.")
    person_id = None
    if person_email is not None:
        email = normalize_email(person_email)
        if not _EMAIL.match(email) or len(email) > 320:
            raise SourceError(f"'{person_email}' is not an email address; pass --person you@company.com.")
        person_id = get_or_create_person(session, email=email).id
    if kind == "github":
        secret = _new_webhook_secret()
        source = Source(name=name, kind=kind, token_hash=None, webhook_secret=secret, outcomes=True)
        session.add(source)
        session.flush()
        return NewSource(source=source, token=secret)
    token = _new_token()
    source = Source(name=name, kind=kind, token_hash=hash_token(token), person_id=person_id, outcomes=outcomes)
    session.add(source)
    session.flush()
    return NewSource(source=source, token=token)


def create_personal_source(session: Session, person_id: int, now: datetime | None = None) -> NewSource:
    """A personal OTLP token for one person: their earlier personal tokens are revoked, a new one is made.

    Named `personal-<person id>-<n>`. The person's row is locked first (PostgreSQL), so two concurrent
    calls for one person take turns and leave exactly one token working; SQLite writers take turns anyway.
    """
    # PostgreSQL: lock the person, so concurrent calls for them take turns. SQLite: the UPDATE below takes
    # the database's write lock (even when it matches nothing), which makes them take turns there.
    if session.exec(select(Person.id).where(Person.id == person_id).with_for_update()).first() is None:
        raise NotFound(f"No person with id {person_id}.")
    revoked = session.exec(
        update(Source)
        .where(col(Source.person_id) == person_id, col(Source.personal).is_(True), col(Source.revoked_at).is_(None))
        .values(revoked_at=now or utcnow())
    ).rowcount
    taken = set(session.exec(select(Source.name).where(col(Source.name).startswith(f"{PERSONAL_PREFIX}{person_id}-"))))
    number = 1 + len(taken)
    while f"{PERSONAL_PREFIX}{person_id}-{number}" in taken:
        number += 1
    token = _new_token()
    personal = Source(
        name=f"{PERSONAL_PREFIX}{person_id}-{number}",
        kind="otlp",
        token_hash=hash_token(token),
        person_id=person_id,
        personal=True,
        outcomes=False,
    )
    session.add(personal)
    session.flush()
    return NewSource(source=personal, token=token, revoked=revoked or 0)


def list_sources(session: Session) -> Sequence[Source]:
    return session.exec(select(Source).order_by(col(Source.name))).all()


def source_people(session: Session, sources: Sequence[Source]) -> dict[int, Person]:
    """The people sources are limited to, by person id."""
    ids = sorted({s.person_id for s in sources if s.person_id is not None})
    if not ids:
        return {}
    return {p.id: p for p in session.exec(select(Person).where(col(Person.id).in_(ids))) if p.id is not None}


def revoke_source(session: Session, name: str, now: datetime | None = None) -> Source:
    """Revoke a source's token at once; its data stays."""
    source = session.exec(select(Source).where(Source.name == name.strip())).first()
    if source is None:
        names = [s.name for s in list_sources(session)]
        known = f" Sources: {', '.join(names)}." if names else " There are no sources yet."
        raise NotFound(f"No source called '{name}'.{known}")
    if source.revoked_at is None:
        source.revoked_at = now or utcnow()
        session.add(source)
        session.flush()
    return source


def authenticate(session: Session, token: str | None) -> Source | None:
    """The active source this bearer token belongs to, or None (missing, unknown or revoked)."""
    if not token or not token.startswith(TOKEN_PREFIX):
        return None
    digest = hash_token(token)
    source = session.exec(select(Source).where(Source.token_hash == digest)).first()
    if source is None or source.token_hash is None or not hmac.compare_digest(source.token_hash, digest):
        return None
    if source.revoked_at is not None:
        return None
    return source


def webhook_secrets(session: Session) -> list[tuple[int, str]]:
    """(source id, secret) of every GitHub source not revoked: a delivery is its sender's whose secret signs it."""
    rows = session.exec(
        select(Source.id, Source.webhook_secret)
        .where(Source.kind == "github", col(Source.revoked_at).is_(None), col(Source.webhook_secret).is_not(None))
        .order_by(col(Source.id))
    )
    return [(source_id, secret) for source_id, secret in rows if source_id is not None and secret]


def source_of_token(session: Session, token: str) -> Source | None:
    """The source a token belongs to, revoked or not (to name it when the token has leaked)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    return session.exec(select(Source).where(Source.token_hash == hash_token(token))).first()


def internal_source(session: Session, name: str, kind: str) -> Source:
    """The token-less source an importer writes under (created on first use), so re-imports dedupe."""
    source = session.exec(select(Source).where(Source.name == name)).first()
    if source is None:
        source = Source(name=name, kind=kind, token_hash=None)
        session.add(source)
        session.flush()
    return source
