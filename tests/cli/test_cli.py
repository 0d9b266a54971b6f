"""`python run.py -mode update`: the course interface, end to end through Dagster in process."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lake.delta import Lake
from lake.paths import PROJECT_ROOT
from lake.tables import FEATURES, RAW
from tests.conftest import write_config

pytestmark = pytest.mark.slow  # run.py end to end in subprocesses

ROOT = PROJECT_ROOT


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], check=False, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_update_emits_and_ingests_the_next_batch_each_time(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "cfg")
    data = tmp_path / "data"
    first = _run("-mode", "update", "--config", str(cfg), "--data", str(data))
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.strip().splitlines()[-1] == "True"
    lake = Lake(str(data / "lake"))
    assert lake.table(RAW).count() == 300
    # a malformed file dropped by an upstream: the update still ingests the next batch, then reports it
    (data / "inbox" / "batch_00000.csv").write_bytes(b"\xff\xfe garbage")
    second = _run("-mode", "update", "-config", str(cfg), "-data", str(data))
    assert second.returncode == 1
    assert second.stdout.strip().splitlines()[-1] == "False"
    failure = [line for line in second.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failure) == 1, second.stderr[-3000:]
    assert failure[0].startswith("failed: batch_00000: raw: ")
    assert "batch batch_00000 quarantined (encoding): batch_00000.csv is not valid utf-8" in failure[0]
    assert (data / "quarantine" / "batch_00000.csv.reason.json").exists()
    assert sorted(lake.read(FEATURES)["_batch_id"].unique()) == ["batch_00001", "batch_00002"]
    assert (data / "dagster_home" / "dagster.yaml").exists()  # runs are in the instance the UI shows


def test_bad_config_prints_false_and_the_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "cfg")
    data = yaml.safe_load(cfg.read_text())
    data["stream"]["batch_by"] = "weeks"
    cfg.write_text(yaml.safe_dump(data))
    result = _run("-mode", "update", "--config", str(cfg), "--data", str(tmp_path / "data"))
    assert result.returncode == 1 and result.stdout.strip() == "False"
    assert "stream.batch_by: Input should be 'rows' or 'time'" in result.stderr


def test_manual_promote_and_rollback_need_a_reason_and_say_what_is_missing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "cfg")
    data = tmp_path / "data"
    no_reason = _run("-mode", "promote", "--config", str(cfg), "--data", str(data))
    assert no_reason.returncode == 1 and "needs --reason" in no_reason.stderr
    nothing = _run("-mode", "rollback", "--reason", "smoke test", "--config", str(cfg), "--data", str(data))
    assert nothing.returncode == 1 and "nothing to roll back: no running experiment" in nothing.stderr
    analysed = _run("-mode", "analyse", "--config", str(cfg), "--data", str(data))
    assert analysed.returncode == 0 and analysed.stdout.startswith("none: no running experiment")
