"""What the speed work must not break: exact prices, an unchanged schema after a bulk load, and the
benchmark suite itself (run here at a tiny scale so it cannot rot; `make bench` runs it at full size)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from bot.pricing import EXACT_TOKENS, fast_price, price, price_nano
from bot.seed import seed_organisation
from storage.types import ScaledDecimal
from tests.benchmarks import bench_suite

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it

MODELS = [
    "claude-sonnet-4-5-20250929",  # tiered above 200k input tokens
    "claude-sonnet-4-20250514",
    "claude-opus-4-1",
    "claude-haiku-4-5",
    "gpt-5",
    "gpt-4o-mini",
    "meshclaw-internal-2",  # unknown: no price
]
near_tier = st.integers(min_value=199_990, max_value=200_010)
tokens = st.integers(min_value=0, max_value=400_000)


@settings(max_examples=100, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    input_tokens=tokens | near_tier,
    output_tokens=st.integers(min_value=0, max_value=20_000),
    cache_read=tokens,
    cache_write=st.integers(min_value=0, max_value=40_000) | st.just(0),
)
def test_fast_price_is_exactly_genai_prices_answer(
    model: str, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int
) -> None:
    assert fast_price(model, input_tokens, output_tokens, cache_read, cache_write) == price(
        model, input_tokens, output_tokens, cache_read, cache_write
    )


@settings(max_examples=100, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    input_tokens=tokens | near_tier | st.integers(min_value=0, max_value=EXACT_TOKENS),
    output_tokens=st.integers(min_value=0, max_value=20_000) | st.integers(min_value=0, max_value=10**14),
    cache_read=tokens,
    cache_write=st.integers(min_value=0, max_value=40_000) | st.just(0),
)
def test_price_in_nano_dollars_is_exactly_the_stored_value_of_genai_prices_answer(
    model: str, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int
) -> None:
    """What the importer of Claude Code's logs stores without a Decimal: the integer ScaledDecimal makes of
    price(), or None (unknown model, counts too large to be sure of), never another number."""
    nano = price_nano(model, input_tokens, output_tokens, cache_read, cache_write)
    exact = price(model, input_tokens, output_tokens, cache_read, cache_write)
    stored = ScaledDecimal().process_bind_param(exact, None)
    too_large = input_tokens + cache_read + cache_write >= EXACT_TOKENS or output_tokens >= EXACT_TOKENS
    assert nano == (None if too_large else stored)
    if model.startswith(("claude", "gpt")) and not too_large:
        assert nano is not None  # the common models' rates are whole nano-dollars a token


def test_fast_price_changes_tier_where_genai_prices_does() -> None:
    model = MODELS[0]
    for total in (199_999, 200_000, 200_001):
        assert fast_price(model, total, 100) == price(model, total, 100)
    assert fast_price(model, 200_001, 0) > fast_price(model, 200_000, 0) * 2  # type: ignore[operator]


def _schema(engine: Engine) -> dict[str, tuple[list[str], list[str], list[str]]]:
    found = inspect(engine)
    return {
        table: (
            sorted(index["name"] or "" for index in found.get_indexes(table)),
            sorted(f"{fk['constrained_columns']}->{fk['referred_table']}" for fk in found.get_foreign_keys(table)),
            sorted(f"{unique['name']}:{unique['column_names']}" for unique in found.get_unique_constraints(table)),
        )
        for table in ("agent_run", "usage_record", "outcome", "annotation")
    }


def test_seeding_leaves_every_index_and_foreign_key_as_the_migrations_made_them(engine: Engine) -> None:
    before = _schema(engine)
    summary = seed_organisation(engine, 12, 2, 2, seed=3, end=date(2026, 11, 25))
    assert summary.usage_records > 0
    assert _schema(engine) == before
    assert all(unique for _indexes, _keys, unique in before.values() if _keys)  # uniques were compared too
    with pytest.raises(IntegrityError), engine.begin() as connection:  # the foreign keys are enforced again
        connection.execute(
            text(
                "INSERT INTO usage_record (source_id, person_id, occurred_at, agent, model, input_tokens,"
                " output_tokens, cache_read_tokens, cache_write_tokens, dedupe_key)"
                " VALUES (1, 999999, :t, 'a', 'm', 0, 0, 0, 0, 'orphan')"
            ),
            {"t": datetime(2026, 11, 1, tzinfo=UTC).replace(tzinfo=None)},
        )


def test_the_benchmark_suite_runs_at_a_tiny_scale(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_DIR", str(tmp_path))
    seeded = bench_suite.bench_seed(db_url, 20, weeks=2)
    assert seeded["usage_records"] > 0 and seeded["seconds"] > 0 and seeded["floor_seconds"] > 0

    slash = bench_suite.bench_slash(db_url, seeded["people"], samples=2)
    assert slash["problems"] == []
    assert slash["me"]["p95_ms"] > 0 and slash["team_floor"]["p95_ms"] > 0

    ingest = bench_suite.bench_ingest(db_url, seeded["people"], batches=4, size=50, senders=(1, 2))
    assert ingest["records"] == 200 and set(ingest["senders"]) == {"1", "2"} and ingest["floor_seconds"] > 0
    assert all(run["records"] == 200 for run in ingest["senders"].values())

    digests = bench_suite.bench_digest(db_url, teams=2, charts=True)
    assert digests["teams"] == 2 and digests["seconds"] > 0 and digests["rss_mb_peak"] > 0

    imported = bench_suite.bench_import(db_url, 200_000, install=False)  # ccusage only where it is installed
    assert imported["totals_match_hand_count"] is True
    assert imported["peak_rss_mb"] > 0 and imported["floor"]["usage_records"] == imported["hand_count"]["entries"]
    assert imported.get("ccusage_matches_hand_count", True) is True

    kind = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    with bench_suite.scratch_database(kind, "dense") as url:
        dense = bench_suite.bench_import(url, 200_000, install=False, dense=True)
    assert dense["totals_match_hand_count"] is True and dense["hand_count"]["days"] >= 3
    assert dense.get("ccusage_matches_hand_count", True) is True
    assert "record-dense logs" in bench_suite.render({"sqlite": {"imports": [imported, dense]}})

    from tests.benchmarks.bench_csv import bench_csv

    csv_rows = bench_csv(kind, 1.0)  # a 1 MB file and a tenth of it
    assert [row["stored"] for row in csv_rows.values()] == [row["lines"] for row in csv_rows.values()]
    assert all(row["peak_rss_mb"] > 0 for row in csv_rows.values())
    assert "| file MB |" in bench_suite.render({kind: {"csv": csv_rows}})


def test_the_ten_times_section_runs_at_a_tiny_scale(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.benchmarks import bench_tenx

    monkeypatch.setenv("BENCH_DIR", str(tmp_path))
    assert [label for label, _ in bench_tenx.sizes("postgresql", 10)] == ["1x", "5x", "25x", "250x"]
    assert bench_tenx.sizes("postgresql", 10)[-1][1] == 5_000  # 5 000 people in 500 teams
    assert [label for label, _ in bench_tenx.sizes("sqlite", 10)] == ["1x", "5x", "25x", "125x"]  # half
    assert [label for label, _ in bench_tenx.sizes("sqlite", 1)] == ["1x", "5x", "25x"]
    kind = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    refusal = bench_tenx.enough_disk(kind, db_url, 10**14)
    assert refusal is not None and "not enough free disk" in refusal and "GB is free" in refusal

    tenx = bench_tenx.tenx_section(
        kind, bench_suite.scratch_database, 0.001, samples=2, github_deliveries=50, weeks=6, today_weeks=2
    )
    assert tenx["skipped"] == {} and tenx["today"]["disk"]["bytes_per_record"] > 0
    (label, row), *_ = tenx["sizes"].items()
    assert label == "1x" and row["usage_records"] > row["runs"] * 3  # per-request: many records a run
    assert row["commands"]["problems"] == []
    assert all(row["commands"][name]["count"] > 0 for name in ("me", "team", "home", "summary"))
    assert row["disk"]["largest"] in row["disk"]["parts"] and row["disk"]["bytes_per_record"] > 0
    assert row["digests"]["posted"] == row["teams"] == row["digests"]["charts"]
    assert row["digests"]["rss_mb_peak"] > 0
    assert row["github"]["lost"] == {} and row["github"]["statuses"] == {"200": 50}
    purge = row["purge"]
    assert 0 < purge["purged_usage"] < purge["usage_before"] and purge["me_during"]["count"] >= 1
    assert "Purged " in purge["output"]
    table = bench_suite.render({kind: {"tenx": tenx}})
    assert "/tokenwise summary" in table and "bytes per record" in table and "usage before" in table
