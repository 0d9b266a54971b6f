"""Score raw rows with a registered model, row by row robust: one bad row never sinks the rest.

Rows go through the same steps as training: typed like the ingestion does, then
``build_features`` with the spec stored in the model's registry row, then the model pipeline
(which imputes missing values and encodes unseen categories as it learned to). A row whose
values cannot be typed (text in a numeric column, an unparseable time) gets an ``error``
instead of a prediction.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features import FeatureSpec, build_features
from serving.model_io import class_labels, model_frame
from serving.parsing import as_text, parse_numeric, parse_time


@dataclass(frozen=True)
class ServedModel:
    """A loaded model with what it needs to score: its version, spec and input schema."""

    version: int
    model: Any
    spec: FeatureSpec
    schema: dict
    # PyCaret's fitted pipeline is not safe to call from several threads at once (its one-hot
    # encoder raised "cannot reindex on an axis with duplicate labels" under the router's threads)
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def predict(self, x: pd.DataFrame) -> tuple[Any, Any]:
        """Predictions and, for classification, class probabilities; one caller at a time.

        Classification runs the pipeline once (``predict_proba``) and takes the most probable
        class, as the estimators' own ``predict`` does: calling both ran the whole PyCaret
        preprocessing twice, about 44% of a single-row request.
        """
        with self.lock:
            if self.spec.task != "classification":
                return self.model.predict(x), None
            proba = self.model.predict_proba(x)
        classes = class_labels(self.model)
        return np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)], proba

    @classmethod
    def from_registry_row(cls, row: dict, model: Any) -> ServedModel:
        schema = json.loads(row["input_schema"])
        spec = schema["spec"]
        return cls(int(row["version"]), model, FeatureSpec(**{k: tuple(v) if isinstance(v, list) else v
                                                                for k, v in spec.items()}), schema)


def type_errors(df: pd.DataFrame, spec: FeatureSpec) -> tuple[pd.DataFrame, pd.Series]:
    """Rows typed for ``build_features`` and, per row, the reason it cannot be scored ('' if it can)."""
    typed = pd.DataFrame(index=df.index)
    errors = pd.Series("", index=df.index, dtype=object)

    def note(mask: pd.Series, message: pd.Series | str) -> None:
        if not mask.any():  # the usual case; building the messages costs more than the check
            return
        errors[mask] = errors[mask].where(errors[mask] == "", errors[mask] + "; ") + (
            message[mask] if isinstance(message, pd.Series) else message)

    times = parse_time(df[spec.time_column]) if spec.time_column in df else pd.Series(pd.NaT, index=df.index)
    note(times.isna(), f"{spec.time_column}: missing or not a time")
    typed[spec.time_column] = times
    for col in spec.numeric:
        raw = df[col] if col in df else pd.Series(np.nan, index=df.index)
        parsed = parse_numeric(raw)
        bad = raw.notna() & parsed.isna() | np.isinf(parsed.fillna(0))
        note(bad, col + ": " + raw.astype(str).str.slice(0, 40).map(repr) + " is not a finite number")
        typed[col] = parsed.mask(bad)
    for col in (*spec.categorical, *spec.text):
        typed[col] = as_text(df[col]) if col in df else pd.Series(None, index=df.index, dtype=object)
    return typed, errors


def score_frame(df: pd.DataFrame, served: ServedModel) -> pd.DataFrame:
    """``df`` plus ``predict`` (and ``probability`` for classification), ``model_version`` and
    ``error``. Missing values and unseen categories are scored; wrong types are reported."""
    spec = served.spec
    typed, errors = type_errors(df, spec)
    ok = errors == ""
    out = df.copy()
    out["predict"] = pd.Series([None] * len(df), index=df.index, dtype=object)
    if spec.task == "classification":
        out["probability"] = np.nan
    if ok.any():
        x = model_frame(build_features(typed[ok], spec), spec, with_target=False)
        pred, proba = served.predict(x)
        out.loc[ok, "predict"] = list(pred)
        if spec.task == "classification":
            classes = class_labels(served.model)
            # probability of the predicted class (for two classes: of the positive class)
            out.loc[ok, "probability"] = proba[:, 1] if len(classes) == 2 else \
                proba[np.arange(len(pred)), [classes.index(p) for p in pred]]
    out["model_version"] = served.version
    out["error"] = errors
    return out
