"""Use case: place one order by hand, snapped to the market's rules, checked before it leaves, and
recorded in the database (as a one-order run, so it never mixes with a grid's books)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from decimal import Decimal

import structlog
from returns.result import Failure, Result, Success

from domain.errors import Rejection
from domain.grid import client_order_id
from domain.models import (
    MANUAL_FINGERPRINT,
    BotRun,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    RunStatus,
    Side,
    TrackedOrder,
)
from domain.ports import Clock, ExchangeGateway, UnitOfWorkFactory

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TradeIntent:
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TradeResult:
    order: Order
    sent_amount: Decimal
    sent_price: Decimal | None
    run_id: str


async def place_trade(
    intent: TradeIntent,
    *,
    gateway: ExchangeGateway,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    exchange: str,
) -> Result[TradeResult, Rejection]:
    """Snap amount down to the step and a limit price to the safe tick, check every filter (min
    notional against the current price for market orders), then send. A filter failure is a
    Failure and nothing is sent; a venue refusal raises the domain's error."""
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
        amount=amount,
        price=price,
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
    except Exception:
        async with uow_factory() as uow:
            await uow.orders.update(replace(tracked, status=OrderStatus.REJECTED, updated_at=clock.now()))
            await uow.commit()
        raise
    async with uow_factory() as uow:
        await uow.orders.update(
            replace(
                tracked,
                status=order.status if order.status is not OrderStatus.PENDING else OrderStatus.OPEN,
                exchange_order_id=order.order_id,
                filled=order.filled,
                updated_at=clock.now(),
            )
        )
        await uow.commit()
    log.info(
        "trade placed",
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        side=order.side.value,
        status=order.status.value,
        filled=str(order.filled),
    )
    return Success(TradeResult(order, amount, price, run_id))
