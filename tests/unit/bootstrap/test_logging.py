"""Log lines never carry a secret, whatever way it sneaks in."""

from __future__ import annotations

import io
import json

import structlog

from adapters.logging import configure_logging


def test_secrets_are_redacted_by_key_value_and_inside_text() -> None:
    out = io.StringIO()
    configure_logging(level="INFO", fmt="json", secrets=["s3cr3t-api-secret", "my-api-key-123"], stream=out)
    logger = structlog.get_logger("test")
    logger.info("request", api_key="my-api-key-123", url="https://x/api/v3/order?a=1&signature=deadbeef01")
    logger.info(
        "failed with my-api-key-123 and s3cr3t-api-secret", nested={"secret": "xyz", "ok": "my-api-key-123"}
    )
    try:
        raise RuntimeError("auth failed for s3cr3t-api-secret")
    except RuntimeError:
        logger.exception("boom")
    text = out.getvalue()
    assert "my-api-key-123" not in text
    assert "s3cr3t-api-secret" not in text
    assert "deadbeef01" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["api_key"] == "***"
    assert lines[1]["nested"] == {"secret": "***", "ok": "***"}
    assert "auth failed for ***" in lines[2]["exception"]


def test_level_filters_and_console_format() -> None:
    out = io.StringIO()
    configure_logging(level="WARNING", fmt="console", stream=out)
    logger = structlog.get_logger("test")
    logger.info("quiet")
    logger.warning("loud", price="30000.00")
    text = out.getvalue()
    assert "quiet" not in text
    assert "loud" in text
    assert "price=30000.00" in text
