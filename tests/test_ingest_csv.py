"""CSV parsing: any file gives rows or a line-numbered refusal, never a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from bot.sources.csv_files import CsvInvalid, read_org_csv, read_usage_csv
from tests.test_cli import ROOT
from tests.test_cli import tokenwise as tokenwise_cli

HEADER = "dedupe_key,email,occurred_at,agent,model,input_tokens,output_tokens,cost_usd\n"
cells = st.sampled_from(["", "k1", "a@b.c", "2026-11-24T10:00:00Z", "x", "12", "-3", "1.5", '"q,uoted"', "é", "NaN"])
lines = st.lists(cells, min_size=0, max_size=10).map(",".join)


def parse(text: str, reader: object) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.csv"
        path.write_text(text, encoding="utf-8")
        try:
            rows = reader(path)  # type: ignore[operator]
        except CsvInvalid as error:
            assert str(error)
            assert "line " in str(error) or "empty" in str(error)
            return
        assert isinstance(rows, list)


@settings(max_examples=100, deadline=None)
@given(body=st.lists(lines, max_size=5), header=st.sampled_from([HEADER, "email,team,role\n", "", "a,b\n"]))
def test_any_usage_csv_gives_records_or_a_line_numbered_refusal(body: list[str], header: str) -> None:
    parse(header + "\n".join(body), read_usage_csv)


@settings(max_examples=100, deadline=None)
@given(body=st.lists(lines, max_size=5))
def test_any_org_csv_gives_rows_or_a_line_numbered_refusal(body: list[str]) -> None:
    parse("email,team,role\n" + "\n".join(body), read_org_csv)


def test_a_valid_usage_line_parses_integers_and_decimal_cost(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text(HEADER + "k1,Ana@Example.com,2026-11-24T10:00:00Z,cursor,gpt-4o,12,3,0.5\n")
    [record] = read_usage_csv(path)
    assert (record.email, record.input_tokens, record.output_tokens, str(record.cost_usd)) == (
        "ana@example.com",
        12,
        3,
        "0.5",
    )


def _usage_file(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        out.write("dedupe_key,email,occurred_at,agent,model,input_tokens,output_tokens,cost_usd\n")
        for i in range(rows):
            out.write(f"k-{i},dev{i % 40}@example.com,2026-11-{1 + i % 28:02d}T09:00:00Z,cli,m,{i},{i % 7},0.01\n")
    return path


def _import_peak_kib(db_url: str, path: Path) -> tuple[str, int]:
    """`tokenwise import csv` in its own process: what it printed and its peak resident memory (KiB)."""
    script = (
        "import resource, sys\nfrom bot.cli import main\nsys.argv = ['tokenwise', 'import', 'csv', sys.argv[1]]\n"
        "try:\n    main()\nfinally:\n"
        "    print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    )
    env = os.environ | {"DATABASE_URL": db_url, "COLUMNS": "120"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, int(done.stderr.split("peak")[-1])


@pytest.mark.slow
def test_a_big_csv_imports_whole_in_flat_memory(db_url: str, engine: Engine, tmp_path: Path) -> None:
    """80 000 lines take hardly more memory than 20 000: the file is read a chunk at a time (it used to be
    held whole, 33x its size: ~150 MB more here). What grows is SQLite's page cache, bounded at 64 MB."""
    small, small_peak = _import_peak_kib(db_url, _usage_file(tmp_path / "small.csv", 20_000))
    big, big_peak = _import_peak_kib(db_url, _usage_file(tmp_path / "big.csv", 80_000))
    assert "Imported 20000 usage records; 0 were already there" in small
    assert "Imported 60000 usage records; 20000 were already there" in big
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM usage_record")).scalar_one() == 80_000
    assert big_peak - small_peak < 70 * 1024, (small_peak, big_peak)


def test_a_bad_line_after_many_chunks_leaves_nothing_written(db_url: str, engine: Engine, tmp_path: Path) -> None:
    path = _usage_file(tmp_path / "bad.csv", 12_000)  # three chunks
    with path.open("a", encoding="utf-8") as out:
        out.write("k-x,dev@example.com,not a time,cli,m,1,1,0.01\n")
    result = tokenwise_cli(db_url, "import", "csv", str(path))
    assert result.returncode != 0
    assert "line 12002, column occurred_at" in result.stderr + result.stdout
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM usage_record")).scalar_one() == 0
