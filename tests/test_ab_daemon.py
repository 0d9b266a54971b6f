"""The A/B loop's sensors in a real Dagster daemon: with the router's request log closed on disk and
`ab.auto_promote: true`, no other action leads to event_log_sensor -> ab_events_job, ab_sensor
(new Delta versions, enough labelled requests) -> ab_analysis_job -> `promote`, and ab_sensor ->
promote_job -> staging is prod.

The daemon runs as a subprocess against a temporary DAGSTER_HOME and data root; the test waits
(bounded) for the registry to name the staging version prod, then stops the daemon.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from lake.experiments import ExperimentStore
from lake.paths import PROJECT_ROOT
from lake.registry import ModelRegistry
from tests.test_ab_loop import AB, concept_shift_lakehouse, play_latest_batch
from tests.test_drift_daemon import _stop

WAIT_SECONDS = 300


@pytest.mark.timeout(WAIT_SECONDS + 240)
def test_sensors_ingest_analyse_and_promote_in_the_daemon(tmp_path: Path) -> None:
    pipe, cfg_path, before = concept_shift_lakehouse(
        tmp_path, {"dagster": {"event_log_poll_seconds": 1}, "ab": {**AB, "sensor_poll_seconds": 1}})
    registry = ModelRegistry(pipe.lake, pipe.paths.artifacts)
    _, answered = play_latest_batch(pipe)
    home = pipe.paths.dagster_home
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "LAKEHOUSE_CONFIG": str(cfg_path),
           "LAKEHOUSE_DATA": str(pipe.paths.root),
           "PYCARET_CUSTOM_LOGGING_PATH": str(pipe.paths.logs / "pycaret.log")}
    log_path = tmp_path / "daemon.log"
    daemon = Path(sys.executable).with_name("dagster-daemon")
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(daemon), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")], cwd=PROJECT_ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while registry.aliases().get("prod") != before["staging"]:
            assert proc.poll() is None, f"the daemon exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"staging not promoted after {WAIT_SECONDS}s:\n" \
                                                f"{log_path.read_text()[-3000:]}"
            time.sleep(2)
    finally:
        _stop(proc)

    assert registry.aliases() == {"prod": before["staging"], "previous": 1, "fallback": before["fallback"]}
    experiment = ExperimentStore(pipe.lake).all().iloc[-1]
    assert experiment["status"] == "promoted" and experiment["decision"] == "promote"
    assert pipe.lake.table("ab_events").count() == answered
    os.environ["DAGSTER_HOME"], saved = str(home), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
    finally:
        if saved is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = saved
    by_job: dict[str, list] = {}
    for run in runs:
        by_job.setdefault(run.job_name, []).append(run)
    assert {r.tags["dagster/sensor_name"] for r in by_job["ab_events_job"]} == {"event_log_sensor"}
    assert {r.tags["dagster/sensor_name"] for r in by_job["ab_analysis_job"]} == {"ab_sensor"}
    [promotion] = by_job["promote_job"]
    assert promotion.tags["dagster/sensor_name"] == "ab_sensor"
    assert promotion.tags["dagster/run_key"] == f"{experiment['experiment_id']}:promote"
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
