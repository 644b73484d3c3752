"""Use cases: place one order by hand, and cancel one, snapped to the market's rules, checked
before anything leaves, and recorded in the database.

A manual order is a one-order run of its own (fingerprint `manual`), so it never mixes with a
grid's books: `status` shows the grid, `status --manual` the manual trades. Its trades are booked
as fills of that run.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

import structlog
from returns.result import Failure, Result, Success

from domain.errors import DomainError, InsufficientFunds, OrderNotFound, Rejection
from domain.grid import client_order_id
from domain.models import (
    MANUAL_FINGERPRINT,
    ZERO,
    Balance,
    BookedFill,
    BotRun,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    RunStatus,
    Side,
    TrackedOrder,
)
from domain.money import format_money
from domain.ports import Clock, ExchangeGateway, UnitOfWorkFactory
from domain.rules import MarketRules

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TradeIntent:
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PlannedTrade:
    """An order as it would be sent (amount snapped down to the step, a limit price to the safe
    tick), checked against the market's filters and the account's free balance."""

    request: OrderRequest
    run_id: str
    reference_price: (
        Decimal | None
    )  # the price a market order is checked at: the ask for a buy, the bid for a sell
    needs: Decimal  # what the order locks or spends: quote for a buy, base for a sell
    needs_asset: str
    available: Decimal  # that asset's free balance now


@dataclass(frozen=True, slots=True)
class TradeResult:
    order: Order
    sent_amount: Decimal
    sent_price: Decimal | None
    run_id: str
    fills: tuple[Fill, ...] = ()


def _free(balances: Mapping[str, Balance], asset: str) -> Decimal:
    return balances[asset].free if asset in balances else ZERO


def _needs(rules: MarketRules, request: OrderRequest, reference: Decimal | None) -> tuple[Decimal, str]:
    if request.side is Side.SELL:
        return request.amount, rules.base_asset
    price = request.price if request.price is not None else reference
    return request.amount * (price or ZERO), rules.quote_asset


async def plan_trade(intent: TradeIntent, *, gateway: ExchangeGateway) -> Result[PlannedTrade, Rejection]:
    """What `trade` would send, checked: every filter of the market (min notional against the
    current price for a market order), and the free balance. A Failure names what fails; nothing
    is sent either way (`trade --dry-run` stops here)."""
    rules = await gateway.market_rules(intent.symbol)
    amount = rules.floor_amount(intent.amount)
    price: Decimal | None = None
    reference: Decimal | None = None
    if intent.type is OrderType.LIMIT:
        if intent.price is None:
            return Failure(Rejection("PRICE", "a limit order needs --price"))
        price = rules.snap_price_safe(intent.price, intent.side)
    else:
        ticker = await gateway.fetch_ticker(intent.symbol)
        reference = ticker.ask if intent.side is Side.BUY else ticker.bid
    run_id = uuid.uuid4().hex
    request = OrderRequest(
        symbol=intent.symbol,
        side=intent.side,
        type=intent.type,
        amount=amount,
        client_order_id=client_order_id(run_id, -1, 0),
        price=price,
    )
    checked = rules.check_order(request, reference_price=reference)
    if isinstance(checked, Failure):
        return Failure(checked.failure())
    needs, asset = _needs(rules, request, reference)
    available = _free(await gateway.fetch_balances(), asset)
    if needs > available:
        return Failure(
            Rejection(
                "BALANCE",
                f"the order needs {format_money(needs)} {asset}"
                + (" (at the current price)" if reference is not None and asset == rules.quote_asset else "")
                + f", the account has {format_money(available)} {asset} free",
            )
        )
    return Success(PlannedTrade(request, run_id, reference, needs, asset, available))


async def place_trade(
    intent: TradeIntent,
    *,
    gateway: ExchangeGateway,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    exchange: str,
) -> Result[TradeResult, Rejection]:
    """Plan the order (`plan_trade`), book it, send it, and book its trades as fills. A check that
    fails is a Failure and nothing is sent; a venue refusal raises the domain's error (a refusal
    for lack of funds says how much is free)."""
    planned = await plan_trade(intent, gateway=gateway)
    if isinstance(planned, Failure):
        return Failure(planned.failure())
    plan = planned.unwrap()
    request, run_id = plan.request, plan.run_id
    now = clock.now()
    run = BotRun(
        run_id=run_id,
        symbol=intent.symbol,
        exchange=exchange,
        status=RunStatus.STOPPED,
        started_at=now,
        grid_fingerprint=MANUAL_FINGERPRINT,
        stopped_at=now,
        stop_reason="manual trade",
    )
    tracked = TrackedOrder(
        run_id=run_id,
        client_order_id=request.client_order_id,
        symbol=intent.symbol,
        side=intent.side,
        type=intent.type,
        amount=request.amount,
        price=request.price,
        level=-1,
        status=OrderStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    async with uow_factory() as uow:  # booked before it is sent: a crash leaves a trace to reconcile
        await uow.runs.add(run)
        await uow.orders.add(tracked)
        await uow.commit()
    try:
        order = await gateway.place_order(request)
    except Exception as exc:
        async with uow_factory() as uow:
            await uow.orders.update(replace(tracked, status=OrderStatus.REJECTED, updated_at=clock.now()))
            await uow.commit()
        if isinstance(exc, InsufficientFunds):
            free = _free(await gateway.fetch_balances(), plan.needs_asset)
            raise InsufficientFunds(
                f"{exc} (the order needs {format_money(plan.needs)} {plan.needs_asset}, "
                f"the account has {format_money(free)} {plan.needs_asset} free)"
            ) from exc
        raise
    fills = await _book_order(tracked, order, gateway=gateway, uow_factory=uow_factory, clock=clock)
    log.info(
        "trade placed",
        order=order.client_order_id,
        order_id=order.order_id,
        side=order.side.value,
        status=order.status.value,
        filled=order.filled,
        fills=len(fills),
    )
    return Success(TradeResult(order, request.amount, request.price, run_id, tuple(fills)))


async def _book_order(
    tracked: TrackedOrder,
    order: Order,
    *,
    gateway: ExchangeGateway,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
) -> list[Fill]:
    """Book the venue's view of a manual order, and its trades as fills (each once)."""
    trades: Sequence[Fill] = ()
    if order.filled > 0:
        trades = await gateway.fetch_order_trades(tracked.symbol, order.order_id)
    status = order.status if order.status is not OrderStatus.PENDING else OrderStatus.OPEN
    booked: list[Fill] = []
    async with uow_factory() as uow:
        await uow.orders.update(
            replace(
                tracked,
                status=status,
                exchange_order_id=order.order_id,
                filled=order.filled,
                updated_at=clock.now(),
            )
        )
        for trade in trades:
            if not await uow.fills.exists(tracked.run_id, trade.trade_id):
                await uow.fills.add(BookedFill(tracked.run_id, trade))
                booked.append(trade)
        await uow.commit()
    return booked


class NotAManualOrder(DomainError):
    """`cancel` was given an order that is not a manual one (a grid's, or one these books lack)."""


@dataclass(frozen=True, slots=True)
class CancelResult:
    order: Order
    was: TrackedOrder
    fills: tuple[Fill, ...]


async def cancel_manual_order(
    reference: str,
    *,
    symbol: str,
    gateway: ExchangeGateway,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
) -> CancelResult:
    """Cancel one order placed with `trade`, named by its client order id or the venue's order id,
    and book how it ended (cancelled, or filled after all) with its trades.

    A grid's order is refused: cancelling one rung would leave a hole in the ladder that the grid's
    books do not expect; `stop --cancel-orders` closes a whole grid instead."""
    tracked = await _booked_order(reference, symbol=symbol, gateway=gateway, uow_factory=uow_factory)
    if tracked.level >= 0:
        raise NotAManualOrder(
            f"{tracked.client_order_id} is an order of grid run {tracked.run_id[:12]}: cancelling one "
            "grid order would leave a hole in its ladder; `stop --cancel-orders` cancels a whole grid"
        )
    if not tracked.status.is_active:
        raise NotAManualOrder(
            f"{tracked.client_order_id} is already {tracked.status.value}: nothing to cancel"
        )
    try:
        if tracked.exchange_order_id is not None:
            order = await gateway.cancel_order(symbol, tracked.exchange_order_id)
        else:
            found = await gateway.fetch_order(symbol, client_order_id=tracked.client_order_id)
            order = await gateway.cancel_order(symbol, found.order_id)
    except OrderNotFound:  # not open any more: book how it ended
        order = await gateway.fetch_order(symbol, client_order_id=tracked.client_order_id)
    fills = await _book_order(tracked, order, gateway=gateway, uow_factory=uow_factory, clock=clock)
    log.info("order cancelled", order=tracked.client_order_id, status=order.status.value, filled=order.filled)
    return CancelResult(order, tracked, tuple(fills))


async def _booked_order(
    reference: str, *, symbol: str, gateway: ExchangeGateway, uow_factory: UnitOfWorkFactory
) -> TrackedOrder:
    async with uow_factory() as uow:
        tracked = await uow.orders.get(reference)
    if tracked is not None:
        return tracked
    try:  # the venue's order id: the venue knows its client order id
        on_venue = await gateway.fetch_order(symbol, order_id=reference)
    except OrderNotFound:
        raise NotAManualOrder(
            f"no order {reference!r} in this database, nor on the exchange for {symbol} "
            "(give a client order id, gb-..., or the exchange's order id)"
        ) from None
    async with uow_factory() as uow:
        tracked = await uow.orders.get(on_venue.client_order_id)
    if tracked is None:
        raise NotAManualOrder(
            f"order {reference} ({on_venue.client_order_id}) was not placed by this bot's books: "
            "cancel it where it was placed"
        )
    return tracked
