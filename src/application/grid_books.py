"""Booking the core's decisions: each one in a single unit of work, before any command is sent."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from domain.grid import Leftover
from domain.grid_core import Decision
from domain.models import BotRun
from domain.ports import UnitOfWorkFactory


def run_with(run: BotRun, *, leftover: Leftover | None = None, last_price: Decimal | None = None) -> BotRun:
    """The run with its carried crumb and last known price recorded in its params."""
    params = dict(run.params)
    if leftover is not None:
        params["leftover_base"] = str(leftover.base)
        params["leftover_cost"] = str(leftover.cost)
    if last_price is not None:
        params["last_price"] = str(last_price)
    return replace(run, params=params)


def leftover_of(run: BotRun) -> Leftover:
    return Leftover(
        Decimal(run.params.get("leftover_base", "0")), Decimal(run.params.get("leftover_cost", "0"))
    )


async def book(
    uow_factory: UnitOfWorkFactory, run: BotRun, decision: Decision, last_price: Decimal | None
) -> BotRun:
    """Persist what `decision` changed, atomically. Returns the run as now booked."""
    if not decision.needs_booking:
        return run
    async with uow_factory() as uow:
        for order in decision.added.values():
            await uow.orders.add(order)
        for order in decision.updated.values():
            await uow.orders.update(order)
        for trade_id in decision.retracted:
            await uow.fills.remove(run.run_id, trade_id)
        for booked in decision.fills:
            await uow.fills.add(booked)
        if decision.leftover is not None or decision.fills:
            run = run_with(run, leftover=decision.leftover, last_price=last_price)
            await uow.runs.update(run)
        await uow.commit()
    return run
