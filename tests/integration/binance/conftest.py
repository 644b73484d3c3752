from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from adapters.clock import SimulatedClock

from .venue import START, open_venue


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


@pytest.fixture
def venue(clock: SimulatedClock) -> Callable[..., Any]:
    """`async with venue(**server_kwargs) as (server, gateway)`; adapter settings via `config={...}`."""
    return functools.partial(open_venue, clock)
