"""The code location's wiring that no single asset test sees."""

from __future__ import annotations

from pathlib import Path

from definitions import build_definitions
from tests.conftest import write_config


def test_every_job_runs_its_steps_in_the_run_process(tmp_path: Path) -> None:
    # a process per step would import the code location again for every step (about 12 s each
    # on 2 cores) where the steps themselves take under a second
    defs = build_definitions(str(write_config(tmp_path / "cfg")), str(tmp_path / "data"))
    jobs = {job.name: job.executor_def.name for job in defs.get_repository_def().get_all_jobs()
            if not job.name.startswith("__")}
    assert jobs == {name: "in_process" for name in ("ingest_job", "retrain_job", "drift_job", "ab_events_job",
                                                    "ab_analysis_job", "promote_job")}
