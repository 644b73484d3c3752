"""Starting the bot as a user does: every local mistake is one line naming the setting, exit 2,
before anything is sent to the venue (the loopback server records every request it gets); a
second bot on the same grid is refused; a refused settings change leaves the old grid resting;
a rate limit or a ban at start-up is waited out."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.binance_server import FakeBinance, running_fake_binance

from .conftest import Cli

GRID = {"GRID__LOWER": "28000", "GRID__UPPER": "32000", "GRID__LEVELS": "9", "GRID__INVESTMENT": "500"}
TESTNET = ("--config", "config/testnet.toml")


@pytest.fixture
async def server() -> AsyncIterator[FakeBinance]:
    async with running_fake_binance() as fake:
        yield fake


def env_for(server: FakeBinance, **extra: str) -> dict[str, str]:
    return {
        "EXCHANGE__REST_URL": server.base_url,
        "EXCHANGE__API_KEY": "test-api-key",
        "EXCHANGE__API_SECRET": "test-api-secret",
        "EXCHANGE__POLL_INTERVAL_S": "0.2",
        **GRID,
        **extra,
    }


def the_one_error_line(err: str) -> str:
    """stderr of a refused start: exactly one `error:` line and no traceback."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


async def lay_a_grid_and_stop(cli: Cli, env: dict[str, str]) -> None:
    """Run the testnet profile until its whole grid is placed, then stop it (Ctrl-C)."""
    async with cli.bot(*TESTNET, "run", extra_env=env) as bot:
        await bot.until(lambda e: e["event"] == "grid started")
        await bot.until(lambda e: e["event"] == "order placed" and e.get("grid_level") == 8)
        assert await bot.stop() == 0


def not_a_directory(workdir: Path) -> Path:
    blocker = workdir / "blocker"
    blocker.write_text("a file where a directory should be\n")
    return blocker


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("EXCHANGE__REST_URL", "garbage"),
        ("EXCHANGE__WS_URL", "https://stream.binance.com"),
        ("DATABASE__URL", "garbage"),
        ("DATABASE__URL", "sqlite+aiosqlite:///{blocker}/bot.sqlite3"),
        ("DATABASE__URL", "sqlite+aiosqlite:///{notes}"),
        ("DATABASE__URL", "sqlite+aiosqlite:///:memory:"),
        ("EXCHANGE__API_KEY", ""),
        ("GRID__UPPER", "27000"),
    ],
)
async def test_a_bad_setting_is_one_line_naming_it_and_nothing_reaches_the_venue(
    cli: Cli, server: FakeBinance, key: str, value: str
) -> None:
    notes = cli.workdir / "notes.txt"
    notes.write_text("not a database\n")
    value = value.format(blocker=not_a_directory(cli.workdir), notes=notes)
    code, _, err = await cli.arun(*TESTNET, "run", extra_env=env_for(server, **{key: value}))
    assert code == 2, err
    assert the_one_error_line(err).startswith(f"error: {key}: ")
    assert server.requests == []


async def test_a_database_written_by_another_version_is_refused_before_any_venue_call(
    cli: Cli, server: FakeBinance
) -> None:
    env = env_for(server)
    assert (await cli.arun(*TESTNET, "status", extra_env=env))[0] == 0  # creates the database
    with sqlite3.connect(cli.workdir / "var" / "gridbot-testnet.sqlite3") as db:
        db.execute("UPDATE schema_info SET version = 2")
    code, _, err = await cli.arun(*TESTNET, "run", extra_env=env)
    assert code == 2
    assert "schema version 2" in the_one_error_line(err)
    assert server.requests == []


async def test_a_state_file_that_cannot_be_written_is_refused_at_start(cli: Cli) -> None:
    blocker = not_a_directory(cli.workdir)
    code, _, err = await cli.arun(
        "run", "--duration", "5", extra_env={"SIMULATOR__STATE_FILE": f"{blocker}/exchange.sqlite3"}
    )
    assert code == 2, err
    assert the_one_error_line(err).startswith("error: SIMULATOR__STATE_FILE: ")


async def test_two_bots_started_at_once_on_one_database_exactly_one_runs(
    cli: Cli, server: FakeBinance
) -> None:
    env = env_for(server)
    async with (
        cli.bot(*TESTNET, "run", extra_env=env) as first,
        cli.bot(*TESTNET, "run", extra_env=env) as second,
    ):
        # one of them is refused at once; the other lays its grid
        refused_code = await asyncio.wait_for(
            next(asyncio.as_completed([first.proc.wait(), second.proc.wait()])), timeout=60
        )
        assert refused_code == 2
        runner, refused = (first, second) if second.proc.returncode is not None else (second, first)
        await refused.stop()
        line = the_one_error_line("\n".join(refused.other_lines))
        assert "another bot is running this grid" in line and "since" in line
        await runner.until(lambda e: e["event"] == "grid started")
        assert await runner.stop() == 0
    status = await cli.astatus(*TESTNET, extra_env=env)
    assert status["run"]["status"] == "stopped"
    assert len(status["open_orders"]) == 8  # one grid, laid once
    assert len(server.book("BTC/USDT").engine.open_orders()) == 8


async def test_a_refused_settings_change_leaves_the_old_grid_resting_and_resumable(
    cli: Cli, server: FakeBinance
) -> None:
    env = env_for(server)
    await lay_a_grid_and_stop(cli, env)
    before = await cli.astatus(*TESTNET, extra_env=env)
    resting = {o.client_order_id for o in server.book("BTC/USDT").engine.open_orders()}
    requests_before = len(server.requests)

    code, _, err = await cli.arun(*TESTNET, "run", extra_env={**env, "GRID__INVESTMENT": "100000"})
    assert code == 2
    assert the_one_error_line(err).startswith("error: GRID__INVESTMENT: the grid needs")
    sent = [r for r in server.requests[requests_before:] if r.method != "GET"]
    assert sent == []  # nothing cancelled, nothing placed
    assert {o.client_order_id for o in server.book("BTC/USDT").engine.open_orders()} == resting
    after = await cli.astatus(*TESTNET, extra_env=env)
    assert after["open_orders"] == before["open_orders"]
    assert after["run"]["run_id"] == before["run"]["run_id"]

    async with cli.bot(*TESTNET, "run", extra_env=env) as again:  # the old settings resume it
        resumed = await again.until(lambda e: e["event"] in ("resuming grid", "grid started"))
        assert resumed["event"] == "resuming grid"
        assert resumed["run_id"] == before["run"]["run_id"]
        await again.until(lambda e: e["event"] == "reconciled")
        assert await again.stop() == 0


async def test_a_rate_limit_then_a_ban_at_the_first_request_are_waited_out(
    cli: Cli, server: FakeBinance
) -> None:
    server.fail_next("/api/v3/exchangeInfo", status=429, retry_after=2)
    server.fail_next("/api/v3/exchangeInfo", status=418, retry_after=3)
    async with cli.bot(*TESTNET, "run", extra_env=env_for(server)) as bot:
        await bot.until(lambda e: e["event"] == "grid started")
        assert await bot.stop() == 0
    waits = [e for e in bot.events if "wait_s" in e and e.get("level") == "warning"]
    assert [round(float(e["wait_s"])) for e in waits[:2]] == [2, 3], bot.tail(20)
    times = [r.time_ms for r in server.requests]
    refused = [i for i, r in enumerate(server.requests) if r.status in (418, 429)]
    assert [server.requests[i].status for i in refused] == [429, 418]
    for index, wait_ms in zip(refused, (2000, 3000), strict=True):
        assert times[index + 1] - times[index] >= wait_ms  # nothing was sent while it waited
    assert len(server.book("BTC/USDT").engine.open_orders()) == 8


async def test_ctrl_c_while_a_ban_is_waited_out_stops_the_bot_at_once_with_nothing_sent(
    cli: Cli, server: FakeBinance
) -> None:
    server.fail_next("/api/v3/exchangeInfo", status=418, retry_after=3600)
    async with cli.bot(*TESTNET, "run", extra_env=env_for(server)) as bot:
        await bot.until(lambda e: "wait_s" in e)
        assert await bot.stop(within=30) == 0
    assert "stopped before the grid started" in bot.names()
    assert len(server.requests) == 1


async def test_duration_ends_a_start_that_waits_out_the_venue(cli: Cli, server: FakeBinance) -> None:
    server.fail_next("/api/v3/exchangeInfo", status=418, retry_after=3600)
    # Long enough for a loaded machine to import, open the database and ask once; the ban (an
    # hour) is far longer, so the one request is all the venue ever sees.
    code, _, err = await cli.arun(*TESTNET, "run", "--duration", "6", extra_env=env_for(server), guard_s=60)
    assert code == 0, err
    assert "stopped before the grid started" in err
    assert len(server.requests) == 1


async def test_a_second_database_on_the_same_account_does_not_lay_a_second_grid(
    cli: Cli, server: FakeBinance
) -> None:
    env = env_for(server)
    await lay_a_grid_and_stop(cli, env)
    resting = {o.client_order_id for o in server.book("BTC/USDT").engine.open_orders()}
    sent_before = len([r for r in server.requests if r.method != "GET"])
    other = {**env, "DATABASE__URL": "sqlite+aiosqlite:///var/other.sqlite3"}
    code, _, err = await cli.arun(*TESTNET, "run", extra_env=other)
    assert code == 2
    line = the_one_error_line(err)
    assert line.startswith("error: DATABASE__URL: the exchange holds 8 open grid order(s) on BTC/USDT")
    assert len([r for r in server.requests if r.method != "GET"]) == sent_before  # nothing sent
    assert {o.client_order_id for o in server.book("BTC/USDT").engine.open_orders()} == resting
