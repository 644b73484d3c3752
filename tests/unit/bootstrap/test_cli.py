"""The command line as a user types it: --version, and --config before or after the command."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from bootstrap.cli import main


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"python -m bootstrap {version('gridbot')}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "{profile}", "status", "--json"],
        ["status", "--config", "{profile}", "--json"],
    ],
)
def test_config_is_read_before_or_after_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("BOT_CONFIG", "DATABASE__URL"):
        monkeypatch.delenv(name, raising=False)
    profile = tmp_path / "mine.toml"
    profile.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/mine.sqlite3"\n')
    assert main([arg.format(profile=profile) for arg in argv]) == 0
    assert '"run": null' in capsys.readouterr().out
    assert (tmp_path / "mine.sqlite3").is_file()  # the profile's database, not the default one
    assert not (tmp_path / "var").exists()


def test_a_missing_profile_after_the_command_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["status", "--config", "nope.toml"]) == 2
    assert capsys.readouterr().err == "error: BOT_CONFIG: profile file nope.toml does not exist\n"
