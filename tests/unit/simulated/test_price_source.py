"""Price paths: the synthetic walk, candle files, and the candle rule as the engine sees it."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from decimal import Decimal

import pytest

from adapters.simulated.price_source import CandlePriceSource, PricePoint, SyntheticPriceSource, parse_candles
from domain.models import Side

from .builders import T0, at, limit, make_engine, ms

D = Decimal


def synthetic(**overrides: object) -> SyntheticPriceSource:
    params: dict[str, object] = {
        "start_price": D("30000"),
        "tick_size": D("0.01"),
        "seed": 7,
        "volatility": D("0.0005"),
        "step_seconds": D("1"),
        "start_time": T0,
        "max_points": 2_000,
    }
    params.update(overrides)
    return SyntheticPriceSource(**params)  # type: ignore[arg-type]


# -- synthetic -----------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_path_and_another_seed_another() -> None:
    first = list(synthetic(seed=7).points())
    assert first == list(synthetic(seed=7).points())
    assert list(synthetic(seed=7, max_points=100).points()) == first[:100]
    assert first != list(synthetic(seed=8).points())


def test_a_synthetic_path_is_on_the_tick_grid_with_steady_timestamps() -> None:
    points = list(synthetic(step_seconds=D("0.5"), max_points=500).points())
    assert len(points) == 500
    assert points[0] == PricePoint(T0, D("30000.00"))
    assert all(point.price % D("0.01") == 0 and type(point.price) is Decimal for point in points)
    assert [point.timestamp for point in points[:3]] == [T0, at(0.5), at(1)]
    assert not any(point.gap for point in points)
    assert len({point.price for point in points}) > 100  # it does move


def test_mean_reversion_keeps_the_walk_around_its_start() -> None:
    prices = [point.price for point in synthetic(max_points=20_000, volatility=D("0.001")).points()]
    assert D("27000") < min(prices)
    assert max(prices) < D("33000")
    crossings = sum(1 for a, b in itertools.pairwise(prices) if (a - D("30000")) * (b - D("30000")) < 0)
    assert crossings > 20  # a grid around the start keeps trading


def test_the_price_never_falls_below_one_tick() -> None:
    points = synthetic(start_price=D("0.05"), volatility=D("3"), reversion=D("0"), max_points=300).points()
    assert min(point.price for point in points) == D("0.01")


def test_an_unbounded_path_keeps_going() -> None:
    points = synthetic(max_points=None).points()
    assert len(list(itertools.islice(points, 5_000))) == 5_000


@pytest.mark.parametrize(
    "overrides",
    [{"tick_size": D("0")}, {"start_price": D("0.001")}, {"volatility": D("-1")}, {"step_seconds": D("0")}],
    ids=["tick", "start-below-tick", "volatility", "step"],
)
def test_nonsense_synthetic_parameters_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        synthetic(**overrides)


# -- candles -------------------------------------------------------------------------------------


def candles_json(*rows: tuple[int, str, str, str, str, str]) -> str:
    """Rows in the file format: numbers, not strings."""
    return "[" + ",".join("[" + ",".join(str(v) for v in row) + "]" for row in rows) + "]"


RISING = (ms(T0), "100.00", "103.00", "99.00", "102.00", "1.5")
FALLING = (ms(T0) + 60_000, "101.00", "104.00", "97.00", "98.00", "2")


def source_of(*rows: tuple[int, str, str, str, str, str]) -> CandlePriceSource:
    return CandlePriceSource(parse_candles(candles_json(*rows), source="candles.json"))


def test_a_rising_candle_runs_open_low_high_close_and_a_falling_one_open_high_low_close() -> None:
    assert list(source_of(RISING, FALLING).points()) == [
        PricePoint(T0, D("100.00"), gap=True),
        PricePoint(at(15), D("99.00")),
        PricePoint(at(30), D("103.00")),
        PricePoint(at(45), D("102.00")),
        PricePoint(at(60), D("101.00"), gap=True),
        PricePoint(at(75), D("104.00")),
        PricePoint(at(90), D("97.00")),
        PricePoint(at(105), D("98.00")),
    ]


def test_a_flat_candle_counts_as_rising() -> None:
    flat = (ms(T0), "100", "101", "99", "100", "0")
    assert [point.price for point in source_of(flat).points()] == [D("100"), D("99"), D("101"), D("100")]


def test_candles_keep_the_digits_written_in_the_file() -> None:
    (candle,) = parse_candles(candles_json((ms(T0), "0.1", "0.30", "0.1", "0.2", "10")), source="c.json")
    assert (candle.open, candle.high, candle.close, candle.volume) == (D("0.1"), D("0.30"), D("0.2"), D("10"))
    assert str(candle.high) == "0.30"
    assert candle.open_time == T0


def test_start_time_override_shifts_every_candle() -> None:
    later = T0 + timedelta(days=400)
    source = CandlePriceSource(
        parse_candles(candles_json(RISING, FALLING), source="c.json"), start_time_override=later
    )
    assert [candle.open_time for candle in source.candles()] == [later, later + timedelta(minutes=1)]
    assert next(iter(source.points())).timestamp == later


def test_a_gap_at_the_open_fills_a_crossed_order_at_the_open() -> None:
    gapping_down = (ms(T0) + 60_000, "95.00", "96.00", "94.00", "95.50", "1")  # opens 7 below the close
    points = list(source_of(RISING, gapping_down).points())
    engine = make_engine(last_price=None, quote="1000")
    for point in points[:4]:
        engine.move_to(point.price, point.timestamp, gap=point.gap)
    engine.place(limit(Side.BUY, "98.00", "0.5"), at(50))

    (fill,) = engine.move_to(points[4].price, points[4].timestamp, gap=points[4].gap)
    assert (fill.price, fill.timestamp) == (D("95.00"), at(60))


def test_an_order_placed_mid_candle_fills_later_in_the_same_candle() -> None:
    engine = make_engine(last_price=None, quote="1000", base="1")
    open_, low, high, close = source_of(RISING).points()
    for point in (open_, low):
        engine.move_to(point.price, point.timestamp, gap=point.gap)

    # At the low (99) a trader offers at 102.50; the candle's high (103) comes next and fills it.
    engine.place(limit(Side.SELL, "102.50", "0.5"), low.timestamp)
    (fill,) = engine.move_to(high.price, high.timestamp, gap=high.gap)
    assert (fill.price, fill.timestamp, fill.is_maker) == (D("102.50"), at(30), True)
    assert engine.move_to(close.price, close.timestamp) == []


def test_on_a_falling_candle_a_buy_placed_at_the_high_fills_at_the_low() -> None:
    engine = make_engine(last_price=None, quote="1000", base="1")
    open_, high, low, _ = source_of(FALLING).points()
    for point in (open_, high):
        engine.move_to(point.price, point.timestamp, gap=point.gap)
    engine.place(limit(Side.BUY, "99.00", "0.5"), high.timestamp)
    (fill,) = engine.move_to(low.price, low.timestamp, gap=low.gap)
    assert (fill.price, fill.timestamp) == (D("99.00"), low.timestamp)


BAD_CONTENT = [
    pytest.param("[[1,2,3", "candles.json: invalid JSON", id="truncated"),
    pytest.param('{"candles": []}', "candles.json: expected a JSON array", id="object"),
    pytest.param("[]", "candles.json: the file holds no candles", id="empty"),
    pytest.param(
        "[[0,1,1,1,1,1],[60000,1,1,1,1]]", "candles.json row 1: expected 6 numbers, got 5", id="short-row"
    ),
    pytest.param('[[0,1,1,1,1,"1"]]', "candles.json row 0: volume is not a number", id="string"),
    pytest.param("[[0,1,1,1,1,NaN]]", "candles.json: invalid JSON: NaN", id="nan"),
    pytest.param(
        "[[0,1,2,1,3,1]]", "candles.json row 0: candle at .* is inconsistent", id="close-above-high"
    ),
    pytest.param("[[0,0,1,0,1,1]]", "candles.json row 0: prices must be positive", id="zero-price"),
    pytest.param("[[0.5,1,1,1,1,1]]", "candles.json row 0: open time must be", id="fractional-time"),
    pytest.param(
        "[[60000,1,1,1,1,1],[0,1,1,1,1,1]]", "candles.json row 1: open time 0 is not after", id="order"
    ),
    pytest.param("[5]", "candles.json row 0: expected an array", id="not-a-row"),
    pytest.param("[[0,true,1,1,1,1]]", "candles.json row 0: open is not a number", id="boolean"),
]


@pytest.mark.parametrize(("content", "message"), BAD_CONTENT)
def test_malformed_candles_are_a_value_error_naming_the_file_and_row(content: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        parse_candles(content, source="candles.json")


def test_the_row_index_in_the_message_is_the_offending_row() -> None:
    rows = [[ms(T0) + i * 60_000, 1, 1, 1, 1, 1] for i in range(20)]
    rows[17] = rows[17][:5]
    with pytest.raises(ValueError, match=r"^candles\.json row 17: expected 6 numbers, got 5$"):
        parse_candles(json.dumps(rows), source="candles.json")
