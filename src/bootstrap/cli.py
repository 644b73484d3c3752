"""Command line: `gridbot` or `python -m bootstrap [--config PATH] COMMAND ...`.

argparse (standard library) keeps `--help` instant; everything heavy (pydantic, SQLAlchemy,
structlog, the adapters) is imported only once a command actually runs.
Exit codes: 0 done, 1 the venue or the bot failed (reason printed), 2 bad configuration or usage,
or another bot already runs this grid.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from adapters.persistence.lease import LeaseRow
    from application.status import ManualTrade, RunSummary, StatusReport
    from bootstrap.settings import ReadSettings, Settings

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
_Item = TypeVar("_Item")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridbot" if Path(sys.argv[0]).name == "gridbot" else "python -m bootstrap",
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

    status = commands.add_parser(
        "status",
        parents=[after],
        help="show the latest grid run from the database (no exchange access, no API keys needed)",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--run-id",
        metavar="ID",
        help="a specific run instead of the latest: its id, or the start of it (as in the logs)",
    )
    status.add_argument(
        "--manual",
        action="store_true",
        help="list the orders placed by hand with `trade` instead of the grid",
    )
    status.add_argument(
        "--limit",
        type=_positive_int,
        default=20,
        metavar="N",
        help="with --manual: at most N orders (default 20)",
    )

    runs = commands.add_parser(
        "runs", parents=[after], help="list the grid runs in the database, newest first (no exchange access)"
    )
    runs.add_argument("--json", action="store_true", help="machine-readable output")
    runs.add_argument(
        "--limit", type=_positive_int, default=20, metavar="N", help="at most N runs (default 20)"
    )

    stop = commands.add_parser(
        "stop",
        parents=[after],
        help="stop the bot running this grid (it is signalled and waited for); optionally cancel the grid's orders",
    )
    stop.add_argument(
        "--cancel-orders",
        action="store_true",
        help="also cancel the grid's open orders on the exchange and close the run (it is not resumed)",
    )
    stop.add_argument(
        "--yes", action="store_true", help="confirm cancelling the orders of a grid no bot is running"
    )
    stop.add_argument(
        "--run-id", metavar="ID", help="a specific grid run instead of the latest (its id or start)"
    )
    stop.add_argument(
        "--wait",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the running bot to stop (default 60)",
    )

    cancel = commands.add_parser(
        "cancel", parents=[after], help="cancel one order placed with `trade`, and book how it ended"
    )
    cancel.add_argument(
        "order", metavar="ORDER", help="its client order id (gb-...) or the exchange's order id"
    )
    cancel.add_argument("--json", action="store_true", help="machine-readable output")

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

    trade = commands.add_parser(
        "trade", parents=[after], help="place one order by hand and book it (see it with `status --manual`)"
    )
    trade.add_argument("--side", required=True, choices=["buy", "sell"], help="buy or sell the base asset")
    trade.add_argument(
        "--amount", required=True, help="base quantity, e.g. 0.001 (rounded down to the market's step)"
    )
    trade.add_argument(
        "--type",
        default="market",
        choices=["market", "limit"],
        dest="order_type",
        help="market (default) or limit",
    )
    trade.add_argument(
        "--price", help="limit price (required for --type limit; moved to the safe side of the tick)"
    )
    trade.add_argument(
        "--dry-run",
        action="store_true",
        help="check the order against the market's filters and the balance, print it, send nothing",
    )
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
    """The one line that ends a failed command; what it logged before is not printed."""
    if "adapters.logging" in sys.modules:
        sys.modules["adapters.logging"].discard_held_lines()
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
        if hasattr(signal, "SIGUSR1"):  # `stop --cancel-orders` before the bot's handler is in place
            signal.signal(signal.SIGUSR1, _remember_signal)

    from domain.errors import ConfigurationError, DomainError, GridInUse

    try:
        code = _command(args, command)
    except ConfigurationError as exc:
        return _fail(exc.key, exc.problem, EXIT_CONFIG)
    except GridInUse as exc:
        return _fail("", str(exc), EXIT_CONFIG)
    except DomainError as exc:
        return _fail("", _plain(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        _release_logs()
        return EXIT_FAILURE
    if code == EXIT_OK:
        _release_logs()
    else:  # the command wrote its `error:` line: what it logged before is not printed
        _discard_logs()
    return code


def _command(args: argparse.Namespace, command: str) -> int:
    if command in _READING:
        return _reading_command(args, command)
    settings = _load(args)
    if getattr(args, "health_port", None) is not None:
        health = settings.health.model_copy(update={"port": args.health_port})
        settings = settings.model_copy(update={"health": health})
    if command != "backtest" or args.db or args.sweep:  # a plain backtest logs nothing: it reports
        from adapters.logging import configure_logging

        configure_logging(
            level=settings.log.level, fmt=settings.log.format, secrets=_secrets(settings), hold=True
        )
    if command == "trade":
        return _trade(settings, args)
    if command == "cancel":
        return _cancel(settings, args)
    if command == "backtest":
        return _backtest(settings, args)
    return _run(settings, getattr(args, "duration", None))


_READING = frozenset({"status", "runs", "stop"})


def _reading_command(args: argparse.Namespace, command: str) -> int:
    """`status`, `runs` and `stop` read the database only: no API keys, no valid grid needed
    (`stop --cancel-orders` loads the whole settings only when it is about to cancel)."""
    from adapters.logging import configure_logging
    from bootstrap.settings import load_read_settings

    settings = load_read_settings(_profile_path(args.config))
    key = settings.exchange.api_key
    secrets = [key.get_secret_value()] if key is not None and key.get_secret_value() else []
    configure_logging(level=settings.log.level, fmt=settings.log.format, secrets=secrets, hold=True)
    if command == "runs":
        return _runs(settings, as_json=args.json, limit=args.limit)
    if command == "stop":
        return _stop(settings, args)
    if args.manual:
        return _manual(settings, as_json=args.json, limit=args.limit)
    return _status(settings, as_json=args.json, run_id=args.run_id)


def _discard_logs() -> None:
    if "adapters.logging" in sys.modules:
        sys.modules["adapters.logging"].discard_held_lines()


def _release_logs() -> None:
    """Print the log lines held back while the command started (see adapters.logging)."""
    if "adapters.logging" in sys.modules:
        sys.modules["adapters.logging"].release_held_lines()


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
def _status(settings: ReadSettings, *, as_json: bool, run_id: str | None) -> int:
    import asyncio

    from adapters.clock import SystemClock
    from adapters.persistence.database import open_database
    from adapters.persistence.lease import live_holder, live_holders_like
    from application.status import grid_status
    from bootstrap.runner import grid_lease_name

    async def read() -> tuple[StatusReport, LeaseRow | None]:
        async with open_database(settings.database.url) as database:
            report = await grid_status(database.uow, run_id=run_id, symbol=settings.trading.symbol)
            key = settings.exchange.api_key
            if settings.exchange.kind != "binance" or (key is not None and key.get_secret_value()):
                holder = await live_holder(database.engine, grid_lease_name(settings), SystemClock())
                return report, holder
            # no key to name the account's lease: the one bot trading this symbol on this venue, if one
            prefix = f"binance-{'testnet' if settings.exchange.testnet else 'live'}-"
            holders = await live_holders_like(
                database.engine, SystemClock(), prefix=prefix, suffix=f"/{settings.trading.symbol}"
            )
            return report, holders[0] if len(holders) == 1 else None

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
            "feeds": _feeds_dict(report),
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


def _feeds_dict(report: StatusReport) -> dict[str, Any] | None:
    """The feeds the running bot last noted (None for a run no bot runs now)."""
    from application.status import feeds_of

    run = report.run
    if run is None or run.status.value != "running":
        return None
    note = feeds_of(run.params)
    return None if note is None else {"noted_at": note.noted_at, **note.feeds}


_FEED_NAMES = {"market_data": "market data", "order_updates": "order updates"}


def _feeds_line(report: StatusReport) -> list[str]:
    feeds = _feeds_dict(report)
    if not feeds:
        return []
    parts = []
    for name, state in feeds.items():
        if name == "noted_at" or not isinstance(state, dict):
            continue
        part = f"{_FEED_NAMES.get(name, name)} {state.get('mode')}"
        details = []
        if state.get("last_message_at"):
            details.append(f"last message {_clock_time(state['last_message_at'])}")
        if state.get("fell_back_at"):
            details.append(f"fell back {_clock_time(state['fell_back_at'])}")
        if state.get("last_error"):
            details.append(str(state["last_error"]))
        parts.append(part + (f" ({', '.join(details)})" if details else ""))
    return [f"Feeds      {'; '.join(parts)}  [noted {_clock_time(str(feeds['noted_at']))}]"]


def _clock_time(iso: object) -> str:
    """An ISO time as HH:MM:SS (UTC), or as given when it is not one."""
    from datetime import UTC, datetime

    try:
        return f"{datetime.fromisoformat(str(iso)).astimezone(UTC):%H:%M:%S}"
    except ValueError:
        return str(iso)


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
        *_feeds_line(report),
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


# --------------------------------------------------------------------------- runs
def _runs(settings: ReadSettings, *, as_json: bool, limit: int) -> int:
    from application.status import list_runs

    return _listing(
        settings, lambda uow: list_runs(uow, limit=limit), run_to_dict, render_runs, as_json=as_json
    )


def _listing(
    settings: ReadSettings,
    query: Callable[[Any], Awaitable[list[_Item]]],
    to_dict: Callable[[_Item], dict[str, Any]],
    render: Callable[[list[_Item]], str],
    *,
    as_json: bool,
) -> int:
    """A command that lists what `query` reads from the database: as JSON, or rendered."""
    import asyncio

    from adapters.persistence.database import open_database

    async def read() -> list[_Item]:
        async with open_database(settings.database.url) as database:
            return await query(database.uow)

    items = asyncio.run(read())
    if as_json:
        import json

        sys.stdout.write(json.dumps([to_dict(item) for item in items], indent=2) + "\n")
    else:
        sys.stdout.write(render(items))
    return EXIT_OK


def run_to_dict(summary: RunSummary) -> dict[str, Any]:
    run = summary.run
    return {
        "run_id": run.run_id,
        "symbol": run.symbol,
        "exchange": run.exchange,
        "status": run.status.value,
        "stop_reason": run.stop_reason,
        "fills": summary.fills,
        "realized_pnl": _dec(summary.realized_pnl),
        "started_at": run.started_at.isoformat(),
        "stopped_at": run.stopped_at.isoformat() if run.stopped_at else None,
    }


def render_runs(summaries: Sequence[RunSummary]) -> str:
    if not summaries:
        return "No grid run recorded yet: start the bot with `run`.\n"
    header = ("RUN", "SYMBOL", "VENUE", "STATUS", "FILLS", "REALIZED", "STARTED (UTC)", "STOPPED (UTC)")
    rows = [
        (
            s.run.run_id[:12],
            s.run.symbol,
            s.run.exchange,
            s.run.status.value,
            str(s.fills),
            f"{_dec(s.realized_pnl)} {s.run.symbol.split('/')[1]}",
            f"{s.run.started_at:%Y-%m-%d %H:%M}",
            f"{s.run.stopped_at:%Y-%m-%d %H:%M}" if s.run.stopped_at else "-",
        )
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    right = {4, 5}  # numbers
    lines = [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in (header, *rows)
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- status --manual
def _manual(settings: ReadSettings, *, as_json: bool, limit: int) -> int:
    from application.status import manual_trades

    return _listing(
        settings, lambda uow: manual_trades(uow, limit=limit), manual_to_dict, render_manual, as_json=as_json
    )


def manual_to_dict(trade: ManualTrade) -> dict[str, Any]:
    order = trade.order
    return {
        "client_order_id": order.client_order_id,
        "exchange_order_id": order.exchange_order_id,
        "symbol": order.symbol,
        "exchange": trade.run.exchange,
        "side": order.side.value,
        "type": order.type.value,
        "amount": _dec(order.amount),
        "price": _dec(order.price),
        "status": order.status.value,
        "filled": _dec(order.filled),
        "average_price": _dec(trade.average_price),
        "fees": {
            asset: _dec(sum((b.fill.fee for b in trade.fills if b.fill.fee_asset == asset), Decimal(0)))
            for asset in sorted({b.fill.fee_asset for b in trade.fills})
        },
        "fills": len(trade.fills),
        "placed_at": order.created_at.isoformat(),
    }


def render_manual(trades: Sequence[ManualTrade]) -> str:
    if not trades:
        return "No manual trade recorded yet: place one with `trade`.\n"
    lines = [f"Manual trades ({len(trades)}, newest first):"]
    for t in trades:
        d = manual_to_dict(t)
        at = f"@ {d['price']}" if d["price"] is not None else "@ market"
        outcome = d["status"]
        if t.order.filled > 0:
            outcome += f" {d['filled']}" + (f" at {d['average_price']}" if d["average_price"] else "")
        fees = ", ".join(f"{v} {k}" for k, v in d["fees"].items())
        lines.append(
            f"  {t.order.created_at:%Y-%m-%d %H:%M:%S}  {d['client_order_id']}  {d['side']:<4} {d['amount']} {at}"
            f"  {outcome}" + (f" (fee {fees})" if fees else "")
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


def _cancel(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from bootstrap.runner import cancel_one_order

    return asyncio.run(cancel_one_order(settings, args.order, as_json=args.json))


# --------------------------------------------------------------------------- stop
def _stop(settings: ReadSettings, args: argparse.Namespace) -> int:
    import asyncio

    from adapters.logging import configure_logging
    from bootstrap.runner import stop_grid

    def full() -> Settings:
        loaded = _load(args)  # the venue's settings and keys: cancelling needs them
        configure_logging(level=loaded.log.level, fmt=loaded.log.format, secrets=_secrets(loaded), hold=True)
        return loaded

    return asyncio.run(stop_grid(settings, args, full))
