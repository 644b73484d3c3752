"""A JSON file that keeps the simulated exchange's state between runs of the mock profile, so a
restarted bot finds its resting orders, balances and trades where it left them."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class JsonStateStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when nothing was saved yet. A corrupt file raises ValueError
        naming it: silently starting afresh would lose track of orders the user holds."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self.path}: cannot read the simulated exchange state: {exc}") from None
        try:
            state = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{self.path}: the simulated exchange state is corrupt ({exc.msg} at line {exc.lineno}); "
                "move the file away to start afresh"
            ) from None
        if not isinstance(state, dict):
            raise ValueError(f"{self.path}: the simulated exchange state is corrupt (expected a JSON object)")
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        """Write atomically: a crash leaves either the old file or the new one, never half of one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(state, indent=1, sort_keys=True)
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
