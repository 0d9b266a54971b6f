"""``drift_sensor``: drift materializations -> ``retrain_job`` runs; ``drift_schedule``: the daily re-check.

The sensor reads new materializations of the ``drift`` asset in storage order (its cursor holds
the last storage id it saw, so each event is looked at once, across daemon restarts) and:

- a batch whose verdict requests retraining -> a full AutoML ``retrain_job`` run, run key
  ``drift-<prod version>-<batch>``: one run per drift event even if the batch is re-checked;
- a batch without drift -> an incremental refresh of prod (``mode: refresh``), if the config
  allows it;
- a batch ingested in process by ``run.py`` (``-mode update`` / ``demo``) is skipped: the
  command already applied the same policy to it;
- after a full retraining request, drift events start no other one until the cool-down is over,
  measured on the stream (``drift.cooldown_unit``): by default until the batches after the request
  (in event time) hold as many labelled rows as a new model is judged on
  (:func:`assets.training.data.judge_rows`), or ``drift.cooldown_batches`` batches; in event time
  (``drift.cooldown_event_time`` of the stream's own clock); or in wall-clock minutes for a live
  deployment. A storm of drifted batches starts one retraining; the next one after the cool-down
  trains on all of them. A refresh also waits for the cool-down of any request.
  A replay at any speed plans the same runs.

The decision is :func:`plan_drift_requests`, a plain function of the events, the cursor and the
clock, so it is tested without a daemon.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

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
    batch_end: float | None = None    # the batch's last event time (epoch seconds): the stream's clock
    labelled_rows: int | None = None  # rows of the batch with a label


@dataclass
class CoolDown:
    """A retraining request and what the stream brought since: the cool-down is measured on it."""

    at: float                              # wall clock of the request
    batch_id: str = ""
    batch_end: float | None = None         # event time of the batch that asked for it
    newer: dict[str, int] = field(default_factory=dict)  # batches after it (event time) -> labelled rows

    def see(self, event: DriftEvent) -> None:
        """Count ``event``'s batch if it is newer in event time than the request's (a re-check of
        the same or an older batch brings nothing new to judge a model on)."""
        newer = (event.batch_end is not None and self.batch_end is not None and event.batch_end > self.batch_end)
        if newer and event.batch_id != self.batch_id:
            self.newer[event.batch_id] = int(event.labelled_rows or 0)


@dataclass
class DriftCursor:
    """The sensor's state between ticks (JSON in the Dagster cursor)."""

    after_storage_id: int = 0
    last_full: CoolDown | None = None      # the last full retraining request
    last_request: CoolDown | None = None   # the last request of any kind (full or refresh)

    @classmethod
    def parse(cls, text: str | None) -> DriftCursor:
        raw = json.loads(text) if text else {}
        # a cursor written before cool-downs were measured on the stream holds wall-clock times only
        full = raw.get("last_full") or ({"at": raw["last_full_at"]} if raw.get("last_full_at") else None)
        any_ = raw.get("last_request") or ({"at": raw["last_request_at"]} if raw.get("last_request_at") else None)
        return cls(int(raw.get("after_storage_id", 0)), CoolDown(**full) if full else None,
                   CoolDown(**any_) if any_ else None)

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


def cooldown_holds(cool: CoolDown | None, event: DriftEvent, cfg: DriftConfig, now: float,
                   judge_rows: int) -> str | None:
    """Why the cool-down after ``cool`` still holds for ``event``, or None when it is over.

    ``batches`` (default): over after ``cfg.cooldown_batches`` newer batches; when that is unset,
    once the newer batches hold ``judge_rows`` labelled rows (:func:`assets.training.data.judge_rows`:
    the rows on which the model the request produced can be judged against the one it would replace).
    ``event_time``: over when the event's batch ends ``cfg.cooldown_event_time`` after the
    request's batch (the stream's own clock, so a replay and a live stream behave alike).
    ``wall_clock``: over ``cfg.cooldown_minutes`` after the request (live deployments).
    """
    if cool is None:
        return None
    if cfg.cooldown_unit == "wall_clock" or cool.batch_end is None:
        # a request recorded without its batch's event time (a cursor or an event from before the
        # stream's clock was published) has only its wall-clock time: that rule applies, and says so
        waited = now - cool.at
        if waited < cfg.cooldown_minutes * 60:
            why = "" if cfg.cooldown_unit == "wall_clock" else ", as the request was recorded without event time"
            return f"requested {waited / 60:.0f} min ago (wall-clock cool-down {cfg.cooldown_minutes:g} min{why})"
        return None
    if cfg.cooldown_unit == "event_time":
        if event.batch_end is None:
            return "the batch carries no event time to measure the event-time cool-down on"
        waited = pd.Timedelta(seconds=event.batch_end - cool.batch_end)
        needed = pd.Timedelta(cfg.cooldown_event_time)
        if waited < needed:
            return (f"its batch ends {waited} of event time after {cool.batch_id}, which requested a retraining "
                    f"(event-time cool-down {cfg.cooldown_event_time})")
        return None
    cool.see(event)
    if cfg.cooldown_batches is not None:
        if len(cool.newer) <= cfg.cooldown_batches:
            return (f"batch {len(cool.newer)} of {cfg.cooldown_batches} after {cool.batch_id}, which requested a "
                    "retraining (cool-down in batches)")
        return None
    rows = sum(cool.newer.values())
    if rows < judge_rows:
        return (f"{len(cool.newer)} newer batch(es) with {rows} labelled rows since {cool.batch_id} requested a "
                f"retraining; the cool-down lasts until {judge_rows} labelled rows (a new model's hold-out) have "
                "arrived to judge that model on")
    return None


def plan_drift_requests(events: list[DriftEvent], cursor: DriftCursor, cfg: DriftConfig, now: float,
                        judge_rows: int) -> tuple[list[PlannedRun], DriftCursor, list[str]]:
    """Which runs the new ``events`` (oldest first) start, the next cursor, and why others did not.

    ``judge_rows``: labelled rows a new model needs to be judged (:func:`assets.training.data.judge_rows`),
    the default length of the cool-down (see :func:`cooldown_holds`)."""
    nxt = DriftCursor(cursor.after_storage_id, copy.deepcopy(cursor.last_full), copy.deepcopy(cursor.last_request))
    planned: list[PlannedRun] = []
    skipped: list[str] = []
    for e in sorted(events, key=lambda ev: ev.storage_id):
        nxt.after_storage_id = max(nxt.after_storage_id, e.storage_id)
        if e.trigger == CLI_TRIGGER:
            skipped.append(f"{e.batch_id}: ingested in process by run.py, which applied the same policy itself")
            continue
        if not e.compared:
            skipped.append(f"{e.batch_id}: not compared ({e.reason})")
            continue
        # every compared batch counts toward both cool-downs, whatever it asks for
        held_full = cooldown_holds(nxt.last_full, e, cfg, now, judge_rows)
        held_any = cooldown_holds(nxt.last_request, e, cfg, now, judge_rows)
        if e.retrain_requested:
            if held_full:
                skipped.append(f"{e.batch_id}: drifted, but the cool-down holds: {held_full}")
                continue
            planned.append(PlannedRun("full", f"drift-{e.prod_version}-{e.batch_id}", e))
            nxt.last_full = CoolDown(now, e.batch_id, e.batch_end)
            nxt.last_request = CoolDown(now, e.batch_id, e.batch_end)
        elif e.drifted:
            skipped.append(f"{e.batch_id}: drifted, waiting for {cfg.persistence_batches} drifted batches in a row")
        elif cfg.refresh_when_stable:
            if held_any:
                skipped.append(f"{e.batch_id}: no drift; refresh waits for the cool-down: {held_any}")
                continue
            planned.append(PlannedRun("refresh", f"refresh-{e.prod_version}-{e.batch_id}", e))
            nxt.last_request = CoolDown(now, e.batch_id, e.batch_end)
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
                      reason=str(_metadata_value(meta, "reason", "")), trigger=trigger,
                      batch_end=_optional(_metadata_value(meta, "batch_end"), float),
                      labelled_rows=_optional(_metadata_value(meta, "labelled_rows"), int))


def _optional(value: Any, kind: type) -> Any:
    return None if value is None else kind(value)


def build_drift_sensor(cfg: DriftConfig, judge_rows: Callable[[], int]) -> dg.SensorDefinition:
    """The sensor over ``drift`` materializations; ``judge_rows()`` (the rows a model trained now
    is judged on, :func:`assets.training.data.judge_rows`) is the default cool-down in labelled
    rows (see :func:`cooldown_holds`), read on each tick that has new events."""

    @dg.sensor(name="drift_sensor", job_name=RETRAIN_JOB, minimum_interval_seconds=cfg.sensor_poll_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Drifted batch -> one full retrain_job run per drift event (cool-down measured on "
                           f"the stream: {cfg.cooldown_unit}); a batch without drift -> an incremental refresh "
                           "of prod.")
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
        planned, nxt, skipped = plan_drift_requests(events, cursor, cfg, time.time(), judge_rows())
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
