"""Crash points: where the kill tests SIGKILL the bot, deterministically.

`GRIDBOT_CRASH_AT=before_send:3` makes the process kill itself (SIGKILL: no cleanup, no flush,
no `finally`) the 3rd time it reaches `crash_point("before_send")`. Several points may be given,
comma-separated; a point without a count fires the first time. Unset (every user's case), a crash
point costs one dict lookup.

The points the suite uses:
- `before_send`: the decision is booked (the order is PENDING), the order is not yet sent;
- `after_send`: the venue has the order, the books still say PENDING;
- `booking_fills`: a unit of work holding fills is about to commit;
- `sim_write`: the simulated exchange is half way through writing its state.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from domain.models import Order, OrderRequest
    from domain.ports import ExchangeGateway

ENV_VAR = "GRIDBOT_CRASH_AT"


def _parse(spec: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for item in spec.split(","):
        name, _, count = item.strip().partition(":")
        if not name:
            continue
        try:
            points[name] = int(count) if count else 1
        except ValueError:
            raise ValueError(f"{ENV_VAR}: expected NAME or NAME:COUNT, got {item!r}") from None
    return points


_armed: dict[str, int] = _parse(os.environ.get(ENV_VAR, ""))


def crash_point(name: str) -> None:
    """Kill this process here if GRIDBOT_CRASH_AT says so (the nth time this point is reached)."""
    if name not in _armed:
        return
    _armed[name] -= 1
    if _armed[name] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)


def armed() -> bool:
    """Whether any crash point is set (then the composition root adds the gateway's points)."""
    return bool(_armed)


class CrashPointGateway:
    """An ExchangeGateway with the `before_send` and `after_send` crash points around
    place_order; every other call goes straight through."""

    def __init__(self, inner: ExchangeGateway) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def place_order(self, request: OrderRequest) -> Order:
        crash_point("before_send")
        order = await self._inner.place_order(request)
        crash_point("after_send")
        return order


def arm(spec: str) -> None:
    """Re-read a crash spec (for tests of this module; processes read GRIDBOT_CRASH_AT at import)."""
    _armed.clear()
    _armed.update(_parse(spec))
