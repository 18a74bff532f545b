"""Claude Code's local session logs (`~/.claude/projects/*/*.jsonl`) as usage, one run per session.

Counting follows ccusage (today's, which fixed its issue #888) so that per-day totals match it: every
line with `message.usage` counts (sidechain lines too); of the streamed copies of one `message.id` +
`requestId` in a file, the one with the largest token total counts (the last, complete one), and a copy
seen again in a later file (a resumed session's history) is a duplicate; a line that is not JSON is
skipped and counted. Files are streamed line by line and written in chunks; de-duplication
happens in the database, so memory stays flat however large the logs are, and a re-import adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bot.pricing import fast_price
from storage.ingest import ingest_telemetry, write_atomically
from storage.ingest_schemas import SeenRun, SeenUsage, Telemetry
from storage.models import id_of
from storage.sources import internal_source

AGENT = "claude-code"
SOURCE_NAME = "claude-code-logs"
CHUNK_LINES = 2000
COPY_WINDOW = 64  # messages held back for a later, more complete streamed copy (seen: adjacent)


class LogsNotFound(FileNotFoundError):
    """PATH holds no Claude Code logs; the message says where we looked."""


@dataclass
class ImportSummary:
    files: int = 0
    lines: int = 0
    usage_lines: int = 0
    malformed: int = 0
    written: int = 0
    duplicates: int = 0
    sessions: int = 0


def default_folders(environ: Mapping[str, str] | None = None, home: Path | None = None) -> list[Path]:
    """Where Claude Code keeps its logs, as ccusage looks: the folders in CLAUDE_CONFIG_DIR (comma-separated),
    else ~/.config/claude and ~/.claude, those that exist."""
    environ = os.environ if environ is None else environ
    home = home or Path.home()
    configured = [Path(part.strip()).expanduser() for part in environ.get("CLAUDE_CONFIG_DIR", "").split(",")]
    candidates = [p for p in configured if str(p) not in {"", "."}] or [home / ".config" / "claude", home / ".claude"]
    return [p for p in candidates if p.is_dir()]


def log_files(*paths: Path) -> list[Path]:
    """The JSONL files under each PATH/projects (or PATH itself when it is a projects folder), in nested
    session folders or flat, oldest first."""
    if not paths:
        raise LogsNotFound(
            "No Claude Code logs in ~/.config/claude or ~/.claude; give their folder, or set CLAUDE_CONFIG_DIR."
        )
    files: list[Path] = []
    for path in paths:
        root = path / "projects" if (path / "projects").is_dir() else path
        if not root.is_dir():
            raise LogsNotFound(f"No folder at '{path}'. Point at ~/.claude or ~/.claude/projects.")
        files += [f for f in root.glob("**/*.jsonl") if f.is_file()]
    if not files:
        where = ", ".join(f"'{p}'" for p in paths)
        raise LogsNotFound(f"No *.jsonl session logs under {where}. Point at ~/.claude or ~/.claude/projects.")
    return sorted(set(files), key=lambda f: (_first_timestamp(f), str(f)))


def _first_timestamp(path: Path) -> str:
    with path.open("rb") as handle:
        for raw in handle:
            try:
                stamp = json.loads(raw).get("timestamp")
            except (ValueError, AttributeError):
                continue
            moment = _parse_time(stamp) if isinstance(stamp, str) else None
            if moment is not None:
                return moment.isoformat()
    return "~"  # files without a timestamp go last


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _tokens(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} is not a non-negative integer")
    return value


@dataclass
class LoggedUsage(SeenUsage):
    """A log line's usage, and where its session ran (for the run: cost per project and per branch)."""

    project: str | None = None
    branch: str | None = None


def usage_of(line: dict[str, Any], where: str, email: str) -> LoggedUsage | None:
    """The usage one log line reports, or None for lines without usage; ValueError for a broken one."""
    message = line.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("usage"), dict):
        return None
    if message.get("model") == "<synthetic>":
        return None  # Claude Code's own placeholder messages (errors, interruptions): no API call, no tokens
    usage = message["usage"]
    stamp = line.get("timestamp")
    when = _parse_time(stamp) if isinstance(stamp, str) else None
    if when is None:
        raise ValueError("no valid timestamp")
    counts = {
        "input_tokens": _tokens(usage, "input_tokens"),
        "output_tokens": _tokens(usage, "output_tokens"),
        "cache_read_tokens": _tokens(usage, "cache_read_input_tokens"),
        "cache_write_tokens": _tokens(usage, "cache_creation_input_tokens"),
    }
    model = str(message.get("model") or "unknown")[:120]
    message_id, request_id = message.get("id"), line.get("requestId")
    if isinstance(message_id, str) and isinstance(request_id, str):
        key = f"cc:{message_id}:{request_id}"
    else:  # ccusage counts such lines every time; so do we, keyed by their place in the file
        key = f"cc:line:{where}"
    if len(key) > 300:
        key = "cc:sha256:" + hashlib.sha256(key.encode()).hexdigest()
    cost: Decimal | None
    priced = False
    if "costUSD" in line and line["costUSD"] is not None:
        try:
            cost = Decimal(str(line["costUSD"]))
        except InvalidOperation as error:
            raise ValueError("costUSD is not a number") from error
        if not cost.is_finite() or cost < 0:
            raise ValueError("costUSD is not a non-negative number")
    else:
        cost = fast_price(
            model,
            counts["input_tokens"],
            counts["output_tokens"],
            counts["cache_read_tokens"],
            counts["cache_write_tokens"],
        )
        priced = cost is not None
    session_id = line.get("sessionId")
    return LoggedUsage(
        dedupe_key=key,
        email=email,
        occurred_at=when,
        agent=AGENT,
        model=model,
        run_external_id=str(session_id)[:200] if session_id else None,
        cost_usd=cost,
        input_tokens=counts["input_tokens"],
        output_tokens=counts["output_tokens"],
        cache_read_tokens=counts["cache_read_tokens"],
        cache_write_tokens=counts["cache_write_tokens"],
        cost_source="priced" if priced else None,
        project=project_of(line.get("cwd")),
        branch=_short(line.get("gitBranch")),
    )


def project_of(cwd: Any) -> str | None:
    """The checkout folder a session ran in: the last component of its working directory, never the full
    path (which carries the name of a home folder)."""
    if not isinstance(cwd, str):
        return None
    return _short(re.split(r"[\\/]", cwd.rstrip("/\\"))[-1])


def _short(value: Any) -> str | None:
    return (value.strip()[:200] or None) if isinstance(value, str) else None


def read_logs(
    files: list[Path], email: str, summary: ImportSummary, advance: Callable[[int], None] | None = None
) -> Iterator[LoggedUsage]:
    """Usage one message at a time; `advance` hears how many bytes were read, for a progress bar.

    Claude Code writes a message once per content block while it streams: the copies share `message.id`
    and `requestId`, and only the last carries the final usage (earlier ones have partial output tokens).
    Of the copies, the one with the largest token total is kept, as ccusage does today. Copies are written
    one after another (other lines may fall between them), so a message is held back until COPY_WINDOW
    newer messages of the same file have followed it: memory stays flat however long a file is.
    """
    parents: set[int] = set()  # hashes of the message ids main threads reported (sidechain replays repeat them)
    for path in files:
        summary.files += 1
        name = f"{path.parent.name}/{path.name}"
        consumed = 0
        kept: OrderedDict[str, LoggedUsage] = OrderedDict()
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                consumed += len(raw)
                if advance and consumed >= 1 << 20:
                    advance(consumed)
                    consumed = 0
                if not raw.strip():
                    continue
                summary.lines += 1
                try:
                    line = json.loads(raw)
                    if not isinstance(line, dict):
                        raise ValueError("not an object")
                    record = usage_of(line, f"{name}:{number}", email)
                except (ValueError, UnicodeDecodeError):
                    summary.malformed += 1
                    continue
                if record is not None:
                    summary.usage_lines += 1
                    if _replayed(line, parents):
                        summary.duplicates += 1  # a sub-agent's replay of its parent's message (ccusage #913)
                        continue
                    earlier = kept.get(record.dedupe_key)
                    if earlier is not None:
                        summary.duplicates += 1  # a streamed copy: one of the two is left out
                    if earlier is None or _total(record) > _total(earlier):
                        kept[record.dedupe_key] = record
                    if len(kept) > COPY_WINDOW:
                        yield kept.popitem(last=False)[1]
        yield from kept.values()
        if advance:
            advance(consumed)


def _replayed(line: dict[str, Any], parents: set[int]) -> bool:
    """Whether a usage line is a sidechain's copy of a message its main thread already reported (same
    `message.id`, another `requestId`); a main-thread line's message id is remembered, as a hash."""
    message_id = line["message"].get("id")
    if not isinstance(message_id, str):
        return False
    if line.get("isSidechain") is True:
        return hash(message_id) in parents
    parents.add(hash(message_id))
    return False


def _total(record: SeenUsage) -> int:
    return record.input_tokens + record.output_tokens + record.cache_read_tokens + record.cache_write_tokens


def import_logs(
    engine: Engine,
    path: Path | Sequence[Path],
    email: str,
    weight_for: Callable[[str], Decimal],
    on_progress: Callable[[int], None] | None = None,
    chunk_lines: int = CHUNK_LINES,
) -> ImportSummary:
    """Import every session log under PATH for one person; safe to run again (nothing is added twice)."""
    files = log_files(*([path] if isinstance(path, Path) else path))
    summary = ImportSummary()
    sessions: set[str] = set()
    chunk = Telemetry()

    def flush() -> None:
        nonlocal chunk
        if chunk.usage:
            written, duplicates = write_atomically(engine, lambda s: _write(s, chunk, weight_for))
            summary.written += written
            summary.duplicates += duplicates
        chunk = Telemetry()

    for record in read_logs(files, email.strip().lower(), summary, on_progress):
        chunk.usage.append(record)
        if record.run_external_id:
            sessions.add(record.run_external_id)
            chunk.runs.append(
                SeenRun(
                    external_id=record.run_external_id,
                    email=record.email,
                    agent=AGENT,
                    started_at=record.occurred_at,
                    ended_at=record.occurred_at,
                    project=record.project,
                    branch=record.branch,
                )
            )
        if len(chunk.usage) >= chunk_lines:
            flush()
    flush()
    summary.sessions = len(sessions)
    return summary


def _write(session: Any, chunk: Telemetry, weight_for: Callable[[str], Decimal]) -> tuple[int, int]:
    source = internal_source(session, SOURCE_NAME, "claude-code-logs")
    result = ingest_telemetry(session, id_of(source), chunk, weight_for, usage_mode="new")
    return result.accepted, result.duplicates


def total_bytes(path: Path | Sequence[Path]) -> int:
    return sum(f.stat().st_size for f in log_files(*([path] if isinstance(path, Path) else path)))
