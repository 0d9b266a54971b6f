"""Hold-out evaluation and the registration gate: a model's metrics on labelled rows, and whether
a candidate may replace prod."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from config.schema import LOWER_IS_BETTER, PipelineConfig
from features import FeatureSpec
from serving.model_io import class_labels, model_frame, model_outputs


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def metrics_of(y: pd.Series, pred: np.ndarray, proba: np.ndarray | None, labels: list | None,
               task: str) -> dict[str, float]:
    """The task's metrics of predictions (and probabilities) against the true values ``y``."""
    from sklearn import metrics as m

    if task == "regression":
        return {"MAE": float(m.mean_absolute_error(y, pred)),
                "RMSE": float(np.sqrt(m.mean_squared_error(y, pred))), "R2": float(m.r2_score(y, pred))}
    pred = pred.astype(np.asarray(y).dtype) if np.asarray(y).dtype != object else pred
    binary = len(set(labels) | set(pd.unique(y))) == 2
    # binary F1 scores the positive class: 1 when the classes are 0/1, else the later of the two
    # in the model's order (``malignant`` / ``benign`` has no 1, and sklearn's default is pos_label=1)
    positive = (1 if 1 in labels else labels[-1]) if binary else None
    out = {"Accuracy": float(m.accuracy_score(y, pred)),
           "F1": float(m.f1_score(y, pred, average="binary", pos_label=positive) if binary
                       else m.f1_score(y, pred, average="weighted"))}
    # a class the model never saw (it appeared after its training rows) has no probability
    # column: AUC and log loss are undefined on such rows, so they are left out, not guessed
    known = set(pd.unique(y)) <= set(labels)
    if known and len(pd.unique(y)) > 1:
        out["AUC"] = float(m.roc_auc_score(y, proba[:, 1]) if len(labels) == 2 else
                           m.roc_auc_score(y, proba, multi_class="ovr", labels=labels))
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


def gate_decision(candidate: dict[str, float], prod: dict[str, float] | None, cfg: PipelineConfig,
                  naive: dict[str, float] | None = None) -> dict:
    """Pass when the hold-out metric clears the floor and is not worse than prod beyond tolerance.

    The floor is ``gate.min_score`` when set, else the ``naive`` baseline's value on the same
    hold-out, which the candidate must beat (strictly)."""
    metric, gate = cfg.sort_metric, cfg.training.gate
    value = candidate.get(metric)
    if value is None:
        return {"passed": False, "metric": metric, "reason": f"{metric} could not be computed on the hold-out"}
    up = higher_is_better(metric)
    if gate.min_score is not None:
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
        ok = value >= prod_value - gate.tolerance if up else value <= prod_value + gate.tolerance
        if not ok:
            reasons.append(f"{metric}={value:.4f} is worse than prod's {prod_value:.4f} beyond {gate.tolerance}")
    return {"passed": not reasons, "metric": metric, "candidate": value, "prod": prod_value,
            "floor": floor, "floor_source": floor_source, "naive": naive, "tolerance": gate.tolerance,
            "reason": "; ".join(reasons) or "clears the floor and is not worse than prod"}
