"""What a person reads on the console and what a machine reads in JSON lines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from decimal import Decimal

import pytest
import structlog

from adapters.logging import configure_logging, discard_held_lines, release_held_lines

RUN_ID = "2a6c1ebd982e440b9249713493215d51"
ORDER = "gb-2a6c1ebd982e-L008-00000"


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def a_run(out: io.StringIO, fmt: str) -> None:
    configure_logging(fmt=fmt, stream=out)
    log = structlog.get_logger("test").bind(symbol="BTC/USDT", exchange="binance-testnet")
    log.info("bot starting", duration=None)
    structlog.contextvars.bind_contextvars(run_id=RUN_ID)
    log.info(
        "grid started",
        lower=Decimal("28500.00"),
        upper=Decimal("31500.00"),
        levels=16,
        quantity=Decimal("0.00225"),
        price=Decimal("30000.00"),
        empty_level=7,
        buys=7,
        sells=8,
    )
    log.info(
        "fill",
        order=ORDER,
        side="sell",
        grid_level=8,
        price=Decimal("29878.35"),
        amount=Decimal("0.00225"),
        fee=Decimal("0.06722628750"),
        fee_asset="USDT",
        realized_pnl=Decimal("0.31578683"),
        total_realized_pnl=Decimal("1234.56789012"),
        inferred=False,
    )
    log.info(
        "heartbeat",
        price=Decimal("29878.35"),
        position=Decimal("0.02478"),
        realized_pnl=Decimal("1234.56789012"),
        unrealized_pnl=Decimal("-12.12345678"),
        open_orders=15,
    )
    log.warning("venue unavailable; carrying on", reason="timed out")


def test_console_lines_fit_120_columns_show_the_run_short_and_the_symbol_and_venue_once() -> None:
    out = io.StringIO()
    a_run(out, "console")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("-- ") and "(UTC)" in lines[0]  # the date, on a line of its own
    starting, started, fill, heartbeat, warning = lines[1:]
    assert all(len(line) <= 120 for line in lines), "\n".join(lines)
    assert "symbol=BTC/USDT" in starting and "exchange=binance-testnet" in starting
    assert not any("BTC/USDT" in line or "binance-testnet" in line for line in lines[2:])
    assert RUN_ID not in out.getvalue()
    assert started.split()[1] == RUN_ID[:12] and warning.split()[1] == RUN_ID[:12]
    assert "range=28500..31500" in started  # money without trailing zeros
    # the fill names its level and its order (whose id carries the run), in plain numbers
    assert "sell 0.00225 @ 29878.35 L8 " + ORDER in fill
    assert "fee=0.06722629 USDT" in fill and "pnl=0.31578683" in fill
    for shown in ("price=29878.35", "position=0.02478", "realized=1234.56789012", "unrealized=-12.12345678"):
        assert shown in heartbeat
    assert "orders=15" in heartbeat
    assert "WARN venue unavailable; carrying on" in warning


def test_json_lines_keep_every_field_and_the_whole_run_id() -> None:
    out = io.StringIO()
    a_run(out, "json")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == [
        "bot starting",
        "grid started",
        "fill",
        "heartbeat",
        "venue unavailable; carrying on",
    ]
    assert all(e["symbol"] == "BTC/USDT" and e["exchange"] == "binance-testnet" for e in events)
    assert all(e["run_id"] == RUN_ID for e in events[1:])
    fill = events[2]
    assert (fill["order"], fill["grid_level"], fill["inferred"]) == (ORDER, 8, False)
    assert (fill["price"], fill["fee"], fill["total_realized_pnl"]) == (
        "29878.35",
        "0.06722629",
        "1234.56789012",
    )


def test_a_failed_start_prints_nothing_it_held_and_a_good_one_prints_everything_in_order() -> None:
    failed = io.StringIO()
    configure_logging(fmt="json", stream=failed, hold=True)
    structlog.get_logger("test").info("database opened")
    discard_held_lines()
    structlog.get_logger("test").info("after the start")  # once the start is over, lines go out
    assert [json.loads(line)["event"] for line in failed.getvalue().splitlines()] == ["after the start"]

    good = io.StringIO()
    configure_logging(fmt="json", stream=good, hold=True)
    log = structlog.get_logger("test")
    log.info("one")
    log.info("two")
    assert good.getvalue() == ""
    log.warning("waiting for the venue")  # a warning is told at once, after what came before it
    log.info("three")
    release_held_lines()
    assert [json.loads(line)["event"] for line in good.getvalue().splitlines()] == [
        "one",
        "two",
        "waiting for the venue",
        "three",
    ]
