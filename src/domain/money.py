"""How an amount of money (a price, a quantity, a fee, a profit) is written for people.

One helper, so every log line and message writes the same number the same way: plain digits
(never an exponent), at most 8 decimal places (the finest Binance quotes), no trailing zeros.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

MONEY_QUANTUM = Decimal("0.00000001")


def format_money(value: Decimal) -> str:
    """30100.00 -> "30100", 0.06772500 -> "0.067725", 1E-7 -> "0.0000001", -0 -> "0"."""
    if not value.is_finite():
        return str(value)
    shown = value.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN).normalize()
    if shown.is_zero():
        return "0"
    return f"{shown:f}"
