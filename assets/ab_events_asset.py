"""``ab_events``: the router's closed event-log segments -> `ab_events` / `ab_feedback` (thin wrapper)."""

import dagster as dg

from assets.ab_events import ingest_event_log
from assets.metadata import numbers
from assets.resources import LakehouseResource
from lake.tables import AB_EVENTS, AB_FEEDBACK

AB_EVENTS_JOB = "ab_events_job"


UNIQUE_CHECK = "each_request_once"


def _unique_check(lake) -> dg.AssetCheckResult:
    """Exactly once, verified on the table: as many distinct request ids as rows."""
    ids = lake.read(AB_EVENTS, columns=["request_id"])["request_id"] if lake.exists(AB_EVENTS) else None
    rows, distinct = (0, 0) if ids is None else (len(ids), int(ids.nunique()))
    return dg.AssetCheckResult(check_name=UNIQUE_CHECK, passed=rows == distinct, severity=dg.AssetCheckSeverity.ERROR,
                               description=f"{rows} rows, {distinct} distinct request ids",
                               metadata={"rows": rows, "duplicated": rows - distinct})


@dg.asset(group_name="ab_test", kinds={"deltalake"},
          check_specs=[dg.AssetCheckSpec(UNIQUE_CHECK, asset="ab_events", description="Every logged request is in "
                                         "`ab_events` once (request_id unique over the whole table).")],
          description="Predictions and late labels the router logged, from its closed event-log segments, "
                      "merged exactly once on request_id / feedback_id (segments of dead workers are sealed "
                      "first, a half-written last line dropped).")
def ab_events(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    paths, lake = lakehouse.paths(), lakehouse.lake()
    outcome = ingest_event_log(lake, paths.events, paths.events_ingested)
    context.log.info("event log: %d segment(s), %d prediction(s) (%d new), %d feedback (%d new)",
                     len(outcome.segments), outcome.events, outcome.events_inserted, outcome.feedback,
                     outcome.feedback_inserted)
    return dg.MaterializeResult(metadata={
        **numbers({"segments": len(outcome.segments), "predictions": outcome.events,
                   "predictions_inserted": outcome.events_inserted, "feedback": outcome.feedback,
                   "feedback_inserted": outcome.feedback_inserted, "skipped_lines": outcome.skipped_lines,
                   "duplicates": outcome.duplicates,
                   "ab_events_rows": lake.table(AB_EVENTS).count() if lake.exists(AB_EVENTS) else 0,
                   "ab_feedback_rows": lake.table(AB_FEEDBACK).count() if lake.exists(AB_FEEDBACK) else 0}),
        "sealed_orphans": dg.MetadataValue.json(outcome.sealed),
        "ab_events_uri": dg.MetadataValue.path(lake.uri(AB_EVENTS)),
    }, check_results=[_unique_check(lake)])
