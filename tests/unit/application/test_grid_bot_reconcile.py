"""The grid use case after a gap: catching up however many trades were missed, settling orders by
their own trades, inferring fills only when trades lag (and replacing the estimate), booking what
happened just before a clean stop, and an outage in the middle of a batch of placements."""

from __future__ import annotations

from decimal import Decimal

from domain.models import OrderStatus, Side

from .fakes import FakeClock, FakeVenue, Store
from .test_grid_bot import start_bot


def run_trade_ids(store: Store) -> list[str]:
    return sorted((b.fill.trade_id for b in store.fills), key=lambda t: (not t.isdigit(), t.zfill(12)))


async def test_catch_up_pages_through_every_missed_trade() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    first = await start_bot(store, venue, clock)
    await first.finish()
    venue.trades_page_size = 2  # the venue answers two trades at a time
    venue.move_to(Decimal("28000"))  # all four buys fill while the bot is down
    missed = [t.trade_id for t in venue.trades[1:]]
    assert len(missed) == 4
    second = await start_bot(store, venue, clock)
    assert run_trade_ids(store) == sorted([venue.trades[0].trade_id, *missed], key=int)
    assert venue.trade_pages_served >= 3  # 2 + 2, then an empty page says it is current
    counters = [o for o in store.orders.values() if o.parent_client_order_id and o.side is Side.SELL]
    assert len(counters) == 4  # each buy caught up got its counter-sell
    await second.finish()


async def test_an_order_filled_before_its_trades_are_queryable_is_inferred_then_replaced() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    first = await start_bot(store, venue, clock)
    await first.finish()
    venue.hold_news = True
    [fill] = venue.move_to(Decimal("29500"))  # the buy at level 3 fills while the bot is down
    venue.hide_trades_of.add(fill.order_id)  # ...and its trade is not queryable yet
    second = await start_bot(store, venue, clock)
    inferred = [b for b in store.fills if b.fill.is_inferred]
    assert len(inferred) == 1 and inferred[0].fill.amount == fill.amount
    assert inferred[0].fill.fee >= fill.fee  # a conservative estimate of the fee
    counter = next(o for o in store.orders.values() if o.parent_client_order_id == fill.client_order_id)
    assert counter.side is Side.SELL and counter.level == 4
    venue.hide_trades_of.clear()  # the real trade appears; the bot looks for it every few seconds
    clock.advance(10)
    await second.move("29510")
    assert not [b for b in store.fills if b.fill.is_inferred]
    assert [b.fill.trade_id for b in store.fills if b.fill.client_order_id == fill.client_order_id] == [
        fill.trade_id
    ]
    # still exactly one counter-order, and the base the fee estimate held back is carried on
    assert sum(1 for o in store.orders.values() if o.parent_client_order_id == fill.client_order_id) == 1
    run = next(iter(store.runs.values()))
    assert Decimal(run.params["leftover_base"]) >= inferred[0].fill.fee - fill.fee
    await second.finish()


async def test_a_fill_just_before_a_clean_stop_is_booked_by_the_stop() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    h = await start_bot(store, venue, clock)
    venue.hold_news = True  # the fill happens, its news has not reached the bot
    [fill] = venue.move_to(Decimal("29500"), ticker=False)
    await h.finish()
    assert fill.trade_id in {b.fill.trade_id for b in store.fills}


async def test_an_outage_in_a_batch_of_placements_sends_nothing_twice() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    h = await start_bot(store, venue, clock)
    venue.fail_next_place = 1  # the first counter-order meets an outage; the rest wait with it
    venue.hold_news = True
    venue.move_to(Decimal("28400"), ticker=False)  # three buys fill
    venue.deliver(list(venue.undelivered))  # their news arrives together
    await h.settle()
    assert len(h.orders(OrderStatus.PENDING)) == 3  # none went out while the venue was down
    await h.move("28450")  # a ticker: the venue answers again
    assert h.orders(OrderStatus.PENDING) == []
    counts: dict[str, int] = {}
    for request in venue.placed:
        counts[request.client_order_id] = counts.get(request.client_order_id, 0) + 1
    assert all(n == 1 for n in counts.values())
    await h.finish()
