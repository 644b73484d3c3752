"""Settings as users write them: profile, then .env, then environment; one clear error per mistake."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bootstrap.settings import load_settings
from domain.errors import ConfigurationError

PROJECT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if "__" in name and name.split("__")[0] in {
            "EXCHANGE",
            "GRID",
            "DATABASE",
            "LOG",
            "RISK",
            "SIMULATOR",
            "TRADING",
        }:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "profile.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_profiles_load() -> None:
    default = load_settings(PROJECT / "config/default.toml", env_file=None)
    assert default.exchange.kind == "simulated"
    assert default.grid.lower == Decimal("28500")
    assert default.database.url.startswith("sqlite+aiosqlite:///")


def test_environment_overrides_dotenv_which_overrides_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = write(tmp_path, '[grid]\nlevels = 10\ninvestment = "500"\nlower = "1000"\nupper = "2000"\n')
    dotenv = write(tmp_path, "GRID__LEVELS=12\nGRID__INVESTMENT=700\n", ".env")
    monkeypatch.setenv("GRID__LEVELS", "14")
    settings = load_settings(profile, env_file=dotenv)
    assert settings.grid.levels == 14  # environment wins
    assert settings.grid.investment == Decimal("700")  # .env beats the profile
    assert settings.grid.lower == Decimal("1000")  # the profile beats the defaults


def test_toml_floats_become_exact_decimals(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[grid]\nlower = 0.1\nupper = 0.3\n"), env_file=None)
    assert settings.grid.lower == Decimal("0.1")
    assert settings.grid.upper == Decimal("0.3")


@pytest.mark.parametrize(
    ("env", "key", "words"),
    [
        ({"GRID__LEVELS": "1"}, "GRID__LEVELS", "greater than or equal to 2"),
        ({"GRID__LOWER": "abc"}, "GRID__LOWER", "valid decimal"),
        ({"GRID__LOWER": "35000"}, "GRID__UPPER", "must be above GRID__LOWER"),
        ({"GRID__INVESTMENT": "-5"}, "GRID__INVESTMENT", "greater than 0"),
        ({"GRID__UPPER": "NaN"}, "GRID__UPPER", "finite"),
        ({"EXCHANGE__KIND": "binance"}, "EXCHANGE__API_KEY", "required when EXCHANGE__KIND=binance"),
        ({"EXCHANGE__KIND": "ftx"}, "EXCHANGE__KIND", "'simulated', 'binance' or 'paper'"),
        ({"LOG__FORMAT": "xml"}, "LOG__FORMAT", "'console' or 'json'"),
        ({"RISK__TAKE_PROFIT": "30000"}, "RISK__TAKE_PROFIT", "over GRID__UPPER"),
        ({"TRADING__SYMBOL": "BTC-USDT"}, "TRADING__SYMBOL", "BASE/QUOTE"),
        ({"SIMULATOR__CANDLES_FILE": "missing.json"}, "SIMULATOR__CANDLES_FILE", "does not exist"),
    ],
)
def test_bad_values_name_their_key(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], key: str, words: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(PROJECT / "config/default.toml", env_file=None)
    assert caught.value.key == key
    assert words in caught.value.problem


BINANCE_KEYS = {"EXCHANGE__KIND": "binance", "EXCHANGE__API_KEY": "k", "EXCHANGE__API_SECRET": "s"}
LIVE = {"EXCHANGE__TESTNET": "false", "EXCHANGE__ALLOW_LIVE": "true"}


@pytest.mark.parametrize(
    ("env", "key", "words"),
    [
        (
            {**LIVE, "EXCHANGE__WS_API_URL": "wss://ws-api.testnet.binance.vision/ws-api/v3"},
            "EXCHANGE__WS_API_URL",
            "is the testnet's, but EXCHANGE__TESTNET=false",
        ),
        ({**LIVE, "EXCHANGE__REST_URL": "https://testnet.binance.vision"}, "EXCHANGE__REST_URL", "testnet's"),
        (
            {"EXCHANGE__WS_URL": "wss://stream.binance.com:9443"},
            "EXCHANGE__WS_URL",
            "is Binance's live exchange, but EXCHANGE__TESTNET=true",
        ),
        ({"EXCHANGE__REST_URL": "https://api.binance.com"}, "EXCHANGE__REST_URL", "live exchange"),
        ({"EXCHANGE__WS_SILENCE_S": "0.01"}, "EXCHANGE__WS_SILENCE_S", "greater than or equal to 1"),
        ({"EXCHANGE__WS_SILENCE_S": "inf"}, "EXCHANGE__WS_SILENCE_S", "less than or equal to 3600"),
    ],
)
def test_keys_of_one_binance_network_never_go_to_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], key: str, words: str
) -> None:
    for name, value in {**BINANCE_KEYS, **env}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(write(tmp_path, ""), env_file=None)
    assert caught.value.key == key
    assert words in caught.value.problem


def test_each_network_takes_its_own_urls_and_a_test_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in BINANCE_KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EXCHANGE__WS_API_URL", "wss://ws-api.testnet.binance.vision/ws-api/v3")
    assert load_settings(write(tmp_path, ""), env_file=None).exchange.testnet
    for name, value in LIVE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EXCHANGE__WS_API_URL", "wss://ws-api.binance.com:443/ws-api/v3")
    monkeypatch.setenv("EXCHANGE__REST_URL", "http://127.0.0.1:8080")
    assert not load_settings(write(tmp_path, ""), env_file=None).exchange.testnet


def test_unknown_keys_and_sections_fail_loudly(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(write(tmp_path, "[grid]\nlevles = 4\n"), env_file=None)
    assert (caught.value.key, caught.value.problem) == ("GRID__LEVLES", "is not a known setting")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(write(tmp_path, "[gird]\nlevels = 4\n"), env_file=None)
    assert caught.value.key == "GIRD"


def test_missing_or_broken_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env_file=None)
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings(write(tmp_path, "[grid\n"), env_file=None)


def test_live_trading_needs_an_explicit_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE__KIND", "binance")
    monkeypatch.setenv("EXCHANGE__API_KEY", "key-1234")
    monkeypatch.setenv("EXCHANGE__API_SECRET", "secret-5678")
    monkeypatch.setenv("EXCHANGE__TESTNET", "false")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(PROJECT / "config/default.toml", env_file=None)
    assert caught.value.key == "EXCHANGE__ALLOW_LIVE"
    monkeypatch.setenv("EXCHANGE__ALLOW_LIVE", "true")
    settings = load_settings(PROJECT / "config/default.toml", env_file=None)
    assert settings.exchange.api_secret is not None
    assert "secret-5678" not in repr(settings)
    assert "secret-5678" not in str(settings.model_dump())


def test_a_malformed_secret_is_never_echoed(tmp_path: Path) -> None:
    profile = write(tmp_path, '[exchange]\napi_key = ["hunter2-secret-list"]\n')
    with pytest.raises(ConfigurationError) as caught:
        load_settings(profile, env_file=None)
    assert caught.value.key == "EXCHANGE__API_KEY"
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("EXCHANGE__REST_URL", "garbage", "must start with http:// or https://"),
        ("EXCHANGE__REST_URL", "http://", "has no host"),
        ("EXCHANGE__REST_URL", "wss://stream.binance.com", "must start with http:// or https://"),
        ("EXCHANGE__REST_URL", "http://127.0.0.1:port", "is not a usable URL"),
        ("EXCHANGE__WS_URL", "https://stream.binance.com", "must start with ws:// or wss://"),
        ("EXCHANGE__WS_API_URL", "ws://:9443", "has no host"),
    ],
)
def test_a_url_the_adapters_cannot_use_is_refused_naming_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str, says: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(write(tmp_path, ""), env_file=None)
    assert caught.value.key == key
    assert says in caught.value.problem
    assert repr(value) in caught.value.problem  # the user sees what was read


def test_usable_urls_are_kept_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE__REST_URL", "http://127.0.0.1:8080/")
    monkeypatch.setenv("EXCHANGE__WS_URL", "wss://stream.testnet.binance.vision:9443")
    settings = load_settings(write(tmp_path, ""), env_file=None)
    assert settings.exchange.rest_url == "http://127.0.0.1:8080/"
    assert settings.exchange.ws_url == "wss://stream.testnet.binance.vision:9443"


@pytest.mark.parametrize(
    ("key", "value"), [("GRID__UPPER", "1e30"), ("GRID__LOWER", "1e400"), ("GRID__INVESTMENT", "1e20")]
)
def test_a_price_or_amount_beyond_any_market_is_refused_naming_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(write(tmp_path, ""), env_file=None)
    assert caught.value.key == key and "less than or equal to" in caught.value.problem
