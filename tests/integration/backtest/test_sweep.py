"""`backtest --sweep`: every combination in real worker processes (and on a local Dask cluster),
sorted by return, each row the same as a single `backtest --json` run with those settings."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bootstrap import sweep
from bootstrap.cli import main
from bootstrap.settings import load_settings

DATA = Path(__file__).resolve().parents[2] / "data" / "BTCUSDT-1m.json"
PERIOD = [
    "--data",
    str(DATA),
    "--from",
    "2017-11-05",
    "--to",
    "2017-11-06",
]  # 2,610 candles, 23,450 .. 29,228

PROFILE = """\
[exchange]
kind = "simulated"

[grid]
lower = "22000"
upper = "32000"
levels = 10
spacing = "arithmetic"
investment = "10000"
"""


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    path = tmp_path / "profile.toml"
    path.write_text(PROFILE)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sweep_json(capsys: pytest.CaptureFixture[str], profile: Path, *specs: str) -> list[dict[str, Any]]:
    argv = ["--config", str(profile), "backtest", *PERIOD, "--json", "--workers", "2"]
    for spec in specs:
        argv += ["--sweep", spec]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def test_every_combination_sorted_by_return_each_row_equal_to_a_single_run(
    capsys: pytest.CaptureFixture[str], profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = sweep_json(capsys, profile, "GRID__LEVELS=6,12,25", "GRID__SPACING=arithmetic,geometric")

    assert len(rows) == 6
    assert {(r["settings"]["GRID__LEVELS"], r["settings"]["GRID__SPACING"]) for r in rows} == {
        (levels, spacing) for levels in ("6", "12", "25") for spacing in ("arithmetic", "geometric")
    }
    returns = [Decimal(r["return_pct"]) for r in rows]
    assert returns == sorted(returns, reverse=True)
    assert len(set(returns)) > 1  # the settings make a difference: the sort is not vacuous
    for row in rows:
        for key, value in row["settings"].items():
            monkeypatch.setenv(key, value)
        code, out, err = run(capsys, "--config", str(profile), "backtest", *PERIOD, "--json")
        assert code == 0, err
        single = json.loads(out)
        assert {k: v for k, v in row.items() if k != "settings"} == single
        assert single["levels"] == int(row["settings"]["GRID__LEVELS"])


def test_the_table_names_the_swept_keys_and_lists_the_best_return_first(
    capsys: pytest.CaptureFixture[str], profile: Path
) -> None:
    code, out, err = run(
        capsys,
        "--config",
        str(profile),
        "backtest",
        *PERIOD,
        "--sweep",
        "grid__levels=6,25",
        "--workers",
        "2",
    )

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "GRID__LEVELS",
        "return",
        "%",
        "holding",
        "%",
        "realized",
        "PnL",
        "grid",
        "fills",
        "cycles",
        "max",
        "drawdown",
        "%",
    ]
    body = [line.split() for line in lines[1:3]]
    assert sorted(row[0] for row in body) == ["25", "6"]
    assert Decimal(body[0][1]) >= Decimal(body[1][1])
    assert lines[3].startswith("2 backtests in ") and lines[3].endswith("on 2 local processes")
    assert err == ""  # no progress bar: stderr is not a terminal


def test_a_job_whose_settings_fail_shows_its_error_and_the_others_still_run(
    capsys: pytest.CaptureFixture[str], profile: Path
) -> None:
    # 24,000 puts the start price (23,450.10) outside the grid; 1 level is no grid at all.
    rows = sweep_json(capsys, profile, "GRID__LOWER=22000,24000", "GRID__LEVELS=1,8")

    ran = [r for r in rows if "error" not in r]
    failed = [r for r in rows if "error" in r]
    assert [r["settings"] for r in ran] == [{"GRID__LOWER": "22000", "GRID__LEVELS": "8"}]
    assert ran[0]["grid_fills"] > 0
    assert rows[0] is ran[0]  # failures come last
    errors = {(r["settings"]["GRID__LOWER"], r["settings"]["GRID__LEVELS"]): r["error"] for r in failed}
    assert set(errors) == {("22000", "1"), ("24000", "1"), ("24000", "8")}
    assert errors["22000", "1"].startswith("GRID__LEVELS: ")
    assert errors["24000", "8"].startswith("GRID__LOWER: ") and "outside the grid" in errors["24000", "8"]

    code, out, _ = run(
        capsys,
        "--config",
        str(profile),
        "backtest",
        *PERIOD,
        "--sweep",
        "GRID__LOWER=22000,24000",
        "--workers",
        "2",
    )
    assert code == 0
    assert "error: GRID__LOWER: " in out.splitlines()[2]
    assert "(1 failed)" in out.splitlines()[3]


def test_a_sweep_where_every_job_fails_the_same_way_is_one_error_line(
    capsys: pytest.CaptureFixture[str], profile: Path
) -> None:
    code, out, err = run(
        capsys, "--config", str(profile), "backtest", *PERIOD, "--sweep", "GRID__LEVELS=1", "--workers", "1"
    )
    assert (code, out) == (2, "")
    assert err.startswith("error: GRID__LEVELS: ") and err.endswith("(in every job of the sweep)\n")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sweep", "GRID__LEVELS"], "error: --sweep: expected KEY=V1,V2"),
        (["--sweep", "=10,20"], "error: --sweep: expected KEY=V1,V2"),
        (["--sweep", "GRID__LEVELS=10,,20"], "error: --sweep: GRID__LEVELS: empty value"),
        (["--sweep", "GRID__LEVELS="], "error: --sweep: GRID__LEVELS: empty value"),
        (["--sweep", "GRID__LEVELS=10,10"], "error: --sweep: GRID__LEVELS: a value is given twice"),
        (
            ["--sweep", "GRID__LEVELS=10", "--sweep", "grid__levels=20"],
            "error: --sweep: GRID__LEVELS is swept twice",
        ),
        (["--sweep", "GRID__LEVLES=10,20"], "error: GRID__LEVLES: is not a known setting"),
        (["--sweep", "LEVELS=10,20"], "error: LEVELS: is not a known setting"),
        (["--sweep", "GRID__LEVELS=10", "--plot", "x.png"], "error: --plot: applies to a single backtest"),
        (["--sweep", "GRID__LEVELS=10", "--db", "sqlite:///x"], "error: --db: applies to a single backtest"),
        (["--sweep", "GRID__LEVELS=10", "--plain"], "error: --plain: applies to a single backtest"),
        (
            ["--sweep", "GRID__LEVELS=10", "--from", "2017-11-06", "--to", "2017-11-05"],
            "error: --to: must be after",
        ),
        (["--sweep", "GRID__LEVELS=10", "--from", "yesterday"], "error: --from: expected a date"),
        (
            ["--sweep", "GRID__LEVELS=10", "--data", "no-such-file.csv"],
            "error: no-such-file.csv: file not found",
        ),
        (
            ["--sweep", "GRID__LEVELS=10", "--cluster", "foo://bar"],
            "error: --cluster: 'foo://bar': unknown address",
        ),
    ],
)
def test_a_bad_sweep_is_refused_with_one_line_before_any_job_runs(
    capsys: pytest.CaptureFixture[str], profile: Path, extra: list[str], message: str
) -> None:
    code, out, err = run(capsys, "--config", str(profile), "backtest", *extra)
    assert (code, out) == (2, "")
    assert err.startswith(message), err
    assert err.count("\n") == 1


def test_an_unreachable_cluster_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(sweep, "_CONNECT_TIMEOUT_S", 1)
    code, out, err = run(
        capsys,
        "--config",
        str(profile),
        "backtest",
        "--sweep",
        "GRID__LEVELS=10,20",
        "--cluster",
        f"tcp://127.0.0.1:{port}",
    )
    assert (code, out) == (1, "")
    assert err.startswith(f"error: --cluster: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: ")
    assert err.count("\n") == 1


def test_a_local_dask_cluster_gives_the_same_results_as_local_processes(
    capsys: pytest.CaptureFixture[str], profile: Path
) -> None:
    distributed = pytest.importorskip("distributed")
    specs = ["GRID__LEVELS=6,25", "GRID__LOWER=22000,23000"]
    local = sweep_json(capsys, profile, *specs)

    argv = ["--config", str(profile), "backtest", *PERIOD]
    for spec in specs:
        argv += ["--sweep", spec]
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        code, out, err = run(capsys, *argv, "--json", "--cluster", cluster.scheduler_address)
        code_text, out_text, _ = run(capsys, *argv, "--cluster", cluster.scheduler_address)

    assert code == 0, err
    assert json.loads(out) == local
    assert code_text == 0
    assert out_text.splitlines()[-1].endswith(
        f"on the Dask cluster at {cluster.scheduler_address} (1 worker)"
    )


def test_a_worker_loads_the_candles_once_and_again_when_the_file_changes(
    profile: Path, tmp_path: Path
) -> None:
    data = tmp_path / "candles.json"
    data.write_text(DATA.read_text())
    settings = load_settings(profile)
    sweep._columns_cache.clear()
    try:
        first = sweep.cached_columns(settings, str(data), None, None)
        assert sweep.cached_columns(settings, str(data), None, None) is first
        assert (
            sweep.cached_columns(settings, str(data), 1_509_840_000_000, None) is not first
        )  # another period

        rows = json.loads(DATA.read_text())[:100]
        data.write_text(json.dumps(rows))
        changed = sweep.cached_columns(settings, str(data), None, None)
        assert len(changed) == 100 != len(first)
        assert len(sweep._columns_cache) == 2  # bounded: a Dask worker lives on after a sweep
    finally:
        sweep._columns_cache.clear()
