"""Settings: a TOML profile, then `.env`, then environment variables (`__` nests: GRID__LEVELS).

Every key users may set is declared here with a safe default; unknown keys in a profile are an
error (a typo must not silently fall back to a default). Invalid settings become one
`ConfigurationError` naming the key as a user writes it (e.g. GRID__LEVELS).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from domain.errors import ConfigurationError
from domain.rules import MarketRules

DEFAULT_PROFILE = Path("config/default.toml")
SECRET_FIELDS = frozenset({"api_key", "api_secret", "webhook_url", "telegram_token", "discord_webhook_url"})


def _decimal_input(value: Any) -> Any:
    """Decimals come from strings or ints. A TOML float (lower = 25000.5) is taken by its shortest
    repr, so 0.1 stays exactly 0.1; NaN and infinities are refused."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return repr(value)
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.lower() in {"nan", "inf", "-inf", "+inf", "infinity", "-infinity", "snan"}:
            raise ValueError("must be a finite number")
        return stripped
    return value


Dec = Annotated[Decimal, BeforeValidator(_decimal_input)]
PositiveDec = Annotated[Decimal, BeforeValidator(_decimal_input), Field(gt=0)]
Fraction = Annotated[Decimal, BeforeValidator(_decimal_input), Field(ge=0, lt=1)]
# Prices and amounts beyond any market's, so that the grid's decimal arithmetic stays exact.
Price = Annotated[Decimal, BeforeValidator(_decimal_input), Field(gt=0, le=10**12)]
Amount = Annotated[Decimal, BeforeValidator(_decimal_input), Field(gt=0, le=10**15)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExchangeSettings(_Section):
    # paper: Binance's public market data, fills on the simulated exchange
    kind: Literal["simulated", "binance", "paper"] = "simulated"
    testnet: bool = True
    allow_live: bool = False  # trading real money needs EXCHANGE__TESTNET=false AND this
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    rest_url: str | None = None  # REST root, e.g. https://testnet.binance.vision (adapter appends /api/v3)
    ws_url: str | None = None  # market streams
    ws_api_url: str | None = None  # WebSocket API (user data stream)
    recv_window_ms: int = Field(default=5000, ge=1, le=60000)

    @field_validator("rest_url", "ws_url", "ws_api_url")
    @classmethod
    def _url_shape(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return None
        schemes = ("http", "https") if info.field_name == "rest_url" else ("ws", "wss")
        return check_url(value, schemes)

    request_timeout_s: float = Field(default=10.0, gt=0)
    poll_interval_s: float = Field(default=2.0, gt=0)
    ws_silence_s: float = Field(
        default=30.0, ge=1, le=3600
    )  # a market stream with no data this long is replaced


class SimulatorSettings(_Section):
    seed: int = 7
    start_price: PositiveDec = Decimal("30000.00")
    volatility: Fraction = Decimal("0.002")  # relative standard deviation of one step
    reversion: Fraction = Decimal("0.005")  # pull back toward the start price per step
    step_seconds: PositiveDec = Decimal("60")  # market time one step stands for
    step_interval_s: float = Field(default=0.05, ge=0)  # wall time between steps (0: as fast as possible)
    candles_file: Path | None = None  # replay 1-minute candles instead of the synthetic path
    quote_balance: Dec = Field(default=Decimal("10000"), ge=0)
    base_balance: Dec = Field(default=Decimal("0"), ge=0)
    maker_fee: Fraction = Decimal("0.001")
    taker_fee: Fraction = Decimal("0.001")
    tick_size: PositiveDec = Decimal("0.01")
    step_size: PositiveDec = Decimal("0.00001")
    min_notional: Dec = Field(default=Decimal("5"), ge=0)
    max_num_orders: int = Field(default=200, ge=1)
    state_file: Path | None = Path("var/simulated-exchange.sqlite3")  # written at every change
    latency_s: float = Field(default=0.0, ge=0)  # fault injection: delay before every request
    reject_rate: Fraction = Decimal("0")  # fault injection: share of requests answered "unavailable"

    @field_validator("candles_file")
    @classmethod
    def _candles_exist(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"candle file {value} does not exist")
        return value


class DatabaseSettings(_Section):
    url: str = "sqlite+aiosqlite:///var/gridbot.sqlite3"


class TradingSettings(_Section):
    symbol: str = "BTC/USDT"
    maker_fee: Fraction = Decimal("0.001")  # the fee rate the grid plans with
    taker_fee: Fraction = Decimal("0.001")

    @field_validator("symbol")
    @classmethod
    def _symbol_shape(cls, value: str) -> str:
        base, sep, quote = value.partition("/")
        if not sep or not base.isalnum() or not quote.isalnum():
            raise ValueError(f"must look like BASE/QUOTE (e.g. BTC/USDT), got {value!r}")
        return value.upper()


class GridSettings(_Section):
    lower: Price = Decimal("28500")
    upper: Price = Decimal("31500")
    levels: int = Field(default=16, ge=2, le=200)
    spacing: Literal["arithmetic", "geometric"] = "arithmetic"
    investment: Amount = Decimal("1000")  # quote committed to the grid

    @field_validator("upper")
    @classmethod
    def _above_lower(cls, value: Decimal, info: Any) -> Decimal:
        lower = info.data.get("lower")
        if lower is not None and value <= lower:
            raise ValueError(f"must be above GRID__LOWER ({lower}), got {value}")
        return value


class RiskSettings(_Section):
    stop_loss: Price | None = None  # price at or under which the grid stops
    take_profit: Price | None = None  # price at or over which the grid stops
    sell_on_stop: bool = False  # sell the grid's base at market when it stops
    max_open_orders: int = Field(default=50, ge=1)
    volatility_window_s: float = Field(default=900.0, gt=0)
    volatile_range: Fraction = Decimal("0.03")
    panic_range: Fraction = Decimal("0.08")
    volatile_spread: Fraction = Decimal("0.002")
    panic_spread: Fraction = Decimal("0.01")


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["console", "json"] = "console"
    heartbeat_s: float = Field(default=300.0, ge=0)  # a line on how the grid stands, this often (0: none)

    @field_validator("level", "format", mode="before")
    @classmethod
    def _normalise(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):
            return value.upper() if info.field_name == "level" else value.lower()
        return value


class BacktestSettings(_Section):
    """The simulated account a backtest starts with (the engine's fees and market rules are the
    simulator's: SIMULATOR__MAKER_FEE, SIMULATOR__TICK_SIZE, ...)."""

    quote_balance: Dec | None = Field(default=None, ge=0)  # none: GRID__INVESTMENT
    base_balance: Dec = Field(default=Decimal("0"), ge=0)


class HealthSettings(_Section):
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=0, le=65535)  # none: no endpoint; 0: a free port, logged
    feed_down_after_s: float = Field(default=60.0, gt=0)  # no price for this long: "feed down"


def _secret_url(value: SecretStr | None) -> SecretStr | None:
    """A URL holding a secret: its shape checked, and never echoed in the message."""
    if value is None or not value.get_secret_value().strip():
        return None
    try:
        check_url(value.get_secret_value(), ("http", "https"))
    except ValueError as exc:
        raise ValueError(str(exc).rsplit(", got ", 1)[0]) from None
    return SecretStr(value.get_secret_value().strip())


class AlertSettings(_Section):
    """Setting a channel's URL (or the Telegram token and chat id) turns that channel on."""

    webhook_url: SecretStr | None = None  # generic: a JSON POST per alert
    telegram_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_url: str = "https://api.telegram.org"
    discord_webhook_url: SecretStr | None = None
    repeat_after_s: float = Field(default=600.0, ge=0)  # one alert of a kind at most this often
    max_per_minute: int = Field(default=20, ge=1)  # all alerts together

    @field_validator("webhook_url", "discord_webhook_url")
    @classmethod
    def _secret_url_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return _secret_url(value)

    @field_validator("telegram_api_url")
    @classmethod
    def _api_url_shape(cls, value: str) -> str:
        return check_url(value, ("http", "https"))

    @field_validator("telegram_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        token = value.get_secret_value().strip()
        if any(c.isspace() or c in "/?#" for c in token):
            raise ValueError("is not a Telegram bot token (it looks like 123456:ABC-DEF...)")
        return SecretStr(token)

    @field_validator("telegram_chat_id")
    @classmethod
    def _chat_id(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return value.strip()

    @property
    def any_channel(self) -> bool:
        return any(
            secret is not None for secret in (self.webhook_url, self.telegram_token, self.discord_webhook_url)
        )


class _FromProfile(BaseSettings):
    """Where settings come from, in rising precedence: the profile TOML, `.env`, the environment
    (`__` nests), and values given in code (a sweep's overrides)."""

    model_config = SettingsConfigDict(
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",  # unrelated environment variables are none of our business
        frozen=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, TomlConfigSettingsSource(settings_cls))


class Settings(_FromProfile):
    exchange: ExchangeSettings = ExchangeSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    database: DatabaseSettings = DatabaseSettings()
    trading: TradingSettings = TradingSettings()
    grid: GridSettings = GridSettings()
    risk: RiskSettings = RiskSettings()
    log: LogSettings = LogSettings()
    health: HealthSettings = HealthSettings()
    backtest: BacktestSettings = BacktestSettings()
    alerts: AlertSettings = AlertSettings()


def check_url(value: str, schemes: tuple[str, ...]) -> str:
    """A URL the adapters can use: one of `schemes`, a host, a port that is a number."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError when it is not a number in 0..65535
    except ValueError as exc:
        raise ValueError(f"is not a usable URL ({exc}), got {text!r}") from None
    example = f"{schemes[-1]}://host[:port][/path]"
    if parts.scheme.lower() not in schemes:
        raise ValueError(
            f"must start with {' or '.join(s + '://' for s in schemes)} ({example}), got {text!r}"
        )
    if not parts.hostname:
        raise ValueError(f"has no host ({example}), got {text!r}")
    if port == 0:
        raise ValueError(f"port 0 cannot be connected to, got {text!r}")
    return text


def key_name(loc: tuple[int | str, ...]) -> str:
    """('grid', 'levels') -> 'GRID__LEVELS', the name users set it by."""
    return "__".join(str(part).upper() for part in loc if not isinstance(part, int))


def _check_profile_keys(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError("BOT_CONFIG", f"profile file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError("BOT_CONFIG", f"profile file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigurationError(
            "BOT_CONFIG", f"profile file {path} cannot be read: {exc.strerror}"
        ) from None
    sections = Settings.model_fields
    for name, value in data.items():
        if name not in sections:
            raise ConfigurationError(name.upper(), f"unknown section [{name}] in {path}")
        if not isinstance(value, dict):
            raise ConfigurationError(name.upper(), f"must be a [{name}] table in {path}")


def _nested(overrides: Mapping[str, str]) -> dict[str, Any]:
    """{"GRID__LEVELS": "20"} -> {"grid": {"levels": "20"}}: keys as users set them."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.lower().split("__")
        if len(parts) != 2 or parts[0] not in Settings.model_fields:
            raise ConfigurationError(key.upper(), "is not a known setting (SECTION__NAME, e.g. GRID__LEVELS)")
        section = Settings.model_fields[parts[0]].annotation
        if not isinstance(section, type) or parts[1] not in getattr(section, "model_fields", {}):
            raise ConfigurationError(key.upper(), "is not a known setting")
        nested.setdefault(parts[0], {})[parts[1]] = value
    return nested


def load_settings(
    profile: Path, *, env_file: Path | None = Path(".env"), overrides: Mapping[str, str] | None = None
) -> Settings:
    """Read the profile, `.env` and the environment, in rising precedence, into validated settings.
    `overrides` (e.g. {"GRID__LEVELS": "20"}, a backtest sweep's) come before all of them."""
    _check_profile_keys(profile)
    init = _nested(overrides or {})

    class ProfileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=profile, env_file=env_file)

    try:
        settings: Settings = ProfileSettings(**init)
    except ValidationError as exc:
        raise _configuration_error(exc) from None
    check_consistency(settings)
    return settings


class _ReadExchange(BaseModel):
    """What reading the books needs of [exchange]: which account's grid lease to look up."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    kind: str = "simulated"
    testnet: bool = True
    api_key: SecretStr | None = None


class ReadSettings(_FromProfile):
    """The settings `status` and `runs` read: they read the database only, so nothing else (API
    keys, the grid, the venue's URLs) needs to be set or valid."""

    exchange: _ReadExchange = _ReadExchange()
    database: DatabaseSettings = DatabaseSettings()
    trading: TradingSettings = TradingSettings()
    log: LogSettings = LogSettings()


def load_read_settings(profile: Path, *, env_file: Path | None = Path(".env")) -> ReadSettings:
    """The profile, `.env` and the environment, as `load_settings` reads them, for the commands
    that only read the books (see `ReadSettings`)."""
    _check_profile_keys(profile)

    class ProfileReadSettings(ReadSettings):
        model_config = SettingsConfigDict(toml_file=profile, env_file=env_file)

    try:
        return ProfileReadSettings()
    except ValidationError as exc:
        raise _configuration_error(exc) from None


def _configuration_error(exc: ValidationError) -> ConfigurationError:
    """The first problem, named by the key users set (GRID__LEVELS), never echoing a secret."""
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    key = key_name(loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "is not a known setting"
    elif (
        not (set(map(str, loc)) & SECRET_FIELDS)
        and "input" in error
        and error["type"] not in {"missing", "value_error"}  # our own messages already say what they got
    ):
        shown = error["input"]
        if not isinstance(shown, dict):
            message = f"{message} (got {shown!r})"
    return ConfigurationError(key, message)


def _check_network(exchange: ExchangeSettings) -> None:
    """A URL of Binance's other network is refused: the testnet's with EXCHANGE__TESTNET=false
    (live keys would go to the testnet, or a live bot would watch the testnet's fills), Binance's
    own with EXCHANGE__TESTNET=true (testnet keys would go to the live exchange)."""
    for field in ("rest_url", "ws_url", "ws_api_url"):
        url = getattr(exchange, field)
        if url is None:
            continue
        host = (urlsplit(url).hostname or "").lower()
        on_testnet = host.endswith("testnet.binance.vision")
        on_live = host.endswith("binance.com") or host == "data-stream.binance.vision"
        if on_testnet and not exchange.testnet:
            raise ConfigurationError(
                f"EXCHANGE__{field.upper()}",
                f"{url} is the testnet's, but EXCHANGE__TESTNET=false; unset it to use Binance's own",
            )
        if on_live and exchange.testnet:
            raise ConfigurationError(
                f"EXCHANGE__{field.upper()}",
                f"{url} is Binance's live exchange, but EXCHANGE__TESTNET=true; unset it to use the testnet's",
            )


def check_consistency(settings: Settings) -> None:
    """Rules that span several keys."""
    exchange = settings.exchange
    if exchange.kind == "binance":
        for field in ("api_key", "api_secret"):
            secret = getattr(exchange, field)
            if secret is None or not secret.get_secret_value().strip():
                raise ConfigurationError(
                    f"EXCHANGE__{field.upper()}",
                    "is required when EXCHANGE__KIND=binance (set it in the environment or .env, not in a profile)",
                )
        if not exchange.testnet and not exchange.allow_live:
            raise ConfigurationError(
                "EXCHANGE__ALLOW_LIVE",
                "EXCHANGE__TESTNET=false trades real money; set EXCHANGE__ALLOW_LIVE=true to confirm",
            )
        _check_network(exchange)
    risk, grid = settings.risk, settings.grid
    if risk.stop_loss is not None and risk.stop_loss >= grid.lower:
        raise ConfigurationError(
            "RISK__STOP_LOSS", f"must be under GRID__LOWER ({grid.lower}), got {risk.stop_loss}"
        )
    if risk.take_profit is not None and risk.take_profit <= grid.upper:
        raise ConfigurationError(
            "RISK__TAKE_PROFIT", f"must be over GRID__UPPER ({grid.upper}), got {risk.take_profit}"
        )
    if grid.levels - 1 > risk.max_open_orders:
        raise ConfigurationError(
            "GRID__LEVELS",
            f"{grid.levels} levels keep {grid.levels - 1} orders open, over RISK__MAX_OPEN_ORDERS ({risk.max_open_orders})",
        )
    if settings.risk.panic_range <= settings.risk.volatile_range:
        raise ConfigurationError("RISK__PANIC_RANGE", "must be above RISK__VOLATILE_RANGE")
    alerts = settings.alerts
    if alerts.telegram_token is not None and alerts.telegram_chat_id is None:
        raise ConfigurationError(
            "ALERTS__TELEGRAM_CHAT_ID", "is required when ALERTS__TELEGRAM_TOKEN is set (the chat to send to)"
        )
    if alerts.telegram_chat_id is not None and alerts.telegram_token is None:
        raise ConfigurationError(
            "ALERTS__TELEGRAM_TOKEN", "is required when ALERTS__TELEGRAM_CHAT_ID is set (the bot that sends)"
        )


def simulated_rules(settings: Settings) -> MarketRules:
    """The market rules the simulated exchange (and a backtest) enforce, from SIMULATOR__*."""
    base, quote = settings.trading.symbol.split("/")
    sim = settings.simulator
    return MarketRules(
        symbol=settings.trading.symbol,
        base_asset=base,
        quote_asset=quote,
        tick_size=sim.tick_size,
        step_size=sim.step_size,
        min_qty=sim.step_size,
        min_notional=sim.min_notional,
        max_num_orders=sim.max_num_orders,
    )
