"""The commands that answer a user's questions, run as a user runs them (`python -m bootstrap ...`
in a subprocess, the default profile: the simulated exchange, no keys): runs, status on a profile
that could not trade, trade (fills booked, its own view, dry run, a short balance), cancel, stop;
and the console lines a person reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal

from .conftest import HANG_GUARD_S, BotProcess, Cli

NO_GRID_AT_THIS_PRICE = {"GRID__LOWER": "31000", "GRID__UPPER": "32000"}  # the market starts at 30000


async def a_stopped_grid(cli: Cli) -> str:
    """Run the default profile until its grid is laid, stop it (Ctrl-C); its run id."""
    async with cli.bot("run") as bot:
        started = await bot.until(lambda e: e["event"] == "grid started")
        assert await bot.stop() == 0, bot.tail()
    return str(started["run_id"])


async def test_runs_lists_the_grid_runs_newest_first_with_their_status_fills_and_pnl(cli: Cli) -> None:
    first = await a_stopped_grid(cli)
    changed = {"GRID__LEVELS": "12"}  # another grid: a second run
    async with cli.bot("run", extra_env=changed) as bot:
        second = str((await bot.until(lambda e: e["event"] == "grid started"))["run_id"])
        assert await bot.stop() == 0
    code, out, err = await cli.arun("runs", "--json")
    assert code == 0, err
    runs = json.loads(out)
    assert [r["run_id"] for r in runs] == [second, first]
    assert [r["status"] for r in runs] == ["stopped", "stopped"]  # the first was closed by the second
    assert all(r["fills"] >= 1 and Decimal(r["realized_pnl"]) >= 0 and r["stopped_at"] for r in runs)
    code, out, _ = await cli.arun("status", "--json", "--run-id", second[:12])
    status = json.loads(out)
    assert runs[0]["fills"] == status["fills"] and runs[0]["realized_pnl"] == status["realized_pnl"]

    code, out, _ = await cli.arun("runs", "--limit", "1")
    header, row = out.splitlines()
    assert header.split()[:6] == ["RUN", "SYMBOL", "VENUE", "STATUS", "FILLS", "REALIZED"]
    assert row.split()[:4] == [second[:12], "BTC/USDT", "simulated", "stopped"]


async def test_status_and_runs_need_no_keys_and_no_valid_grid(cli: Cli) -> None:
    run_id = await a_stopped_grid(cli)
    cannot_trade = {
        "EXCHANGE__KIND": "binance",  # and no API key
        "GRID__LOWER": "40000",
        "GRID__UPPER": "30000",  # an inverted grid
    }
    status = await cli.astatus(extra_env=cannot_trade)
    assert status["run"]["run_id"] == run_id
    code, out, err = await cli.arun("runs", extra_env=cannot_trade)
    assert code == 0 and run_id[:12] in out, err
    code, _, err = await cli.arun("run", extra_env=cannot_trade)  # trading still refuses it
    assert code == 2 and err.startswith("error: GRID__UPPER: "), err


async def test_trade_books_its_fills_in_its_own_view_and_leaves_the_grid_in_status(cli: Cli) -> None:
    run_id = await a_stopped_grid(cli)
    code, out, err = await cli.arun("trade", "--side", "buy", "--amount", "0.001", "--json")
    assert code == 0, err
    placed = json.loads(out)
    assert placed["status"] == "filled" and placed["fills_booked"] == len(placed["fills"]) >= 1
    assert sum(Decimal(f["amount"]) for f in placed["fills"]) == Decimal("0.001")
    assert (await cli.astatus())["run"]["run_id"] == run_id  # the grid, not the trade
    code, out, err = await cli.arun("status", "--manual", "--json")
    assert code == 0, err
    [manual] = json.loads(out)
    assert (manual["client_order_id"], manual["status"], manual["filled"]) == (
        placed["client_order_id"],
        "filled",
        "0.001",
    )
    assert manual["fills"] == placed["fills_booked"] and manual["average_price"] == placed["average_price"]
    assert manual["fees"] == {placed["fee_asset"]: placed["fee"]}
    code, out, _ = await cli.arun("status", "--manual")
    assert placed["client_order_id"] in out and "filled 0.001 at" in out


async def test_a_dry_run_checks_the_order_and_sends_nothing(cli: Cli) -> None:
    limit = ("--type", "limit", "--price", "29000.004")
    code, out, err = await cli.arun(
        "trade", "--side", "buy", "--amount", "0.0012345", *limit, "--dry-run", "--json"
    )
    assert code == 0, err
    plan = json.loads(out)
    assert (plan["dry_run"], plan["amount"], plan["price"]) == (True, "0.00123", "29000")  # snapped, as sent
    assert (plan["needs"], plan["available"]) == ("35.67 USDT", "10000 USDT")
    code, out, _ = await cli.arun("trade", "--side", "buy", "--amount", "0.0012345", *limit, "--dry-run")
    assert out.startswith(
        "Dry run: the order passes the market's filters and the balance check; nothing was sent."
    )
    assert json.loads((await cli.arun("status", "--manual", "--json"))[1]) == []  # nothing was booked
    code, out, _ = await cli.arun(
        "trade", "--side", "buy", "--amount", "0.0012345", *limit, "--dry-run", "--json"
    )
    assert json.loads(out)["available"] == "10000 USDT"  # nothing was spent or locked
    code, _, err = await cli.arun("trade", "--side", "buy", "--amount", "0.0001", *limit, "--dry-run")
    assert code == 1 and err.startswith("error: order not sent: NOTIONAL: "), err


async def test_a_trade_the_balance_cannot_pay_says_how_much_is_free_and_nothing_else(cli: Cli) -> None:
    limit = ("--type", "limit", "--price", "30000")
    code, out, err = await cli.arun("trade", "--side", "buy", "--amount", "5", *limit)  # 10000 USDT held
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "error: order not sent: BALANCE: the order needs 150000 USDT, the account has 10000 USDT free"
    ]


async def test_cancel_takes_a_client_or_exchange_order_id_and_books_the_cancel(cli: Cli) -> None:
    ids = []
    for price in ("20000", "21000"):
        code, out, err = await cli.arun(
            "trade", "--side", "buy", "--amount", "0.001", "--type", "limit", "--price", price, "--json"
        )
        assert code == 0, err
        ids.append(json.loads(out))
    code, out, err = await cli.arun("cancel", ids[0]["client_order_id"], "--json")
    assert code == 0 and json.loads(out)["status"] == "canceled", err
    code, out, err = await cli.arun("cancel", ids[1]["order_id"], "--json")  # the exchange's id
    assert code == 0 and json.loads(out)["client_order_id"] == ids[1]["client_order_id"], err
    manual = json.loads((await cli.arun("status", "--manual", "--json"))[1])
    assert {m["client_order_id"]: m["status"] for m in manual} == {
        ids[0]["client_order_id"]: "canceled",
        ids[1]["client_order_id"]: "canceled",
    }
    code, _, err = await cli.arun("cancel", ids[0]["client_order_id"])
    assert code == 1 and err == f"error: {ids[0]['client_order_id']} is already canceled: nothing to cancel\n"


async def test_cancel_refuses_one_grid_order(cli: Cli) -> None:
    await a_stopped_grid(cli)
    order = (await cli.astatus())["open_orders"][0]["client_order_id"]
    code, _, err = await cli.arun("cancel", order)
    assert code == 1 and "stop --cancel-orders" in err, err
    assert order in [o["client_order_id"] for o in (await cli.astatus())["open_orders"]]


async def test_stop_stops_the_running_bot_and_with_cancel_orders_closes_its_grid(cli: Cli) -> None:
    async with cli.bot("run") as bot:
        await bot.until(lambda e: e["event"] == "grid started")
        code, out, err = await cli.arun("stop")
        assert code == 0, err
        assert f"Asked process {bot.proc.pid} to stop (SIGTERM)" in out
        assert await bot.proc.wait() == 0
    status = await cli.astatus()
    assert status["run"]["status"] == "stopped" and len(status["open_orders"]) == 15

    async with cli.bot("run") as bot:
        await bot.until(lambda e: e["event"] == "resuming grid")
        code, out, err = await cli.arun("stop", "--cancel-orders")
        assert code == 0, err
        assert await bot.proc.wait() == 0
        assert "grid closed: cancelling its orders" in bot.names()
    status = await cli.astatus()
    assert (status["run"]["status"], status["run"]["stop_reason"]) == (
        "halted",
        "closed with `stop --cancel-orders`",
    )
    assert status["open_orders"] == []


async def test_cancelling_a_stopped_grids_orders_asks_for_yes(cli: Cli) -> None:
    run_id = await a_stopped_grid(cli)
    code, _, err = await cli.arun("stop", "--cancel-orders")
    assert code == 2 and err.startswith(f"error: run {run_id[:12]} is stopped and its 15 orders rest"), err
    assert len((await cli.astatus())["open_orders"]) == 15  # untouched
    code, out, err = await cli.arun("stop", "--cancel-orders", "--yes")
    assert code == 0, err
    assert (
        out
        == f"Run {run_id[:12]} is halted: closed with `stop --cancel-orders`; 0 open order(s) in the books.\n"
    )
    # the exchange agrees: a new grid starts, and nothing of the old one rests beside it
    async with cli.bot("run") as bot:
        new = await bot.until(lambda e: e["event"] == "grid started")
        assert await bot.stop() == 0
    assert new["run_id"] != run_id


async def test_console_lines_fit_120_columns_and_name_the_run_short(cli: Cli) -> None:
    async with cli.bot("run", extra_env={"LOG__FORMAT": "console"}) as bot:
        await until_line(bot, lambda line: " fill " in line)
        assert await bot.stop() == 0
    lines = [line for line in bot.other_lines if line]
    assert all(len(line) <= 120 for line in lines), "\n".join(lines)
    starting = [line for line in lines if "bot starting" in line]
    assert len(starting) == 1 and "symbol=BTC/USDT" in starting[0] and "exchange=simulated" in starting[0]
    assert sum("BTC/USDT" in line for line in lines) == 1
    run_short = (await cli.astatus())["run"]["run_id"][:12]
    fills = [line for line in lines if " fill " in line]
    assert fills and all(f"gb-{run_short}-" in line for line in fills)
    stopped = next(line for line in lines if "grid stopped" in line)
    assert stopped.split()[1] == run_short


async def until_line(bot: BotProcess, predicate: Callable[[str], bool]) -> None:
    """Until a console line (not JSON) satisfies `predicate`; the hang guard only turns a hang into a failure."""

    async def scan() -> None:
        while not any(predicate(line) for line in bot.other_lines):
            if bot._reader.done():
                raise AssertionError(f"the bot exited first; last output:{bot.tail()}")
            bot._changed.clear()
            await bot._changed.wait()

    await asyncio.wait_for(scan(), HANG_GUARD_S)


def test_a_start_that_fails_prints_its_error_line_alone(cli: Cli) -> None:
    done = cli.run("run", extra_env=NO_GRID_AT_THIS_PRICE)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: GRID__LOWER: the market price 30000.00 is outside the grid [31000.00, 32000.00]; "
        "move GRID__LOWER/GRID__UPPER around it"
    ]
