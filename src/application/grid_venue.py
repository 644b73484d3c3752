"""Carrying out the core's commands on the venue, and turning each outcome into a core event.

Placement never doubles: an order whose earlier send had an unknown outcome is looked up by its
client order id before it is sent again, and a DuplicateOrder refusal is answered by that look-up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_exponential_jitter,
)

from domain.errors import (
    DuplicateOrder,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    RateLimited,
)
from domain.grid_core import CancelOrder, Decision, GridCore, PlaceOrder
from domain.models import ZERO, Order, OrderStatus, TrackedOrder
from domain.ports import Clock, ExchangeGateway

T = TypeVar("T")
TRANSIENT = (ExchangeUnavailable, RateLimited)
BACKOFF_MAX_S = 30.0  # between the bounded attempts (stopping, reconciling)
PATIENT_BACKOFF_MAX_S = 60.0  # between the endless attempts of a patient call (starting)

log = structlog.get_logger(__name__)


class VenueCalls:
    """The venue as the grid shell uses it: retried start-up calls, and commands carried out."""

    def __init__(self, gateway: ExchangeGateway, clock: Clock, symbol: str, attempts: int) -> None:
        self.gateway = gateway
        self._clock = clock
        self._symbol = symbol
        self._attempts = attempts
        self.log = log.bind(symbol=symbol)

    async def retrying(self, what: str, call: Callable[[], Awaitable[T]], *, patient: bool = False) -> T:
        """A venue call the bot cannot go on without (start, reconcile, stop): transient failures
        are retried with exponential backoff and jitter on the clock port, one log line each.

        Bounded (the default): at most the configured attempts, then the last failure is
        re-raised; for stopping, where waiting for ever would hang a Ctrl-C.
        Patient: until the call succeeds or a non-transient error is raised, for starting, when
        the bot has nothing better to do. A RateLimited is waited out for its `retry_after`
        (exponential backoff when the venue named no time), an ExchangeUnavailable is retried
        with backoff capped at a minute. Cancelling the task ends the wait at once."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT),
            stop=stop_never if patient else stop_after_attempt(self._attempts),
            wait=_patient_wait if patient else wait_exponential_jitter(initial=1, max=BACKOFF_MAX_S),
            sleep=self._clock.sleep,
            reraise=True,
            before_sleep=lambda state: self._log_retry(what, state),
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _log_retry(self, what: str, state: RetryCallState) -> None:
        outcome, action = state.outcome, state.next_action
        self.log.warning(
            "venue call failed; retrying",
            call=what,
            attempt=state.attempt_number,
            wait_s=round(action.sleep, 3) if action is not None else None,
            reason=str(outcome.exception()) if outcome is not None else "",
        )

    async def look_up(self, client_order_id: str) -> Order | None:
        try:
            return await self.gateway.fetch_order(self._symbol, client_order_id=client_order_id)
        except OrderNotFound:
            return None

    async def place(self, core: GridCore, command: PlaceOrder) -> tuple[Decision, Order | None]:
        """Send one order; the core hears how it went. Returns its decision and the venue's view."""
        order = command.order
        cid = order.client_order_id
        now = self._clock.now
        try:
            if command.look_up_first:
                found = await self.look_up(cid)
                if found is not None:
                    return core.accepted(cid, found.order_id, found.status, now()), found
                core.never_sent(cid)
            try:
                placed = await self.gateway.place_order(command.request())
            except DuplicateOrder:
                placed = await self.gateway.fetch_order(self._symbol, client_order_id=cid)
        except (InvalidOrder, InsufficientFunds) as exc:
            return core.refused(cid, str(exc), now()), None
        except TRANSIENT as exc:
            venue_down = isinstance(exc, ExchangeUnavailable)
            return core.send_unknown(cid, str(exc), now(), venue_down=venue_down), None
        return core.accepted(cid, placed.order_id, placed.status, now()), placed

    async def cancel(self, core: GridCore, command: CancelOrder) -> Decision:
        """Cancel one order the core asked to cancel; the core hears how it went."""
        order = command.order
        if order.exchange_order_id is None and order.status is OrderStatus.PENDING:
            found = await self.retrying("fetch_order", lambda: self.look_up(order.client_order_id))
            if found is None:  # its send never reached the venue: nothing to cancel, nothing filled
                core.never_sent(order.client_order_id)
                return core.cancelled(order.client_order_id, ZERO, self._clock.now())
            order = replace(order, exchange_order_id=found.order_id)
        result = await self.cancel_tracked(order)
        return core.cancelled(
            order.client_order_id, None if result is None else result.filled, self._clock.now()
        )

    async def cancel_tracked(self, order: TrackedOrder) -> Order | None:
        """Cancel one booked order (finding it by client id if it has no venue id yet), retrying
        through short outages. Returns the venue's view of the cancelled order, None when the venue
        no longer has it open (already filled, cancelled or never placed)."""
        if order.status is OrderStatus.OWED:
            return None  # never sent
        try:
            order_id = order.exchange_order_id
            if order_id is None:
                found = await self.retrying("fetch_order", lambda: self.look_up(order.client_order_id))
                order_id = found.order_id if found is not None and found.status.is_active else None
            if order_id is None:
                return None
            known_id = order_id
            return await self.retrying(
                "cancel_order", lambda: self.gateway.cancel_order(self._symbol, known_id)
            )
        except OrderNotFound:
            return None  # already gone: nothing to cancel


_patient_backoff = wait_exponential_jitter(initial=1, max=PATIENT_BACKOFF_MAX_S)


def _patient_wait(state: RetryCallState) -> float:
    """A patient call's wait: a rate limit's own Retry-After, else exponential backoff."""
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, RateLimited) and error.retry_after is not None and error.retry_after > 0:
        return error.retry_after
    return _patient_backoff(state)
