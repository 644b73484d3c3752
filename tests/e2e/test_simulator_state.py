"""The simulated exchange's saved book is kept only under the market rules it was made with."""

from __future__ import annotations

from decimal import Decimal

from bootstrap.venues import rules_changed
from domain.rules import MarketRules

from .conftest import Cli


def test_a_saved_book_is_refused_under_other_market_rules(cli: Cli) -> None:
    first = cli.run("run", "--duration", "4")
    assert first.returncode == 0, first.stderr
    assert (cli.workdir / "var" / "simulated-exchange.sqlite3").exists()
    done = cli.run("run", "--duration", "4", extra_env={"SIMULATOR__TICK_SIZE": "0.1"})
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: SIMULATOR__STATE_FILE: var/simulated-exchange.sqlite3 holds a BTC/USDT book made with "
        "other market rules: tick_size 0.01 (settings: 0.1); use another state file or restore the settings"
    ]


def test_rules_changed_names_each_rule_that_differs_and_nothing_else() -> None:
    saved = MarketRules("BTC/USDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"))
    assert rules_changed(saved, saved, "now") == []
    now = MarketRules("BTC/USDT", "BTC", "USDT", Decimal("0.1"), Decimal("0.001"), Decimal("0.00001"))
    assert rules_changed(saved, now, "Binance now") == [
        "tick_size 0.01 (Binance now: 0.1)",
        "step_size 0.00001 (Binance now: 0.001)",
    ]
