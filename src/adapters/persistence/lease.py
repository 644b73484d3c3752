"""One bot per grid: a lease row in the bot's database, renewed by a heartbeat.

A second `run` for the same account and symbol on the same database finds a fresh lease and
refuses to start. The row lives in the database (not in a lock file) so the rule holds when
several machines share one PostgreSQL. A lease whose holder was killed expires on its own: when
its heartbeat is older than the time to live, or at once when the holder ran on this host and
its process is gone.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.persistence.tables import leases
from domain.errors import GridInUse
from domain.ports import Clock

log = structlog.get_logger(__name__)

DEFAULT_TTL_S = 30.0


@dataclass(frozen=True, slots=True)
class LeaseRow:
    holder: str
    pid: int
    host: str
    acquired_at: datetime
    heartbeat_at: datetime


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:  # a killed process its parent has not reaped yet (a zombie) holds nothing any more
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): the signal check is all there is


def _expiry(row: LeaseRow, now: datetime, ttl: timedelta, *, host: str, pid: int) -> str | None:
    """Why a lease someone else holds may be taken over, or None while it is live."""
    if now - row.heartbeat_at > ttl:
        return f"its last heartbeat was {(now - row.heartbeat_at).total_seconds():.0f} s ago"
    if row.host == host and row.pid != pid and not _process_alive(row.pid):
        return f"process {row.pid} on this host has exited"
    return None


async def live_holder(
    engine: AsyncEngine, name: str, clock: Clock, *, ttl_s: float = DEFAULT_TTL_S
) -> LeaseRow | None:
    """Who runs the grid `name` right now, or None when no live bot holds its lease (for `status`:
    a run booked *running* that nobody holds was left by a bot that was killed or crashed)."""
    async with engine.connect() as connection:
        found = (
            await connection.execute(
                select(
                    leases.c.holder, leases.c.pid, leases.c.host, leases.c.acquired_at, leases.c.heartbeat_at
                ).where(leases.c.name == name)
            )
        ).first()
    if found is None:
        return None
    row = LeaseRow(*found)
    expired = _expiry(row, clock.now(), timedelta(seconds=ttl_s), host=socket.gethostname(), pid=os.getpid())
    return None if expired is not None else row


async def live_holders_like(
    engine: AsyncEngine, clock: Clock, *, prefix: str, suffix: str, ttl_s: float = DEFAULT_TTL_S
) -> list[LeaseRow]:
    """The live holders of the leases named `prefix...suffix` (for `status` without an API key,
    which cannot name its account's lease: any bot on that venue and symbol)."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(
                    leases.c.name,
                    leases.c.holder,
                    leases.c.pid,
                    leases.c.host,
                    leases.c.acquired_at,
                    leases.c.heartbeat_at,
                )
            )
        ).all()
    ttl, host, pid = timedelta(seconds=ttl_s), socket.gethostname(), os.getpid()
    found = []
    for name, *fields in rows:
        if str(name).startswith(prefix) and str(name).endswith(suffix):
            row = LeaseRow(*fields)
            if _expiry(row, clock.now(), ttl, host=host, pid=pid) is None:
                found.append(row)
    return found


class GridLease:
    """`await lease.acquire()` before the first venue call; `keep()` as a background task;
    `release()` on the way out (a killed process's lease expires instead)."""

    def __init__(
        self,
        engine: AsyncEngine,
        name: str,
        clock: Clock,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self.name = name
        self.holder = uuid.uuid4().hex
        self._engine = engine
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_s)
        self._host = host or socket.gethostname()
        self._pid = os.getpid() if pid is None else pid
        self.held = False

    def _expired(self, row: LeaseRow, now: datetime) -> str | None:
        return _expiry(row, now, self._ttl, host=self._host, pid=self._pid)

    async def acquire(self) -> None:
        """Hold the lease, or raise GridInUse naming who holds it and since when."""
        for attempt in (1, 2):
            try:
                await self._try_acquire()
                return
            except IntegrityError:  # another process inserted the row between our read and write
                if attempt == 2:
                    raise GridInUse(f"another bot is starting this grid ({self.name}) right now") from None

    async def _try_acquire(self) -> None:
        now = self._clock.now()
        mine = {
            "holder": self.holder,
            "pid": self._pid,
            "host": self._host,
            "acquired_at": now,
            "heartbeat_at": now,
        }
        async with self._engine.begin() as connection:
            found = (
                await connection.execute(
                    select(
                        leases.c.holder,
                        leases.c.pid,
                        leases.c.host,
                        leases.c.acquired_at,
                        leases.c.heartbeat_at,
                    )
                    .where(leases.c.name == self.name)
                    .with_for_update()
                )
            ).first()
            if found is None:
                await connection.execute(insert(leases).values(name=self.name, **mine))
            else:
                row = LeaseRow(*found)
                expired = self._expired(row, now)
                if row.holder != self.holder and expired is None:
                    raise GridInUse(
                        f"another bot is running this grid ({self.name}): process {row.pid} on {row.host}, "
                        f"since {row.acquired_at:%Y-%m-%d %H:%M:%S} UTC; stop it first "
                        f"(a killed bot's hold expires {self._ttl.total_seconds():.0f} s after its last heartbeat)"
                    )
                if expired is not None:
                    log.warning(
                        "taking over a stale grid lease",
                        lease=self.name,
                        previous_pid=row.pid,
                        previous_host=row.host,
                        reason=expired,
                    )
                await connection.execute(update(leases).where(leases.c.name == self.name).values(**mine))
        self.held = True
        log.debug("grid lease acquired", lease=self.name)

    async def renew(self) -> bool:
        """Refresh the heartbeat; False when the lease is no longer ours (another bot took it)."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(leases)
                .where(leases.c.name == self.name, leases.c.holder == self.holder)
                .values(heartbeat_at=self._clock.now())
            )
        self.held = result.rowcount == 1
        return self.held

    async def keep(self, lost: Callable[[str], None]) -> None:
        """Renew every third of the time to live until cancelled; call `lost(reason)` and return
        if another bot took the lease over (this one was frozen past the time to live)."""
        interval = self._ttl.total_seconds() / 3
        while True:
            await self._clock.sleep(interval)
            try:
                still_mine = await self.renew()
            except SQLAlchemyError as exc:  # the database is down: nobody else can take the row either
                log.warning("grid lease heartbeat failed; retrying", lease=self.name, reason=str(exc))
                continue
            if not still_mine:
                lost(f"another bot took over this grid ({self.name}) while this one was not heard from")
                return

    async def release(self) -> None:
        if not self.held:
            return
        async with self._engine.begin() as connection:
            await connection.execute(
                delete(leases).where(leases.c.name == self.name, leases.c.holder == self.holder)
            )
        self.held = False
