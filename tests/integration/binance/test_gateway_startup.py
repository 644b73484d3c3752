"""Start-up waits out the venue (issue 7): `open_binance_gateway` returns only once the venue has
answered exchangeInfo and the server time, however long that takes, or raises CancelledError when
its task is cancelled.

Everything runs on real loopback sockets with the real ccxt client. Time is the simulated clock:
driven by hand (`AnnouncingClock`) where the test must act between two attempts (bring the venue
up, cancel), auto-advancing elsewhere. Only the request timeout of the "server never answers"
case is wall time (aiohttp measures it on the event loop): 0.2 s per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, MutableMapping, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from adapters.binance import BinanceConfig, open_binance_gateway
from adapters.clock import SimulatedClock
from domain.errors import AuthenticationError
from domain.models import Ticker
from support.binance_server import running_fake_binance

from .venue import API_KEY, API_SECRET, START, SYMBOL, config_for, millis

RATE_LIMITED = "venue rate limited at start-up; waiting"
UNREACHABLE = "venue unreachable at start-up; retrying"
# A hang guard for awaits on the network or on the task: never reached when things work.
GUARD_S = 30.0


class AnnouncingClock:
    """The Clock port over a simulated clock that moves only when the test says so. Every sleep is
    announced first, so the test knows when start-up is waiting and for how long."""

    def __init__(self) -> None:
        self.sim = SimulatedClock(START, auto_advance=False)
        self.sleeps: asyncio.Queue[float] = asyncio.Queue()

    def now(self) -> Any:
        return self.sim.now()

    def monotonic(self) -> float:
        return self.sim.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.put_nowait(seconds)
        await self.sim.sleep(seconds)

    async def next_sleep(self) -> float:
        return await asyncio.wait_for(self.sleeps.get(), GUARD_S)

    def advance(self, seconds: float) -> None:
        self.sim.advance(seconds)


async def start_and_read_ticker(config: BinanceConfig, clock: Any) -> Ticker:
    """What the bot does: open the gateway (start-up), then use it."""
    async with open_binance_gateway(config, clock) as gateway:
        return await gateway.fetch_ticker(SYMBOL)


def config_at(url: str, **overrides: Any) -> BinanceConfig:
    return BinanceConfig(api_key=API_KEY, api_secret=API_SECRET, rest_url=url, **overrides)


def reserved_port() -> socket.socket:
    """A loopback port that is bound but not listening: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def events(logs: Sequence[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


@contextlib.asynccontextmanager
async def tcp_server(answer: bytes | None) -> AsyncIterator[int]:
    """A bare TCP server on loopback: it answers every connection with `answer` (raw bytes, no
    TLS) and closes it, or with None accepts and never says a word. Yields its port."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            if answer is None:
                await reader.read()  # until the client gives up and closes
            else:
                await reader.read(1)
                writer.write(answer)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


# -- rate limits ------------------------------------------------------------------------------
async def test_a_429_then_a_418_on_exchange_info_are_waited_out_and_start_up_goes_on() -> None:
    clock = SimulatedClock(START)
    async with running_fake_binance(now_ms=millis(clock)) as server:
        server.fail_next("exchangeInfo", status=429, retry_after=2)
        server.fail_next("exchangeInfo", status=418, retry_after=3)
        with capture_logs() as logs:
            async with open_binance_gateway(config_for(server), clock) as gateway:
                ticker = await gateway.fetch_ticker(SYMBOL)

        assert ticker.symbol == SYMBOL
        sent = server.requests
        assert [(r.path, r.status) for r in sent[:4]] == [
            ("/api/v3/exchangeInfo", 429),
            ("/api/v3/exchangeInfo", 418),
            ("/api/v3/exchangeInfo", 200),
            ("/api/v3/time", 200),
        ]
        # Nothing was sent inside either wait: the next request came once the wait was over.
        assert 2000 <= sent[1].time_ms - sent[0].time_ms < 2100
        assert 3000 <= sent[2].time_ms - sent[1].time_ms < 3100
        waits = events(logs, RATE_LIMITED)
        assert [(w["call"], w["status"], w["wait_s"], w["attempt"]) for w in waits] == [
            ("exchangeInfo", 429, 2, 1),
            ("exchangeInfo", 418, 3, 2),
        ]
        assert all(w["log_level"] == "warning" for w in waits)
        assert "IP banned" in waits[1]["reason"]
        # One line per wait: the limiter does not log a wait of its own on top.
        assert not events(logs, "binance.rate_limit.wait")
        assert not events(logs, UNREACHABLE)
        assert gateway.state == "normal"


async def test_a_rate_limit_on_the_server_time_call_is_waited_out_too() -> None:
    clock = SimulatedClock(START)
    async with running_fake_binance(now_ms=millis(clock)) as server:
        server.fail_next("time", status=429, retry_after=4)
        with capture_logs() as logs:
            async with open_binance_gateway(config_for(server), clock):
                pass
        times = server.requests_to("time")
        assert [r.status for r in times] == [429, 200]
        assert 4000 <= times[1].time_ms - times[0].time_ms < 4100
        assert [(w["call"], w["wait_s"]) for w in events(logs, RATE_LIMITED)] == [("time", 4)]


async def test_a_long_ban_is_waited_out_without_a_single_request_meanwhile() -> None:
    clock = SimulatedClock(START)
    async with running_fake_binance(now_ms=millis(clock)) as server:
        server.force_rate_limit(418, retry_after=600)  # every request refused for ten minutes
        with capture_logs() as logs:
            async with open_binance_gateway(config_for(server), clock):
                pass
        info = server.requests_to("exchangeInfo")
        assert [r.status for r in info] == [418, 200]  # not one request inside the ban
        assert info[1].time_ms - info[0].time_ms >= 600_000
        assert [w["wait_s"] for w in events(logs, RATE_LIMITED)] == [600]


# -- an unreachable venue ---------------------------------------------------------------------
async def test_a_refused_connection_is_retried_with_backoff_until_the_venue_comes_up() -> None:
    clock = AnnouncingClock()
    port_holder = reserved_port()
    port = port_holder.getsockname()[1]
    config = config_at(f"http://127.0.0.1:{port}")
    with capture_logs() as logs:
        task = asyncio.create_task(start_and_read_ticker(config, clock))
        waits = [await clock.next_sleep()]
        clock.advance(waits[-1])
        waits.append(await clock.next_sleep())
        clock.advance(waits[-1])
        waits.append(await clock.next_sleep())
        # Start-up sleeps after its third refusal: bring the venue up, then let the wait end.
        port_holder.close()
        async with running_fake_binance(now_ms=millis(clock.sim), port=port) as server:
            clock.advance(waits[-1])
            ticker = await asyncio.wait_for(task, GUARD_S)

    assert ticker.symbol == SYMBOL
    assert [r.path for r in server.requests[:2]] == ["/api/v3/exchangeInfo", "/api/v3/time"]
    lines = events(logs, UNREACHABLE)
    assert [(line["call"], line["attempt"]) for line in lines] == [
        ("exchangeInfo", 1),
        ("exchangeInfo", 2),
        ("exchangeInfo", 3),
    ]
    assert all(line["reason"] == f"connection refused (127.0.0.1:{port})" for line in lines)
    # Exponential backoff with up to 1 s of jitter: 1 s, 2 s, 4 s.
    assert [line["wait_s"] for line in lines] == [round(w, 3) for w in waits]
    assert 1 <= waits[0] <= 2 and 2 <= waits[1] <= 3 and 4 <= waits[2] <= 5
    # Nothing else said about the failures: one line each.
    assert not events(logs, "binance.retry")


async def test_a_venue_that_never_answers_times_out_and_is_retried_until_it_does() -> None:
    clock = AnnouncingClock()
    with capture_logs() as logs:
        async with tcp_server(answer=None) as port:
            config = config_at(f"http://127.0.0.1:{port}", request_timeout_s=0.2)
            task = asyncio.create_task(start_and_read_ticker(config, clock))
            first = await clock.next_sleep()
            clock.advance(first)
            second = await clock.next_sleep()
        # The silent server is gone; the real one takes its port before the second wait ends.
        async with running_fake_binance(now_ms=millis(clock.sim), port=port):
            clock.advance(second)
            ticker = await asyncio.wait_for(task, GUARD_S)

    assert ticker.symbol == SYMBOL
    lines = events(logs, UNREACHABLE)
    assert len(lines) == 2
    assert all(
        line["reason"] == f"timed out after 0.2 s (127.0.0.1:{port})" and line["call"] == "exchangeInfo"
        for line in lines
    )


async def test_tls_spoken_to_a_plain_server_fails_the_handshake_and_is_retried() -> None:
    clock = AnnouncingClock()
    plain_http = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    async with tcp_server(answer=plain_http) as port:
        config = config_at(f"https://127.0.0.1:{port}")
        with capture_logs() as logs:
            task = asyncio.create_task(start_and_read_ticker(config, clock))
            for _ in range(3):
                clock.advance(await clock.next_sleep())
            await clock.next_sleep()  # waiting after its fourth failure
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, GUARD_S)

    lines = events(logs, UNREACHABLE)
    assert [line["attempt"] for line in lines] == [1, 2, 3, 4]
    assert all(
        line["reason"] == f"TLS/SSL handshake failed (127.0.0.1:{port}: wrong version number)"
        for line in lines
    )


async def test_outages_at_start_up_neither_run_out_of_attempts_nor_open_the_circuit() -> None:
    clock = SimulatedClock(START)
    async with running_fake_binance(now_ms=millis(clock)) as server:
        server.fail_next("exchangeInfo", status=502, times=8)  # more than the retry policy's 5
        with capture_logs() as logs:
            async with open_binance_gateway(config_for(server), clock) as gateway:
                assert gateway.state == "normal"
        assert [r.status for r in server.requests_to("exchangeInfo")] == [502] * 8 + [200]
        lines = events(logs, UNREACHABLE)
        assert [line["attempt"] for line in lines] == list(range(1, 9))
        assert all(line["wait_s"] <= 60 for line in lines)
        assert lines[-1]["wait_s"] == 60  # 1, 2, 4 ... 128 s capped at a minute
        assert not events(logs, "binance.circuit.transition")


async def test_a_refusal_at_start_up_is_raised_at_once() -> None:
    clock = SimulatedClock(START)
    async with running_fake_binance(now_ms=millis(clock)) as server:
        server.fail_next(
            "exchangeInfo",
            status=401,
            body={"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
        )
        with pytest.raises(AuthenticationError):
            async with open_binance_gateway(config_for(server), clock):
                pass
        assert len(server.requests) == 1


# -- cancelling ----------------------------------------------------------------------------------
async def test_cancelling_a_start_up_waiting_out_a_ban_ends_it_at_once() -> None:
    clock = AnnouncingClock()
    async with running_fake_binance(now_ms=millis(clock.sim)) as server:
        server.fail_next("exchangeInfo", status=418, retry_after=3600)
        task = asyncio.create_task(start_and_read_ticker(config_for(server), clock))
        assert await clock.next_sleep() == 3600
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, GUARD_S)
        assert clock.monotonic() == 0  # no time had to pass
        assert len(server.requests) == 1


async def test_cancelling_on_the_system_clock_does_not_wait_for_the_ban_to_end() -> None:
    # The production clock: the ban is an hour of wall time; the cancel must not wait for it.
    from adapters.clock import SystemClock

    system = SystemClock()
    announced: asyncio.Queue[float] = asyncio.Queue()

    class Announcing:
        now = staticmethod(system.now)
        monotonic = staticmethod(system.monotonic)

        async def sleep(self, seconds: float) -> None:
            announced.put_nowait(seconds)
            await system.sleep(seconds)

    async with running_fake_binance() as server:
        server.fail_next("exchangeInfo", status=418, retry_after=3600)
        task = asyncio.create_task(start_and_read_ticker(config_for(server), Announcing()))
        assert await asyncio.wait_for(announced.get(), GUARD_S) >= 3599
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, GUARD_S)
        assert time.monotonic() - cancelled_at < 1.0
        assert len(server.requests) == 1
