"""CSV parsing: any file gives rows or a line-numbered refusal, never a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.sources.csv_files import CsvInvalid, read_org_csv, read_usage_csv

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
