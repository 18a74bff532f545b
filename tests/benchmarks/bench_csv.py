"""`tokenwise import csv` on a big file: seconds and peak memory, which must not grow with the file.

    .venv/bin/python -m tests.benchmarks.bench_csv --db sqlite --mb 1024

The file holds usage lines as docs/ingest.md describes them (one person in 200, a month of days, a cost
on every line), written once under the bench folder and reused. The import runs as its own process
(`tokenwise import csv`) into a new database; peak RSS is the whole process's. A second, tenth-size file
gives the same figures at a smaller size, so the growth (or its absence) is read off one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import text

from storage.db import make_engine
from tests.benchmarks.bench_suite import bench_dir, measured, scratch_database

HEADER = "dedupe_key,email,occurred_at,agent,model,input_tokens,output_tokens,cache_read_tokens,cost_usd\n"


def usage_csv(path: Path, megabytes: float) -> int:
    """A usage CSV of about `megabytes` MB at `path` (kept if it is already there); how many lines."""
    target = int(megabytes * 2**20)
    if path.exists() and path.stat().st_size >= target:
        with path.open("rb") as handle:
            return sum(1 for _ in handle) - 1
    lines = 0
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        written = len(HEADER)
        while written < target:
            block = []
            for i in range(lines, lines + 10_000):
                block.append(
                    f"bench-{i},dev{i % 200}@example.com,2026-10-{1 + i % 30:02d}T{i % 24:02d}:{i % 60:02d}:00Z,"
                    f"claude-code,claude-sonnet-4-5,{900 + i % 977},{150 + i % 311},{4000 + i % 5003},0.0{1 + i % 97}\n"
                )
            text_block = "".join(block)
            out.write(text_block)
            written += len(text_block)
            lines += len(block)
    return lines


def bench_csv(kind: str, megabytes: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, size in (("tenth", megabytes / 10), ("full", megabytes)):
        path = bench_dir() / f"usage-{size:.0f}mb.csv"
        lines = usage_csv(path, size)
        with scratch_database(kind, f"csv-{label}") as url:
            tokenwise = str(Path(sys.executable).with_name("tokenwise"))
            seconds, peak_mb, _ = measured([tokenwise, "import", "csv", str(path)], {**os.environ, "DATABASE_URL": url})
            engine = make_engine(url)
            with engine.connect() as connection:
                stored = connection.execute(text("SELECT count(*) FROM usage_record")).scalar_one()
            engine.dispose()
        results[label] = {
            "file_mb": path.stat().st_size / 2**20,
            "lines": lines,
            "stored": stored,
            "seconds": seconds,
            "lines_per_s": lines / seconds,
            "peak_rss_mb": peak_mb,
        }
    return results


def render(kind: str, results: dict[str, Any]) -> str:
    rows = [
        "| database | file MB | lines | stored | seconds | lines/s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results.values():
        rows.append(
            f"| {kind} | {row['file_mb']:,.0f} | {row['lines']:,} | {row['stored']:,} | {row['seconds']:.1f} |"
            f" {row['lines_per_s']:,.0f} | {row['peak_rss_mb']:.0f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--mb", type=float, default=1024, help="size of the big file in MB (default 1024)")
    args = parser.parse_args(argv)
    results = bench_csv(args.db, args.mb)
    print(json.dumps(results, indent=2))
    print(render(args.db, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
