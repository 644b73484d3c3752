"""`backtest --sweep KEY=V1,V2 ...`: every combination of the values, each a backtest, run in
parallel local processes or on a Dask distributed cluster; a table sorted by return.

    python -m bootstrap backtest --sweep GRID__LEVELS=10,20,50 --sweep GRID__SPACING=arithmetic,geometric

How a job runs: it is a `BacktestJob` (the profile, the settings it overrides, the data and the
period), sent to a worker that loads the settings and the candles itself (`backtest_job`). Each
worker process keeps the candles it loaded, so a sweep reads the file once per worker, not once
per job. The settings the command was started with (the profile, the environment and `.env`)
travel with each job for the sections a backtest reads (grid, risk, trading, simulator,
backtest), so a cluster's workers run the grid the user sees, whatever their own environment.

With `--cluster ADDRESS` (the optional extra: `pip install 'gridbot[cluster]'`), the workers must
have gridbot installed, and the profile and the `--data` file at the same absolute paths as here
(a shared file system); the synthetic year needs no file.

Exit codes (the CLI's): 0 when at least one job gave a report (jobs whose settings do not work
show their error in their row); 1 when every job failed, each with its own error, or the cluster
cannot be reached; 2 for a usage error (a malformed --sweep, an unknown key, --plot, --db or
--plain with --sweep, a candle file that cannot be read) and when every job failed with one and
the same error (it does not depend on the swept values, so it is the sweep's: that one line).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootstrap.backtest import BacktestJob, backtest_job, load_columns, parse_when
from bootstrap.settings import Settings, load_settings
from domain.errors import ConfigurationError, DomainError

if TYPE_CHECKING:
    from adapters.backtest.columns import CandleColumns

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2

# The settings sections a backtest reads; their values travel with each job.
FORWARDED_SECTIONS = ("grid", "risk", "trading", "simulator", "backtest")
_NOT_FORWARDED = {("simulator", "candles_file"), ("simulator", "state_file")}  # files, not the backtest's
_CACHE_SIZE = 2  # candle sets a worker keeps (a sweep uses one; a long-lived Dask worker may see more)
_CENT = Decimal("0.01")
_CONNECT_TIMEOUT_S = 10


# --------------------------------------------------------------------------- the specs
def parse_specs(specs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """["GRID__LEVELS=10,20", ...] -> [("GRID__LEVELS", ["10", "20"]), ...], keys upper-cased."""
    parsed: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for spec in specs:
        key, sep, values_text = spec.partition("=")
        key = key.strip().upper()
        if not sep or not key:
            raise ConfigurationError(
                "--sweep", f"expected KEY=V1,V2,... (e.g. GRID__LEVELS=10,20), got {spec!r}"
            )
        values = [value.strip() for value in values_text.split(",")]
        if any(not value for value in values):
            raise ConfigurationError("--sweep", f"{key}: empty value in {spec!r}")
        if len(set(values)) != len(values):
            raise ConfigurationError("--sweep", f"{key}: a value is given twice in {spec!r}")
        if key in seen:
            raise ConfigurationError("--sweep", f"{key} is swept twice; give all its values in one --sweep")
        seen.add(key)
        parsed.append((key, values))
    return parsed


def check_keys(profile: Path, specs: Sequence[tuple[str, list[str]]]) -> None:
    """An unknown key stops the sweep before any job runs. A value that does not work is left to
    its job (its row shows the error; the other jobs still run)."""
    for key, values in specs:
        try:
            load_settings(profile, overrides={key: values[0]})
        except ConfigurationError as exc:
            if exc.problem.startswith("is not a known setting"):
                raise


def forwarded_settings(settings: Settings) -> dict[str, str]:
    """The values of the sections a backtest reads, as overrides ({"GRID__LEVELS": "16", ...})."""
    found: dict[str, str] = {}
    for section in FORWARDED_SECTIONS:
        values = getattr(settings, section).model_dump(mode="json")
        for name, value in values.items():
            if value is None or (section, name) in _NOT_FORWARDED:
                continue
            text = json.dumps(value) if isinstance(value, bool) else str(value)
            found[f"{section.upper()}__{name.upper()}"] = text
    return found


def make_jobs(
    profile: Path,
    base: dict[str, str],
    specs: Sequence[tuple[str, list[str]]],
    *,
    data: str | None,
    start_ms: int | None,
    end_ms: int | None,
    absolute: bool = False,
) -> list[BacktestJob]:
    """One job per combination, in the order of the specs (the last key varies fastest). With
    `absolute`, the profile and data paths are made absolute (for workers elsewhere: a cluster)."""
    keys = [key for key, _ in specs]
    jobs = []
    for combination in itertools.product(*(values for _, values in specs)):
        overrides = {**base, **dict(zip(keys, combination, strict=True))}
        jobs.append(
            BacktestJob(
                profile=str(profile.resolve() if absolute else profile),
                overrides=tuple(sorted(overrides.items())),
                data=None if data is None else str(Path(data).resolve() if absolute else data),
                start_ms=start_ms,
                end_ms=end_ms,
            )
        )
    return jobs


# --------------------------------------------------------------------------- in a worker
_columns_cache: OrderedDict[tuple[object, ...], CandleColumns] = OrderedDict()


def cached_columns(
    settings: Settings, data: str | None, start_ms: int | None, end_ms: int | None
) -> CandleColumns:
    """`load_columns`, remembered per process: keyed by the file (and its size and change time,
    as a Dask worker outlives a sweep) or, for the synthetic year, by its seed and start price."""
    if data is None:
        key: tuple[object, ...] = (None, settings.simulator.seed, str(settings.simulator.start_price))
    else:
        try:
            stat = os.stat(data)
            key = (data, stat.st_size, stat.st_mtime_ns)
        except OSError:  # load_columns says what is wrong with it
            return load_columns(settings, data, start_ms, end_ms)
    key = (*key, start_ms, end_ms)
    columns = _columns_cache.get(key)
    if columns is None:
        columns = load_columns(settings, data, start_ms, end_ms)
        _columns_cache[key] = columns
        while len(_columns_cache) > _CACHE_SIZE:
            _columns_cache.popitem(last=False)
    else:
        _columns_cache.move_to_end(key)
    return columns


def run_job(job: BacktestJob) -> dict[str, Any]:
    """One job in a worker: `backtest_job` with the candles cached. Any failure of the grid or the
    engine (a `DomainError`) is the job's error, not the sweep's; a candle file that cannot be
    read (`DataError`) is the sweep's and stops it."""
    try:
        return backtest_job(job, load=cached_columns)
    except DomainError as exc:
        return {"settings": dict(job.overrides), "error": str(exc)}


# --------------------------------------------------------------------------- the command
def sweep_command(profile: Path, args: argparse.Namespace) -> int:
    """`backtest --sweep ...`: see the module's docstring for what it does and its exit codes."""
    for flag, given in (("--plot", args.plot), ("--db", args.db), ("--plain", args.plain)):
        if given:
            raise ConfigurationError(flag, "applies to a single backtest, not to a --sweep")
    specs = parse_specs(args.sweep)
    start_ms = None if args.start is None else parse_when(args.start, end=False)
    end_ms = None if args.end is None else parse_when(args.end, end=True)
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise ConfigurationError("--to", "must be after --from")
    check_keys(profile, specs)
    if args.data is not None and args.cluster is None and not Path(args.data).is_file():
        load_columns(
            load_settings(profile), args.data, None, None
        )  # says what is wrong, before any worker starts
    base = forwarded_settings(load_settings(profile))
    jobs = make_jobs(
        profile,
        base,
        specs,
        data=args.data,
        start_ms=start_ms,
        end_ms=end_ms,
        absolute=args.cluster is not None,
    )
    show_progress = not args.json and sys.stderr.isatty()

    began = time.perf_counter()
    if args.cluster is not None:
        ran = _on_cluster(args.cluster, jobs, show_progress=show_progress)
        if ran is None:
            return EXIT_FAILURE
        results, where = ran
    else:
        workers = min(args.workers or os.cpu_count() or 1, len(jobs))
        results = _on_processes(jobs, workers, show_progress=show_progress)
        where = f"{workers} local process{'es' if workers != 1 else ''}"
    seconds = time.perf_counter() - began

    keys = [key for key, _ in specs]
    for result in results:  # only the swept keys: the rest is the same in every job
        result["settings"] = {key: result["settings"][key] for key in keys}
    ordered = sort_results(results)
    errors = {result["error"] for result in ordered if "error" in result}
    if len(errors) == 1 and all("error" in result for result in ordered):
        sys.stderr.write(f"error: {errors.pop()} (in every job of the sweep)\n")
        return EXIT_CONFIG
    if args.json:
        sys.stdout.write(json.dumps(ordered, indent=2) + "\n")
    else:
        lines = table(ordered, keys)
        failed = sum("error" in result for result in ordered)
        lines.append(
            f"{len(ordered)} backtest{'s' if len(ordered) != 1 else ''}"
            f"{f' ({failed} failed)' if failed else ''} in {seconds:.1f} s on {where}"
        )
        sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK if any("error" not in result for result in ordered) else EXIT_FAILURE


def _progress(total: int, *, show: bool) -> Callable[[], None]:
    """A tick per finished job: a bar on stderr, or nothing."""
    if not show:
        return lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit=" backtests", file=sys.stderr, leave=False)

    def tick() -> None:
        bar.update(1)
        if bar.n >= total:
            bar.close()

    return tick


def _on_processes(jobs: list[BacktestJob], workers: int, *, show_progress: bool) -> list[dict[str, Any]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a fresh interpreter per worker, safe whatever threads this process runs.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    try:
        futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        tick = _progress(len(jobs), show=show_progress)
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            tick()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [result for result in results if result is not None]


def _on_cluster(
    address: str, jobs: list[BacktestJob], *, show_progress: bool
) -> tuple[list[dict[str, Any]], str] | None:
    """The jobs on the Dask scheduler at `address`; None (the reason on stderr) when it cannot be
    reached."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ConfigurationError(
            "--cluster", "needs Dask distributed: pip install 'gridbot[cluster]'"
        ) from None
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:  # checked here: a Client given a bad address fails only once it is garbage-collected
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location, default_port=8786)
    except ValueError as exc:
        raise ConfigurationError("--cluster", f"{address!r}: {exc}") from None
    try:
        client = Client(address, timeout=_CONNECT_TIMEOUT_S, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as exc:  # refused, unknown host, timed out
        sys.stderr.write(f"error: --cluster: cannot reach the Dask scheduler at {address}: {exc}\n")
        return None
    try:
        workers = len(client.scheduler_info().get("workers", {}))
        futures = client.map(run_job, jobs, pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        results: list[dict[str, Any] | None] = [None] * len(jobs)
        tick = _progress(len(jobs), show=show_progress)
        for future in as_completed(futures, loop=client.loop):  # type: ignore[no-untyped-call]
            results[index[future.key]] = future.result()
            tick()
    finally:
        client.close()  # type: ignore[no-untyped-call]
    where = f"the Dask cluster at {address} ({workers} worker{'s' if workers != 1 else ''})"
    return [result for result in results if result is not None], where


# --------------------------------------------------------------------------- the output
def _return_of(result: dict[str, Any]) -> Decimal:
    try:
        return Decimal(str(result["return_pct"]))
    except (KeyError, InvalidOperation):
        return Decimal("-Infinity")


def sort_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best return first; jobs that failed last, in the order of the jobs (the sort is stable)."""
    return sorted(results, key=lambda result: ("error" in result, -_return_of(result)))


def _cents(text: str) -> str:
    return f"{Decimal(text).quantize(_CENT):,}"


def table(results: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """One row per job: the swept values, then return, holding, realized PnL, grid fills,
    completed cycles and max drawdown; a failed job's row shows its error instead."""
    figures = ["return %", "holding %", "realized PnL", "grid fills", "cycles", "max drawdown %"]
    rows: list[list[str]] = []
    failures: list[tuple[list[str], str]] = []
    for result in results:
        values = [str(result["settings"][key]) for key in keys]
        if "error" in result:
            failures.append((values, str(result["error"])))
            continue
        rows.append(
            [
                *values,
                str(result["return_pct"]),
                str(result["hold_return_pct"]),
                _cents(str(result["realized_pnl"])),
                f"{result['grid_fills']:,}",
                f"{result['completed_cycles']:,}",
                str(result["max_drawdown_pct"]),
            ]
        )
    header = [*keys, *figures]
    widths = [len(name) for name in header]
    for row in [*rows, *(values for values, _ in failures)]:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    n = len(keys)

    def line(cells: Sequence[str]) -> str:
        parts = [cell.ljust(widths[i]) if i < n else cell.rjust(widths[i]) for i, cell in enumerate(cells)]
        return "  ".join(parts).rstrip()

    lines = [line(header)]
    lines.extend(line(row) for row in rows)
    for values, error in failures:
        lines.append(
            "  ".join([*(value.ljust(widths[i]) for i, value in enumerate(values)), f"error: {error}"])
        )
    return lines
