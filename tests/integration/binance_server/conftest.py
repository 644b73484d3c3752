"""Fixtures: the stand-in on loopback (wall clock or hand-driven clock) and clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from support.binance_server import FakeBinance, ManualClock, running_fake_binance

from .helpers import RawClient, make_exchange


@pytest.fixture
async def server() -> AsyncIterator[FakeBinance]:
    """The stand-in on the wall clock: what ccxt, which signs with the wall clock, needs."""
    async with running_fake_binance() as running:
        yield running


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def clocked_server(clock: ManualClock) -> AsyncIterator[FakeBinance]:
    """The stand-in on a hand-driven clock, for rate-limit windows."""
    async with running_fake_binance(now_ms=clock, weight_limit=100) as running:
        yield running


@pytest.fixture
async def exchange(server: FakeBinance) -> AsyncIterator[Any]:
    client = make_exchange(server.api_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def raw(session: aiohttp.ClientSession, server: FakeBinance) -> RawClient:
    return RawClient(session, server)


@pytest.fixture
def clocked_raw(session: aiohttp.ClientSession, clocked_server: FakeBinance) -> RawClient:
    return RawClient(session, clocked_server)
