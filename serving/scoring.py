"""Score raw rows with a registered model, row by row robust: one bad row never sinks the rest.

Rows go through the same steps as training: typed like the ingestion does, then
``build_features`` with the spec stored in the model's registry row, then the model pipeline
(which imputes missing values and encodes unseen categories as it learned to). A row whose
values cannot be typed (text in a numeric column, an unparseable time) gets an ``error``
instead of a prediction.

A model call that raises does not sink the rows around the one that made it raise:
:func:`predict_isolated` splits the failing rows in halves until every row that fails on its own
is found, and only those get the model's exception as their ``error``.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features import FeatureSpec, build_features
from lake.registry import ModelRegistry
from serving.compiled import SCORER_FILE, CompiledScorer, columns_of
from serving.model_io import class_labels, model_frame
from serving.parsing import as_text, blank_as_missing, parse_numeric, parse_time

log = logging.getLogger(__name__)

# the start of a row's ``error`` when the model (not the row's values) failed on it
MODEL_FAILED = "model v{version} failed on this row: "


@dataclass(frozen=True)
class ServedModel:
    """A loaded model with what it needs to score: its version, spec and input schema, and its
    compiled scorer (:mod:`serving.compiled`) when the registry verified one for this version.

    ``scoring`` says which path scores and why: ``{"path": "compiled", "kernel": ...}`` or
    ``{"path": "pipeline", "reason": ...}`` (shown in ``/model_info``)."""

    version: int
    model: Any
    spec: FeatureSpec
    schema: dict
    scorer: CompiledScorer | None = None
    scoring: dict = field(default_factory=lambda: {"path": "pipeline", "reason": "no compiled scorer given"})
    # PyCaret's fitted pipeline is not safe to call from several threads at once (its one-hot
    # encoder raised "cannot reindex on an axis with duplicate labels" under the router's threads)
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def classes_(self) -> list:
        """Class labels in the order of the probabilities' columns (as :func:`class_labels` reads them)."""
        return self.scorer.classes if self.scorer is not None else class_labels(self.model)

    def predict(self, x: pd.DataFrame) -> tuple[Any, Any]:
        """Predictions and, for classification, class probabilities of model-frame rows
        (:func:`serving.model_io.model_frame`) through the pipeline; one caller at a time.

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

    def outputs_of_features(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions and class probabilities of ``build_features`` rows, by the compiled
        scorer when there is one (verified equal to the pipeline at registration), else by the
        pipeline. :func:`serving.model_io.model_outputs` calls this for a served model."""
        if self.scorer is not None:
            return self.scorer.predict(columns_of(features, self.spec))
        pred, proba = self.predict(model_frame(features, self.spec, with_target=False))
        return np.asarray(pred), proba

    @classmethod
    def from_registry_row(cls, row: dict, model: Any, scorer: CompiledScorer | None = None,
                          scoring: dict | None = None) -> ServedModel:
        schema = json.loads(row["input_schema"])
        spec = schema["spec"]
        return cls(int(row["version"]), model, FeatureSpec(**{k: tuple(v) if isinstance(v, list) else v
                                                                for k, v in spec.items()}), schema, scorer,
                   scoring or scoring_of(row))

    @classmethod
    def load(cls, registry: ModelRegistry, version: int) -> ServedModel:
        """A registered version with its pipeline and, when the registry row says it was verified,
        its compiled scorer (both checked against their sha256 before unpickling)."""
        row = registry.get(version)
        model = registry.load(version)
        scoring = scoring_of(row)
        scorer = None
        if scoring["path"] == "compiled":
            scorer = CompiledScorer.from_state(registry.read_verified(version, SCORER_FILE, row["scorer_sha256"]),
                                               model)
        return cls.from_registry_row(row, model, scorer, scoring)


def scoring_of(row: dict) -> dict:
    """Which path scores a registry row's model, and why (its compiled scorer's verification)."""
    detail = json.loads(row.get("scorer_check") or "{}") if isinstance(row.get("scorer_check"), str) else {}
    if row.get("scorer") == "compiled":
        return {"path": "compiled", "kernel": detail.get("kernel"), "max_diff": row.get("scorer_max_diff"),
                "sha256": row.get("scorer_sha256")}
    reason = detail.get("reason") or ("registered before compiled scorers" if row.get("scorer") is None
                                      else "compiled scorer not verified")
    return {"path": "pipeline", "reason": reason, **({"step": detail["step"]} if detail.get("step") else {})}


def type_errors(df: pd.DataFrame, spec: FeatureSpec) -> tuple[pd.DataFrame, pd.Series]:
    """Rows typed for ``build_features`` and, per row, the reason it cannot be scored ('' if it can)."""
    typed = pd.DataFrame(index=df.index)
    errors = pd.Series("", index=df.index, dtype=object)

    def note(mask: pd.Series, message: pd.Series | str) -> None:
        if not mask.any():  # the usual case; building the messages costs more than the check
            return
        errors[mask] = errors[mask].where(errors[mask] == "", errors[mask] + "; ") + (
            message[mask] if isinstance(message, pd.Series) else message)

    # a blank time or number is a missing value, not a wrong type (blank categories and texts are
    # missing too: build_features.normalize_strings)
    times = parse_time(blank_as_missing(df[spec.time_column])) if spec.time_column in df \
        else pd.Series(pd.NaT, index=df.index)
    note(times.isna(), f"{spec.time_column}: missing or not a time")
    typed[spec.time_column] = times
    for col in spec.numeric:
        raw = blank_as_missing(df[col]) if col in df else pd.Series(np.nan, index=df.index)
        parsed = parse_numeric(raw)
        bad = raw.notna() & parsed.isna() | np.isinf(parsed.fillna(0))
        note(bad, col + ": " + raw.astype(str).str.slice(0, 40).map(repr) + " is not a finite number")
        typed[col] = parsed.mask(bad)
    for col in (*spec.categorical, *spec.text):
        typed[col] = as_text(df[col]) if col in df else pd.Series(None, index=df.index, dtype=object)
    return typed, errors


@dataclass(frozen=True)
class RowScores:
    """What scoring made of each row, aligned with the input rows.

    ``input_error``: why the row's values cannot be typed ('' if they can; no model was called);
    ``model_error``: the exception the model raised on this row scored alone ('' if it answered).
    ``predict`` / ``probability`` are None / NaN where either is set."""

    predict: list[Any]
    probability: np.ndarray  # of the predicted class (two classes: of the positive class); NaN for regression
    input_error: pd.Series
    model_error: pd.Series

    @property
    def error(self) -> pd.Series:
        """One message per row: the input's problem, or the model's ('' for a scored row)."""
        return self.input_error.where(self.input_error != "", self.model_error)


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def predict_isolated(served: ServedModel, typed: pd.DataFrame) -> tuple[list[Any], np.ndarray | None, list[str]]:
    """Predictions, probabilities (rows x classes; None for regression) and per-row model errors of
    typed rows, with the rows a model call fails on isolated.

    The rows go through ``build_features`` and the model in one call. When that raises, the rows are
    split in halves and each half is scored again, down to single rows: a row gets an error only
    when it fails *alone*, so one poisoned row costs its neighbours nothing. Cost: one call when
    nothing fails; about ``2·k·log2(n/k)`` calls for ``k`` failing rows among ``n``; ``2n − 1``
    calls when every row fails (a broken model), twice a row-by-row re-score.
    """
    spec = served.spec
    n = len(typed)
    pred: list[Any] = [None] * n
    proba: np.ndarray | None = None
    errors = [""] * n
    calls = 0

    def solve(start: int, stop: int) -> None:
        nonlocal proba, calls
        calls += 1
        try:
            part_pred, part_proba = served.outputs_of_features(build_features(typed.iloc[start:stop], spec))
        except Exception as exc:  # a model failure is recorded per row below, never swallowed
            if stop - start == 1:
                errors[start] = _failure(exc)
                return
            mid = (start + stop) // 2
            solve(start, mid)
            solve(mid, stop)
            return
        pred[start:stop] = list(part_pred)
        if part_proba is not None:
            if proba is None:
                proba = np.full((n, part_proba.shape[1]), np.nan)
            proba[start:stop] = part_proba

    if n:
        solve(0, n)
    failed = sum(1 for e in errors if e)
    if calls > 1:  # a whole-group call failed: say how the rows were told apart
        log.warning("model v%s failed on a group of %d row(s); isolated in %d calls: %d row(s) fail on their own%s",
                    served.version, n, calls, failed, f" (first: {next(e for e in errors if e)})" if failed else "")
    return pred, proba, errors


def picked_probability(pred: list[Any] | np.ndarray, proba: np.ndarray, classes: list,
                       scored: np.ndarray | None = None) -> np.ndarray:
    """Per row, the probability of the predicted class (for two classes: of the positive class),
    NaN where ``scored`` is False (the row failed)."""
    picked = np.full(len(pred), np.nan)
    rows = np.arange(len(pred)) if scored is None else np.flatnonzero(scored)
    picked[rows] = proba[rows, 1] if len(classes) == 2 else proba[rows, [classes.index(pred[r]) for r in rows]]
    return picked


def score_rows(df: pd.DataFrame, served: ServedModel) -> RowScores:
    """Type, build the features of and score every row of ``df``; problems stay on their rows."""
    spec = served.spec
    typed, input_error = type_errors(df, spec)
    ok = input_error == ""
    predict = pd.Series([None] * len(df), index=df.index, dtype=object)
    probability = np.full(len(df), np.nan)
    model_error = pd.Series("", index=df.index, dtype=object)
    if ok.any():
        pred, proba, errors = predict_isolated(served, typed[ok])
        model_error[ok] = errors
        predict[ok] = pred
        if spec.task == "classification" and proba is not None:
            probability[ok.to_numpy()] = picked_probability(pred, proba, served.classes_,
                                                            np.array([e == "" for e in errors]))
    return RowScores(predict.tolist(), probability, input_error, model_error)


def score_frame(df: pd.DataFrame, served: ServedModel) -> pd.DataFrame:
    """``df`` plus ``predict`` (and ``probability`` for classification), ``model_version`` and
    ``error``. Missing values and unseen categories are scored; wrong types are reported, and so is
    a model failure, on the rows that cause it only (:func:`predict_isolated`)."""
    scores = score_rows(df, served)
    out = df.copy()
    out["predict"] = pd.Series(scores.predict, index=df.index, dtype=object)
    if served.spec.task == "classification":
        out["probability"] = scores.probability
    out["model_version"] = served.version
    errors = scores.error
    model_failed = scores.model_error != ""
    out["error"] = errors.where(~model_failed, MODEL_FAILED.format(version=served.version) + errors)
    return out
