"""Every job of the code location: its name, what it selects and its run config's shape.

The one place that names jobs: ``definitions.py`` assembles them, the sensors name them in their
run requests and the command line runs them in process, all through the constants and builders
here, so a renamed job or a changed run config cannot drift apart between them.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from assets.ab.assets import ab_analysis, ab_events, prod_model
from assets.drift.assets import drift
from assets.ingest.assets import cleaned, eda_report, features, raw
from assets.partitions import batches_partitions
from assets.training.assets import candidate_models, summary_report

INGEST_JOB = "ingest_job"
RETRAIN_JOB = "retrain_job"
DRIFT_JOB = "drift_job"
AB_EVENTS_JOB = "ab_events_job"
AB_ANALYSIS_JOB = "ab_analysis_job"
PROMOTE_JOB = "promote_job"


def retrain_run_config(mode: str) -> dict[str, Any]:
    """Run config of retrain_job: ``full`` AutoML search or incremental ``refresh`` of prod."""
    return {"ops": {"candidate_models": {"config": {"mode": mode}}}}


def promote_run_config(action: str = "auto", reason: str = "") -> dict[str, Any]:
    """Run config of promote_job: ``auto`` (the running experiment's last decision), ``promote`` or
    ``rollback``, with the reason recorded beside the alias / experiment change."""
    return {"ops": {"prod_model": {"config": {"action": action, "reason": reason}}}}


def build_jobs(quality: dg.AssetsDefinition) -> dict[str, dg.UnresolvedAssetJobDefinition | dg.JobDefinition]:
    """Every job by name; ``quality`` is the configuration's quality asset (its checks depend on it)."""
    return {
        INGEST_JOB: dg.define_asset_job(
            INGEST_JOB, selection=dg.AssetSelection.assets(raw, quality, cleaned, features, drift, eda_report),
            partitions_def=batches_partitions,
            description="One batch file: raw -> quality (checks) -> cleaned -> features -> drift vs prod, "
                        "and the EDA report.",
            tags={"lakehouse/pipeline": "ingest"}),
        RETRAIN_JOB: dg.define_asset_job(
            RETRAIN_JOB, selection=dg.AssetSelection.assets(candidate_models, summary_report),
            description="AutoML candidates on the latest features; registers the winner if it passes the gate.",
            tags={"lakehouse/pipeline": "retrain"}),
        DRIFT_JOB: dg.define_asset_job(
            DRIFT_JOB, selection=dg.AssetSelection.assets(drift), partitions_def=batches_partitions,
            description="Re-check batches against the current prod model (the daily drift schedule runs it).",
            tags={"lakehouse/pipeline": "drift"}),
        AB_EVENTS_JOB: dg.define_asset_job(
            AB_EVENTS_JOB, selection=dg.AssetSelection.assets(ab_events),
            description="The router's closed event-log segments into ab_events / ab_feedback (exactly once).",
            tags={"lakehouse/pipeline": "ab_events"}),
        AB_ANALYSIS_JOB: dg.define_asset_job(
            AB_ANALYSIS_JOB, selection=dg.AssetSelection.assets(ab_events, ab_analysis),
            description="Ingest the request log, then analyse the running experiment and record its decision.",
            tags={"lakehouse/pipeline": "ab_events"}),
        PROMOTE_JOB: dg.define_asset_job(
            PROMOTE_JOB, selection=dg.AssetSelection.assets(prod_model),
            description="Apply the A/B decision: promote staging (prod -> staging's version, previous -> old "
                        "prod, staging cleared, one commit; a materialization of prod_model) or roll back "
                        "(split 0, experiment closed; an observation of staging_model).",
            tags={"lakehouse/pipeline": "promote"}),
    }
