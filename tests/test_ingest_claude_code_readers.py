"""`tokenwise import claude-code` read by forked processes: the same records, runs and counts as one process,
in the same order; errors, interruptions and a reader's death stop everything, the chunks before them whole.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from bot.config import DEFAULT_OUTCOME_WEIGHTS
from bot.sources import claude_code
from bot.sources.claude_code import ImportSummary, find_logs, import_logs
from bot.sources.forked import ReaderEnded, in_order
from storage.ingest import usage_converters
from tests.support.claude_logs import compact, write_claude_logs
from tests.test_ingest_claude_code import _big_log, _stored_keys, assistant, per_day, refused_key

pytestmark = pytest.mark.skipif(not claude_code.can_fork(), reason="reading processes fork (Linux, macOS)")


def weight_for(kind: str) -> Decimal:
    return DEFAULT_OUTCOME_WEIGHTS[kind]


def _sub_agents(root: Path) -> None:
    """Sub-agents' own files, as Claude Code writes them beside their session (`{session}/subagents/`), which
    sort after their parents' files: each replays a main-thread message its parent logged in another file
    (same message.id, another requestId; streamed twice) and does work of its own. One replays a message
    logged only in a later file: that one is no replay yet when read, and counts."""
    files = sorted(root.glob("projects/*/*.jsonl")) + sorted(root.glob("projects/*/*/*.jsonl"))
    parents: list[dict[str, Any]] = []
    for path in files:
        for raw in path.read_text().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            message = line.get("message", {})
            if (
                line.get("type") == "assistant"
                and not line.get("isSidechain")
                and message.get("model") != "<synthetic>"
            ):
                parents.append(line)
    assert len(parents) > 10
    for number, parent in enumerate(parents[::4]):
        replay = {**parent, "isSidechain": True, "requestId": parent["requestId"] + "_sub"}
        stamp = f"2026-12-01T00:00:0{number % 10}.000Z"  # after every generated line: these files go last
        own = json.loads(assistant(parent["sessionId"], stamp, f"sub_{number}", f"subreq_{number}", (3, 5, 7, 11)))
        own["isSidechain"] = True
        lines = [{**replay, "timestamp": stamp}, {**replay, "timestamp": stamp}, own]
        folder = root / "projects" / "-home-dev0-src-repo0" / parent["sessionId"] / "subagents"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"agent-{number}.jsonl").write_text("\n".join(compact(line) for line in lines) + "\n")
    early = {**parents[-1], "isSidechain": True, "requestId": "early_sub", "timestamp": "2026-11-01T00:00:00.000Z"}
    (root / "projects" / "-home-dev0-src-repo0" / "early.jsonl").write_text(compact(early) + "\n")


def _keyed_log(folder: Path, name: str, day: int, lines: int = 200) -> None:
    """A file of `lines` calls with keys of its own (`cc:{name}{i}:r{i}`), read after those of earlier days."""
    folder.mkdir(parents=True)
    calls = (
        assistant(f"s-{name}", f"2026-11-{10 + day:02d}T00:00:{i % 60:02d}.000Z", f"{name}{i}", f"r{i}", (1, 1, 0, 0))
        for i in range(lines)
    )
    (folder / f"{name}.jsonl").write_text("\n".join(calls) + "\n")


def _later_log(folder: Path) -> None:
    """A file read after _big_log's, with keys of its own."""
    folder.mkdir(parents=True)
    lines = (assistant("s9", "2026-12-01T00:00:00.000Z", f"z{i}", f"y{i}", (1, 1, 0, 0)) for i in range(400))
    (folder / "later.jsonl").write_text("\n".join(lines) + "\n")


def _snapshot(engine: Engine) -> tuple[list[Any], list[Any]]:
    """Every usage record and run the import wrote (ids aside; PostgreSQL's ids follow a chunk's own order)."""
    with engine.connect() as connection:
        usage = connection.execute(
            text(
                "SELECT u.occurred_at, u.agent, u.model, u.input_tokens, u.output_tokens, u.cache_read_tokens,"
                " u.cache_write_tokens, u.cost_usd, u.dedupe_key, u.cost_source, r.external_id"
                " FROM usage_record u LEFT JOIN agent_run r ON r.id = u.run_id ORDER BY u.dedupe_key"
            )
        ).all()
        runs = connection.execute(
            text("SELECT external_id, agent, started_at, ended_at, project, branch FROM agent_run ORDER BY external_id")
        ).all()
    return [tuple(row) for row in usage], [tuple(row) for row in runs]


def _empty(engine: Engine) -> None:
    with engine.begin() as connection:
        for table in ("usage_record", "agent_run"):
            connection.execute(text(f"DELETE FROM {table}"))


@pytest.mark.parametrize("seed", [1, 2])
def test_several_readers_store_exactly_what_one_reader_stores(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Every file its own batch, three readers, small chunks: the records, the runs
    (their bounds, projects and branches), the summary and the true totals are those of one reader. Sub-agent
    replays of a message another reader's file holds are left out; a replay read before its parent counts."""
    root = tmp_path / ".claude"
    truth = write_claude_logs(root, seed=seed, sessions=40)
    _sub_agents(root)
    files, _ = find_logs(root)
    monkeypatch.setattr(claude_code, "BATCH_BYTES", 1)

    alone = import_logs(engine, root, "dev@example.com", weight_for, chunk_lines=7, files=files, readers=1)
    expected = _snapshot(engine)
    _empty(engine)
    shared = import_logs(engine, root, "dev@example.com", weight_for, chunk_lines=7, files=files, readers=3)

    assert _snapshot(engine) == expected
    assert shared == alone
    assert alone.duplicates > truth.calls // 4  # the streamed copies and the replays, cross-file ones too
    own_work = sum(1 for _ in root.glob("projects/*/*/subagents/*.jsonl"))
    assert alone.written == truth.calls + own_work + 1  # the sub-agents' own calls and the early replay
    days = per_day(engine)  # the added lines are on days of their own (1 November, 1 December)
    assert {day: days[day] for day in truth.per_day} == truth.per_day and len(days) == len(truth.per_day) + 2
    assert not multiprocessing.active_children()


T = "2026-11-24T10:00:0{}.000Z"


def _line(
    session: str, second: int, message: str, request: str, tokens: tuple[int, int, int, int], side: bool = False
) -> str:
    return assistant(session, T.format(second), message, request, tokens, sidechain=side)


# Layouts where a reader that does not know an earlier batch's main-thread ids could decide otherwise than one
# process reading alone (found in review): file a is read before file b, by another process.
LAYOUTS = {
    # a sidechain copy of M, then, later in the same file, M's main-thread line: no replay (its parent came
    # after it), whatever part boundary falls between them
    "parent after its replay": (
        [_line("s1", 0, "x", "rx", (1, 1, 1, 1))],
        [
            _line("s2", 1, "y", "ry", (1, 1, 1, 1)),
            _line("s2", 2, "M", "r_sub", (2, 2, 2, 2), side=True),
            _line("s2", 3, "M", "r_main", (3, 3, 3, 3)),
        ],
    ),
    # one key, a larger sidechain copy (a replay of a's M) and a smaller main-thread copy: the main one counts
    "a replay and a main copy of one key": (
        [_line("s1", 0, "M", "r0", (1, 1, 1, 1))],
        [_line("s2", 2, "M", "rk", (9, 9, 9, 9), side=True), _line("s2", 3, "M", "rk", (1, 1, 1, 1))],
    ),
    # a replay of a's M takes its place in the window as any message does: K's two copies, 65 messages apart,
    # leave the window alike in both ways of reading
    "a replay in the window": (
        [_line("s1", 0, "M", "r0", (1, 1, 1, 1))],
        [_line("s2", 1, "K", "rk", (1, 0, 0, 0)), _line("s2", 2, "M", "r_sub", (2, 2, 2, 2), side=True)]
        + [_line("s2", 3, f"o{i}", f"q{i}", (1, 1, 1, 1)) for i in range(63)]
        + [_line("s2", 4, "K", "rk", (5, 5, 5, 5))],
    ),
    # a sub-agent's own message streamed beside a replayed one: its largest copy counts, the first of equals
    "own work streamed beside a replay": (
        [_line("s1", 0, "M", "r0", (1, 1, 1, 1)), _line("s1", 0, "N", "rn", (1, 1, 1, 1))],
        [
            _line("s2", 1, "P", "rp", (1, 0, 0, 0), side=True),
            _line("s2", 2, "M", "r_sub", (2, 2, 2, 2), side=True),
            _line("s2", 3, "P", "rp", (4, 4, 4, 4), side=True),
            _line("s2", 4, "N", "rn2", (3, 3, 3, 3), side=True),
            _line("s2", 5, "P", "rp", (4, 4, 4, 4), side=True),
        ],
    ),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("chunk", [1, 2, 100])
def test_sidechain_layouts_read_apart_as_they_read_together(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch, layout: str, chunk: int
) -> None:
    first, second = LAYOUTS[layout]
    folder = tmp_path / "projects" / "p"
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text("\n".join(first) + "\n")
    (folder / "b.jsonl").write_text("\n".join(second) + "\n")
    monkeypatch.setattr(claude_code, "BATCH_BYTES", 1)

    alone = import_logs(engine, tmp_path, "ana@example.com", weight_for, chunk_lines=chunk, readers=1)
    expected = _snapshot(engine)
    _empty(engine)
    shared = import_logs(engine, tmp_path, "ana@example.com", weight_for, chunk_lines=chunk, readers=2)

    assert _snapshot(engine) == expected
    assert shared == alone


def test_several_files_a_batch_read_apart_as_together(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of several files each (about 20 KB), the generated logs and sub-agent files: the same store."""
    root = tmp_path / ".claude"
    write_claude_logs(root, seed=5, sessions=60)
    _sub_agents(root)
    monkeypatch.setattr(claude_code, "BATCH_BYTES", 20_000)
    files = find_logs(root)[0]
    assert 3 < len(claude_code._batches(files)) < len(files) / 2

    alone = import_logs(engine, root, "dev@example.com", weight_for, chunk_lines=50, readers=1)
    expected = _snapshot(engine)
    _empty(engine)
    shared = import_logs(engine, root, "dev@example.com", weight_for, chunk_lines=50, readers=2)

    assert _snapshot(engine) == expected
    assert shared == alone


def test_a_reader_that_cannot_read_a_file_stops_the_import_after_the_batches_before_it(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file gone between listing and reading: its reader's error reaches the caller at that file's place in
    the order; the files before it are written in whole chunks, none after it; no reader or writer is left."""
    for number, name in enumerate("abcd"):
        _keyed_log(tmp_path / "projects" / name, name, number)
    files, _ = find_logs(tmp_path)
    assert [path.parent.name for path in files] == list("abcd")
    monkeypatch.setattr(claude_code, "BATCH_BYTES", 1)
    files[2].unlink()

    with pytest.raises(FileNotFoundError):
        import_logs(engine, tmp_path, "ana@example.com", weight_for, chunk_lines=50, files=files, readers=2)

    stored = _stored_keys(engine)
    for name in "ab":  # whole chunks, in order (the one waiting for the writer when the error came is not written)
        ours = {key for key in stored if key.startswith(f"cc:{name}")}
        assert ours == {f"cc:{name}{i}:r{i}" for i in range(len(ours))} and len(ours) % 50 == 0
    assert len(stored) >= 200 and not {key for key in stored if key.startswith("cc:d")}
    assert not multiprocessing.active_children()
    assert not [t for t in threading.enumerate() if t.name == "claude-code-import-writer"]


def test_a_chunk_the_database_refuses_stops_the_readers_too(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _big_log(tmp_path / "projects" / "a", 400)
    _later_log(tmp_path / "projects" / "b")
    monkeypatch.setattr(claude_code, "BATCH_BYTES", 1)
    with refused_key(engine, "cc:m250:r250"), pytest.raises(Exception, match="boom"):
        import_logs(engine, tmp_path, "ana@example.com", weight_for, chunk_lines=100, readers=2)

    assert _stored_keys(engine) == {f"cc:m{i}:r{i}" for i in range(200)}
    assert not multiprocessing.active_children()


def test_an_interrupted_import_ends_its_readers_and_leaves_whole_chunks(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C reaches the process group: the readers ignore it, the import (here: its progress hook) gets it,
    ends the readers and the writer, and leaves whole chunks; importing again completes the set."""
    for number, name in enumerate("abcdef"):
        _keyed_log(tmp_path / "projects" / name, name, number, lines=300)
    monkeypatch.setattr(claude_code, "BATCH_BYTES", 1)
    calls: list[int] = []

    def interrupted(size: int) -> None:
        calls.append(size)
        if len(calls) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_logs(
            engine, tmp_path, "ana@example.com", weight_for, on_progress=interrupted, chunk_lines=100, readers=2
        )
    assert not multiprocessing.active_children()
    stored = _stored_keys(engine)
    for name in "abcdef":  # each file's first 100, 200 or 300 records, or none: whole chunks, in order
        ours = {key for key in stored if key.startswith(f"cc:{name}")}
        assert ours == {f"cc:{name}{i}:r{i}" for i in range(len(ours))} and len(ours) % 100 == 0
    assert not {key for key in stored if key.startswith(("cc:e", "cc:f"))}  # read after the interruption
    again = import_logs(engine, tmp_path, "ana@example.com", weight_for, readers=2)
    assert len(_stored_keys(engine)) == 1800 and again.written == 1800 - len(stored)


# -- the readers themselves (bot/sources/forked.py) --------------------------------------------------


def _numbers(batch: tuple[int, int]) -> Iterator[int]:
    first, count = batch
    if first < 0:
        raise ValueError(f"batch {first} refuses")
    yield from range(first, first + count)


def test_results_come_back_in_the_order_of_the_batches_however_uneven() -> None:
    batches = [(i * 1000, (i * 37) % 500) for i in range(40)]
    expected = [n for batch in batches for n in _numbers(batch)]
    assert list(in_order(batches, _numbers, 3)) == expected
    assert not multiprocessing.active_children()


def test_an_error_arrives_at_its_place_in_the_order() -> None:
    got: list[int] = []
    with pytest.raises(ValueError, match="batch -1 refuses"):
        for number in in_order([(0, 3), (10, 3), (-1, 0), (20, 3)], _numbers, 2):
            got.append(number)
    assert got == [0, 1, 2, 10, 11, 12]
    assert not multiprocessing.active_children()


class _Unpicklable(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("not picklable")


def _fails_strangely(batch: int) -> Iterator[int]:
    raise _Unpicklable("the words survive")
    yield batch


def test_an_error_that_will_not_pickle_still_arrives_in_words() -> None:
    with pytest.raises(RuntimeError, match="_Unpicklable: the words survive"):
        list(in_order([1, 2], _fails_strangely, 2))


def _dies(batch: int) -> Iterator[int]:
    if batch == 3:
        os._exit(7)
    yield batch


def test_a_reader_that_dies_is_a_clear_error_not_a_hang() -> None:
    with pytest.raises(ReaderEnded, match="exit code 7"):
        list(in_order([1, 2, 3, 4], _dies, 2))
    assert not multiprocessing.active_children()


def _slow(batch: int) -> Iterator[int]:
    for number in range(batch, batch + 50):
        time.sleep(0.01)
        yield number


def test_readers_ignore_ctrl_c_and_stopping_early_ends_them() -> None:
    """The group's SIGINT is the parent's to act on: a reader that gets it reads on. Closing the results
    early (the parent's Ctrl-C, or an error) ends every reader."""
    results = in_order([0, 100, 200, 300], _slow, 2)
    assert next(results) == 0
    readers = multiprocessing.active_children()
    assert len(readers) == 2
    for reader in readers:
        assert reader.pid is not None
        os.kill(reader.pid, signal.SIGINT)
    assert [next(results) for _ in range(60)] == [*range(1, 50), *range(100, 111)]
    results.close()
    assert not multiprocessing.active_children()


def test_a_single_large_file_is_read_by_one_process_in_parts(tmp_path: Path, engine: Engine) -> None:
    """One file is one batch, whatever its size: one batch is read without forking, in parts."""
    _big_log(tmp_path / "projects" / "p", 1200)
    summary = import_logs(engine, tmp_path, "ana@example.com", weight_for, chunk_lines=100, readers=4)
    assert summary == ImportSummary(files=1, lines=1200, usage_lines=1200, written=1200, sessions=3)


class _TwoWords(Exception):
    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}")


def _fails_to_unpickle(batch: int) -> Iterator[int]:
    raise _TwoWords("/logs/a.jsonl", "disk on fire")
    yield batch


def test_an_error_that_pickles_but_will_not_unpickle_still_arrives_in_words() -> None:
    with pytest.raises(RuntimeError, match=r"_TwoWords: /logs/a\.jsonl: disk on fire"):
        list(in_order([1, 2], _fails_to_unpickle, 2))


PARENT = """
import multiprocessing, sys, time
from bot.sources.forked import in_order
def read(batch):
    while True:
        yield b"x" * 100_000
results = in_order([1, 2], read, 2)
next(results)
print(" ".join(str(child.pid) for child in multiprocessing.active_children()), flush=True)
time.sleep(60)
"""


def _ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # a zombie has ended
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_readers_end_when_their_parent_is_killed() -> None:
    """A parent killed outright runs no clean-up: its readers, blocked on a full pipe, find it broken and end."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    readers = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(readers) == 2 and not any(map(_ended, readers))
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while not all(map(_ended, readers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(map(_ended, readers))


def _one_reader(files: list[Path], chunk: int) -> Any:
    return _collected(claude_code._parts(files, "a@b.co", CONVERTERS, chunk))


def _readers_apart(batches: list[list[Path]], chunk: int) -> Any:
    """Each batch read as a reader process reads it (here, one after another), then settled in order."""

    def parts() -> Iterator[claude_code._Part]:
        for batch in batches:
            yield from claude_code._parts(batch, "a@b.co", CONVERTERS, chunk, defer=True)

    return _collected(claude_code._settled(parts()))


def _collected(parts: Iterator[claude_code._Part]) -> Any:
    rows: list[Any] = []
    runs: dict[str, list[Any]] = {}
    days: set[Any] = set()
    counts = ImportSummary()
    for part in parts:
        rows += part.rows
        days |= part.days
        counts.add(part.counts)
        for session, (start, end, project, _, branch, _) in part.runs.items():
            run = runs.setdefault(session, [start, end, project, branch])
            run[0], run[1] = min(run[0], start), max(run[1], end)
            run[2], run[3] = run[2] or project, run[3] or branch
    return rows, runs, days, counts


CONVERTERS = usage_converters(sqlite_dialect())

# A line: (message id, request id, sidechain, output tokens, session, branch). Few ids, so that copies,
# replays and parents meet in every order, within a file and across files; ids with a colon, so that two
# ids share a key ("A:x" + "y" and "A" + "x:y"); lines without a request id (keyed by their place).
LINES = st.tuples(
    st.sampled_from(["A", "B", "A:x", "C"]),
    st.sampled_from(["x", "y", "x:y", None]),
    st.booleans(),
    st.integers(0, 3),
    st.sampled_from(["s1", "s2"]),
    st.sampled_from(["main", None]),
)


@settings(max_examples=200, deadline=None)
@given(
    files=st.lists(st.lists(LINES, max_size=12), min_size=1, max_size=5),
    cuts=st.lists(st.booleans(), min_size=5, max_size=5),
    chunk=st.integers(1, 5),
    window=st.sampled_from([1, 2, 3, 64]),
)
def test_any_layout_reads_apart_as_it_reads_together(
    files: list[list[Any]], cuts: list[bool], chunk: int, window: int
) -> None:
    """Random files of streamed copies, main-thread and sidechain lines of a few messages, cut into batches of
    one or more files at random, with windows small enough that copies leave them between their copies:
    read as one process reads them and as separate batches settled in order, the same rows in the same order,
    runs (with their projects and branches), days and counts."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for number, lines in enumerate(files):
            path = Path(folder) / f"{number}.jsonl"
            body = []
            for place, (message, request, side, output, session, branch) in enumerate(lines):
                stamp = f"2026-11-{24 + place % 2}T10:00:0{number}.000Z"
                line = json.loads(assistant(session, stamp, message, request, (1, output, 0, 0), side))
                line["cwd"], line["gitBranch"] = f"/src/{message[0]}{place % 2}", branch
                body.append(compact(line))
            path.write_text("\n".join(body) + "\n")
            paths.append(path)
        batches: list[list[Path]] = [[]]
        for path, cut in zip(paths, cuts, strict=False):
            if cut and batches[-1]:
                batches.append([])
            batches[-1].append(path)
        before = claude_code.COPY_WINDOW
        claude_code.COPY_WINDOW = window
        try:
            assert _readers_apart(batches, chunk) == _one_reader(paths, chunk)
        finally:
            claude_code.COPY_WINDOW = before
