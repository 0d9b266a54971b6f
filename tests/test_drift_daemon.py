"""The whole drift loop in a real Dagster daemon: a drifted batch file dropped into the inbox leads,
with no other action, to ingest_job -> drift -> drift_sensor -> retrain_job -> a new `staging`.

The daemon runs as a subprocess against a temporary DAGSTER_HOME and data root; the test waits
(bounded) for the registry to name a staging version, then stops the daemon.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from lake.paths import PROJECT_ROOT
from lake.registry import ModelRegistry
from lake.tables import DRIFT, DRIFT_BATCH_ROW
from tests.test_drift import drift_pipeline

WAIT_SECONDS = 420


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the daemon and the runs it launched
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.mark.timeout(WAIT_SECONDS + 180)
def test_drifted_batch_in_the_inbox_becomes_a_staging_model_in_the_daemon(tmp_path: Path) -> None:
    pipe = drift_pipeline(tmp_path, {"dagster": {"inbox_poll_seconds": 1}, "drift": {"sensor_poll_seconds": 1}})
    registry = ModelRegistry(pipe.lake, pipe.paths.artifacts)
    assert registry.aliases() == {"prod": 1, "fallback": 2}
    home = pipe.paths.dagster_home
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "LAKEHOUSE_CONFIG": str(pipe.config_path),
           "LAKEHOUSE_DATA": str(pipe.paths.root),
           "PYCARET_CUSTOM_LOGGING_PATH": str(pipe.paths.logs / "pycaret.log")}
    log_path = tmp_path / "daemon.log"
    daemon = Path(sys.executable).with_name("dagster-daemon")
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(daemon), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")], cwd=PROJECT_ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        batch = pipe.emulator.emit_next()  # the shifted batch lands in the inbox, as from upstream
        assert batch is not None and batch.batch_id == "batch_00004"
        deadline = time.monotonic() + WAIT_SECONDS
        while "staging" not in registry.aliases():
            assert proc.poll() is None, f"the daemon exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no staging model after {WAIT_SECONDS}s:\n" \
                                                f"{log_path.read_text()[-3000:]}"
            time.sleep(2)
    finally:
        _stop(proc)

    aliases = registry.aliases()
    assert aliases["prod"] == 1 and aliases["staging"] > 2
    verdict = pipe.lake.read(DRIFT, where=f"feature = '{DRIFT_BATCH_ROW}'").set_index("batch_id")
    assert bool(verdict.loc["batch_00004", "retrain_requested"])
    os.environ["DAGSTER_HOME"], saved = str(home), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            runs = {r.job_name: r for r in instance.get_runs()}
    finally:
        if saved is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = saved
    assert runs["ingest_job"].tags["dagster/partition"] == "batch_00004"
    retrain = runs["retrain_job"]
    assert retrain.tags["lakehouse/trigger"] == "drift_sensor"
    assert retrain.tags["lakehouse/drift_batch"] == "batch_00004"
    assert retrain.tags["dagster/sensor_name"] == "drift_sensor"
    assert registry.get(aliases["staging"])["run_id"] == retrain.run_id
