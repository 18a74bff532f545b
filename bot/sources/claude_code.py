"""Claude Code's local session logs (`~/.claude/projects/*/*.jsonl`) as usage, one run per session.

Counting follows ccusage (today's, which fixed its issue #888) so that per-day totals match it: every
line with `message.usage` counts (sidechain lines too); of the streamed copies of one `message.id` +
`requestId` in a file, the one with the largest token total counts (the last, complete one), and a copy
seen again in a later file (a resumed session's history) is a duplicate; a line that is not JSON is
skipped and counted. Files are read in large blocks, in batches by forked processes (one per core,
`forked.in_order`), and written by the first process in chunks (each one transaction, in the order of the
files, by a thread while the next chunk is taken); de-duplication across files happens in the database, so
memory stays flat however large the logs are, and a re-import adds nothing.
Only lines holding the bytes `"usage"` are decoded, by msgspec into the few fields usage needs; anything
msgspec cannot read that way goes through json.loads and `usage_of`, so the counts are the exact ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Engine

from bot.pricing import fast_price, price_nano
from bot.pricing import ready as pricing_ready
from bot.sources.forked import can_fork, cores, in_order
from storage.github import LinkRules, relink_runs
from storage.ingest import Converters, ingest_usage_rows, run_ids, usage_converters, write_atomically
from storage.ingest_schemas import SeenRun, SeenUsage
from storage.models import id_of
from storage.sources import internal_source

AGENT = "claude-code"
SOURCE_NAME = "claude-code-logs"
CHUNK_LINES = 10_000
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
    pull_requests_settled: int = 0  # merged pull requests settled again for these sessions' branches

    def add(self, other: ImportSummary) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


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
    return find_logs(*paths)[0]


def find_logs(*paths: Path) -> tuple[list[Path], int]:
    """`log_files` and their total size (for a progress bar), from one listing and one opening of each."""
    keyed = []
    size = 0
    for file in _found(paths):
        stamp, file_size = _first_timestamp(file)
        keyed.append((stamp, str(file), file))
        size += file_size
    keyed.sort(key=lambda item: item[:2])
    return [file for _, _, file in keyed], size


def _found(paths: Sequence[Path]) -> set[Path]:
    """The JSONL files under each PATH, in no order (the sizes for a progress bar need no more)."""
    if not paths:
        raise LogsNotFound(
            "No Claude Code logs in ~/.config/claude or ~/.claude; give their folder, or set CLAUDE_CONFIG_DIR."
        )
    files: list[Path] = []
    for path in paths:
        root = path / "projects" if (path / "projects").is_dir() else path
        if not root.is_dir():
            raise LogsNotFound(f"No folder at '{path}'. Point at ~/.claude or ~/.claude/projects.")
        files += map(Path, _jsonl_under(str(root)))
    if not files:
        where = ", ".join(f"'{p}'" for p in paths)
        raise LogsNotFound(f"No *.jsonl session logs under {where}. Point at ~/.claude or ~/.claude/projects.")
    return set(files)


def _jsonl_under(root: str) -> Iterator[str]:
    """What root.glob("**/*.jsonl") finds (files, symlinked folders not followed), from the folders' own
    listings: no stat of each file, no Path for each entry."""
    folders = [root]
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except PermissionError:  # as glob: a folder we may not read is passed over
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.path)
            elif entry.name.endswith(".jsonl") and entry.is_file():
                yield entry.path


class _Stamped(msgspec.Struct):
    timestamp: str | None = None


_decode_stamp = msgspec.json.Decoder(_Stamped).decode


HEAD_BYTES = 1 << 13  # how much of a file is read for its first timestamp (the rest only when none is there)


def _first_timestamp(path: Path) -> tuple[str, int]:
    """The file's first timestamp ("~" when it has none: such files go last) and its size. Its start is read
    in one call, without a file object: listing opens every file once, so this is per-file overhead."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(descriptor).st_size
        head = os.read(descriptor, HEAD_BYTES)
    finally:
        os.close(descriptor)
    lines = head.split(b"\n")
    whole = len(head) < HEAD_BYTES  # the file ended within the head: its last piece is its last line
    if not whole:
        lines.pop()  # perhaps cut: read again below if no line before it had a timestamp
    for raw in lines:
        if (moment := _stamp_of(raw)) is not None:
            return moment.isoformat(), size
    if not whole:
        with path.open("rb") as handle:
            for raw in handle:
                if (moment := _stamp_of(raw)) is not None:
                    return moment.isoformat(), size
    return "~", size


def _stamp_of(raw: bytes) -> datetime | None:
    """A line's timestamp, when it is a JSON object with a valid one."""
    stamp: Any
    try:
        stamp = _decode_stamp(raw).timestamp
        if not raw.isascii():
            raw.decode()
    except (msgspec.DecodeError, UnicodeDecodeError):  # as below: the exact, slow way
        try:
            stamp = json.loads(raw).get("timestamp")
        except (ValueError, AttributeError):
            return None
    return _parse_time(stamp) if isinstance(stamp, str) else None


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is UTC:  # what Claude Code writes ("...Z"): nothing to convert
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _tokens(value: Any, key: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} is not a non-negative integer")
    return value


@dataclass
class LoggedUsage(SeenUsage):
    """A log line's usage, and where its session ran (for the run: cost per project and per branch). A log
    line always gives its token counts."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    project: str | None = None
    branch: str | None = None


def usage_of(line: dict[str, Any], where: str, email: str) -> LoggedUsage | None:
    """The usage one log line reports, or None for lines without usage; ValueError for a broken one."""
    message = line.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("usage"), dict):
        return None
    usage = message["usage"]
    return _logged(
        message.get("model"),
        (
            usage.get("input_tokens", 0),
            usage.get("output_tokens", 0),
            usage.get("cache_read_input_tokens", 0),
            usage.get("cache_creation_input_tokens", 0),
        ),
        line.get("timestamp"),
        message.get("id"),
        line.get("requestId"),
        line.get("costUSD"),
        line.get("sessionId"),
        line.get("cwd"),
        line.get("gitBranch"),
        where,
        email,
    )


def _logged(
    model_name: Any,
    tokens: tuple[Any, Any, Any, Any],
    stamp: Any,
    message_id: Any,
    request_id: Any,
    reported_cost: Any,
    session_id: Any,
    cwd: Any,
    git_branch: Any,
    where: str,
    email: str,
    price_now: bool = True,
) -> LoggedUsage | None:
    """One line's usage from its fields, however they were parsed: `usage_of` and the fast reader share it.
    Without `price_now` a cost the line does not report is left for `_row_of` (the reader prices only the
    copy of a message it keeps)."""
    if model_name == "<synthetic>":
        return None  # Claude Code's own placeholder messages (errors, interruptions): no API call, no tokens
    when = _parse_time(stamp) if isinstance(stamp, str) else None
    if when is None:
        raise ValueError("no valid timestamp")
    input_tokens, output_tokens, cache_read, cache_write = tokens
    if not (  # the usual line, in one test; else each count is checked (None is 0) or refused
        type(input_tokens) is int
        and type(output_tokens) is int
        and type(cache_read) is int
        and type(cache_write) is int
        and input_tokens >= 0
        and output_tokens >= 0
        and cache_read >= 0
        and cache_write >= 0
    ):
        input_tokens = _tokens(tokens[0], "input_tokens")
        output_tokens = _tokens(tokens[1], "output_tokens")
        cache_read = _tokens(tokens[2], "cache_read_input_tokens")
        cache_write = _tokens(tokens[3], "cache_creation_input_tokens")
    model = str(model_name or "unknown")[:120]
    if isinstance(message_id, str) and isinstance(request_id, str):
        key = f"cc:{message_id}:{request_id}"
    else:  # ccusage counts such lines every time; so do we, keyed by their place in the file
        key = f"cc:line:{where}"
    if len(key) > 300:
        key = "cc:sha256:" + hashlib.sha256(key.encode()).hexdigest()
    cost: Decimal | None
    priced = False
    if reported_cost is not None:
        try:
            cost = Decimal(str(reported_cost))
        except InvalidOperation as error:
            raise ValueError("costUSD is not a number") from error
        if not cost.is_finite() or cost < 0:
            raise ValueError("costUSD is not a non-negative number")
    elif price_now:
        cost = fast_price(model, input_tokens, output_tokens, cache_read, cache_write)
        priced = cost is not None
    else:
        cost = None
    return LoggedUsage(
        dedupe_key=key,
        email=email,
        occurred_at=when,
        agent=AGENT,
        model=model,
        run_external_id=str(session_id)[:200] if session_id else None,
        cost_usd=cost,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cost_source="priced" if priced else None,
        project=project_of(cwd),
        branch=_short(git_branch),
    )


@lru_cache(maxsize=4096)
def project_of(cwd: Any) -> str | None:
    """The checkout folder a session ran in: the last component of its working directory, never the full
    path (which carries the name of a home folder)."""
    if not isinstance(cwd, str):
        return None
    return _short(re.split(r"[\\/]", cwd.rstrip("/\\"))[-1])


def _short(value: Any) -> str | None:
    return (value.strip()[:200] or None) if isinstance(value, str) else None


# The fields of a log line that usage is read from, decoded by msgspec straight into these types and nothing
# else (the prompts, answers and tool results around them are skipped unread). A line whose fields have
# other types (a string for a count, a list for a message) fails to decode into them and is read again by
# json.loads and `usage_of`, so both readers agree on every line (tests/test_ingest_claude_code.py).
class _Usage(msgspec.Struct):
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    cache_read_input_tokens: int | None = 0
    cache_creation_input_tokens: int | None = 0


class _Message(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    usage: _Usage | None = None


class _Line(msgspec.Struct):
    message: _Message | None = None
    timestamp: str | None = None
    request_id: str | None = msgspec.field(default=None, name="requestId")
    session_id: str | None = msgspec.field(default=None, name="sessionId")
    cost_usd: float | int | None = msgspec.field(default=None, name="costUSD")
    sidechain: bool | None = msgspec.field(default=None, name="isSidechain")
    cwd: str | None = None
    git_branch: str | None = msgspec.field(default=None, name="gitBranch")


class _Anything(msgspec.Struct):
    """Any JSON object: decoding into it only checks that a line is one."""


_decode_line = msgspec.json.Decoder(_Line).decode
_check_object = msgspec.json.Decoder(_Anything).decode
USAGE_KEY = b'"usage"'  # a line without these bytes reports no usage: it is checked, not read
BLOCK_BYTES = 1 << 22


# What a usage line gives the de-duplication: (dedupe key, token total, the line as kept, message id, whether
# it is a sidechain line). The line as kept is the decoded line and its time for the usual line, whose row
# is built only if it is the copy kept (`_row_of`), or the LoggedUsage the exact reading made.
Read = tuple[str, int, Any, str | None, bool]


def _read_usage(raw: bytes, name: str, number: int, email: str) -> Read | None:
    """A line that mentions usage, read (`Read`), or None when it reports none; ValueError for a broken one.
    `name` and `number`: the file and the line's place in it (the key of a line without ids)."""
    try:
        line = _decode_line(raw)
        if not raw.isascii():
            raw.decode()  # json.loads refuses what is not UTF-8; msgspec does not look inside skipped strings
    except (msgspec.DecodeError, UnicodeDecodeError):  # or fields of unexpected types: the exact, slow way
        return _read_usage_slowly(raw, name, number, email)
    message = line.message
    if message is None or message.usage is None:
        return None
    usage = message.usage
    model, stamp, message_id, request_id = message.model, line.timestamp, message.id, line.request_id
    input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
    cache_read, cache_write = usage.cache_read_input_tokens, usage.cache_creation_input_tokens
    if (  # the usual line, as Claude Code writes it: `_logged`'s checks in one test, its record left unbuilt
        model
        and model != "<synthetic>"
        and len(model) <= 120
        and stamp
        and message_id
        and request_id
        and line.cost_usd is None
        and input_tokens is not None
        and output_tokens is not None
        and cache_read is not None
        and cache_write is not None
        and input_tokens >= 0
        and output_tokens >= 0
        and cache_read >= 0
        and cache_write >= 0
        and len(message_id) + len(request_id) <= 290
    ):
        when = _parse_time(stamp)
        if when is None:
            raise ValueError("no valid timestamp")
        total = input_tokens + output_tokens + cache_read + cache_write
        return f"cc:{message_id}:{request_id}", total, (line, when), message_id, line.sidechain is True
    record = _logged(
        message.model,
        (input_tokens, output_tokens, cache_read, cache_write),
        line.timestamp,
        message.id,
        line.request_id,
        line.cost_usd,
        line.session_id,
        line.cwd,
        line.git_branch,
        f"{name}:{number}",
        email,
        price_now=False,
    )
    if record is None:
        return None
    return record.dedupe_key, _total(record), record, message.id, line.sidechain is True


def _read_usage_slowly(raw: bytes, name: str, number: int, email: str) -> Read | None:
    try:
        line = json.loads(raw)
    except UnicodeDecodeError as error:
        raise ValueError("not UTF-8") from error
    if not isinstance(line, dict):
        raise ValueError("not an object")
    record = usage_of(line, f"{name}:{number}", email)  # priced already: _row_of leaves its cost as it is
    if record is None:
        return None
    message_id = line["message"].get("id")
    message_id = message_id if isinstance(message_id, str) else None
    return record.dedupe_key, _total(record), record, message_id, line.get("isSidechain") is True


# A kept copy as `import_logs` writes it: (storage row as `ingest_usage_rows` takes it, time, project, branch).
Row = tuple[tuple[Any, ...], datetime, str | None, str | None]


def _row_of(kept: Any, key: str, converters: Converters) -> Row:
    """The storage row of a kept copy (`Read`'s line as kept), its cost priced from its tokens when the line
    reported none; `converters` convert its time and cost for the database (`usage_converters`). The
    source, the person and the run are left for the writer; the run's place holds the session id. A tuple,
    its model and session the same string objects as those of the rows before: a reader process sends it
    to the writing one, and a pickled tuple of repeated objects is read back in a third of a list's time."""
    occurred, scaled = converters
    if isinstance(kept, LoggedUsage):
        return _record_row(kept, occurred, scaled)
    line, when = kept
    message = line.message
    usage = message.usage
    model = _SAME.setdefault(message.model, message.model)
    inputs, outputs = usage.input_tokens, usage.output_tokens
    cache_read, cache_write = usage.cache_read_input_tokens, usage.cache_creation_input_tokens
    cost = _stored_price(model, (inputs, outputs, cache_read, cache_write), scaled)
    session_id = line.session_id
    if session_id:
        session_id = _SAME.setdefault(session_id[:200], session_id[:200])
    source = None if cost is None else "priced"
    stored = occurred(when)
    row = (
        None,
        None,
        session_id or None,
        stored,
        AGENT,
        model,
        inputs,
        outputs,
        cache_read,
        cache_write,
        cost,
        key,
        source,
    )
    return row, when, project_of(line.cwd), _short(line.git_branch)


_SAME: dict[Any, Any] = {}  # models and session ids, each kept as one string object (emptied file by file when large)


def _record_row(record: LoggedUsage, occurred: Callable[[Any], Any], scaled: Callable[[Any], Any]) -> Row:
    tokens = (record.input_tokens, record.output_tokens, record.cache_read_tokens, record.cache_write_tokens)
    if record.cost_usd is not None:
        cost: int | None = scaled(record.cost_usd)
        source = record.cost_source or "reported"
    else:
        cost = _stored_price(record.model, tokens, scaled)
        source = "priced"
    row = (None, None, record.run_external_id, occurred(record.occurred_at), AGENT, record.model, *tokens, cost)
    return (
        (*row, record.dedupe_key, None if cost is None else source),
        record.occurred_at,
        record.project,
        record.branch,
    )


def _stored_price(model: str, tokens: tuple[int, int, int, int], scaled: Callable[[Any], Any]) -> int | None:
    """A line's cost priced from its tokens, as stored: in integers (`price_nano`) when that is exact, else
    fast_price's Decimal, scaled."""
    cost = price_nano(model, *tokens)
    if cost is not None:
        return cost
    priced = fast_price(model, *tokens)
    return None if priced is None else int(scaled(priced))


def _is_object(raw: bytes) -> bool:
    """Whether a line is a JSON object (the lines without usage are checked, so that broken ones are counted)."""
    try:
        _check_object(raw)
        if not raw.isascii():
            raw.decode()
    except (msgspec.DecodeError, UnicodeDecodeError):
        try:  # what json.loads takes and msgspec does not (NaN, a byte-order mark), or refuses (not UTF-8)
            return isinstance(json.loads(raw), dict)
        except (ValueError, UnicodeDecodeError):
            return False
    return True


def _lines(path: Path, advance: Callable[[int], None] | None) -> Iterator[bytes]:
    """A file's lines (without their newlines), read in large blocks; `advance` hears the bytes read.

    Read by the descriptor in blocks not much larger than the file: a file object's read(BLOCK_BYTES) maps
    and unmaps 4 MB for a file of a few kilobytes, and the record-dense logs are 7 800 such files."""
    rest = b""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        wanted = min(BLOCK_BYTES, max(os.fstat(descriptor).st_size + 1, 1 << 16))  # a file may grow meanwhile
        while block := os.read(descriptor, wanted):
            lines = (rest + block).split(b"\n") if rest else block.split(b"\n")
            rest = lines.pop()
            yield from lines
            if advance:
                advance(len(block))
    finally:
        os.close(descriptor)
    if rest:
        yield rest


@dataclass
class _Part:
    """A stretch of the reading as the writer takes it: the storage rows of the copies kept, in the order
    read, what they say of their sessions' runs and their UTC days, the summary's counts for it and the
    bytes read; `last`: the end of its files.

    Read by several processes (`_read_in_processes`), a message whose sidechain copies may replay a message
    that an earlier batch's reader saw is `deferred`: its place in `rows` is held (None) with its candidates
    until the parent process, which knows every earlier batch's main-thread message ids (`parents`), settles
    it (`_settled`)."""

    rows: list[Any] = field(default_factory=list)
    runs: dict[str, list[Any]] = field(default_factory=dict)  # session -> [start, end, project, at, branch, at]
    days: set[tuple[date, str]] = field(default_factory=set)
    deferred: list[tuple[int, int, Any, Any]] = field(default_factory=list)  # index, copies, candidates
    parents: set[int] = field(default_factory=set)  # hashes of this part's main-thread message ids (deferring)
    counts: ImportSummary = field(default_factory=ImportSummary)  # the summary's counts for this part
    read: int = 0
    last: bool = False


class _Held:
    """A message held in the window: how many copies of it were read, and of those that are no replay, the
    best (the largest token total, the first of equals) as (total, line number, line as kept). `conditional`
    (deferring only): by message (a hash of its id, the `mark`), the best of its sidechain copies whose
    message an earlier batch may have reported (one key may name two ids: "a:b" + "c" and "a" + "b:c");
    `certain`: the best of the others."""

    __slots__ = ("certain", "conditional", "copies")

    def __init__(self) -> None:
        self.copies = 0
        self.certain: tuple[int, int, Any] | None = None
        self.conditional: dict[int, tuple[int, int, Any]] = {}


def _parts(
    files: Sequence[Path], email: str, converters: Converters, chunk_rows: int, defer: bool = False
) -> Generator[_Part, None, None]:
    """Usage one message at a time, as storage rows (`_row_of`; `converters`: `usage_converters`' time and
    cost conversions), handed over in parts of `chunk_rows` rows (and a last, smaller one).

    Claude Code writes a message once per content block while it streams: the copies share `message.id`
    and `requestId`, and only the last carries the final usage (earlier ones have partial output tokens).
    Of the copies, the one with the largest token total is kept, as ccusage does today, and only its row is
    built. A sidechain copy of a message whose id a main-thread line reported before it is a sub-agent's
    replay (ccusage #913): counted as a copy, never kept. Copies are written one after another (other lines
    may fall between them), so a message is held back until COPY_WINDOW newer messages of the same file
    have followed it (replays take their place in the window like any message): memory stays flat however
    long a file is. `defer`: these files follow others read elsewhere (`_Part`).
    """
    parents: set[int] = set()  # hashes of the message ids main threads reported (sidechain replays repeat them)
    part = _Part()
    read = 0

    def count(size: int) -> None:
        nonlocal read
        read += size

    for path in files:
        part.counts.files += 1
        if len(_SAME) > 100_000:
            _SAME.clear()
        name = f"{path.parent.name}/{path.name}"
        kept: OrderedDict[str, _Held] = OrderedDict()
        lines = malformed = usage_lines = 0  # the summary's counts for this file, added at its end
        for number, raw in enumerate(_lines(path, count), start=1):
            if USAGE_KEY not in raw:
                if raw and not raw.isspace():  # what `raw.strip()` tells, without copying the line
                    lines += 1
                    if not _is_object(raw):
                        malformed += 1
                continue
            lines += 1
            try:
                found = _read_usage(raw, name, number, email)
            except ValueError:
                malformed += 1
                continue
            if found is None:
                continue
            key, total, line, message_id, sidechain = found
            usage_lines += 1
            held = kept.get(key)
            if held is None:
                held = kept[key] = _Held()
                if len(kept) > COPY_WINDOW:
                    oldest, first = kept.popitem(last=False)
                    _keep(part, oldest, first, converters)
                    if len(part.rows) >= chunk_rows:
                        part.read, read = read, 0
                        yield part
                        part = _Part()
            held.copies += 1
            if message_id is not None:
                mark = hash(message_id)
                if not sidechain:
                    parents.add(mark)
                    if defer:
                        part.parents.add(mark)
                elif mark in parents:
                    continue  # a replay: a copy, not kept
                elif defer:
                    best = held.conditional.get(mark)
                    if best is None or total > best[0]:
                        held.conditional[mark] = (total, number, line)
                    continue
            if held.certain is None or total > held.certain[0]:
                held.certain = (total, number, line)
        part.counts.lines += lines
        part.counts.malformed += malformed
        part.counts.usage_lines += usage_lines
        for key, held in kept.items():
            _keep(part, key, held, converters)
            if len(part.rows) >= chunk_rows:
                part.read, read = read, 0
                yield part
                part = _Part()
    part.read, part.last = read, True
    yield part


def _keep(part: _Part, key: str, held: _Held, converters: Converters) -> None:
    """A message leaving the window: its kept copy's row added to the part (and its run and day), its other
    copies counted as duplicates; or, when the parent must settle it, its place held with its candidates."""
    certain, conditional = held.certain, held.conditional
    if conditional:
        first = None if certain is None else (certain[0], certain[1], _row_of(certain[2], key, converters))
        others = [(mark, (c[0], c[1], _row_of(c[2], key, converters))) for mark, c in conditional.items()]
        part.deferred.append((len(part.rows), held.copies, first, others))
        part.rows.append(None)
        return
    part.counts.duplicates += held.copies - (certain is not None)
    if certain is not None:
        row, when, project, branch = _row_of(certain[2], key, converters)
        index = len(part.rows)
        part.rows.append(row)
        _widen(part, index, row[2], when, project, branch)


def _widen(
    part: _Part, index: int, session: str | None, when: datetime, project: str | None, branch: str | None
) -> None:
    """A row's day, and its session's run widened to its time; of project and branch, the first row's (in the
    part's order, `index`) that names one is kept."""
    part.days.add((when.date(), AGENT))  # a UTC time: its date is the UTC day
    if not session:
        return
    run = part.runs.get(session)
    if run is None:
        part.runs[session] = [when, when, project, index, branch, index]
        return
    if when < run[0]:
        run[0] = when
    elif when > run[1]:
        run[1] = when
    if project is not None and (run[2] is None or index < run[3]):
        run[2], run[3] = project, index
    if branch is not None and (run[4] is None or index < run[5]):
        run[4], run[5] = branch, index


BATCH_BYTES = 1 << 22  # files read together by one reading process: consecutive, about this many bytes
MAX_READERS = 4


def readers_here() -> int:
    """How many processes read logs here: one per core this process may use (up to MAX_READERS), where
    processes fork and this process has one thread (a fork copies no other thread, and a lock one of them
    held would stay held in the child); else one."""
    if not can_fork() or threading.active_count() > 1:
        return 1
    return min(MAX_READERS, cores())


def _batches(files: Sequence[Path]) -> list[list[Path]]:
    """The files in order, cut into runs of about BATCH_BYTES (a larger file alone)."""
    batches: list[list[Path]] = [[]]
    size = 0
    for path in files:
        if size >= BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(path)
        with suppress(OSError):  # gone since it was listed: its reader says so
            size += os.stat(path).st_size
    return batches


def _read_in_processes(
    batches: list[list[Path]], email: str, converters: Converters, chunk_rows: int, readers: int
) -> Generator[_Part, None, None]:
    """`_parts` of every batch, in order, read by `readers` forked processes and settled here."""
    pricing_ready()  # the price list loaded once, before the fork, not once by each reader
    read = partial(_parts, email=email, converters=converters, chunk_rows=chunk_rows, defer=True)
    return _settled(in_order(batches, read, readers))


def _settled(parts: Generator[_Part, None, None]) -> Generator[_Part, None, None]:
    """Parts read apart, settled in order. A deferred message's sidechain copies are replays when an earlier
    batch's main thread reported its id (its own batch's reader knew those of its own lines before them):
    then its kept copy is the best of its other copies; otherwise the best of all, as one process reading
    alone would have kept. Its other copies count as duplicates."""
    parents: set[int] = set()  # the main-thread message ids of the batches settled so far
    batch: set[int] = set()  # those of the batch being settled: not for its own messages
    try:
        for part in parts:
            empty = []
            for index, copies, certain, conditional in part.deferred:
                pick = certain
                for mark, candidate in conditional:
                    if mark not in parents and _better(candidate, pick):
                        pick = candidate
                part.counts.duplicates += copies - (pick is not None)
                if pick is None:
                    empty.append(index)
                    continue
                row, when, project, branch = pick[2]
                part.rows[index] = row
                _widen(part, index, row[2], when, project, branch)
            if empty:
                part.rows = [row for row in part.rows if row is not None]
            part.deferred = []
            batch |= part.parents
            if part.last:
                parents |= batch
                batch = set()
            yield part
    finally:
        parts.close()  # the reading processes end, however this ends


def _better(one: tuple[int, int, Any], other: tuple[int, int, Any] | None) -> bool:
    """Whether a candidate (total, line number, ...) beats another: a larger total, or an equal one read first."""
    return other is None or (one[0], -one[1]) > (other[0], -other[1])


def _total(record: LoggedUsage) -> int:
    return record.input_tokens + record.output_tokens + record.cache_read_tokens + record.cache_write_tokens


def import_logs(
    engine: Engine,
    path: Path | Sequence[Path],
    email: str,
    weight_for: Callable[[str], Decimal],
    on_progress: Callable[[int], None] | None = None,
    chunk_lines: int = CHUNK_LINES,
    rules: LinkRules | None = None,
    files: list[Path] | None = None,
    readers: int | None = None,
) -> ImportSummary:
    """Import every session log under PATH for one person; safe to run again (nothing is added twice).
    With `rules`, pull requests merged from the branches these sessions worked on are settled again at the
    end, so a history imported after the merges still links its runs to them. `files`: PATH's log files in
    order, when `find_logs` listed them already. `readers`: processes that read (default `readers_here()`).

    The files are cut into batches read by forked processes, one per core, while this one writes; a
    chunk is written (in one transaction of its own, in the order read) by a thread while the next one is
    taken: the database's own work (SQLite's and the PostgreSQL driver's, which give up Python's lock) then
    runs beside the rest. At most one chunk waits for the writer, so memory stays flat."""
    if files is None:
        files = log_files(*([path] if isinstance(path, Path) else path))
    summary = ImportSummary()
    sessions: set[str] = set()
    on_branches: set[str] = set()  # sessions that name their git branch: the ones a merge may link
    email = email.strip().lower()
    converters = usage_converters(engine.dialect)  # each record's time and cost converted once, by the reader
    batches = _batches(files)
    readers = min(readers_here() if readers is None else readers, len(batches))
    parts = (
        _read_in_processes(batches, email, converters, chunk_lines, readers)
        if readers > 1
        else _parts(files, email, converters, chunk_lines)
    )
    rows: list[tuple[Any, ...]] = []  # the chunk's usage records as the driver takes them (ingest_usage_rows)
    days: set[tuple[date, str]] = set()
    runs: dict[str, SeenRun] = {}  # the chunk's sessions, each widened to all its records (as the writer would)
    writer = _ChunkWriter(engine, summary, email)  # its thread starts at the first chunk: after the fork
    try:
        for part in parts:
            summary.add(part.counts)
            if on_progress is not None and part.read:
                on_progress(part.read)
            rows += part.rows
            days |= part.days
            for session_id, (start, end, project, _, branch, _) in part.runs.items():
                sessions.add(session_id)
                if branch:
                    on_branches.add(session_id)
                run = runs.get(session_id)
                if run is None:
                    runs[session_id] = SeenRun(
                        external_id=session_id,
                        email=email,
                        agent=AGENT,
                        started_at=start,
                        ended_at=end,
                        project=project,
                        branch=branch,
                    )
                    continue
                # widened (its end is set: this loop made it); what a run has is kept
                run.started_at = min(run.started_at, start)
                run.ended_at = max(run.ended_at or end, end)
                if run.project is None:
                    run.project = project
                if run.branch is None:
                    run.branch = branch
            if len(rows) >= chunk_lines:
                writer.put((list(runs.values()), rows, days))
                rows, days, runs = [], set(), {}
        if rows:
            writer.put((list(runs.values()), rows, days))
    except BaseException:
        parts.close()  # the reading processes end first, leaving the cores to the chunk being written
        writer.close(failing=True)  # the reading failed or was interrupted: the chunk being written ends
        raise
    writer.close()  # waits for the chunks handed over; raises the writer's error, if it had one
    summary.sessions = len(sessions)
    if rules is not None and on_branches:
        summary.pull_requests_settled = write_atomically(engine, lambda s: _relink(s, on_branches, rules))
    return summary


Chunk = tuple[list[SeenRun], list[tuple[Any, ...]], set[tuple[date, str]]]  # runs, rows, (day, tool): ingest_usage_rows


class _ChunkWriter:
    """Writes the chunks it is handed, in order, each in one transaction, from a thread of its own.

    `put` waits while a chunk is already waiting (a queue of one: memory stays flat) and raises at once
    the error a previous chunk met, so the reading stops at the first failed write; `close` waits for the
    chunks handed over (when the reading failed, only for the one being written), adds the counts to the
    summary and raises that error too. A chunk after a failed one is not written."""

    def __init__(self, engine: Engine, summary: ImportSummary, email: str) -> None:
        self.engine, self.summary, self.email = engine, summary, email
        self.queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.written = self.duplicates = 0  # the summary's, added by `close` (the reading thread counts too)
        self.thread = threading.Thread(target=self._run, name="claude-code-import-writer", daemon=True)
        # Started by the first chunk, not here: the reading processes fork first, from a process of one thread

    def _run(self) -> None:
        while (chunk := self.queue.get()) is not None:
            if self.error is not None:
                continue
            try:
                written, duplicates = write_atomically(self.engine, partial(_write, email=self.email, chunk=chunk))
            except BaseException as error:  # handed to the reading thread, which raises it
                self.error = error
                continue
            self.written += written
            self.duplicates += duplicates

    def put(self, chunk: Chunk) -> None:
        self._raise()
        if self.thread.ident is None:
            self.thread.start()
        self.queue.put(chunk)

    def close(self, failing: bool = False) -> None:
        if self.thread.ident is None:  # no chunk came
            return
        if failing:
            with suppress(queue.Empty):
                self.queue.get_nowait()
        self.queue.put(None)
        self.thread.join()
        self.summary.written += self.written
        self.summary.duplicates += self.duplicates
        if not failing:
            self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


def _relink(session: Any, session_ids: set[str], rules: LinkRules) -> int:
    source = internal_source(session, SOURCE_NAME, "claude-code-logs")
    known = run_ids(session, id_of(source), session_ids)
    return relink_runs(session, [run_id for run_id, _ in known.values()], rules)


def _write(session: Any, *, email: str, chunk: Chunk) -> tuple[int, int]:
    source = internal_source(session, SOURCE_NAME, "claude-code-logs")
    result = ingest_usage_rows(session, id_of(source), email, *chunk)
    return result.accepted, result.duplicates
