"""Dagster side of drift: the partitioned ``drift`` asset, each batch against prod's training data
(thin wrapper over :mod:`assets.drift.compute`)."""

import dagster as dg
import pandas as pd

from assets.drift.compute import DriftResult, compute_drift
from assets.ingest.assets import INGEST_GROUP, features
from assets.ingest.batch import complete_batch
from assets.metadata import numbers
from assets.partitions import batches_partitions
from assets.resources import LakehouseResource
from lake.faults import crash_point
from lake.tables import DRIFT

DRIFT_CHECK = "batch_not_drifted"
SHOWN = ["feature", "kind", "psi", "test", "p_value", "p_adjusted", "effect", "reference_mean", "current_mean",
         "unseen_share", "importance", "drifted"]


def drift_metadata(result: DriftResult, table_uri: str) -> dict[str, dg.MetadataValue]:
    """What the UI shows: the verdict as numbers (plotted over materializations), the per-feature
    table, and the keys the drift sensor reads (`retrain_requested`, `prod_version`)."""
    v = result.verdict
    if not result.compared:
        return {"compared": dg.MetadataValue.bool(False), "reason": v["reason"]}
    extra = result.rows[result.rows["feature"].str.startswith("__") & (result.rows["kind"] != "batch")]
    tested = bool(v.get("tested", True))
    # an untested batch's statistics are noise: no drifted share or PSI to plot beside real ones
    figures = {"drifted_share": float(v["drifted_share"]), "drifted_features": int(result.features["drifted"].sum()),
               "max_psi": float(result.features["psi"].max()) if len(result.features) else 0.0} if tested else {}
    return {
        "compared": dg.MetadataValue.bool(True),
        "tested": dg.MetadataValue.bool(tested),
        "verdict": str(v.get("verdict") or ("drifted" if v["drifted"] else "no drift")),
        "drifted": dg.MetadataValue.bool(bool(v["drifted"])),
        "retrain_requested": dg.MetadataValue.bool(bool(v["retrain_requested"])),
        **numbers({**figures, "prod_version": int(result.prod_version),
                   "consecutive_drifted": int(v["consecutive_drifted"]),
                   "delta_version": int(result.version)}),
        **({"model_metric_current": dg.MetadataValue.float(float(v["model_metric_current"])),
            "model_drop": dg.MetadataValue.float(float(v["model_drop"]))}
           if v.get("model_metric_current") is not None else {}),
        # the model-drift test: one-sided p of "worse than on the hold-out", and the drop it must exceed
        **({"model_p_value": dg.MetadataValue.float(float(v["model_p_value"])),
            "model_drift_tolerance": dg.MetadataValue.float(float(v["model_drift_tolerance"]))}
           if v.get("model_p_value") is not None else {}),
        # which metric judged prod (the sort metric, or one defined on the batch) and why
        "model_metric": str(v.get("model_metric") or ""),
        "model_metric_note": str(v.get("model_metric_note") or ""),
        "calendar_not_voting": dg.MetadataValue.json(v.get("calendar_not_voting") or {}),
        # the stream's clock and what the batch can judge a model on: drift_sensor's cool-down
        "labelled_rows": dg.MetadataValue.int(int(v.get("labelled_rows") or 0)),
        **({"batch_end": dg.MetadataValue.timestamp(float(v["batch_end"]))} if v.get("batch_end") is not None
           else {}),
        "top_features": dg.MetadataValue.json(result.top_features()),
        "reason": v["reason"],
        "per_feature": dg.MetadataValue.md(_markdown(result.features[SHOWN])),
        "predictions_and_target": dg.MetadataValue.md(_markdown(extra[SHOWN]) if len(extra) else "(none)"),
        "table_uri": dg.MetadataValue.path(table_uri),
    }


def _markdown(frame: pd.DataFrame) -> str:
    shown = frame.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].round(4)
    return shown.astype(object).where(shown.notna(), "").to_markdown(index=False)


@dg.asset(partitions_def=batches_partitions, group_name=INGEST_GROUP, deps=[features, "prod_model"],
          kinds={"deltalake", "scipy"},
          check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset="drift", blocking=False,
                                         partitions_def=batches_partitions,  # one verdict per batch
                                         description="Fails (warning) when the batch drifted from the rows prod "
                                                     "was trained on; passes, saying 'not tested', for a batch "
                                                     "below drift.min_current_rows.")],
          description="Each batch against the rows the prod model was trained on (Delta time travel): PSI and "
                      "KS / chi-square per feature, prediction and target drift, prod's metric on the labels; "
                      "the verdict feeds `drift_sensor` (retraining) and the `drift` table.")
def drift(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):
    lake = lakehouse.lake()
    result = compute_drift(lake, lakehouse.registry(), lakehouse.cfg(), context.partition_key, context.run_id)
    context.log.info("drift of %s: %s", context.partition_key, result.verdict["reason"])
    crash_point("after_drift")  # its rows committed (or none: no prod model to compare with yet)
    # the batch's last step committed: it is ingested, and its file leaves the inbox
    complete_batch(lake, lakehouse.batch_files(), context.partition_key)
    yield dg.MaterializeResult(metadata=drift_metadata(result, lake.uri(DRIFT)))
    yield dg.AssetCheckResult(
        check_name=DRIFT_CHECK, asset_key="drift", passed=not result.verdict.get("drifted", False),
        severity=dg.AssetCheckSeverity.WARN, description=result.verdict["reason"],
        metadata={"tested": bool(result.verdict.get("tested", True)),
                  "verdict": str(result.verdict.get("verdict", "")),
                  "drifted_share": float(result.verdict.get("drifted_share", 0.0)),
                  "top_features": dg.MetadataValue.json(result.top_features())})
