"""Start-up cost: `--help` wall time, what `-X importtime` says each command imports, and whether the
default (simulated) profile loads ccxt. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def wall(args: list[str], runs: int, cwd: Path) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def importtime(args: list[str], cwd: Path) -> tuple[int, dict[str, int]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    top: dict[str, int] = {}
    total = 0
    for match in LINE.finditer(done.stderr):
        own, name = int(match.group(1)), match.group(4)
        root = name.split(".")[0]  # each module's own time, summed per package
        top[root] = top.get(root, 0) + own
        total += own
    return total, top


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    work = Path(tempfile.mkdtemp(prefix="gridbot-bench-"))
    shutil.copytree(PROJECT / "config", work / "config")
    os.environ.pop("EXCHANGE__KIND", None)
    try:
        baseline = wall(["-c", "pass"], runs, work)
        helps = wall(["-m", "bootstrap", "--help"], runs, work)
        print(f"python -c pass              median {statistics.median(baseline) * 1000:7.1f} ms")
        print(
            f"python -m bootstrap --help  median {statistics.median(helps) * 1000:7.1f} ms  "
            f"p95 {sorted(helps)[int(0.95 * (runs - 1))] * 1000:7.1f} ms  ({runs} runs)"
        )
        for label, args in (
            ("--help", ["-m", "bootstrap", "--help"]),
            ("run --duration 0.3 (default profile)", ["-m", "bootstrap", "run", "--duration", "0.3"]),
        ):
            total, top = importtime(args, work)
            heaviest = sorted(top.items(), key=lambda kv: kv[1], reverse=True)[:8]
            print(
                f"\n-X importtime, {label}: {total / 1000:.1f} ms of imports in all; heaviest packages (own time):"
            )
            for name, micros in heaviest:
                print(f"  {name:<24} {micros / 1000:8.1f} ms")
            print(f"  ccxt imported: {'YES' if 'ccxt' in top else 'no'}")
        total, top = importtime(["-c", "import ccxt.async_support"], work)
        print(f"\nfor comparison, import ccxt.async_support alone: {top.get('ccxt', total) / 1000:.1f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
