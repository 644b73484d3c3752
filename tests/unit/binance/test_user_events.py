"""User data stream messages (the docs' own examples) into fills, and the WebSocket API signature."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from adapters.binance.user_events import (
    Answer,
    MalformedEvent,
    OtherEvent,
    ServerShutdown,
    StreamTerminated,
    UserEventParser,
    sign,
)
from adapters.binance.user_stream import Credentials
from domain.models import Fill, Side

# The executionReport of user-data-stream.md, as a trade of BTCUSDT.
TRADE: dict[str, Any] = {
    "e": "executionReport",
    "E": 1499405658658,
    "s": "BTCUSDT",
    "c": "grid-7-b3",
    "S": "BUY",
    "o": "LIMIT",
    "f": "GTC",
    "q": "1.00000000",
    "p": "0.10264410",
    "P": "0.00000000",
    "F": "0.00000000",
    "g": -1,
    "C": "",
    "x": "TRADE",
    "X": "PARTIALLY_FILLED",
    "r": "NONE",
    "i": 4293153,
    "l": "0.25000000",
    "z": "0.25000000",
    "L": "0.10264410",
    "n": "0.00025000",
    "N": "BTC",
    "T": 1499405658657,
    "t": 77,
    "I": 8641984,
    "w": True,
    "m": True,
    "M": True,
    "O": 1499405658657,
    "Z": "0.02566102",
    "Y": "0.02566102",
    "Q": "0.00000000",
    "W": 1499405658657,
    "V": "NONE",
}


def parse(message: str) -> object:
    return UserEventParser("BTC/USDT").parse(message)


def wrapped(event: dict[str, Any], subscription: int = 0) -> str:
    return json.dumps({"subscriptionId": subscription, "event": event})


def test_a_trade_report_is_a_fill_with_exact_decimals() -> None:
    fill = parse(wrapped(TRADE))
    assert fill == Fill(
        trade_id="77",
        order_id="4293153",
        client_order_id="grid-7-b3",
        symbol="BTC/USDT",
        side=Side.BUY,
        price=Decimal("0.10264410"),
        amount=Decimal("0.25000000"),
        fee=Decimal("0.00025000"),
        fee_asset="BTC",
        timestamp=datetime(2017, 7, 7, 5, 34, 18, 657000, tzinfo=UTC),
        is_maker=True,
    )


@pytest.mark.parametrize("execution", ["NEW", "CANCELED", "REPLACED", "REJECTED", "EXPIRED"])
def test_order_reports_that_are_not_trades_are_passed_over(execution: str) -> None:
    event = {**TRADE, "x": execution, "t": -1, "l": "0.00000000", "L": "0.00000000"}
    assert parse(wrapped(event)) == OtherEvent(f"executionReport {execution}")


def test_another_symbols_trade_is_passed_over() -> None:
    assert parse(wrapped({**TRADE, "s": "ETHUSDT"})) == OtherEvent("executionReport TRADE of ETHUSDT")
    assert UserEventParser("ETH/USDT").parse(wrapped({**TRADE, "s": "ETHUSDT"})) != OtherEvent(
        "executionReport TRADE of ETHUSDT"
    )


def test_a_trade_without_commission_may_lack_its_asset() -> None:
    fill = parse(wrapped({**TRADE, "n": "0", "N": None}))
    assert isinstance(fill, Fill) and fill.fee == 0 and fill.fee_asset == ""


def test_account_events_answers_and_connection_events_are_recognised() -> None:
    position = {"e": "outboundAccountPosition", "E": 1, "u": 1, "B": []}
    assert parse(wrapped(position)) == OtherEvent("outboundAccountPosition")
    assert parse(wrapped({"e": "eventStreamTerminated", "E": 1}, 3)) == StreamTerminated(3)
    assert parse(json.dumps({"event": {"e": "serverShutdown", "E": 1}})) == ServerShutdown()
    answer = parse(json.dumps({"id": "s-1", "status": 200, "result": {"subscriptionId": 0}}))
    assert answer == Answer("s-1", 200, {"subscriptionId": 0})
    refused = parse(
        json.dumps(
            {
                "id": "s-2",
                "status": 400,
                "error": {"code": -1022, "msg": "Signature for this request is not valid."},
            }
        )
    )
    assert refused == Answer("s-2", 400, None, -1022, "Signature for this request is not valid.")
    assert not refused.ok and answer.ok
    odd = parse(json.dumps({"id": 3, "status": 418, "error": {"code": "x", "msg": 5}}))
    assert odd == Answer(3, 418, None, None, "")


WHERE = "executionReport trade 77"


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ("{not json", "not JSON: {not json"),
        ("[1, 2]", "not a JSON object: [1, 2]"),
        ('{"hello": 1}', 'neither an answer nor an event: {"hello": 1}'),
        (wrapped({**TRADE, "t": "77"}), "executionReport: field 't' is not an integer: '77'"),
        (wrapped({**TRADE, "L": 0.1}), f"{WHERE}: field 'L' is not a decimal string: 0.1"),
        (wrapped({**TRADE, "l": "lots"}), f"{WHERE}: field 'l' is not a number: 'lots'"),
        (wrapped({**TRADE, "n": "NaN"}), f"{WHERE}: field 'n' is not finite: 'NaN'"),
        (wrapped({**TRADE, "l": "0"}), f"{WHERE}: a trade of 0 at 0.10264410"),
        (wrapped({**TRADE, "L": "0"}), f"{WHERE}: a trade of 0.25000000 at 0"),
        (wrapped({**TRADE, "S": "HOLD"}), f"{WHERE}: field 'S' is not BUY or SELL: 'HOLD'"),
        (wrapped({**TRADE, "S": 1}), f"{WHERE}: field 'S' is not BUY or SELL: 1"),
        (wrapped({**TRADE, "N": None}), f"{WHERE}: a commission of 0.00025000 without its asset ('N')"),
        (wrapped({**TRADE, "m": "yes"}), f"{WHERE}: field 'm' is not true or false"),
        (wrapped({**TRADE, "c": ""}), f"{WHERE}: field 'c' (client order id) is missing"),
        (wrapped({**TRADE, "i": None}), f"{WHERE}: field 'i' is not an integer: None"),
        (wrapped({**TRADE, "T": 1.5}), f"{WHERE}: field 'T' is not an integer: 1.5"),
        (wrapped({**TRADE, "x": None}), "executionReport: field 'x' is missing"),
        (
            wrapped({k: v for k, v in TRADE.items() if k != "s"}),
            "executionReport: field 's' (symbol) is missing",
        ),
        (json.dumps({"event": "trade"}), """'event' is not an object: {"event": "trade"}"""),
        (json.dumps({"event": {"E": 1}}), """event without a type: {"event": {"E": 1}}"""),
        (json.dumps({"id": 1, "status": "ok"}), "an answer with status 'ok'"),
        (json.dumps({"id": 1, "status": True}), "an answer with status True"),
    ],
)
def test_malformed_messages_are_refused_with_the_reason(message: str, says: str) -> None:
    with pytest.raises(MalformedEvent) as refused:
        parse(message)
    assert str(refused.value) == says


def test_a_long_malformed_message_is_clipped_in_the_reason() -> None:
    long = "x" * 500
    with pytest.raises(MalformedEvent) as refused:
        parse(long)
    assert str(refused.value) == "not JSON: " + "x" * 120 + "…"
    with pytest.raises(MalformedEvent) as exact:
        parse("y" * 120)
    assert str(exact.value) == "not JSON: " + "y" * 120
    with pytest.raises(MalformedEvent) as raw:
        UserEventParser("BTC/USDT").parse(b"\xff" * 3)
    assert str(raw.value) == "not JSON: \ufffd\ufffd\ufffd"


def test_a_terminated_subscription_without_its_id() -> None:
    assert parse(json.dumps({"event": {"e": "eventStreamTerminated", "E": 1}})) == StreamTerminated(None)
    assert parse(
        json.dumps({"subscriptionId": "0", "event": {"e": "eventStreamTerminated"}})
    ) == StreamTerminated(None)


def test_a_sell_as_taker() -> None:
    fill = parse(wrapped({**TRADE, "S": "SELL", "m": False, "N": "USDT"}))
    assert isinstance(fill, Fill)
    assert (fill.side, fill.is_maker, fill.fee_asset) == (Side.SELL, False, "USDT")


def test_the_signature_is_the_docs_hmac_example() -> None:
    # web-socket-api.md, "SIGNED request example (HMAC)", the ASCII example.
    params = {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01000000",
        "price": "52000.00",
        "recvWindow": 100,
        "timestamp": 1645423376532,
        "apiKey": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
    }
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    assert sign(params, secret) == "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
    assert sign({**params, "signature": "ignored"}, secret) == sign(params, secret)


def test_credentials_never_show_the_secret() -> None:
    credentials = Credentials("key-abcdef", "very-secret-value")
    assert "very-secret-value" not in repr(credentials)
    assert "key-abcdef" not in repr(credentials)
    signed = credentials.signed({"apiKey": "key-abcdef", "timestamp": 1})
    assert signed["signature"] == sign({"apiKey": "key-abcdef", "timestamp": 1}, "very-secret-value")
    with pytest.raises(ValueError, match="API key and secret"):
        Credentials("key", "")
