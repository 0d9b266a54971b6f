"""The Dagster code location: assets, checks, jobs and sensors of the lakehouse.

``dagster dev`` loads ``defs`` from here (see workspace.yaml). The configuration file and the
data root come from ``LAKEHOUSE_CONFIG`` / ``LAKEHOUSE_DATA`` (or the defaults);
:func:`build_definitions` builds the same thing for another config or root (tests, the command
line). It only assembles: the assets live in ``assets/<domain>/assets.py``, the jobs in
:mod:`assets.jobs`, the sensors in ``sensors/``.
"""

import dagster as dg

from assets.ab.assets import ab_analysis, ab_events, prod_model, request_log
from assets.drift.assets import drift
from assets.ingest.assets import build_quality_asset, cleaned, eda_report, features, raw
from assets.jobs import AB_ANALYSIS_JOB, PROMOTE_JOB, build_jobs
from assets.resources import LakehouseResource
from assets.training.assets import candidate_models, summary_report
from assets.training.data import judge_rows
from config import load_config
from lake.open import open_lake
from lake.paths import data_paths
from sensors.ab import build_ab_sensor, build_event_log_sensor
from sensors.drift import build_drift_schedule, build_drift_sensor
from sensors.inbox import build_inbox_sensor


def build_definitions(config_path: str | None = None, data_root: str | None = None) -> dg.Definitions:
    """Definitions bound to one configuration file and one data root."""
    cfg = load_config(config_path)
    quality = build_quality_asset(cfg)
    jobs = build_jobs(quality)
    return dg.Definitions(
        # one lineage: raw -> ... -> features -> candidate_models -> staging_model -> request_log ->
        # ab_events -> ab_analysis -> prod_model -> drift (docs/architecture.md "Lineage")
        assets=[raw, quality, cleaned, features, drift, eda_report, candidate_models, summary_report, request_log,
                ab_events, ab_analysis, prod_model],
        jobs=list(jobs.values()),
        sensors=[build_inbox_sensor(cfg.dagster.inbox_poll_seconds, cfg.dagster.max_runs_per_tick),
                 build_drift_sensor(cfg.drift, lambda: judge_rows(open_lake(cfg, data_paths(data_root)), cfg)),
                 build_event_log_sensor(cfg.dagster.event_log_poll_seconds),
                 build_ab_sensor([jobs[AB_ANALYSIS_JOB], jobs[PROMOTE_JOB]], cfg.ab.sensor_poll_seconds,
                                 cfg.ab.min_new_labels, cfg.ab.auto_promote)],
        schedules=[build_drift_schedule(cfg.drift)],
        resources={"lakehouse": LakehouseResource(config_path=config_path or "", data_root=data_root or "")},
        # every job runs its steps in the run's own process: the default multiprocess executor starts
        # a process per step that imports the code location again (about 12 s on 2 cores), for
        # steps that take well under a second and run one after another anyway (each job is a chain).
        # A run is still its own process, so a crash or a kill is still isolated to one run.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
