"""The candle loader: every format, exact prices, one clear error per bad file, issues reported.

Real files are written to tmp_path; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import zipfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pytest

from adapters.backtest.columns import MINUTE_MS, CandleColumns, price_of
from adapters.backtest.data import DataError, load_candles, synthetic_candles

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, in ms
BINANCE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)
REAL_JSON = Path(__file__).resolve().parents[2] / "data" / "BTCUSDT-1m.json"


def binance_row(
    t: int, o: str, h: str, lo: str, c: str, volume: str = "1.50000000", *, us: bool = False
) -> str:
    """One line of a Binance spot kline file (open time in ms, or in µs as since 2025)."""
    scale = 1000 if us else 1
    close_time = (t + MINUTE_MS) * scale - 1
    return f"{t * scale},{o},{h},{lo},{c},{volume},{close_time},63000.12345678,42,0.75,31500.5,0"


def minute(i: int) -> int:
    return T0 + i * MINUTE_MS


def rows_of(n: int, *, us: bool = False) -> list[str]:
    """n well-formed consecutive Binance rows."""
    return [
        binance_row(minute(i), f"{100 + i}.5", f"{101 + i}.25", f"{99 + i}.00000001", f"{100 + i}.75", us=us)
        for i in range(n)
    ]


def write(path: Path, lines: list[str], *, trailing_newline: bool = True) -> Path:
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""), encoding="utf-8")
    return path


def prices(candles: CandleColumns, i: int) -> tuple[Decimal, ...]:
    return tuple(price_of(int(a[i])) for a in (candles.open, candles.high, candles.low, candles.close))


def load_error(path: Path) -> str:
    with pytest.raises(DataError) as caught:
        load_candles(path)
    return str(caught.value)


# ----------------------------------------------------------------------------------------------
# Formats


def test_a_binance_kline_csv_without_header_in_milliseconds(tmp_path: Path) -> None:
    path = write(tmp_path / "BTCUSDT-1m-2024-01.csv", rows_of(3))
    candles = load_candles(path)
    assert len(candles) == 3
    assert candles.source == "BTCUSDT-1m-2024-01.csv"
    assert candles.open_time_ms.tolist() == [minute(0), minute(1), minute(2)]
    assert prices(candles, 1) == (
        Decimal("101.5"),
        Decimal("102.25"),
        Decimal("100.00000001"),
        Decimal("101.75"),
    )
    assert candles.issues.clean
    for array in (candles.open_time_ms, candles.open, candles.high, candles.low, candles.close):
        assert array.dtype == np.int64


def test_a_binance_kline_csv_with_header_in_microseconds_is_read_in_milliseconds(tmp_path: Path) -> None:
    path = write(tmp_path / "BTCUSDT-1m-2025-01.csv", [BINANCE_HEADER, *rows_of(3, us=True)])
    candles = load_candles(path)
    assert candles.open_time_ms.tolist() == [minute(0), minute(1), minute(2)]
    assert prices(candles, 0) == (
        Decimal("100.5"),
        Decimal("101.25"),
        Decimal("99.00000001"),
        Decimal("100.75"),
    )


def test_crlf_line_ends_and_no_final_newline_are_read(tmp_path: Path) -> None:
    path = tmp_path / "crlf.csv"
    path.write_bytes(("\r\n".join([BINANCE_HEADER, *rows_of(2)])).encode())
    assert load_candles(path).open_time_ms.tolist() == [minute(0), minute(1)]


def test_a_byte_order_mark_and_leading_blank_lines_are_read(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    (tmp_path / "bom.csv").write_bytes(bom + "\n".join(rows_of(2)).encode())
    (tmp_path / "bom-header.csv").write_bytes(bom + "\n".join([BINANCE_HEADER, *rows_of(2)]).encode())
    (tmp_path / "blank-first.csv").write_bytes("\n\n".join(["", BINANCE_HEADER, *rows_of(2)]).encode())
    for name in ("bom.csv", "bom-header.csv", "blank-first.csv"):
        assert load_candles(tmp_path / name).open_time_ms.tolist() == [minute(0), minute(1)], name
    lines = ["", "", BINANCE_HEADER, *rows_of(2), binance_row(minute(2), "1", "1", "1", "x")]
    assert load_error(write(tmp_path / "blank-first.csv", lines)).endswith(
        "blank-first.csv row 6: close is not a number: 'x'"
    )


def test_the_binance_zip_is_read_from_the_archive(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2025-02.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-1m-2025-02.csv", "\n".join(rows_of(4, us=True)) + "\n")
    candles = load_candles(path)
    assert len(candles) == 4
    assert candles.source == "BTCUSDT-1m-2025-02.zip"
    assert candles.open_time_ms[0] == minute(0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BTCUSDT-1m-2025-02.zip"]  # nothing extracted


def test_a_six_column_csv_with_or_without_header_and_extra_columns(tmp_path: Path) -> None:
    body = [f"{minute(0)},42000.01,42001,41999.5,42000.5,3", f"{minute(1)},42000.5,42002,42000,42001,0"]
    plain = load_candles(write(tmp_path / "plain.csv", body))
    headed = load_candles(write(tmp_path / "headed.csv", ["open_time,open,high,low,close,volume", *body]))
    extra = load_candles(write(tmp_path / "extra.csv", [row + ",x,7" for row in body]))
    for candles in (plain, headed, extra):
        assert candles.open_time_ms.tolist() == [minute(0), minute(1)]
        assert prices(candles, 0) == (
            Decimal("42000.01"),
            Decimal(42001),
            Decimal("41999.5"),
            Decimal("42000.5"),
        )


def test_json_rows_of_numbers_or_numeric_strings_with_extra_columns(tmp_path: Path) -> None:
    numbers = [[minute(0), 42000.01, 42001, 41999.5, 42000.5, 3.25, 99, "x"], [minute(1), 1, 2, 0.5, 1.5, 0]]
    strings = [
        [str(minute(0)), "42000.01", "42001", "41999.5", "42000.5", "3.25"],
        [minute(1), "1", 2, "0.5", "1.5", "0"],
    ]
    (tmp_path / "numbers.json").write_bytes(orjson.dumps(numbers))
    (tmp_path / "strings.json").write_bytes(orjson.dumps(strings))
    for name in ("numbers.json", "strings.json"):
        candles = load_candles(tmp_path / name)
        assert candles.open_time_ms.tolist() == [minute(0), minute(1)]
        assert prices(candles, 0) == (
            Decimal("42000.01"),
            Decimal(42001),
            Decimal("41999.5"),
            Decimal("42000.5"),
        )
        assert prices(candles, 1) == (Decimal(1), Decimal(2), Decimal("0.5"), Decimal("1.5"))


def test_json_is_told_by_content_whatever_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "candles.txt"
    path.write_bytes(b"  \n" + orjson.dumps([[minute(0), 1, 2, 1, 2, 0]]))
    assert len(load_candles(path)) == 1


def test_the_project_s_real_json_sample(tmp_path: Path) -> None:
    candles = load_candles(REAL_JSON)
    assert len(candles) == 13_681
    assert candles.open_time_ms[0] == 1_509_836_520_000
    assert candles.open_time_ms[-1] == 1_510_700_340_000
    assert prices(candles, 0) == (Decimal("23748.11"),) * 4
    assert candles.issues.duplicates_dropped == 0
    assert candles.issues.out_of_order == 0
    span_minutes = (1_510_700_340_000 - 1_509_836_520_000) // MINUTE_MS + 1
    assert candles.issues.missing_minutes == span_minutes - 13_681
    assert candles.issues.gaps > 0


# ----------------------------------------------------------------------------------------------
# Exact prices


EXACT = ["42000.01", "0.00000001", "123.45678901", "33554431.99999999", "99999.99999999", "1"]
LARGE = ["123456789.12345678", "9999999999.99999999"]  # beyond float64's exact range: the decimal path


@pytest.mark.parametrize("text", EXACT + LARGE)
def test_prices_survive_exactly_from_csv(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "exact.csv", [binance_row(minute(0), text, text, text, text)])
    assert prices(load_candles(path), 0) == (Decimal(text),) * 4


@pytest.mark.parametrize("text", EXACT + LARGE)
def test_prices_survive_exactly_from_json_strings(tmp_path: Path, text: str) -> None:
    (tmp_path / "exact.json").write_bytes(orjson.dumps([[minute(0), text, text, text, text, "1"]]))
    assert prices(load_candles(tmp_path / "exact.json"), 0) == (Decimal(text),) * 4


@pytest.mark.parametrize("text", [*EXACT, "123456789.12345678"])
def test_prices_survive_exactly_from_json_numbers(tmp_path: Path, text: str) -> None:
    (tmp_path / "exact.json").write_text(f"[[{minute(0)},{text},{text},{text},{text},1]]")
    assert prices(load_candles(tmp_path / "exact.json"), 0) == (Decimal(text),) * 4


def test_many_random_eight_decimal_prices_survive_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    units = rng.integers(1, 3_355_443_199_999_999, size=2_000)  # up to 2**25: the float64 fast path
    texts = [str(price_of(int(u))) for u in units]
    lines = [binance_row(minute(i), t, t, t, t) for i, t in enumerate(texts)]
    candles = load_candles(write(tmp_path / "random.csv", lines))
    assert candles.close.tolist() == units.tolist()
    assert candles.open.tolist() == units.tolist()


# ----------------------------------------------------------------------------------------------
# Errors: one message, naming the file, the row and the problem


def test_file_not_found_empty_and_header_only(tmp_path: Path) -> None:
    assert load_error(tmp_path / "missing.csv") == f"{tmp_path / 'missing.csv'}: file not found"
    (tmp_path / "empty.csv").write_bytes(b"")
    assert load_error(tmp_path / "empty.csv").endswith("empty.csv: the file is empty")
    (tmp_path / "blank.csv").write_bytes(b"\n \n")
    assert load_error(tmp_path / "blank.csv").endswith("blank.csv: the file is empty")
    write(tmp_path / "header.csv", [BINANCE_HEADER])
    assert load_error(tmp_path / "header.csv").endswith(
        "header.csv: the file holds a header line but no candles"
    )
    (tmp_path / "empty.json").write_bytes(b"[]")
    assert load_error(tmp_path / "empty.json").endswith("empty.json: the file holds no candles")


def test_a_high_below_the_open_names_file_and_line(tmp_path: Path) -> None:
    lines = [BINANCE_HEADER, *rows_of(4)]
    lines[3] = binance_row(minute(2), "41020", "41000.5", "40000", "41000")  # line 4 of the file
    message = load_error(write(tmp_path / "year.csv", lines))
    assert message == f"{tmp_path / 'year.csv'} row 4: high 41000.5 is below the open 41020"


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (binance_row(minute(2), "100", "101", "99", "102"), "high 101 is below the close 102"),
        (binance_row(minute(2), "100", "101", "100.5", "101"), "low 100.5 is above the open 100"),
        (binance_row(minute(2), "100", "101", "99", "98.5"), "low 99 is above the close 98.5"),
        (binance_row(minute(2), "0", "101", "0", "100"), "open 0 is not positive"),
        (binance_row(minute(2), "-1", "101", "-2", "100"), "open -1 is not positive"),
        (binance_row(minute(2), "100", "101", "99", "100", volume="-0.5"), "volume -0.5 is negative"),
        (binance_row(minute(2), "abc", "101", "99", "100"), "open is not a number: 'abc'"),
        (binance_row(minute(2), "100", "", "99", "100"), "high is not a number: ''"),
        (binance_row(minute(2), "100", "101", "nan", "100"), "low is not a number: 'nan'"),
        (
            binance_row(minute(2), "100", "101", "99", "100.123456789"),
            "close has more than 8 decimals: '100.123456789'",
        ),
        (binance_row(minute(2), "100", "101", "99", "100", volume="lots"), "volume is not a number: 'lots'"),
        (f"{minute(2)}.5,100,101,99,100,1,0,0,0,0,0,0", f"open time is not a whole number: '{minute(2)}.5'"),
        (f"{minute(2)},100,101,99", "expected at least 6 columns, got 4"),
        (
            binance_row(minute(2), "100", "101", "99", "100") + ",extra",
            "expected 12 columns like the first row, got 13",
        ),
        (
            binance_row(minute(2) * 1000, "100", "101", "99", "100"),
            "is in microseconds, unlike row 1 (milliseconds)",
        ),
        (binance_row(minute(2), "1e11", "1e11", "1e11", "1e11"), "open 100000000000 is too large"),
    ],
)
def test_a_bad_csv_row_is_named(tmp_path: Path, row: str, problem: str) -> None:
    lines = rows_of(5)
    lines[2] = row  # line 3
    message = load_error(write(tmp_path / "bad.csv", lines))
    assert message.startswith(f"{tmp_path / 'bad.csv'} row 3: ")
    assert problem in message


def test_a_bad_first_row_and_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    assert load_error(write(tmp_path / "short.csv", [f"{minute(0)},1,2,1"])).endswith(
        "short.csv row 1: expected at least 6 columns, got 4"
    )
    lines = [BINANCE_HEADER, "", *rows_of(3), "", binance_row(minute(3), "7", "6", "5", "6")]
    assert load_error(write(tmp_path / "gappy.csv", lines)).endswith(
        "gappy.csv row 7: high 6 is below the open 7"
    )
    lines[4] = "1,x,y"
    assert load_error(write(tmp_path / "gappy.csv", lines)).endswith(
        "gappy.csv row 5: expected at least 6 columns, got 3"
    )


def test_bad_zips_are_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 this is not a zip at all")
    assert "broken.zip: not a readable zip archive" in load_error(tmp_path / "broken.zip")
    with zipfile.ZipFile(tmp_path / "none.zip", "w") as archive:
        archive.writestr("README.txt", "hello")
    assert load_error(tmp_path / "none.zip").endswith(
        "none.zip: the zip holds no CSV file (it holds README.txt)"
    )
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as archive:
        archive.writestr("a.csv", rows_of(1)[0])
        archive.writestr("b.csv", rows_of(1)[0])
    assert load_error(tmp_path / "two.zip").endswith(
        "two.zip: the zip holds 2 CSV files (a.csv, b.csv); expected one"
    )
    with zipfile.ZipFile(tmp_path / "corrupt.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("corrupt.csv", "\n".join(rows_of(300)))
    damaged = bytearray((tmp_path / "corrupt.zip").read_bytes())
    for k in range(len(damaged) // 2, len(damaged) // 2 + 20):
        damaged[k] ^= 0x55
    (tmp_path / "corrupt.zip").write_bytes(bytes(damaged))
    message = load_error(tmp_path / "corrupt.zip")
    assert "corrupt.zip" in message
    assert "not a readable zip archive" in message
    with zipfile.ZipFile(tmp_path / "bad-row.zip", "w") as archive:
        archive.writestr("bad-row.csv", "\n".join([*rows_of(2), binance_row(minute(2), "x", "1", "1", "1")]))
    assert load_error(tmp_path / "bad-row.zip").endswith(
        "bad-row.zip (bad-row.csv) row 3: open is not a number: 'x'"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"a": 1}', "json: expected a JSON array of rows, got dict"),
        (b"[[1, 2, 3", "json: not valid JSON"),
        (b"[[60000, 1, 2, 1, 2, 0], 5]", "json row 2: expected an array of at least 6 values, got 5"),
        (b"[[60000, 1, 2, 1, 2, 0], [120000, 1, 2, 1]]", "json row 2: expected at least 6 columns, got 4"),
        (b'[[60000, 1, 2, 1, 2, 0], [120000, "abc", 2, 1, 2, 0]]', "json row 2: open is not a number: 'abc'"),
        (b"[[60000, 1, 2, 1, 2, 0], [120000, 1, true, 1, 2, 0]]", "json row 2: high is not a number: True"),
        (b"[[60000, 1, 2, 1, 2, 0], [120000, 1, 2, 1, null, 0]]", "json row 2: close is not a number: None"),
        (
            b"[[60000, 1, 2, 1, 2, 0], [120000, 1, 2, 1, 1.123456789, 0]]",
            "json row 2: close has more than 8 decimals",
        ),
        (
            b'[[60000, 1, 2, 1, 2, 0], [120000, 1, 2, 1, "1.123456789", 0]]',
            "json row 2: close has more than 8 decimals",
        ),
        (
            b'[[60000, 1, 2, 1, 2, 0], [120000, 1, 2, 1, 2, "none"]]',
            "json row 2: volume is not a number: 'none'",
        ),
        (
            b'[[60000, 1, 2, 1, 2, 0], ["soon", 1, 2, 1, 2, 0]]',
            "json row 2: open time is not a whole number: 'soon'",
        ),
        (b"[[60000, 1, 2, 1, 2, 0], [120000, 1, 2, 1.5, 2, 0]]", "json row 2: low 1.5 is above the open 1"),
    ],
)
def test_a_bad_json_file_or_row_is_named(tmp_path: Path, content: bytes, problem: str) -> None:
    (tmp_path / "bad.json").write_bytes(content)
    assert problem in load_error(tmp_path / "bad.json")


# ----------------------------------------------------------------------------------------------
# Duplicates, out-of-order rows and gaps: reported, never used silently


def test_duplicates_out_of_order_rows_and_gaps_are_reported(tmp_path: Path) -> None:
    order = [0, 1, 2, 2, 5, 4, 6, 10, 3]  # minutes, as the rows come
    lines = [BINANCE_HEADER]
    for k, m in enumerate(order):
        close = f"{100 + k}"
        lines.append(binance_row(minute(m), close, close, close, close))
    candles = load_candles(write(tmp_path / "messy.csv", lines))
    issues = candles.issues
    assert candles.open_time_ms.tolist() == [minute(m) for m in (0, 1, 2, 3, 4, 5, 6, 10)]
    assert [str(price_of(int(c))) for c in candles.close] == [
        "100",
        "101",
        "102",
        "108",
        "105",
        "104",
        "106",
        "107",
    ]
    assert issues.out_of_order == 2  # minute 4 after 5, minute 3 after 10
    assert issues.duplicates_dropped == 1  # the second minute 2 (line 5); the first (line 4) is kept
    assert issues.gaps == 1  # 6 -> 10
    assert issues.missing_minutes == 3
    assert issues.largest_gap_minutes == 3
    assert issues.largest_gap_at_ms == minute(10)
    assert not issues.clean
    assert issues.examples == (
        "row 7: open time 2024-01-01 00:04 UTC is before the previous row's (2024-01-01 00:05 UTC); sorted into place",
        "row 5: duplicate open time 2024-01-01 00:02 UTC (kept row 4)",
        "row 9: 3 minute(s) missing between 2024-01-01 00:06 UTC and 2024-01-01 00:10 UTC",
        "row 10: open time 2024-01-01 00:03 UTC is before the previous row's (2024-01-01 00:10 UTC); sorted into place",
    )
    assert np.all(np.diff(candles.open_time_ms) > 0)


def test_example_rows_count_blank_lines(tmp_path: Path) -> None:
    lines = ["", BINANCE_HEADER, *rows_of(3), "", "", rows_of(2)[1], rows_of(5)[4]]  # line 8 repeats line 4
    issues = load_candles(write(tmp_path / "blank.csv", lines)).issues
    assert (issues.duplicates_dropped, issues.out_of_order, issues.gaps) == (1, 1, 1)
    assert issues.examples == (
        "row 8: open time 2024-01-01 00:01 UTC is before the previous row's (2024-01-01 00:02 UTC); sorted into place",
        "row 8: duplicate open time 2024-01-01 00:01 UTC (kept row 4)",
        "row 9: 1 minute(s) missing between 2024-01-01 00:02 UTC and 2024-01-01 00:04 UTC",
    )


def test_gap_counts_and_the_largest_gap(tmp_path: Path) -> None:
    minutes = [0, 1, 3, 4, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 30]
    rows = [[minute(m), 1, 1, 1, 1, 0] for m in minutes]
    (tmp_path / "gaps.json").write_bytes(orjson.dumps(rows))
    issues = load_candles(tmp_path / "gaps.json").issues
    assert issues.gaps == 4  # 1->3, 4->10, 11->13, 20->30
    assert issues.missing_minutes == 1 + 5 + 1 + 9
    assert issues.largest_gap_minutes == 9
    assert issues.largest_gap_at_ms == minute(30)
    assert issues.duplicates_dropped == issues.out_of_order == 0
    assert issues.examples[0] == (
        "row 15: 9 minute(s) missing between 2024-01-01 00:20 UTC and 2024-01-01 00:30 UTC (the largest gap)"
    )
    assert len(issues.examples) == 4


def test_examples_are_at_most_five(tmp_path: Path) -> None:
    rows = [[minute(m), 1, 1, 1, 1, 0] for m in range(0, 40, 2)]  # 19 gaps
    rows += rows[:5]  # 5 duplicates, 1 out of order
    (tmp_path / "many.json").write_bytes(orjson.dumps(rows))
    issues = load_candles(tmp_path / "many.json").issues
    assert (issues.gaps, issues.duplicates_dropped, issues.out_of_order) == (19, 5, 1)
    assert len(issues.examples) == 5
    assert issues.examples[0].startswith("row 21: open time")
    assert issues.examples[1] == "row 21: duplicate open time 2024-01-01 00:00 UTC (kept row 1)"


# ----------------------------------------------------------------------------------------------
# Large files: streamed block by block into arrays sized from the file's length


def zipped(path: Path) -> Path:
    archive_path = path.with_suffix(".zip")
    with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(path, path.name)
    return archive_path


def test_a_large_file_whose_lines_get_shorter_is_read_exactly(tmp_path: Path) -> None:
    # The first lines are long (a padded last column), so the size guess from them falls short and
    # the columns grow; 70,000 rows also span several blocks and conversion chunks.
    rng = np.random.default_rng(5)
    units = rng.integers(1, 3_355_443_199_999_999, size=70_000)
    lines = []
    for i, u in enumerate(units.tolist()):
        t = price_of(u)
        ignore = "0" * 400 if i < 300 else "0"
        lines.append(f"{minute(i)},{t},{t},{t},{t},1.5,{minute(i + 1) - 1},0,1,0,0,{ignore}")
    path = write(tmp_path / "long.csv", lines)
    for candles in (load_candles(path), load_candles(zipped(path))):
        assert len(candles) == 70_000
        assert candles.open_time_ms.tolist() == [minute(i) for i in range(70_000)]
        assert candles.close.tolist() == units.tolist()
        assert candles.low.tolist() == units.tolist()
        assert candles.issues.clean


def test_late_rows_of_a_large_file_are_named_and_read_exactly(tmp_path: Path) -> None:
    lines = [BINANCE_HEADER, *rows_of(8_000)]  # about 0.8 MB: several blocks
    lines.insert(3, "")  # a blank line: the rows are named by reading the lines
    big = "123456789.12345678"  # beyond float64's exact range: read again as decimals
    lines[7_000] = binance_row(minute(6_998), big, big, big, big)
    path = write(tmp_path / "late.csv", lines)
    for candles in (load_candles(path), load_candles(zipped(path))):
        assert len(candles) == 8_000
        assert prices(candles, 6_998) == (Decimal(big),) * 4
        assert prices(candles, 7_999) == tuple(
            map(Decimal, ("8099.5", "8100.25", "8098.00000001", "8099.75"))
        )
    for row, problem in [
        (binance_row(minute(7_498), "100", "99", "98", "99"), "high 99 is below the open 100"),
        (binance_row(minute(7_498), "abc", "99", "98", "99"), "open is not a number: 'abc'"),
        (binance_row(minute(7_498), "100", "101", "99", "100.123456789"), "close has more than 8 decimals"),
    ]:
        lines[7_500] = row
        path = write(tmp_path / "late.csv", lines)
        message = load_error(path)
        assert message.startswith(f"{path} row 7501: ")
        assert problem in message
        message = load_error(zipped(path))
        assert message.startswith(f"{path.with_suffix('.zip')} (late.csv) row 7501: ")
        assert problem in message


# ----------------------------------------------------------------------------------------------
# Synthetic candles


def test_synthetic_candles_are_deterministic_and_consistent() -> None:
    first = synthetic_candles(seed=11, count=20_000)
    again = synthetic_candles(seed=11, count=20_000)
    other = synthetic_candles(seed=12, count=20_000)
    for name in ("open_time_ms", "open", "high", "low", "close"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.close, other.close)
    assert first.source == "synthetic (seed 11)"
    assert first.issues.clean
    assert len(first) == 20_000
    assert first.open_time_ms[0] == 1_735_689_600_000  # 2025-01-01 00:00 UTC
    assert np.all(np.diff(first.open_time_ms) == MINUTE_MS)
    assert price_of(int(first.open[0])) == Decimal(60000)
    for array in (first.open, first.high, first.low, first.close):
        assert array.dtype == np.int64
        assert np.all(array % 1_000_000 == 0)  # snapped to 0.01
        assert np.all(array >= 1_000_000)
    assert np.all(first.high >= np.maximum(first.open, first.close))
    assert np.all(first.low <= np.minimum(first.open, first.close))
    assert np.mean(first.open[1:] == first.close[:-1]) > 0.98
    assert np.any(first.high > first.low)


def test_synthetic_candles_are_the_same_on_every_platform() -> None:
    """Pinned: a change here means the series changed (or the platform differs: it must not)."""
    candles = synthetic_candles(seed=7, count=5_000, start_price=Decimal("123.456"))
    digest = hashlib.sha256(
        b"".join(a.astype("<i8").tobytes() for a in (candles.open, candles.high, candles.low, candles.close))
    ).hexdigest()
    assert price_of(int(candles.open[0])) == Decimal("123.46")
    assert digest == PINNED_DIGEST


PINNED_DIGEST = "35b36b56b59bfef9b0a2e450c527f66440d0b1e32b818aab082c8860954e19d8"


def test_a_synthetic_year_trades_in_a_range_a_grid_can_use() -> None:
    year = synthetic_candles()
    assert len(year) == 525_600
    closes = year.close / 1e8
    assert closes.min() > 20_000
    assert closes.max() < 180_000
    daily = closes[: len(closes) // 1440 * 1440].reshape(-1, 1440)
    swings = daily.max(axis=1) / daily.min(axis=1) - 1
    assert 0.01 < float(np.median(swings)) < 0.15  # a grid a percent or so wide trades most days


# ----------------------------------------------------------------------------------------------
# between()


def test_between_slices_loaded_candles_by_open_time(tmp_path: Path) -> None:
    candles = load_candles(write(tmp_path / "five.csv", rows_of(5)))
    middle = candles.between(minute(1), minute(3))
    assert middle.open_time_ms.tolist() == [minute(1), minute(2)]
    assert middle.close.tolist() == candles.close[1:3].tolist()
    assert middle.source == candles.source
    assert candles.between(None, minute(1)).open_time_ms.tolist() == [minute(0)]
    assert candles.between(minute(4) - 1, None).open_time_ms.tolist() == [minute(4)]
    assert len(candles.between(minute(9), None)) == 0
