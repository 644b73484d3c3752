"""Run every benchmark in this folder, one after another, and print their figures.

    .venv/bin/python benchmarks/run_all.py        (or: make bench)

Each script runs in its own process (a clean interpreter, as a user starts one). Figures are
printed, never asserted; record them in benchmarks/README.md with the date and the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCHMARKS: list[tuple[str, list[str]]] = [
    ("startup.py", ["--runs", "20"]),
    ("backtest_speed.py", []),
    ("bench_binance_adapter.py", ["--calls", "1000"]),
    ("sim_store_speed.py", []),
    ("bench_backtest.py", []),
    ("bench_streams.py", ["--messages", "200000"]),
    ("bench_uow.py", []),
    ("bench_tick_to_order.py", ["--fills", "2000"]),
]


def main() -> int:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    failed = []
    for script, args in BENCHMARKS:
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        result = subprocess.run([sys.executable, str(HERE / script), *args], cwd=ROOT, env=env, check=False)
        if result.returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
