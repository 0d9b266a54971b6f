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
    out = {"Accuracy": float(m.accuracy_score(y, pred)),
           "F1": float(m.f1_score(y, pred, average="binary" if len(labels) == 2 else "weighted"))}
    if set(pd.unique(y)) <= set(labels) and len(pd.unique(y)) > 1:
        out["AUC"] = float(m.roc_auc_score(y, proba[:, 1]) if len(labels) == 2 else
                           m.roc_auc_score(y, proba, multi_class="ovr", labels=labels))
    out["LogLoss"] = float(m.log_loss(y, proba, labels=labels))
    return out


def evaluate(model: Any, frame: pd.DataFrame, spec: FeatureSpec) -> dict[str, float]:
    """Metrics of a fitted pipeline on labelled rows (hold-out or a new batch)."""
    pred, proba = model_outputs(model, frame, spec)
    labels = class_labels(model) if spec.task == "classification" else None
    return metrics_of(model_frame(frame, spec)[spec.target], pred, proba, labels, spec.task)


def gate_decision(candidate: dict[str, float], prod: dict[str, float] | None, cfg: PipelineConfig) -> dict:
    """Pass when the hold-out metric clears the floor and is not worse than prod beyond tolerance."""
    metric, gate = cfg.sort_metric, cfg.training.gate
    value = candidate.get(metric)
    if value is None:
        return {"passed": False, "metric": metric, "reason": f"{metric} could not be computed on the hold-out"}
    up = higher_is_better(metric)
    floor_ok = value >= gate.min_score if up else value <= gate.min_score
    reasons = [] if floor_ok else [f"{metric}={value:.4f} misses the floor {gate.min_score}"]
    prod_value = None if prod is None else prod.get(metric)
    if prod_value is not None:
        ok = value >= prod_value - gate.tolerance if up else value <= prod_value + gate.tolerance
        if not ok:
            reasons.append(f"{metric}={value:.4f} is worse than prod's {prod_value:.4f} beyond {gate.tolerance}")
    return {"passed": not reasons, "metric": metric, "candidate": value, "prod": prod_value,
            "floor": gate.min_score, "tolerance": gate.tolerance,
            "reason": "; ".join(reasons) or "clears the floor and is not worse than prod"}
