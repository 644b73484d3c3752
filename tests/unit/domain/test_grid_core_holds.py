"""Orders held back by a risk rule, as a trader sees them: a falling market in panic holds the
grid's buys, and the counter-sell of a buy that fills anyway stays one level up (owed behind the
held buy), instead of climbing the ladder through the held buys."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from domain.grid import GridParams, Spacing, initial_sells, leftover_after_initial_sells, plan_grid
from domain.grid_core import CoreConfig, Decision, GridCore
from domain.models import OrderStatus, Side
from domain.risk import RiskLimits

from .factories import MAKER_FEE, TAKER_FEE, btc_usdt_rules
from .venue_model import ModelVenue

RULES = btc_usdt_rules()


def start(price: str) -> tuple[GridCore, ModelVenue, list[Decision]]:
    params = GridParams(Decimal("28000"), Decimal("32000"), 9, Spacing.ARITHMETIC, Decimal("5000"))
    plan = plan_grid(params, RULES, Decimal(price), maker_fee=MAKER_FEE, taker_fee=TAKER_FEE).unwrap()
    core = GridCore(
        CoreConfig(
            run_id="0123456789abcdef",
            symbol=RULES.symbol,
            rules=RULES,
            levels=plan.levels,
            quantity=plan.quantity,
            limits=RiskLimits(investment=Decimal("1000000")),
            maker_fee=MAKER_FEE,
            taker_fee=TAKER_FEE,
        )
    )
    venue = ModelVenue(RULES, Decimal(price))
    base = plan.quantity * len(plan.sell_levels)
    sells = initial_sells(plan, base, base * Decimal(price))
    core.observe(venue.ticker())
    log: list[Decision] = []
    venue.execute(
        core,
        core.lay(
            [*plan.buys, *sells], venue.now, leftover_after_initial_sells(sells, base, base * Decimal(price))
        ),
        log,
    )
    return core, venue, log


def deliver(core: GridCore, venue: ModelVenue, log: list[Decision]) -> None:
    batch, venue.undelivered = list(venue.undelivered), []
    venue.execute(core, core.apply_fills(batch, venue.now), log)


def tick(core: GridCore, venue: ModelVenue, log: list[Decision]) -> None:
    venue.execute(core, core.on_ticker(venue.ticker()), log)


def test_in_panic_a_counter_sell_waits_one_level_up_behind_a_held_buy() -> None:
    core, venue, log = start("30000")  # levels every 500; 30000 is level 4, empty
    venue.move_to(Decimal("31600"))  # the sells at 30500, 31000, 31500 fill
    tick(core, venue, log)
    deliver(core, venue, log)  # their counter-buys at 30000, 30500, 31000 go out
    venue.move_to(Decimal("29900"))  # the buys at 31000, 30500, 30000 fill on the way down
    tick(core, venue, log)  # a 6% range: panic, no new buys
    assert core.market_state.value == "panic"
    deliver(core, venue, log)  # their counter-sells go out; nothing is held yet
    venue.move_to(Decimal("31600"))  # up again: those sells fill...
    deliver(core, venue, log)  # ...and their counter-buys are held by the panic
    held = {o.level: o for o in core.active_orders if o.status is OrderStatus.PENDING and o.side is Side.BUY}
    assert set(held) == {4, 5, 6}
    venue.move_to(Decimal("29400"))  # the buy resting at 29500 (level 3) fills
    deliver(core, venue, log)
    owed = core.owed_orders()
    assert [(o.level, o.side) for o in owed] == [(4, Side.SELL)]  # one level up, waiting
    assert not any("crossed" in n.event for d in log for n in d.notes)
    assert {o.level for o in core.grid_orders() if o.side is Side.SELL} == {8}
    # The panic passes: the held buys go out (nearest the market first) and fill at once, below
    # their levels; each frees its level, and the owed sell goes out at 30000, where it belongs.
    venue.now += timedelta(seconds=3600)
    tick(core, venue, log)
    deliver(core, venue, log)
    tick(core, venue, log)
    sells = {o.level: o for o in core.grid_orders() if o.side is Side.SELL}
    assert 4 in sells and sells[4].price == Decimal("30000.00")
    assert not core.owed_orders()


def test_when_the_panic_passes_a_held_buy_facing_an_owed_sell_is_crossed_not_sent() -> None:
    """The held buy and the sell owed to its level are a buy and a sell at one price: once the
    hold lifts, the buy is an order never sent, so the two cancel out as any unsent pair does
    (sent instead, the buy would be one order too many on the ladder until the next tick)."""
    core, venue, log = start("30000")
    venue.move_to(Decimal("31600"))
    tick(core, venue, log)
    deliver(core, venue, log)
    venue.move_to(Decimal("29900"))
    tick(core, venue, log)
    deliver(core, venue, log)
    venue.move_to(Decimal("31600"))
    deliver(core, venue, log)
    held_buy = next(o for o in core.active_orders if o.level == 4 and o.status is OrderStatus.PENDING)
    venue.move_to(Decimal("29400"))
    deliver(core, venue, log)
    assert [(o.level, o.side) for o in core.owed_orders()] == [(4, Side.SELL)]
    sent_before = len(log)
    venue.now += timedelta(seconds=3600)  # the panic passes
    tick(core, venue, log)
    after = log[sent_before:]
    sent = {c.order.client_order_id for d in after for c in d.commands if hasattr(c, "order")}
    assert held_buy.client_order_id not in sent
    crossed = [n for d in after for n in d.notes if "crossed" in n.event]
    assert crossed and crossed[0].fields["withdrawn"] == held_buy.client_order_id
    assert len(crossed) >= 2  # the sell, moved up, met the next held buy: crossed again
    stamps = {o.updated_at for o in (*after[0].added.values(), *after[0].updated.values())}
    assert len(stamps) == 1 and None not in stamps  # every order of the tick's decision, at its time
    assert not core.owed_orders()
