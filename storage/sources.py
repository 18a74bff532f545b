"""Ingest sources and their bearer tokens.

A token is shown once, when the source is created; only its SHA-256 hash is stored, so a database leak
does not leak working tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from storage.directory import NotFound
from storage.models import Source, utcnow

SOURCE_KINDS = ("api", "otlp", "claude-code-logs", "openai-usage", "csv")
TOKEN_PREFIX = "tw_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class SourceError(ValueError):
    """A source request the user can fix (bad name, taken name, unknown kind)."""


@dataclass(frozen=True)
class NewSource:
    source: Source
    token: str  # shown once, never stored


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_source(session: Session, name: str, kind: str) -> NewSource:
    """A new source with a fresh bearer token; the caller shows the token once."""
    name = name.strip()
    if not _NAME.match(name):
        raise SourceError(
            f"'{name}' is not a usable source name; use letters, digits, '.', '_' or '-' (at most 100 characters)."
        )
    if kind not in SOURCE_KINDS:
        raise SourceError(f"Unknown source kind '{kind}'. Kinds: {', '.join(SOURCE_KINDS)}.")
    if session.exec(select(Source.id).where(Source.name == name)).first() is not None:
        raise SourceError(f"A source called '{name}' exists already; pick another name or revoke it first.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    source = Source(name=name, kind=kind, token_hash=hash_token(token))
    session.add(source)
    session.flush()
    return NewSource(source=source, token=token)


def list_sources(session: Session) -> Sequence[Source]:
    return session.exec(select(Source).order_by(col(Source.name))).all()


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


def internal_source(session: Session, name: str, kind: str) -> Source:
    """The token-less source an importer writes under (created on first use), so re-imports dedupe."""
    source = session.exec(select(Source).where(Source.name == name)).first()
    if source is None:
        source = Source(name=name, kind=kind, token_hash=None)
        session.add(source)
        session.flush()
    return source
