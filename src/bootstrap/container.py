"""The composition root's container: the one place where adapters are chosen and wired.

The venue is picked by `exchange.kind` through a Selector over *factories* of async context
managers; a single Resource enters whichever one was chosen (Resources inside Selector branches
would all be opened by init_resources()).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import cast

from dependency_injector import containers, providers

from adapters import crashpoints
from adapters.clock import SystemClock
from adapters.monitoring.probe import VenueProbe
from adapters.persistence.database import Database, open_database
from application.grid_bot import GridBot, GridBotConfig
from bootstrap.grid_settings import grid_params, market_thresholds, risk_limits
from bootstrap.paper import paper_venue
from bootstrap.settings import Settings
from bootstrap.venues import Venue, binance_venue, simulated_venue
from domain.ports import BotObserver, ExchangeGateway


async def _database(url: str) -> AsyncIterator[Database]:
    async with open_database(url) as database:
        yield database


async def _enter_venue(venue_cm: AbstractAsyncContextManager[Venue]) -> AsyncIterator[Venue]:
    async with venue_cm as venue:
        yield venue


def grid_bot_config(settings: Settings, venue: Venue) -> GridBotConfig:
    risk, trading = settings.risk, settings.trading
    return GridBotConfig(
        symbol=trading.symbol,
        exchange=venue.name,
        grid=grid_params(settings),
        limits=risk_limits(settings),
        maker_fee=trading.maker_fee,
        taker_fee=trading.taker_fee,
        thresholds=market_thresholds(settings),
        volatility_window_s=risk.volatility_window_s,
        heartbeat_s=settings.log.heartbeat_s,
    )


def _build_bot(
    settings: Settings,
    venue: Venue,
    database: Database,
    clock: SystemClock,
    observer: BotObserver | None = None,
) -> GridBot:
    gateway: ExchangeGateway = venue.gateway
    if crashpoints.armed():  # GRIDBOT_CRASH_AT: the kill tests' points around sending an order
        gateway = cast("ExchangeGateway", crashpoints.CrashPointGateway(gateway))
    return GridBot(
        grid_bot_config(settings, venue),
        gateway=gateway,
        market_feed=venue.market_feed,
        order_feed=venue.order_feed,
        uow_factory=database.uow,
        clock=venue.clock or clock,
        observer=observer,
        feeds=None if venue.probe is None else venue_feeds(venue.probe),
    )


def venue_feeds(probe: VenueProbe) -> Callable[[], dict[str, Mapping[str, object]]]:
    """The venue's feeds' states by name, for the bot to note in its run (`status` shows them)."""

    def feeds() -> dict[str, Mapping[str, object]]:
        found = {"market_data": probe.market_data(), "order_updates": probe.order_updates()}
        return {name: state for name, state in found.items() if state is not None}

    return feeds


class Container(containers.DeclarativeContainer):
    config = providers.Configuration(strict=True)
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)

    database = providers.Resource(_database, url=config.database.url)

    venue_factory = providers.Selector(
        config.exchange.kind,
        simulated=providers.Factory(simulated_venue, settings=settings, clock=clock),
        binance=providers.Factory(binance_venue, settings=settings, clock=clock),
        paper=providers.Factory(paper_venue, settings=settings, clock=clock),
    )
    venue = providers.Resource(_enter_venue, venue_cm=venue_factory)

    grid_bot = providers.Factory(_build_bot, settings=settings, venue=venue, database=database, clock=clock)


def build_container(settings: Settings) -> Container:
    container = Container(settings=settings)
    container.config.from_dict(
        {
            "exchange": {"kind": settings.exchange.kind},
            "database": {"url": settings.database.url},
        }
    )
    return container
