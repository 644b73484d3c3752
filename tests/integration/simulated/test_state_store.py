"""Persisting the simulated exchange between runs of the mock profile."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from adapters.simulated.engine import MatchingEngine
from adapters.simulated.state_store import JsonStateStore
from domain.models import OrderStatus, Side
from unit.simulated.builders import T0, at, limit, make_engine


def test_nothing_saved_yet_loads_as_none(tmp_path: Path) -> None:
    assert JsonStateStore(tmp_path / "exchange.json").load() is None


def test_a_restarted_bot_finds_its_resting_orders_again(tmp_path: Path) -> None:
    engine = make_engine()
    engine.place(limit(Side.BUY, "29000", "0.01", client_order_id="grid-7"), T0)
    engine.place(limit(Side.SELL, "29999", "0.01"), T0)
    engine.move_to(Decimal("30000"), at(1))
    store = JsonStateStore(tmp_path / "var" / "state" / "exchange.json")  # the folders do not exist yet

    store.save(engine.snapshot())
    loaded = store.load()
    assert loaded is not None
    restarted = MatchingEngine.restore(loaded)

    assert restarted.order(client_order_id="grid-7").status is OrderStatus.OPEN
    assert restarted.open_orders() == engine.open_orders()
    assert restarted.balances() == engine.balances()
    assert restarted.snapshot() == engine.snapshot()


def test_saving_again_replaces_the_state_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = JsonStateStore(tmp_path / "exchange.json")
    store.save({"round": 1})
    store.save({"round": 2})
    assert store.load() == {"round": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["exchange.json"]


@pytest.mark.parametrize(
    "content", ['{"orders": [', "[1, 2]", "\xff\xfe"], ids=["truncated", "not-an-object", "binary"]
)
def test_a_corrupt_state_file_is_a_value_error_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "exchange.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ValueError, match=r"exchange\.json") as raised:
        JsonStateStore(path).load()
    assert str(path) in str(raised.value)
