"""The Dagster code location: assets, checks, jobs and sensors of the lakehouse.

``dagster dev`` loads ``defs`` from here (see workspace.yaml). The configuration file and the
data root come from ``LAKEHOUSE_CONFIG`` / ``LAKEHOUSE_DATA`` (or the defaults);
:func:`build_definitions` builds the same thing for another config or root (tests, run.py).
"""


import dagster as dg

from assets.ab_assets import AB_ANALYSIS_JOB, ab_analysis, promote_job
from assets.ab_events_asset import AB_EVENTS_JOB, ab_events
from assets.drift_asset import drift
from assets.eda_asset import eda_report
from assets.ingest_assets import build_quality_asset, cleaned, features, raw
from assets.partitions import batches_partitions
from assets.resources import LakehouseResource
from assets.training_asset import RETRAIN_JOB, candidate_models, summary_report
from config import load_config
from sensors.ab import build_ab_sensor, build_event_log_sensor
from sensors.drift import DRIFT_JOB, build_drift_schedule, build_drift_sensor
from sensors.inbox import INGEST_JOB, build_inbox_sensor


def build_definitions(config_path: str | None = None, data_root: str | None = None) -> dg.Definitions:
    """Definitions bound to one configuration file and one data root."""
    cfg = load_config(config_path)
    quality = build_quality_asset(cfg)
    ingest_job = dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.assets(raw, quality, cleaned, features, drift, eda_report),
        partitions_def=batches_partitions,
        description="One batch file: raw -> quality (checks) -> cleaned -> features -> drift vs prod, "
                    "and the EDA report.",
        tags={"lakehouse/pipeline": "ingest"},
    )
    retrain_job = dg.define_asset_job(
        RETRAIN_JOB, selection=dg.AssetSelection.assets(candidate_models, summary_report),
        description="AutoML candidates on the latest features; registers the winner if it passes the gate.",
        tags={"lakehouse/pipeline": "retrain"},
    )
    drift_job = dg.define_asset_job(
        DRIFT_JOB, selection=dg.AssetSelection.assets(drift), partitions_def=batches_partitions,
        description="Re-check batches against the current prod model (the daily drift schedule runs it).",
        tags={"lakehouse/pipeline": "drift"},
    )
    ab_events_job = dg.define_asset_job(
        AB_EVENTS_JOB, selection=dg.AssetSelection.assets(ab_events),
        description="The router's closed event-log segments into ab_events / ab_feedback (exactly once).",
        tags={"lakehouse/pipeline": "ab_events"},
    )
    ab_analysis_job = dg.define_asset_job(
        AB_ANALYSIS_JOB, selection=dg.AssetSelection.assets(ab_events, ab_analysis),
        description="Ingest the request log, then analyse the running experiment and record its decision.",
        tags={"lakehouse/pipeline": "ab_events"},
    )
    return dg.Definitions(
        assets=[raw, quality, cleaned, features, drift, eda_report, candidate_models, summary_report, ab_events,
                ab_analysis],
        jobs=[ingest_job, retrain_job, drift_job, ab_events_job, ab_analysis_job, promote_job],
        sensors=[build_inbox_sensor(cfg.dagster.inbox_poll_seconds, cfg.dagster.max_runs_per_tick),
                 build_drift_sensor(cfg.drift), build_event_log_sensor(cfg.dagster.event_log_poll_seconds),
                 build_ab_sensor([ab_analysis_job, promote_job], cfg.ab.sensor_poll_seconds, cfg.ab.min_new_labels,
                                 cfg.ab.auto_promote)],
        schedules=[build_drift_schedule(cfg.drift)],
        resources={"lakehouse": LakehouseResource(config_path=config_path or "", data_root=data_root or "")},
    )


defs = build_definitions()
