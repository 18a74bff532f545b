"""Claude Code session logs: streamed duplicates, sidechains, a truncated line, sessions across midnight."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlmodel import Session, select

from bot.config import DEFAULT_OUTCOME_WEIGHTS
from bot.sources import claude_code
from bot.sources.claude_code import LogsNotFound, default_folders, import_logs, log_files, usage_of
from storage.ingest import usage_converters
from storage.models import AgentRun, UsageRecord
from tests.support.claude_logs import compact, find_ccusage, write_claude_logs
from tests.support.ingest_fixtures import row_counts

SONNET = "claude-sonnet-4-20250514"


def weight_for(kind: str) -> Decimal:
    return DEFAULT_OUTCOME_WEIGHTS[kind]


def assistant(
    session: str,
    when: str,
    message_id: str | None,
    request_id: str | None,
    tokens: tuple[int, int, int, int],
    sidechain: bool = False,
    cost: float | None = None,
) -> str:
    inp, out, cache_read, cache_write = tokens
    line: dict[str, Any] = {
        "parentUuid": None,
        "isSidechain": sidechain,
        "userType": "external",
        "cwd": "/home/ana/api",
        "sessionId": session,
        "version": "1.0.98",
        "type": "assistant",
        "uuid": f"u-{when}",
        "timestamp": when,
        "message": {
            "type": "message",
            "role": "assistant",
            "model": SONNET,
            "content": [{"type": "text", "text": "never stored"}],
            "usage": {
                "input_tokens": inp,
                "cache_creation_input_tokens": cache_write,
                "cache_read_input_tokens": cache_read,
                "output_tokens": out,
                "service_tier": "standard",
            },
        },
    }
    if message_id:
        line["message"]["id"] = message_id
    if request_id:
        line["requestId"] = request_id
    if cost is not None:
        line["costUSD"] = cost
    return json.dumps(line)


def user(session: str, when: str) -> str:
    return json.dumps(
        {"type": "user", "sessionId": session, "timestamp": when, "message": {"role": "user", "content": "hi"}}
    )


def write_log_set(root: Path) -> Path:
    """Two projects, two sessions; per-day totals by hand are in EXPECTED below."""
    a = root / "projects" / "-home-ana-api"
    b = root / "projects" / "-home-ana-web"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    m1 = ("sa", "m1", "r1", (10, 100, 1000, 50))
    session_a = [
        user("sa", "2026-11-24T23:49:59.000Z"),
        assistant(*m1[:1], "2026-11-24T23:50:01.000Z", *m1[1:]),  # streamed: three lines, one call
        assistant(*m1[:1], "2026-11-24T23:50:02.000Z", *m1[1:]),
        assistant(*m1[:1], "2026-11-24T23:50:03.000Z", *m1[1:]),
        assistant("sa", "2026-11-24T23:59:59.500Z", "m2", "r2", (5, 20, 0, 0), sidechain=True, cost=0.01),
        "this line is not json",
        assistant("sa", "2026-11-25T00:00:01.000Z", "m3", "r3", (7, 70, 700, 7)),
        assistant("sa", "2026-11-25T00:00:02.000Z", "m7", "r7", (0, 0, 0, 0)).replace(SONNET, "<synthetic>"),
        '{"type":"assistant","sessionId":"sa","message":{"id":"m4","usage":{"input_tok',  # truncated, no newline
    ]
    (a / "sa.jsonl").write_text("\n".join(session_a))
    session_b = [
        user("sb", "2026-11-25T08:00:00.000Z"),
        assistant("sb", "2026-11-25T08:00:01.000Z", "m3", "r3", (7, 70, 700, 7)),  # resumed: copied history
        assistant("sb", "2026-11-25T08:01:00.000Z", "m5", "r5", (1, 2, 3, 4)),
        assistant("sb", "2026-11-25T08:02:00.000Z", "m6", None, (100, 0, 0, 0)),  # no requestId: counted each time
        assistant("sb", "2026-11-25T08:03:00.000Z", "m6", None, (100, 0, 0, 0)),
        "",
    ]
    (b / "sb.jsonl").write_text("\n".join(session_b) + "\n")
    return root


EXPECTED = {  # (input, output, cache read, cache write) per UTC day, by hand
    "2026-11-24": (10 + 5, 100 + 20, 1000, 50),
    "2026-11-25": (7 + 1 + 100 + 100, 70 + 2, 700 + 3, 7 + 4),
}


def per_day(engine: Engine) -> dict[str, tuple[int, int, int, int]]:
    """Stored tokens summed per UTC day (ccusage's daily report with --timezone UTC)."""
    days: dict[str, tuple[int, int, int, int]] = {}
    with Session(engine) as session:
        for r in session.exec(select(UsageRecord)).all():
            day = r.occurred_at.astimezone(UTC).date().isoformat()
            before = days.get(day, (0, 0, 0, 0))
            row = (r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens)
            days[day] = (before[0] + row[0], before[1] + row[1], before[2] + row[2], before[3] + row[3])
    return days


def test_a_generated_log_set_imports_to_the_hand_computed_per_day_totals(tmp_path: Path, engine: Engine) -> None:
    root = write_log_set(tmp_path / ".claude")
    summary = import_logs(engine, root, "Ana@Example.com", weight_for)
    assert per_day(engine) == EXPECTED
    assert (summary.files, summary.malformed, summary.sessions) == (2, 2, 2)
    assert summary.usage_lines == 9 and summary.written == 6 and summary.duplicates == 3
    with Session(engine) as session:
        runs = {r.external_id: r for r in session.exec(select(AgentRun)).all()}
        records = {r.dedupe_key: r for r in session.exec(select(UsageRecord)).all()}
    assert runs["sa"].started_at == datetime(2026, 11, 24, 23, 50, 1, tzinfo=UTC)
    assert runs["sa"].ended_at == datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC)
    assert records["cc:m3:r3"].run_id == runs["sa"].id  # the first file to report it keeps it
    assert records["cc:m2:r2"].cost_usd == Decimal("0.01")  # costUSD from the line
    # genai-prices for Sonnet 4: $3 input, $15 output, $0.30 cache read, $3.75 cache write per million
    assert records["cc:m1:r1"].cost_usd == Decimal("0.0020175")


def test_of_streamed_copies_the_one_with_the_final_usage_counts(tmp_path: Path, engine: Engine) -> None:
    """Claude Code writes a message once per content block while it streams; only the last copy carries
    the final output tokens. Keeping the first undercounted output by about a third (ccusage #888)."""
    folder = tmp_path / ".claude" / "projects" / "-home-ana-api"
    folder.mkdir(parents=True)
    copies = [
        assistant("s1", f"2026-11-24T10:00:0{n}.000Z", "m1", "r1", (10, out, 1000, 50))
        for n, out in enumerate((1, 37, 120, 311))
    ]
    copies.insert(2, user("s1", "2026-11-24T10:00:01.500Z"))  # other lines may fall between the copies
    (folder / "s1.jsonl").write_text("\n".join(copies) + "\n")

    summary = import_logs(engine, tmp_path / ".claude", "ana@example.com", weight_for)

    assert per_day(engine) == {"2026-11-24": (10, 311, 1000, 50)}
    assert (summary.usage_lines, summary.written, summary.duplicates) == (4, 1, 3)


def test_a_sub_agents_replay_of_its_parents_message_counts_once(tmp_path: Path, engine: Engine) -> None:
    """A sidechain log may repeat a message its parent reported (same message.id, another requestId):
    counted once, as ccusage counts since its issue #913. Nested session folders are read with flat ones."""
    project = tmp_path / ".claude" / "projects" / "-home-ana-api"
    (project / "s1" / "subagents").mkdir(parents=True)
    parent = [assistant("s1", "2026-11-24T10:00:00.000Z", "m1", "r1", (10, 50, 0, 0))]
    sub_agent = [
        assistant("s1", "2026-11-24T10:05:00.000Z", "m1", "r9", (10, 50, 0, 0), sidechain=True),  # the replay
        assistant("s1", "2026-11-24T10:06:00.000Z", "m2", "r2", (1, 2, 0, 0), sidechain=True),  # its own work
    ]
    (project / "s1.jsonl").write_text("\n".join(parent) + "\n")
    (project / "s1" / "subagents" / "agent-1.jsonl").write_text("\n".join(sub_agent) + "\n")

    summary = import_logs(engine, tmp_path / ".claude", "ana@example.com", weight_for)

    assert per_day(engine) == {"2026-11-24": (11, 52, 0, 0)}
    assert (summary.files, summary.written, summary.duplicates) == (2, 2, 1)


def test_the_default_folders_are_claude_config_dir_else_the_two_home_folders(tmp_path: Path) -> None:
    first, second, home = tmp_path / "first", tmp_path / "second", tmp_path / "home"
    for folder in (first, second, home / ".claude"):
        folder.mkdir(parents=True)
    assert default_folders({"CLAUDE_CONFIG_DIR": f"{first}, {second}"}, home) == [first, second]
    assert default_folders({}, home) == [home / ".claude"]  # ~/.config/claude does not exist here
    with pytest.raises(LogsNotFound, match="CLAUDE_CONFIG_DIR"):
        log_files(*default_folders({}, tmp_path / "nobody"))


def test_files_are_ordered_by_their_first_timestamp_however_far_into_the_file_it_is(tmp_path: Path) -> None:
    """Listing reads a file's start (HEAD_BYTES) for its first timestamp, and reads on when none is there:
    past a long first line, a line cut at the head's end, or no timestamp at all (such files go last)."""
    folder = tmp_path / "projects" / "-home-ana-api"
    folder.mkdir(parents=True)
    long_text = "x" * (2 * claude_code.HEAD_BYTES)
    untimed = json.dumps({"type": "summary", "summary": long_text})
    files = {
        "late.jsonl": user("s1", "2026-11-24T12:00:00.000Z") + "\n",
        "after-a-long-line.jsonl": untimed + "\n" + user("s2", "2026-11-24T09:00:00.000Z") + "\n",
        "cut-at-the-head.jsonl": "{}\n" * (claude_code.HEAD_BYTES // 3 - 10)
        + user("s3", "2026-11-24T10:00:00.000Z")
        + "\n",
        "long-first-line.jsonl": json.dumps({"timestamp": "2026-11-24T11:00:00.000Z", "pad": long_text}) + "\n",
        "never.jsonl": untimed + "\n",
    }
    for name, body in files.items():
        (folder / name).write_text(body)
    names = [path.name for path in log_files(tmp_path)]
    assert names == [
        "after-a-long-line.jsonl",
        "cut-at-the-head.jsonl",
        "long-first-line.jsonl",
        "late.jsonl",
        "never.jsonl",
    ]


def test_re_importing_the_same_logs_adds_nothing(tmp_path: Path, engine: Engine) -> None:
    root = write_log_set(tmp_path / ".claude")
    import_logs(engine, root, "ana@example.com", weight_for)
    counts = row_counts(engine)
    again = import_logs(engine, root / "projects", "ana@example.com", weight_for, chunk_lines=2)
    assert again.written == 0 and again.duplicates == 9
    assert row_counts(engine) == counts
    assert per_day(engine) == EXPECTED


def test_a_folder_without_logs_is_a_clear_error(tmp_path: Path, engine: Engine) -> None:
    with pytest.raises(LogsNotFound, match=r"No \*.jsonl session logs"):
        import_logs(engine, tmp_path, "ana@example.com", weight_for)
    with pytest.raises(LogsNotFound, match="No folder"):
        import_logs(engine, tmp_path / "nope", "ana@example.com", weight_for)


def _big_log(path: Path, lines: int) -> None:
    path.mkdir(parents=True)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with (path / "big.jsonl").open("w") as handle:
        for i in range(lines):
            when = (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
            handle.write(assistant(f"s{i // 500}", when, f"m{i}", f"r{i}", (i % 7, 3, 0, 0), cost=0.001) + "\n")


def _peak(engine: Engine, root: Path) -> int:
    tracemalloc.start()
    try:
        import_logs(engine, root, "ana@example.com", weight_for, chunk_lines=100)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_log_size(tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file is read in blocks of at most BLOCK_BYTES (a smaller file in one): blocks smaller than these
    # files (0.5 and 2 MB), so that what could grow with them is the import's own state.
    monkeypatch.setattr(claude_code, "BLOCK_BYTES", 1 << 16)
    _big_log(tmp_path / "warm" / "projects" / "p", 100)
    _big_log(tmp_path / "small" / "projects" / "p", 400)
    _big_log(tmp_path / "large" / "projects" / "p", 1600)
    _peak(engine, tmp_path / "warm")  # caches (SQL compilation, pricing) fill here
    small = _peak(engine, tmp_path / "small")
    large = _peak(engine, tmp_path / "large")
    assert row_counts(engine)["usage_record"] == 1600  # the same keys: small is a prefix of large
    assert large < small * 1.5 + 256 * 1024, (small, large)


@contextmanager
def refused_key(engine: Engine, key: str) -> Iterator[None]:
    """A real database fault: inserting the usage record `key` fails (a trigger raises 'boom'). The trigger is
    dropped after: PostgreSQL's test database is emptied between tests, not rebuilt."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse_key() RETURNS trigger LANGUAGE plpgsql AS"
                f" $$ BEGIN IF NEW.dedupe_key = '{key}' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_key BEFORE INSERT ON usage_record FOR EACH ROW EXECUTE FUNCTION refuse_key()"
            )
        else:
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_key BEFORE INSERT ON usage_record"
                f" WHEN NEW.dedupe_key = '{key}' BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
    try:
        yield
    finally:
        with engine.begin() as connection:
            postgres = engine.dialect.name == "postgresql"
            connection.exec_driver_sql("DROP TRIGGER refuse_key" + (" ON usage_record" if postgres else ""))
            if postgres:
                connection.exec_driver_sql("DROP FUNCTION refuse_key()")


def _stored_keys(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.exec(select(UsageRecord.dedupe_key)).all())


def _writer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "claude-code-import-writer"]


def test_a_chunk_the_database_refuses_stops_the_import_after_the_chunks_before_it(
    tmp_path: Path, engine: Engine
) -> None:
    """Chunks are written by a thread while the next ones are read: a failed write still reaches the caller,
    the chunks before it stay whole, and neither the failed chunk nor any after it is written."""
    _big_log(tmp_path / "projects" / "p", 1600)
    with refused_key(engine, "cc:m750:r750"), pytest.raises(Exception, match="boom"):  # in the eighth chunk of 100
        import_logs(engine, tmp_path, "ana@example.com", weight_for, chunk_lines=100)
    assert _stored_keys(engine) == {f"cc:m{i}:r{i}" for i in range(700)}
    assert not _writer_threads()


def test_a_reading_that_fails_ends_the_writer_thread(tmp_path: Path, engine: Engine) -> None:
    _big_log(tmp_path / "projects" / "a", 300)
    _big_log(tmp_path / "projects" / "b", 300)
    calls: list[int] = []

    def interrupted(size: int) -> None:
        calls.append(size)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_logs(engine, tmp_path, "ana@example.com", weight_for, on_progress=interrupted, chunk_lines=100)
    assert not _writer_threads()
    stored = _stored_keys(engine)
    assert len(stored) % 100 == 0 and len(stored) <= 300  # whole chunks only
    import_logs(engine, tmp_path, "ana@example.com", weight_for)  # the two files share their keys
    assert _stored_keys(engine) == {f"cc:m{i}:r{i}" for i in range(300)}


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["message", "timestamp", "requestId", "costUSD", "sessionId"]),
        st.none()
        | st.integers()
        | st.text(max_size=10)
        | st.dictionaries(
            st.sampled_from(["id", "usage", "model"]),
            st.none()
            | st.text(max_size=5)
            | st.dictionaries(st.sampled_from(["input_tokens", "output_tokens"]), st.integers() | st.text(max_size=3)),
        ),
    )
)
def test_any_log_line_gives_usage_nothing_or_a_skip_never_a_crash(line: dict[str, Any]) -> None:
    try:
        record = usage_of(line, "p/f.jsonl:1", "a@b.c")
    except ValueError:
        return
    if record is not None:
        assert record.input_tokens >= 0 and record.output_tokens >= 0


# -- the fast reader (msgspec, a filter on the bytes "usage") against the exact one (json.loads, usage_of) ----
counts = (
    st.none()
    | st.integers(min_value=-5, max_value=2**70)
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text(max_size=3)
)
anything = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
usage_lines = st.fixed_dictionaries(
    {},
    optional={
        "type": st.just("assistant"),
        "timestamp": st.sampled_from(["2026-11-24T23:59:59.500Z", "2026-11-25T01:00:00+02:00", "2026-11-24T10:00:00"])
        | anything,
        "requestId": st.sampled_from(["r1", "r2"]) | anything,
        "sessionId": st.sampled_from(["s1", ""]) | anything,
        "costUSD": st.none()
        | st.floats(min_value=-1, max_value=1e400)
        | st.integers(min_value=-2, max_value=10**30)
        | anything,
        "isSidechain": st.booleans() | anything,
        "cwd": st.sampled_from(["/home/ana/src/api/", "C:\\src\\web"]) | anything,
        "gitBranch": st.sampled_from(["main", " "]) | anything,
        "message": anything
        | st.fixed_dictionaries(
            {},
            optional={
                "id": st.sampled_from(["m1", "m2"]) | anything,
                "model": st.sampled_from([SONNET, "<synthetic>", "meshclaw-internal-2", ""]) | anything,
                "usage": anything
                | st.fixed_dictionaries(
                    {},
                    optional={
                        "input_tokens": counts,
                        "output_tokens": counts,
                        "cache_read_input_tokens": counts,
                        "cache_creation_input_tokens": counts,
                        "service_tier": anything,
                    },
                ),
                "content": st.just([{"type": "text", "text": "never stored"}]),
            },
        ),
    },
)


def _read_both_ways(raw: bytes) -> tuple[object, object]:
    """(fast, exact) reading of one line: its key, token total, storage row (priced, as SQLite takes it),
    time, project and branch, message id and sidechain flag; None when it has no usage; or "skipped"."""
    converters = usage_converters(sqlite_dialect())
    results: list[object] = []
    for read in (claude_code._read_usage, claude_code._read_usage_slowly):
        try:
            found = read(raw, "p/f.jsonl", 1, "a@b.c")
        except ValueError:
            results.append("skipped")
            continue
        if found is None:
            results.append(None)
            continue
        key, total, line, message_id, sidechain = found
        results.append((key, total, claude_code._row_of(line, key, converters), message_id, sidechain))
    return results[0], results[1]


@settings(max_examples=300, deadline=None)
@given(usage_lines, st.booleans())
def test_the_fast_reader_reads_every_line_as_json_loads_and_usage_of_read_it(
    line: dict[str, Any], spaced: bool
) -> None:
    raw = (json.dumps(line) if spaced else compact(line)).encode()
    fast, exact = _read_both_ways(raw)
    assert fast == exact
    if claude_code.USAGE_KEY not in raw:  # lines the filter passes by: checked to be objects, never read
        assert exact in ("skipped", None)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=60) | st.builds(lambda a, b: a + b'"usage"' + b, st.binary(max_size=20), st.binary(max_size=20))
)
def test_any_bytes_are_read_alike_by_both_readers_and_counted_broken_alike(raw: bytes) -> None:
    assert _read_both_ways(raw)[0] == _read_both_ways(raw)[1]
    try:
        is_object = isinstance(json.loads(raw), dict)
    except ValueError:
        is_object = False
    assert claude_code._is_object(raw) == is_object


def test_lines_msgspec_refuses_are_read_the_exact_way(tmp_path: Path) -> None:
    """NaN, a byte-order mark, bytes that are not UTF-8: json.loads decides, as the importer always did."""
    good = assistant("s1", "2026-11-24T10:00:00.000Z", "m1", "r1", (1, 2, 3, 4))
    nan = good.replace('"version"', '"nan": NaN, "version"').encode()
    marked = b"\xef\xbb\xbf" + good.encode()
    latin = good.replace("never stored", "n-ver").encode().replace(b"n-ver", b"n\xe9ver")  # Latin-1, not UTF-8
    for raw, counts in ((nan, True), (marked, True), (latin, False)):
        fast, exact = _read_both_ways(raw)
        assert fast == exact and (fast != "skipped") == counts


# -- logs as Claude Code writes them, against their truth and against ccusage ------------------------------
def per_project(engine: Engine) -> dict[str, tuple[int, int, int, int]]:
    with Session(engine) as session:
        rows = session.exec(select(UsageRecord, AgentRun).where(UsageRecord.run_id == AgentRun.id)).all()
    found: dict[str, tuple[int, int, int, int]] = {}
    for record, run in rows:
        before = found.get(run.project or "", (0, 0, 0, 0))
        row = (record.input_tokens, record.output_tokens, record.cache_read_tokens, record.cache_write_tokens)
        found[run.project or ""] = tuple(a + b for a, b in zip(before, row, strict=True))  # type: ignore[assignment]
    return found


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_logs_written_as_claude_code_writes_them_import_to_their_true_totals(
    tmp_path: Path, engine: Engine, seed: int
) -> None:
    """Compact JSON, streamed copies with growing output, tool results, sub-agents and their replays of a
    parent's message, nested and flat folders, a resumed session, cut-off last lines, sessions across
    midnight: per UTC day and per project, the import equals what the generator knows to be true."""
    truth = write_claude_logs(tmp_path / ".claude", seed=seed)
    assert len(truth.per_day) >= 3  # the midnight crossings give several days

    summary = import_logs(engine, tmp_path / ".claude", "dev@example.com", weight_for)

    assert per_day(engine) == truth.per_day
    assert per_project(engine) == truth.per_project
    assert summary.written == truth.calls and summary.files == truth.files
    assert summary.malformed == truth.truncated_files and summary.sessions == truth.sessions


def test_logs_written_as_claude_code_writes_them_count_as_ccusage_20_counts_them(tmp_path: Path) -> None:
    command = find_ccusage()
    if command is None:
        pytest.skip("ccusage 20.0.24 is not installed (`make bench` installs it; or set TOKENWISE_CCUSAGE)")
    truth = write_claude_logs(tmp_path / ".claude", seed=4, sessions=20)
    environment = {**os.environ, "CLAUDE_CONFIG_DIR": str(tmp_path / ".claude")}
    run = [command, "claude", "daily", "--json", "--offline", "-z", "UTC"]
    daily = json.loads(subprocess.run(run, env=environment, capture_output=True, text=True, check=True).stdout)
    theirs = {
        day["date"]: (day["inputTokens"], day["outputTokens"], day["cacheReadTokens"], day["cacheCreationTokens"])
        for day in daily["daily"]
    }
    assert theirs == truth.per_day


def test_a_run_keeps_its_checkout_folder_and_branch_and_each_cost_says_who_priced_it(
    tmp_path: Path, engine: Engine
) -> None:
    """Only the last component of `cwd` is kept (a full path carries a home folder's name); a cost from the
    line's costUSD is "reported", one Tokenwise computed from the tokens is "priced"."""
    folder = tmp_path / ".claude" / "projects" / "-home-ana-src-payments"
    folder.mkdir(parents=True)
    lines = [
        json.loads(assistant("s1", "2026-11-24T10:00:00.000Z", "m1", "r1", (10, 20, 0, 0), cost=0.5)),
        json.loads(assistant("s1", "2026-11-24T10:01:00.000Z", "m2", "r2", (10, 20, 0, 0))),
        json.loads(assistant("s2", "2026-11-24T11:00:00.000Z", "m3", "r3", (1, 2, 0, 0))),
    ]
    lines[0]["cwd"], lines[0]["gitBranch"] = "/home/ana/src/payments/", "feature/refunds"
    lines[1]["cwd"], lines[1]["gitBranch"] = "/home/ana/src/payments/api", "main"  # later lines don't move it
    lines[2]["cwd"] = "C:\\Users\\ana\\src\\billing"
    (folder / "s.jsonl").write_text("\n".join(compact(line) for line in lines) + "\n")

    import_logs(engine, tmp_path / ".claude", "ana@example.com", weight_for)

    with Session(engine) as session:
        runs = {r.external_id: (r.project, r.branch) for r in session.exec(select(AgentRun)).all()}
        sources = {r.dedupe_key: r.cost_source for r in session.exec(select(UsageRecord)).all()}
    assert runs == {"s1": ("payments", "feature/refunds"), "s2": ("billing", None)}
    assert sources == {"cc:m1:r1": "reported", "cc:m2:r2": "priced", "cc:m3:r3": "priced"}
