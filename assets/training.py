"""AutoML training and hold-out evaluation (plain functions; PyCaret is imported lazily).

Time order is kept everywhere: the most recent batches are held out, PyCaret's own test split
is the later part of the training window (``data_split_shuffle=False``), and cross-validation
uses expanding time-series folds (``fold_strategy="timeseries"``) so no fold trains on rows
later than the rows it is validated on.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as pkg_version
from typing import Any

import numpy as np
import pandas as pd

from config.schema import LOWER_IS_BETTER, PipelineConfig, PreprocessingVariant
from features import FeatureSpec
from lake.paths import route_pycaret_log
from lake.tables import BATCH_COLUMN, EVENT_TIME_COLUMN

log = logging.getLogger(__name__)


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


@dataclass(frozen=True)
class TrainingData:
    """The training window and the hold-out, both in event-time order."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    train_batches: list[str]
    holdout_batches: list[str]


def time_ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in event-time order, ties broken by the rows' content: the same table gives the same
    order whatever order its files were read in (the time is hourly in the default data, so many
    rows tie, and the read order follows file names that change with every write). Training
    folds, the row cap and the drift reference sample depend on this order."""
    key = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    # as datetime64 (UTC): a tz-aware column would give an object array of Timestamps, 30x slower to sort
    times = frame[EVENT_TIME_COLUMN].to_numpy(dtype="datetime64[ns]")
    return frame.iloc[np.lexsort((key, times))]


def select_training_data(features: pd.DataFrame, cfg: PipelineConfig) -> TrainingData:
    """Split the ``features`` table by batch in time order: hold-out = the most recent batches
    holding at least ``holdout_min_rows`` rows; training = the batches before (the last
    ``window_batches`` of them if set), capped to the most recent ``max_train_rows`` rows."""
    t = cfg.training
    labelled = features[features[cfg.dataset.target].notna()]
    order = labelled.groupby(BATCH_COLUMN)[EVENT_TIME_COLUMN].min().sort_values().index.tolist()
    sizes = labelled.groupby(BATCH_COLUMN).size()
    holdout_batches: list[str] = []
    while order and sizes[holdout_batches].sum() < t.holdout_min_rows:
        holdout_batches.insert(0, order.pop())
    if not order:
        raise ValueError(f"not enough batches to train: {len(holdout_batches)} batch(es) with "
                         f"{int(sizes.sum())} labelled rows are all needed for the hold-out "
                         f"(training.holdout_min_rows = {t.holdout_min_rows})")
    train_batches = order[-t.window_batches:] if t.window_batches else order
    train = time_ordered(labelled[labelled[BATCH_COLUMN].isin(train_batches)])
    if t.max_train_rows and len(train) > t.max_train_rows:
        train = train.iloc[-t.max_train_rows:]
        train_batches = [b for b in train_batches if b in set(train[BATCH_COLUMN])]
    holdout = time_ordered(labelled[labelled[BATCH_COLUMN].isin(holdout_batches)])
    return TrainingData(train.reset_index(drop=True), holdout.reset_index(drop=True), train_batches, holdout_batches)


def model_frame(df: pd.DataFrame, spec: FeatureSpec, with_target: bool = True) -> pd.DataFrame:
    """Model inputs in the spec's order (+ target): what the pipeline is fitted and called on."""
    cols = spec.feature_columns + ([spec.target] if with_target else [])
    out = df[cols].copy()
    for col in spec.time_features:
        out[col] = out[col].astype("float64")
    for col in (*spec.categorical, *spec.text):
        # Arrow gives None for missing strings; sklearn's imputers only recognise NaN
        out[col] = out[col].astype(object).where(out[col].notna(), np.nan)
    if with_target and spec.task == "classification" and str(out[spec.target].dtype) == "Int64":
        out[spec.target] = out[spec.target].astype("int64")
    return out


def _experiment(task: str):
    import matplotlib

    route_pycaret_log()
    fonts = matplotlib.rcParams["font.sans-serif"]
    if task == "classification":
        from pycaret.classification import ClassificationExperiment as Experiment
    else:
        from pycaret.regression import RegressionExperiment as Experiment
    # importing PyCaret (its plotting stack) sets fonts that a bare Linux machine lacks, and every
    # later plot then logs a findfont warning per glyph: keep matplotlib's own (bundled) fonts
    matplotlib.rcParams["font.sans-serif"] = fonts
    return Experiment()


def setup_experiment(train: pd.DataFrame, spec: FeatureSpec, cfg: PipelineConfig, variant: PreprocessingVariant):
    """A PyCaret experiment on the time-ordered training window with one preprocessing variant."""
    t = cfg.training
    exp = _experiment(spec.task)
    exp.setup(
        data=model_frame(train, spec), target=spec.target, train_size=t.train_fraction,
        data_split_shuffle=False, data_split_stratify=False,
        fold_strategy="timeseries", fold=t.folds, fold_shuffle=False,
        numeric_features=[*spec.time_features, *spec.numeric], categorical_features=list(spec.categorical),
        text_features=list(spec.text) or None,
        numeric_imputation=variant.numeric_imputation, categorical_imputation=variant.categorical_imputation,
        normalize=variant.normalize, normalize_method=variant.normalize_method,
        rare_to_value=variant.rare_to_value, max_encoding_ohe=variant.max_encoding_ohe,
        session_id=t.session_id, n_jobs=t.n_jobs, verbose=False, html=False, log_experiment=False,
    )
    if spec.task == "classification":
        from sklearn.metrics import log_loss

        exp.add_metric("logloss", "LogLoss", log_loss, target="pred_proba", greater_is_better=False)
    return exp


def fold_bounds(exp) -> list[tuple[int, int]]:
    """(last training position, first validation position) of every CV fold, plus the test split."""
    x_train, x_test = exp.get_config("X_train"), exp.get_config("X_test")
    bounds = [(int(tr.max()), int(te.min())) for tr, te in exp.get_config("fold_generator").split(x_train)]
    if len(x_test):
        bounds.append((len(x_train) - 1, len(x_train)))
    return bounds


def params_of(estimator: Any) -> dict[str, Any]:
    """JSON-safe hyperparameters of the final estimator of a pipeline (or an estimator)."""
    est = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
            for k, v in sorted(est.get_params(deep=False).items())}


def _leaderboard_rows(grid: pd.DataFrame, exp, variant: str, metric: str, stage: str) -> list[dict]:
    defaults = exp.models(internal=True)
    rows = []
    for model_id, rec in grid.iterrows():
        metrics = {k: float(v) for k, v in rec.items() if k not in ("Model", "TT (Sec)")}
        args = defaults.loc[model_id, "Args"] if model_id in defaults.index else {}
        rows.append({"model_id": str(model_id), "model": str(rec["Model"]), "variant": variant, "stage": stage,
                     "hyperparameters": json.dumps(args, default=repr, sort_keys=True),
                     "metrics": json.dumps(metrics), "sort_metric": metric, "sort_value": metrics.get(metric),
                     "fit_seconds": float(rec.get("TT (Sec)", np.nan))})
    return rows


@dataclass
class SearchResult:
    pipeline: Any
    model_id: str
    algorithm: str
    variant: str
    cv_metrics: dict[str, float]
    leaderboard: pd.DataFrame
    fold_bounds: list[tuple[int, int]]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def run_search(train: pd.DataFrame, spec: FeatureSpec, cfg: PipelineConfig, run_id: str,
               progress: Any = None) -> SearchResult:
    """compare_models for every preprocessing variant, tune the best, finalize it on the window."""
    t, metric = cfg.training, cfg.sort_metric
    started = time.perf_counter()
    say = progress or log.info
    rows: list[dict] = []
    best: tuple[float, Any, Any, str, str] | None = None  # (score, model, exp, variant, model_id)
    sign = 1 if higher_is_better(metric) else -1
    candidates = list(t.models)
    for i, variant in enumerate(t.variants):
        say(f"variant {variant.name}: setup on {len(train)} rows, comparing {candidates} by {metric}")
        exp = setup_experiment(train, spec, cfg, variant)
        top = exp.compare_models(include=candidates, sort=metric, n_select=max(t.tune_top, 1),
                                 budget_time=t.budget_time_minutes, verbose=False, errors="raise")
        grid = exp.pull()
        if i == 0:  # later variants re-run only the strongest families of the first
            candidates = [str(m) for m in grid.index[: t.variant_models]]
        rows += _leaderboard_rows(grid, exp, variant.name, metric, "compare")
        top = top if isinstance(top, list) else [top]
        score = float(grid.iloc[0][metric])
        say(f"variant {variant.name}: best {grid.index[0]} {metric}={score:.4f}")
        if best is None or sign * score > sign * best[0]:
            best = (score, top[0], exp, variant.name, str(grid.index[0]))
    assert best is not None
    score, model, exp, variant_name, model_id = best
    cv: dict[str, float] | None = None
    if t.tune_top:
        say(f"tuning {model_id} ({t.tune_iterations} iterations)")
        tuned = exp.tune_model(model, n_iter=t.tune_iterations, optimize=metric, choose_better=True, verbose=False)
        tuned_metrics = {k: float(v) for k, v in exp.pull().loc["Mean"].items()}
        improved = params_of(tuned) != params_of(model)  # choose_better returns the original otherwise
        rows.append({"model_id": model_id, "model": type(tuned).__name__, "variant": variant_name,
                     "stage": "tuned" if improved else "tuned (not better: kept the default)",
                     "hyperparameters": json.dumps(params_of(tuned), sort_keys=True),
                     "metrics": json.dumps(tuned_metrics), "sort_metric": metric,
                     "sort_value": tuned_metrics.get(metric), "fit_seconds": np.nan})
        if improved:
            model = tuned
            cv = tuned_metrics
    if cv is None:
        cv = json.loads(next(r["metrics"] for r in rows
                             if r["model_id"] == model_id and r["variant"] == variant_name and r["stage"] == "compare"))
    bounds = fold_bounds(exp)
    say(f"finalizing {model_id} on the whole window")
    final = exp.finalize_model(model)
    board = pd.DataFrame(rows)
    board = board.sort_values("sort_value", ascending=not higher_is_better(metric), kind="stable")
    board.insert(0, "rank", range(1, len(board) + 1))
    board.insert(0, "trained_at", datetime.now(UTC))
    board.insert(0, "run_id", run_id)
    return SearchResult(final, model_id, type(final.steps[-1][1]).__name__, variant_name, cv, board, bounds,
                        time.perf_counter() - started)


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
    ``predict`` returns and what the router answers (serving.scoring.ServedModel.predict)."""
    x = model_frame(frame, spec, with_target=False)
    if spec.task == "regression":
        return np.asarray(model.predict(x)), None
    proba = model.predict_proba(x)
    return np.asarray(class_labels(model), dtype=object)[np.argmax(proba, axis=1)], proba


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


def input_schema(train: pd.DataFrame, spec: FeatureSpec, max_categories: int = 200) -> dict:
    """What a request must look like: the spec, categories seen and numeric ranges in training."""
    from dataclasses import asdict

    return {
        "spec": asdict(spec),
        "categories": {c: train[c].dropna().value_counts().index[:max_categories].tolist() for c in spec.categorical},
        "numeric_ranges": {c: [float(train[c].min()), float(train[c].max())] for c in spec.numeric
                           if train[c].notna().any()},
        "dtypes": {c: str(train[c].dtype) for c in spec.feature_columns},
    }


def latency_profile(model: Any, frame: pd.DataFrame, spec: FeatureSpec) -> dict[str, float]:
    """Median single-row and 1,000-row predict time, and peak traced memory of a 1,000-row call."""
    x = model_frame(frame, spec, with_target=False)
    rows = x.sample(1000, replace=len(x) < 1000, random_state=0).reset_index(drop=True)
    singles = []
    for i in range(25):
        started = time.perf_counter()
        model.predict(rows.iloc[[i]])
        singles.append(time.perf_counter() - started)
    batches = []
    for _ in range(3):
        started = time.perf_counter()
        model.predict(rows)
        batches.append(time.perf_counter() - started)
    tracemalloc.start()
    model.predict(rows)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"latency_single_ms": 1000 * statistics.median(singles),
            "latency_batch_ms": 1000 * statistics.median(batches), "peak_memory_mb": peak / 2**20}


def library_versions() -> dict[str, str]:
    names = ("pycaret", "scikit-learn", "pandas", "numpy", "scipy", "lightgbm", "joblib", "deltalake", "pyarrow")
    return {"python": sys.version.split()[0], **{n: pkg_version(n) for n in names}}
