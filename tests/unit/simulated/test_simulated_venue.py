"""The simulated venue and its state file, as the bot enters it: the file is opened and written
before anything runs, each pair keeps its own book, and a state that does not fit the settings
stops the bot with one line instead of being thrown away."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, MutableMapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from adapters.clock import SimulatedClock
from adapters.simulated.state_store import SqliteStateStore, read_book
from bootstrap.settings import Settings, SimulatorSettings, TradingSettings
from bootstrap.venues import simulated_venue
from domain.errors import ConfigurationError
from domain.models import OrderStatus, Side

from .builders import T0, limit

D = Decimal


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("SIMULATOR__", "TRADING__", "EXCHANGE__")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env from the project


@pytest.fixture(autouse=True)
def default_logging() -> Iterator[None]:
    """Info lines reach capture_logs whatever level an earlier test configured."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    yield
    structlog.configure(**saved)


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "var" / "simulated-exchange.sqlite3"


def settings(state_file: Path | None, symbol: str = "BTC/USDT", **simulator: Any) -> Settings:
    return Settings(
        simulator=SimulatorSettings(state_file=state_file, step_interval_s=0, **simulator),
        trading=TradingSettings(symbol=symbol),
    )


def events(logs: list[MutableMapping[str, Any]], prefix: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if str(entry["event"]).startswith(prefix)]


async def test_the_state_file_is_written_when_the_venue_is_entered(state_file: Path) -> None:
    async with simulated_venue(settings(state_file), SimulatedClock(T0)):
        book = read_book(state_file, "BTC/USDT")  # nothing has run yet
        assert book is not None
        assert book.balances()["USDT"].free == D("10000")


async def test_another_pair_gets_its_own_book_and_the_first_is_found_as_it_was(state_file: Path) -> None:
    async with simulated_venue(settings(state_file), SimulatedClock(T0)) as venue:
        await venue.gateway.place_order(limit(Side.BUY, "29000", "0.01", client_order_id="grid-1"))
        btc_before = await venue.gateway.fetch_open_orders("BTC/USDT")

    with capture_logs() as logs:
        async with simulated_venue(
            settings(state_file, "ETH/USDT", quote_balance=D("700"), base_balance=D("3")), SimulatedClock(T0)
        ) as venue:
            balances = await venue.gateway.fetch_balances()
            assert await venue.gateway.fetch_open_orders("ETH/USDT") == []
    assert {asset: b.free for asset, b in balances.items()} == {"ETH": D("3"), "USDT": D("700")}
    [switched] = events(logs, "simulated exchange: new book")
    assert switched["event"] == "simulated exchange: new book; the other symbols' books are kept"
    assert switched["log_level"] == "info"
    assert switched["symbol"] == "ETH/USDT" and switched["kept"] == ["BTC/USDT"]

    with capture_logs() as logs:
        async with simulated_venue(settings(state_file), SimulatedClock(T0)) as venue:
            assert await venue.gateway.fetch_open_orders("BTC/USDT") == btc_before
            order = await venue.gateway.fetch_order("BTC/USDT", client_order_id="grid-1")
            assert order.status is OrderStatus.OPEN
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == ["simulated exchange restored"]


async def test_a_first_book_says_it_is_new_and_keeps_nothing(state_file: Path) -> None:
    with capture_logs() as logs:
        async with simulated_venue(settings(state_file), SimulatedClock(T0)):
            pass
    [started] = events(logs, "simulated exchange: new book")
    assert started["event"] == "simulated exchange: new book" and started["kept"] == []


async def test_the_price_path_resumes_where_it_ended(state_file: Path) -> None:
    async with simulated_venue(settings(state_file), SimulatedClock(T0)) as venue:
        driver = asyncio.ensure_future(venue.background[0]())
        for _ in range(50):
            await asyncio.sleep(0)  # let the market take some steps
        venue.stop()
        await driver
    saved = read_book(state_file, "BTC/USDT")
    assert saved is not None and saved.last_price is not None

    async with simulated_venue(settings(state_file), SimulatedClock(T0)) as venue:
        ticker = await venue.gateway.fetch_ticker("BTC/USDT")
    assert ticker.last == saved.last_price


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ({"tick_size": D("0.1")}, "tick_size 0.01 (settings: 0.1)"),
        ({"step_size": D("0.001")}, "step_size 0.00001 (settings: 0.001)"),
        ({"min_notional": D("10")}, "min_notional 5 (settings: 10)"),
        ({"max_num_orders": 20}, "max_num_orders 200 (settings: 20)"),
    ],
)
async def test_other_market_rules_for_a_saved_book_stop_the_bot_with_one_line(
    state_file: Path, changed: dict[str, Any], expected: str
) -> None:
    async with simulated_venue(settings(state_file), SimulatedClock(T0)) as venue:
        await venue.gateway.place_order(limit(Side.BUY, "29000", "0.01"))
    saved = read_book(state_file, "BTC/USDT")
    assert saved is not None

    with pytest.raises(ConfigurationError) as refused:
        async with simulated_venue(settings(state_file, **changed), SimulatedClock(T0)):
            pytest.fail("the venue must not start")

    assert refused.value.key == "SIMULATOR__STATE_FILE"
    assert expected in refused.value.problem
    assert refused.value.problem.endswith("use another state file or restore the settings")
    assert "\n" not in refused.value.problem
    after = read_book(state_file, "BTC/USDT")
    assert after is not None and after.snapshot() == saved.snapshot()  # kept, not thrown away
    SqliteStateStore.open(state_file).close()  # the refusal released the file


async def test_an_unwritable_folder_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("not a folder")
    state_file = tmp_path / "var" / "simulated-exchange.sqlite3"
    with pytest.raises(ConfigurationError) as refused:
        async with simulated_venue(settings(state_file), SimulatedClock(T0)):
            pytest.fail("the venue must not start")
    assert refused.value.key == "SIMULATOR__STATE_FILE"
    assert refused.value.problem.startswith(f"cannot write {state_file}: ")


async def test_a_file_in_use_is_a_configuration_error_naming_the_holder(state_file: Path) -> None:
    holder = SqliteStateStore.open(state_file)
    try:
        with pytest.raises(ConfigurationError) as refused:
            async with simulated_venue(settings(state_file), SimulatedClock(T0)):
                pytest.fail("the venue must not start")
    finally:
        holder.close()
    assert refused.value.problem == f"{state_file} is in use by another bot process (pid {os.getpid()})"


async def test_a_corrupt_file_is_a_configuration_error_naming_it(state_file: Path) -> None:
    await asyncio.to_thread(state_file.parent.mkdir)
    await asyncio.to_thread(state_file.write_bytes, b"\x89PNG not a state file")
    with pytest.raises(ConfigurationError) as refused:
        async with simulated_venue(settings(state_file), SimulatedClock(T0)):
            pytest.fail("the venue must not start")
    assert refused.value.key == "SIMULATOR__STATE_FILE"
    assert str(state_file) in refused.value.problem and "\n" not in refused.value.problem


async def test_without_a_state_file_nothing_is_written(tmp_path: Path) -> None:
    async with simulated_venue(settings(None), SimulatedClock(T0)) as venue:
        await venue.gateway.place_order(limit(Side.BUY, "29000", "0.01"))
    assert await asyncio.to_thread(os.listdir, tmp_path) == []
