"""Load 1-minute candles for a backtest: Binance kline files (CSV or the .zip), plain CSV, JSON.

Formats, chosen by extension and content:

* Binance's published spot kline files (data.binance.vision), as they come: CSV rows of 12 columns
  (open_time, open, high, low, close, volume, close_time, quote_volume, trades, taker_buy_base,
  taker_buy_quote, ignore), with or without a header line, or the ``.zip`` holding one such CSV
  (streamed from the archive to the parser, never extracted to disk).
* A CSV of rows ``open_time,open,high,low,close,volume`` (header optional; extra columns ignored).
* JSON: one array of rows ``[open_time, open, high, low, close, volume, ...]``, numbers or numeric
  strings.

Open times are milliseconds since the epoch, or microseconds (Binance's spot files since 2025):
a file whose first open time is above 10**14 is in microseconds, and is converted to milliseconds;
every row of a file must use the same unit. Prices are read exactly into int64 units of 10**-8:
parsed as float64 and kept only where that is provably exact (every value below 2**25 and equal to
the float of its 8-decimal rounding, see `_exact_units`), otherwise read again as decimals
(pyarrow's decimal128(18, 8) for a CSV, the numbers' text for JSON), which refuses a 9th decimal.

Nothing wrong is used silently. A row that cannot be read (a missing column, a value that is not a
number, a price with more than 8 decimals, a price not above zero, a negative volume, a high below
the open or close, a low above them, ...) stops the load with one `DataError` naming the file, the
row (1-based line number in a CSV, counting a header line; 1-based element in a JSON array) and
the problem. Rows out of time order are sorted into place (stably), rows repeating an open time are
dropped (the first one is kept), and gaps (consecutive open times more than a minute apart) are
counted; all three are reported in `DataIssues`, with a few example lines.

A CSV (or the zip's member) is streamed to pyarrow in blocks of 256 KiB and converted block by block
into int64 columns allocated once from the file's size, so the text is never held whole in memory: a
year of Binance candles (81 MB) loads with a peak of about 40 MiB above the imports. The raw lines
are read only to name a bad row, or when the file has blank lines.

numpy, pyarrow and orjson are imported here at module level: only the backtest imports this module.
"""

from __future__ import annotations

import csv
import re
import sys
import zipfile
import zlib
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv

from adapters.backtest.columns import (
    MINUTE_MS,
    PRICE_SCALE,
    PRICE_UNIT,
    CandleColumns,
    DataIssues,
    IntArray,
    price_of,
    units_of,
)

MICROSECONDS_ABOVE = 10**14  # an open time above this is in microseconds (2025 and later Binance files)
MAX_PRICE_UNITS = 10**18  # prices must be below 10**10 (10 billion): 18 digits, 8 of them decimals
FLOAT_EXACT_BELOW = 2.0**25  # below this, rint(float(text) * 1e8) is the exact unit count of 8-decimal text
MAX_EXAMPLES = 5
PRICE_NAMES = ("open", "high", "low", "close")

_PRICE_TYPE = pa.decimal128(18, PRICE_SCALE)
_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_WHOLE = re.compile(r"\s*[+-]?\d+\s*")
_LOW_WORD = 0 if sys.byteorder == "little" else 1  # which int64 of a decimal128 holds the low bits

FloatArray = npt.NDArray[np.float64]


class DataError(ValueError):
    """A candle file that cannot be used; the message names the file, the row and the problem."""


def load_candles(path: Path) -> CandleColumns:
    """The candles in `path` (Binance kline CSV or .zip, 6-column CSV, or JSON rows), in time order.

    Raises `DataError` (one message: file, row, problem) for a missing, empty or unreadable file,
    a zip holding no CSV or several, or any row that is malformed or inconsistent. Out-of-order
    rows are sorted, repeated open times dropped (first kept), gaps counted: see `DataIssues`.
    """
    where = str(path)
    if not path.exists():
        raise DataError(f"{where}: file not found")
    if path.is_dir():
        raise DataError(f"{where}: is a directory, not a candle file")
    try:
        with path.open("rb") as handle:
            head = handle.read(65536)
    except OSError as exc:
        raise DataError(f"{where}: cannot read the file: {exc.strerror or exc}") from exc
    if not head.strip():
        raise DataError(f"{where}: the file is empty")
    if path.suffix.lower() == ".zip" or head.startswith(b"PK\x03\x04"):
        raw = _read_csv(_zip_source(path))
    elif path.suffix.lower() == ".json" or head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        raw = _read_json(where, _read_bytes(path))
    else:
        raw = _read_csv(_Source(where, path, head, path.stat().st_size))
    return _finish(raw, source=path.name)


# ----------------------------------------------------------------------------------------------
# Reading: each format gives the same raw columns, in file order, not yet validated.


@dataclass(frozen=True, slots=True)
class _Raw:
    where: str  # the file as named in messages
    times: IntArray  # as in the file (ms or µs)
    prices: tuple[IntArray, IntArray, IntArray, IntArray]  # open, high, low, close in units
    volume: FloatArray
    row_of: Callable[[int], int]  # index in file order -> the row number a user sees


_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError, zlib.error)


@dataclass(slots=True)
class _Source:
    """A CSV to read: a file on disk (read in blocks, not memory-mapped: a map's pages would count
    in the process's memory), or one member of a zip (decompressed in blocks while pyarrow parses;
    never written to disk, never held whole)."""

    where: str
    path: Path
    head: bytes  # the first 64 KiB, to tell a header and count the columns
    size: int  # bytes of CSV (the member's uncompressed size for a zip), to size the columns
    member: str | None = None  # the CSV's name inside the zip at `path`
    data: bytes | None = None  # the whole CSV, read only when a row number or a slow scan needs it

    def all_bytes(self) -> bytes:
        if self.data is None:
            if self.member is None:
                self.data = _read_bytes(self.path)
            else:
                try:
                    with zipfile.ZipFile(self.path) as archive:
                        self.data = archive.read(self.member)
                except _ZIP_ERRORS as exc:
                    raise DataError(f"{self.where}: not a readable zip archive: {exc}") from exc
        return self.data

    def open(self, stack: ExitStack) -> Any:
        """What pyarrow reads: the bytes if already read, else the file or the zip stream."""
        if self.data is not None:
            return pa.BufferReader(self.data)
        if self.member is None:
            return stack.enter_context(pa.OSFile(str(self.path), "r", memory_pool=_POOL))
        archive = stack.enter_context(zipfile.ZipFile(self.path))
        return stack.enter_context(archive.open(self.member))

    def rows_at_most(self) -> int:
        """About how many rows the CSV holds, from its size and the head's line length, with room
        to spare: the columns are allocated once for that many (pages never written are never
        resident), and grown if the guess was short."""
        if self.data is not None:
            return self.data.count(b"\n") + 1
        lines = self.head.count(b"\n")
        if lines == 0 or len(self.head) >= self.size:
            return lines + 1
        return int(self.size / len(self.head) * lines * 1.125) + 1024


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc


def _zip_source(path: Path) -> _Source:
    """The one CSV inside a zip; refuses an unreadable zip, one with no CSV, or with several."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [
                m for m in archive.infolist() if not m.is_dir() and m.filename.lower().endswith(".csv")
            ]
            if not members:
                names = ", ".join(m.filename for m in archive.infolist()) or "nothing"
                raise DataError(f"{path}: the zip holds no CSV file (it holds {names})")
            if len(members) > 1:
                names = ", ".join(m.filename for m in members)
                raise DataError(f"{path}: the zip holds {len(members)} CSV files ({names}); expected one")
            member = members[0]
            with archive.open(member) as stream:
                head = stream.read(65536)
    except _ZIP_ERRORS as exc:
        raise DataError(f"{path}: not a readable zip archive: {exc}") from exc
    where = f"{path} ({member.filename})"
    if not head.strip():
        raise DataError(f"{where}: the file is empty")
    return _Source(where, path, head, member.file_size, member=member.filename)


def _split_lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _is_blank(line: bytes) -> bool:
    return line in {b"", b"\r"}


def _fields(line: bytes) -> list[str]:
    text = line.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r")
    return next(csv.reader([text]), [])


def _read_csv(src: _Source) -> _Raw:
    """Columns 1-6 of a CSV, streamed through pyarrow block by block into preallocated arrays;
    rows may carry more columns. Prices are parsed as float64 and kept where that is provably
    exact (see `_exact_units`), else the file is read again with prices as decimal128(18, 8):
    exact for any price, refusing one with more than 8 decimals."""
    head_lines = _split_lines(src.head)
    first_lines = [ln for ln in head_lines if not _is_blank(ln)][:2]
    first = _fields(first_lines[0])
    header = not any(_NUMBER.fullmatch(f) for f in first)  # no number at all: a line of names
    # pyarrow's skip_rows counts blank lines too: skip through the header line itself.
    skip = next(k for k, ln in enumerate(head_lines) if not _is_blank(ln)) + 1 if header else 0
    if header and len(first_lines) < 2:
        rest = [ln for ln in _split_lines(src.all_bytes()) if not _is_blank(ln)]
        if len(rest) < 2:
            raise DataError(f"{src.where}: the file holds a header line but no candles")
        first_lines = rest[:2]
    sample = _fields(first_lines[1] if header else first_lines[0])
    ncols = len(sample)
    lines_of = _CsvRows(src, header)
    if ncols < 6:
        raise DataError(f"{src.where} row {lines_of(0)}: expected at least 6 columns, got {ncols}")
    # First with blank lines refused (pyarrow reads one as a row of empty values, which cannot
    # convert): then row i is line skip + i + 1, no need to read the lines to name a row. A file
    # with blank lines is read again skipping them, and its line numbers are found when needed.
    row_of: Callable[[int], int] = lambda i: skip + i + 1  # noqa: E731
    blank_lines = False
    try:
        columns = _arrow_read(src, skip, ncols, decimal=False, blank_lines=False, row_of=row_of)
    except _ArrowFailed:
        blank_lines, row_of = True, lines_of
        columns = _read_or_name_the_row(src, skip, header, ncols, decimal=False, row_of=row_of)
    if columns is None:  # a price too large for float64 to be exact, or too precise
        columns = _read_or_name_the_row(
            src, skip, header, ncols, decimal=True, blank_lines=blank_lines, row_of=row_of
        )
    if columns is None:
        raise AssertionError("a read with decimal prices is always exact")
    return columns.raw(src.where, row_of)


class _ArrowFailed(Exception):
    """pyarrow could not convert the CSV; the slow scan may name the row."""


def _read_or_name_the_row(
    src: _Source,
    skip: int,
    header: bool,
    ncols: int,
    *,
    decimal: bool,
    row_of: Callable[[int], int],
    blank_lines: bool = True,
) -> _Columns | None:
    """`_arrow_read`, and when pyarrow fails, the slow scan that names the first bad row."""
    try:
        return _arrow_read(src, skip, ncols, decimal=decimal, blank_lines=blank_lines, row_of=row_of)
    except _ArrowFailed as failed:
        _scan_csv(src, header, ncols)  # raises, naming the row, when it can find it
        raise DataError(f"{src.where}: cannot read the CSV: {failed.__cause__}") from failed.__cause__


_BLOCK_SIZE = 256 << 10  # pyarrow reads up to 32 blocks ahead of the parser: 8 MiB in flight
# The C library's allocator for the blocks: it hands freed blocks back sooner than pyarrow's default
# (mimalloc), about 15 MB less at the peak of a year's load, at the same speed.
_POOL = pa.system_memory_pool()


@dataclass(slots=True)
class _Columns:
    """Open time, prices in units and volume, filled block by block; `n` rows so far."""

    times: IntArray
    prices: tuple[IntArray, IntArray, IntArray, IntArray]
    volume: FloatArray
    n: int = 0

    @classmethod
    def allocate(cls, capacity: int) -> _Columns:
        prices = tuple(np.empty(capacity, dtype=np.int64) for _ in PRICE_NAMES)
        return cls(
            np.empty(capacity, dtype=np.int64),
            (prices[0], prices[1], prices[2], prices[3]),
            np.empty(capacity),
        )

    def room_for(self, rows: int) -> None:
        """Grow (by half at least) when `rows` more do not fit: only when the size guess was short."""
        if self.n + rows <= len(self.times):
            return
        capacity = max(self.n + rows, len(self.times) * 3 // 2)
        grown = _Columns.allocate(capacity)
        for old, new in zip(
            (self.times, *self.prices, self.volume), (grown.times, *grown.prices, grown.volume), strict=True
        ):
            new[: self.n] = old[: self.n]
        self.times, self.prices, self.volume = grown.times, grown.prices, grown.volume

    def raw(self, where: str, row_of: Callable[[int], int]) -> _Raw:
        """The rows read, as views (the unused tail of each array was never written)."""
        n = self.n
        o, h, low, c = (p[:n] for p in self.prices)
        return _Raw(where, self.times[:n], (o, h, low, c), self.volume[:n], row_of)


def _arrow_read(
    src: _Source, skip: int, ncols: int, *, decimal: bool, blank_lines: bool, row_of: Callable[[int], int]
) -> _Columns | None:
    """Columns c0..c5 of the CSV, streamed block by block into preallocated arrays: open time
    int64, prices as float64 converted to units once all are read (None when one is not provably
    exact, see `_exact_units`) or as decimal128(18, 8) when `decimal`, volume float64. Raises `_ArrowFailed` when a value does not convert (or a blank
    line, unless `blank_lines`), `DataError` when the file or the zip stream cannot be read."""
    names = [f"c{i}" for i in range(ncols)]
    price_type = _PRICE_TYPE if decimal else pa.float64()
    types: dict[str, Any] = {"c0": pa.int64(), "c5": pa.float64()}
    types.update({f"c{i}": price_type for i in range(1, 5)})
    columns = _Columns.allocate(src.rows_at_most())
    try:
        with ExitStack() as stack:
            reader = pacsv.open_csv(
                src.open(stack),
                read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip, block_size=_BLOCK_SIZE),
                parse_options=pacsv.ParseOptions(ignore_empty_lines=blank_lines),
                convert_options=pacsv.ConvertOptions(
                    column_types=types,
                    include_columns=names[:6],
                    null_values=[],
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
                memory_pool=_POOL,
            )
            for batch in reader:
                rows = batch.num_rows
                columns.room_for(rows)
                start, end = columns.n, columns.n + rows
                columns.times[start:end] = batch.column(0).to_numpy()
                columns.volume[start:end] = batch.column(5).to_numpy()
                if decimal:
                    _decimal_units(batch, columns, src.where, row_of)
                else:  # the floats for now, in the int64 arrays' memory: converted once read
                    for i, out in enumerate(columns.prices, start=1):
                        out.view(np.float64)[start:end] = batch.column(i).to_numpy()
                columns.n = end
    except _ZIP_ERRORS as exc:
        if src.member is None:
            raise DataError(f"{src.where}: cannot read the file: {exc}") from exc
        raise DataError(f"{src.where}: not a readable zip archive: {exc}") from exc
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise _ArrowFailed from exc
    if columns.n == 0:
        raise DataError(f"{src.where}: the file holds no candles")
    if not decimal:
        for prices in columns.prices:
            if not _units_in_place(prices[: columns.n]):
                return None
    return columns


_CHUNK = 1 << 16  # rows converted at a time: the temporaries stay small


def _units_in_place(values: IntArray) -> bool:
    """`values` hold float64 prices (in the int64 array's memory); replaces each by its units, a
    chunk at a time, without a second array. False when one may not be exact (`_exact_units`);
    `values` are then partly converted, not to be used."""
    floats: FloatArray = values.view(np.float64)
    for start in range(0, len(values), _CHUNK):
        if not _exact_units(floats[start : start + _CHUNK], values[start : start + _CHUNK]):
            return False
    return True


def _exact_units(floats: FloatArray, out: IntArray) -> bool:
    """Writes the units of float64 prices parsed from decimal text into `out` (which may be
    `floats`' own memory); False, with `out` untouched, when that may not be exact.

    For text with at most 8 decimals below 2**25, rint(x * 1e8) is the exact unit count k, and x
    is then exactly the float nearest k / 1e8 (both roundings are correct): so a value for which
    units / 1e8 != x had more than 8 decimals, and one at or above 2**25 is not trusted at all.
    (Text with more significant digits than a float64 holds, 17 or more, that rounds to the same
    float as an 8-decimal price would pass as that price; Binance prints at most 8 decimals.)
    """
    if not (float(floats.max()) < FLOAT_EXACT_BELOW and float(floats.min()) > -FLOAT_EXACT_BELOW):
        return False  # too large, or not finite (a NaN max or min fails the comparison too)
    scaled = floats * 1e8
    np.rint(scaled, out=scaled)
    if not np.array_equal(scaled / 1e8, floats):
        return False
    np.copyto(out, scaled, casting="unsafe")
    return True


class _CsvRows:
    """Maps a data row's index to its 1-based line number; reads the lines only when first asked."""

    def __init__(self, src: _Source, header: bool) -> None:
        self._src = src
        self._header = header
        self._lines: list[int] | None = None

    def __call__(self, index: int) -> int:
        if self._lines is None:
            lines = _split_lines(self._src.all_bytes())
            self._lines = [n for n, ln in enumerate(lines, start=1) if not _is_blank(ln)]
        return self._lines[index + (1 if self._header else 0)]


def _decimal_into(array: Any, out: IntArray) -> int | None:
    """Writes the unit counts of a decimal128(18, 8) array (its unscaled integers, read in place)
    into `out`; returns the index of the first one that does not fit an int64, or None."""
    words = np.frombuffer(array.buffers()[1], dtype=np.int64, count=2 * (array.offset + len(array)))
    words = words[2 * array.offset :]
    low, high = words[_LOW_WORD::2], words[1 - _LOW_WORD :: 2]
    fits = high == (low >> 63)  # the 128-bit value is the sign extension of its low 64 bits
    out[:] = low
    return None if fits.all() else int(np.flatnonzero(~fits)[0])


def _too_large(where: str, row: int, name: str, array: Any, index: int) -> DataError:
    value = price_of(int(array[index].as_py().scaleb(PRICE_SCALE)))
    return DataError(
        f"{where} row {row}: {name} {value} is too large (prices must be below {MAX_PRICE_UNITS // PRICE_UNIT})"
    )


def _decimal_units(batch: Any, columns: _Columns, where: str, row_of: Callable[[int], int]) -> None:
    """The prices of one block (decimal128(18, 8), c1..c4) into `columns` from row `columns.n`;
    refuses the block's first row with a price that does not fit an int64."""
    start, end = columns.n, columns.n + batch.num_rows
    bad = []
    for i, out in enumerate(columns.prices, start=1):
        index = _decimal_into(batch.column(i), out[start:end])
        if index is not None:
            bad.append((index, i))
    if bad:
        index, i = min(bad)
        raise _too_large(where, row_of(start + index), PRICE_NAMES[i - 1], batch.column(i), index)


def _scan_csv(src: _Source, header: bool, ncols: int) -> None:
    """The slow path after pyarrow refused the file: find the first bad row and raise for it."""
    lines = _split_lines(src.all_bytes())
    seen_header = not header
    for number, line in enumerate(lines, start=1):
        if _is_blank(line):
            continue
        if not seen_header:
            seen_header = True
            continue
        fields = _fields(line)
        problem = _row_problem(fields, ncols)
        if problem:
            raise DataError(f"{src.where} row {number}: {problem}")


def _row_problem(fields: Sequence[Any], ncols: int | None) -> str | None:
    """What is wrong with one row's fields (text or JSON values), or None."""
    if len(fields) < 6:
        return f"expected at least 6 columns, got {len(fields)}"
    if ncols is not None and len(fields) != ncols:
        return f"expected {ncols} columns like the first row, got {len(fields)}"
    problem = _time_problem(fields[0])
    if problem:
        return problem
    for name, value in zip(PRICE_NAMES, fields[1:5], strict=True):
        problem = _price_problem(name, value)
        if problem:
            return problem
    if not _is_number(fields[5]):
        return f"volume is not a number: {fields[5]!r}"
    return None


def _is_number(value: Any) -> bool:
    """A JSON number (not a boolean) or text pyarrow reads as a number (no nan, inf or 1_000)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and _NUMBER.fullmatch(value) is not None


def _time_problem(value: Any) -> str | None:
    if isinstance(value, bool):
        return f"open time is not a whole number: {value!r}"
    if isinstance(value, int):
        return None
    if isinstance(value, float) and value.is_integer():
        return None
    if isinstance(value, str) and _WHOLE.fullmatch(value):
        return None
    return f"open time is not a whole number: {value!r}"


def _price_problem(name: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return f"{name} is not a number: {value!r}"
    text = value if isinstance(value, str) else repr(value)
    if not _NUMBER.fullmatch(text):
        return f"{name} is not a number: {value!r}"
    try:
        price = Decimal(text.strip())
        units = units_of(price)
    except InvalidOperation:
        return f"{name} is not a number: {value!r}"
    except ValueError:
        return f"{name} has more than {PRICE_SCALE} decimals: {value!r}"
    if abs(units) >= MAX_PRICE_UNITS:
        return f"{name} {price} is too large (prices must be below {MAX_PRICE_UNITS // PRICE_UNIT})"
    return None


def _read_json(where: str, data: bytes) -> _Raw:
    """Rows of a JSON array via orjson, converted column by column with numpy (or pyarrow)."""
    try:
        rows = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON: {exc}") from exc
    if not isinstance(rows, list):
        raise DataError(f"{where}: expected a JSON array of rows, got {type(rows).__name__}")
    if not rows:
        raise DataError(f"{where}: the file holds no candles")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, list):
            raise DataError(f"{where} row {number}: expected an array of at least 6 values, got {row!r}")
        if len(row) < 6:
            raise DataError(f"{where} row {number}: expected at least 6 columns, got {len(row)}")

    def fail(index: int) -> DataError:
        problem = _row_problem(rows[index], None) or "cannot be read"
        return DataError(f"{where} row {index + 1}: {problem}")

    times = _json_times([row[0] for row in rows], fail)
    opens, highs, lows, closes = (
        _json_prices([row[i] for row in rows], where, PRICE_NAMES[i - 1], fail) for i in range(1, 5)
    )
    volume_col = [row[5] for row in rows]
    try:
        volume = np.array(volume_col, dtype=np.float64)
    except (ValueError, TypeError):
        raise _first_failure(volume_col, lambda v: not _is_number(v), fail) from None
    return _Raw(where, times, (opens, highs, lows, closes), volume, lambda i: i + 1)


def _first_failure(
    values: list[Any], bad: Callable[[Any], bool], fail: Callable[[int], DataError]
) -> DataError:
    for index, value in enumerate(values):
        if bad(value):
            return fail(index)
    return fail(0)


def _json_times(values: list[Any], fail: Callable[[int], DataError]) -> IntArray:
    if all(type(v) is int for v in values):
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            raise _first_failure(values, lambda v: not -(2**63) <= v < 2**63, fail) from None
    for index, value in enumerate(values):
        if _time_problem(value):
            raise fail(index)
    return np.array([int(v) for v in values], dtype=np.int64)


def _json_prices(values: list[Any], where: str, name: str, fail: Callable[[int], DataError]) -> IntArray:
    """Exact units: float64 where provably exact (`_exact_units`), else the numbers' shortest text
    (repr: the JSON text for up to 15 significant digits) through pyarrow's decimal parser."""
    units = np.empty(len(values), dtype=np.int64)
    exact_floats = all(type(v) is int or type(v) is float for v in values)
    if exact_floats and _exact_units(np.array(values, dtype=np.float64), units):
        return units
    texts: list[str] = []
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise fail(index)
        texts.append(value if isinstance(value, str) else repr(value))
    try:
        array = pa.array(texts, type=pa.string()).cast(_PRICE_TYPE)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise _first_failure(values, lambda v: _price_problem(name, v) is not None, fail) from None
    bad = _decimal_into(array, units)
    if bad is not None:
        raise _too_large(where, bad + 1, name, array, bad)
    return units


# ----------------------------------------------------------------------------------------------
# Validation and ordering: the same for every format.


def _fmt_time(ms: int) -> str:
    """An open time as a user reads it: 2023-03-01 12:03 UTC (seconds and ms only when not zero)."""
    try:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(ms))
    except OverflowError:
        return f"{ms} ms"
    text = moment.strftime("%Y-%m-%d %H:%M")
    if ms % MINUTE_MS:
        text += moment.strftime(":%S")
        if ms % 1000:
            text += f".{ms % 1000:03d}"
    return f"{text} UTC"


def _validate(raw: _Raw) -> IntArray:
    """Refuses the first bad row (file order); returns the open times in milliseconds."""
    where, row_of = raw.where, raw.row_of
    times = raw.times
    opens, highs, lows, closes = raw.prices

    def fail(index: int, problem: str) -> DataError:
        return DataError(f"{where} row {row_of(index)}: {problem}")

    first_in_us = bool(times[0] > MICROSECONDS_ABOVE)
    if _all_good(raw, first_in_us):
        return _in_ms(times, first_in_us)
    negative = times < 0
    in_us = times > MICROSECONDS_ABOVE
    checks: list[tuple[Any, Callable[[int], str]]] = [
        (negative, lambda i: f"open time {times[i]} is negative"),
        (
            in_us != first_in_us,
            lambda i: (
                f"open time {times[i]} is in {'microseconds' if in_us[i] else 'milliseconds'}, "
                f"unlike row {row_of(0)} ({'microseconds' if first_in_us else 'milliseconds'})"
            ),
        ),
    ]
    for name, units in zip(PRICE_NAMES, raw.prices, strict=True):
        checks.append((units <= 0, _price_message(name, units, "is not positive")))
        too_large = f"is too large (prices must be below {MAX_PRICE_UNITS // PRICE_UNIT})"
        checks.append((units >= MAX_PRICE_UNITS, _price_message(name, units, too_large)))
    checks += [
        (
            highs < opens,
            lambda i: f"high {price_of(int(highs[i]))} is below the open {price_of(int(opens[i]))}",
        ),
        (
            highs < closes,
            lambda i: f"high {price_of(int(highs[i]))} is below the close {price_of(int(closes[i]))}",
        ),
        (lows > opens, lambda i: f"low {price_of(int(lows[i]))} is above the open {price_of(int(opens[i]))}"),
        (
            lows > closes,
            lambda i: f"low {price_of(int(lows[i]))} is above the close {price_of(int(closes[i]))}",
        ),
        (~np.isfinite(raw.volume), lambda i: f"volume is not a number: {raw.volume[i]}"),
        (raw.volume < 0, lambda i: f"volume {raw.volume[i]} is negative"),
    ]
    firsts = [(int(np.argmax(mask)), k) for k, (mask, _) in enumerate(checks) if mask.any()]
    if firsts:
        index, k = min(firsts)
        raise fail(index, checks[k][1](index))
    return _in_ms(times, first_in_us)


def _in_ms(times: IntArray, in_us: bool) -> IntArray:
    """Open times in milliseconds: microseconds are divided in place (no second array)."""
    if in_us:
        np.floor_divide(times, 1000, out=times)
    return times


def _all_good(raw: _Raw, in_us: bool) -> bool:
    """The fast path of `_validate`: a few whole-array reductions, no per-row masks kept."""
    times, volume = raw.times, raw.volume
    opens, highs, lows, closes = raw.prices
    t_min, t_max = int(times.min()), int(times.max())
    if t_min < 0 or (t_min > MICROSECONDS_ABOVE) != in_us or (t_max > MICROSECONDS_ABOVE) != in_us:
        return False
    for units in raw.prices:
        if not (int(units.min()) > 0 and int(units.max()) < MAX_PRICE_UNITS):
            return False
    if not (float(volume.min()) >= 0 and float(volume.max()) < float("inf")):  # NaN fails both
        return False
    body = np.maximum(opens, closes)
    if not bool((highs >= body).all()):
        return False
    np.minimum(opens, closes, out=body)
    return bool((lows <= body).all())


def _price_message(name: str, units: IntArray, problem: str) -> Callable[[int], str]:
    def message(index: int) -> str:
        return f"{name} {price_of(int(units[index]))} {problem}"

    return message


def _finish(raw: _Raw, source: str) -> CandleColumns:
    """Validate, sort (stable), drop repeated open times (first kept), count gaps; report all."""
    times = _validate(raw)
    row_of = raw.row_of
    n = len(times)
    steps = np.diff(times)
    backwards = np.flatnonzero(steps < 0) + 1  # rows before their predecessor
    order: IntArray | None = None  # file index of each sorted row; None: the file is in order
    sorted_times = times
    if backwards.size:
        order = np.argsort(times, kind="stable")
        sorted_times = times[order]
        steps = np.diff(sorted_times)
    repeats = np.flatnonzero(steps == 0) + 1  # positions in sorted order
    kept, final_times = order, sorted_times  # kept: file indices of the rows used (None: all)
    if repeats.size:
        keep = np.ones(n, dtype=bool)
        keep[repeats] = False
        kept = np.flatnonzero(keep) if order is None else order[keep]
        final_times = sorted_times[keep]
        steps = np.diff(final_times)

    def file_row(indices: IntArray | None, position: int) -> int:
        return row_of(position if indices is None else int(indices[position]))

    gap_at = np.flatnonzero(steps > MINUTE_MS)  # a gap between final rows g and g + 1
    missing = (steps[gap_at] - 1) // MINUTE_MS  # whole minutes with no candle in each gap

    ooo_lines = [
        f"row {row_of(int(i))}: open time {_fmt_time(int(times[i]))} is before the previous row's "
        f"({_fmt_time(int(times[i - 1]))}); sorted into place"
        for i in backwards[:MAX_EXAMPLES]
    ]
    dup_lines = []
    for pos in repeats[:MAX_EXAMPLES]:
        first_pos = int(np.searchsorted(sorted_times, sorted_times[pos], side="left"))
        dup_lines.append(
            f"row {file_row(order, int(pos))}: duplicate open time {_fmt_time(int(sorted_times[pos]))} "
            f"(kept row {file_row(order, first_pos)})"
        )
    largest = int(np.argmax(missing)) if missing.size else -1
    gap_order = ([largest] if largest >= 0 else []) + [
        g for g in range(min(missing.size, MAX_EXAMPLES)) if g != largest
    ]
    unique_largest = missing.size > 1 and int(np.count_nonzero(missing == missing[largest])) == 1
    gap_lines = []
    for g in gap_order[:MAX_EXAMPLES]:
        at = int(gap_at[g])
        gap_lines.append(
            f"row {file_row(kept, at + 1)}: {int(missing[g])} minute(s) missing between "
            f"{_fmt_time(int(final_times[at]))} and {_fmt_time(int(final_times[at + 1]))}"
            + (" (the largest gap)" if g == largest and unique_largest else "")
        )
    examples: list[str] = []
    for lines in _round_robin(ooo_lines, dup_lines, gap_lines):
        if len(examples) == MAX_EXAMPLES:
            break
        examples.append(lines)

    issues = DataIssues(
        gaps=int(gap_at.size),
        missing_minutes=int(missing.sum()),
        largest_gap_minutes=int(missing[largest]) if largest >= 0 else 0,
        largest_gap_at_ms=int(final_times[gap_at[largest] + 1]) if largest >= 0 else None,
        duplicates_dropped=int(repeats.size),
        out_of_order=int(backwards.size),
        examples=tuple(examples),
    )
    opens, highs, lows, closes = raw.prices
    if kept is not None:  # rows were sorted or dropped
        opens, highs, lows, closes = (a[kept] for a in (opens, highs, lows, closes))
    return CandleColumns(
        np.ascontiguousarray(final_times, dtype=np.int64),
        np.ascontiguousarray(opens, dtype=np.int64),
        np.ascontiguousarray(highs, dtype=np.int64),
        np.ascontiguousarray(lows, dtype=np.int64),
        np.ascontiguousarray(closes, dtype=np.int64),
        source,
        issues,
    )


def _round_robin(*lists: list[str]) -> list[str]:
    """One line of each kind in turn, so every kind of issue shows among the first examples."""
    out: list[str] = []
    for depth in range(max((len(x) for x in lists), default=0)):
        out.extend(x[depth] for x in lists if depth < len(x))
    return out


# ----------------------------------------------------------------------------------------------
# Synthetic candles.

SYNTHETIC_START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
CENT_UNITS = PRICE_UNIT // 100


def synthetic_candles(
    *,
    seed: int = 7,
    count: int = 525_600,
    start_ms: int = SYNTHETIC_START_MS,
    start_price: Decimal = Decimal("60000"),
) -> CandleColumns:
    """`count` 1-minute candles from `start_ms`, the same for a seed on every platform.

    The close is a slow multiplicative random walk (volatility bursts of 2-4x a few times a week)
    times a mean-reverting wiggle (a fast walk minus its 12-hour moving average, a few per cent),
    so a grid both trades back and forth and drifts. Only +, *, / and cumulative sums/products of
    numpy's PCG64 uniforms are used (no exp/log, whose last bit varies by CPU), so the series is
    bit-identical everywhere. Prices are snapped to 0.01; the open is the previous close (the first
    is `start_price`, snapped), except about 1 in 200 where it jumps a little; high >= max(open,
    close) and low <= min(open, close) hold exactly, and every price is at least 0.01.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    start_units = units_of(start_price)
    if start_units <= 0:
        raise ValueError("start_price must be positive")
    rng = np.random.default_rng(seed)
    n = count

    # Volatility: 1x, with bursts (about one every two days, 30 min to 6 h, 2-4x).
    vol = np.ones(n, dtype=np.float64)
    bursts = max(1, n // 2880)
    starts = rng.integers(0, n, size=bursts)
    lengths = rng.integers(30, 360, size=bursts)
    levels = 1.0 + 3.0 * rng.random(bursts)
    marks = np.zeros(n + 1, dtype=np.float64)
    np.add.at(marks, starts, levels - 1.0)
    np.add.at(marks, np.minimum(starts + lengths, n), 1.0 - levels)
    vol += np.cumsum(marks[:n])

    def shocks(scale: float) -> FloatArray:
        u = rng.random((2, n))
        out: FloatArray = (u[0] + u[1] - 1.0) * (scale * 2.449489742783178) * vol  # triangular, sd = scale
        return out

    trend = np.cumprod(1.0 + shocks(0.00035))
    walk = np.cumsum(shocks(0.0009))
    window = 720
    sums = np.cumsum(np.concatenate(([0.0], walk)))
    lo = np.maximum(np.arange(1, n + 1) - window, 0)
    moving_avg = (sums[1:] - sums[lo]) / (np.arange(1, n + 1) - lo)
    wiggle = np.clip(walk - moving_avg, -0.5, 0.5)
    start_float = start_units / PRICE_UNIT
    close_f = start_float * trend * (1.0 + wiggle)

    def cents(x: FloatArray) -> IntArray:
        out: IntArray = np.maximum(np.rint(x * 100.0), 1.0).astype(np.int64) * CENT_UNITS
        return out

    close = cents(close_f)
    first_open = max((start_units + CENT_UNITS // 2) // CENT_UNITS, 1) * CENT_UNITS  # half up
    open_ = np.empty(n, dtype=np.int64)
    open_[0] = first_open
    open_[1:] = close[:-1]
    jumps = rng.random(n) < 0.005
    jump_size = (rng.random(n) - 0.5) * 0.002 * vol
    open_ = np.where(jumps, cents(open_ / PRICE_UNIT * (1.0 + jump_size)), open_)
    body_hi = np.maximum(open_, close)
    body_lo = np.minimum(open_, close)
    wick = rng.random((2, n)) * 0.0006 * vol
    high = np.maximum(cents(body_hi / PRICE_UNIT * (1.0 + wick[0])), body_hi)
    low = np.minimum(cents(body_lo / PRICE_UNIT * (1.0 - wick[1])), body_lo)
    times = start_ms + np.arange(n, dtype=np.int64) * MINUTE_MS
    return CandleColumns(times, open_, high, low, close, f"synthetic (seed {seed})")
