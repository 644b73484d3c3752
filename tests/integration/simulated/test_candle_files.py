"""Candle files on disk: the project's real data, broken files, and a replay through the exchange."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.clock import SimulatedClock
from adapters.simulated.exchange import SimulatedExchange
from adapters.simulated.price_source import CandleFilePriceSource, load_candles
from unit.simulated.builders import DATA_FILE, SAMPLE_FILE, SYMBOL, make_engine

D = Decimal


def test_the_project_data_file_is_the_real_series() -> None:
    candles = load_candles(DATA_FILE)
    assert len(candles) == 13_681
    assert candles[0].open_time == datetime(2017, 11, 4, 23, 2, tzinfo=UTC)
    assert (candles[0].open, candles[0].volume) == (D("23748.11"), D("108.14853839"))
    assert candles[-1].open_time == datetime(2017, 11, 14, 22, 59, tzinfo=UTC)


def test_the_config_sample_is_the_first_1440_rows_of_the_data_file() -> None:
    sample = load_candles(SAMPLE_FILE)
    assert len(sample) == 1_440
    assert sample == load_candles(DATA_FILE)[:1_440]
    assert len(list(CandleFilePriceSource(SAMPLE_FILE).points())) == 4 * 1_440


def test_a_missing_candle_file_is_a_value_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nowhere\.json: candle file not found"):
        CandleFilePriceSource(tmp_path / "nowhere.json")


def test_a_malformed_candle_file_is_a_value_error_naming_its_path_and_row(tmp_path: Path) -> None:
    path = tmp_path / "candles.json"
    path.write_text("[[0,1,1,1,1,1],[60000,1,1,1,1]]", encoding="utf-8")
    with pytest.raises(ValueError, match="row 1: expected 6 numbers, got 5") as raised:
        CandleFilePriceSource(path)
    assert str(raised.value).startswith(str(path))


def test_a_file_that_is_not_text_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "candles.json"
    path.write_bytes(b"\xff\xfe\x00[")
    with pytest.raises(ValueError, match="cannot read candle file"):
        load_candles(path)


def test_start_time_override_moves_a_file_to_another_date() -> None:
    start = datetime(2024, 6, 1, tzinfo=UTC)
    source = CandleFilePriceSource(SAMPLE_FILE, start_time_override=start)
    first, second = list(source.candles())[:2]
    assert (first.open_time, second.open_time) == (start, start + timedelta(minutes=1))


async def test_the_exchange_replays_a_candle_file_by_the_candle_rule_at_candle_time(tmp_path: Path) -> None:
    path = tmp_path / "forty.json"
    path.write_text(json.dumps(json.loads(SAMPLE_FILE.read_text("utf-8"))[:40]), "utf-8")  # ints and floats
    source = CandleFilePriceSource(path)
    candles = list(source.candles())
    clock = SimulatedClock(candles[0].open_time)
    exchange = SimulatedExchange(
        make_engine(last_price=None), source, clock, follow_timestamps=True, min_subscribers=1
    )
    driver = asyncio.create_task(exchange.run())
    await exchange.wait_ready()
    first = await exchange.fetch_ticker(SYMBOL)

    seen = [(first.last, first.timestamp)]
    async for ticker in exchange.tickers(SYMBOL):
        seen.append((ticker.last, ticker.timestamp))
    await driver

    assert seen == [(point.price, point.timestamp) for point in source.points()]
    assert len(seen) == 4 * 40
    assert [price for price, _ in seen[:8]] == [*candles[0].path(), *candles[1].path()]
    assert clock.now() == seen[-1][1]  # market time followed the candles, gaps included
