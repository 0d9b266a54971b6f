"""The whole drift loop in a real Dagster daemon: a drifted batch file dropped into the inbox leads,
with no other action, to ingest_job -> drift -> drift_sensor -> retrain_job -> a new `staging`.

The daemon runs as a subprocess against a temporary DAGSTER_HOME and data root; the test waits
(bounded) for the registry to name a staging version, then stops the daemon.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lake.registry import ModelRegistry
from lake.tables import DRIFT, DRIFT_BATCH_ROW
from tests.assets.drift.test_drift import drift_pipeline
from tests.support.daemon import daemon_runs, run_daemon_until

pytestmark = pytest.mark.slow  # a real dagster-daemon

WAIT_SECONDS = 420


@pytest.mark.timeout(WAIT_SECONDS + 180)
def test_drifted_batch_in_the_inbox_becomes_a_staging_model_in_the_daemon(tmp_path: Path) -> None:
    pipe = drift_pipeline(tmp_path, {"dagster": {"inbox_poll_seconds": 1}, "drift": {"sensor_poll_seconds": 1}})
    registry = ModelRegistry(pipe.lake, pipe.paths.artifacts)
    assert registry.aliases() == {"prod": 1, "fallback": 2}

    def drop_the_shifted_batch() -> None:
        batch = pipe.emulator.emit_next()  # it lands in the inbox, as from upstream
        assert batch is not None and batch.batch_id == "batch_00004"

    run_daemon_until(pipe, lambda: "staging" in registry.aliases(), "a staging model", WAIT_SECONDS,
                     before=drop_the_shifted_batch)

    aliases = registry.aliases()
    assert aliases["prod"] == 1 and aliases["staging"] > 2
    verdict = pipe.lake.read(DRIFT, where=f"feature = '{DRIFT_BATCH_ROW}'").set_index("batch_id")
    assert bool(verdict.loc["batch_00004", "retrain_requested"])
    runs = {name: found[-1] for name, found in daemon_runs(pipe).items()}  # the first run of each job
    assert runs["ingest_job"].tags["dagster/partition"] == "batch_00004"
    retrain = runs["retrain_job"]
    assert retrain.tags["lakehouse/trigger"] == "drift_sensor"
    assert retrain.tags["lakehouse/drift_batch"] == "batch_00004"
    assert retrain.tags["dagster/sensor_name"] == "drift_sensor"
    assert registry.get(aliases["staging"])["run_id"] == retrain.run_id
