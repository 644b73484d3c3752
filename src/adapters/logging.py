"""structlog set-up: console lines on a terminal, JSON lines on request, secrets redacted everywhere.

Logs go to stderr so that a command's own output on stdout (e.g. `status --json`) stays clean.

- Every Decimal in a log line is written by `domain.money.format_money` (no exponent, at most 8
  places, no trailing zeros), in both formats.
- JSON lines keep every field. Console lines are for a person at a 120-column terminal: the time
  (the date on a line of its own when it changes), the run id short (its first 12 characters, as
  in client order ids), the event, then the fields. What repeats is left out: the symbol and venue
  once a start line showed them, the run id where the line's order id carries it, empty fields.
- Until `release_held_lines()`, lines under WARNING are held back: a start that fails prints its
  one `error:` line alone (`discard_held_lines()`), and a start that succeeds prints them all.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TextIO

import structlog

from domain.money import format_money

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"(secret|api_?key|apikey|password|passphrase|signature|token|listen_?key)", re.IGNORECASE
)
_SIGNATURE_IN_URL = re.compile(r"(signature=)[0-9a-fA-F]+")
SHORT_RUN_ID = 12  # as in client order ids: gb-<first 12 characters of the run id>-L008-00000
START_EVENTS = frozenset({"bot starting"})  # console lines that always show the symbol and venue
_ONCE_SHOWN = ("symbol", "exchange")


class SecretRedactor:
    """A structlog processor: blanks values under secret-looking keys and any known secret value
    wherever it appears (messages, nested dicts, exception text)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return _SIGNATURE_IN_URL.sub(r"\1" + REDACTED, value)
        if isinstance(value, dict):
            return {k: REDACTED if _SECRET_KEY.search(str(k)) else self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._scrub(v) for v in value)
        return value

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if _SECRET_KEY.search(key):
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self._scrub(event_dict[key])
        return event_dict


def money_fields(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Every Decimal field written as money is written everywhere (see domain.money)."""
    for key, value in event_dict.items():
        if isinstance(value, Decimal):
            event_dict[key] = format_money(value)
    return event_dict


# --------------------------------------------------------------------------- console
_LEVEL_MARKS = {
    "debug": "debug ",
    "warning": "WARN ",
    "error": "ERROR ",
    "critical": "CRITICAL ",
    "exception": "ERROR ",
}
_COLOURS = {"debug": "\x1b[2m", "warning": "\x1b[33m", "error": "\x1b[31;1m", "critical": "\x1b[31;1m"}
_RESET = "\x1b[0m"
_DROPPED_ON_CONSOLE = {"total_realized_pnl"}  # on every fill line; the heartbeat and stop lines give it
_DROPPED_WHEN_ZERO = {"owed_orders"}
_ALIASES = {"realized_pnl": "pnl"}  # fill lines; "realized" on the heartbeat and stop lines (below)
_SUMMARY_ALIASES = {"realized_pnl": "realized", "unrealized_pnl": "unrealized", "open_orders": "orders"}
_SUMMARY_EVENTS = frozenset({"heartbeat", "grid stopped"})


class ConsoleLines:
    """A structlog renderer: one short line per event for a person watching a terminal."""

    def __init__(self, *, colours: bool = False, event_width: int = 9) -> None:
        self._colours = colours
        self._event_width = event_width
        self._day: str | None = None
        self._shown: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, _logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        with self._lock:
            return self._render(method, dict(event_dict))

    def _render(self, method: str, fields: dict[str, Any]) -> str:
        level = str(fields.pop("level", method))
        event = str(fields.pop("event", ""))
        stamp = _parse_time(fields.pop("timestamp", None))
        exception = fields.pop("exception", None)
        stack = fields.pop("stack", None)
        fields.pop("logger", None)
        run_id = fields.pop("run_id", None)
        run = str(run_id)[:SHORT_RUN_ID] if run_id else ""
        order = fields.get("order")
        if run and isinstance(order, str) and run in order:
            run = ""  # the order id names the run: gb-<run>-L008-00000
        prefix_parts = []
        day = stamp.strftime("%Y-%m-%d")
        head = ""
        if day != self._day:
            self._day = day
            head = f"-- {day} (UTC) --\n"
        prefix_parts.append(stamp.strftime("%H:%M:%S"))
        prefix_parts.append(f"{run:<{SHORT_RUN_ID}}")
        mark = _LEVEL_MARKS.get(level, "")
        title = f"{mark}{event}"
        if self._colours and level in _COLOURS:
            title = f"{_COLOURS[level]}{title}{_RESET}"
        words = [*prefix_parts, f"{title:<{self._event_width}}"]
        words.extend(self._compact(event, fields))
        line = " ".join(w for w in words if w != "").rstrip()
        for extra in (stack, exception):
            if extra:
                line += "\n" + str(extra).rstrip("\n")
        return head + line

    def _compact(self, event: str, fields: dict[str, Any]) -> list[str]:
        """The fields as words: `sell 0.00225 @ 30100 L8 gb-...` first for order lines, then key=value."""
        words: list[str] = []
        for key in _ONCE_SHOWN:  # the start line shows them; other lines only when they differ
            if key in fields:
                if event in START_EVENTS:
                    self._shown[key] = fields[key]
                elif self._shown.get(key, fields[key]) == fields[key]:
                    del fields[key]
        side, amount, price = fields.get("side"), fields.get("amount"), fields.get("price")
        if side in ("buy", "sell") and amount is not None and price is not None:
            words.append(f"{side} {amount} @ {price}")
            for key in ("side", "amount", "price"):
                del fields[key]
        level = fields.pop("grid_level", None)
        if isinstance(level, int) and level >= 0:
            words.append(f"L{level}")
        order = fields.pop("order", None)
        if order is not None:
            words.append(str(order))
        if fields.get("inferred") is False:
            del fields["inferred"]
        elif fields.get("inferred") is True:
            del fields["inferred"]
            words.append("inferred")
        if event == "fill" and fields.get("realized_pnl") in ("0", 0):
            del fields["realized_pnl"]  # a buy's
        if "lower" in fields and "upper" in fields:  # the grid's: range=28500..31500
            upper = fields.pop("upper")
            fields = {
                ("range" if k == "lower" else k): (f"{v}..{upper}" if k == "lower" else v)
                for k, v in fields.items()
            }
        if isinstance(fields.get("empty_level"), int):
            fields = {
                ("empty" if k == "empty_level" else k): (f"L{v}" if k == "empty_level" else v)
                for k, v in fields.items()
            }
        fee_asset = fields.pop("fee_asset", None)
        aliases = _SUMMARY_ALIASES if event in _SUMMARY_EVENTS else _ALIASES
        for key, value in fields.items():
            if value is None or value in ((), [], {}, "") or key in _DROPPED_ON_CONSOLE:
                continue
            if key in _DROPPED_WHEN_ZERO and value in (0, "0"):
                continue
            shown = f"{value} {fee_asset}" if key == "fee" and fee_asset else _shown_value(value)
            words.append(f"{aliases.get(key, key)}={shown}")
        return words


def _shown_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text == "" or any(c.isspace() for c in text):
        return repr(text)
    return text


def _parse_time(stamp: Any) -> datetime:
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.now(UTC)


# --------------------------------------------------------------------------- output
class HeldLines:
    """Where rendered lines go: the stream, or, while holding, a list. Lines under WARNING are held;
    a warning or an error first writes what was held (in order), then itself."""

    _SEVERE = frozenset({"warning", "warn", "error", "critical", "exception", "fatal"})

    def __init__(self, out: TextIO | None, *, holding: bool = False) -> None:
        self._stream = out  # None: whatever sys.stderr is when a line is written (tests swap it)
        self._held: list[str] | None = [] if holding else None
        self._lock = threading.Lock()

    @property
    def _out(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def write(self, method: str, line: str) -> None:
        with self._lock:
            if self._held is not None:
                if method not in self._SEVERE:
                    self._held.append(line)
                    return
                self._flush()
            self._out.write(line + "\n")
            self._out.flush()

    def _flush(self) -> None:
        held, self._held = self._held or [], None
        for line in held:
            self._out.write(line + "\n")

    def release(self) -> None:
        with self._lock:
            if self._held is not None:
                self._flush()
                self._out.flush()

    def discard(self) -> None:
        with self._lock:
            self._held = None


class _LineLogger:
    """structlog's final logger: every level method hands the rendered line to `HeldLines`."""

    def __init__(self, lines: HeldLines) -> None:
        self._lines = lines

    def _writer(self, method: str) -> Any:
        def write(message: str) -> None:
            self._lines.write(method, message)

        return write

    def __getattr__(self, name: str) -> Any:
        return self._writer(name)


_current: dict[str, HeldLines] = {}  # "lines": where the configured loggers write
_process_context: dict[str, Any] = {}


def bind_process_context(**fields: Any) -> None:
    """Fields every line of the process carries, whatever task logs it (e.g. the run id, for the
    venue's own tasks, which began before the run was known); a task's contextvars win over them."""
    _process_context.update(fields)


def clear_process_context(*keys: str) -> None:
    for key in keys:
        _process_context.pop(key, None)


def _merge_process_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in _process_context.items():
        event_dict.setdefault(key, value)
    return event_dict


def release_held_lines() -> None:
    """The start went well (or the command is done): print the lines held back since start-up."""
    if "lines" in _current:
        _current["lines"].release()


def discard_held_lines() -> None:
    """The start failed: its `error:` line says why; what it logged before is not printed."""
    if "lines" in _current:
        _current["lines"].discard()


def configure_logging(
    *,
    level: str = "INFO",
    fmt: str = "console",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    hold: bool = False,
) -> None:
    """`hold`: keep lines under WARNING back until `release_held_lines()` (see the module doc)."""
    out = stream or sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else ConsoleLines(colours=out.isatty())
    )
    lines = _current["lines"] = HeldLines(stream, holding=hold)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _merge_process_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            money_fields,
            SecretRedactor(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=lambda *_: _LineLogger(lines),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (ccxt, websockets, sqlalchemy) stay quiet
    # unless they have something to warn about.
    logging.basicConfig(level=logging.WARNING, stream=out, format="%(levelname)s %(name)s: %(message)s")
