"""Config redaction and validation, time-offset arithmetic, and the lazy ccxt import."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.binance import BinanceConfig
from adapters.binance.time_sync import TimeSync, time_difference_ms
from adapters.clock import SimulatedClock

SRC = Path(__file__).resolve().parents[3] / "src"


def test_repr_never_shows_the_key_or_the_secret() -> None:
    config = BinanceConfig(
        api_key="AKIAKEY123", api_secret="s3cr3t-value", rest_url="https://testnet.binance.vision"
    )
    for text in (repr(config), str(config), f"{config}"):
        assert "AKIAKEY123" not in text
        assert "s3cr3t-value" not in text
        assert "testnet.binance.vision" in text
    assert config.api_url == "https://testnet.binance.vision/api/v3"


@pytest.mark.parametrize(
    "changes",
    [{"rest_url": "testnet.binance.vision"}, {"recv_window_ms": 70000}, {"weight_budget_fraction": 0}],
)
def test_nonsense_settings_are_refused(changes: dict[str, object]) -> None:
    values: dict[str, object] = {"api_key": "k", "api_secret": "s", "rest_url": "https://x"} | changes
    with pytest.raises(ValueError):
        BinanceConfig(**values)  # type: ignore[arg-type]


def test_time_difference_keeps_timestamps_behind_the_venue() -> None:
    # Local clock 2 s ahead of the venue: ccxt must subtract 2000 ms (and a bit of round trip).
    assert time_difference_ms(local_after_ms=1_000_002_000, server_ms=1_000_000_000) == 2000


async def test_resync_becomes_due_after_the_interval() -> None:
    clock = SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC), auto_advance=False)
    sync = TimeSync(clock, resync_s=300)
    assert sync.due
    applied: list[int] = []

    async def server_ms() -> int:
        return 1_000

    await sync.sync(server_ms, lambda: 1_250, applied.append, reason="test")
    assert applied == [250]
    assert not sync.due
    clock.advance(299)
    assert not sync.due
    clock.advance(1)
    assert sync.due


def test_importing_the_adapter_does_not_import_ccxt() -> None:
    code = "import sys, adapters.binance, adapters.binance.user_stream; print('ccxt' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(SRC)}
    )
    assert result.stdout.strip() == "False"
