"""Hold-out evaluation and the registration gate: a model's metrics on labelled rows, and whether
a candidate may replace prod."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from config.schema import LOWER_IS_BETTER, PipelineConfig
from features import FeatureSpec
from lake.registry import ModelRegistry
from lake.tables import BATCH_COLUMN, EVENT_TIME_COLUMN
from serving.model_io import class_labels, model_frame, model_outputs
from serving.scoring import ServedModel

log = logging.getLogger(__name__)


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def binary_positive(labels: list, y: Any) -> Any:
    """The class binary F1 scores, or None when there are more than two classes: 1 when the
    classes are 0/1, else the later of the two in the model's order (``malignant`` / ``benign``
    has no 1, and sklearn's default is pos_label=1)."""
    if len(set(labels) | set(pd.unique(np.asarray(y)))) != 2:
        return None
    return 1 if 1 in labels else labels[-1]


def metrics_of(y: pd.Series, pred: np.ndarray, proba: np.ndarray | None, labels: list | None,
               task: str) -> dict[str, float]:
    """The task's metrics of predictions (and probabilities) against the true values ``y``."""
    from sklearn import metrics as m

    if task == "regression":
        return {"MAE": float(m.mean_absolute_error(y, pred)),
                "RMSE": float(np.sqrt(m.mean_squared_error(y, pred))), "R2": float(m.r2_score(y, pred))}
    pred = pred.astype(np.asarray(y).dtype) if np.asarray(y).dtype != object else pred
    positive = binary_positive(labels, y)
    out = {"Accuracy": float(m.accuracy_score(y, pred)),
           "F1": float(m.f1_score(y, pred, average="binary", pos_label=positive) if positive is not None
                       else m.f1_score(y, pred, average="weighted"))}
    # a class the model never saw (it appeared after its training rows) has no probability
    # column: AUC and log loss are undefined on such rows, so they are left out, not guessed
    known = set(pd.unique(y)) <= set(labels)
    if known and len(pd.unique(y)) > 1:
        out["AUC"] = class_auc(np.asarray(y), proba, labels)
    if known:
        out["LogLoss"] = float(m.log_loss(y, proba, labels=labels))
    return out


def evaluate(model: Any, frame: pd.DataFrame, spec: FeatureSpec) -> dict[str, float]:
    """Metrics of a fitted pipeline on labelled rows (hold-out or a new batch)."""
    pred, proba = model_outputs(model, frame, spec)
    labels = class_labels(model) if spec.task == "classification" else None
    return metrics_of(model_frame(frame, spec)[spec.target], pred, proba, labels, spec.task)


def naive_metrics(train: pd.DataFrame, holdout: pd.DataFrame, spec: FeatureSpec) -> dict[str, float]:
    """The hold-out metrics of the model that ignores the features: the training class shares
    (predicting the majority class) or the training median. The gate's default floor."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    y_train = model_frame(train, spec)[spec.target]
    y = model_frame(holdout, spec)[spec.target]
    blank = np.zeros((len(holdout), 1))
    if spec.task == "regression":
        model = DummyRegressor(strategy="median").fit(np.zeros((len(y_train), 1)), y_train)
        return metrics_of(y, model.predict(blank), None, None, spec.task)
    model = DummyClassifier(strategy="prior").fit(np.zeros((len(y_train), 1)), y_train)
    labels = list(model.classes_)
    return metrics_of(y, model.predict(blank), model.predict_proba(blank), labels, spec.task)


# Resamples of the paired bootstrap: the Monte Carlo error of a 2.5% quantile from 500 draws is
# about sqrt(0.025 * 0.975 / 500) = 0.7 percentage points of probability, small beside the interval,
# and 500 draws of both models' metric stay within seconds on a 30k-row hold-out.
BOOTSTRAP_RESAMPLES = 500


def metric_value(metric: str, y: np.ndarray, pred: np.ndarray | None, proba: np.ndarray | None, *, labels: list | None,
                 task: str) -> float:
    """One metric (the gate's sort metric) of predictions; NaN where it is undefined on these rows
    (AUC with a single class present)."""
    from sklearn import metrics as m

    if task == "regression":
        return {"MAE": lambda: m.mean_absolute_error(y, pred), "RMSE": lambda: np.sqrt(m.mean_squared_error(y, pred)),
                "R2": lambda: m.r2_score(y, pred)}[metric]()
    if metric == "Accuracy":
        return float(np.mean(pred == y))
    if metric == "F1":
        positive = binary_positive(labels, y)
        return float(m.f1_score(y, pred, average="binary", pos_label=positive) if positive is not None
                     else m.f1_score(y, pred, average="weighted"))
    if metric == "LogLoss":
        return float(m.log_loss(y, proba, labels=labels))
    if not set(pd.unique(y)) <= set(labels):
        return float("nan")
    return class_auc(y, proba, labels)


# Resamples of the bootstrap standard error of a metric that is not a mean over rows (F1, multiclass
# AUC): the standard error's own relative error is about 1 / sqrt(2 * 199) = 5%, small beside the
# z-threshold it divides, at ~200 metric evaluations per batch.
SE_RESAMPLES = 200


def metric_standard_error(metric: str, y: np.ndarray, pred: np.ndarray | None, proba: np.ndarray | None, *,
                          labels: list | None, task: str, seed: int = 0) -> float:
    """The sampling standard error of :func:`metric_value` on these rows: how much the metric
    moves from one sample of this size to another of the same population.

    Means over rows (LogLoss, Accuracy, MAE) use the per-row losses' standard deviation / sqrt(n);
    RMSE and R2 the delta method on the squared errors (R2 on their ratio to the target's spread);
    binary AUC the Hanley-McNeil (1982) formula; the rest (F1, multiclass AUC) a bootstrap of
    :data:`SE_RESAMPLES` draws. NaN when the metric is undefined or there are fewer than 2 rows."""
    y = np.asarray(y)
    n = len(y)
    if n < 2:
        return float("nan")
    if task == "regression":
        err = np.asarray(y, dtype=float) - np.asarray(pred, dtype=float)
        if metric == "MAE":
            return float(np.std(np.abs(err), ddof=1) / np.sqrt(n))
        se_mse = float(np.std(err**2, ddof=1) / np.sqrt(n))
        if metric == "RMSE":
            rmse = float(np.sqrt(np.mean(err**2)))
            return se_mse / (2 * rmse) if rmse > 0 else float("nan")
        # R2 = 1 - mean(e²) / mean((y - ȳ)²): the delta method on the ratio of two means (its
        # influence per row), since both vary with the sample
        spread = (np.asarray(y, dtype=float) - np.mean(np.asarray(y, dtype=float))) ** 2
        a, b = float(np.mean(err**2)), float(np.mean(spread))
        if b <= 0:
            return float("nan")
        return float(np.std(err**2 / b - a * spread / b**2, ddof=1) / np.sqrt(n))
    if metric == "Accuracy":
        return float(np.std(np.asarray(pred) == y, ddof=1) / np.sqrt(n))
    if metric == "LogLoss":
        index = pd.Index(labels).get_indexer(y)
        if (index < 0).any():
            return float("nan")
        proba = np.asarray(proba, dtype=float)
        proba = proba / proba.sum(axis=1, keepdims=True)  # as sklearn's log_loss: rows sum to 1, then clip
        eps = np.finfo(proba.dtype).eps
        losses = -np.log(np.clip(proba[np.arange(n), index], eps, 1 - eps))
        return float(np.std(losses, ddof=1) / np.sqrt(n))
    if metric == "AUC" and labels is not None and len(labels) == 2:
        positive = y == labels[1]
        n1, n0 = int(positive.sum()), int((~positive).sum())
        auc = binary_auc(positive, np.asarray(proba)[:, 1])
        if np.isnan(auc):
            return float("nan")
        q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
        var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0)
        return float(np.sqrt(max(var, 0.0)))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(SE_RESAMPLES):
        rows = rng.integers(0, n, n)
        value = metric_value(metric, y[rows], None if pred is None else np.asarray(pred)[rows],
                             None if proba is None else np.asarray(proba)[rows], labels=labels, task=task)
        if not np.isnan(value):
            draws.append(value)
    return float(np.std(draws, ddof=1)) if len(draws) > 1 else float("nan")


def holdout_standard_errors(model: Any, frame: pd.DataFrame, spec: FeatureSpec, metrics: list[str], *,
                            seed: int = 0) -> dict[str, float]:
    """:func:`metric_standard_error` of each of ``metrics`` for ``model`` on labelled rows (its
    hold-out): recorded at registration, so a later batch's metric is judged against the
    hold-out's own sampling noise as well as the batch's (drift's model-drift test)."""
    pred, proba = model_outputs(model, frame, spec)
    y = np.asarray(model_frame(frame, spec)[spec.target])
    labels = class_labels(model) if spec.task == "classification" else None
    if spec.task == "classification":
        pred = pred.astype(y.dtype) if y.dtype != object else pred
    out = {}
    for metric in metrics:
        se = metric_standard_error(metric, y, pred, proba, labels=labels, task=spec.task, seed=seed)
        if np.isfinite(se):
            out[metric] = se
    return out


def class_auc(y: np.ndarray, proba: np.ndarray, labels: list) -> float:
    """ROC AUC from class probabilities: binary on the second class; with more classes the
    one-vs-rest macro average over the classes present in ``y`` (sklearn's ``ovr`` macro AUC when
    every class is present; a class absent from these rows has no positives, so its AUC is
    undefined and left out rather than failing the whole metric). NaN with fewer than two classes."""
    y = np.asarray(y)
    if len(labels) == 2:
        return binary_auc(y == labels[1], proba[:, 1])
    per_class = [binary_auc(y == label, proba[:, i]) for i, label in enumerate(labels)]
    defined = [v for v in per_class if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC from ranks (Mann-Whitney U / (n1 n0), ties at half), the same value as sklearn's
    roc_auc_score without its input validation, which dominates the time of a bootstrap."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n1 = int(positive.sum())
    n0 = positive.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def compare_with_fallback(candidate: Any, fallback: Any, frame: pd.DataFrame, spec: FeatureSpec, metric: str, *,
                          resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """The fallback against the candidate on the same hold-out rows, in the gate's metric.

    ``advantage`` is the fallback's lead (positive: the fallback is better, whichever way the metric
    points) with a 95% paired-bootstrap interval: both models are scored on the same resampled rows,
    so the interval reflects the hold-out's sampling noise of the *difference*, not of each metric.
    ``significant``: the interval excludes 0.
    """
    y = np.asarray(model_frame(frame, spec)[spec.target])
    labels = None
    outputs = {}
    for name, model in (("candidate", candidate), ("fallback", fallback)):
        pred, proba = model_outputs(model, frame, spec)
        if spec.task == "classification":
            labels = class_labels(model) if labels is None else labels
            pred = pred.astype(y.dtype) if y.dtype != object else pred
            if class_labels(model) != labels:  # same class order, so one index works for both
                order = [class_labels(model).index(c) for c in labels]
                proba = proba[:, order]
        outputs[name] = (pred, proba)
    sign = 1.0 if higher_is_better(metric) else -1.0

    def values(rows: np.ndarray | slice) -> tuple[float, float]:
        return tuple(metric_value(metric, y[rows], p[rows], None if q is None else q[rows], labels=labels,
                                  task=spec.task)
                     for p, q in (outputs["candidate"], outputs["fallback"]))

    cand, fall = values(slice(None))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        a, b = values(rng.integers(0, len(y), len(y)))
        if not (np.isnan(a) or np.isnan(b)):
            diffs.append(sign * (b - a))
    low, high = (np.quantile(diffs, [0.025, 0.975]) if diffs else (float("nan"), float("nan")))
    advantage = sign * (fall - cand)
    return {"metric": metric, "candidate": cand, "fallback": fall, "advantage": advantage,
            "ci95": [float(low), float(high)], "resamples": len(diffs), "rows": len(y),
            "fallback_better": bool(advantage > 0), "significant": bool(low > 0 or high < 0)}


def fallback_note(versus: dict[str, Any]) -> str:
    """One sentence on the fallback against the candidate, for the gate's reason and the reports."""
    metric, lead = versus["metric"], versus["advantage"]
    low, high = versus["ci95"]
    figures = (f"{metric} {versus['fallback']:.4f} vs {versus['candidate']:.4f} on the same {versus['rows']} hold-out "
               f"rows, fallback lead {lead:+.4f} (95% paired-bootstrap CI {low:+.4f} .. {high:+.4f})")
    if not versus["fallback_better"]:
        return f"the candidate is not beaten by the fallback: {figures}"
    if versus["significant"]:
        return (f"the FALLBACK BEATS THE CANDIDATE beyond the hold-out's noise: {figures}; the AutoML winner is "
                "kept as the candidate because the gate compares candidates with prod, and the fallback stays "
                "the model for rows the candidate should not score (it ignores text features and is not "
                "refreshed by the search); the search missed a better model (widen training.models, the "
                "budget or the window)")
    return (f"the fallback beats the candidate within the hold-out's noise: {figures}; the AutoML winner, chosen "
            "by time-series CV, is kept")


# the metric the gate falls back on when the sort metric is undefined on a hold-out: defined on any
# labelled rows (accuracy needs no probability column per class, MAE no variance)
DEFINED_EVERYWHERE = {"classification": "Accuracy", "regression": "MAE"}


def gate_decision(candidate: dict[str, float], prod: dict[str, float] | None, cfg: PipelineConfig,
                  naive: dict[str, float] | None = None, *, fallback: dict[str, Any] | None = None) -> dict:
    """Pass when the hold-out metric clears the floor and is not worse than prod beyond the
    tolerance, a share of prod's value (``gate.tolerance``).

    The floor is ``gate.min_score`` when set, else the ``naive`` baseline's value on the same
    hold-out, which the candidate must beat (strictly). ``fallback``: :func:`compare_with_fallback`
    of this candidate; it does not change the outcome but is recorded with it (``fallback``, and a
    sentence in ``reason``) so a fallback that beats the candidate is in the registry row and the
    run's metadata, not hidden.
    """
    metric, gate = cfg.sort_metric, cfg.training.gate
    value = candidate.get(metric)
    note = None
    if value is None:  # e.g. AUC on a hold-out holding a class the model never saw
        defined = DEFINED_EVERYWHERE[cfg.dataset.task]
        if candidate.get(defined) is None:
            return {"passed": False, "metric": metric, "reason": f"{metric} could not be computed on the hold-out"}
        note = f"{metric} is undefined on this hold-out, so {defined} decides"
        metric, value = defined, candidate[defined]
    up = higher_is_better(metric)
    if gate.min_score is not None and note is None:
        floor, floor_source = gate.min_score, "training.gate.min_score"
        floor_ok = value >= floor if up else value <= floor
    elif naive is not None and naive.get(metric) is not None:
        floor, floor_source = naive[metric], "the naive baseline on the same hold-out"
        floor_ok = value > floor if up else value < floor
    else:
        raise ValueError(f"the gate needs a floor for {metric}: set training.gate.min_score or pass the naive "
                         "baseline's metrics")
    reasons = [] if floor_ok else [f"{metric}={value:.4f} does not beat the floor {floor:.4f} ({floor_source})"]
    prod_value = None if prod is None else prod.get(metric)
    if prod_value is not None:
        margin = gate.tolerance * abs(prod_value)  # a share of prod's value: the same on any scale
        ok = value >= prod_value - margin if up else value <= prod_value + margin
        if not ok:
            reasons.append(f"{metric}={value:.4f} is worse than prod's {prod_value:.4f} beyond the tolerance "
                           f"({gate.tolerance:.0%} of prod's, {margin:.4g})")
    reason = "; ".join(reasons) or "clears the floor and is not worse than prod"
    if note:
        reason = f"{note}: {reason}"
    out = {"passed": not reasons, "metric": metric, "candidate": value, "prod": prod_value,
           "floor": floor, "floor_source": floor_source, "naive": naive, "tolerance": gate.tolerance,
           "reason": reason}
    if fallback is not None:
        out.update(fallback=fallback, reason=f"{reason}; {fallback_note(fallback)}")
    return out


def common_evaluation(registry: ModelRegistry, features: pd.DataFrame, target: str,
                      needed_rows: int) -> tuple[list[str], pd.DataFrame]:
    """Every registered version scored on one evaluation set: the latest labelled batches of
    ``features`` holding at least ``needed_rows`` rows (the hold-out rule of training). Each
    version's own hold-out came from the months before it was trained, so those figures are not
    comparable across versions; these are. A version trained on any of these batches is marked
    (its figure there is in-sample), and one that cannot score them (another schema, a missing
    artifact) says why instead of a number.

    Returns the batch ids and one row per version: version, rows, in_sample, the metrics or error."""
    from assets.training.data import hold_out_latest, time_ordered

    labelled = time_ordered(features[features[target].notna()])
    if labelled.empty:
        return [], pd.DataFrame()
    order = labelled.groupby(BATCH_COLUMN)[EVENT_TIME_COLUMN].min().sort_values().index.tolist()
    sizes = labelled.groupby(BATCH_COLUMN).size()
    batches = hold_out_latest(order, sizes, needed_rows)
    rows = labelled[labelled[BATCH_COLUMN].isin(batches)]
    out = []
    for version in sorted(registry.versions()["version"].astype(int)):
        row = registry.get(version)
        trained_on = set(json.loads(row.get("training_batches") or "[]"))
        record: dict[str, Any] = {"version": version, "model_id": row.get("model_id"), "rows": len(rows),
                                  "in_sample": bool(trained_on & set(batches))}
        try:
            served = ServedModel.load(registry, version)
            record.update(evaluate(served.model, rows, served.spec))
        except (KeyError, ValueError, LookupError, FileNotFoundError) as exc:
            log.warning("version %d not scored on the common evaluation set %s: %s", version, batches, exc)
            record["error"] = f"{type(exc).__name__}: {exc}"
        out.append(record)
    return batches, pd.DataFrame(out)
