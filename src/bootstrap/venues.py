"""Venue builders: each turns settings into (gateway, market feed, order feed, background tasks).

These are the only place that knows which exchange the bot talks to; the container picks one by
`exchange.kind`. Heavy adapters (ccxt) are imported inside their builder, so the simulated
profile never loads them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, fields
from functools import partial
from typing import TYPE_CHECKING

import structlog

from adapters.monitoring.probe import VenueProbe
from bootstrap.settings import Settings, SimulatorSettings, simulated_rules
from domain.errors import ConfigurationError
from domain.ports import Clock, ExchangeGateway, MarketDataFeed, OrderUpdateFeed

if TYPE_CHECKING:
    from pathlib import Path

    from adapters.binance import BinanceGateway
    from adapters.binance.streams import BinanceMarketStreams
    from adapters.binance.user_stream import BinanceUserStream
    from adapters.simulated.engine import MatchingEngine
    from adapters.simulated.state_store import SqliteStateStore
    from domain.rules import MarketRules

log = structlog.get_logger(__name__)

TESTNET_REST = "https://testnet.binance.vision"
LIVE_REST = "https://api.binance.com"


@dataclass(frozen=True, slots=True)
class Venue:
    name: str
    gateway: ExchangeGateway
    market_feed: MarketDataFeed
    order_feed: OrderUpdateFeed
    background: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=tuple)
    stop: Callable[[], None] = lambda: None
    ready: Callable[[], Awaitable[None]] | None = None  # awaited after the background tasks start
    probe: VenueProbe | None = None  # the adapter's own health, for /health and /metrics
    clock: Clock | None = None  # the venue's own time, when it keeps one (a replay's market time)


VenueFactory = Callable[[], AbstractAsyncContextManager[Venue]]


def open_book(state_file: Path | None, symbol: str) -> tuple[SqliteStateStore | None, MatchingEngine | None]:
    """The state file, opened and locked (None: no file), and the symbol's book in it (None: none
    yet). A file that cannot be used is a configuration error naming SIMULATOR__STATE_FILE."""
    from adapters.simulated.state_store import SqliteStateStore, StateFileError

    if state_file is None:
        return None, None
    store: SqliteStateStore | None = None
    try:
        store = SqliteStateStore.open(state_file)
        return store, store.load(symbol)
    except StateFileError as exc:
        if store is not None:
            store.close()
        raise ConfigurationError("SIMULATOR__STATE_FILE", str(exc)) from None


def rules_changed(saved: MarketRules, now: MarketRules, source: str) -> list[str]:
    """Each market rule a saved book was made under that differs now: `name saved (source: now)`."""
    return [
        f"{name} {getattr(saved, name)} ({source}: {getattr(now, name)})"
        for name in (f.name for f in fields(now))
        if getattr(saved, name) != getattr(now, name)
    ]


def funded_engine(rules: MarketRules, sim: SimulatorSettings) -> MatchingEngine:
    """A new book: the simulator's balances and fees."""
    from adapters.simulated.engine import MatchingEngine

    return MatchingEngine(
        rules,
        {rules.quote_asset: sim.quote_balance, rules.base_asset: sim.base_balance},
        maker_fee=sim.maker_fee,
        taker_fee=sim.taker_fee,
    )


@asynccontextmanager
async def simulated_venue(settings: Settings, clock: Clock) -> AsyncIterator[Venue]:
    """The in-process matching engine, fed by the synthetic path or a candle file. Its state is
    written to its own SQLite file at every change (one book per symbol), so a restarted bot, even
    after a kill, finds the exchange as it last saw it. The file is opened, locked and written
    here, before anything runs: a file that cannot be used is a configuration error."""
    from adapters.simulated.exchange import FaultConfig, SimulatedExchange
    from adapters.simulated.price_source import CandleFilePriceSource, PriceSource, SyntheticPriceSource

    sim = settings.simulator
    rules = simulated_rules(settings)
    store: SqliteStateStore | None = None
    try:
        store, engine = open_book(sim.state_file, rules.symbol)
        if engine is not None and sim.candles_file is not None:
            raise ConfigurationError(
                "SIMULATOR__STATE_FILE",
                f"{sim.state_file} holds the {rules.symbol} book of an earlier run; a candle replay "
                "starts from the file's first candle, so it cannot continue one (its candles would "
                "be traded twice): give the replay a new SIMULATOR__STATE_FILE and DATABASE__URL, "
                "or delete both files",
            )
        if engine is not None:
            differences = rules_changed(engine.rules, rules, "settings")
            if differences:
                raise ConfigurationError(
                    "SIMULATOR__STATE_FILE",
                    f"{sim.state_file} holds a {rules.symbol} book made with other market rules: "
                    f"{', '.join(differences)}; use another state file or restore the settings",
                )
            log.info(
                "simulated exchange restored",
                symbol=rules.symbol,
                state_file=str(sim.state_file),
                open_orders=len(engine.open_orders()),
            )
        else:
            engine = funded_engine(rules, sim)
            if store is not None:
                kept = [symbol for symbol in store.symbols() if symbol != rules.symbol]
                store.save_book(engine)
                log.info(
                    "simulated exchange: new book; the other symbols' books are kept"
                    if kept
                    else "simulated exchange: new book",
                    symbol=rules.symbol,
                    kept=kept,
                    state_file=str(sim.state_file),
                )
        source: PriceSource
        if sim.candles_file is not None:
            source = CandleFilePriceSource(sim.candles_file, start_time_override=clock.now())
        else:
            source = SyntheticPriceSource(
                start_price=engine.last_price or sim.start_price,
                tick_size=rules.tick_size,
                seed=sim.seed,
                volatility=sim.volatility,
                step_seconds=sim.step_seconds,
                start_time=clock.now(),
                reversion=sim.reversion,
            )
        faults = FaultConfig(latency_seconds=sim.latency_s, reject_rate=sim.reject_rate, seed=sim.seed)
        exchange = SimulatedExchange(
            engine,
            source,
            clock,
            step_interval=sim.step_interval_s,
            faults=faults,
            on_change=None if store is None else partial(store.save_changes, engine),
        )
        try:
            yield Venue(
                "simulated",
                exchange,
                exchange,
                exchange,
                background=(exchange.run,),
                stop=exchange.close,
                # A replay runs on the data's time: the bot's orders, timers and logs follow it.
                clock=exchange.market_clock() if sim.candles_file is not None else None,
            )
        finally:
            exchange.close()
    finally:
        if store is not None:
            store.close()


@asynccontextmanager
async def binance_venue(settings: Settings, clock: Clock) -> AsyncIterator[Venue]:
    """Binance spot (testnet unless live is confirmed) through ccxt. Prices over the public
    WebSocket streams, fills over the WebSocket API user data stream, each with REST polling
    while it is down."""
    from adapters.binance import BinanceConfig, open_binance_gateway
    from bootstrap.market_data import market_streams, user_stream, ws_api_url, ws_root

    ex = settings.exchange
    if ex.api_key is None or ex.api_secret is None:  # check_consistency already said so
        raise ConfigurationError("EXCHANGE__API_KEY", "is required when EXCHANGE__KIND=binance")
    if not ex.testnet:
        log.warning("LIVE TRADING: orders go to Binance with real funds", rest_url=ex.rest_url or LIVE_REST)
    config = BinanceConfig(
        api_key=ex.api_key.get_secret_value(),
        api_secret=ex.api_secret.get_secret_value(),
        rest_url=(ex.rest_url or (TESTNET_REST if ex.testnet else LIVE_REST)).rstrip("/"),
        recv_window_ms=ex.recv_window_ms,
        request_timeout_s=ex.request_timeout_s,
    )
    async with open_binance_gateway(config, clock) as gateway:
        market = market_streams(
            ex, settings.trading.symbol, clock, partial(gateway.fetch_ticker, settings.trading.symbol)
        )
        orders = user_stream(ex, settings.trading.symbol, clock, gateway)
        log.info(
            "feeds: market data over streams (primary + standby), order updates over the user data stream",
            ws_url=ws_root(ex),
            ws_api_url=ws_api_url(ex),
        )

        def stop() -> None:
            market.close()
            orders.close()

        probe = binance_probe(gateway, market, orders, market_data=market.state, order_updates=orders.state)
        try:
            yield Venue(
                "binance-testnet" if ex.testnet else "binance",
                gateway,
                market,
                orders,
                background=(market.run, orders.run),
                stop=stop,
                probe=probe,
            )
        finally:
            stop()


def binance_probe(
    gateway: BinanceGateway,
    *feeds: BinanceMarketStreams | BinanceUserStream,
    market_data: Callable[[], Mapping[str, object] | None] | None = None,
    order_updates: Callable[[], Mapping[str, object] | None] | None = None,
) -> VenueProbe:
    """What the Binance adapter tells /health and /metrics: its state, circuit breaker, ban,
    request weight, 429/418 answers, failures by type, and the feeds' recoveries."""
    return VenueProbe(
        state=lambda: gateway.state,
        breaker_state=lambda: gateway.breaker_state,
        banned_for=gateway.banned_for,
        weight_used=gateway.weight_used,
        throttled=gateway.throttled,
        reconnects=lambda: sum(feed.reconnects for feed in feeds),
        errors=lambda: dict(gateway.errors),
        market_data=market_data or (lambda: None),
        order_updates=order_updates or (lambda: None),
    )
