"""`run --health-port` and `ALERTS__WEBHOOK_URL` on the default profile, as a user runs them: the
endpoint answers over HTTP while the bot trades, and the start and stop alerts reach a webhook."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from support.recording_server import recording_server

from .conftest import Cli, Event


def fills_in_books(cli: Cli, run_id: str) -> int:
    db = sqlite3.connect(cli.workdir / "var" / "gridbot.sqlite3")
    try:
        return int(db.execute("SELECT COUNT(*) FROM fills WHERE run_id = ?", (run_id,)).fetchone()[0])
    finally:
        db.close()


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(url) as response:
        assert response.status == 200
        text = await response.text()
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_health_metrics_and_alerts_of_a_running_bot(cli: Cli) -> None:
    async with recording_server() as webhook:
        env = {"ALERTS__WEBHOOK_URL": f"{webhook.base_url}/gridbot"}
        async with (
            cli.bot("run", "--health-port", "0", extra_env=env) as bot,
            aiohttp.ClientSession() as http,
        ):
            listening = await bot.until(lambda e: e["event"] == "health endpoint listening")
            base = f"http://127.0.0.1:{listening['port']}"
            await bot.until(lambda e: e["event"] == "grid started")
            fills = 0

            def second_fill(event: Event) -> bool:
                nonlocal fills
                fills += event["event"] == "fill"
                return fills == 2

            await bot.until(second_fill)
            async with http.get(f"{base}/health") as response:
                status, health = response.status, await response.json()
            assert status == 200, health
            assert health["status"] == "trading"
            run_id = health["run_id"]
            assert health["open_orders"] >= 14 and health["fills"] >= 1
            assert health["market_state"] in {"normal", "volatile", "panic"}

            # The metric and the books agree. The books are written first, so read the metric, the
            # books, the metric again, and take a round where no fill came in between.
            agreed: list[Any] = []
            for _ in range(50):
                before = await scrape(http, f"{base}/metrics")
                booked = fills_in_books(cli, run_id)
                after = await scrape(http, f"{base}/metrics")
                if before["gridbot_fills_booked{}"] == booked == after["gridbot_fills_booked{}"]:
                    agreed.append((booked, after))
                    break
            assert agreed, "the fills metric never matched the books"
            booked, metrics = agreed[0]
            assert booked >= 2
            assert (
                metrics['gridbot_fills_total{"side": "buy"}'] + metrics['gridbot_fills_total{"side": "sell"}']
                == booked
            )
            assert metrics["gridbot_trading{}"] == 1
            code = await bot.stop()
        assert code == 0, bot.tail()

        received = await webhook.wait_for(2)
    start, stop = (r.body for r in received)
    assert (start["key"], start["title"]) == ("start", "grid started: BTC/USDT on simulated")
    assert stop["key"] == "stop"
    assert stop["title"] == "grid stopped: stop requested"
    assert "realized PnL" in stop["text"]
    assert all(r.path == "/gridbot" for r in received)


async def test_an_unreachable_webhook_does_not_stop_the_bot(cli: Cli) -> None:
    async with recording_server() as gone:
        url = gone.base_url
    env = {"ALERTS__WEBHOOK_URL": f"{url}/gridbot"}
    async with cli.bot("run", extra_env=env) as bot:
        await bot.until(lambda e: e["event"] == "alert not delivered")
        await bot.until(lambda e: e["event"] == "fill")  # trading goes on
        code = await bot.stop()
    assert code == 0, bot.tail()
