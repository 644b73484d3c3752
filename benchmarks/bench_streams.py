"""Market-data messages per second through the stream adapter into the application.

Two figures, both for `BinanceMarketStreams` (decode with orjson, parse into domain events with
exact Decimals, de-duplicate, build the ticker, wake the consumer):

1. in process: pre-encoded combined-stream messages handed to the adapter's message handler, with a
   ticker consumer (the application's side) that runs between batches of 100 messages, as it does
   between socket reads; the same stream de-duplicated against a second copy (the standby's);
2. over a loopback WebSocket: a `websockets` server in another process sends the messages as
   fast as it can to the adapter's real connection (one connection, no standby), until the last
   trade arrives; the adapter and its consumer share this process's one core.

The mix is Binance's: bookTicker updates, trades and kline pushes, 5:4:1.

    PYTHONPATH=tests .venv/bin/python benchmarks/bench_streams.py [--messages 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import time
from typing import Any

import orjson
import structlog

from adapters.binance.streams import BinanceMarketStreams, StreamTimings
from adapters.clock import SystemClock

SYMBOL = "BTC/USDT"
START_MS = 1_780_000_000_000


def messages(count: int) -> list[bytes]:
    """`count` combined-stream messages: bookTicker, trade and kline 5:4:1, ids rising."""
    out: list[bytes] = []
    trade_id = update_id = 0
    for n in range(count):
        ms = START_MS + n
        price = f"{30000 + (n % 500) / 100:.2f}"
        kind = n % 10
        if kind < 5:
            update_id += 1
            data: dict[str, Any] = {
                "u": update_id,
                "s": "BTCUSDT",
                "b": price,
                "B": "1.25000000",
                "a": f"{float(price) + 0.01:.2f}",
                "A": "0.50000000",
            }
            stream = "btcusdt@bookTicker"
        elif kind < 9:
            trade_id += 1
            data = {
                "e": "trade",
                "E": ms,
                "s": "BTCUSDT",
                "t": trade_id,
                "p": price,
                "q": "0.00120000",
                "T": ms,
                "m": n % 2 == 0,
                "M": True,
            }
            stream = "btcusdt@trade"
        else:
            open_ms = ms - ms % 60_000
            data = {
                "e": "kline",
                "E": ms,
                "s": "BTCUSDT",
                "k": {
                    "t": open_ms,
                    "T": open_ms + 59_999,
                    "s": "BTCUSDT",
                    "i": "1m",
                    "f": 1,
                    "L": trade_id,
                    "o": "30000.00",
                    "c": price,
                    "h": "30010.00",
                    "l": "29990.00",
                    "v": "12.50000000",
                    "n": 100,
                    "x": False,
                    "q": "375000.00",
                    "V": "6.0",
                    "Q": "180000.0",
                    "B": "0",
                },
            }
            stream = "btcusdt@kline_1m"
        out.append(orjson.dumps({"stream": stream, "data": data}))
    return out


async def in_process(batch: list[bytes], *, copies: int) -> tuple[float, float, int, int]:
    feed = BinanceMarketStreams("ws://127.0.0.1:9", SYMBOL, SystemClock())
    seen = 0

    async def application() -> None:
        nonlocal seen
        async for _ in feed.tickers(SYMBOL):
            seen += 1

    consumer = asyncio.create_task(application())
    await asyncio.sleep(0)
    handle = feed._handle
    started, cpu_started = time.perf_counter(), time.process_time()
    for index, message in enumerate(batch):
        for _ in range(copies):
            handle(message)
        if index % 100 == 99:
            await asyncio.sleep(0)  # the consumer runs between socket reads
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    feed.close()
    await consumer
    return elapsed, cpu, seen, feed.duplicates


def _serve(port_queue: Any, count: int) -> None:
    from websockets.asyncio.server import serve

    payload = messages(count)

    async def handler(socket: Any) -> None:
        for message in payload:
            await socket.send(message.decode())
        await socket.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:
            port_queue.put(next(iter(server.sockets)).getsockname()[1])
            await asyncio.Future()

    asyncio.run(main())


async def over_socket(count: int) -> tuple[float, float, int]:
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    server = context.Process(target=_serve, args=(ports, count), daemon=True)
    server.start()
    port = ports.get(timeout=60)
    last_trade = sum(1 for n in range(count) if 5 <= n % 10 < 9)
    feed = BinanceMarketStreams(
        f"ws://127.0.0.1:{port}", SYMBOL, SystemClock(), timings=StreamTimings(standby=False, silence_s=60)
    )
    trades = 0
    done = asyncio.Event()

    async def application() -> None:
        nonlocal trades
        async for trade in feed.trades():
            trades += 1
            if trade.trade_id == last_trade:
                done.set()

    consumer = asyncio.create_task(application())
    runner = asyncio.create_task(feed.run())
    while feed.mode != "streams":  # noqa: ASYNC110 - a state reached over a real socket
        await asyncio.sleep(0.001)
    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.wait_for(done.wait(), 600)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    feed.close()
    await asyncio.gather(runner, consumer, return_exceptions=True)
    server.terminate()
    return elapsed, cpu, feed.messages


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    batch = messages(args.messages)
    print(
        f"{args.messages:,} combined-stream messages (bookTicker:trade:kline 5:4:1), cpu count {os.cpu_count()}"
    )
    await in_process(batch[:20_000], copies=1)  # warm-up
    for copies, label in ((1, "one connection"), (2, "primary + standby (each message twice)")):
        runs = [await in_process(batch, copies=copies) for _ in range(3)]
        elapsed, cpu, seen, duplicates = min(runs, key=lambda r: r[1])
        handled = args.messages * copies
        print(
            f"in process, {label}: {handled / cpu:,.0f} messages per CPU second "
            f"({cpu / handled * 1e6:.2f} us each; wall {handled / elapsed:,.0f}/s), "
            f"{args.messages / cpu:,.0f} distinct events per CPU second; "
            f"{seen:,} tickers reached the consumer, {duplicates:,} duplicates dropped"
        )
    elapsed, cpu, received = await over_socket(args.messages)
    print(
        f"over a loopback WebSocket (server in another process): {received / cpu:,.0f} messages per "
        f"CPU second of the adapter's process, {received / elapsed:,.0f}/s wall ({received:,} in {elapsed:.2f} s)"
    )
    print(f"load average during the run: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
