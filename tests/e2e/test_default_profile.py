"""`make run` as a user sees it: the default profile trades on the simulated exchange and books it all."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal

from .conftest import Cli, Event


async def test_run_books_orders_and_fills_and_status_reports_them(cli: Cli) -> None:
    async with cli.bot("run") as bot:
        await bot.until(lambda e: e["event"] == "grid started")
        fills = 0

        def second_fill(event: Event) -> bool:
            nonlocal fills
            fills += event["event"] == "fill"
            return fills == 2

        await bot.until(second_fill)  # the default market moves; the test waits for it, not a clock
        # Stop between decisions, not in the middle of one: once a fill's counter-order is placed.
        await bot.until(lambda e: e["event"] == "order placed")
        code = await bot.stop()
    assert code == 0, bot.tail()
    names = bot.names()
    assert names.count("fill") >= 2
    assert names[-1] == "simulated exchange stopped" or "grid stopped" in names

    status = await cli.astatus()
    assert status["run"]["status"] == "stopped"
    assert status["fills"] >= 2
    assert len(status["open_orders"]) == 15  # 16 levels, one empty
    for order in status["open_orders"]:
        assert set(order) >= {"client_order_id", "side", "price", "amount", "status"}
        assert order["status"] == "open"
        Decimal(order["price"]), Decimal(order["amount"])  # exact decimal strings

    # realized PnL is what the booked sells earned over their cost, to the last digit
    db = sqlite3.connect(cli.workdir / "var" / "gridbot.sqlite3")
    rows = db.execute(
        "SELECT realized_pnl, side FROM fills WHERE run_id = ?", (status["run"]["run_id"],)
    ).fetchall()
    assert len(rows) == status["fills"]
    assert sum((Decimal(pnl) for pnl, _ in rows), Decimal(0)) == Decimal(status["realized_pnl"])
    assert all(Decimal(pnl) == 0 for pnl, side in rows if side == "buy")
    sells_pnl = [Decimal(pnl) for pnl, side in rows if side == "sell"]
    assert all(p > 0 for p in sells_pnl), "a grid sell one level up earns more than the fees"
    assert status["completed_cycles"] == len(sells_pnl)

    # the position: base bought net of base fees minus base sold, valued at the last known price
    trades = db.execute(
        "SELECT side, amount, fee, fee_asset FROM fills WHERE run_id = ?", (status["run"]["run_id"],)
    ).fetchall()
    base = sum(
        (
            Decimal(amount) - (Decimal(fee) if asset == "BTC" else 0) if side == "buy" else -Decimal(amount)
            for side, amount, fee, asset in trades
        ),
        Decimal(0),
    )
    assert Decimal(status["base_position"]) == base > 0
    last, cost = Decimal(status["last_price"]), Decimal(status["position_cost"])
    assert Decimal(status["unrealized_pnl"]) == base * last - cost
    assert Decimal(status["equity_change"]) == Decimal(status["realized_pnl"]) + Decimal(
        status["unrealized_pnl"]
    )
    text = cli.run("status")
    assert text.returncode == 0, text.stderr
    labels = [line[:11] for line in text.stdout.splitlines()]
    assert {"Position   ", "Last price ", "Unrealized ", "Equity     "} <= set(labels)


async def test_restart_resumes_the_grid_without_placing_it_again(cli: Cli) -> None:
    async with cli.bot("run") as first:
        started = await first.until(lambda e: e["event"] == "grid started")
        # the ladder, plus the market buy of the sells' base when there are sells
        ladder = started["buys"] + started["sells"] + (1 if started["sells"] else 0)
        placed = 0

        def ladder_placed(event: Event) -> bool:
            nonlocal placed
            placed += event["event"] == "order placed"
            return placed == ladder

        await first.until(ladder_placed)
        code = await first.stop()
    assert code == 0, first.tail()
    before = await cli.astatus()
    async with cli.bot("run") as second:
        await second.until(lambda e: e["event"] == "reconciled")  # the resume is done
        code = await second.stop()
    assert code == 0, second.tail()
    names = second.names()
    assert "resuming grid" in names
    assert "grid started" not in names
    after = await cli.astatus()
    assert after["run"]["run_id"] == before["run"]["run_id"]
    assert after["fills"] >= before["fills"]
    ids = [o["client_order_id"] for o in after["open_orders"]]
    assert len(ids) == len(set(ids)) == 15


def test_bad_setting_exits_2_with_one_line_naming_the_key(cli: Cli) -> None:
    done = cli.run("run", "--duration", "1", extra_env={"GRID__LEVELS": "1"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: GRID__LEVELS: Input should be greater than or equal to 2 (got '1')"
    ]
    assert "Traceback" not in done.stderr


def test_secrets_never_reach_output(cli: Cli) -> None:
    secret_env = {
        "EXCHANGE__KIND": "binance",
        "EXCHANGE__API_KEY": "k3y-value-never-shown",
        "EXCHANGE__API_SECRET": "",
        "EXCHANGE__TESTNET": "false",
    }
    done = cli.run("run", "--duration", "1", extra_env=secret_env)
    assert done.returncode == 2
    assert "EXCHANGE__API_SECRET" in done.stderr
    assert "k3y-value-never-shown" not in done.stderr + done.stdout


def test_status_without_any_run_says_so(cli: Cli) -> None:
    done = cli.run("status")
    assert done.returncode == 0
    assert "No run recorded yet" in done.stdout


def test_default_profile_never_imports_ccxt(cli: Cli) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bootstrap", "run", "--duration", "0.3"],
        cwd=cli.workdir,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "sqlalchemy" in imported  # the measurement works
    assert "ccxt" not in imported


async def test_status_says_which_bot_runs_the_grid_and_when_none_does_after_a_kill(cli: Cli) -> None:
    async with cli.bot("run") as bot:
        await bot.until(lambda e: e["event"] == "grid started")
        running = await cli.astatus()
        assert running["run"]["status"] == "running"
        assert running["run"]["held_by"]["pid"] == bot.proc.pid
        code, out, _ = await cli.arun("status")
        assert code == 0 and f"Status     running (process {bot.proc.pid} on " in out
        bot.proc.kill()  # kill -9: the run stays booked as running
        await bot.proc.wait()
    left = await cli.astatus()
    assert left["run"]["status"] == "running" and left["run"]["held_by"] is None
    code, out, _ = await cli.arun("status")
    assert (
        "Status     running (but no bot runs it now: the last one was killed or crashed; `run` resumes it)"
        in out
    )


async def test_status_takes_the_short_run_id_of_the_logs_and_says_when_there_is_no_such_run(cli: Cli) -> None:
    async with cli.bot("run") as bot:
        started = await bot.until(lambda e: e["event"] == "grid started")
        assert await bot.stop() == 0
    short = started["run_id"][:12]
    code, out, err = await cli.arun("status", "--json", "--run-id", short)
    assert code == 0, err
    assert json.loads(out)["run"]["run_id"] == started["run_id"]
    code, out, err = await cli.arun("status", "--run-id", "0000nosuchrun")
    assert (code, out) == (1, "")
    assert err.strip() == "error: no run with id '0000nosuchrun' (or starting with it) in this database"
