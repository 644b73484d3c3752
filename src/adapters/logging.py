"""structlog set-up: console lines on a terminal, JSON lines on request, secrets redacted everywhere.

Logs go to stderr so that a command's own output on stdout (e.g. `status --json`) stays clean.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"(secret|api_?key|apikey|password|passphrase|signature|token|listen_?key)", re.IGNORECASE
)
_SIGNATURE_IN_URL = re.compile(r"(signature=)[0-9a-fA-F]+")


class SecretRedactor:
    """A structlog processor: blanks values under secret-looking keys and any known secret value
    wherever it appears (messages, nested dicts, exception text)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return _SIGNATURE_IN_URL.sub(r"\1" + REDACTED, value)
        if isinstance(value, dict):
            return {k: REDACTED if _SECRET_KEY.search(str(k)) else self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._scrub(v) for v in value)
        return value

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if _SECRET_KEY.search(key):
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self._scrub(event_dict[key])
        return event_dict


def configure_logging(
    *, level: str = "INFO", fmt: str = "console", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    out = stream or sys.stderr
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            SecretRedactor(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (ccxt, websockets, sqlalchemy) stay quiet
    # unless they have something to warn about.
    logging.basicConfig(level=logging.WARNING, stream=out, format="%(levelname)s %(name)s: %(message)s")
