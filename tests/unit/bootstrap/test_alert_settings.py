"""The `health` and `alerts` settings: channels turned on by their URL or token, one clear error
per mistake, and their secrets never echoed nor logged."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import structlog

from adapters.logging import configure_logging
from bootstrap.cli import _secrets
from bootstrap.settings import load_settings
from domain.errors import ConfigurationError

TOKEN = "123456789:AAE-secret-telegram-token"
DISCORD = "https://discord.com/api/webhooks/1234/discord-webhook-secret"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("ALERTS__", "HEALTH__", "EXCHANGE__", "GRID__", "RISK__", "BOT_CONFIG")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str):  # type: ignore[no-untyped-def]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    profile = tmp_path / "profile.toml"
    profile.write_text("")
    return load_settings(profile, env_file=None)


def test_no_endpoint_and_no_channel_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = settings(tmp_path, monkeypatch)
    assert loaded.health.port is None
    assert loaded.health.host == "127.0.0.1"
    assert not loaded.alerts.any_channel
    assert loaded.alerts.telegram_api_url == "https://api.telegram.org"


def test_a_channel_is_on_once_its_url_or_token_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = settings(
        tmp_path,
        monkeypatch,
        ALERTS__TELEGRAM_TOKEN=TOKEN,
        ALERTS__TELEGRAM_CHAT_ID="-1001",
        ALERTS__DISCORD_WEBHOOK_URL=DISCORD,
        HEALTH__PORT="9108",
    )
    assert loaded.alerts.any_channel
    assert (
        loaded.alerts.telegram_token is not None and loaded.alerts.telegram_token.get_secret_value() == TOKEN
    )
    assert TOKEN not in repr(loaded)
    assert loaded.health.port == 9108


def test_an_empty_value_leaves_a_channel_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not settings(tmp_path, monkeypatch, ALERTS__WEBHOOK_URL="").alerts.any_channel


@pytest.mark.parametrize(
    ("env", "key", "message"),
    [
        (
            {"ALERTS__TELEGRAM_TOKEN": TOKEN},
            "ALERTS__TELEGRAM_CHAT_ID",
            "is required when ALERTS__TELEGRAM_TOKEN",
        ),
        (
            {"ALERTS__TELEGRAM_CHAT_ID": "42"},
            "ALERTS__TELEGRAM_TOKEN",
            "is required when ALERTS__TELEGRAM_CHAT_ID",
        ),
        (
            {"ALERTS__TELEGRAM_API_URL": "api.telegram.org"},
            "ALERTS__TELEGRAM_API_URL",
            "must start with http://",
        ),
        ({"HEALTH__PORT": "70000"}, "HEALTH__PORT", "less than or equal to 65535"),
    ],
)
def test_mistakes_name_their_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], key: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(tmp_path, monkeypatch, **env)
    assert caught.value.key == key
    assert message in caught.value.problem


def test_a_malformed_secret_url_is_refused_without_being_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(tmp_path, monkeypatch, ALERTS__DISCORD_WEBHOOK_URL="discord.com/api/webhooks/1/hidden-token")
    assert caught.value.key == "ALERTS__DISCORD_WEBHOOK_URL"
    assert "must start with http:// or https://" in caught.value.problem
    assert "hidden-token" not in str(caught.value)


def test_alert_secrets_never_reach_a_log_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = settings(
        tmp_path,
        monkeypatch,
        ALERTS__TELEGRAM_TOKEN=TOKEN,
        ALERTS__TELEGRAM_CHAT_ID="-1001",
        ALERTS__DISCORD_WEBHOOK_URL=DISCORD,
    )
    out = io.StringIO()
    configure_logging(level="INFO", fmt="json", secrets=_secrets(loaded), stream=out)
    log = structlog.get_logger("test")
    log.warning(
        "alert not delivered", reason=f"Cannot connect to https://api.telegram.org/bot{TOKEN}/sendMessage"
    )
    log.warning("alert not delivered", url=DISCORD, tail="token discord-webhook-secret seen")
    log.info("settings", telegram_token=TOKEN)
    structlog.reset_defaults()
    text = out.getvalue()
    assert TOKEN not in text
    assert "discord-webhook-secret" not in text
    assert text.count("***") >= 4
