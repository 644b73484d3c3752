"""One bot per grid: the lease row in a real SQLite file, two holders competing for it, the
heartbeat, and a killed holder's lease expiring on its own."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from adapters.clock import SimulatedClock
from adapters.persistence import Database
from adapters.persistence.lease import DEFAULT_TTL_S, GridLease
from domain.errors import GridInUse

NAME = "simulated/BTC/USDT"
START = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)


def clock() -> SimulatedClock:
    return SimulatedClock(START, auto_advance=False)


async def test_a_second_bot_on_the_same_grid_is_refused_naming_who_holds_it_and_since_when(
    db: Database,
) -> None:
    time = clock()
    first = GridLease(db.engine, NAME, time, host="box-a", pid=4242)
    await first.acquire()
    time.advance(5)
    second = GridLease(db.engine, NAME, time, host="box-b", pid=777)
    with pytest.raises(GridInUse) as refused:
        await second.acquire()
    message = str(refused.value)
    assert "process 4242 on box-a" in message
    assert "since 2026-12-01 17:00:00 UTC" in message
    assert NAME in message
    assert second.held is False


async def test_another_grid_in_the_same_database_is_not_blocked(db: Database) -> None:
    time = clock()
    await GridLease(db.engine, NAME, time, host="a", pid=1).acquire()
    other = GridLease(db.engine, "simulated/ETH/USDT", time, host="a", pid=2)
    await other.acquire()
    assert other.held


async def test_a_lease_is_free_again_once_released(db: Database) -> None:
    time = clock()
    first = GridLease(db.engine, NAME, time, host="a", pid=1)
    await first.acquire()
    await first.release()
    second = GridLease(db.engine, NAME, time, host="b", pid=2)
    await second.acquire()
    assert second.held and not first.held


async def test_a_lease_whose_heartbeat_stopped_expires_and_the_old_holder_learns_it_lost_it(
    db: Database,
) -> None:
    time = clock()
    frozen = GridLease(db.engine, NAME, time, host="box-a", pid=4242)
    await frozen.acquire()
    time.advance(DEFAULT_TTL_S - 1)
    with pytest.raises(GridInUse):  # still live just before the time to live
        await GridLease(db.engine, NAME, time, host="box-b", pid=7).acquire()
    time.advance(2)
    successor = GridLease(db.engine, NAME, time, host="box-b", pid=7)
    await successor.acquire()
    assert successor.held
    assert await frozen.renew() is False  # the frozen bot's next heartbeat finds the lease gone
    assert await successor.renew() is True


async def test_heartbeats_keep_a_lease_alive_past_its_time_to_live(db: Database) -> None:
    time = clock()
    holder = GridLease(db.engine, NAME, time, host="box-a", pid=4242)
    await holder.acquire()
    for _ in range(12):  # four times the time to live, one heartbeat every third of it
        time.advance(DEFAULT_TTL_S / 3)
        assert await holder.renew() is True
    with pytest.raises(GridInUse):
        await GridLease(db.engine, NAME, time, host="box-b", pid=7).acquire()


async def test_keep_reports_a_lease_taken_over_and_stops(db: Database) -> None:
    time = SimulatedClock(START)
    holder = GridLease(db.engine, NAME, time, host="box-a", pid=4242)
    await holder.acquire()
    async with db.engine.begin() as connection:  # another bot took it while this one was frozen
        await connection.exec_driver_sql("UPDATE leases SET holder = 'someone-else'")
    lost: list[str] = []
    await asyncio.wait_for(holder.keep(lost.append), timeout=30)
    assert len(lost) == 1 and "another bot took over this grid" in lost[0]


async def test_the_lease_of_a_killed_process_on_this_host_is_taken_over_at_once(db: Database) -> None:
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await child.wait()  # a process that has exited: its pid is free
    dead_pid = child.pid
    time = clock()
    import socket

    await GridLease(db.engine, NAME, time, host=socket.gethostname(), pid=dead_pid).acquire()
    time.advance(1)  # well inside the time to live
    successor = GridLease(db.engine, NAME, time)
    await successor.acquire()
    assert successor.held


async def test_a_live_process_on_this_host_keeps_its_lease(db: Database) -> None:
    import os
    import socket

    time = clock()
    await GridLease(db.engine, NAME, time, host=socket.gethostname(), pid=os.getppid()).acquire()
    with pytest.raises(GridInUse):
        await GridLease(db.engine, NAME, time).acquire()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0]


def _zombie() -> subprocess.Popen[bytes]:
    """A killed child not reaped yet: the kernel keeps its pid until the parent waits for it."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.send_signal(signal.SIGKILL)
    while _state(child.pid) != "Z":
        pass
    return child


async def test_the_lease_of_a_killed_process_not_yet_reaped_is_taken_over(db: Database) -> None:
    child = _zombie()
    try:
        time = clock()
        await GridLease(db.engine, NAME, time, host=socket.gethostname(), pid=child.pid).acquire()
        successor = GridLease(db.engine, NAME, time)
        await successor.acquire()
        assert successor.held
    finally:
        child.wait()
