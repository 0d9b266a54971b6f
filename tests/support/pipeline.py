"""A user's instance in a test: a config, a data root, a Dagster instance and the ingest job."""

import shutil
from pathlib import Path

import dagster as dg

from assets.jobs import INGEST_JOB
from config import load_config
from definitions import build_definitions
from lake.batch_files import BatchFiles
from lake.open import open_batch_files, open_lake
from lake.paths import data_paths
from stream.emulator import StreamEmulator
from tests.conftest import write_config

# training settings small enough for a test: three quick families, two folds, a short tuning
FAST = {"models": ["lr", "dt", "knn"], "folds": 2, "budget_time_minutes": 0.5, "tune_iterations": 2,
        "holdout_min_rows": 200}


class Pipeline:
    """A config, a data root, a Dagster instance and the job, as a user's instance would have them."""

    def __init__(self, tmp_path: Path, override: dict | None = None, config_path: Path | None = None) -> None:
        self.config_path = config_path or write_config(tmp_path / "cfg", override)
        self.cfg = load_config(self.config_path)
        self.paths = data_paths(tmp_path / "data").ensure()
        self.lake = open_lake(self.cfg, self.paths)
        self.defs = build_definitions(str(self.config_path), str(self.paths.root))
        self.job = self.defs.resolve_job_def(INGEST_JOB)
        self.instance = dg.DagsterInstance.ephemeral()
        self.emulator = StreamEmulator(self.cfg, self.paths)

    def run(self, batch_id: str) -> dg.ExecuteInProcessResult:
        self.instance.add_dynamic_partitions("batches", [batch_id])
        return self.job.execute_in_process(partition_key=batch_id, instance=self.instance, raise_on_error=False)

    def emit_and_run(self) -> dg.ExecuteInProcessResult:
        batch = self.emulator.emit_next()
        assert batch is not None
        return self.run(batch.batch_id)

    def batch_files(self) -> BatchFiles:
        """The instance's inbox, archive and quarantine (on the storage root when configured)."""
        return open_batch_files(self.cfg, self.paths)

    def count(self, table: str) -> int:
        return self.lake.table(table).count()

    def copy_to(self, tmp_path: Path) -> "Pipeline":
        """The same instance under ``tmp_path``: the config folder and the data root copied (the data
        root holds all state: lake, inbox, archive, quarantine, stream position), a new Dagster
        instance. Far cheaper than ingesting the same batches again; the copy shares nothing with
        this one. The ingest job reads no run history, so an empty instance runs it as before."""
        assert not self.cfg.storage.lake_uri, "a lake outside the data root does not move with it"
        config_dir = tmp_path / "cfg"
        shutil.copytree(self.config_path.parent, config_dir)
        shutil.copytree(self.paths.root, tmp_path / "data")
        return Pipeline(tmp_path, config_path=config_dir / self.config_path.name)
