"""The grid's price lines: what the trader configures is what ends up on the book."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from returns.result import Failure, Success

from domain.grid import Spacing, grid_levels, nearest_level

D = Decimal

TICKS = st.sampled_from([D("0.01"), D("0.5"), D("1"), D("0.0001")])


@st.composite
def ranges(draw: st.DrawFn) -> tuple[Decimal, Decimal, int, Spacing, Decimal]:
    """Bounds on the tick, and a level count that leaves at least 3 ticks between raw levels, so snapping
    can never merge two of them."""
    tick = draw(TICKS)
    lower_ticks = draw(st.integers(1, 10**7))
    gap_ticks = draw(st.integers(3, 10**7))
    upper_ticks = lower_ticks + gap_ticks
    spacing = draw(st.sampled_from(Spacing))
    # Geometric lines crowd at the bottom: the tightest gap is at least lower * ln(upper/lower) / (n - 1).
    room = (
        D(gap_ticks) if spacing is Spacing.ARITHMETIC else lower_ticks * (D(upper_ticks) / lower_ticks).ln()
    )
    max_count = min(200, 1 + int(room // 3))
    assume(max_count >= 2)
    count = draw(st.integers(2, max_count))
    return lower_ticks * tick, upper_ticks * tick, count, spacing, tick


@given(case=ranges())
def test_levels_are_strictly_increasing_on_tick_and_span_the_bounds(
    case: tuple[Decimal, Decimal, int, Spacing, Decimal],
) -> None:
    lower, upper, count, spacing, tick = case
    levels = grid_levels(lower, upper, count, spacing, tick).unwrap()
    assert len(levels) == count
    assert levels[0] == lower
    assert levels[-1] == upper
    assert all(level % tick == 0 for level in levels)
    assert all(below < above for below, above in itertools.pairwise(levels))


@given(
    tick=TICKS,
    lower=st.integers(1, 10**6),
    upper_extra=st.integers(1, 10**6),
    count=st.integers(2, 60),
    spacing=st.sampled_from(Spacing),
)
def test_bounds_off_the_tick_are_snapped_not_dropped(
    tick: Decimal, lower: int, upper_extra: int, count: int, spacing: Spacing
) -> None:
    """A user writing GRID__LOWER=100.005 gets the snapped bound as the first level."""
    low = D(lower).scaleb(-3)
    high = low + D(upper_extra).scaleb(-3)
    result = grid_levels(low, high, count, spacing, tick)
    if isinstance(result, Success):
        levels = result.unwrap()
        half_tick = tick / 2
        assert abs(levels[0] - low) <= half_tick
        assert abs(levels[-1] - high) <= half_tick
        assert len(levels) == count
        assert all(below < above for below, above in itertools.pairwise(levels))
    else:
        assert result.failure().rule in {"GRID__LEVELS", "GRID__LOWER"}


def test_arithmetic_levels_are_evenly_spaced() -> None:
    levels = grid_levels(D("90000"), D("110000"), 11, Spacing.ARITHMETIC, D("0.01")).unwrap()
    assert levels == tuple(D(90000 + 2000 * i) for i in range(11))


@given(
    lower_ticks=st.integers(10**5, 10**7),
    ratio_pct=st.integers(10, 300),
    count=st.integers(3, 50),
)
def test_geometric_levels_have_a_nearly_constant_ratio(lower_ticks: int, ratio_pct: int, count: int) -> None:
    tick = D("0.01")
    lower = lower_ticks * tick
    upper = (lower * (100 + ratio_pct) / 100).quantize(tick)
    levels = grid_levels(lower, upper, count, Spacing.GEOMETRIC, tick).unwrap()
    ratios = [above / below for below, above in itertools.pairwise(levels)]
    exact = (upper / lower) ** (D(1) / (count - 1))
    # Each ratio deviates from the exact one only by the snapping of its two ends (half a tick each).
    for below, ratio in zip(levels, ratios, strict=False):
        assert abs(ratio - exact) <= tick / below * 2
    # And the percentage gap is the same everywhere, while arithmetic gaps are equal in price instead.
    assert max(ratios) - min(ratios) <= tick / levels[0] * 4


def test_geometric_and_arithmetic_share_their_ends_but_not_their_middle() -> None:
    arithmetic = grid_levels(D("100"), D("400"), 3, Spacing.ARITHMETIC, D("0.01")).unwrap()
    geometric = grid_levels(D("100"), D("400"), 3, Spacing.GEOMETRIC, D("0.01")).unwrap()
    assert arithmetic == (D("100"), D("250"), D("400"))
    assert geometric == (D("100"), D("200"), D("400"))


def test_too_dense_a_grid_fails_naming_grid_levels() -> None:
    result = grid_levels(D("100"), D("100.05"), 10, Spacing.ARITHMETIC, D("0.01"))
    assert isinstance(result, Failure)
    assert result.failure().rule == "GRID__LEVELS"
    assert "tick size 0.01" in result.failure().reason


@given(tick=TICKS, lower_ticks=st.integers(1, 10**6), extra=st.integers(1, 50))
def test_more_levels_than_ticks_in_the_range_always_fails(
    tick: Decimal, lower_ticks: int, extra: int
) -> None:
    gap = extra
    result = grid_levels(lower_ticks * tick, (lower_ticks + gap) * tick, gap + 2, Spacing.ARITHMETIC, tick)
    assert isinstance(result, Failure)
    assert result.failure().rule == "GRID__LEVELS"


@pytest.mark.parametrize(
    ("lower", "upper", "count", "key"),
    [
        ("100", "200", 1, "GRID__LEVELS"),
        ("100", "200", 0, "GRID__LEVELS"),
        ("200", "100", 5, "GRID__UPPER"),
        ("100", "100", 5, "GRID__UPPER"),
        ("0", "100", 5, "GRID__LOWER"),
        ("-5", "100", 5, "GRID__LOWER"),
        ("0.004", "100", 5, "GRID__LOWER"),  # snaps to zero on a 0.01 tick
    ],
)
def test_invalid_ranges_fail_naming_the_setting(lower: str, upper: str, count: int, key: str) -> None:
    for spacing in Spacing:
        result = grid_levels(D(lower), D(upper), count, spacing, D("0.01"))
        assert isinstance(result, Failure)
        assert result.failure().rule == key


def test_nearest_level_prefers_the_lower_on_a_tie() -> None:
    levels = (D("100"), D("110"), D("120"))
    assert nearest_level(levels, D("105")) == 0
    assert nearest_level(levels, D("105.01")) == 1
    assert nearest_level(levels, D("50")) == 0
    assert nearest_level(levels, D("500")) == 2
    assert nearest_level(levels, D("120")) == 2
