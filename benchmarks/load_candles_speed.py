"""How fast a year of 1-minute candles loads: a Binance kline CSV (525,600 rows of 12 columns, open
times in microseconds as Binance's 2025 spot files), the same CSV zipped, and the seeded synthetic
year. Best of N runs each; prints figures, asserts nothing.

    .venv/bin/python benchmarks/load_candles_speed.py [--runs 3] [--rows 525600]

CPU time counts every thread (pyarrow parses on all cores), so it can exceed the wall time; on a
busy machine the wall time grows while the CPU time stays about the same.

Each file is also loaded once in each of N fresh processes, for the peak RSS (ru_maxrss) of a load
from a cold start: the process imports numpy and pyarrow (their memory is shown apart), loads, and
reports. A small launcher process starts it, since Linux counts in a child's ru_maxrss the memory
of the process it was forked from (this one holds a synthetic year by then).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from adapters.backtest.columns import MINUTE_MS, CandleColumns
from adapters.backtest.data import load_candles, synthetic_candles

START_MS = 1_735_689_600_000  # 2025-01-01 00:00 UTC


def eight_decimals(units: Any) -> Any:
    """A pyarrow decimal128(18, 8) array whose unscaled integers are `units` (int64, exact)."""
    words = np.zeros((len(units), 2), dtype=np.int64)
    words[:, 0] = units  # little-endian: the low 64 bits first; all values here are positive
    return pa.Array.from_buffers(pa.decimal128(18, 8), len(units), [None, pa.py_buffer(words.tobytes())])


def write_year(path: Path, rows: int) -> None:
    """A Binance-format kline CSV of `rows` minutes, prices printed with 8 decimals as Binance does."""
    year = synthetic_candles(seed=1, count=rows, start_ms=START_MS)
    rng = np.random.default_rng(1)
    volume = rng.integers(1, 2_000_000_000, size=rows)  # units of 1e-8
    quote = np.maximum(volume * (year.close // 1_000_000) // 100, 1)  # volume * close, in units
    t_us = year.open_time_ms * 1000
    columns = {
        "open_time": pa.array(t_us),
        "open": eight_decimals(year.open),
        "high": eight_decimals(year.high),
        "low": eight_decimals(year.low),
        "close": eight_decimals(year.close),
        "volume": eight_decimals(volume),
        "close_time": pa.array(t_us + MINUTE_MS * 1000 - 1),
        "quote_volume": eight_decimals(quote),
        "count": pa.array(rng.integers(1, 3000, size=rows)),
        "taker_buy_volume": eight_decimals(volume // 2),
        "taker_buy_quote_volume": eight_decimals(quote // 2),
        "ignore": pa.array(np.zeros(rows, dtype=np.int64)),
    }
    table = pa.table({name: column.cast(pa.string()) for name, column in columns.items()})
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))


# The measured process: one load after its imports; prints its figures as JSON.
FRESH = """
import json, resource, sys, time
from pathlib import Path
import numpy, pyarrow, pyarrow.csv
from adapters.backtest.data import load_candles
imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
wall, cpu = time.perf_counter(), time.process_time()
rows = len(load_candles(Path(sys.argv[1])))
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": rows, "wall": wall, "cpu": cpu, "imports_kib": imports, "peak_kib": peak}))
"""
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def fresh_loads(path: Path, runs: int) -> list[dict[str, Any]]:
    """One load of `path` in each of `runs` fresh processes, each started by a small launcher."""
    figures = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, sys.executable, "-c", FRESH, str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        figures.append(json.loads(done.stdout))
    return figures


def best_of(runs: int, load: Callable[[], CandleColumns]) -> tuple[float, float, CandleColumns]:
    """The best wall time of `runs` loads (after one warm-up), and the CPU time (all threads) of that run."""
    best = (float("inf"), 0.0)
    result = load()  # warm: imports, page cache
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = load()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best[0], best[1], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=525_600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "BTCUSDT-1m-2025.csv"
        zip_path = Path(tmp) / "BTCUSDT-1m-2025.zip"
        start = time.perf_counter()
        write_year(csv_path, args.rows)
        with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(csv_path, csv_path.name)
        print(
            f"wrote {args.rows:,} rows: CSV {csv_path.stat().st_size / 1e6:.1f} MB, "
            f"zip {zip_path.stat().st_size / 1e6:.1f} MB ({time.perf_counter() - start:.1f} s)"
        )
        for label, load in (
            ("load_candles(csv)", lambda: load_candles(csv_path)),
            ("load_candles(zip)", lambda: load_candles(zip_path)),
            ("synthetic_candles()", lambda: synthetic_candles(count=args.rows)),
        ):
            seconds, cpu, candles = best_of(args.runs, load)
            print(
                f"{label:<22} best of {args.runs}: {seconds * 1000:7.1f} ms wall, {cpu * 1000:7.1f} ms CPU  "
                f"({len(candles):,} candles, {len(candles) / seconds / 1e6:.1f} M/s)"
            )
        for label, path in (("csv", csv_path), ("zip", zip_path)):
            runs = fresh_loads(path, args.runs)
            walls = [r["wall"] * 1000 for r in runs]
            peaks = [r["peak_kib"] / 1024 for r in runs]
            print(
                f"fresh process, {label}: {args.runs} loads, wall {min(walls):.0f} ms best, "
                f"{statistics.median(walls):.0f} ms median, CPU {min(r['cpu'] for r in runs) * 1000:.0f} ms "
                f"best; peak RSS {min(peaks):.0f}-{max(peaks):.0f} MiB "
                f"({max(r['imports_kib'] for r in runs) / 1024:.0f} MiB after the imports)"
            )


if __name__ == "__main__":
    main()
