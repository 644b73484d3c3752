"""One-shot commands (`trade`, `cancel`) are someone at a terminal or a script: when the exchange
cannot be reached they give up with one error line, where a bot would wait it out."""

from __future__ import annotations

import socket

from .conftest import Cli


def a_closed_port() -> int:
    with socket.socket() as probe:  # bound, never listening: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_trade_and_cancel_give_up_on_an_unreachable_exchange(cli: Cli) -> None:
    env = {
        "EXCHANGE__API_KEY": "test-api-key",
        "EXCHANGE__API_SECRET": "test-api-secret",
        "EXCHANGE__REST_URL": f"http://127.0.0.1:{a_closed_port()}",
        "EXCHANGE__REQUEST_TIMEOUT_S": "1",
    }
    for command in (
        ["trade", "--side", "buy", "--amount", "0.001", "--dry-run"],
        ["trade", "--side", "buy", "--amount", "0.001"],
        ["cancel", "12345"],
    ):
        done = cli.run("--config", "config/testnet.toml", *command, extra_env=env, timeout=60)
        assert done.returncode == 1, (command, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert errors == [
            "error: the exchange did not answer within 3 s (3 x EXCHANGE__REQUEST_TIMEOUT_S); nothing was sent"
        ], (command, done.stderr)
        assert done.stdout == ""
