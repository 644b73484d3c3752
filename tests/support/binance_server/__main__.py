"""`PYTHONPATH=tests python -m support.binance_server --port N [--price P]`: serve until SIGTERM.

With `--zigzag 29500,30500 --zigzag-speed 200` the market of --symbol walks from --price to each
turning point in turn, forever, at that many price units per second (see `price_path.ZigZag`).

Prints exactly one line to stdout, "listening on http://127.0.0.1:PORT", once it accepts
connections (for e2e tests that start the bot as a subprocess, and for benchmarks); logs go to
stderr. With --streams it also serves the market streams over WebSockets (every price move a
trade) and says where on stderr: "streams on ws://127.0.0.1:PORT" (EXCHANGE__WS_URL). With
--ws-api it also serves the WebSocket API's user data stream (executionReports of the account's
orders) and says "ws-api on ws://127.0.0.1:PORT/ws-api/v3" on stderr (EXCHANGE__WS_API_URL).
--streams-port and --ws-api-port fix their ports (a restarted server keeps its URLs; its state is
in memory, so a restart is an exchange reset). With --drop-every SECONDS every WebSocket connection (market streams and WebSocket API) is cut
(TCP abort) every SECONDS, for runs that must survive reconnecting.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from decimal import Decimal, InvalidOperation

import structlog

from support.binance_server.app import FakeBinance
from support.binance_server.price_path import ZigZag, drive, parse_turns
from support.binance_server.streams import MarketStreamServer
from support.binance_server.ws_api import UserDataServer


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _turns(text: str) -> tuple[Decimal, ...]:
    try:
        turns = parse_turns(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected PRICE,PRICE,..., got {text!r}") from None
    if not turns or any(not t.is_finite() or t <= 0 for t in turns):
        raise argparse.ArgumentTypeError(f"expected positive PRICE,PRICE,..., got {text!r}")
    return turns


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _balance(text: str) -> tuple[str, Decimal]:
    asset, sep, amount = text.partition("=")
    if not sep or not asset:
        raise argparse.ArgumentTypeError(f"expected ASSET=AMOUNT, got {text!r}")
    return asset.upper(), _decimal(amount)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m support.binance_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--symbol", default="BTC/USDT")
    parser.add_argument(
        "--price", type=_decimal, default=Decimal("30000.00"), help="starting price of --symbol"
    )
    parser.add_argument(
        "--balance", type=_balance, action="append", default=[], help="ASSET=AMOUNT, repeatable"
    )
    parser.add_argument(
        "--zigzag", type=_turns, metavar="P1,P2,...", help="walk the price through these turning points"
    )
    parser.add_argument(
        "--zigzag-speed", type=_decimal, default=Decimal("200"), help="price units per second"
    )
    parser.add_argument("--zigzag-tick-s", type=float, default=0.1, help="seconds between price moves")
    parser.add_argument("--api-key", default="test-api-key")
    parser.add_argument("--api-secret", default="test-api-secret")
    parser.add_argument("--weight-limit", type=int, default=6000)
    parser.add_argument("--streams", action="store_true", help="also serve the WebSocket market streams")
    parser.add_argument("--ws-api", action="store_true", help="also serve the WebSocket API user data stream")
    parser.add_argument(
        "--streams-port", type=int, default=0, help="the market streams' port (0: a free one)"
    )
    parser.add_argument("--ws-api-port", type=int, default=0, help="the WebSocket API's port (0: a free one)")
    parser.add_argument(
        "--drop-every",
        type=_seconds,
        metavar="SECONDS",
        help="cut every WebSocket connection (streams and ws-api) every SECONDS",
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return parser


async def _serve(args: argparse.Namespace) -> None:
    server = FakeBinance(
        api_key=args.api_key,
        api_secret=args.api_secret,
        balances=dict(args.balance) or None,
        prices={args.symbol: args.price},
        weight_limit=args.weight_limit,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    url = await server.start(args.host, args.port)
    walker: asyncio.Task[int] | None = None
    dropper: asyncio.Task[None] | None = None
    streams = MarketStreamServer(server) if args.streams else None
    ws_api = UserDataServer(server) if args.ws_api else None
    try:
        if streams is not None:
            sys.stderr.write(f"streams on {await streams.start(args.host, args.streams_port)}\n")
            sys.stderr.flush()
        if ws_api is not None:
            sys.stderr.write(f"ws-api on {await ws_api.start(args.host, args.ws_api_port)}\n")
            sys.stderr.flush()
        if args.drop_every is not None:
            dropper = asyncio.create_task(_drop_every(args.drop_every, streams, ws_api))
        sys.stdout.write(f"listening on {url}\n")
        sys.stdout.flush()
        if args.zigzag:
            path = ZigZag(args.price, args.zigzag, args.zigzag_speed, tick_s=args.zigzag_tick_s)
            walker = asyncio.create_task(drive(server, args.symbol, path.prices(), tick_s=path.tick_s))
        await stop.wait()
    finally:
        for task in (walker, dropper):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if ws_api is not None:
            await ws_api.stop()
        if streams is not None:
            await streams.stop()
        await server.stop()


async def _drop_every(
    interval_s: float, streams: MarketStreamServer | None, ws_api: UserDataServer | None
) -> None:
    while True:
        await asyncio.sleep(interval_s)
        for server in (streams, ws_api):
            if server is not None:
                server.drop()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, args.log_level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
