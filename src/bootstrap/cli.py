"""Command line: `python -m bootstrap [--config PATH] [run|status|trade] ...`.

argparse (standard library) keeps `--help` instant; everything heavy (pydantic, SQLAlchemy,
structlog, the adapters) is imported only once a command actually runs.
Exit codes: 0 done, 1 the venue or the bot failed (reason printed), 2 bad configuration or usage,
or another bot already runs this grid.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.persistence.lease import LeaseRow
    from application.status import StatusReport
    from bootstrap.settings import Settings

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bootstrap",
        description="Grid-trading bot for Binance spot. With no command, runs the bot.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    config_help = "profile TOML file (default: $BOT_CONFIG, else config/default.toml)"
    parser.add_argument("--config", metavar="PATH", help=config_help)
    # --config is also accepted after the command; there, it is only set when given.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=config_help)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run", parents=[after], help="run the grid bot until Ctrl-C, SIGTERM or --duration"
    )
    run.add_argument(
        "--duration", type=_positive_float, metavar="SECONDS", help="stop after this many seconds"
    )
    run.add_argument(
        "--health-port",
        type=_port,
        metavar="PORT",
        help="serve GET /health and /metrics on this port (HEALTH__HOST, default 127.0.0.1; 0: a free port)",
    )

    status = commands.add_parser("status", parents=[after], help="show the latest run from the database")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--run-id", help="a specific run instead of the latest: its id, or the start of it (as in the logs)"
    )

    backtest = commands.add_parser(
        "backtest",
        parents=[after],
        help="replay candles through the grid (the live bot's core) and report how it would have done",
    )
    backtest.add_argument(
        "--data",
        metavar="FILE",
        help="1-minute candles: a Binance kline CSV or its .zip, or CSV/JSON rows "
        "[open_time, open, high, low, close, volume] (default: a seeded synthetic year)",
    )
    backtest.add_argument(
        "--from", dest="start", metavar="DATE", help="first day (or ISO time, UTC) to replay"
    )
    backtest.add_argument(
        "--to", dest="end", metavar="DATE", help="last day to replay (a date includes that day)"
    )
    backtest.add_argument("--json", action="store_true", help="the report as JSON (decimals as strings)")
    backtest.add_argument(
        "--plot", metavar="FILE", help="draw price, fills and equity to a .png or .html file"
    )
    backtest.add_argument(
        "--db", metavar="URL", help="keep the run's books in this database (default: in memory)"
    )
    backtest.add_argument(
        "--plain",
        action="store_true",
        help="step every price point instead of skipping quiet stretches (same results, slower; for checking)",
    )
    backtest.add_argument(
        "--sweep",
        action="append",
        metavar="KEY=V1,V2",
        help="run every combination of these settings (repeatable), e.g. GRID__LEVELS=10,20,50",
    )
    backtest.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="local processes for a sweep (default: one per core)",
    )
    backtest.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run the sweep on this Dask distributed scheduler (tcp://host:8786)",
    )

    trade = commands.add_parser("trade", parents=[after], help="place one order and record it")
    trade.add_argument("--side", required=True, choices=["buy", "sell"])
    trade.add_argument("--amount", required=True, help="base quantity, e.g. 0.001")
    trade.add_argument("--type", default="market", choices=["market", "limit"], dest="order_type")
    trade.add_argument("--price", help="limit price (required for --type limit)")
    trade.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


class _Version(argparse.Action):
    """--version, looked up only when asked for (importlib.metadata costs every other command 40 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        sys.stdout.write(f"{parser.prog} {_version()}\n")
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gridbot")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be within 0..65535")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than zero")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than zero")
    return value


def _profile_path(arg: str | None) -> Path:
    return Path(arg or os.environ.get("BOT_CONFIG") or "config/default.toml")


def _fail(key_or_kind: str, message: str, code: int) -> int:
    sys.stderr.write(f"error: {key_or_kind}: {message}\n" if key_or_kind else f"error: {message}\n")
    return code


_EARLY_SIGNALS: list[int] = []


def _remember_signal(signum: int, _frame: object) -> None:
    _EARLY_SIGNALS.append(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "run"
    if command == "run":
        # Until the bot's own handlers are in place (imports take a second), Ctrl-C and SIGTERM
        # are remembered, not raised in the middle of an import: the bot then stops cleanly.
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _remember_signal)

    from domain.errors import ConfigurationError, DomainError, GridInUse

    try:
        settings = _load(args)
        if getattr(args, "health_port", None) is not None:
            health = settings.health.model_copy(update={"port": args.health_port})
            settings = settings.model_copy(update={"health": health})
        if command != "backtest" or args.db or args.sweep:  # a plain backtest logs nothing: it reports
            from adapters.logging import configure_logging

            configure_logging(level=settings.log.level, fmt=settings.log.format, secrets=_secrets(settings))
        if command == "status":
            return _status(settings, as_json=args.json, run_id=args.run_id)
        if command == "trade":
            return _trade(settings, args)
        if command == "backtest":
            return _backtest(settings, args)
        return _run(settings, getattr(args, "duration", None))
    except ConfigurationError as exc:
        return _fail(exc.key, exc.problem, EXIT_CONFIG)
    except GridInUse as exc:
        return _fail("", str(exc), EXIT_CONFIG)
    except DomainError as exc:
        return _fail("", _plain(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        return EXIT_FAILURE


def _load(args: argparse.Namespace) -> Settings:
    from bootstrap.settings import load_settings

    return load_settings(_profile_path(args.config))


def _secrets(settings: Settings) -> list[str]:
    alerts = settings.alerts
    found = []
    for secret in (
        settings.exchange.api_key,
        settings.exchange.api_secret,
        alerts.telegram_token,
        alerts.webhook_url,
        alerts.discord_webhook_url,
    ):
        if secret is not None and secret.get_secret_value():
            found.append(secret.get_secret_value())
    if alerts.discord_webhook_url is not None:  # the webhook's token is its last path segment
        found.append(alerts.discord_webhook_url.get_secret_value().rstrip("/").rsplit("/", 1)[-1])
    return found


def _plain(exc: Exception) -> str:
    from domain.errors import AuthenticationError, InsufficientFunds, InvalidOrder, RateLimited

    prefix = {
        AuthenticationError: "the venue refused the API key",
        InsufficientFunds: "not enough balance",
        InvalidOrder: "the venue refused the order",
        RateLimited: "rate limited by the venue",
    }
    for kind, words in prefix.items():
        if isinstance(exc, kind):
            return f"{words}: {exc}"
    return str(exc)


# --------------------------------------------------------------------------- run
def _run(settings: Settings, duration: float | None) -> int:
    import asyncio

    from bootstrap.runner import run_bot

    asyncio.run(run_bot(settings, duration=duration, stopped_early=lambda: bool(_EARLY_SIGNALS)))
    return EXIT_OK


# --------------------------------------------------------------------------- status
def _status(settings: Settings, *, as_json: bool, run_id: str | None) -> int:
    import asyncio

    from adapters.clock import SystemClock
    from adapters.persistence.database import open_database
    from adapters.persistence.lease import live_holder
    from application.status import grid_status
    from bootstrap.runner import grid_lease_name

    async def read() -> tuple[StatusReport, LeaseRow | None]:
        async with open_database(settings.database.url) as database:
            report = await grid_status(database.uow, run_id=run_id, symbol=settings.trading.symbol)
            holder = await live_holder(database.engine, grid_lease_name(settings), SystemClock())
            return report, holder

    report, holder = asyncio.run(read())
    if report.run is None and run_id is not None:
        sys.stderr.write(f"error: no run with id {run_id!r} (or starting with it) in this database\n")
        return EXIT_FAILURE
    if as_json:
        import json

        sys.stdout.write(json.dumps(status_to_dict(report, holder), indent=2) + "\n")
    else:
        sys.stdout.write(render_status(report, holder))
    return EXIT_OK


def _dec(value: Any) -> str | None:
    return None if value is None else f"{value.normalize():f}" if value else "0"


def _held_by(report: StatusReport, holder: LeaseRow | None) -> dict[str, Any] | None:
    """The bot that runs the report's run now, if one does (a running run with none was left by a
    bot that was killed or crashed)."""
    run = report.run
    if run is None or holder is None or run.status.value != "running":
        return None
    return {
        "pid": holder.pid,
        "host": holder.host,
        "since": holder.acquired_at.isoformat(),
        "heartbeat_at": holder.heartbeat_at.isoformat(),
    }


_GRID_PARAMS = ("levels", "quantity", "start_price", "investment", "spacing")


def _grid_settings(params: dict[str, str]) -> dict[str, Any]:
    """The run's grid as it was laid: its level prices, per-level quantity, start price,
    investment and spacing (what the run's params keep of them; a manual trade's run has none)."""
    grid: dict[str, Any] = {key: params[key] for key in _GRID_PARAMS if key in params}
    if "levels" in grid:
        grid["levels"] = grid["levels"].split(",")
    return grid


def status_to_dict(report: StatusReport, holder: LeaseRow | None = None) -> dict[str, Any]:
    run = report.run
    return {
        "run": None
        if run is None
        else {
            "run_id": run.run_id,
            "symbol": run.symbol,
            "exchange": run.exchange,
            "status": run.status.value,
            "started_at": run.started_at.isoformat(),
            "stopped_at": run.stopped_at.isoformat() if run.stopped_at else None,
            "stop_reason": run.stop_reason,
            "held_by": _held_by(report, holder),
            "grid": _grid_settings(run.params),
        },
        "open_orders": [
            {
                "client_order_id": o.client_order_id,
                "exchange_order_id": o.exchange_order_id,
                "side": o.side.value,
                "type": o.type.value,
                "level": o.level,
                "price": _dec(o.price),
                "amount": _dec(o.amount),
                "filled": _dec(o.filled),
                "status": o.status.value,
            }
            for o in sorted(report.open_orders, key=lambda o: (o.price is None, o.price or 0, o.level))
        ],
        "fills": report.fills,
        "completed_cycles": report.completed_cycles,
        "realized_pnl": _dec(report.realized_pnl),
        "base_position": _dec(report.position.base),
        "position_cost": _dec(report.position.cost),
        "average_cost": _dec(report.position.average_cost),
        "last_price": _dec(report.position.last_price),
        "last_price_source": report.position.last_price_source,
        "unrealized_pnl": _dec(report.position.unrealized_pnl),
        "equity_change": _dec(report.equity_change),
        "fees": {asset: _dec(amount) for asset, amount in sorted(report.fees.items())},
        "recent_fills": [
            {
                "trade_id": b.fill.trade_id,
                "client_order_id": b.fill.client_order_id,
                "side": b.fill.side.value,
                "price": _dec(b.fill.price),
                "amount": _dec(b.fill.amount),
                "fee": _dec(b.fill.fee),
                "fee_asset": b.fill.fee_asset,
                "realized_pnl": _dec(b.realized_pnl),
                "timestamp": b.fill.timestamp.isoformat(),
            }
            for b in report.recent_fills
        ],
    }


_PRICE_SOURCES = {"market": "last market price", "fill": "price of the latest fill"}


def _position_lines(report: StatusReport, base_asset: str, quote_asset: str) -> list[str]:
    position = report.position
    held = f"Position   {_dec(position.base)} {base_asset}"
    if position.average_cost is not None:
        held += f"  (average cost {_dec(position.average_cost)} {quote_asset}, cost {_dec(position.cost)} {quote_asset})"
    if position.last_price is None:
        return [
            held,
            "Last price unknown (no market price recorded, no fill yet)",
            "Unrealized unknown",
            "Equity     unknown",
        ]
    source = _PRICE_SOURCES.get(position.last_price_source or "", "")
    return [
        held,
        f"Last price {_dec(position.last_price)} {quote_asset}  ({source})",
        f"Unrealized {_dec(position.unrealized_pnl)} {quote_asset}",
        f"Equity     {_dec(report.equity_change)} {quote_asset}  (realized + unrealized)",
    ]


def _status_line(report: StatusReport, holder: LeaseRow | None) -> str:
    run = report.run
    assert run is not None
    line = f"Status     {run.status.value}" + (f": {run.stop_reason}" if run.stop_reason else "")
    if run.status.value != "running":
        return line
    held = _held_by(report, holder)
    if held is None:
        return line + " (but no bot runs it now: the last one was killed or crashed; `run` resumes it)"
    return line + f" (process {held['pid']} on {held['host']})"


def render_status(report: StatusReport, holder: LeaseRow | None = None) -> str:
    run = report.run
    if run is None:
        return "No run recorded yet: start the bot with `python -m bootstrap run`.\n"
    base_asset, quote_asset = run.symbol.split("/")
    lines = [
        f"Run        {run.run_id}  ({run.symbol} on {run.exchange})",
        _status_line(report, holder),
        f"Started    {run.started_at:%Y-%m-%d %H:%M:%S} UTC"
        + (f", stopped {run.stopped_at:%Y-%m-%d %H:%M:%S} UTC" if run.stopped_at else ""),
        f"Fills      {report.fills}  (completed cycles: {report.completed_cycles})",
        f"Realized   {_dec(report.realized_pnl)} {quote_asset}",
        *_position_lines(report, base_asset, quote_asset),
        "Fees       " + (", ".join(f"{_dec(v)} {k}" for k, v in sorted(report.fees.items())) or "none"),
        f"Open orders ({len(report.open_orders)}):",
    ]
    for o in sorted(report.open_orders, key=lambda o: o.price or 0, reverse=True):
        lines.append(
            f"  L{o.level:>3}  {o.side.value:<4}  {_dec(o.amount):>12} @ {_dec(o.price) or 'market':>12}  {o.status.value}"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- backtest
def _backtest(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.backtest.data import DataError
    from bootstrap import backtest

    try:
        if args.sweep:
            from bootstrap.sweep import sweep_command

            return sweep_command(_profile_path(args.config), args)
        if args.cluster is not None or args.workers is not None:
            return _fail("--cluster/--workers", "only apply to a --sweep", EXIT_CONFIG)
        return backtest.command(
            settings,
            data=args.data,
            start=args.start,
            end=args.end,
            as_json=args.json,
            plot=args.plot,
            db=args.db,
            plain=args.plain,
        )
    except DataError as exc:
        return _fail("", str(exc), EXIT_CONFIG)


# --------------------------------------------------------------------------- trade
def _trade(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from bootstrap.runner import place_one_trade

    return asyncio.run(place_one_trade(settings, args))
