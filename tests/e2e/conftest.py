"""End-to-end: the bot as a user runs it, `python -m bootstrap ...` in a subprocess.

Tests follow a running bot by its JSON log lines (`BotProcess.until`) and assert on what happened,
never on how long it took: every wait has a generous hang guard (`HANG_GUARD_S`) that only turns a
hang into a failure naming what was awaited."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 60.0  # no e2e wait comes near this; it only stops a hung bot from hanging the suite

Event = dict[str, Any]


class BotProcess:
    """A running `python -m bootstrap ...`: its stderr is read all along into `events` (the JSON
    log lines) and `other_lines` (anything else, e.g. a traceback)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self.other_lines: list[str] = []
        self._cursor = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="bot-stderr")

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip("\n")
            try:
                event = json.loads(text) if text.startswith("{") else None
            except json.JSONDecodeError:
                event = None
            if isinstance(event, dict):
                self.events.append(event)
            else:
                self.other_lines.append(text)
            self._changed.set()
        self._changed.set()

    def names(self) -> list[str]:
        return [str(e.get("event")) for e in self.events]

    def tail(self, count: int = 8) -> str:
        """The last log lines, for failure messages."""
        shown = [json.dumps(e) for e in self.events[-count:]] + self.other_lines[-count:]
        return "\n  ".join(["", *shown]) if shown else " (no output)"

    async def until(self, predicate: Callable[[Event], bool], within: float = HANG_GUARD_S) -> Event:
        """The next log event (after the last one `until` returned) that satisfies `predicate`."""

        async def scan() -> Event:
            while True:
                while self._cursor < len(self.events):
                    event = self.events[self._cursor]
                    self._cursor += 1
                    if predicate(event):
                        return event
                if self._reader.done():
                    raise AssertionError(
                        f"the bot exited before the awaited event; last output:{self.tail()}"
                    )
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), within)
        except TimeoutError:
            raise AssertionError(
                f"hang guard: the awaited event did not come within {within} s; last output:{self.tail()}"
            ) from None

    async def stop(self, within: float = HANG_GUARD_S) -> int:
        """Ctrl-C, as a user stops the bot; returns its exit code once it has exited."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"hang guard: the bot ignored SIGINT; last output:{self.tail()}") from None
        await self._reader
        return self.proc.returncode or 0


@dataclass
class Cli:
    workdir: Path
    env: dict[str, str]

    def run(
        self, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bootstrap", *args],
            cwd=self.workdir,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def status(self, *args: str) -> dict[str, Any]:
        done = self.run("status", "--json", *args)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    async def arun(
        self, *args: str, extra_env: dict[str, str] | None = None, guard_s: float = HANG_GUARD_S
    ) -> tuple[int, str, str]:
        """`run` without blocking the event loop (for tests that serve a venue from it)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bootstrap",
            *args,
            cwd=self.workdir,
            env={**self.env, **(extra_env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), guard_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"hang guard: `{' '.join(args)}` did not exit within {guard_s} s") from None
        return proc.returncode or 0, out.decode(), err.decode()

    async def astatus(self, *args: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        code, out, err = await self.arun(*args, "status", "--json", extra_env=extra_env)
        assert code == 0, err
        result: dict[str, Any] = json.loads(out)
        return result

    @contextlib.asynccontextmanager
    async def bot(self, *args: str, extra_env: dict[str, str] | None = None) -> AsyncIterator[BotProcess]:
        """`python -m bootstrap *args` running in the background; stopped (SIGINT) on exit if the
        test has not stopped it."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bootstrap",
            *args,
            cwd=self.workdir,
            env={**self.env, **(extra_env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        bot = BotProcess(proc)
        try:
            yield bot
        finally:
            if proc.returncode is None:
                with contextlib.suppress(AssertionError):
                    await bot.stop()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A fresh working directory holding the shipped profiles, as after a clone."""
    shutil.copytree(PROJECT / "config", tmp_path / "config")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "EXCHANGE__",
                "GRID__",
                "DATABASE__",
                "LOG__",
                "RISK__",
                "SIMULATOR__",
                "TRADING__",
                "BOT_CONFIG",
            )
        )
    }
    env["LOG__FORMAT"] = "json"
    return Cli(tmp_path, env)
