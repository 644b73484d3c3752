"""The stand-in's WebSocket API user data stream (`support.binance_server.ws_api`) over real
sockets on loopback: a raw `websockets` client signs `userDataStream.subscribe.signature` as
the docs say, orders go in over the REST stand-in with signed aiohttp requests, and the
account's executionReports come back on the subscription.

Real sockets must be waited on, so these tests run on the system clock; every wait is on a
message under a hang guard. Only the "nothing arrives" checks (a stall, an event that must not
be queued) wait a short while for something that must not come."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support.binance_server import FakeBinance
from support.binance_server.ws_api import (
    UserDataServer,
    running_user_data_server,
    sign,
    signature_payload,
)

from .sockets import guarded

TESTS_DIR = Path(__file__).resolve().parents[2]
QUIET_S = 0.3  # how long "nothing arrives" is watched for


@pytest.fixture
async def server(fake: FakeBinance) -> AsyncIterator[UserDataServer]:
    async with running_user_data_server(fake) as ws_api:
        yield ws_api


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def rest(fake: FakeBinance, http: aiohttp.ClientSession, method: str, path: str, **params: Any) -> Any:
    """A SIGNED REST request to the stand-in, as ccxt would send it."""
    query = urlencode({**params, "timestamp": fake.server_time_ms()})
    signature = hmac.new(fake.api_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    url = f"{fake.api_url}/{path}?{query}&signature={signature}"
    async with http.request(method, url, headers={"X-MBX-APIKEY": fake.api_key}) as response:
        body = await response.json()
        assert response.status == 200, body
        return body


class Session:
    """A raw WebSocket API client: requests matched to answers by id, everything else kept in
    arrival order as `pushed` (events and raw text)."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.pushed: list[Any] = []
        self._ids = itertools.count(1)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method}
        if params is not None:
            message["params"] = params
        await self.socket.send(json.dumps(message))
        return await self.answer(ident)

    async def answer(self, ident: Any) -> Any:
        async def wait() -> Any:
            while True:
                message = json.loads(await self.socket.recv())
                if isinstance(message, dict) and "status" in message and message.get("id") == ident:
                    return message
                self.pushed.append(message)

        return await guarded(wait(), f"the answer to request {ident}")

    async def event(self) -> dict[str, Any]:
        """The next pushed message."""
        if not self.pushed:
            self.pushed.append(json.loads(await guarded(self.socket.recv(), "an event")))
        message: dict[str, Any] = self.pushed.pop(0)
        return message

    async def events(self, count: int) -> list[dict[str, Any]]:
        return [await self.event() for _ in range(count)]

    async def subscribe(self, fake: FakeBinance, **overrides: Any) -> Any:
        params: dict[str, Any] = {"apiKey": fake.api_key, "timestamp": fake.server_time_ms()}
        params.update(overrides)
        if "signature" not in params:
            params["signature"] = sign(fake.api_secret, params)
        return await self.request("userDataStream.subscribe.signature", params)


@asynccontextmanager
async def session(server: UserDataServer) -> AsyncIterator[Session]:
    async with connect(server.url, ping_interval=None) as socket:
        yield Session(socket)


async def subscribed(fake: FakeBinance, client: Session) -> int:
    answer = await client.subscribe(fake)
    assert answer["status"] == 200, answer
    number: int = answer["result"]["subscriptionId"]
    return number


async def place(
    fake: FakeBinance, http: aiohttp.ClientSession, side: str, qty: str, price: str, **extra: Any
) -> Any:
    return await rest(
        fake,
        http,
        "POST",
        "order",
        symbol="BTCUSDT",
        side=side,
        type="LIMIT",
        quantity=qty,
        price=price,
        **{"timeInForce": "GTC", **extra},
    )


def report(message: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = message["event"]
    assert event["e"] == "executionReport", message
    return event


# -- signing ----------------------------------------------------------------------------------------
def test_the_docs_hmac_example_signs_to_the_docs_signature() -> None:
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
        "signature": "------ FILL ME ------",
    }
    assert signature_payload(params) == (
        "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&price=52000.00"
        "&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC"
        "&timestamp=1645423376532&type=LIMIT"
    )
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    assert sign(secret, params) == "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"


# -- requests ---------------------------------------------------------------------------------------
async def test_ping_and_time_on_the_rest_sides_clock(fake: FakeBinance, server: UserDataServer) -> None:
    fake.time_offset_ms = 3_600_000
    async with session(server) as client:
        assert await client.request("ping") == {"id": 1, "status": 200, "result": {}}
        answer = await client.request("v3/time")
        assert answer["status"] == 200
        assert abs(answer["result"]["serverTime"] - fake.server_time_ms()) < 60_000


async def test_subscribing_answers_ids_counting_from_zero_per_connection(
    fake: FakeBinance, server: UserDataServer
) -> None:
    async with session(server) as first, session(server) as second:
        assert (await first.request("session.status"))["result"]["userDataStream"] is False
        assert await first.subscribe(fake) == {"id": 2, "status": 200, "result": {"subscriptionId": 0}}
        assert (await first.request("session.status"))["result"]["userDataStream"] is True
        assert (await first.request("session.subscriptions"))["result"] == [{"subscriptionId": 0}]
        again = await first.subscribe(fake)
        assert again["status"] == 400 and again["error"]["code"] == -2035
        assert await subscribed(fake, second) == 0
        await guarded(server.wait_for_subscriptions(2, opened=2), "two subscriptions")

        assert await first.request("userDataStream.unsubscribe") == {"id": 6, "status": 200, "result": {}}
        terminated = await first.event()
        assert terminated["subscriptionId"] == 0
        assert terminated["event"]["e"] == "eventStreamTerminated"
        assert (await first.request("session.status"))["result"]["userDataStream"] is False
        assert await subscribed(fake, first) == 1  # ids are not reused on a connection
        closing = await first.request("userDataStream.unsubscribe", {"subscriptionId": 1})
        assert closing["status"] == 200
        assert (await first.event())["subscriptionId"] == 1
        assert (await first.request("session.subscriptions"))["result"] == []


async def test_a_signature_in_capitals_is_accepted(fake: FakeBinance, server: UserDataServer) -> None:
    params: dict[str, Any] = {"apiKey": fake.api_key, "timestamp": fake.server_time_ms(), "recvWindow": 60000}
    params["signature"] = sign(fake.api_secret, params).upper()
    async with session(server) as client:
        assert (await client.request("userDataStream.subscribe.signature", params))["status"] == 200


@pytest.mark.parametrize(
    ("overrides", "status", "code", "msg"),
    [
        ({"signature": "0" * 64}, 400, -1022, "Signature for this request is not valid."),
        ({"apiKey": "someone-else"}, 401, -2015, "Invalid API-key, IP, or permissions for action."),
        (
            {"timestamp": -10_000},
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        ),
        (
            {"timestamp": -3_000, "recvWindow": 1000},
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        ),
        (
            {"timestamp": 2_000},
            400,
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
        ),
        ({"recvWindow": 60001}, 400, -1102, None),
        (
            {"apiKey": None},
            400,
            -1102,
            "Mandatory parameter 'apiKey' was not sent, was empty/null, or malformed.",
        ),
    ],
)
async def test_a_refused_subscription_says_why_as_the_docs_do(
    fake: FakeBinance,
    server: UserDataServer,
    overrides: dict[str, Any],
    status: int,
    code: int,
    msg: str | None,
) -> None:
    params: dict[str, Any] = {"apiKey": fake.api_key, "timestamp": fake.server_time_ms()}
    for name, value in overrides.items():
        if name == "timestamp":
            params[name] += value  # relative to the server's clock
        else:
            params[name] = value
    params = {name: value for name, value in params.items() if value is not None}
    if "signature" not in params:
        params["signature"] = sign(fake.api_secret, params)
    async with session(server) as client:
        answer = await client.request("userDataStream.subscribe.signature", params)
        assert answer["status"] == status, answer
        assert answer["error"]["code"] == code
        if msg is not None:
            assert answer["error"]["msg"] == msg
        assert "result" not in answer
        assert (await client.request("session.status"))["result"]["userDataStream"] is False


async def test_a_missing_signature_and_an_unknown_method_are_refused(
    fake: FakeBinance, server: UserDataServer
) -> None:
    async with session(server) as client:
        answer = await client.request(
            "userDataStream.subscribe.signature", {"apiKey": fake.api_key, "timestamp": fake.server_time_ms()}
        )
        assert answer["status"] == 400 and answer["error"]["code"] == -1102
        unknown = await client.request("order.teleport")
        assert unknown["status"] == 400 and unknown["error"]["code"] == -1100


async def test_invalid_json_gets_an_error_answer_and_the_connection_stays(server: UserDataServer) -> None:
    async with session(server) as client:
        await client.socket.send("{not json")
        answer = await client.answer(None)
        assert answer["status"] == 400 and answer["error"]["code"] == -1135
        assert (await client.request("ping"))["status"] == 200


# -- account events -----------------------------------------------------------------------------------
async def test_an_order_rests_fills_and_its_trade_id_is_the_rest_one(
    fake: FakeBinance, server: UserDataServer, http: aiohttp.ClientSession
) -> None:
    async with session(server) as client:
        number = await subscribed(fake, client)
        placed = await place(fake, http, "BUY", "0.01", "29000", newClientOrderId="grid-buy-1")
        new, position = await client.events(2)
        assert new["subscriptionId"] == number
        event = report(new)
        assert {k: event[k] for k in "scSofqpgCxXritlzLnNwmzZYQ"} == {
            "s": "BTCUSDT",
            "c": "grid-buy-1",
            "S": "BUY",
            "o": "LIMIT",
            "f": "GTC",
            "q": "0.01000000",
            "p": "29000.00000000",
            "g": -1,
            "C": "",
            "x": "NEW",
            "X": "NEW",
            "r": "NONE",
            "i": placed["orderId"],
            "t": -1,
            "l": "0.00000000",
            "z": "0.00000000",
            "L": "0.00000000",
            "n": "0",
            "N": None,
            "w": True,
            "m": False,
            "Z": "0.00000000",
            "Y": "0.00000000",
            "Q": "0.00000000",
        }
        assert event["T"] == placed["transactTime"] and event["W"] == event["O"]
        assert position["event"]["e"] == "outboundAccountPosition"
        assert position["event"]["B"] == [
            {"a": "BTC", "f": "1.00000000", "l": "0.00000000"},
            {"a": "USDT", "f": "9710.00000000", "l": "290.00000000"},
        ]

        fake.set_price("BTC/USDT", Decimal("28900"))
        trade_message, after = await client.events(2)
        trade = report(trade_message)
        [rest_trade] = await rest(fake, http, "GET", "myTrades", symbol="BTCUSDT")
        assert trade["t"] == rest_trade["id"] and trade["i"] == rest_trade["orderId"] == placed["orderId"]
        assert (trade["x"], trade["X"], trade["c"], trade["C"]) == ("TRADE", "FILLED", "grid-buy-1", "")
        assert (trade["l"], trade["L"], trade["z"], trade["Z"], trade["Y"]) == (
            "0.01000000",
            "29000.00000000",
            "0.01000000",
            "290.00000000",
            "290.00000000",
        )
        assert (trade["n"], trade["N"]) == (rest_trade["commission"], rest_trade["commissionAsset"])
        assert (trade["n"], trade["N"], trade["m"], trade["w"]) == ("0.00001000", "BTC", True, False)
        assert after["event"]["B"] == [
            {"a": "BTC", "f": "1.00999000", "l": "0.00000000"},
            {"a": "USDT", "f": "9710.00000000", "l": "0.00000000"},
        ]
        assert trade["I"] > event["I"]


async def test_a_marketable_order_reports_new_then_its_taker_trade(
    fake: FakeBinance, server: UserDataServer, http: aiohttp.ClientSession
) -> None:
    async with session(server) as client:
        await subscribed(fake, client)
        placed = await place(fake, http, "SELL", "0.01", "29000")
        new, trade, _position = [
            report(m) if m["event"]["e"] == "executionReport" else m for m in await client.events(3)
        ]
        assert (new["x"], new["X"], new["w"]) == ("NEW", "NEW", False)
        assert "W" not in new
        assert (trade["x"], trade["X"], trade["m"]) == ("TRADE", "FILLED", False)
        assert trade["L"] == "30000.00000000" and trade["t"] == placed["fills"][0]["tradeId"]
        assert (trade["n"], trade["N"]) == ("0.30000000", "USDT")


async def test_one_move_across_several_orders_reports_the_trades_in_trade_id_order(
    fake: FakeBinance, server: UserDataServer, http: aiohttp.ClientSession
) -> None:
    async with session(server) as client:
        await subscribed(fake, client)
        ids = [
            (await place(fake, http, "BUY", "0.01", price))["orderId"]
            for price in ("29500", "29700", "29600")
        ]
        await client.events(6)
        fake.set_price("BTC/USDT", Decimal("29000"))
        trades = [report(m) for m in await client.events(3)]
        assert [t["i"] for t in trades] == [ids[1], ids[2], ids[0]]  # best bid first
        rest_ids = [row["id"] for row in await rest(fake, http, "GET", "myTrades", symbol="BTCUSDT")]
        assert [t["t"] for t in trades] == rest_ids == sorted(rest_ids)
        assert (await client.event())["event"]["e"] == "outboundAccountPosition"


async def test_a_cancel_reports_canceled_with_the_original_client_id(
    fake: FakeBinance, server: UserDataServer, http: aiohttp.ClientSession
) -> None:
    async with session(server) as client:
        await subscribed(fake, client)
        placed = await place(fake, http, "SELL", "0.01", "31000", newClientOrderId="grid-sell-1")
        await client.events(2)
        await rest(
            fake,
            http,
            "DELETE",
            "order",
            symbol="BTCUSDT",
            orderId=placed["orderId"],
            newClientOrderId="cxl-1",
        )
        canceled = report(await client.event())
        assert (canceled["x"], canceled["X"], canceled["c"], canceled["C"]) == (
            "CANCELED",
            "CANCELED",
            "cxl-1",
            "grid-sell-1",
        )
        assert (canceled["i"], canceled["w"], canceled["t"]) == (placed["orderId"], False, -1)
        assert (await client.event())["event"]["B"][0] == {"a": "BTC", "f": "1.00000000", "l": "0.00000000"}

        await place(fake, http, "SELL", "0.01", "31000", newClientOrderId="grid-sell-2")
        await client.events(2)
        await rest(fake, http, "DELETE", "openOrders", symbol="BTCUSDT")
        every = report(await client.event())
        assert (every["x"], every["C"]) == ("CANCELED", "grid-sell-2") and every["c"] != "grid-sell-2"


async def test_an_ioc_that_cannot_fill_reports_new_then_expired(
    fake: FakeBinance, server: UserDataServer, http: aiohttp.ClientSession
) -> None:
    async with session(server) as client:
        await subscribed(fake, client)
        await place(fake, http, "BUY", "0.01", "29000", timeInForce="IOC", newClientOrderId="ioc-1")
        new, expired = (report(m) for m in await client.events(2))
        assert (new["x"], new["w"], new["f"]) == ("NEW", False, "IOC")
        assert (expired["x"], expired["X"], expired["c"], expired["C"], expired["w"]) == (
            "EXPIRED",
            "EXPIRED",
            "ioc-1",
            "",
            False,
        )
        assert expired["eR"] == "UNFILLED_IOC_QUANTITY_EXPIRED" and expired["z"] == "0.00000000"


async def test_events_while_nobody_is_subscribed_are_not_kept(
    fake: FakeBinance, server: UserDataServer, http: aiohttp.ClientSession
) -> None:
    async with session(server) as client:
        await place(fake, http, "BUY", "0.01", "29000", newClientOrderId="before")
        await subscribed(fake, client)
        await place(fake, http, "BUY", "0.01", "28000", newClientOrderId="after")
        assert report(await client.event())["c"] == "after"
        assert (await client.event())["event"]["e"] == "outboundAccountPosition"
        await client.request("userDataStream.unsubscribe")
        assert (await client.event())["event"]["e"] == "eventStreamTerminated"
        await place(fake, http, "BUY", "0.01", "27000")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.socket.recv(), QUIET_S)


async def test_held_events_go_out_on_release_reversed(
    fake: FakeBinance, server: UserDataServer, http: aiohttp.ClientSession
) -> None:
    async with session(server) as client:
        await subscribed(fake, client)
        server.hold()
        placed = await place(fake, http, "BUY", "0.01", "29000")  # the REST answer comes, the event does not
        fake.set_price("BTC/USDT", Decimal("28000"))
        assert server.held == 4
        assert (await client.request("ping"))["status"] == 200 and client.pushed == []
        assert server.release(reverse=True) == 4
        kinds = [m["event"].get("x", m["event"]["e"]) for m in await client.events(4)]
        assert kinds == ["outboundAccountPosition", "TRADE", "outboundAccountPosition", "NEW"]
        assert server.live()[0].events_sent == 4
        fake.set_price("BTC/USDT", Decimal("30000"))
        assert placed["status"] == "NEW"


# -- connection knobs ----------------------------------------------------------------------------------
async def test_only_the_ws_api_path_is_served_and_refusing_answers_503(server: UserDataServer) -> None:
    with pytest.raises(InvalidStatus) as other:
        async with connect(server.url.replace("/ws-api/v3", "/ws"), ping_interval=None):
            pass
    assert other.value.response.status_code == 404
    server.refusing = True
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server.url, ping_interval=None):
            pass
    assert refused.value.response.status_code == 503
    server.refusing = False
    async with session(server) as client:
        assert (await client.request("ping"))["status"] == 200


async def test_drops_abort_or_close_with_1001(fake: FakeBinance, server: UserDataServer) -> None:
    async with session(server) as client:
        await subscribed(fake, client)
        [seen] = await guarded(server.wait_for_subscriptions(1), "the subscription")
        server.drop([seen])
        with pytest.raises(ConnectionClosed) as aborted:
            await guarded(client.socket.recv(), "the drop")
        assert aborted.value.rcvd is None  # no close frame: the TCP connection was cut
    await guarded(seen.done.wait(), "the server noticing")
    assert server.active_subscriptions() == 0
    async with session(server) as client:
        await subscribed(fake, client)
        await guarded(server.wait_for_subscriptions(1, opened=2), "the second subscription")
        server.drop(clean=True)
        with pytest.raises(ConnectionClosed) as closed:
            await guarded(client.socket.recv(), "the close")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


async def test_a_stalled_connection_answers_pings_and_sends_nothing(
    fake: FakeBinance, server: UserDataServer, http: aiohttp.ClientSession
) -> None:
    async with session(server) as client:
        await subscribed(fake, client)
        server.stall()
        await place(fake, http, "BUY", "0.01", "29000")
        await client.socket.send(json.dumps({"id": 9, "method": "ping"}))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.socket.recv(), QUIET_S)
        pong = await client.socket.ping(b"still there?")
        await guarded(pong, "the pong")
        assert server.live()[0].events_sent == 0


async def test_server_pings_carry_a_payload_and_a_silent_client_is_closed(fake: FakeBinance) -> None:
    async with (
        running_user_data_server(fake, ping_interval_s=0.05, pong_timeout_s=0.2) as server,
        session(server) as client,
    ):
        [seen] = await guarded(server.wait_for_clients(1), "the connection")
        assert await server.ping(seen, b"1700000000000")
        assert seen.pongs[0] == b"1700000000000"
        pongs = await guarded(server.wait_for_pongs(seen, 3), "keepalive pongs")
        assert all(payload.isdigit() for payload in pongs)

        client.socket.transport.pause_reading()  # pings go unanswered
        await guarded(seen.done.wait(), "the pong timeout closing the connection")
        client.socket.transport.resume_reading()
        with pytest.raises(ConnectionClosed):
            await guarded(client.socket.recv(), "the client seeing the cut")


async def test_send_raw_and_the_shutdown_notice_reach_the_client(server: UserDataServer) -> None:
    async with session(server) as client:
        await guarded(server.wait_for_clients(1), "the connection")
        server.send_raw('{"surprise": true}')
        server.shutdown_notice(1770123456789)
        assert await client.events(2) == [
            {"surprise": True},
            {"event": {"e": "serverShutdown", "E": 1770123456789}},
        ]


async def test_the_command_line_serves_the_ws_api_and_drops_every_connection() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
    }
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "support.binance_server", "--ws-api", "--streams", "--drop-every", "1"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        line = (await guarded(process.stdout.readline(), "the listening line")).decode()
        assert line.startswith("listening on http://127.0.0.1:")
        announced = [
            (await guarded(process.stderr.readline(), "the stderr lines")).decode() for _ in range(2)
        ]
        assert announced[0].startswith("streams on ws://127.0.0.1:")
        assert announced[1].startswith("ws-api on ws://127.0.0.1:") and announced[1].endswith("/ws-api/v3\n")
        url = announced[1].removeprefix("ws-api on ").strip()
        for _attempt in range(5):  # a drop may cut in between connecting and the answer: try again
            with contextlib.suppress(ConnectionClosed):
                async with connect(url, ping_interval=None) as socket:
                    client = Session(socket)
                    params: dict[str, Any] = {"apiKey": "test-api-key", "timestamp": int(time.time() * 1000)}
                    params["signature"] = sign("test-api-secret", params)
                    answer = await client.request("userDataStream.subscribe.signature", params)
                    assert answer["result"] == {"subscriptionId": 0}
                    with pytest.raises(ConnectionClosed):
                        await guarded(socket.recv(), "the periodic drop")
                    break
        else:
            raise AssertionError("every connection was dropped before its subscription was answered")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await guarded(process.communicate(), "the server stopping")
    assert process.returncode == 0
