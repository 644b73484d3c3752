"""The one matching engine behind the mock exchange, paper trading, backtests and the loopback
Binance test server. A pure, synchronous state machine: no asyncio, no I/O, no clock reads
(every call that stamps something takes `now`).

Rules
-----
* One symbol (`rules.symbol`, e.g. "BTC/USDT"), one account. Order ids and trade ids are
  sequential integers rendered as strings ("1", "2", ...), never reused; a refused order takes
  no id. An empty client order id is replaced by "sim-<order id>".
* Validation, in this order, with the venue's own errors, messages and codes:
  another symbol -> InvalidOrder("Invalid symbol.", -1121);
  a filter of `rules.check_order(request, reference_price=last_price)` fails ->
  InvalidOrder("Filter failure: <FILTER>", -1013);
  a market order with no last price -> InvalidOrder("No market price to fill against.", -1013);
  one more open order would exceed `rules.max_num_orders` (every new order counts, even one
  that fills at once) -> InvalidOrder("Filter failure: MAX_NUM_ORDERS", -1013);
  the client order id of an open order -> DuplicateOrder("Duplicate order sent.", -2010);
  not enough free balance -> InsufficientFunds("Account has insufficient balance for
  requested action.", -2010). A refused order changes nothing.
  Lookups: unknown order -> OrderNotFound("Order does not exist.", -2013); cancelling an
  unknown or already closed order -> OrderNotFound("Unknown order sent.", -2011).
* Funds: a resting buy locks price*amount quote, a resting sell locks amount base. Balances
  never go negative.
* Fees are charged in the asset received: a buy pays amount*rate in base, a sell pays
  quote_received*rate in quote, rounded UP to 8 decimals (and never more than received).
  Fills at placement pay the taker rate, resting orders filled later the maker rate.
* A market order, or a limit order that is marketable at placement (buy price >= last price,
  sell price <= last price), fills at once, in full, as taker at the last price (never worse
  than its limit; a buy only spends last*amount). Other orders rest. With no last price yet a
  limit order always rests. A market order's amount is in base; a price on it is ignored.
* `move_to(price, now, gap=False)`: the price travels in a straight line from the last price.
  Moving down, every resting buy with limit >= price fills, highest first; moving up, every
  resting sell with limit <= price fills, lowest first; equal prices fill oldest first. A fill
  is at the order's own limit, except for a gap (e.g. a candle opening away from the previous
  close): then crossed orders fill at the new price, which is never worse for their owner.
  These are maker fills, returned in path order. The first price ever set is treated as a
  gap: orders resting before any price existed that it crosses fill at that price.
* Fills are full (no partial fills): the order becomes FILLED with filled, average_price, fee
  and fee_asset set.
* Candle rule (applied by `CandlePriceSource` and `CandleFilePriceSource`): inside a candle the path is
  open -> low -> high -> close when close >= open, else open -> high -> low -> close
  (`Candle.path()`); the step to the open is a gap from the previous close. An order placed
  between two steps of a candle can fill on a later step of the same candle.
* Deterministic: same calls, same results. `snapshot()` is JSON-serialisable (Decimals as
  strings) and `restore(snapshot())` rebuilds an identical engine.
* Change journal: the engine remembers which orders it created or changed and which trades it
  made since the last `mark_saved()`; `unsaved_changes()` hands them out, with the balances,
  counters and last price, so a store writes the rows that changed instead of the whole state.
  A new engine has nothing unsaved; so has a restored one (it came from a save). An engine
  nobody saves keeps a set of changed order ids, never more than the orders it keeps anyway.

Resting orders sit in two sorted lists whose best order is at the end, so `move_to` costs
O(fills) plus nothing per untouched order; placing and cancelling are a bisect each.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from returns.result import Failure

from domain.errors import (
    DuplicateOrder,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
)
from domain.models import ZERO, Balance, Fill, Order, OrderRequest, OrderStatus, OrderType, Side, Ticker
from domain.rules import MarketRules, venue_filter_message

FEE_QUANTUM = Decimal("0.00000001")
SNAPSHOT_VERSION = 1

_DECIMAL_RULE_FIELDS = (
    "tick_size",
    "step_size",
    "min_qty",
    "max_qty",
    "min_price",
    "max_price",
    "min_notional",
    "max_notional",
    "market_max_qty",
)


@dataclass(frozen=True, slots=True)
class EngineChanges:
    """What a store needs to catch up with the engine since its last save: the orders created
    or changed (by id), the new trades (oldest first), and the small rest it rewrites each time."""

    orders: tuple[Order, ...]
    trades: tuple[Fill, ...]
    balances: dict[str, Balance]
    last_price: Decimal | None
    next_order_id: int
    next_trade_id: int


def _fee(amount_received: Decimal, rate: Decimal) -> Decimal:
    if rate == 0:
        return ZERO
    return min((amount_received * rate).quantize(FEE_QUANTUM, rounding=ROUND_CEILING), amount_received)


class MatchingEngine:
    """Resting limit orders, balances with locked funds and fills for one symbol."""

    def __init__(
        self,
        rules: MarketRules,
        balances: Mapping[str, Decimal],
        *,
        maker_fee: Decimal,
        taker_fee: Decimal,
        last_price: Decimal | None = None,
    ) -> None:
        for name, rate in (("maker_fee", maker_fee), ("taker_fee", taker_fee)):
            if not ZERO <= rate < 1:
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        if last_price is not None and last_price <= 0:
            raise ValueError(f"last_price must be positive, got {last_price}")
        for asset, amount in balances.items():
            if amount < 0:
                raise ValueError(f"balance of {asset} must not be negative, got {amount}")
        self.rules = rules
        self._base = rules.base_asset
        self._quote = rules.quote_asset
        self._maker_fee = maker_fee
        self._taker_fee = taker_fee
        self._last_price = last_price
        self._free: dict[str, Decimal] = {self._base: ZERO, self._quote: ZERO}
        self._free.update(balances)
        self._locked: dict[str, Decimal] = dict.fromkeys(self._free, ZERO)
        self._next_order_id = 1
        self._next_trade_id = 1
        self._orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}  # insertion order == id order == oldest first
        self._open_by_client: dict[str, str] = {}
        self._latest_by_client: dict[str, str] = {}
        self._trades: list[Fill] = []
        self._trades_by_order: dict[str, list[Fill]] = {}
        # Best order last: bids keyed (price, -seq) -> highest price, then oldest, at the end;
        # asks keyed (-price, -seq) -> lowest price, then oldest, at the end.
        self._bids: list[tuple[Decimal, int]] = []
        self._asks: list[tuple[Decimal, int]] = []
        # The change journal: ids of orders changed, and how many trades were saved.
        self._unsaved_orders: set[str] = set()
        self._saved_trades = 0

    # -- queries ---------------------------------------------------------------------------
    @property
    def last_price(self) -> Decimal | None:
        return self._last_price

    @property
    def maker_fee(self) -> Decimal:
        return self._maker_fee

    @property
    def taker_fee(self) -> Decimal:
        return self._taker_fee

    def order(self, *, order_id: str | None = None, client_order_id: str | None = None) -> Order:
        found = self._lookup(order_id, client_order_id)
        if found is None:
            raise OrderNotFound("Order does not exist.", code=-2013)
        return found

    def open_orders(self) -> list[Order]:
        return list(self._open.values())

    def trades(self, since_trade_id: str | None = None) -> list[Fill]:
        if since_trade_id is None:
            return list(self._trades)
        try:
            after = int(since_trade_id)
        except ValueError:
            raise InvalidOrder(
                f"Invalid trade id {since_trade_id!r}: trade ids are numeric.", code=-1100
            ) from None
        return self._trades[max(after, 0) :]

    def order_trades(self, order_id: str) -> list[Fill]:
        """The trades of one order, oldest first; empty for an order without any (or unknown)."""
        return list(self._trades_by_order.get(order_id, ()))

    def balances(self) -> dict[str, Balance]:
        return {asset: Balance(asset, self._free[asset], self._locked[asset]) for asset in self._free}

    def best_bid(self) -> Decimal | None:
        """The highest resting buy's limit: the price falling to it fills that buy."""
        return self._bids[-1][0] if self._bids else None

    def best_ask(self) -> Decimal | None:
        """The lowest resting sell's limit: the price rising to it fills that sell."""
        return -self._asks[-1][0] if self._asks else None

    def ticker(self, now: datetime) -> Ticker:
        """A one-tick spread around the last price (the bid stays positive)."""
        last = self._last_price
        if last is None:
            raise ExchangeUnavailable("no market price yet")
        tick = self.rules.tick_size
        bid = last - tick if last - tick > 0 else last
        return Ticker(symbol=self.rules.symbol, bid=bid, ask=last + tick, last=last, timestamp=now)

    # -- commands --------------------------------------------------------------------------
    def place(self, request: OrderRequest, now: datetime) -> tuple[Order, list[Fill]]:
        """Validate, then fill at once (taker) or rest. Returns the order and its fills."""
        last = self._last_price
        if request.symbol != self.rules.symbol:
            raise InvalidOrder("Invalid symbol.", code=-1121)
        checked = self.rules.check_order(request, reference_price=last)
        if isinstance(checked, Failure):
            raise InvalidOrder(venue_filter_message(checked.failure()), code=-1013)
        if request.type is OrderType.MARKET and last is None:
            raise InvalidOrder("No market price to fill against.", code=-1013)
        room = self.rules.check_open_orders(len(self._open))
        if isinstance(room, Failure):
            raise InvalidOrder(venue_filter_message(room.failure()), code=-1013)
        if request.client_order_id and request.client_order_id in self._open_by_client:
            raise DuplicateOrder("Duplicate order sent.", code=-2010)

        limit = request.price if request.type is OrderType.LIMIT else None  # a market order has none
        if request.type is OrderType.MARKET:
            assert last is not None
            fill_price: Decimal | None = last
        elif (
            last is not None
            and limit is not None
            and (
                (request.side is Side.BUY and limit >= last) or (request.side is Side.SELL and limit <= last)
            )
        ):
            fill_price = last
        else:
            fill_price = None
        if request.side is Side.BUY:
            # Binance checks a limit buy against its full limit value, a market buy against the price.
            needed = (limit if limit is not None else last or ZERO) * request.amount
            spend_asset = self._quote
        else:
            needed = request.amount
            spend_asset = self._base
        if self._free[spend_asset] < needed:
            raise InsufficientFunds("Account has insufficient balance for requested action.", code=-2010)

        seq = self._next_order_id
        self._next_order_id += 1
        order_id = str(seq)
        order = Order(
            order_id=order_id,
            client_order_id=request.client_order_id or f"sim-{order_id}",
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            amount=request.amount,
            price=limit,
            status=OrderStatus.OPEN,
            created_at=now,
        )
        self._latest_by_client[order.client_order_id] = order_id
        if fill_price is not None:
            if order.side is Side.BUY:
                self._free[self._quote] -= fill_price * order.amount
            else:
                self._free[self._base] -= order.amount
            fill = self._execute(order, fill_price, now, is_maker=False)
            return self._orders[order_id], [fill]

        assert limit is not None
        self._lock(order)
        self._orders[order_id] = order
        self._unsaved_orders.add(order_id)
        self._open[order_id] = order
        self._open_by_client[order.client_order_id] = order_id
        if order.side is Side.BUY:
            bisect.insort(self._bids, (limit, -seq))
        else:
            bisect.insort(self._asks, (-limit, -seq))
        return order, []

    def cancel(
        self, now: datetime, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        """Cancel an open order and release its locked funds."""
        found = self._lookup(order_id, client_order_id)
        if found is None or found.order_id not in self._open:
            raise OrderNotFound("Unknown order sent.", code=-2011)
        return self._cancel_open(found)

    def cancel_all(self, now: datetime) -> list[Order]:
        """Cancel every open order, oldest first. (Binance answers -2011 when none is open;
        this returns an empty list and leaves that choice to the caller.)"""
        return [self._cancel_open(order) for order in list(self._open.values())]

    def move_to(self, price: Decimal, now: datetime, *, gap: bool = False) -> list[Fill]:
        """Move the market to `price`, filling every resting order the path crosses."""
        if price <= 0:
            raise ValueError(f"a market price must be positive, got {price}")
        last = self._last_price
        self._last_price = price
        fills: list[Fill] = []
        if last is None:
            self._fill_bids(price, now, fills, at=price)
            self._fill_asks(price, now, fills, at=price)
        elif price < last:
            self._fill_bids(price, now, fills, at=price if gap else None)
        elif price > last:
            self._fill_asks(price, now, fills, at=price if gap else None)
        return fills

    # -- persistence -------------------------------------------------------------------------
    def unsaved_changes(self) -> EngineChanges:
        """The changes since the last `mark_saved()` (call that once they are written)."""
        return EngineChanges(
            orders=tuple(self._orders[order_id] for order_id in sorted(self._unsaved_orders, key=int)),
            trades=tuple(self._trades[self._saved_trades :]),
            balances=self.balances(),
            last_price=self._last_price,
            next_order_id=self._next_order_id,
            next_trade_id=self._next_trade_id,
        )

    def mark_saved(self) -> None:
        """Everything so far is written: empty the change journal."""
        self._unsaved_orders.clear()
        self._saved_trades = len(self._trades)

    def snapshot(self) -> dict[str, Any]:
        rules = self.rules
        return {
            "version": SNAPSHOT_VERSION,
            "rules": {
                "symbol": rules.symbol,
                "base_asset": rules.base_asset,
                "quote_asset": rules.quote_asset,
                "max_num_orders": rules.max_num_orders,
                **{name: str(getattr(rules, name)) for name in _DECIMAL_RULE_FIELDS},
            },
            "maker_fee": str(self._maker_fee),
            "taker_fee": str(self._taker_fee),
            "last_price": None if self._last_price is None else str(self._last_price),
            "balances": {
                asset: {"free": str(self._free[asset]), "locked": str(self._locked[asset])}
                for asset in self._free
            },
            "next_order_id": self._next_order_id,
            "next_trade_id": self._next_trade_id,
            "orders": [order_to_json(order) for order in self._orders.values()],
            "trades": [fill_to_json(fill) for fill in self._trades],
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any]) -> MatchingEngine:
        """Rebuild an engine from `snapshot()`. Raises ValueError on a malformed snapshot."""
        try:
            return cls._restore(data)
        except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as exc:
            raise ValueError(f"malformed matching-engine snapshot: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def _restore(cls, data: Mapping[str, Any]) -> MatchingEngine:
        if data["version"] != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {data['version']!r}")
        raw_rules = data["rules"]
        rules = MarketRules(
            symbol=str(raw_rules["symbol"]),
            base_asset=str(raw_rules["base_asset"]),
            quote_asset=str(raw_rules["quote_asset"]),
            max_num_orders=int(raw_rules["max_num_orders"]),
            **{name: _decimal(raw_rules[name]) for name in _DECIMAL_RULE_FIELDS},
        )
        raw_balances = data["balances"]
        last_price = data["last_price"]
        engine = cls(
            rules,
            {asset: _decimal(entry["free"]) for asset, entry in raw_balances.items()},
            maker_fee=_decimal(data["maker_fee"]),
            taker_fee=_decimal(data["taker_fee"]),
            last_price=None if last_price is None else _decimal(last_price),
        )
        engine._locked.update({asset: _decimal(entry["locked"]) for asset, entry in raw_balances.items()})
        engine._next_order_id = int(data["next_order_id"])
        engine._next_trade_id = int(data["next_trade_id"])
        for raw in data["orders"]:
            order = order_from_json(raw)
            engine._orders[order.order_id] = order
            engine._latest_by_client[order.client_order_id] = order.order_id
            if order.status is OrderStatus.OPEN:
                if order.price is None:
                    raise ValueError(f"open order {order.order_id} has no price")
                engine._open[order.order_id] = order
                engine._open_by_client[order.client_order_id] = order.order_id
                seq = int(order.order_id)
                if order.side is Side.BUY:
                    engine._bids.append((order.price, -seq))
                else:
                    engine._asks.append((-order.price, -seq))
        engine._bids.sort()
        engine._asks.sort()
        engine._trades = [fill_from_json(raw) for raw in data["trades"]]
        for fill in engine._trades:
            engine._trades_by_order.setdefault(fill.order_id, []).append(fill)
        engine._saved_trades = len(engine._trades)
        return engine

    # -- internals ---------------------------------------------------------------------------
    def _lookup(self, order_id: str | None, client_order_id: str | None) -> Order | None:
        if order_id is None and client_order_id is None:
            raise InvalidOrder(
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!", code=-1102
            )
        if order_id is not None:
            found = self._orders.get(order_id)
            if found is not None and client_order_id is not None and found.client_order_id != client_order_id:
                return None
            return found
        assert client_order_id is not None
        latest = self._latest_by_client.get(client_order_id)
        return None if latest is None else self._orders[latest]

    def _lock(self, order: Order) -> None:
        if order.side is Side.BUY:
            assert order.price is not None
            amount, asset = order.price * order.amount, self._quote
        else:
            amount, asset = order.amount, self._base
        self._free[asset] -= amount
        self._locked[asset] += amount

    def _unlock(self, order: Order) -> None:
        if order.side is Side.BUY:
            assert order.price is not None
            amount, asset = order.price * order.amount, self._quote
        else:
            amount, asset = order.amount, self._base
        self._locked[asset] -= amount
        self._free[asset] += amount

    def _close(self, order: Order) -> None:
        del self._open[order.order_id]
        del self._open_by_client[order.client_order_id]

    def _cancel_open(self, order: Order) -> Order:
        assert order.price is not None
        seq = int(order.order_id)
        book, key = (
            (self._bids, (order.price, -seq))
            if order.side is Side.BUY
            else (self._asks, (-order.price, -seq))
        )
        index = bisect.bisect_left(book, key)
        del book[index]
        self._close(order)
        self._unlock(order)
        canceled = replace(order, status=OrderStatus.CANCELED)
        self._orders[order.order_id] = canceled
        self._unsaved_orders.add(order.order_id)
        return canceled

    def _fill_bids(self, price: Decimal, now: datetime, fills: list[Fill], *, at: Decimal | None) -> None:
        bids = self._bids
        while bids and bids[-1][0] >= price:
            limit, neg_seq = bids.pop()
            order = self._open[str(-neg_seq)]
            self._close(order)
            self._unlock(order)
            fill_price = limit if at is None else at
            self._free[self._quote] -= fill_price * order.amount
            fills.append(self._execute(order, fill_price, now, is_maker=True))

    def _fill_asks(self, price: Decimal, now: datetime, fills: list[Fill], *, at: Decimal | None) -> None:
        asks = self._asks
        while asks and -asks[-1][0] <= price:
            neg_limit, neg_seq = asks.pop()
            order = self._open[str(-neg_seq)]
            self._close(order)
            self._unlock(order)
            fill_price = -neg_limit if at is None else at
            self._free[self._base] -= order.amount
            fills.append(self._execute(order, fill_price, now, is_maker=True))

    def _execute(self, order: Order, price: Decimal, now: datetime, *, is_maker: bool) -> Fill:
        """Credit what the order receives, net of the fee; the caller has already debited what it pays."""
        rate = self._maker_fee if is_maker else self._taker_fee
        if order.side is Side.BUY:
            fee, fee_asset = _fee(order.amount, rate), self._base
            self._free[self._base] += order.amount - fee
        else:
            received = price * order.amount
            fee, fee_asset = _fee(received, rate), self._quote
            self._free[self._quote] += received - fee
        trade_id = str(self._next_trade_id)
        self._next_trade_id += 1
        fill = Fill(
            trade_id=trade_id,
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            price=price,
            amount=order.amount,
            fee=fee,
            fee_asset=fee_asset,
            timestamp=now,
            is_maker=is_maker,
        )
        self._trades.append(fill)
        self._trades_by_order.setdefault(order.order_id, []).append(fill)
        self._orders[order.order_id] = replace(
            order,
            status=OrderStatus.FILLED,
            filled=order.amount,
            average_price=price,
            fee=fee,
            fee_asset=fee_asset,
        )
        self._unsaved_orders.add(order.order_id)
        return fill


def _decimal(value: Any) -> Decimal:
    """Snapshots hold Decimals as strings; anything else (a float above all) is corruption."""
    if not isinstance(value, str):
        raise TypeError(f"expected a decimal string, got {value!r}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"expected a finite decimal, got {value!r}")
    return number


# The shapes of an order and a trade in a snapshot; the state store's rows have the same columns.
def order_to_json(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "type": order.type.value,
        "amount": str(order.amount),
        "price": None if order.price is None else str(order.price),
        "status": order.status.value,
        "created_at": order.created_at.isoformat(),
        "filled": str(order.filled),
        "average_price": None if order.average_price is None else str(order.average_price),
        "fee": str(order.fee),
        "fee_asset": order.fee_asset,
    }


def order_from_json(raw: Mapping[str, Any]) -> Order:
    return Order(
        order_id=str(raw["order_id"]),
        client_order_id=str(raw["client_order_id"]),
        symbol=str(raw["symbol"]),
        side=Side(raw["side"]),
        type=OrderType(raw["type"]),
        amount=_decimal(raw["amount"]),
        price=None if raw["price"] is None else _decimal(raw["price"]),
        status=OrderStatus(raw["status"]),
        created_at=datetime.fromisoformat(raw["created_at"]),
        filled=_decimal(raw["filled"]),
        average_price=None if raw["average_price"] is None else _decimal(raw["average_price"]),
        fee=_decimal(raw["fee"]),
        fee_asset=None if raw["fee_asset"] is None else str(raw["fee_asset"]),
    )


def fill_to_json(fill: Fill) -> dict[str, Any]:
    return {
        "trade_id": fill.trade_id,
        "order_id": fill.order_id,
        "client_order_id": fill.client_order_id,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "price": str(fill.price),
        "amount": str(fill.amount),
        "fee": str(fill.fee),
        "fee_asset": fill.fee_asset,
        "timestamp": fill.timestamp.isoformat(),
        "is_maker": fill.is_maker,
    }


def fill_from_json(raw: Mapping[str, Any]) -> Fill:
    return Fill(
        trade_id=str(raw["trade_id"]),
        order_id=str(raw["order_id"]),
        client_order_id=str(raw["client_order_id"]),
        symbol=str(raw["symbol"]),
        side=Side(raw["side"]),
        price=_decimal(raw["price"]),
        amount=_decimal(raw["amount"]),
        fee=_decimal(raw["fee"]),
        fee_asset=str(raw["fee_asset"]),
        timestamp=datetime.fromisoformat(raw["timestamp"]),
        is_maker=bool(raw["is_maker"]),
    )
