"""Drift of one batch against the data the prod model was trained on, written to the `drift` table.

The reference is exactly what prod saw: the rows of its registry row's ``training_batches`` in
the Delta version ``features_version`` of the `features` table (time travel), so batches that
were re-ingested or arrived since do not move the reference. The model's own spec (from its
registry row) says which columns are its inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from assets.drift.stats import (
    FeatureDrift,
    calendar_not_voting,
    categorical_drift,
    drifted_share,
    flag_features,
    metric_drop,
    metric_worse_test,
    numeric_drift,
    persistent,
    persistent_for,
)
from assets.training.data import time_ordered
from assets.training.evaluation import higher_is_better, metric_standard_error, metrics_of
from assets.training.staging import comparable_metric
from config.schema import BATCH_ID_PATTERN, DriftConfig, PipelineConfig
from features import FeatureSpec
from lake.delta import Lake
from lake.registry import ModelRegistry
from lake.tables import (
    BATCH_COLUMN,
    BATCHES,
    DRIFT,
    DRIFT_BATCH_ROW,
    DRIFT_PREDICTION_ROW,
    DRIFT_SCHEMA,
    DRIFT_TARGET_ROW,
    EVENT_TIME_COLUMN,
    FEATURES,
)
from serving.model_io import class_labels, model_frame, model_outputs
from serving.scoring import ServedModel

log = logging.getLogger(__name__)
TEXT_LENGTH_PREFIX = "len:"  # text columns are compared by their length in characters


@dataclass
class DriftResult:
    """The outcome for one batch; ``rows`` are what was written to the `drift` table."""

    batch_id: str
    prod_version: int | None
    rows: pd.DataFrame
    verdict: dict[str, Any] = field(default_factory=dict)
    version: int | None = None  # Delta version of `drift` after the write

    @property
    def compared(self) -> bool:
        return self.prod_version is not None

    @property
    def features(self) -> pd.DataFrame:
        """Input-feature rows, most drifted first (by effect size)."""
        if self.rows.empty:
            return self.rows
        rows = self.rows[~self.rows["feature"].isin([DRIFT_BATCH_ROW, DRIFT_PREDICTION_ROW, DRIFT_TARGET_ROW])]
        return rows.sort_values(["drifted", "effect"], ascending=False)

    def top_features(self, n: int = 5) -> list[str]:
        shown = self.features
        return shown[shown["drifted"]]["feature"].head(n).tolist() if len(shown) else []


def _labelled_rows_of(lake: Lake, prod_row: dict, key: str, target: str) -> tuple[pd.DataFrame, int]:
    """The labelled rows of prod's ``key`` batches (training_batches / holdout_batches) read at the
    `features` version it used, in event-time order; and that Delta version."""
    batches = json.loads(prod_row.get(key) or "[]")
    version = int(prod_row["features_version"])
    bad = [b for b in batches if not BATCH_ID_PATTERN.match(b)]
    if bad or not batches:
        raise ValueError(f"prod v{prod_row['version']} names no valid {key}: {batches}")
    where = f"{BATCH_COLUMN} IN ({', '.join(repr(b) for b in batches)})"
    frame = lake.read(FEATURES, where=where, version=version)
    frame = time_ordered(frame[frame[target].notna()])
    if frame.empty:
        raise LookupError(f"`features` v{version} has no rows of prod v{prod_row['version']}'s {key} "
                          f"{batches}: the table was vacuumed or rewritten")
    return frame, version


def _sampled(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    if len(frame) > max_rows:
        frame = frame.sample(max_rows, random_state=0)
    return frame.reset_index(drop=True)


def reference_frame(lake: Lake, prod_row: dict, target: str, max_rows: int) -> tuple[pd.DataFrame, int]:
    """Exactly the rows prod was trained on: its training batches read at the `features` version it
    used, labelled rows in event-time order, the last ``training_rows`` of them (as
    :func:`assets.training.data.select_training_data` cut them); then a fixed-seed sample of at most
    ``max_rows``. Returns the frame and that Delta version."""
    frame, version = _labelled_rows_of(lake, prod_row, "training_batches", target)
    return _sampled(frame.iloc[-int(prod_row["training_rows"]):], max_rows), version


def holdout_frame(lake: Lake, prod_row: dict, target: str, max_rows: int) -> pd.DataFrame:
    """The rows prod was judged on and never trained on: its hold-out batches at the same
    `features` version (a fixed-seed sample of at most ``max_rows``). Prediction drift compares a
    batch's predictions with prod's predictions here: on its own training rows a flexible model
    answers near 0 or 1 (in-sample), which no new batch looks like, drifted or not."""
    frame, _ = _labelled_rows_of(lake, prod_row, "holdout_batches", target)
    return _sampled(frame, max_rows)


def drift_columns(spec: FeatureSpec, cfg: DriftConfig,
                  not_voting: Collection[str] = ()) -> tuple[list[str], list[str], list[str]]:
    """Numeric, categorical and text inputs of the model that are tested: minus the excluded ones
    and the calendar features the batching sets (``not_voting``, see :func:`calendar_exclusions`)."""
    skip = set(cfg.exclude_columns) | set(not_voting)
    numeric = [c for c in (*spec.time_features, *spec.numeric) if c not in skip]
    return numeric, [c for c in spec.categorical if c not in skip], [c for c in spec.text if c not in skip]


def calendar_exclusions(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec,
                        cfg: DriftConfig) -> dict[str, str]:
    """The model's calendar features that do not vote on this batch, with why: the batch or the
    reference spans fewer than ``cfg.calendar_min_cycles`` of the feature's period."""
    def span(frame: pd.DataFrame) -> pd.Timedelta:
        times = pd.to_datetime(frame[EVENT_TIME_COLUMN], utc=True) if len(frame) else pd.Series([], dtype=object)
        return (times.max() - times.min()) if len(times) else pd.Timedelta(0)

    return calendar_not_voting(spec.time_features, span(reference), span(current), cfg.calendar_min_cycles)


def feature_drifts(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec,
                   cfg: DriftConfig, not_voting: Collection[str] = ()) -> list[FeatureDrift]:
    """Statistics of every tested input column."""
    numeric, categorical, text = drift_columns(spec, cfg, not_voting)
    out = [numeric_drift(c, reference[c].to_numpy(dtype=float, na_value=np.nan),
                         current[c].to_numpy(dtype=float, na_value=np.nan), bins=cfg.bins, epsilon=cfg.epsilon)
           for c in numeric]
    out += [categorical_drift(c, reference[c], current[c], epsilon=cfg.epsilon, max_categories=cfg.max_categories)
            for c in categorical]
    out += [numeric_drift(TEXT_LENGTH_PREFIX + c, _lengths(reference[c]), _lengths(current[c]),
                          bins=cfg.bins, epsilon=cfg.epsilon) for c in text]
    return out


def _lengths(values: pd.Series) -> np.ndarray:
    return values.astype("object").where(values.notna()).str.len().to_numpy(dtype=float, na_value=np.nan)


def prediction_values(model: Any, frame: pd.DataFrame, spec: FeatureSpec,
                      outputs: tuple[np.ndarray, np.ndarray | None] | None = None) -> pd.Series:
    """What prod outputs for ``frame``: the positive-class probability (binary), the predicted
    label (multiclass) or the predicted value (regression). ``outputs``: :func:`model_outputs` of
    ``frame`` when the caller has them already."""
    pred, proba = outputs if outputs is not None else model_outputs(model, frame, spec)
    if spec.task == "classification" and proba is not None and proba.shape[1] == 2:
        return pd.Series(proba[:, 1], index=frame.index)
    out = pd.Series(pred, index=frame.index)
    return out.astype(str) if spec.task == "classification" else out.astype(float)


def reference_predictions(model: Any, folder: Path, reference: pd.DataFrame, spec: FeatureSpec) -> pd.Series:
    """:func:`prediction_values` of prod on its reference rows (its hold-out:
    :func:`holdout_frame`), computed once per prod version.

    The reference is the same rows for every batch compared with one prod version (its hold-out
    rows at a fixed Delta version, a fixed-seed sample), yet scoring it was the larger part of a
    drift step: the values are kept beside the model's artifact (``folder``, the version's folder
    under the current data root: ModelRegistry.version_folder), in a file named by a fingerprint
    of the rows' content, so another reference (other rows, another sample size) never reads them.
    """
    fingerprint = hashlib.sha256(pd.util.hash_pandas_object(reference, index=False).to_numpy().tobytes())
    name = f"drift_reference_predictions-{fingerprint.hexdigest()[:16]}.parquet"
    path = folder / name
    if path.exists():
        cached = pd.read_parquet(path)["prediction"]
        if len(cached) != len(reference):
            raise ValueError(f"{path} holds {len(cached)} predictions for {len(reference)} reference rows")
        return cached.set_axis(reference.index).rename(None)
    values = prediction_values(model, reference, spec)
    tmp = path.with_name(f"{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    pd.DataFrame({"prediction": values.reset_index(drop=True)}).to_parquet(tmp, index=False)
    tmp.replace(path)  # atomic: a concurrent drift run reads the whole file or none
    return values


def _one(name: str, reference: pd.Series, current: pd.Series, cfg: DriftConfig) -> FeatureDrift:
    if pd.api.types.is_numeric_dtype(reference) and pd.api.types.is_numeric_dtype(current):
        return numeric_drift(name, reference.to_numpy(dtype=float, na_value=np.nan),
                             current.to_numpy(dtype=float, na_value=np.nan), bins=cfg.bins, epsilon=cfg.epsilon)
    return categorical_drift(name, reference.astype(str), current.astype(str), epsilon=cfg.epsilon,
                             max_categories=cfg.max_categories)


def importance_of(prod_row: dict, folder: Path) -> dict[str, float]:
    """Prod's permutation importance per input column (from its interpretation files in ``folder``)."""
    files = json.loads(prod_row.get("interpretation") or "{}")
    if "permutation_importance" not in files:
        return {}
    path = folder / files["permutation_importance"]
    return {r["feature"]: float(r["importance_mean"]) for r in json.loads(path.read_text())}


def model_drift(model: Any, prod_row: dict, current: pd.DataFrame, spec: FeatureSpec, cfg: PipelineConfig, *,
                outputs: tuple[np.ndarray, np.ndarray | None]) -> dict[str, Any]:
    """Prod's metric on the labelled rows of the batch against its hold-out metric at registration:
    the sort metric, or a metric defined on the batch when that one is not (see
    :func:`assets.training.staging.comparable_metric`; ``model_metric`` names the one used,
    ``model_metric_note`` says why).

    Model drift needs both: the metric is worse than on the hold-out beyond the sampling noise of
    the two samples (one-sided z-test at ``drift.alpha``, :func:`assets.drift.stats.metric_worse_test`,
    with the batch's standard error and the hold-out's recorded at registration), and worse by more
    than a share of the hold-out value, ``drift.model_drift_tolerance`` or, unset, the gate's
    ``training.gate.tolerance`` (a drop the gate would not let a new model make is not worth a
    retraining either). So a small batch's noise is not drift, and a large batch's tiny, real but
    irrelevant drop is not either.
    ``outputs``: prod's :func:`model_outputs` on the whole batch (scored once for this and for
    the prediction-drift row)."""
    metric = cfg.sort_metric
    labelled = current[spec.target].notna().to_numpy()
    holdout = json.loads(prod_row["holdout_metrics"])
    out: dict[str, Any] = {"model_metric": metric, "model_metric_reference": holdout.get(metric),
                           "model_metric_current": None, "model_drop": None, "model_drifted": False,
                           "model_metric_note": ""}
    if labelled.sum() < cfg.drift.min_current_rows:
        return {**out, "model_metric_note": f"{int(labelled.sum())} labelled rows, fewer than "
                f"drift.min_current_rows {cfg.drift.min_current_rows}: prod's metric not computed"}
    pred, proba = outputs
    y = model_frame(current[labelled], spec)[spec.target]
    labels = class_labels(model) if spec.task == "classification" else None
    pred, proba = pred[labelled], None if proba is None else proba[labelled]
    values = metrics_of(y, pred, proba, labels, spec.task)
    chosen, note = comparable_metric([values, holdout], metric, spec.task)
    if chosen is None:
        return {**out, "model_metric_note": note}
    up = higher_is_better(chosen)
    drop = metric_drop(values[chosen], holdout[chosen], up)
    y_values = np.asarray(y)
    if spec.task == "classification" and y_values.dtype != object:
        pred = pred.astype(y_values.dtype)  # as metrics_of compares them
    se_batch = metric_standard_error(chosen, y_values, pred, proba, labels=labels, task=spec.task)
    recorded = json.loads(prod_row.get("gate") or "{}")
    se_holdout = recorded.get("holdout_standard_errors", {}).get(chosen)
    notes = [note] if note else []
    if se_holdout is None:
        # a version registered before hold-out errors were recorded: under "nothing changed" both
        # samples have the same per-row spread, and a standard error scales with 1/sqrt(rows)
        rows = recorded.get("holdout_rows") or int(labelled.sum())
        se_holdout = se_batch * float(np.sqrt(labelled.sum() / rows))
        notes.append(f"the hold-out's standard error of {chosen} is not recorded for this version: scaled from "
                     f"the batch's to {rows} hold-out rows")
    test = metric_worse_test(values[chosen], holdout[chosen], se_batch, se_holdout, up)
    tolerance = cfg.drift.model_drift_tolerance
    tolerance_source = "drift.model_drift_tolerance"
    if tolerance is None:
        tolerance, tolerance_source = cfg.training.gate.tolerance, "training.gate.tolerance"
    drifted = bool(drop > tolerance and test["p_value"] < cfg.drift.alpha)
    notes.append(f"worse by {test['worse_by']:+.4g} ± {test['standard_error']:.2g} (z {test['z']:.2f}, one-sided "
                 f"p {test['p_value']:.2g}; drift needs p < drift.alpha {cfg.drift.alpha} and a drop over "
                 f"{tolerance:.1%}, {tolerance_source})")
    return {"model_metric": chosen, "model_metric_reference": holdout[chosen],
            "model_metric_current": values[chosen], "model_drop": drop, "model_p_value": test["p_value"],
            "model_drift_tolerance": tolerance, "model_drifted": drifted, "model_metric_note": "; ".join(notes)}


def previous_verdicts(lake: Lake, batch_id: str, prod_version: int) -> list[bool]:
    """Verdicts of the batches before ``batch_id`` (event-time order) against the same prod version."""
    return [drifted for drifted, _ in previous_verdict_times(lake, batch_id, prod_version)]


def previous_verdict_times(lake: Lake, batch_id: str, prod_version: int) -> list[tuple[bool, pd.Timestamp]]:
    """(verdict, first event time) of the batches before ``batch_id`` (event-time order) against
    the same prod version."""
    if not lake.exists(DRIFT):
        return []
    rows = lake.read(DRIFT, where=f"feature = '{DRIFT_BATCH_ROW}' AND prod_version = {int(prod_version)}",
                     columns=["batch_id", "drifted"])
    rows = rows[rows["batch_id"] != batch_id]
    if rows.empty:
        return []
    starts = lake.read(BATCHES, columns=["batch_id", "time_min"]).drop_duplicates("batch_id", keep="last")
    mine = starts.loc[starts["batch_id"] == batch_id, "time_min"]
    ordered = rows.merge(starts, on="batch_id", how="left").sort_values("time_min")
    if len(mine):
        ordered = ordered[ordered["time_min"] < mine.iloc[0]]
    return list(zip(ordered["drifted"].astype(bool), pd.to_datetime(ordered["time_min"], utc=True), strict=True))


def compute_drift(lake: Lake, registry: ModelRegistry, cfg: PipelineConfig, batch_id: str,
                  run_id: str = "") -> DriftResult:
    """Compare one `features` batch with prod's training data and write the `drift` rows.

    With no prod model yet there is nothing to compare: nothing is written.
    """
    dcfg = cfg.drift
    aliases = registry.aliases()
    if "prod" not in aliases:
        return DriftResult(batch_id, None, pd.DataFrame(), {"reason": "no prod model yet: nothing to compare"})
    prod_row = registry.get(aliases["prod"])
    # prod as served: its compiled scorer when it has one (the same outputs as its pipeline)
    model = ServedModel.load(registry, aliases["prod"])
    spec = model.spec
    reference, ref_version = reference_frame(lake, prod_row, spec.target, dcfg.reference_max_rows)
    current = time_ordered(lake.read_batch(FEATURES, batch_id))

    not_voting = calendar_exclusions(reference, current, spec, dcfg)
    drifts = feature_drifts(reference, current, spec, dcfg, not_voting)
    flags = flag_features(drifts, alpha=dcfg.alpha, correction=dcfg.correction, effect=dcfg.effect,
                          min_effect=dcfg.effect_threshold, min_rows=dcfg.min_current_rows)
    folder = registry.version_folder(prod_row)
    importance = importance_of(prod_row, folder)
    if dcfg.weighting == "importance" and not importance:
        raise LookupError(f"drift.weighting is 'importance' but prod v{prod_row['version']} has no permutation "
                          "importance file; set drift.weighting: uniform or re-register the model")
    flags["importance"] = flags["feature"].map(
        lambda f: importance.get(f.removeprefix(TEXT_LENGTH_PREFIX))).astype(float)
    share = drifted_share(flags, flags.set_index("feature")["importance"].to_dict()
                          if dcfg.weighting == "importance" else None)

    # prod scores the batch once, for the prediction-drift row and for its metric on the labels
    scored = len(current) and (dcfg.prediction_drift
                               or current[spec.target].notna().sum() >= dcfg.min_current_rows)
    outputs = model_outputs(model, current, spec) if scored else (np.empty(0), None)
    extra = []  # reported, not voting: prod's outputs and the labels
    if dcfg.prediction_drift and len(current):
        # out of sample: prod's predictions on its hold-out (holdout_frame says why not its training rows)
        holdout = holdout_frame(lake, prod_row, spec.target, dcfg.reference_max_rows)
        extra.append(_one(DRIFT_PREDICTION_ROW, reference_predictions(model, folder, holdout, spec),
                          prediction_values(model, current, spec, outputs), dcfg))
    ref_y, cur_y = reference[spec.target].dropna(), current[spec.target].dropna()
    if len(ref_y) and len(cur_y):
        cast = (lambda s: s.astype(str)) if spec.task == "classification" else (lambda s: s.astype(float))
        extra.append(_one(DRIFT_TARGET_ROW, cast(ref_y), cast(cur_y), dcfg))
    extra_flags = flag_features(extra, alpha=dcfg.alpha, correction="none", effect=dcfg.effect,
                                min_effect=dcfg.effect_threshold, min_rows=dcfg.min_current_rows)

    perf = (model_drift(model, prod_row, current, spec, cfg, outputs=outputs) if len(current)
            else {"model_drifted": False})
    # below the minimum size nothing is tested (its PSI and p-values are noise): "not tested", not
    # "no drift"; model drift needs as many labelled rows, so it is untested there too
    tested = bool(len(current) >= dcfg.min_current_rows)
    data_drifted = bool(tested and share >= dcfg.share_threshold)
    drifted = data_drifted or bool(perf["model_drifted"])
    times = pd.to_datetime(current[EVENT_TIME_COLUMN], utc=True) if len(current) else None
    timed = [*previous_verdict_times(lake, batch_id, aliases["prod"]),
             (drifted, times.min() if times is not None else pd.NaT)]
    history = [d for d, _ in timed]
    consecutive = trailing_true(history)
    if dcfg.persistence_event_time is not None and times is not None:
        # persistence on the stream's clock: the drifted run must span this much event time
        requested = drifted and persistent_for(timed, times.max(), pd.Timedelta(dcfg.persistence_event_time))
    else:
        requested = drifted and persistent(history, dcfg.persistence_batches)
    verdict = {"drifted": drifted, "data_drifted": data_drifted, "drifted_share": share,
               "consecutive_drifted": consecutive, "retrain_requested": requested, "tested": tested,
               "verdict": verdict_label(drifted, tested),
               "reason": _reason(flags, share, perf, data_drifted=data_drifted, consecutive=consecutive,
                                 requested=requested, cfg=dcfg, not_voting=not_voting,
                                 rows=len(current)),
               **{k: perf.get(k) for k in ("model_metric", "model_metric_current", "model_metric_reference",
                                           "model_drop", "model_p_value", "model_drift_tolerance",
                                           "model_drifted", "model_metric_note")},
               "calendar_not_voting": not_voting, **stream_position(current, spec.target)}

    now = datetime.now(UTC)
    common = {"batch_id": batch_id, "prod_version": aliases["prod"], "reference_features_version": ref_version,
              "computed_at": now, "run_id": run_id}
    batch_row = {**common, "feature": DRIFT_BATCH_ROW, "kind": "batch", "n_reference": len(reference),
                 "n_current": len(current), **verdict}
    rows = pd.concat([flags.assign(**common), extra_flags.assign(**common), pd.DataFrame([batch_row])],
                     ignore_index=True)
    rows = _typed(rows)
    version = lake.overwrite_batch(DRIFT, rows, batch_id, schema=DRIFT_SCHEMA, column="batch_id")
    result = DriftResult(batch_id, aliases["prod"], rows, verdict, version)
    log.info("drift of %s vs prod v%d: %s", batch_id, aliases["prod"], verdict["reason"])
    return result


def trailing_true(history: list[bool]) -> int:
    """How many of the last entries are True in a row."""
    count = 0
    for value in reversed(history):
        if not value:
            break
        count += 1
    return count


def _typed(rows: pd.DataFrame) -> pd.DataFrame:
    """Columns in schema order with nullable dtypes (the batch row leaves feature columns empty)."""
    import pyarrow as pa

    out = pd.DataFrame(index=rows.index)
    for f in DRIFT_SCHEMA:
        col = rows[f.name] if f.name in rows else pd.Series(None, index=rows.index, dtype=object)
        if pa.types.is_boolean(f.type):
            col = col.astype("boolean")
        elif pa.types.is_integer(f.type):
            col = col.astype("Int64")
        elif pa.types.is_floating(f.type):
            col = pd.to_numeric(col, errors="raise").astype("float64")
        out[f.name] = col
    return out


def stream_position(batch: pd.DataFrame, target: str) -> dict[str, Any]:
    """Where the batch is on the stream's own clock and what it can judge a model on: its last
    event time (epoch seconds) and its labelled rows, which ``drift_sensor``'s cool-down counts."""
    times = pd.to_datetime(batch[EVENT_TIME_COLUMN], utc=True) if len(batch) else None
    return {"batch_end": float(times.max().timestamp()) if times is not None else None,
            "labelled_rows": int(batch[target].notna().sum()) if len(batch) else 0}


NOT_TESTED = "not tested"


def verdict_label(drifted: bool, tested: bool) -> str:
    """The batch's verdict in words: drifted, no drift, or not tested (below drift.min_current_rows)."""
    return "drifted" if drifted else "no drift" if tested else NOT_TESTED


def _reason(flags: pd.DataFrame, share: float, perf: dict, *, data_drifted: bool, consecutive: int,
            requested: bool, cfg: DriftConfig, not_voting: dict[str, str], rows: int) -> str:
    if rows < cfg.min_current_rows:
        return (f"{NOT_TESTED}: {rows} rows, fewer than drift.min_current_rows {cfg.min_current_rows} (too few for "
                "the tests to mean anything; the batch counts neither as drifted nor as stable)")
    drifted = flags[flags["drifted"]].sort_values("effect", ascending=False)["feature"].tolist() \
        if len(flags) else []
    parts = [f"{len(drifted)}/{len(flags)} features drifted (share {share:.2f}, threshold {cfg.share_threshold})"
             + (f": {', '.join(drifted[:5])}" if drifted else "")]
    if not_voting:
        parts.append("not voting (set by the batching): " + ", ".join(f"{k}: {v}" for k, v in not_voting.items()))
    if perf.get("model_metric_note"):
        parts.append(perf["model_metric_note"])
    if perf.get("model_drop") is not None:
        drop = perf["model_drop"]
        parts.append(f"prod's {perf['model_metric']} on this batch {perf['model_metric_current']:.4f} vs "
                     f"{perf['model_metric_reference']:.4f} on its hold-out ({'worse' if drop > 0 else 'better'} "
                     f"by {abs(drop):.1%}; " + ("model drifted" if perf["model_drifted"] else "not model drift") + ")")
    if data_drifted or perf.get("model_drifted"):
        waits = (f"drift lasting {cfg.persistence_event_time} of event time" if cfg.persistence_event_time
                 else f"{cfg.persistence_batches} in a row")
        parts.append(f"drifted {consecutive} batch(es) in a row; " + (
            "retraining requested" if requested else f"retraining waits for {waits}"))
    else:
        parts.append("no drift")
    return "; ".join(parts)


def retrain_requests(lake: Lake, batch_ids: list[str], prod_version: int | None) -> list[str]:
    """Which of ``batch_ids`` have a drift verdict against ``prod_version`` that requests retraining."""
    if prod_version is None or not batch_ids or not lake.exists(DRIFT):
        return []
    rows = lake.read(DRIFT, where=f"feature = '{DRIFT_BATCH_ROW}' AND prod_version = {int(prod_version)}",
                     columns=["batch_id", "retrain_requested"])
    wanted = rows[rows["batch_id"].isin(batch_ids) & rows["retrain_requested"].fillna(False).astype(bool)]
    return [b for b in batch_ids if b in set(wanted["batch_id"])]


def stored_result(lake: Lake, batch_id: str, target: str | None = None) -> DriftResult | None:
    """The drift rows of a batch as last written (None if the batch was never compared); with
    ``target``, the verdict also holds the batch's :func:`stream_position` (from `features`)."""
    if not lake.exists(DRIFT):
        return None
    rows = lake.read_batch(DRIFT, batch_id, column="batch_id")
    if rows.empty:
        return None
    batch = rows[rows["feature"] == DRIFT_BATCH_ROW].iloc[0]
    verdict = {k: (None if pd.isna(batch[k]) else batch[k].item() if hasattr(batch[k], "item") else batch[k])
               for k in ("drifted", "data_drifted", "drifted_share", "consecutive_drifted", "retrain_requested",
                         "reason", "model_metric", "model_metric_current", "model_metric_reference", "model_drop",
                         "model_drifted")}
    if target is not None:
        verdict.update(stream_position(lake.read_batch(FEATURES, batch_id), target))
    return DriftResult(batch_id, int(batch["prod_version"]), rows, verdict, lake.version(DRIFT))
