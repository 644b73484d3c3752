"""The simulated exchange driven by a simulated clock: what a bot connected to it would see."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from decimal import Decimal

import pytest

from adapters.clock import SimulatedClock, SystemClock
from adapters.simulated.engine import MatchingEngine
from adapters.simulated.exchange import FaultConfig, SimulatedExchange
from adapters.simulated.price_source import (
    CandlePriceSource,
    PricePoint,
    PriceSource,
    SyntheticPriceSource,
    parse_candles,
)
from domain.errors import ExchangeUnavailable, InvalidOrder
from domain.models import Fill, OrderRequest, OrderStatus, OrderType, Side
from domain.ports import Clock

from .builders import SYMBOL, T0, at, limit, make_engine, market, ms

D = Decimal
BUY, SELL = Side.BUY, Side.SELL


class ListSource:
    def __init__(self, *prices: str | tuple[str, bool]) -> None:
        self._points = [
            PricePoint(at(i), D(p), gap=False) if isinstance(p, str) else PricePoint(at(i), D(p[0]), gap=p[1])
            for i, p in enumerate(prices)
        ]

    def points(self) -> Iterator[PricePoint]:
        return iter(self._points)


def exchange_over(
    source: PriceSource,
    *,
    clock: Clock | None = None,
    engine: MatchingEngine | None = None,
    **options: object,
) -> SimulatedExchange:
    return SimulatedExchange(
        engine or make_engine(last_price=None),
        source,
        clock or SimulatedClock(T0),
        **options,  # type: ignore[arg-type]
    )


async def start(exchange: SimulatedExchange) -> asyncio.Task[None]:
    driver = asyncio.create_task(exchange.run())
    await exchange.wait_ready()
    return driver


async def drain(iterator: object, into: list[object]) -> None:
    async for item in iterator:  # type: ignore[attr-defined]
        into.append(item)


# -- the hand-shake ----------------------------------------------------------------------------


async def test_a_consumer_gets_the_fills_of_a_step_before_its_ticker() -> None:
    clock = SimulatedClock(T0)
    exchange = exchange_over(
        ListSource("30000", "29900", "29800", "30100"), clock=clock, step_interval=1.0, min_subscribers=2
    )
    events: list[tuple[str, Decimal, float]] = []
    driver = await start(exchange)
    await exchange.place_order(limit(BUY, "29900", "0.01"))
    await exchange.place_order(limit(SELL, "30050", "0.01"))

    async def read_fills() -> None:
        async for fill in exchange.fills(SYMBOL):
            for _ in range(5):  # a slow handler: the ticker must still wait for it
                await asyncio.sleep(0)
            events.append(("fill", fill.price, clock.monotonic()))

    async def read_tickers() -> None:
        async for ticker in exchange.tickers(SYMBOL):
            events.append(("ticker", ticker.last, clock.monotonic()))

    await asyncio.gather(driver, read_fills(), read_tickers())

    assert events == [
        ("fill", D("29900"), 1.0),
        ("ticker", D("29900"), 1.0),
        ("ticker", D("29800"), 2.0),
        ("fill", D("30050"), 3.0),
        ("ticker", D("30100"), 3.0),
    ]


async def test_the_next_step_waits_until_the_consumer_has_handled_the_last_one() -> None:
    exchange = exchange_over(ListSource("30000", "29000", "28000", "27000"), min_subscribers=1)
    engine = exchange.engine
    seen_by_bot: list[tuple[Decimal, Decimal | None]] = []
    driver = await start(exchange)

    async for ticker in exchange.tickers(SYMBOL):
        for _ in range(20):
            await asyncio.sleep(0)  # however long the bot takes, the market waits
        seen_by_bot.append((ticker.last, engine.last_price))
    await driver

    assert seen_by_bot == [(D("29000"), D("29000")), (D("28000"), D("28000")), (D("27000"), D("27000"))]


async def test_the_driver_waits_for_its_subscribers_before_moving_on() -> None:
    exchange = exchange_over(ListSource("30000", "29000", "28000"), min_subscribers=2)
    driver = await start(exchange)
    for _ in range(50):
        await asyncio.sleep(0)
    assert exchange.steps == 1  # only the first price, published at once

    tickers: list[object] = []
    fills: list[object] = []
    await asyncio.gather(
        driver, drain(exchange.tickers(SYMBOL), tickers), drain(exchange.fills(SYMBOL), fills)
    )
    assert exchange.steps == 3
    assert len(tickers) == 2


async def test_a_consumer_that_stops_listening_does_not_stall_the_market() -> None:
    exchange = exchange_over(ListSource(*[str(30000 + i) for i in range(10)]), step_interval=1.0)
    driver = await start(exchange)
    got: list[Decimal] = []
    async for ticker in exchange.tickers(SYMBOL):
        got.append(ticker.last)
        if len(got) == 2:
            break
    await asyncio.wait_for(driver, timeout=5)  # a guard only: the driver ends at once
    assert exchange.steps == 10
    assert exchange.engine.last_price == D("30009")


# -- prices and determinism ----------------------------------------------------------------------


async def test_there_is_no_ticker_before_the_first_price_and_one_right_after_start() -> None:
    exchange = exchange_over(ListSource("30000", "30100"), min_subscribers=1)
    with pytest.raises(ExchangeUnavailable, match="no market price yet"):
        await exchange.fetch_ticker(SYMBOL)
    driver = await start(exchange)

    ticker = await exchange.fetch_ticker(SYMBOL)
    assert (ticker.last, ticker.timestamp) == (D("30000"), T0)
    exchange.close()
    await driver


async def test_candles_are_replayed_by_the_candle_rule_at_candle_time() -> None:
    rows = [
        [ms(T0), 100, 103, 99, 102, 1],  # rising: open, low, high, close
        [ms(T0) + 60_000, 101, 104, 97, 98, 1],  # falling: open, high, low, close
        [ms(T0) + 180_000, 90, 91, 89, 90.5, 1],  # a minute later, gapping down
    ]
    source = CandlePriceSource(parse_candles(json.dumps(rows), source="candles.json"))
    clock = SimulatedClock(T0)
    exchange = exchange_over(source, clock=clock, follow_timestamps=True, min_subscribers=1)
    driver = await start(exchange)
    first = await exchange.fetch_ticker(SYMBOL)
    seen = [(first.last, first.timestamp)]
    async for ticker in exchange.tickers(SYMBOL):
        seen.append((ticker.last, ticker.timestamp))
    await driver

    assert [price for price, _ in seen] == [
        D(p) for p in ["100", "99", "103", "102", "101", "104", "97", "98", "90", "89", "91", "90.5"]
    ]
    assert [moment for _, moment in seen] == [
        at(s) for s in (0, 15, 30, 45, 60, 75, 90, 105, 180, 195, 210, 225)
    ]


async def _grid_run(seed: int, points: int = 600) -> tuple[list[Fill], dict[str, object]]:
    source = SyntheticPriceSource(
        start_price=D("30000"),
        tick_size=D("0.01"),
        seed=seed,
        volatility=D("0.0005"),
        step_seconds=D("1"),
        start_time=T0,
        max_points=points,
    )
    exchange = exchange_over(source, step_interval=1.0, min_subscribers=2)
    driver = await start(exchange)
    spacing, amount = D("10"), "0.001"
    center = (await exchange.fetch_ticker(SYMBOL)).last
    ids = (f"grid-{n}" for n in itertools.count())
    for k in range(1, 6):
        await exchange.place_order(limit(BUY, str(center - k * spacing), amount, next(ids)))
        await exchange.place_order(limit(SELL, str(center + k * spacing), amount, next(ids)))
    seen: list[Fill] = []

    async def react_to_fills() -> None:
        async for fill in exchange.fills(SYMBOL):
            seen.append(fill)
            order = await exchange.fetch_order(SYMBOL, order_id=fill.order_id)
            assert order.price is not None
            if fill.side is BUY:
                await exchange.place_order(limit(SELL, str(order.price + spacing), amount, next(ids)))
            else:
                await exchange.place_order(limit(BUY, str(order.price - spacing), amount, next(ids)))

    async def watch_tickers() -> None:
        async for _ in exchange.tickers(SYMBOL):
            pass

    await asyncio.gather(driver, react_to_fills(), watch_tickers())
    return seen, exchange.engine.snapshot()


async def test_two_runs_with_the_same_seed_give_identical_fills() -> None:
    first_fills, first_state = await _grid_run(seed=11)
    second_fills, second_state = await _grid_run(seed=11)
    other_fills, _ = await _grid_run(seed=12)

    assert len(first_fills) > 10
    assert first_fills == second_fills  # ids, client ids, prices, fees and timestamps alike
    assert first_state == second_state
    assert [(f.price, f.timestamp) for f in other_fills] != [(f.price, f.timestamp) for f in first_fills]


async def test_step_interval_paces_the_path_on_the_clock_and_tickers_carry_market_time() -> None:
    clock = SimulatedClock(T0)
    exchange = exchange_over(
        ListSource("30000", "30001", "30002"), clock=clock, step_interval=2.5, min_subscribers=1
    )
    driver = await start(exchange)
    tickers: list[object] = []
    await asyncio.gather(driver, drain(exchange.tickers(SYMBOL), tickers))
    assert clock.now() == at(5)  # two steps of 2.5 s on the clock
    # The venue lives in market time: each ticker carries its price point's own timestamp, so the
    # bot's market-state window measures the market, not how fast the path is replayed.
    assert [t.timestamp for t in tickers] == [at(1), at(2)]  # type: ignore[attr-defined]


# -- gateway -------------------------------------------------------------------------------------


async def test_taker_fills_from_place_order_are_published_too() -> None:
    exchange = exchange_over(ListSource("30000"), engine=make_engine())
    received: list[Fill] = []

    async def listen() -> None:
        async for fill in exchange.fills(SYMBOL):
            received.append(fill)
            exchange.close()

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0)
    order = await exchange.place_order(market(BUY, "0.01"))
    await listener

    assert order.status is OrderStatus.FILLED
    assert [(f.order_id, f.is_maker) for f in received] == [(order.order_id, False)]


async def test_the_gateway_reports_what_the_engine_holds() -> None:
    exchange = exchange_over(ListSource("30000"), engine=make_engine())
    resting = await exchange.place_order(limit(BUY, "29000", "0.01", client_order_id="g-1"))
    taken = await exchange.place_order(market(SELL, "0.01"))

    assert await exchange.market_rules(SYMBOL) == exchange.engine.rules
    assert [o.order_id for o in await exchange.fetch_open_orders(SYMBOL)] == [resting.order_id]
    assert await exchange.fetch_order(SYMBOL, client_order_id="g-1") == resting
    assert [f.trade_id for f in await exchange.fetch_my_trades(SYMBOL)] == ["1"]
    assert await exchange.fetch_my_trades(SYMBOL, since_trade_id="1") == []
    assert [f.trade_id for f in await exchange.fetch_order_trades(SYMBOL, taken.order_id)] == ["1"]
    assert await exchange.fetch_order_trades(SYMBOL, resting.order_id) == []
    assert (await exchange.fetch_balances())["USDT"].locked == D("290.00")
    canceled = await exchange.cancel_order(SYMBOL, resting.order_id)
    assert canceled.status is OrderStatus.CANCELED


async def test_an_unknown_symbol_is_refused_with_binance_code_1121() -> None:
    exchange = exchange_over(ListSource("30000"), engine=make_engine())
    calls = [
        exchange.fetch_ticker("ETH/USDT"),
        exchange.market_rules("ETH/USDT"),
        exchange.cancel_order("ETH/USDT", "1"),
        exchange.fetch_open_orders("ETH/USDT"),
        exchange.fetch_order_trades("ETH/USDT", "1"),
        exchange.place_order(
            OrderRequest(
                symbol="ETH/USDT",
                side=BUY,
                type=OrderType.LIMIT,
                amount=D("1"),
                client_order_id="x",
                price=D("2000"),
            )
        ),
    ]
    for call in calls:
        with pytest.raises(InvalidOrder, match=r"^Invalid symbol\. .*BTC/USDT") as raised:
            await call
        assert raised.value.code == -1121
    with pytest.raises(InvalidOrder, match="Invalid symbol"):
        exchange.tickers("ETH/USDT")
    assert exchange.engine.open_orders() == []


async def test_fail_next_makes_the_next_calls_unavailable_without_reaching_the_engine() -> None:
    exchange = exchange_over(ListSource("30000"), engine=make_engine())
    exchange.fail_next(2)
    for _ in range(2):
        with pytest.raises(ExchangeUnavailable, match="Simulated exchange unavailable"):
            await exchange.place_order(limit(BUY, "29000", "0.01"))
    assert exchange.engine.open_orders() == []
    await exchange.place_order(limit(BUY, "29000", "0.01"))
    assert len(exchange.engine.open_orders()) == 1


async def _outcomes(faults: FaultConfig, calls: int = 60) -> list[bool]:
    exchange = exchange_over(ListSource("30000"), engine=make_engine(), faults=faults)
    outcomes = []
    for _ in range(calls):
        try:
            await exchange.fetch_balances()
            outcomes.append(True)
        except ExchangeUnavailable:
            outcomes.append(False)
    return outcomes


async def test_seeded_rejects_fail_the_same_calls_every_run() -> None:
    faults = FaultConfig(reject_rate=D("0.3"), seed=5)
    first, second = await _outcomes(faults), await _outcomes(faults)
    assert first == second
    assert 5 < first.count(False) < 35
    assert await _outcomes(FaultConfig(reject_rate=D("1"))) == [False] * 60
    assert await _outcomes(FaultConfig()) == [True] * 60


async def test_latency_is_spent_on_the_clock() -> None:
    clock = SimulatedClock(T0)
    exchange = exchange_over(
        ListSource("30000"), clock=clock, engine=make_engine(), faults=FaultConfig(latency_seconds=0.25)
    )
    order = await exchange.place_order(limit(BUY, "29000", "0.01"))
    await exchange.fetch_balances()
    assert order.created_at == at(0.25)
    assert clock.monotonic() == 0.5


def test_nonsense_fault_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="reject_rate"):
        FaultConfig(reject_rate=D("1.5"))
    with pytest.raises(ValueError, match="latency"):
        FaultConfig(latency_seconds=-1)


# -- closing and dropping ------------------------------------------------------------------------


async def test_close_ends_the_driver_and_every_feed() -> None:
    source = SyntheticPriceSource(
        start_price=D("30000"),
        tick_size=D("0.01"),
        seed=1,
        volatility=D("0.001"),
        step_seconds=D("1"),
        start_time=T0,
    )  # endless
    exchange = exchange_over(source, step_interval=1.0, min_subscribers=2)
    driver = await start(exchange)
    fills: list[object] = []
    seen = 0

    async def read_tickers() -> None:
        nonlocal seen
        async for _ in exchange.tickers(SYMBOL):
            seen += 1
            if seen == 5:
                exchange.close()

    await asyncio.gather(driver, read_tickers(), drain(exchange.fills(SYMBOL), fills))
    assert exchange.closed
    assert seen == 5
    assert exchange.steps == 6
    assert [t async for t in exchange.tickers(SYMBOL)] == []  # a closed exchange streams nothing


async def test_close_interrupts_a_wall_clock_pause_at_once() -> None:
    exchange = exchange_over(ListSource("30000", "30001"), clock=SystemClock(), step_interval=3600.0)
    driver = await start(exchange)
    await asyncio.sleep(0)
    exchange.close()
    await asyncio.wait_for(driver, timeout=5)  # a guard only: without the fix this would take an hour
    assert exchange.steps == 1


async def test_disconnected_feeds_end_and_a_new_subscription_gets_later_prices() -> None:
    exchange = exchange_over(ListSource(*[str(30000 + i) for i in range(8)]), min_subscribers=1)
    driver = await start(exchange)
    before: list[Decimal] = []
    async for ticker in exchange.tickers(SYMBOL):
        before.append(ticker.last)
        if len(before) == 3:
            exchange.disconnect_feeds()
    after: list[object] = []
    await asyncio.gather(driver, drain(exchange.tickers(SYMBOL), after))

    assert before == [D("30001"), D("30002"), D("30003")]
    assert [t.last for t in after] == [D(str(30000 + i)) for i in range(4, 8)]  # type: ignore[attr-defined]
