"""`run.py -mode demo` end to end on a dataset whose batches are far smaller than the 24,000 rows
the demo once hard-coded (issue 11, observation 1): every stage runs and the exit code is 0."""

import subprocess
import sys
from pathlib import Path

import pytest

from lake.paths import PROJECT_ROOT
from router.server import free_port
from tests.conftest import make_source, write_config
from tests.support.pipeline import FAST

pytestmark = pytest.mark.slow  # trains models and runs the router under gunicorn


def test_demo_on_small_batches_plays_what_the_data_holds_and_exits_0(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "cfg", {"stream": {"batch_rows": 250}, "training": FAST,
                                          "router": {"port": free_port(), "workers": 1}},
                       source=make_source(1500))
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "run.py"), "-mode", "demo", "--config", str(cfg),
                             "--data", str(tmp_path / "data"), "--initial-batches", "3"],
                            check=False, capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    for stage in range(8):
        assert f"[{stage}/7]" in out, out[-3000:]
    drawn = next(line for line in out.splitlines() if "users drawn from the latest" in line)
    # 6 batches of 250 rows: the pool is smaller than the test's need, and the demo says so
    assert "FEWER than the" in drawn and "the data holds no more" in drawn, drawn
    users = int(drawn.split()[0].replace(",", ""))
    assert 0 < users <= 1500
    assert f"{users}/{users} answered" in out  # every drawn user (all have a time) was answered
    decision = next(line for line in out.splitlines() if line.strip().startswith("decision: "))
    assert decision.split()[1].rstrip(":") in {"PROMOTE", "ROLLBACK", "CONTINUE", "NONE"}, decision
    assert "fallback vs candidate:" in out  # the fallback's comparison is on the console too
