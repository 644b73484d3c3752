"""Closing a grid by hand (`stop --cancel-orders`): its orders leave the venue, what they filled is
booked, and the run ends halted, so the next `run` lays a fresh grid instead of resuming it."""

from __future__ import annotations

from decimal import Decimal

from application.status import grid_status
from domain.models import RunStatus

from .fakes import FakeClock, FakeVenue, InMemoryUnitOfWork, Store
from .test_grid_bot import bot_for, make_config, start_bot


async def test_closing_a_stopped_grid_cancels_its_orders_and_books_what_filled_while_no_bot_ran() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    stopped = await (await start_bot(store, venue, clock)).finish()
    before = await grid_status(lambda: InMemoryUnitOfWork(store))
    venue.move_to(Decimal("29500"), ticker=False)  # the buy at 29500 fills while no bot runs
    outcome = await bot_for(store, venue, clock, make_config()).close(
        store.runs[stopped.run_id], "closed with `stop --cancel-orders`"
    )
    assert (outcome.status, outcome.reason) == (RunStatus.HALTED, "closed with `stop --cancel-orders`")
    assert await venue.fetch_open_orders("BTC/USDT") == []
    after = await grid_status(lambda: InMemoryUnitOfWork(store))
    assert after.open_orders == ()
    assert after.fills == before.fills + 1  # the fill that came while no bot ran is booked
    assert after.run is not None and after.run.status is RunStatus.HALTED
    # the next start does not resume the closed grid
    fresh = await start_bot(store, venue, clock)
    assert fresh.bot.run_id != stopped.run_id
    await fresh.finish()


async def test_a_running_grid_asked_to_close_cancels_its_orders_and_ends_halted() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    harness = await start_bot(store, venue, clock)
    harness.bot.request_close("closed with `stop --cancel-orders`")
    await harness.settle()
    outcome = await harness.task
    assert (outcome.status, outcome.reason) == (RunStatus.HALTED, "closed with `stop --cancel-orders`")
    assert await venue.fetch_open_orders("BTC/USDT") == []
    assert harness.open_levels() == {}
