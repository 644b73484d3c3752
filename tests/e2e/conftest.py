"""End-to-end: the bot as a user runs it, `python -m bootstrap ...` in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class Cli:
    workdir: Path
    env: dict[str, str]

    def run(
        self, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bootstrap", *args],
            cwd=self.workdir,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def status(self, *args: str) -> dict[str, Any]:
        done = self.run("status", "--json", *args)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A fresh working directory holding the shipped profiles, as after a clone."""
    shutil.copytree(PROJECT / "config", tmp_path / "config")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "EXCHANGE__",
                "GRID__",
                "DATABASE__",
                "LOG__",
                "RISK__",
                "SIMULATOR__",
                "TRADING__",
                "BOT_CONFIG",
            )
        )
    }
    env["LOG__FORMAT"] = "json"
    return Cli(tmp_path, env)
