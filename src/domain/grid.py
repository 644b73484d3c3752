"""Grid logic: level generation, the initial plan, counter-orders and cycle profit.

The grid rule: levels are price lines, lowest to highest, snapped to the tick size. At start
the level nearest the current price stays empty; every level below it gets a buy and every
level above it a sell (the base those sells need is bought at the start). From then on the
empty level is always the level of the latest fill: a buy filled at level i places a sell at
level i+1 for the quantity actually received after fees; a sell filled at level i places a buy
at level i-1 for the grid's per-level quantity.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum

from returns.result import Failure, Result, Success

from domain.errors import Rejection
from domain.models import ZERO, OrderType, Side
from domain.rules import MarketRules

FEE_QUANTUM = Decimal("0.00000001")


class Spacing(StrEnum):
    ARITHMETIC = "arithmetic"
    GEOMETRIC = "geometric"


@dataclass(frozen=True, slots=True)
class GridParams:
    lower: Decimal
    upper: Decimal
    levels: int
    spacing: Spacing
    investment: Decimal  # quote committed to the grid

    def fingerprint(self, symbol: str) -> str:
        """Stable identity of a grid: a restart with the same fingerprint resumes it."""
        raw = f"{symbol}|{self.lower}|{self.upper}|{self.levels}|{self.spacing}|{self.investment}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    level: int
    side: Side
    price: Decimal
    amount: Decimal
    cost_basis: Decimal = ZERO  # quote paid for the base a sell carries


@dataclass(frozen=True, slots=True)
class GridPlan:
    levels: tuple[Decimal, ...]
    quantity: Decimal  # base quantity per level
    empty_level: int
    buys: tuple[PlannedOrder, ...]
    sell_levels: tuple[int, ...]
    base_to_buy: Decimal  # gross base to buy at market at start, so that the sells are covered after fees

    @property
    def quote_for_buys(self) -> Decimal:
        return sum((o.price * o.amount for o in self.buys), ZERO)


def grid_levels(
    lower: Decimal, upper: Decimal, count: int, spacing: Spacing, tick_size: Decimal
) -> Result[tuple[Decimal, ...], Rejection]:
    """`count` price lines from `lower` to `upper` inclusive, snapped to the tick (half-even)."""
    if count < 2:
        return Failure(Rejection("GRID__LEVELS", f"a grid needs at least 2 levels, got {count}"))
    if lower <= 0:
        return Failure(Rejection("GRID__LOWER", f"must be positive, got {lower}"))
    if lower >= upper:
        return Failure(Rejection("GRID__UPPER", f"must be above GRID__LOWER ({lower}), got {upper}"))
    raw: list[Decimal]
    with localcontext() as ctx:
        ctx.prec = 34
        if spacing is Spacing.ARITHMETIC:
            step = (upper - lower) / (count - 1)
            raw = [lower + step * i for i in range(count)]
        else:
            ratio = ((upper / lower).ln() / (count - 1)).exp()
            raw = [lower * ratio**i for i in range(count)]
    raw[0], raw[-1] = lower, upper
    snapped = tuple(_snap(p, tick_size) for p in raw)
    for below, above in itertools.pairwise(snapped):
        if above <= below:
            return Failure(
                Rejection(
                    "GRID__LEVELS",
                    f"{count} levels between {lower} and {upper} are closer than the tick size {tick_size}",
                )
            )
    if snapped[0] <= 0:
        return Failure(Rejection("GRID__LOWER", f"snaps to {snapped[0]} on tick {tick_size}"))
    return Success(snapped)


def _snap(price: Decimal, tick: Decimal) -> Decimal:
    if tick <= 0:
        return price
    return ((price / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick).quantize(tick)


def nearest_level(levels: Sequence[Decimal], price: Decimal) -> int:
    """Index of the level nearest `price`; on a tie, the lower one."""
    best = 0
    for i, level in enumerate(levels):
        if abs(level - price) < abs(levels[best] - price):
            best = i
    return best


def fee_after(amount: Decimal, fee_rate: Decimal) -> Decimal:
    """What remains of `amount` once a fee at `fee_rate` (rounded up to 8 places, as venues do) is taken."""
    fee = (amount * fee_rate).quantize(FEE_QUANTUM, rounding="ROUND_CEILING")
    return amount - fee


def plan_grid(
    params: GridParams,
    rules: MarketRules,
    start_price: Decimal,
    *,
    maker_fee: Decimal,
    taker_fee: Decimal,
) -> Result[GridPlan, Rejection]:
    """The initial ladder for `start_price`, or why the parameters cannot work on this market."""
    levels_result = grid_levels(params.lower, params.upper, params.levels, params.spacing, rules.tick_size)
    if isinstance(levels_result, Failure):
        return Failure(levels_result.failure())
    levels = levels_result.unwrap()
    for key, edge in (("GRID__LOWER", levels[0]), ("GRID__UPPER", levels[-1])):
        edge_check = rules.check_price(edge)
        if isinstance(edge_check, Failure):
            rejection = edge_check.failure()
            return Failure(
                Rejection(
                    key, f"the level {edge} fails the market's {rejection.rule} filter ({rejection.reason})"
                )
            )
    if params.investment <= 0:
        return Failure(Rejection("GRID__INVESTMENT", f"must be positive, got {params.investment}"))
    if not levels[0] <= start_price <= levels[-1]:
        return Failure(
            Rejection(
                "GRID__LOWER" if start_price < levels[0] else "GRID__UPPER",
                f"the market price {start_price} is outside the grid [{levels[0]}, {levels[-1]}]; "
                "move GRID__LOWER/GRID__UPPER around it",
            )
        )
    round_trip = (1 - maker_fee) * (1 - maker_fee)
    tightest = min(above / below for below, above in itertools.pairwise(levels))
    if tightest * round_trip <= 1:
        return Failure(
            Rejection(
                "GRID__LEVELS",
                f"adjacent levels are only {((tightest - 1) * 100).quantize(Decimal('0.001'))}% apart, "
                f"which does not cover the round-trip fees ({(maker_fee * 200).normalize():f}%): "
                "every cycle would lose money; use fewer levels or a wider range",
            )
        )
    empty = nearest_level(levels, start_price)
    buy_levels = range(empty)
    sell_levels = tuple(range(empty + 1, len(levels)))
    # One base quantity q for every level: the buys cost q*L_i each and the sells' inventory is bought
    # at market (gross of the taker fee), and the total stays within the investment.
    denominator = sum((levels[i] for i in buy_levels), ZERO) + len(sell_levels) * start_price / (
        1 - taker_fee
    )
    quantity = rules.floor_amount(params.investment / denominator)
    # The sells' base is bought rounded up to the step, which can push the plan past the investment by
    # up to one step at the start price: step the per-level quantity down until everything fits.
    quote_per_unit_of_buys = sum((levels[i] for i in buy_levels), ZERO)
    while (
        quantity > 0
        and rules.step_size > 0
        and quote_per_unit_of_buys * quantity
        + _base_to_buy(quantity, len(sell_levels), taker_fee, rules) * start_price
        > params.investment
    ):
        quantity -= rules.step_size
    if quantity <= 0:
        return Failure(
            Rejection(
                "GRID__INVESTMENT",
                f"{params.investment} {rules.quote_asset} over {params.levels - 1} orders is less than one "
                f"step ({rules.step_size} {rules.base_asset}) per level",
            )
        )
    # Every order the grid will ever place must pass the market's filters: the smallest is a buy at the
    # lowest level, and a sell of what a buy leaves after fees at the level above it.
    sell_after_fee = rules.floor_amount(fee_after(quantity, maker_fee))
    for price, amount, what in (
        (levels[0], quantity, "buy at the lowest level"),
        (levels[1], sell_after_fee, "sell at the second level"),
    ):
        amount_check = rules.check_amount(amount)
        check = amount_check if isinstance(amount_check, Failure) else rules.check_notional(price, amount)
        if isinstance(check, Failure):
            rejection = check.failure()
            return Failure(
                Rejection(
                    "GRID__INVESTMENT",
                    f"{params.investment} {rules.quote_asset} over {params.levels - 1} orders gives "
                    f"{quantity} {rules.base_asset} per level; the {what} fails the market's "
                    f"{rejection.rule} filter ({rejection.reason}): raise the investment or use fewer levels",
                )
            )
    if rules.max_num_orders and params.levels - 1 > rules.max_num_orders:
        return Failure(
            Rejection(
                "GRID__LEVELS",
                f"{params.levels - 1} open orders exceed the market's limit of {rules.max_num_orders}",
            )
        )
    base_to_buy = _base_to_buy(quantity, len(sell_levels), taker_fee, rules)
    if base_to_buy > 0:
        # The start's market buy must pass the filters too (a huge grid can exceed the market's maximum).
        market_amount = rules.check_amount(base_to_buy, OrderType.MARKET)
        market_check = (
            market_amount
            if isinstance(market_amount, Failure)
            else rules.check_notional(start_price, base_to_buy)
        )
        if isinstance(market_check, Failure):
            rejection = market_check.failure()
            return Failure(
                Rejection(
                    "GRID__INVESTMENT",
                    f"the start's market buy of {base_to_buy} {rules.base_asset} fails the market's "
                    f"{rejection.rule} filter ({rejection.reason}): lower the investment",
                )
            )
    buys = tuple(PlannedOrder(i, Side.BUY, levels[i], quantity) for i in buy_levels)
    return Success(GridPlan(levels, quantity, empty, buys, sell_levels, base_to_buy))


def _base_to_buy(quantity: Decimal, sells: int, taker_fee: Decimal, rules: MarketRules) -> Decimal:
    """Gross base to buy at market so that `sells` sells of `quantity` are covered after the taker fee."""
    needed = quantity * sells
    return rules.ceil_amount(needed / (1 - taker_fee)) if needed > 0 else ZERO


def initial_sells(plan: GridPlan, base_received: Decimal, quote_spent: Decimal) -> tuple[PlannedOrder, ...]:
    """Sells above the empty level from the base bought at start; each carries its share of the cost."""
    if not plan.sell_levels:
        return ()
    cost_per_unit = quote_spent / base_received if base_received > 0 else ZERO
    sells: list[PlannedOrder] = []
    remaining = base_received
    for level in plan.sell_levels:
        amount = min(plan.quantity, remaining)
        if amount <= 0:
            break
        remaining -= amount
        sells.append(
            PlannedOrder(
                level, Side.SELL, plan.levels[level], amount, (amount * cost_per_unit).quantize(FEE_QUANTUM)
            )
        )
    return tuple(sells)


@dataclass(frozen=True, slots=True)
class Leftover:
    """Base the grid holds but cannot sell yet, and the quote it cost.

    A buy's fee is taken in base and is usually smaller than one quantity step (0.001 BTC pays
    0.000001 BTC), so a sell of what was received, floored to the step, leaves a crumb behind.
    Dropping the crumb would strand its cost and slowly eat the budget; instead it is carried
    into the next sell, which sells it as soon as crumbs add up to a step.

    The crumb is a lot of its own, with its own unit cost: a sell takes from it only the base its
    buy is short of a step (at most that buy's fee), at the crumb's unit cost, and a buy whose
    received base is more than the step allows adds the surplus at the buy's unit cost. So with a
    whole-unit step, where the crumb can be most of a unit bought elsewhere (e.g. at start), its
    price reaches a cycle only through the base it actually tops the sell up with.
    """

    base: Decimal = ZERO
    cost: Decimal = ZERO


NO_LEFTOVER = Leftover()


def counter_order_carrying(
    levels: Sequence[Decimal],
    *,
    filled_side: Side,
    filled_level: int,
    filled_amount: Decimal,
    filled_quote: Decimal,
    fee: Decimal,
    fee_asset_is_base: bool,
    quantity: Decimal,
    rules: MarketRules,
    carried: Leftover = NO_LEFTOVER,
) -> tuple[PlannedOrder | None, Leftover]:
    """The order the grid places after an order at `filled_level` filled completely, and the
    leftover base it carries on.

    A filled buy places a sell one level up for the base actually received (amount minus a base
    fee) plus the carried leftover, down to the step. The sell sells the buy's own base first, at
    what the buy paid for it, and takes from the leftover only what tops it up to the step, at the
    leftover's unit cost; base received beyond the step joins the leftover at the buy's unit cost.
    A filled sell places a buy one level down for the grid quantity and leaves the leftover as it
    was. None at the ends of the ladder.
    """
    if filled_side is Side.BUY:
        received = filled_amount - fee if fee_asset_is_base else filled_amount
        pool = received + carried.base
        pool_cost = filled_quote + carried.cost
        target = filled_level + 1
        amount = rules.floor_amount(pool)
        if target >= len(levels) or amount <= 0:
            return None, Leftover(pool, pool_cost)
        if amount <= received:
            exact_cost = filled_quote * amount / received
        else:  # topped up from the leftover (amount - received <= carried.base, so carried.base > 0)
            exact_cost = filled_quote + carried.cost * (amount - received) / carried.base
        cost = exact_cost.quantize(FEE_QUANTUM)
        return PlannedOrder(target, Side.SELL, levels[target], amount, cost), Leftover(
            pool - amount, pool_cost - cost
        )
    target = filled_level - 1
    if target < 0:
        return None, carried
    return PlannedOrder(target, Side.BUY, levels[target], quantity), carried


def counter_order(
    levels: Sequence[Decimal],
    *,
    filled_side: Side,
    filled_level: int,
    filled_amount: Decimal,
    filled_quote: Decimal,
    fee: Decimal,
    fee_asset_is_base: bool,
    quantity: Decimal,
    rules: MarketRules,
) -> PlannedOrder | None:
    """`counter_order_carrying` with nothing carried in, for callers that keep no leftover."""
    planned, _ = counter_order_carrying(
        levels,
        filled_side=filled_side,
        filled_level=filled_level,
        filled_amount=filled_amount,
        filled_quote=filled_quote,
        fee=fee,
        fee_asset_is_base=fee_asset_is_base,
        quantity=quantity,
        rules=rules,
    )
    return planned


def leftover_after_initial_sells(
    sells: Sequence[PlannedOrder], base_received: Decimal, quote_spent: Decimal
) -> Leftover:
    """What the start purchase leaves once the initial sells took their share."""
    return Leftover(
        base_received - sum((s.amount for s in sells), ZERO),
        quote_spent - sum((s.cost_basis for s in sells), ZERO),
    )


def sell_profit(
    *, price: Decimal, amount: Decimal, fee: Decimal, fee_asset_is_quote: bool, cost_basis: Decimal
) -> Decimal:
    """Realized profit of a sell: net quote proceeds minus the cost of the base sold."""
    proceeds = price * amount - (fee if fee_asset_is_quote else fee * price)
    return proceeds - cost_basis


CLIENT_ID_PREFIX = "gb-"  # every order this bot places carries it


def client_order_id(run_id: str, level: int, seq: int) -> str:
    """Deterministic per run, grid level and the level's order count, so a restart recognises its
    own orders. Fits Binance's `^[a-zA-Z0-9-_]{1,36}$`."""
    tag = "M" if level < 0 else f"L{level:03d}"
    return f"{CLIENT_ID_PREFIX}{run_id[:12]}-{tag}-{seq:05d}"
