"""The picture of a backtest: what a user opening the PNG or the HTML page would notice."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from adapters.backtest.plot import PNG_DPI, PNG_SIZE_IN, PlotData, downsample_minmax, write_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T0_MS = 1_735_689_600_000  # 2025-01-01 00:00 UTC
TITLE = "BTC/USDT grid 50 levels 20000-56000, 2025-01-01 .. 2025-12-31"


def synthetic(candles: int, fills: int, seed: int = 7) -> PlotData:
    rng = np.random.default_rng(seed)
    times = T0_MS + np.arange(candles, dtype=np.int64) * 60_000
    close = 38_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0008, candles)))
    hold = 10_000.0 * close / close[0]
    equity = 10_000.0 + 0.5 * (hold - 10_000.0) + np.linspace(0.0, 500.0, candles)
    picks = np.sort(rng.choice(candles, size=fills, replace=False))
    buys = tuple((int(times[i]), float(close[i])) for i in picks[0::2])
    sells = tuple((int(times[i]), float(close[i])) for i in picks[1::2])
    levels = tuple(float(x) for x in np.linspace(20_000.0, 56_000.0, 50))
    return PlotData(TITLE, times, close, equity, hold, buys, sells, levels, "USDT")


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, "not a PNG"
    assert head[12:16] == b"IHDR"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def external_refs(page: str) -> list[str]:
    """Anything the page would fetch from the network when opened."""
    return re.findall(
        r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|@import|url\(\s*["']?\s*(?:https?:)?//""", page
    )


def embedded_data(page: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="plot-data">(.*?)</script>', page, re.S)
    assert match is not None
    data: dict[str, object] = json.loads(match.group(1))
    return data


EXPECTED_PX = (round(PNG_SIZE_IN[0] * PNG_DPI), round(PNG_SIZE_IN[1] * PNG_DPI))


def test_png_of_a_small_backtest_is_a_real_image_of_the_stated_size(tmp_path: Path) -> None:
    import matplotlib.image

    path = tmp_path / "run.png"
    write_plot(synthetic(3_000, 40), path)
    assert png_size(path) == EXPECTED_PX == (1320, 770)
    pixels = matplotlib.image.imread(str(path))
    assert pixels.shape[:2] == (770, 1320)
    assert float(pixels[..., :3].std()) > 0.05  # something is drawn, not a blank canvas


def test_png_suffix_in_capitals_is_still_a_png(tmp_path: Path) -> None:
    path = tmp_path / "RUN.PNG"
    write_plot(synthetic(200, 4), path)
    assert png_size(path) == EXPECTED_PX


def test_html_is_self_contained_and_holds_the_title_and_the_data(tmp_path: Path) -> None:
    data = synthetic(3_000, 40)
    path = tmp_path / "run.html"
    write_plot(data, path)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert external_refs(page) == []
    assert "http://" not in page and "https://" not in page
    assert f"<title>{TITLE}</title>" in page and f"<h1>{TITLE}</h1>" in page
    assert "<canvas" in page and "20 buys, 20 sells" in page
    payload = embedded_data(page)
    assert payload["quote"] == "USDT" and payload["t0"] == T0_MS and payload["step"] == 60_000
    close = payload["close"]
    assert isinstance(close, dict)
    assert len(close["t"]) == 3_000  # short enough to go in whole
    assert close["v"][0] == pytest.approx(float(data.close[0]), rel=1e-6)
    assert close["v"][-1] == pytest.approx(float(data.close[-1]), rel=1e-6)
    buys, sells = payload["buys"], payload["sells"]
    assert isinstance(buys, dict) and isinstance(sells, dict)
    assert len(buys["t"]) == len(sells["v"]) == 20
    assert payload["levels"] == pytest.approx(list(data.levels))


def test_a_title_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    base = synthetic(100, 2)
    hostile = PlotData(
        "<script>alert(1)</script> & </script>",
        base.times_ms,
        base.close,
        base.equity,
        base.hold,
        base.buys,
        base.sells,
        base.levels,
        "USDT",
    )
    path = tmp_path / "x.html"
    write_plot(hostile, path)
    page = path.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;/script&gt;" in page
    assert embedded_data(page)["title"] == hostile.title


def test_a_year_of_minutes_is_drawn_and_the_page_stays_small(tmp_path: Path) -> None:
    # How long drawing takes is measured by benchmarks, never asserted here.
    data = synthetic(525_600, 10_000)
    png, page = tmp_path / "year.png", tmp_path / "year.html"
    write_plot(data, png)
    write_plot(data, page)

    assert png_size(png) == EXPECTED_PX
    assert page.stat().st_size < 3_000_000
    text = page.read_text(encoding="utf-8")
    assert external_refs(text) == []
    payload = embedded_data(text)
    close = payload["close"]
    assert isinstance(close, dict)
    assert len(close["t"]) <= 2 * 20_000 + 2  # downsampled ...
    assert max(close["v"]) == pytest.approx(float(data.close.max()), rel=1e-6)  # ... keeping the extremes
    assert min(close["v"]) == pytest.approx(float(data.close.min()), rel=1e-6)
    buys = payload["buys"]
    assert isinstance(buys, dict) and len(buys["t"]) == 5_000  # every fill is there
    assert "525,600" in text


def test_downsampling_keeps_a_one_minute_spike_and_the_ends() -> None:
    n = 525_600
    times = np.arange(n, dtype=np.int64) * 60_000
    values = np.full(n, 100.0)
    values[123_457] = 250.0  # a spike up
    values[400_001] = 10.0  # and one down
    values[-1] = 101.0
    t, v = downsample_minmax(times, values, 2_000)
    assert len(t) <= 2 * 2_000 + 2
    assert np.all(np.diff(t) > 0)  # still in time order, no point twice
    assert 250.0 in v and 10.0 in v
    assert t[int(np.argmax(v))] == times[123_457]
    assert (t[0], v[0], t[-1], v[-1]) == (0, 100.0, times[-1], 101.0)


def test_downsampling_leaves_a_short_line_alone() -> None:
    times = np.arange(10, dtype=np.int64)
    values = np.arange(10, dtype=np.float64)
    t, v = downsample_minmax(times, values, 5)
    assert t is times and v is values


@pytest.mark.parametrize("name", ["run.svg", "run.pdf", "run", "run.png.txt"])
def test_an_unsupported_suffix_is_refused_naming_the_ones_that_work(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"\.png or \.html") as caught:
        write_plot(synthetic(50, 2), tmp_path / name)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / name).exists()


def test_a_missing_directory_is_refused_and_not_created(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "run.png"
    with pytest.raises(ValueError, match="does not exist"):
        write_plot(synthetic(50, 2), target)
    assert not (tmp_path / "no").exists()


def test_a_directory_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run.html").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        write_plot(synthetic(50, 2), tmp_path / "run.html")


def test_no_candles_or_mismatched_columns_are_refused(tmp_path: Path) -> None:
    empty = np.empty(0)
    nothing = PlotData("t", np.empty(0, dtype=np.int64), empty, empty, empty, (), (), (), "USDT")
    with pytest.raises(ValueError, match="no candles"):
        write_plot(nothing, tmp_path / "a.png")
    base = synthetic(50, 2)
    short = PlotData("t", base.times_ms, base.close, base.equity[:-1], base.hold, (), (), (), "USDT")
    with pytest.raises(ValueError, match="equity has 49 values for 50 candles"):
        write_plot(short, tmp_path / "b.html")


def test_a_single_candle_without_fills_or_levels_still_draws(tmp_path: Path) -> None:
    one = np.array([100.0])
    data = PlotData("one", np.array([T0_MS], dtype=np.int64), one, one, one, (), (), (), "EUR")
    write_plot(data, tmp_path / "one.png")
    write_plot(data, tmp_path / "one.html")
    assert png_size(tmp_path / "one.png") == EXPECTED_PX
    assert embedded_data((tmp_path / "one.html").read_text(encoding="utf-8"))["quote"] == "EUR"
