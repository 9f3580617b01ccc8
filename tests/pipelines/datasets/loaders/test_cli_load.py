"""`recops data load`: a real run on MovieLens 100K, the generic command (its output passes `recops
validate`), and clean errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from core.errors import RecopsError
from core.privacy import is_pseudonymized
from core.settings import Settings
from pipelines.cli import app

RECOPS = Path(sys.executable).parent / "recops"


def test_movielens100k_daily_batches(raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "landing"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "load",
            "movielens100k",
            "--path",
            str(raw_dir / "movielens-100k"),
            "--out",
            str(out),
            "--limit-days",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    batches = sorted(p for p in out.iterdir() if p.is_dir())
    assert batches and batches[0].name == "1997-09-20"
    assert all(b.name < "1997-09-30" for b in batches)
    events = pd.concat(pd.read_parquet(b / "events.parquet") for b in batches)
    assert is_pseudonymized(events["user_id"])  # the CLI always pseudonymises
    assert f"{len(events):,} events" in result.output and f"{len(batches):,} batch(es)" in result.output


def test_single_batch_with_default_path(raw_dir: Path, tmp_path: Path) -> None:
    env = {"RECOPS_SHARED_DATA": str(raw_dir)}
    result = CliRunner().invoke(
        app, ["data", "load", "movielens100k", "--out", str(tmp_path), "--single-batch"], env=env
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["1998-04-22"]
    assert "100,000 events, 943 users, 1,682 items -> 1 batch(es)" in result.output


def test_generic_command(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("who,what,when,kind\nu1,i1,2024-05-01T10:00:00Z,0\nu2,i2,2024-05-02T10:00:00Z,1\n")
    result = CliRunner().invoke(
        app,
        [
            "data", "load", "generic", "--path", str(log), "--out", str(tmp_path / "out"),
            "--map", "user_id=who,item_id=what,ts=when,event_type=kind",
            "--event-type-map", "0=view,1=purchase",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["2024-05-01", "2024-05-02"]
    events = pd.read_parquet(tmp_path / "out" / "2024-05-02" / "events.parquet")
    assert events["event_type"].tolist() == ["purchase"]


def test_bad_file_gives_one_error_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes("who,what,when\nu1,caf\xe9,2024-05-01\n".encode("latin-1"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOPS_")}
    env.update(RECOPS_RUNTIME_DIR=str(tmp_path / "runtime"), NO_COLOR="1")
    proc = subprocess.run(
        [
            str(RECOPS),
            "data",
            "load",
            "generic",
            "--path",
            str(bad),
            "--map",
            "user_id=who,item_id=what,ts=when",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "bad.csv" in proc.stderr and "UTF-8" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runtime" / "landing" / "generic").exists()


def test_new_user_semicolon_csv_with_na_shoppers_passes_validate(
    tmp_path: Path, recops_settings: Settings
) -> None:
    """Done-when of issue 9: a `;`-separated export with `NA` for anonymous shoppers, dates without times
    and same-day repeats loads with defaults into batches that all pass `recops validate`."""
    log = tmp_path / "orders.csv"
    log.write_text(
        "Customer;Product;Date;Order\n"
        "17;A-1;2024-05-01;o1\n"
        "17;A-1;2024-05-01;o1\n"  # bought twice that day: one event, quantity 2
        "NA;-5;2024-05-01;o2\n"  # an anonymous shopper buying item "-5" (a plain number, not a formula)
        "NA;B;2024-05-01;o2\n"
        "23;B;2024-05-02;o3\n"
        "NA;A-1;2024-05-02;o4\n"
        "null;C;2024-05-02;\n"  # anonymous and no order: cannot be tied to anyone, dropped
    )
    out = tmp_path / "landing"
    runner = CliRunner()
    loaded = runner.invoke(
        app,
        [
            "data", "load", "generic", "--path", str(log), "--out", str(out),
            "--map", "user_id=Customer,item_id=Product,ts=Date,session_id=Order",
        ],
    )  # fmt: skip
    assert loaded.exit_code == 0, loaded.output
    assert "generic: 5 events" in loaded.output
    assert "anonymous rows (no user id): 4; 3 given a user per session (anonymous-session), 1 dropped" in (
        loaded.output
    )
    assert "1 row(s) repeating (user, item, type, time) at day resolution merged" in loaded.output
    batches = sorted(p for p in out.iterdir() if p.is_dir())
    assert [b.name for b in batches] == ["2024-05-01", "2024-05-02"]
    events = pd.concat(pd.read_parquet(b / "events.parquet") for b in batches)
    assert "NA" not in set(events["user_id"]) and is_pseudonymized(events["user_id"])
    for batch in batches:
        checked = runner.invoke(app, ["validate", str(batch)])
        assert checked.exit_code == 0, checked.output
        assert f"batch {batch.name} passed" in checked.output
    assert not recops_settings.quarantine_dir.exists()


def test_generic_command_refuses_unknown_policies(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("u,i,t\nu1,i1,2024-05-01\n")
    args = ["data", "load", "generic", "--path", str(log), "--map", "user_id=u,item_id=i,ts=t"]
    result = CliRunner().invoke(app, [*args, "--anonymous", "guess"])
    assert isinstance(result.exception, RecopsError) and "--anonymous 'guess'" in str(result.exception)
    result = CliRunner().invoke(app, [*args, "--repeats", "merge"])
    assert isinstance(result.exception, RecopsError) and "--repeats 'merge'" in str(result.exception)
