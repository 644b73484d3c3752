"""The simulated exchange's state file: every change is on disk before anyone sees it, a reopened
file gives back exactly what was written, one book per symbol, and a file that cannot be used
says so at once. Real SQLite files in tmp_path; a second look at the file is a separate
connection (`read_book`), as another process would have."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest

from adapters.clock import SimulatedClock
from adapters.simulated.engine import MatchingEngine
from adapters.simulated.exchange import SimulatedExchange
from adapters.simulated.price_source import PricePoint
from adapters.simulated.state_store import SqliteStateStore, StateFileError, read_book
from domain.models import OrderRequest, OrderStatus, OrderType, Side
from domain.rules import MarketRules

from .builders import SYMBOL, T0, at, limit, make_engine, market

D = Decimal
BUY, SELL = Side.BUY, Side.SELL
ETH_RULES = MarketRules(
    symbol="ETH/USDT", base_asset="ETH", quote_asset="USDT", tick_size=D("0.01"), step_size=D("0.0001")
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "simulated-exchange.sqlite3"  # the folder does not exist yet


@pytest.fixture
def store(path: Path) -> Iterator[SqliteStateStore]:
    opened = SqliteStateStore.open(path)
    yield opened
    opened.close()


def on_disk(path: Path, symbol: str = SYMBOL) -> MatchingEngine:
    book = read_book(path, symbol)
    assert book is not None, f"no {symbol} book in {path}"
    return book


class ListSource:
    def __init__(self, *prices: str) -> None:
        self._points = [PricePoint(at(i), D(p), gap=False) for i, p in enumerate(prices)]

    def points(self) -> Iterator[PricePoint]:
        return iter(self._points)


def exchange_on(
    store: SqliteStateStore, engine: MatchingEngine, *prices: str, subscribers: int = 0
) -> SimulatedExchange:
    store.save_book(engine)
    return SimulatedExchange(
        engine,
        ListSource(*prices),
        SimulatedClock(T0),
        min_subscribers=subscribers,
        on_change=partial(store.save_changes, engine),
    )


# -- durable before visible ------------------------------------------------------------------


async def test_a_placed_order_is_on_disk_when_place_order_returns(
    path: Path, store: SqliteStateStore
) -> None:
    exchange = exchange_on(store, make_engine())

    order = await exchange.place_order(limit(BUY, "29000", "0.01", client_order_id="grid-1"))

    seen = await asyncio.to_thread(on_disk, path)  # another thread, another connection
    assert seen.order(order_id=order.order_id) == order
    assert seen.balances() == exchange.engine.balances()  # 290 USDT locked
    assert seen.balances()["USDT"].locked == D("290")
    assert seen.snapshot() == exchange.engine.snapshot()  # counters and last price too


async def test_a_taker_fill_and_a_cancel_are_on_disk_when_the_call_returns(
    path: Path, store: SqliteStateStore
) -> None:
    exchange = exchange_on(store, make_engine())
    resting = await exchange.place_order(limit(BUY, "29000", "0.01"))
    taken = await exchange.place_order(market(BUY, "0.01"))
    assert on_disk(path).trades() == exchange.engine.trades() != []
    assert on_disk(path).order(order_id=taken.order_id).status is OrderStatus.FILLED

    canceled = await exchange.cancel_order(SYMBOL, resting.order_id)

    assert on_disk(path).order(order_id=resting.order_id) == canceled
    assert on_disk(path).snapshot() == exchange.engine.snapshot()


async def test_the_fills_of_a_price_step_are_on_disk_before_a_subscriber_gets_them(
    path: Path, store: SqliteStateStore
) -> None:
    exchange = exchange_on(store, make_engine(last_price=None), "30000", "29500", "30500", subscribers=1)
    driver = asyncio.create_task(exchange.run())
    await exchange.wait_ready()
    await exchange.place_order(limit(BUY, "29600", "0.01"))
    await exchange.place_order(limit(SELL, "30400", "0.01"))
    checked: list[str] = []

    async for fill in exchange.fills(SYMBOL):
        seen = on_disk(path)
        assert seen.trades()[-1] == fill
        assert seen.order(order_id=fill.order_id).status is OrderStatus.FILLED
        assert seen.last_price == exchange.engine.last_price  # the step's price, written with its fills
        checked.append(fill.trade_id)
    await driver

    assert checked == ["1", "2"]
    assert on_disk(path).snapshot() == exchange.engine.snapshot()


async def test_a_price_step_without_fills_saves_the_last_price(path: Path, store: SqliteStateStore) -> None:
    exchange = exchange_on(store, make_engine(last_price=None), "30000", "30010", "30020.5")
    await exchange.run()
    assert on_disk(path).last_price == D("30020.5")


# -- reopening -------------------------------------------------------------------------------


def busy_book(store: SqliteStateStore) -> MatchingEngine:
    """Resting and closed orders, maker and taker trades, locked funds, each written as it happened."""
    engine = make_engine()
    store.save_book(engine)
    steps: list[Callable[[], object]] = [
        lambda: engine.place(limit(BUY, "29000", "0.01", client_order_id="grid-1"), T0),
        lambda: engine.place(limit(SELL, "30100", "0.02"), T0),
        lambda: engine.place(limit(BUY, "29500", "0.01"), T0),
        lambda: engine.move_to(D("30150"), at(1)),
        lambda: engine.place(market(SELL, "0.005"), at(2)),
        lambda: engine.cancel(at(3), client_order_id="grid-1"),
        lambda: engine.move_to(D("29400"), at(4)),
        lambda: engine.place(limit(SELL, "31000.5", "0.003"), at(5)),
    ]
    for step in steps:
        step()
        store.save_changes(engine)
    return engine


def test_a_reopened_file_gives_back_exactly_what_was_written(path: Path) -> None:
    store = SqliteStateStore.open(path)
    engine = busy_book(store)
    store.close()

    reopened = SqliteStateStore.open(path)
    try:
        restored = reopened.load(SYMBOL)
    finally:
        reopened.close()

    assert restored is not None
    assert restored.snapshot() == engine.snapshot()  # orders, trades, balances, counters, price, rules, fees
    assert restored.open_orders() == engine.open_orders()
    assert restored.trades("2") == engine.trades("2")
    assert restored.order(client_order_id="grid-1").status is OrderStatus.CANCELED


def test_ids_after_reopening_never_reuse_old_ones(path: Path) -> None:
    store = SqliteStateStore.open(path)
    old = busy_book(store)
    store.close()
    store = SqliteStateStore.open(path)
    engine = store.load(SYMBOL)
    assert engine is not None

    order, fills = engine.place(market(BUY, "0.001"), at(9))
    store.save_changes(engine)
    store.close()

    old_ids = {raw["order_id"] for raw in old.snapshot()["orders"]}
    old_trade_ids = {fill.trade_id for fill in old.trades()}
    assert order.order_id not in old_ids and int(order.order_id) == max(map(int, old_ids)) + 1
    assert fills[0].trade_id not in old_trade_ids
    assert int(fills[0].trade_id) == max(map(int, old_trade_ids)) + 1
    assert on_disk(path).trades()[-1] == fills[0]


def test_a_restored_engine_has_nothing_unsaved(path: Path, store: SqliteStateStore) -> None:
    busy_book(store)
    restored = store.load(SYMBOL)
    assert restored is not None
    changes = restored.unsaved_changes()
    assert changes.orders == () and changes.trades == ()


# -- one book per symbol ----------------------------------------------------------------------


def test_books_of_several_symbols_live_side_by_side(path: Path, store: SqliteStateStore) -> None:
    btc = busy_book(store)
    eth = MatchingEngine(ETH_RULES, {"USDT": D("500"), "ETH": D("2")}, maker_fee=D("0"), taker_fee=D("0"))
    store.save_book(eth)
    eth.move_to(D("2000"), T0)
    eth.place(OrderRequest("ETH/USDT", SELL, OrderType.LIMIT, D("1"), "eth-1", D("2100")), T0)
    store.save_changes(eth)

    assert store.symbols() == ["BTC/USDT", "ETH/USDT"]
    assert on_disk(path, "ETH/USDT").snapshot() == eth.snapshot()
    assert on_disk(path, "BTC/USDT").snapshot() == btc.snapshot()  # untouched by ETH/USDT's writes
    assert read_book(path, "SOL/USDT") is None


# -- the file itself --------------------------------------------------------------------------


def test_a_second_open_of_the_same_file_is_refused_naming_the_holder(
    path: Path, store: SqliteStateStore
) -> None:
    with pytest.raises(StateFileError) as refused:
        SqliteStateStore.open(path)
    assert str(refused.value) == f"{path} is in use by another bot process (pid {os.getpid()})"


def test_closing_releases_the_file(path: Path) -> None:
    SqliteStateStore.open(path).close()
    SqliteStateStore.open(path).close()


def test_an_unwritable_folder_is_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("a file where the folder should be")
    path = tmp_path / "var" / "simulated-exchange.sqlite3"
    with pytest.raises(StateFileError, match=r"^cannot write .*simulated-exchange\.sqlite3: ") as refused:
        SqliteStateStore.open(path)
    assert "\n" not in str(refused.value)


def test_a_folder_in_place_of_the_file_cannot_be_written(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.mkdir()
    with pytest.raises(StateFileError, match=r"^cannot write .*state\.sqlite3: "):
        SqliteStateStore.open(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_file_cannot_be_written(path: Path) -> None:
    SqliteStateStore.open(path).close()
    path.chmod(0o444)
    with pytest.raises(StateFileError, match=r"^cannot write "):
        SqliteStateStore.open(path)


def test_a_file_that_is_neither_sqlite_nor_json_is_refused_naming_it(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00\x01 garbage " * 20)
    with pytest.raises(StateFileError, match="is not a simulator state file") as refused:
        SqliteStateStore.open(path)
    assert str(path) in str(refused.value)
    SqliteStateStore.open(path.with_name("other.sqlite3")).close()  # the refusal released the lock


def test_another_programs_sqlite_database_is_left_alone(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE runs (id INTEGER)")
    with pytest.raises(StateFileError, match=r"database of something else \(tables: runs\)"):
        SqliteStateStore.open(path)
    with sqlite3.connect(path) as other:
        tables = [row[0] for row in other.execute("SELECT name FROM sqlite_master")]
    assert tables == ["runs"]


# -- the legacy JSON state ----------------------------------------------------------------------


def legacy_json(path: Path, engine: MatchingEngine) -> None:
    """What JsonStateStore wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(engine.snapshot(), indent=1, sort_keys=True), encoding="utf-8")


def old_book() -> MatchingEngine:
    engine = make_engine()
    engine.place(limit(BUY, "29000", "0.01", client_order_id="grid-7"), T0)
    engine.place(limit(SELL, "29999", "0.01"), T0)
    engine.move_to(D("30000"), at(1))
    return engine


def test_a_legacy_json_state_file_is_imported_once_and_renamed(tmp_path: Path) -> None:
    path = tmp_path / "simulated-exchange.json"  # a profile still naming the JSON file
    engine = old_book()
    legacy_json(path, engine)

    store = SqliteStateStore.open(path)
    try:
        imported = store.load(SYMBOL)
    finally:
        store.close()

    assert imported is not None and imported.snapshot() == engine.snapshot()
    assert path.read_bytes().startswith(b"SQLite format 3\x00")
    renamed = tmp_path / "simulated-exchange.json.imported"
    assert json.loads(renamed.read_text()) == engine.snapshot()
    reopened = SqliteStateStore.open(path)  # nothing to import the second time
    reopened.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "simulated-exchange.json",
        "simulated-exchange.json.imported",
        "simulated-exchange.json.lock",
    ]


def test_the_legacy_json_beside_a_new_state_file_is_imported(tmp_path: Path) -> None:
    engine = old_book()
    legacy_json(tmp_path / "var" / "simulated-exchange.json", engine)  # the old default
    path = tmp_path / "var" / "simulated-exchange.sqlite3"  # the new one

    SqliteStateStore.open(path).close()

    assert on_disk(path).snapshot() == engine.snapshot()
    assert (tmp_path / "var" / "simulated-exchange.json.imported").exists()
    assert not (tmp_path / "var" / "simulated-exchange.json").exists()


def test_an_import_cut_short_before_its_last_rename_is_finished(tmp_path: Path) -> None:
    path = tmp_path / "simulated-exchange.json"
    engine = old_book()
    legacy_json(path, engine)
    SqliteStateStore.open(path).close()
    path.rename(tmp_path / "simulated-exchange.json.importing")  # as if killed between the renames

    SqliteStateStore.open(path).close()

    assert on_disk(path).snapshot() == engine.snapshot()


def test_a_corrupt_legacy_json_state_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "simulated-exchange.json"
    path.write_text('{"orders": [', encoding="utf-8")
    with pytest.raises(StateFileError, match="cannot import this legacy JSON state") as refused:
        SqliteStateStore.open(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    assert path.read_text(encoding="utf-8") == '{"orders": ['  # left as it was
