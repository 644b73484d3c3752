"""Tick-to-order latency: from a fill event leaving the loopback server on the user data stream to
the bot's counter-order request reaching the same server, beside the bare ccxt round trip.

Starts the loopback Binance stand-in (REST, market streams, WebSocket API) in this process, runs
the real bot (`python -m bootstrap --config config/testnet.toml run`) as a subprocess against it,
and moves the market between two neighbouring grid levels, one fill at a time: each move fills the
bot's resting order, whose counter-order the bot then places. Both timestamps are taken in this
process (perf_counter_ns): t0 just before the move that makes the fill (the server then pushes
the TRADE executionReport), t1 when the counter-order's POST /api/v3/order reaches the server.
Between fills the market waits for the bot to be idle, so each latency is measured alone.

Then, on the same server, the bare ccxt client: its create_order round trip, and the time from
calling create_order to the request reaching the server (the part of a round trip the bot's
tick-to-order also contains). What the bot adds = tick-to-order minus that.

    PYTHONPATH=tests .venv/bin/python benchmarks/bench_tick_to_order.py [--fills 2000]

Prints p50/p99/mean; no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from websockets.exceptions import ConnectionClosed

from support.binance_server import FakeBinance, RateLimit
from support.binance_server.streams import running_market_streams
from support.binance_server.ws_api import UserDataClient, UserDataServer

SYMBOL = "BTC/USDT"
ROOT = Path(__file__).resolve().parent.parent
PROFILE = os.environ.get("BENCH_PROFILE", "")  # a path: the bot runs under cProfile and writes there
LIMITS = (  # generous: the benchmark measures code, not the venue's throttling
    RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 10_000_000),
    RateLimit("ORDERS", "SECOND", 10, 10_000_000),
    RateLimit("ORDERS", "DAY", 1, 100_000_000),
    RateLimit("RAW_REQUESTS", "MINUTE", 5, 100_000_000),
)


class TimedBinance(FakeBinance):
    """Notes when each order placement reaches the server."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrivals: asyncio.Queue[tuple[int, str]] = asyncio.Queue()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and request.path.endswith("/order"):
            self.arrivals.put_nowait((time.perf_counter_ns(), request.path))
        return await super()._dispatch(request)


class TimedUserData(UserDataServer):
    """Notes when each TRADE executionReport has been written to a client's socket."""

    def __init__(self, fake: FakeBinance) -> None:
        super().__init__(fake)
        self.trades_sent: asyncio.Queue[int] = asyncio.Queue()

    async def _send(self, client: UserDataClient) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                text, _ = await client.outbox.get()
                await client.socket.send(text)
                if '"x": "TRADE"' in text or '"x":"TRADE"' in text:
                    self.trades_sent.put_nowait(time.perf_counter_ns())


def quantiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return (
        statistics.median(ordered),
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        statistics.fmean(ordered),
    )


async def next_arrival(fake: TimedBinance, within: float = 10.0) -> int:
    arrived, _ = await asyncio.wait_for(fake.arrivals.get(), within)
    return arrived


async def idle(fake: TimedBinance, quiet_s: float = 0.02) -> None:
    """Wait until no request has reached the server for `quiet_s` (the bot has booked what it
    did and gone back to listening)."""
    while True:
        seen = len(fake.requests)
        await asyncio.sleep(quiet_s)
        if len(fake.requests) == seen:
            return


async def bot_latencies(fake: TimedBinance, fills: int, warmup: int) -> tuple[list[float], list[float], int]:
    engine = fake.book(SYMBOL).engine
    ws_api = TimedUserData(fake)
    await ws_api.start()
    async with running_market_streams(fake) as streams:
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT / "src"),
                "EXCHANGE__REST_URL": fake.base_url,
                "EXCHANGE__WS_URL": streams.url,
                "EXCHANGE__WS_API_URL": ws_api.url,
                "EXCHANGE__API_KEY": "test-api-key",
                "EXCHANGE__API_SECRET": "test-api-secret",
                "DATABASE__URL": f"sqlite+aiosqlite:///{tmp}/bench.sqlite3",
                "GRID__LOWER": "29000",
                "GRID__UPPER": "31000",
                "GRID__LEVELS": "21",
                "GRID__INVESTMENT": "1000",
                "LOG__LEVEL": "WARNING",
            }
            profile = ["-m", "cProfile", "-o", PROFILE] if PROFILE else []
            bot = await asyncio.create_subprocess_exec(
                sys.executable,
                *profile,
                "-m",
                "bootstrap",
                "--config",
                "config/testnet.toml",
                "run",
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                await asyncio.wait_for(ws_api.wait_for_subscriptions(1), 60)
                while len(engine.open_orders()) < 20:  # noqa: ASYNC110 - the ladder (20 of 21 levels), on the venue
                    await asyncio.sleep(0.05)
                await idle(fake, 0.5)
                while not fake.arrivals.empty():
                    fake.arrivals.get_nowait()
                buys = sorted(o.price for o in engine.open_orders() if o.side.value == "buy" and o.price)
                price = buys[-1]
                from_socket: list[float] = []
                from_move: list[float] = []
                for i in range(warmup + fills):
                    while not ws_api.trades_sent.empty():
                        ws_api.trades_sent.get_nowait()
                    start = time.perf_counter_ns()
                    fake.set_price(SYMBOL, price)  # fills the order resting there
                    arrived = await next_arrival(fake)
                    sent = ws_api.trades_sent.get_nowait()
                    if i >= warmup:
                        from_socket.append((arrived - sent) / 1e6)
                        from_move.append((arrived - start) / 1e6)
                    await idle(fake)
                    placed = [o for o in engine.open_orders() if o.price is not None]
                    counter = max(placed, key=lambda o: o.created_at)
                    assert counter.price is not None
                    price = counter.price
                fell_back = ws_api.subscriptions_opened - 1
            finally:
                bot.terminate()
                await bot.wait()
                await ws_api.stop()
    return from_socket, from_move, fell_back


async def ccxt_latencies(fake: TimedBinance, calls: int, warmup: int) -> tuple[list[float], list[float]]:
    import ccxt.async_support as ccxt_async

    from adapters.binance.client import SPOT_ONLY_OPTIONS

    raw = ccxt_async.binance(
        {
            "apiKey": "test-api-key",
            "secret": "test-api-secret",
            "enableRateLimit": False,
            "options": dict(SPOT_ONLY_OPTIONS),
        }
    )
    raw.urls["api"]["public"] = raw.urls["api"]["private"] = fake.api_url
    round_trips: list[float] = []
    to_arrival: list[float] = []
    try:
        await raw.load_markets()
        for i in range(warmup + calls):
            while not fake.arrivals.empty():
                fake.arrivals.get_nowait()
            start = time.perf_counter_ns()
            placed = await raw.create_order(
                SYMBOL, "limit", "buy", "0.001", "20000", {"clientOrderId": f"raw-{i}"}
            )
            done = time.perf_counter_ns()
            arrived, _ = fake.arrivals.get_nowait()
            if i >= warmup:
                round_trips.append((done - start) / 1e6)
                to_arrival.append((arrived - start) / 1e6)
            await raw.cancel_order(placed["id"], SYMBOL)
    finally:
        await raw.close()
    return round_trips, to_arrival


async def run(fills: int, warmup: int) -> None:
    fake = TimedBinance(prices={SYMBOL: Decimal("30000.00")}, rate_limits=LIMITS)
    await fake.start()
    try:
        bot, bot_from_move, resubscribed = await bot_latencies(fake, fills, warmup)
        round_trips, to_arrival = await ccxt_latencies(fake, fills, warmup)
    finally:
        await fake.stop()
    rows = (
        ("bot: fill on the socket -> counter-order at server", bot),
        ("bot: market move -> counter-order at server", bot_from_move),
        ("ccxt: create_order round trip", round_trips),
        ("ccxt: create_order call -> request at server", to_arrival),
    )
    print(f"\nTick-to-order on loopback, {fills} fills ({warmup} warm-up), ms\n")
    print(f"{'':<52}{'p50':>8}{'p99':>8}{'mean':>8}")
    for name, values in rows:
        p50, p99, mean = quantiles(values)
        print(f"{name:<52}{p50:>8.3f}{p99:>8.3f}{mean:>8.3f}")
    added = quantiles(bot)[0] - quantiles(to_arrival)[0]
    print(f"\nwhat the bot adds at p50 (tick-to-order minus ccxt call->server): {added:.3f} ms")
    if resubscribed:
        print(f"(the user data stream was resubscribed {resubscribed} times during the run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fills", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    asyncio.run(run(args.fills, args.warmup))


if __name__ == "__main__":
    main()
