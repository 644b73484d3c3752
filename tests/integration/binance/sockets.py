"""Waiting on real sockets in the WebSocket tests: on events, under a generous hang guard, never
on how long anything took."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

HANG_GUARD_S = 30.0
T = TypeVar("T")


async def guarded(awaitable: Awaitable[T], what: str) -> T:
    try:
        return await asyncio.wait_for(awaitable, HANG_GUARD_S)
    except TimeoutError:
        raise AssertionError(f"hang guard: {what} did not happen") from None


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Until a state of an adapter, reached over a real socket, holds."""

    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - a state of the adapter, reached over a real socket
            await asyncio.sleep(0.01)

    await guarded(poll(), what)
