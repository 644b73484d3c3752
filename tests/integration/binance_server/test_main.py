"""`python -m support.binance_server` as e2e tests and benchmarks start it: a subprocess that
announces its URL on stdout and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

TESTS_DIR = Path(__file__).resolve().parents[2]


async def test_serves_until_sigterm() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "support.binance_server",
        "--port",
        "0",
        "--price",
        "25000.50",
        "--balance",
        "USDT=500",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("listening on http://127.0.0.1:")
        base = line.removeprefix("listening on ").strip()

        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/api/v3/ticker/price", params={"symbol": "BTCUSDT"}) as response,
        ):
            body = await response.json()
        assert body == {"symbol": "BTCUSDT", "price": "25000.50000000"}
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        remaining_stdout, _ = await asyncio.wait_for(process.communicate(), timeout=30)

    assert process.returncode == 0
    assert remaining_stdout == b""
