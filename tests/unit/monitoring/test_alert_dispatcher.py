"""Alert delivery rules on the clock port: a flapping connection must not flood the chat."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from structlog.testing import capture_logs

from adapters.clock import SimulatedClock
from adapters.monitoring.alerts import AlertDispatcher
from domain.errors import DeliveryFailed
from domain.ports import Alert

START = datetime(2026, 3, 1, tzinfo=UTC)


class Chat:
    """An in-memory channel: what it was sent, and how often it should fail first."""

    name = "chat"

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[Alert] = []
        self.failures = failures

    async def send(self, alert: Alert) -> None:
        if self.failures:
            self.failures -= 1
            raise DeliveryFailed("chat: HTTP 502")
        self.sent.append(alert)


async def drain(dispatcher: AlertDispatcher) -> None:
    worker = asyncio.create_task(dispatcher.run())
    try:
        await dispatcher.flush(timeout_s=30)
    finally:
        worker.cancel()


def circuit(text: str = "") -> Alert:
    return Alert("circuit_open", "circuit open", text, "warning")


async def test_a_repeated_alert_is_sent_once_then_again_with_the_count_it_suppressed() -> None:
    clock = SimulatedClock(START, auto_advance=False)
    chat = Chat()
    dispatcher = AlertDispatcher([chat], clock, repeat_after_s=600)
    for _ in range(4):  # the connection flaps: four alerts within a few seconds
        dispatcher.submit(circuit())
        clock.advance(5)
    await drain(dispatcher)
    assert len(chat.sent) == 1

    clock.advance(600)
    dispatcher.submit(circuit("calls are paused"))
    await drain(dispatcher)
    assert len(chat.sent) == 2
    assert chat.sent[1].text == "calls are paused\n(3 similar alerts suppressed since the last one)"


async def test_other_alerts_are_not_held_back_by_a_repeated_one() -> None:
    clock = SimulatedClock(START, auto_advance=False)
    chat = Chat()
    dispatcher = AlertDispatcher([chat], clock)
    dispatcher.submit(circuit())
    dispatcher.submit(circuit())
    dispatcher.submit(Alert("halt", "risk halt", severity="critical"))
    await drain(dispatcher)
    assert [a.key for a in chat.sent] == ["circuit_open", "halt"]


async def test_at_most_the_cap_goes_out_in_a_minute() -> None:
    clock = SimulatedClock(START, auto_advance=False)
    chat = Chat()
    dispatcher = AlertDispatcher([chat], clock, max_per_minute=3)
    for n in range(5):
        dispatcher.submit(Alert(f"error-{n}", f"error {n}"))
    await drain(dispatcher)
    assert [a.key for a in chat.sent] == ["error-0", "error-1", "error-2"]

    clock.advance(60)
    dispatcher.submit(Alert("error-3", "error 3"))
    await drain(dispatcher)
    assert chat.sent[-1].key == "error-3"
    assert "1 similar alert suppressed" in chat.sent[-1].text


async def test_a_full_queue_drops_its_oldest_alert_and_says_so() -> None:
    clock = SimulatedClock(START, auto_advance=False)
    chat = Chat()
    dispatcher = AlertDispatcher([chat], clock, queue_size=2)
    with capture_logs() as logs:
        for key in ("a", "b", "c"):
            dispatcher.submit(Alert(key, key))
    await drain(dispatcher)
    assert [a.key for a in chat.sent] == ["b", "c"]
    assert [(e["event"], e["alert"]) for e in logs if e["log_level"] == "warning"] == [
        ("alert queue full; the oldest alert is dropped", "a")
    ]


async def test_a_failing_channel_is_retried_with_backoff_on_the_clock() -> None:
    clock = SimulatedClock(START)  # retries sleep on it: time jumps, nobody waits
    chat = Chat(failures=2)
    dispatcher = AlertDispatcher([chat], clock, attempts=4)
    dispatcher.submit(circuit())
    await drain(dispatcher)
    assert [a.key for a in chat.sent] == ["circuit_open"]
    assert clock.monotonic() >= 2  # two waits of at least a second each


async def test_submitting_never_waits_for_delivery() -> None:
    clock = SimulatedClock(START, auto_advance=False)
    chat = Chat(failures=100)
    dispatcher = AlertDispatcher([chat], clock)
    worker = asyncio.create_task(dispatcher.run())
    try:
        for n in range(10):
            assert dispatcher.submit(Alert(f"k{n}", "x"))  # returns at once, delivery is elsewhere
    finally:
        worker.cancel()
    assert chat.sent == []
