"""``drift_sensor``: drift materializations -> ``retrain_job`` runs; ``drift_schedule``: the daily re-check.

The sensor reads new materializations of the ``drift`` asset in storage order (its cursor holds
the last storage id it saw, so each event is looked at once, across daemon restarts) and:

- a batch whose verdict requests retraining -> a full AutoML ``retrain_job`` run, run key
  ``drift-<prod version>-<batch>``: one run per drift event even if the batch is re-checked;
- a batch without drift -> an incremental refresh of prod (``mode: refresh``), if the config
  allows it;
- a batch ingested in process by ``run.py`` (``-mode update`` / ``demo``) is skipped: the
  command already applied the same policy to it;
- within ``drift.cooldown_minutes`` of the last full retraining request, drift events start
  nothing (a storm of drifted batches starts one retraining; the next one after the cool-down
  trains on all of them); a refresh also waits for the cool-down of any request.

The decision is :func:`plan_drift_requests`, a plain function of the events, the cursor and the
clock, so it is tested without a daemon.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg

from assets.jobs import DRIFT_JOB, RETRAIN_JOB, retrain_run_config
from config.schema import DriftConfig

DRIFT_ASSET = dg.AssetKey("drift")
CLI_TRIGGER = "run.py"  # runs.py's in-process runs apply the policy themselves (update, demo)
EVENTS_PER_TICK = 200


@dataclass(frozen=True)
class DriftEvent:
    """One materialization of ``drift`` as the sensor sees it (from its metadata)."""

    storage_id: int
    batch_id: str
    timestamp: float
    compared: bool
    drifted: bool = False
    retrain_requested: bool = False
    prod_version: int | None = None
    drifted_share: float = 0.0
    top_features: list[str] = field(default_factory=list)
    reason: str = ""
    trigger: str = ""  # the `lakehouse/trigger` tag of the run that materialized it


@dataclass
class DriftCursor:
    """The sensor's state between ticks (JSON in the Dagster cursor)."""

    after_storage_id: int = 0
    last_full_at: float | None = None      # when the last full retraining was requested
    last_request_at: float | None = None   # when any retraining (full or refresh) was requested

    @classmethod
    def parse(cls, text: str | None) -> DriftCursor:
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class PlannedRun:
    mode: str  # full | refresh
    run_key: str
    event: DriftEvent

    def tags(self) -> dict[str, str]:
        e = self.event
        return {"lakehouse/trigger": "drift_sensor", "lakehouse/mode": self.mode, "lakehouse/drift_batch": e.batch_id,
                "lakehouse/prod_version": str(e.prod_version), "lakehouse/drifted_share": f"{e.drifted_share:.3f}",
                "lakehouse/top_features": ",".join(e.top_features[:5])}

    def run_request(self) -> dg.RunRequest:
        return dg.RunRequest(run_key=self.run_key, job_name=RETRAIN_JOB, tags=self.tags(),
                             run_config=retrain_run_config(self.mode))


def plan_drift_requests(events: list[DriftEvent], cursor: DriftCursor, cfg: DriftConfig,
                        now: float) -> tuple[list[PlannedRun], DriftCursor, list[str]]:
    """Which runs the new ``events`` (oldest first) start, the next cursor, and why others did not."""
    cooldown = cfg.cooldown_minutes * 60
    nxt = DriftCursor(cursor.after_storage_id, cursor.last_full_at, cursor.last_request_at)
    planned: list[PlannedRun] = []
    skipped: list[str] = []
    for e in sorted(events, key=lambda ev: ev.storage_id):
        nxt.after_storage_id = max(nxt.after_storage_id, e.storage_id)
        if e.trigger == CLI_TRIGGER:
            skipped.append(f"{e.batch_id}: ingested in process by run.py, which applied the same policy itself")
        elif not e.compared:
            skipped.append(f"{e.batch_id}: not compared ({e.reason})")
        elif e.retrain_requested:
            if nxt.last_full_at is not None and now - nxt.last_full_at < cooldown:
                skipped.append(f"{e.batch_id}: drifted, but a retraining was requested "
                               f"{(now - nxt.last_full_at) / 60:.0f} min ago (cool-down {cfg.cooldown_minutes} min)")
                continue
            planned.append(PlannedRun("full", f"drift-{e.prod_version}-{e.batch_id}", e))
            nxt.last_full_at = nxt.last_request_at = now
        elif e.drifted:
            skipped.append(f"{e.batch_id}: drifted, waiting for {cfg.persistence_batches} drifted batches in a row")
        elif cfg.refresh_when_stable:
            if nxt.last_request_at is not None and now - nxt.last_request_at < cooldown:
                skipped.append(f"{e.batch_id}: no drift; refresh waits for the cool-down")
                continue
            planned.append(PlannedRun("refresh", f"refresh-{e.prod_version}-{e.batch_id}", e))
            nxt.last_request_at = now
        else:
            skipped.append(f"{e.batch_id}: no drift")
    return planned, nxt, skipped


def _metadata_value(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    value = meta.get(key)
    return default if value is None else getattr(value, "value", value)


def event_of(record: Any, trigger: str = "") -> DriftEvent:
    """A DriftEvent from an EventLogRecord of a ``drift`` materialization."""
    mat = record.asset_materialization
    meta = mat.metadata
    version = _metadata_value(meta, "prod_version")
    return DriftEvent(storage_id=record.storage_id, batch_id=mat.partition or "", timestamp=record.timestamp,
                      compared=bool(_metadata_value(meta, "compared", False)),
                      drifted=bool(_metadata_value(meta, "drifted", False)),
                      retrain_requested=bool(_metadata_value(meta, "retrain_requested", False)),
                      prod_version=int(version) if version is not None else None,
                      drifted_share=float(_metadata_value(meta, "drifted_share", 0.0)),
                      top_features=list(_metadata_value(meta, "top_features", []) or []),
                      reason=str(_metadata_value(meta, "reason", "")), trigger=trigger)


def build_drift_sensor(cfg: DriftConfig) -> dg.SensorDefinition:
    @dg.sensor(name="drift_sensor", job_name=RETRAIN_JOB, minimum_interval_seconds=cfg.sensor_poll_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Drifted batch -> one full retrain_job run per drift event (cool-down from the "
                           "config); a batch without drift -> an incremental refresh of prod.")
    def drift_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        cursor = DriftCursor.parse(context.cursor)
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=DRIFT_ASSET, after_storage_id=cursor.after_storage_id or None),
            limit=EVENTS_PER_TICK, ascending=True).records
        if not records:
            return dg.SkipReason("no new drift materializations")
        runs = context.instance.get_runs(dg.RunsFilter(run_ids=list({r.run_id for r in records})))
        triggers = {run.run_id: run.tags.get("lakehouse/trigger", "") for run in runs}
        events = [event_of(r, triggers.get(r.run_id, "")) for r in records]
        planned, nxt, skipped = plan_drift_requests(events, cursor, cfg, time.time())
        for note in skipped:
            context.log.info("drift_sensor: %s", note)
        for run in planned:
            context.log.info("drift_sensor: %s retraining for %s (%s)", run.mode, run.event.batch_id, run.event.reason)
        return dg.SensorResult(run_requests=[r.run_request() for r in planned], cursor=nxt.dump())

    return drift_sensor


def build_drift_schedule(cfg: DriftConfig) -> dg.ScheduleDefinition:
    """Re-checks the latest batches against the current prod daily (prod may have changed since
    they were ingested); its materializations feed ``drift_sensor`` like any other."""

    @dg.schedule(name="drift_schedule", job_name=DRIFT_JOB, cron_schedule=cfg.schedule.cron,
                 execution_timezone=cfg.schedule.timezone,
                 default_status=dg.DefaultScheduleStatus.RUNNING if cfg.schedule.enabled
                 else dg.DefaultScheduleStatus.STOPPED,
                 description=f"Daily drift check of the latest {cfg.schedule.window_batches} batch(es) against the "
                             "current prod model (off by default; switch it on in the UI or the config).")
    def drift_schedule(context: dg.ScheduleEvaluationContext):
        keys = context.instance.get_dynamic_partitions("batches")
        if not keys:
            return dg.SkipReason("no batches yet")
        day = context.scheduled_execution_time.strftime("%Y-%m-%d")
        return [dg.RunRequest(run_key=f"{day}:{key}", partition_key=key,
                              tags={"lakehouse/trigger": "drift_schedule"})
                for key in keys[-cfg.schedule.window_batches:]]  # in arrival order

    return drift_schedule
