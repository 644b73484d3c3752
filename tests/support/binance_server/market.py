"""What the stand-in knows about each symbol: its filters (served by exchangeInfo and enforced
by the matching engine through `MarketRules`) and a price tape for tickers and klines."""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from domain.models import ZERO, Fill, split_symbol
from domain.rules import MarketRules
from support.binance_server.wire import JsonObject, fmt

KLINE_INTERVALS_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 2_592_000_000,  # served as 30-day buckets: calendar months are not modelled
}
DAY_MS = 86_400_000
_TAPE_POINTS = 200_000


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """A spot symbol and its filters. Defaults are the real BTCUSDT values (spot testnet, 2026)."""

    symbol: str = "BTC/USDT"
    tick_size: Decimal = Decimal("0.01")
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    step_size: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    market_max_qty: Decimal = Decimal("165.02219723")
    min_notional: Decimal = Decimal("5")
    max_notional: Decimal = Decimal("9000000")
    max_num_orders: int = 200
    base_precision: int = 8
    quote_precision: int = 8
    status: str = "TRADING"

    def for_symbol(self, symbol: str) -> SymbolSpec:
        """The same filters on another symbol (for tests that want a second market)."""
        return replace(self, symbol=symbol)

    @property
    def base(self) -> str:
        return split_symbol(self.symbol)[0]

    @property
    def quote(self) -> str:
        return split_symbol(self.symbol)[1]

    @property
    def wire_symbol(self) -> str:
        return self.base + self.quote

    def market_rules(self) -> MarketRules:
        return MarketRules(
            symbol=self.symbol,
            base_asset=self.base,
            quote_asset=self.quote,
            tick_size=self.tick_size,
            step_size=self.step_size,
            min_qty=self.min_qty,
            max_qty=self.max_qty,
            min_price=self.min_price,
            max_price=self.max_price,
            min_notional=self.min_notional,
            max_notional=self.max_notional,
            max_num_orders=self.max_num_orders,
            market_max_qty=self.market_max_qty,
        )

    def filters_json(self) -> list[JsonObject]:
        return [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(self.min_price),
                "maxPrice": fmt(self.max_price),
                "tickSize": fmt(self.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt(self.min_qty),
                "maxQty": fmt(self.max_qty),
                "stepSize": fmt(self.step_size),
            },
            {"filterType": "ICEBERG_PARTS", "limit": 100},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": fmt(ZERO),
                "maxQty": fmt(self.market_max_qty),
                "stepSize": fmt(ZERO),
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "2",
                "bidMultiplierDown": "0.5",
                "askMultiplierUp": "2",
                "askMultiplierDown": "0.5",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": fmt(self.min_notional),
                "applyMinToMarket": True,
                "maxNotional": fmt(self.max_notional),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": self.max_num_orders},
            {"filterType": "MAX_NUM_ORDER_LISTS", "maxNumOrderLists": 20},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
            {"filterType": "MAX_NUM_ORDER_AMENDS", "maxNumOrderAmends": 10},
        ]

    def exchange_info_json(self) -> JsonObject:
        return {
            "symbol": self.wire_symbol,
            "status": self.status,
            "baseAsset": self.base,
            "baseAssetPrecision": self.base_precision,
            "quoteAsset": self.quote,
            "quotePrecision": self.quote_precision,
            "quoteAssetPrecision": self.quote_precision,
            "baseCommissionPrecision": self.base_precision,
            "quoteCommissionPrecision": self.quote_precision,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "opoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "amendAllowed": False,
            "pegInstructionsAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": self.filters_json(),
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "NONE",
            "allowedSelfTradePreventionModes": ["NONE"],
        }


@dataclass(frozen=True, slots=True)
class TapeTrade:
    time_ms: int
    price: Decimal
    qty: Decimal


class PriceTape:
    """Last-price history of one symbol (every market move), for the 24 h ticker
    and for klines. The venue's public trade flow is not modelled: volumes count this account's
    own fills only."""

    def __init__(self, start_ms: int, price: Decimal) -> None:
        self._times: deque[int] = deque([start_ms], maxlen=_TAPE_POINTS)
        self._prices: deque[Decimal] = deque([price], maxlen=_TAPE_POINTS)
        self._trades: deque[TapeTrade] = deque(maxlen=_TAPE_POINTS)

    def record_price(self, time_ms: int, price: Decimal) -> None:
        if self._times and time_ms < self._times[-1]:
            time_ms = self._times[-1]  # the server clock may be moved back by a test; keep the tape sorted
        self._times.append(time_ms)
        self._prices.append(price)

    def record_fills(self, time_ms: int, fills: Iterable[Fill]) -> None:
        for fill in fills:
            self._trades.append(TapeTrade(time_ms, fill.price, fill.amount))

    @property
    def last(self) -> Decimal:
        return self._prices[-1]

    def price_at(self, time_ms: int) -> Decimal:
        """The last price set at or before `time_ms` (the first known price for earlier times)."""
        index = bisect_right(self._times, time_ms) - 1
        return self._prices[max(index, 0)]

    def _points_between(self, start_ms: int, end_ms: int) -> list[Decimal]:
        times = self._times
        low, high = bisect_right(times, start_ms - 1), bisect_right(times, end_ms)
        return [self._prices[i] for i in range(low, high)]

    def _trades_between(self, start_ms: int, end_ms: int) -> list[TapeTrade]:
        return [trade for trade in self._trades if start_ms <= trade.time_ms <= end_ms]

    def window_stats(self, start_ms: int, end_ms: int) -> JsonObject:
        """The rolling-window part of a 24hr ticker: open/high/low/volume over [start, end]."""
        open_price = self.price_at(start_ms)
        prices = [open_price, *self._points_between(start_ms, end_ms)]
        trades = self._trades_between(start_ms, end_ms)
        volume = sum((t.qty for t in trades), ZERO)
        quote_volume = sum((t.qty * t.price for t in trades), ZERO)
        last = self.price_at(end_ms)
        change = last - open_price
        percent = (change / open_price * 100).quantize(Decimal("0.001")) if open_price else ZERO
        weighted = quote_volume / volume if volume else last
        return {
            "priceChange": fmt(change),
            "priceChangePercent": f"{percent:f}",
            "weightedAvgPrice": fmt(weighted),
            "prevClosePrice": fmt(open_price),
            "lastPrice": fmt(last),
            "lastQty": fmt(trades[-1].qty if trades else ZERO),
            "openPrice": fmt(open_price),
            "highPrice": fmt(max(prices)),
            "lowPrice": fmt(min(prices)),
            "volume": fmt(volume),
            "quoteVolume": fmt(quote_volume),
            "openTime": start_ms,
            "closeTime": end_ms,
            "count": len(trades),
        }

    def klines(
        self, interval_ms: int, now_ms: int, *, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[list[object]]:
        """Klines in Binance's array layout, oldest first, ending with the current (open) one."""
        current = now_ms // interval_ms * interval_ms
        last_open = current if end_ms is None else min(current, end_ms // interval_ms * interval_ms)
        if start_ms is not None:
            first_open = -(-start_ms // interval_ms) * interval_ms
            opens = range(first_open, min(last_open, first_open + (limit - 1) * interval_ms) + 1, interval_ms)
        else:
            first_open = last_open - (limit - 1) * interval_ms
            opens = range(first_open, last_open + 1, interval_ms)
        return [self._kline(open_ms, interval_ms) for open_ms in opens]

    def _kline(self, open_ms: int, interval_ms: int) -> list[object]:
        close_ms = open_ms + interval_ms - 1
        open_price = self.price_at(open_ms - 1)
        inside = self._points_between(open_ms, close_ms)
        prices = [open_price, *inside]
        trades = self._trades_between(open_ms, close_ms)
        volume = sum((t.qty for t in trades), ZERO)
        quote_volume = sum((t.qty * t.price for t in trades), ZERO)
        return [
            open_ms,
            fmt(open_price),
            fmt(max(prices)),
            fmt(min(prices)),
            fmt(prices[-1]),
            fmt(volume),
            close_ms,
            fmt(quote_volume),
            len(trades),
            fmt(ZERO),
            fmt(ZERO),
            "0",
        ]
