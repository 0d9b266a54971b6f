"""One in-process runner for the code location's jobs, in the Dagster instance the UI shows.

The command line runs the same jobs the sensors launch, with the same definitions
(:func:`definitions.build_definitions` for the exported configuration and data root), built once
per process however many runs a mode makes. Every run answers with a :class:`JobRun`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from config.loader import CONFIG_ENV
from lake.paths import DataPaths

log = logging.getLogger("run")  # the console's lines keep the name they had before the cli package
TRIGGER_TAGS = {"lakehouse/trigger": "run.py"}  # tells the UI's run list which runs the command line made


@dataclass(frozen=True)
class BatchResult:
    """One piece of a mode's work as the console reports it: a batch ingested, a job run."""

    batch_id: str
    success: bool
    failure: str = ""


@dataclass(frozen=True)
class JobRun:
    """What one in-process run left: its job, whether it succeeded, the failing steps' errors and
    the Dagster result (for the metadata of what it materialized)."""

    job: str
    success: bool
    failure: str
    result: Any  # dagster.ExecuteInProcessResult

    def materializations(self, node: str) -> list[dict[str, Any]]:
        """The metadata of each materialization of ``node``, values unwrapped."""
        return [{k: getattr(v, "value", v) for k, v in m.metadata.items()}
                for m in self.result.asset_materializations_for_node(node)]

    def metadata(self, node: str) -> dict[str, Any]:
        """The metadata of all materializations of ``node``, merged (later ones win)."""
        return {k: v for m in self.materializations(node) for k, v in m.items()}

    def as_result(self, label: str) -> BatchResult:
        return BatchResult(label, self.success, self.failure)


def failure_text(result: Any) -> str:
    """``step: Error: message`` for each failed step of a Dagster result, joined by ``; ``."""
    parts = []
    for event in result.all_events:
        if event.is_step_failure:
            err = event.step_failure_data.error
            while err is not None and err.cause is not None and "DagsterExecutionStepExecutionError" in err.cls_name:
                err = err.cause  # the user code's own error, not Dagster's wrapper
            # Dagster's error message already starts with the class name ("LookupError: ...")
            message = err.message.strip() if err else "failed"
            if err and not message.startswith(err.cls_name or ""):
                message = f"{err.cls_name}: {message}"
            parts.append(f"{event.step_key}: {message}")
    return "; ".join(parts) or "run failed before any step"


@cache
def _definitions(config_path: str | None, data_root: str) -> Any:
    """The code location for one configuration and data root; cached: building it resolves every
    asset, check and sensor, and a mode such as the demo runs a few dozen jobs."""
    from definitions import build_definitions

    return build_definitions(config_path, data_root)


class JobRunner:
    """Runs jobs by name for the exported configuration and ``paths``' data root."""

    def __init__(self, paths: DataPaths) -> None:
        self.paths = paths

    def job(self, name: str) -> Any:
        """The job definition (building the definitions on first use)."""
        return _definitions(os.environ.get(CONFIG_ENV), str(self.paths.root)).resolve_job_def(name)

    def ingest_tags(self, source_file: str, size: int) -> dict[str, str]:
        """The tags of an ingest run of batch file ``source_file``, as the inbox sensor gives them
        (its size and timeout)."""
        import dagster as dg

        from assets.run_health import ingest_run_tags
        from config import load_config

        ingest = load_config().ingest
        with dg.DagsterInstance.get() as instance:
            return ingest_run_tags(instance, source_file, size, ingest.runtime_margin, ingest.max_runtime_seconds)

    def run(self, name: str, run_config: dict[str, Any] | None = None, *, partition_key: str | None = None,
            tags: dict[str, str] | None = None, log_level: str | None = "WARNING") -> JobRun:
        """Run job ``name`` in process; never raises on a failed step (the failure is in the result).
        The run is tagged with this process (:func:`assets.run_health.process_tags`), and runs of
        killed earlier processes are marked failed first (:func:`assets.run_health.fail_dead_runs`).

        ``log_level`` is the Dagster console logger's level (None: Dagster's default). A key of a
        dynamically partitioned job is added first, as the inbox sensor's run request would."""
        import dagster as dg

        from assets.run_health import fail_dead_runs, process_tags

        job = self.job(name)
        loggers = {"loggers": {"console": {"config": {"log_level": log_level}}}} if log_level else {}
        with dg.DagsterInstance.get() as instance:
            # a run of a killed earlier process would stay STARTED and hold the daemon's queue
            for run_id in fail_dead_runs(instance):
                log.warning("run %s: its process is gone (killed mid-run); marked failed", run_id)
            if partition_key is not None and isinstance(job.partitions_def, dg.DynamicPartitionsDefinition):
                instance.add_dynamic_partitions(job.partitions_def.name, [partition_key])
            result = job.execute_in_process(instance=instance, partition_key=partition_key, raise_on_error=False,
                                            run_config={**loggers, **(run_config or {})} or None,
                                            tags={**TRIGGER_TAGS, **process_tags(), **(tags or {})})
        return JobRun(name, result.success, "" if result.success else failure_text(result), result)


def ingest_pending(paths: DataPaths, quiet: bool = True) -> list[BatchResult]:
    """Run ingest_job in process for every batch file waiting in the inbox, oldest first."""
    from tqdm import tqdm

    from assets.jobs import INGEST_JOB
    from config import load_config
    from lake.open import open_batch_files
    from sensors.inbox import quarantine_invalid_names, scan_inbox

    runner = JobRunner(paths)
    runner.job(INGEST_JOB)  # build the definitions before the inbox is read, as the runs will need them
    results = []
    files = open_batch_files(load_config(), paths)
    pending = quarantine_invalid_names(files, scan_inbox(files))
    for f in tqdm(pending, desc=INGEST_JOB, unit="batch", disable=not pending):
        started = time.perf_counter()
        run = runner.run(INGEST_JOB, partition_key=f.batch_id, tags=runner.ingest_tags(f.name, f.size),
                         log_level="WARNING" if quiet else None)
        outcome = run.as_result(f.batch_id)
        status = batch_status(paths, f.batch_id)
        if outcome.success and status != "ingested":  # True means every batch touched is complete
            outcome = BatchResult(f.batch_id, False, f"the run succeeded but the batch is {status!r}")
        log.info("%s %s in %.1fs%s", f.batch_id, "ingested" if outcome.success else "FAILED",
                 time.perf_counter() - started, f" ({outcome.failure})" if outcome.failure else "")
        results.append(outcome)
    return results


def batch_status(paths: DataPaths, batch_id: str) -> str | None:
    """The ``batches`` status of a batch (ingesting / ingested / blocked / quarantined), None if unknown."""
    from config import load_config
    from lake.open import open_lake
    from lake.tables import BATCHES

    lake = open_lake(load_config(), paths)
    if not lake.exists(BATCHES):
        return None
    rows = lake.read_batch(BATCHES, batch_id, column="batch_id")
    return None if rows.empty else str(rows.iloc[-1]["status"])


def run_retrain(paths: DataPaths, mode: str = "full") -> BatchResult:
    """Run retrain_job in process (the job the drift sensor will launch) in the instance the UI shows."""
    from assets.jobs import RETRAIN_JOB, retrain_run_config

    with native_stdout_to(paths.logs / "native_stdout.log"):
        run = JobRunner(paths).run(RETRAIN_JOB, retrain_run_config(mode), tags={"lakehouse/mode": mode},
                                   log_level="INFO")  # INFO: the search's progress stays on the console
    return run.as_result(f"{RETRAIN_JOB} ({mode})")


def analyse(paths: DataPaths) -> JobRun:
    """ab_analysis_job in process: the router's request log into the lake, then the experiment's analysis."""
    from assets.jobs import AB_ANALYSIS_JOB

    return JobRunner(paths).run(AB_ANALYSIS_JOB)


def apply(paths: DataPaths, action: str, reason: str) -> JobRun:
    """promote_job in process with an explicit action (promote / rollback) and the reason recorded."""
    from assets.jobs import PROMOTE_JOB, promote_run_config

    return JobRunner(paths).run(PROMOTE_JOB, promote_run_config(action, reason))


@contextlib.contextmanager
def native_stdout_to(path: Path) -> Iterator[None]:
    """Send file descriptor 1 to ``path`` for the duration: LightGBM's C++ code prints its
    [Info] / [Warning] lines there during the search, which buried the demo's own output. The
    search's progress goes through Dagster's logger (stderr) and stays visible."""
    sys.stdout.flush()
    saved = os.dup(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
