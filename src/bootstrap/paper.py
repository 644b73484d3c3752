"""The paper venue: Binance's public market data, the simulated exchange's matching engine.

Market rules come from `GET /api/v3/exchangeInfo` under EXCHANGE__REST_URL and prices from the
public streams under EXCHANGE__WS_URL (REST ticker polling while no stream is up). Orders, fills
and balances are the engine's, funded and charged by SIMULATOR__QUOTE_BALANCE / BASE_BALANCE /
MAKER_FEE / TAKER_FEE and kept in SIMULATOR__STATE_FILE like the default profile's. No key is
read and nothing is signed: the only client that talks to Binance here has no key to sign with.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TypeVar

import structlog

from adapters.monitoring.probe import VenueProbe
from bootstrap.market_data import market_streams, rest_root
from bootstrap.settings import Settings
from bootstrap.venues import Venue, funded_engine, open_book, rules_changed
from domain.errors import ConfigurationError, ExchangeUnavailable, RateLimited
from domain.ports import Clock

log = structlog.get_logger(__name__)
T = TypeVar("T")

FIRST_PRICE_WAIT_S = 10.0  # at start, how long to wait for a first trade before the bot asks anyway
START_BACKOFF_MAX_S = 60.0


@asynccontextmanager
async def paper_venue(settings: Settings, clock: Clock) -> AsyncIterator[Venue]:
    from adapters.binance.public_rest import PublicBinanceRest
    from adapters.simulated.paper import PaperExchange
    from adapters.simulated.state_store import SqliteStateStore

    ex, sim, symbol = settings.exchange, settings.simulator, settings.trading.symbol
    public = PublicBinanceRest(rest_root(ex), timeout_s=ex.request_timeout_s)
    log.info(
        "paper trading: Binance's public market data, simulated fills; no key is used",
        rest_url=rest_root(ex),
        symbol=symbol,
    )
    rules = await _patiently("exchangeInfo", lambda: public.market_rules(symbol), clock)
    store: SqliteStateStore | None = None
    try:
        store, engine = open_book(sim.state_file, symbol)
        if engine is not None:
            differences = rules_changed(engine.rules, rules, "Binance now")
            if differences:
                raise ConfigurationError(
                    "SIMULATOR__STATE_FILE",
                    f"{sim.state_file} holds a paper {symbol} book made under other market rules: "
                    f"{', '.join(differences)}; point SIMULATOR__STATE_FILE at a new file to start afresh",
                )
            log.info(
                "paper exchange restored",
                symbol=symbol,
                state_file=str(sim.state_file),
                open_orders=len(engine.open_orders()),
            )
        else:
            engine = funded_engine(rules, sim)
            if store is not None:
                store.save_book(engine)
                log.info("paper exchange: new book", symbol=symbol, state_file=str(sim.state_file))
        if engine.last_price is None:
            # A fresh book has no price until the first trade streams in; one unsigned ticker
            # read gives it one, so `trade` works at once and the grid starts without waiting.
            ticker = await _patiently("ticker", partial(public.fetch_ticker, symbol), clock)
            engine.move_to(ticker.last, ticker.timestamp)
            if store is not None:
                store.save_changes(engine)
        streams = market_streams(ex, symbol, clock, partial(public.fetch_ticker, symbol))
        exchange = PaperExchange(
            engine,
            streams.trades,
            clock,
            on_change=None if store is None else partial(store.save_changes, engine),
        )

        def stop() -> None:
            streams.close()
            exchange.close()

        async def first_price() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(exchange.wait_ready(), FIRST_PRICE_WAIT_S)

        try:
            yield Venue(
                "paper",
                exchange,
                exchange,
                exchange,
                background=(streams.run, exchange.run),
                stop=stop,
                ready=first_price,
                probe=VenueProbe(reconnects=lambda: streams.reconnects, market_data=streams.state),
            )
        finally:
            stop()
    finally:
        if store is not None:
            store.close()


async def _patiently(what: str, call: Callable[[], Awaitable[T]], clock: Clock) -> T:
    """A public read paper trading cannot start without: retried with backoff (a rate limit's own
    Retry-After) until it succeeds; cancelling the task (Ctrl-C) ends the wait."""
    attempt = 0
    while True:
        try:
            return await call()
        except (ExchangeUnavailable, RateLimited) as exc:
            attempt += 1
            wait = min(START_BACKOFF_MAX_S, 2.0**attempt) * (0.5 + random.random() / 2)
            if isinstance(exc, RateLimited) and exc.retry_after:
                wait = exc.retry_after
            log.warning(
                "venue unreachable at start-up; retrying", call=what, reason=str(exc), wait_s=round(wait, 1)
            )
            await clock.sleep(wait)
