"""What the kill tests check after every kill and restart: the bot's database against the venue's
own records (a `MatchingEngine`: the simulated exchange's state file, or the loopback server's).

- no trade lost or booked twice: the run's fills are exactly the venue's trades, field by field;
- the books match the venue: the orders booked live are the venue's open orders, nothing is left
  PENDING, and the balances follow from the booked fills to the last digit;
- at most one live order per level, on the venue and in the books;
- the ladder is whole (every level but one holds an order, none owed) once the price rests.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from adapters.simulated.engine import MatchingEngine

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Books:
    run_ids: list[str]
    fills: list[tuple[str, str, Decimal, Decimal, Decimal, str]]  # trade id, side, price, amount, fee, asset
    live: dict[str, tuple[str, Decimal, Decimal, int]]  # cid -> side, price, amount, level
    statuses: Counter[str]


def read_books(db_path: Path) -> Books:
    with sqlite3.connect(db_path) as db:
        run_ids = [row[0] for row in db.execute("SELECT run_id FROM bot_runs ORDER BY started_at")]
        fills = [
            (t, s, Decimal(p), Decimal(a), Decimal(f), fa)
            for t, s, p, a, f, fa in db.execute(
                "SELECT trade_id, side, price, amount, fee, fee_asset FROM fills ORDER BY id"
            )
        ]
        live = {
            cid: (side, Decimal(price), Decimal(amount), level)
            for cid, side, price, amount, level in db.execute(
                "SELECT client_order_id, side, price, amount, level FROM orders"
                " WHERE status IN ('open', 'partially_filled')"
            )
        }
        statuses = Counter(status for (status,) in db.execute("SELECT status FROM orders"))
    return Books(run_ids, fills, live, statuses)


def check_books_match_venue(books: Books, venue: MatchingEngine, start_balances: dict[str, Decimal]) -> None:
    assert len(books.run_ids) == 1, f"one grid all along, got runs {books.run_ids}"
    # no trade lost, none booked twice
    booked = sorted(books.fills)
    made = sorted((f.trade_id, f.side.value, f.price, f.amount, f.fee, f.fee_asset) for f in venue.trades())
    assert [f[0] for f in booked] == [f[0] for f in made], "the booked trades are not the venue's"
    assert booked == made
    # the books' live orders are the venue's open orders; nothing left in between
    open_on_venue = {o.client_order_id: o for o in venue.open_orders()}
    assert set(books.live) == set(open_on_venue)
    for cid, (side, price, amount, _) in books.live.items():
        order = open_on_venue[cid]
        assert (order.side.value, order.price, order.amount) == (side, price, amount), cid
    assert books.statuses["pending"] == 0
    # at most one live order per level
    assert max(Counter(o.price for o in open_on_venue.values()).values(), default=0) <= 1
    assert max(Counter(level for *_, level in books.live.values()).values(), default=0) <= 1
    # the balances follow from the booked fills
    base_asset, quote_asset = venue.rules.base_asset, venue.rules.quote_asset
    base, quote = start_balances.get(base_asset, ZERO), start_balances.get(quote_asset, ZERO)
    for _, side, price, amount, fee, asset in books.fills:
        sign = 1 if side == "buy" else -1
        base += sign * amount - (fee if asset == base_asset else ZERO)
        quote -= sign * price * amount + (fee if asset == quote_asset else ZERO)
    balances = venue.balances()
    assert balances[base_asset].total == base
    assert balances[quote_asset].total == quote


def check_ladder_whole(books: Books, venue: MatchingEngine, levels: int) -> None:
    """With the price at rest, every level but the one nearest the price holds one order: buys
    under the price, sells over it, and nothing is owed."""
    price = venue.last_price
    assert price is not None
    assert books.statuses["owed"] == 0
    open_orders = venue.open_orders()
    assert len(open_orders) == levels - 1, sorted((o.side.value, o.price) for o in open_orders)
    for order in open_orders:
        assert order.price is not None
        assert (order.price < price) if order.side.value == "buy" else (order.price > price), order
