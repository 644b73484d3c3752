from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.clock import SimulatedClock
from support.binance_server import FakeBinance, running_fake_binance

from .venue import START, open_venue


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


@pytest.fixture
def venue(clock: SimulatedClock) -> Callable[..., Any]:
    """`async with venue(**server_kwargs) as (server, gateway)`; adapter settings via `config={...}`."""
    return functools.partial(open_venue, clock)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    """The stand-in on the wall clock, for the tests over real WebSockets."""
    async with running_fake_binance() as server:
        yield server
