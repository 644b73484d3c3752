"""Use case: report a run's state from the database alone (no venue access)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain.models import ZERO, BookedFill, BotRun, OrderStatus, Side, TrackedOrder
from domain.ports import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class StatusReport:
    run: BotRun | None
    open_orders: tuple[TrackedOrder, ...]
    fills: int
    realized_pnl: Decimal
    completed_cycles: int
    fees: dict[str, Decimal]
    recent_fills: tuple[BookedFill, ...]


async def grid_status(
    uow_factory: UnitOfWorkFactory, *, run_id: str | None = None, symbol: str | None = None, recent: int = 10
) -> StatusReport:
    """The latest run (or `run_id`), its active orders, its fills and its realized profit."""
    async with uow_factory() as uow:
        run = await uow.runs.get(run_id) if run_id else await uow.runs.latest(symbol)
        if run is None:
            return StatusReport(None, (), 0, ZERO, 0, {}, ())
        orders = tuple(await uow.orders.list_active(run.run_id))
        every_order = await uow.orders.list_for_run(run.run_id)
        fills = tuple(await uow.fills.list_for_run(run.run_id))
    realized = sum((f.realized_pnl for f in fills), ZERO)
    fees: dict[str, Decimal] = {}
    for booked in fills:
        fees[booked.fill.fee_asset] = fees.get(booked.fill.fee_asset, ZERO) + booked.fill.fee
    # A completed cycle is a grid sell that filled (its base was bought lower on the ladder or at start).
    cycles = sum(
        1 for o in every_order if o.side is Side.SELL and o.level >= 0 and o.status is OrderStatus.FILLED
    )
    return StatusReport(run, orders, len(fills), realized, cycles, fees, fills[-recent:] if recent else ())
