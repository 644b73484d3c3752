"""The simulated exchange's state file across real processes: a process killed in the middle of a
write leaves the state before that write, and a file held by one process is refused to another,
which names it, until the holder dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.clock import SimulatedClock
from adapters.simulated.state_store import SqliteStateStore, StateFileError, read_book
from bootstrap.settings import Settings, SimulatorSettings
from bootstrap.venues import simulated_venue
from domain.errors import ConfigurationError
from unit.simulated.builders import T0

TESTS = Path(__file__).resolve().parents[2]
SRC = TESTS.parent / "src"

# Writes the state step by step; after each committed write it prints the engine's snapshot.
WRITER = """
import json, sys
from decimal import Decimal as D
from pathlib import Path
from adapters.simulated.state_store import SqliteStateStore
from domain.models import Side
from unit.simulated.builders import T0, at, limit, make_engine, market

store = SqliteStateStore.open(Path(sys.argv[1]))
engine = make_engine()
steps = [
    lambda: store.save_book(engine),
    lambda: engine.place(limit(Side.BUY, "29000", "0.01", client_order_id="grid-1"), T0),
    lambda: engine.place(limit(Side.SELL, "30100", "0.02"), T0),
    lambda: engine.move_to(D("30150"), at(1)),
    lambda: engine.move_to(D("30140"), at(2)),
    lambda: engine.place(market(Side.BUY, "0.005"), at(3)),
    lambda: engine.cancel(at(4), client_order_id="grid-1"),
]
for number, step in enumerate(steps):
    step()
    if number:
        store.save_changes(engine)
    print(json.dumps(engine.snapshot()), flush=True)
store.close()
"""
WRITES = 7

# Holds the state file until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from adapters.simulated.state_store import SqliteStateStore

store = SqliteStateStore.open(Path(sys.argv[1]))
print("holding", flush=True)
sys.stdin.read()
store.close()
"""


def python(
    script: str, *args: str, crash_at: str | None = None, stdin: int | None = None
) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if key != "GRIDBOT_CRASH_AT"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(SRC)])
    if crash_at is not None:
        env["GRIDBOT_CRASH_AT"] = crash_at
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], env=env, text=True, stdin=stdin, stdout=subprocess.PIPE
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "simulated-exchange.sqlite3"


def test_the_writer_makes_every_write_it_is_counted_for(path: Path) -> None:
    writer = python(WRITER, str(path))
    out, _ = writer.communicate(timeout=60)
    lines = out.splitlines()
    assert writer.returncode == 0 and len(lines) == WRITES
    book = read_book(path, "BTC/USDT")
    assert book is not None and book.snapshot() == json.loads(lines[-1])
    assert len(set(lines)) == WRITES  # every write changed the state


@pytest.mark.parametrize("nth", [1, 2, 4, 5, WRITES])
def test_a_kill_in_the_middle_of_a_write_leaves_the_state_before_it(path: Path, nth: int) -> None:
    writer = python(WRITER, str(path), crash_at=f"sim_write:{nth}")
    out, _ = writer.communicate(timeout=60)

    assert writer.returncode == -signal.SIGKILL
    committed = out.splitlines()
    assert len(committed) == nth - 1  # killed during the nth write
    store = SqliteStateStore.open(path)  # the dead writer's lock is gone
    try:
        book = store.load("BTC/USDT")
    finally:
        store.close()
    if nth == 1:
        assert book is None  # the first book was never committed
    else:
        assert book is not None and book.snapshot() == json.loads(committed[-1])


@pytest.fixture
def holder(path: Path) -> Iterator[subprocess.Popen[str]]:
    process = python(HOLDER, str(path), stdin=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == "holding\n"
    yield process
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=60)


def test_a_file_held_by_another_process_is_refused_naming_its_pid(
    path: Path, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(StateFileError) as refused:
        SqliteStateStore.open(path)
    assert str(refused.value) == f"{path} is in use by another bot process (pid {holder.pid})"


async def test_the_venue_refuses_a_file_held_by_another_process(
    path: Path, holder: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(path.parent)
    settings = Settings(simulator=SimulatorSettings(state_file=path))
    with pytest.raises(ConfigurationError) as refused:
        async with simulated_venue(settings, SimulatedClock(T0)):
            pytest.fail("the venue must not start")
    assert refused.value.key == "SIMULATOR__STATE_FILE"
    assert refused.value.problem == f"{path} is in use by another bot process (pid {holder.pid})"


def test_the_lock_goes_with_a_killed_holder(path: Path, holder: subprocess.Popen[str]) -> None:
    holder.kill()  # SIGKILL: no cleanup at all
    holder.wait(timeout=60)
    SqliteStateStore.open(path).close()
