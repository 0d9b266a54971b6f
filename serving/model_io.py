"""Model I/O shared by training, drift and serving: the frame a fitted pipeline is called on, its
class labels in the original label space, and its predictions and probabilities in one pass."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features import FeatureSpec, text_for_model


def model_frame(df: pd.DataFrame, spec: FeatureSpec, with_target: bool = True) -> pd.DataFrame:
    """Model inputs in the spec's order (+ target): what the pipeline is fitted and called on."""
    cols = spec.feature_columns + ([spec.target] if with_target else [])
    out = df[cols].copy()
    for col in spec.time_features:
        out[col] = out[col].astype("float64")
    for col in spec.categorical:
        # Arrow gives None for missing strings; sklearn's imputers only recognise NaN
        out[col] = out[col].astype(object).where(out[col].notna(), np.nan)
    for col in spec.text:
        # no imputer stands before PyCaret's TF-IDF (it fails on NaN): a missing text is the empty document
        out[col] = text_for_model(out[col])
    if with_target and spec.task == "classification" and str(out[spec.target].dtype) == "Int64":
        out[spec.target] = out[spec.target].astype("int64")
    return out


def class_labels(model: Any) -> list:
    """Class labels in the order of ``predict_proba``'s columns, in the original label space.

    PyCaret label-encodes a non-numeric target inside the pipeline: the estimator's ``classes_``
    are then 0..k-1 and the real labels live in the ``label_encoding`` step.
    """
    encoder = dict(getattr(model, "steps", [])).get("label_encoding")
    if encoder is not None:
        return list(encoder.transformer.classes_)
    return list(model.classes_)


def model_outputs(model: Any, frame: pd.DataFrame, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions and, for classification, class probabilities (columns in :func:`class_labels`
    order) of a fitted pipeline, in one pass: the most probable class is what the estimators'
    ``predict`` returns and what the router answers (serving.scoring.ServedModel.predict).

    A served model (:class:`serving.scoring.ServedModel`) scores by its compiled scorer when it
    has one: the same numbers (verified at registration), without the pipeline's pandas steps."""
    served = getattr(model, "outputs_of_features", None)
    if served is not None:
        return served(frame)
    x = model_frame(frame, spec, with_target=False)
    if spec.task == "regression":
        return np.asarray(model.predict(x)), None
    proba = model.predict_proba(x)
    return np.asarray(class_labels(model), dtype=object)[np.argmax(proba, axis=1)], proba
