"""`python -m bootstrap backtest` as a user runs it, and the promise that it is the same engine as
the default profile: a replay of the same candles on the default profile gives the same fills."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import sqlite3
import struct
import subprocess
import sys
import termios
import zipfile
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from .conftest import PROJECT, Cli

DATA = PROJECT / "tests" / "data" / "BTCUSDT-1m.json"
GRID = {
    "GRID__LOWER": "20000",
    "GRID__UPPER": "56000",
    "GRID__LEVELS": "37",
    "GRID__INVESTMENT": "10000",
    "RISK__MAX_OPEN_ORDERS": "50",
}
# A tight grid and a jumpy market state: buys held in panic, owed counter-orders, crossings.
BUSY_GRID = {
    "GRID__LOWER": "22000",
    "GRID__UPPER": "30000",
    "GRID__LEVELS": "41",
    "GRID__INVESTMENT": "10000",
    "RISK__VOLATILE_RANGE": "0.01",
    "RISK__PANIC_RANGE": "0.015",
}


def first_candles(path: Path, count: int) -> Path:
    rows = json.loads(DATA.read_text())[:count]
    path.write_text(json.dumps(rows))
    return path


def as_binance_csv(rows: list[list[Any]], *, micro: bool = False) -> str:
    """Rows as Binance's published kline files print them (12 columns, 8 decimals, no header)."""
    lines = []
    for open_ms, o, h, low, c, v in rows:
        t = open_ms * 1000 if micro else open_ms
        close_t = t + (59_999_999 if micro else 59_999)
        prices = ",".join(f"{Decimal(str(x)):.8f}" for x in (o, h, low, c))
        lines.append(f"{t},{prices},{Decimal(str(v)):.8f},{close_t},0.0,10,0.0,0.0,0")
    return "\n".join(lines) + "\n"


def report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def fills_in(database: Path) -> list[tuple[str, Decimal, Decimal, Decimal, str]]:
    rows = sqlite3.connect(database).execute(
        "SELECT side, price, amount, fee, fee_asset FROM fills ORDER BY CAST(trade_id AS INTEGER)"
    )
    return [(side, Decimal(p), Decimal(a), Decimal(f), asset) for side, p, a, f, asset in rows]


# ---------------------------------------------------------------------------- one engine
async def test_a_backtest_and_a_default_profile_replay_of_the_same_candles_give_the_same_fills(
    cli: Cli,
) -> None:
    candles = first_candles(cli.workdir / "candles.json", 2500)
    replay_env = {
        **BUSY_GRID,
        "SIMULATOR__CANDLES_FILE": str(candles),
        "SIMULATOR__STEP_INTERVAL_S": "0",
        "SIMULATOR__QUOTE_BALANCE": "10000",
    }
    code, _, err = await cli.arun("run", extra_env=replay_env, guard_s=240)
    assert code == 0, err[-2000:]
    assert "order held" in err and "crossed" in err  # the story went through the core's hard cases
    replayed = fills_in(cli.workdir / "var" / "gridbot.sqlite3")
    # The replay ran in seconds, on the data's time: its orders span the candles' days, as its fills do.
    created = [
        datetime.fromisoformat(t)
        for (t,) in sqlite3.connect(cli.workdir / "var" / "gridbot.sqlite3").execute(
            "SELECT created_at FROM orders"
        )
    ]
    assert max(created) - min(created) > timedelta(days=1)
    # Run again, the replay would start from the first candle on top of the first one's books:
    # refused, with nothing traded.
    code, _, err = await cli.arun("run", extra_env=replay_env, guard_s=120)
    assert code == 2
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: SIMULATOR__STATE_FILE: var/simulated-exchange.sqlite3 holds the BTC/USDT book of an "
        "earlier run; a candle replay starts from the file's first candle, so it cannot continue one "
        "(its candles would be traded twice): give the replay a new SIMULATOR__STATE_FILE and "
        "DATABASE__URL, or delete both files"
    ]
    assert fills_in(cli.workdir / "var" / "gridbot.sqlite3") == replayed

    books = cli.workdir / "backtest.sqlite3"
    done = cli.run(
        "backtest",
        "--data",
        str(candles),
        "--db",
        f"sqlite+aiosqlite:///{books}",
        "--json",
        extra_env=BUSY_GRID,
    )
    backtested = report(done)
    assert fills_in(books) == replayed
    assert backtested["fills"] == len(replayed) > 200


# ---------------------------------------------------------------------------- what a user sees
def test_with_no_data_a_seeded_synthetic_year_is_backtested_offline_and_deterministically(cli: Cli) -> None:
    first = cli.run("backtest", "--json")
    again = cli.run("backtest", "--json")
    result = report(first)
    assert first.stdout == again.stdout
    assert first.stderr == ""  # no log line, no progress bar when stderr is not a terminal
    assert result["candles"] == 525_600
    assert result["source"].startswith("synthetic")
    for key in ("grid_fills", "fills", "completed_cycles"):
        assert isinstance(result[key], int)
    assert result["fills"] >= result["grid_fills"] >= result["completed_cycles"]
    for key in (
        "realized_pnl",
        "unrealized_pnl",
        "fees_paid",
        "start_equity",
        "final_equity",
        "return_pct",
        "hold_return_pct",
        "max_drawdown",
        "max_drawdown_pct",
        "time_in_grid_pct",
    ):
        assert isinstance(result[key], str)
        Decimal(result[key])
    # The books add up: the final equity is what the start and the PnL say.
    assert Decimal(result["final_equity"]) - Decimal(result["start_equity"]) == Decimal(
        result["realized_pnl"]
    ) + Decimal(result["unrealized_pnl"])


def test_binance_kline_zip_and_csv_and_json_give_one_result(cli: Cli) -> None:
    rows = json.loads(DATA.read_text())[:3000]
    (cli.workdir / "candles.json").write_text(json.dumps(rows))
    (cli.workdir / "BTCUSDT-1m-2017-11.csv").write_text(as_binance_csv(rows, micro=True))
    with zipfile.ZipFile(cli.workdir / "BTCUSDT-1m-2017-11.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-1m-2017-11.csv", as_binance_csv(rows))
    results = [
        report(cli.run("backtest", "--data", name, "--json", extra_env=GRID))
        for name in ("candles.json", "BTCUSDT-1m-2017-11.csv", "BTCUSDT-1m-2017-11.zip")
    ]
    for result in results:
        result.pop("source")
    assert results[0] == results[1] == results[2]
    assert results[0]["data_issues"]["gaps"] > 0  # the file has minutes missing: reported, not hidden


def test_a_malformed_file_is_one_line_naming_the_file_and_the_row(cli: Cli) -> None:
    rows = json.loads(DATA.read_text())[:20]
    text = as_binance_csv(rows).splitlines()
    text[6] = text[6].replace(text[6].split(",")[2], "abc", 1)  # the 7th row's high
    (cli.workdir / "bad.csv").write_text("\n".join(text) + "\n")
    done = cli.run("backtest", "--data", "bad.csv", extra_env=GRID)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and "bad.csv" in lines[0] and "row 7" in lines[0]

    missing = cli.run("backtest", "--data", "nowhere.csv")
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "nowhere.csv" in missing.stderr


def test_from_and_to_cut_the_period_and_a_grid_that_misses_the_price_is_refused(cli: Cli) -> None:
    result = report(
        cli.run(
            "backtest",
            "--data",
            str(DATA),
            "--from",
            "2017-11-06",
            "--to",
            "2017-11-07",
            "--json",
            extra_env=GRID,
        )
    )
    assert result["period_start"].startswith("2017-11-06T00:00")
    assert result["period_end"] <= "2017-11-08T00:00:00+00:00"
    done = cli.run("backtest", "--data", str(DATA), extra_env={**GRID, "GRID__LOWER": "40000"})
    assert done.returncode == 2
    assert done.stderr.startswith("error: GRID__LOWER: the market price") and done.stderr.count("\n") == 1
    bad_date = cli.run("backtest", "--from", "yesterday")
    assert bad_date.returncode == 2 and "--from" in bad_date.stderr


def test_plot_draws_a_picture_and_a_bad_name_is_refused_before_the_run(cli: Cli) -> None:
    picture = cli.workdir / "run.png"
    done = cli.run("backtest", "--data", str(DATA), "--plot", str(picture), extra_env=GRID)
    assert done.returncode == 0, done.stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"picture           {picture}" in done.stdout
    refused = cli.run("backtest", "--plot", "run.svg")
    assert refused.returncode == 2 and "--plot" in refused.stderr and ".png or .html" in refused.stderr


def test_db_keeps_the_books_and_status_shows_the_run(cli: Cli) -> None:
    books = cli.workdir / "bt.sqlite3"
    url = f"sqlite+aiosqlite:///{books}"
    done = cli.run("backtest", "--data", str(DATA), "--db", url, extra_env=GRID)
    assert done.returncode == 0, done.stderr
    run_id = next(line.split()[2] for line in done.stdout.splitlines() if line.startswith("books"))
    shown = cli.run("status", "--json", "--run-id", run_id[:12], extra_env={"DATABASE__URL": url})
    status = json.loads(shown.stdout)
    assert status["run"]["run_id"] == run_id
    assert status["run"]["exchange"] == "backtest"
    fills_line = next(line for line in done.stdout.splitlines() if line.startswith("grid fills"))
    assert f"(all fills {status['fills']:,})" in fills_line


def test_a_long_run_on_a_terminal_shows_a_progress_bar(cli: Cli) -> None:
    """--plain steps all 54,724 price points of the real candles: seconds, so the bar shows."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    proc = subprocess.Popen(
        [sys.executable, "-m", "bootstrap", "backtest", "--data", str(DATA), "--plain"],
        cwd=cli.workdir,
        env={**cli.env, **GRID},
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""
    while True:  # read the terminal while the run draws on it
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    out, _ = proc.communicate(timeout=120)
    os.close(controller)
    assert proc.returncode == 0
    assert b"candles/s]" in seen and b"13.7k" in seen
    assert b"grid fills" in out  # the report itself goes to stdout, untouched by the bar
