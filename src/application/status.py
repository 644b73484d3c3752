"""Use case: report a run's state from the database alone (no venue access)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from domain.errors import DomainError
from domain.grid import sell_profit
from domain.models import (
    MANUAL_FINGERPRINT,
    ZERO,
    BookedFill,
    BotRun,
    OrderStatus,
    Side,
    TrackedOrder,
    split_symbol,
)
from domain.ports import UnitOfWork, UnitOfWorkFactory

LAST_PRICE_PARAM = "last_price"  # the run's params key where the grid bot keeps the last market price
# The run's params key where a running bot notes its feeds (which is live, when it last spoke, when
# it fell back), as JSON, when one changes mode and at every heartbeat: what `status` shows.
FEEDS_PARAM = "feeds"
AVERAGE_COST_QUANTUM = Decimal("1E-8")  # average cost is a quotient: reported to 8 decimal places


@dataclass(frozen=True, slots=True)
class Position:
    """The base a run holds and what it paid for it, from its booked fills.

    - `base` (the base position): every buy's amount net of a fee charged in the base asset,
      minus every sell's amount. A sell's fee is charged against its proceeds, as realized profit
      counts it, so it does not reduce the base here.
    - `cost`: quote paid for the base still held. Each buy adds its quote amount (price x amount)
      plus its fee when the fee is charged in the quote asset; each sell removes the cost basis
      of the base it carried, which is its proceeds after fee minus its realized profit (so
      exactly the cost basis the bot booked for it). A fee in a third asset (BNB) is not counted.
    - `last_price`: the last market price the bot recorded for the run (`source` "market"), or
      else the price of the run's latest fill (`source` "fill"); None when neither is known.
    """

    base: Decimal = ZERO
    cost: Decimal = ZERO
    last_price: Decimal | None = None
    last_price_source: str | None = None

    @property
    def average_cost(self) -> Decimal | None:
        """Quote paid per unit of base held, `cost / base` to 8 decimal places; None with no base."""
        if self.base <= 0:
            return None
        return (self.cost / self.base).quantize(AVERAGE_COST_QUANTUM)

    @property
    def unrealized_pnl(self) -> Decimal | None:
        """What the held base would gain over its cost if sold at the last price (before fees)."""
        if self.last_price is None:
            return None
        return self.base * self.last_price - self.cost


@dataclass(frozen=True, slots=True)
class StatusReport:
    run: BotRun | None
    open_orders: tuple[TrackedOrder, ...]
    fills: int
    realized_pnl: Decimal
    completed_cycles: int
    fees: dict[str, Decimal]
    recent_fills: tuple[BookedFill, ...]
    position: Position = Position()

    @property
    def equity_change(self) -> Decimal | None:
        """Realized plus unrealized profit: the run's gain in quote, its base valued at the last
        price. None when no price is known."""
        unrealized = self.position.unrealized_pnl
        return None if unrealized is None else self.realized_pnl + unrealized


def position_of(symbol: str, fills: Sequence[BookedFill], params: Mapping[str, str]) -> Position:
    """The position a run's booked fills (oldest first) leave it with; see `Position`."""
    base_asset, quote_asset = split_symbol(symbol)
    base = cost = ZERO
    for booked in fills:
        fill = booked.fill
        if fill.side is Side.BUY:
            base += fill.amount - (fill.fee if fill.fee_asset == base_asset else ZERO)
            cost += fill.quote_amount + (fill.fee if fill.fee_asset == quote_asset else ZERO)
        else:
            proceeds = sell_profit(
                price=fill.price,
                amount=fill.amount,
                fee=fill.fee,
                fee_asset_is_quote=fill.fee_asset == quote_asset,
                cost_basis=ZERO,
            )
            base -= fill.amount
            cost -= proceeds - booked.realized_pnl
    market = _decimal_or_none(params.get(LAST_PRICE_PARAM))
    if market is not None:
        return Position(base, cost, market, "market")
    if fills:
        return Position(base, cost, fills[-1].fill.price, "fill")
    return Position(base, cost)


def _decimal_or_none(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value > 0 else None


@dataclass(frozen=True, slots=True)
class FeedsNote:
    """What a running bot last noted of its feeds: by name (market_data, order_updates), the
    mode, when it last spoke and when it fell back."""

    noted_at: str
    feeds: dict[str, dict[str, object]]


def feeds_of(params: Mapping[str, str]) -> FeedsNote | None:
    """The feeds a running bot last noted in its run's params (see FEEDS_PARAM); None when none
    were, or the note is unreadable."""
    raw = params.get(FEEDS_PARAM)
    if raw is None:
        return None
    try:
        noted = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(noted, dict) or not isinstance(noted.get("feeds"), dict):
        return None
    feeds = {str(name): dict(state) for name, state in noted["feeds"].items() if isinstance(state, dict)}
    return FeedsNote(str(noted.get("noted_at", "")), feeds)


async def run_named(uow: UnitOfWork, run_id: str) -> BotRun | None:
    """The run with this id, or the one run whose id starts with it (the short id in the logs and
    in client order ids); an id that several runs start with is refused, naming two."""
    run = await uow.runs.get(run_id)
    if run is not None:
        return run
    found = await uow.runs.starting_with(run_id, limit=2)
    if len(found) > 1:
        raise AmbiguousRunId(
            f"several runs have an id starting with {run_id!r} ({found[0].run_id}, {found[1].run_id}, ...): "
            "give more of it"
        )
    return found[0] if found else None


class AmbiguousRunId(DomainError):
    """A short run id that more than one run starts with."""


async def grid_status(
    uow_factory: UnitOfWorkFactory, *, run_id: str | None = None, symbol: str | None = None, recent: int = 10
) -> StatusReport:
    """The latest grid run (or `run_id`), its active orders, its fills, its realized profit and its
    position (base held, its cost, the last price and the unrealized profit). Manual trades are
    not grid runs: `manual_trades` lists them."""
    async with uow_factory() as uow:
        run = (
            await run_named(uow, run_id)
            if run_id
            else await uow.runs.latest(symbol, exclude_fingerprint=MANUAL_FINGERPRINT)
        )
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
    return StatusReport(
        run,
        orders,
        len(fills),
        realized,
        cycles,
        fees,
        fills[-recent:] if recent else (),
        position_of(run.symbol, fills, run.params),
    )


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One line of `runs`."""

    run: BotRun
    fills: int
    realized_pnl: Decimal


async def list_runs(uow_factory: UnitOfWorkFactory, *, limit: int) -> list[RunSummary]:
    """The grid runs, newest first, with how many fills each booked and its realized profit."""
    async with uow_factory() as uow:
        runs = await uow.runs.recent(limit=limit, exclude_fingerprint=MANUAL_FINGERPRINT)
        return [
            RunSummary(run, await uow.fills.count(run.run_id), await uow.fills.realized_pnl(run.run_id))
            for run in runs
        ]


@dataclass(frozen=True, slots=True)
class ManualTrade:
    """An order placed by `trade`, as booked: the order, and the fills booked for it."""

    run: BotRun
    order: TrackedOrder
    fills: tuple[BookedFill, ...]

    @property
    def average_price(self) -> Decimal | None:
        filled = sum((b.fill.amount for b in self.fills), ZERO)
        if filled <= 0:
            return None
        return (sum((b.fill.quote_amount for b in self.fills), ZERO) / filled).quantize(AVERAGE_COST_QUANTUM)


async def manual_trades(uow_factory: UnitOfWorkFactory, *, limit: int) -> list[ManualTrade]:
    """The orders placed by hand with `trade`, newest first (each is a one-order run of its own,
    so it never mixes with a grid's books)."""
    found = []
    async with uow_factory() as uow:
        for run in await uow.runs.recent(limit=limit, fingerprint=MANUAL_FINGERPRINT):
            for order in await uow.orders.list_for_run(run.run_id):
                found.append(ManualTrade(run, order, tuple(await uow.fills.list_for_run(run.run_id))))
    return found
