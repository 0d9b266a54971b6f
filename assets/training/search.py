"""AutoML search with PyCaret (imported lazily).

Time order is kept everywhere: the most recent batches are held out, PyCaret's own test split
is the later part of the training window (``data_split_shuffle=False``), and cross-validation
uses expanding time-series folds (sklearn's ``TimeSeriesSplit``, :func:`cv_folds`) so no fold
trains on rows later than the rows it is validated on."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from assets.training.evaluation import higher_is_better, metric_value
from assets.training.serving_cost import ServingCost, standard_error
from assets.training.serving_cost import choose as choose_by_serving_cost
from assets.training.serving_cost import measure as measure_serving_cost
from config.schema import PipelineConfig, PreprocessingVariant
from features import FeatureSpec
from lake.paths import route_pycaret_log
from serving.model_io import class_labels, model_frame

log = logging.getLogger(__name__)


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
    frame = model_frame(train, spec)
    exp.setup(
        data=frame, target=spec.target, train_size=t.train_fraction,
        data_split_shuffle=False, data_split_stratify=False,
        fold_strategy=cv_folds(frame[spec.target], t.train_fraction, t.folds)
        if spec.task == "classification" else "timeseries", fold=t.folds, fold_shuffle=False,
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
        use_fold_scorers(exp)
    return exp


class FoldScorer:
    """A CV scorer (sklearn's ``scorer(estimator, X, y)``, greater is better) of one metric of
    :func:`assets.training.evaluation.metric_value`, on the fold model's own class labels.

    It replaces PyCaret's scorers for AUC and LogLoss, which fail on the folds our time-ordered
    data produce and then count the failure as a score of 0.0 (``error_score``): PyCaret's
    multiclass AUC calls ``decision_function`` where a model has one, whose scores do not sum to
    1, so logistic regression scored AUC 0.0 on every fold and an overconfident decision tree won
    the search; sklearn's log_loss fails on a fold whose validation rows lack a class, and a loss
    of 0.0 is a perfect score. Here a metric undefined on a fold is NaN, not a number."""

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def __call__(self, estimator: Any, x: pd.DataFrame, y: Any) -> float:
        proba = estimator.predict_proba(x)
        labels = class_labels(estimator)  # the fold's classes, in predict_proba's column order
        # AUC and log loss read the probabilities only, so no predicted class is built
        value = metric_value(self.metric, np.asarray(y), None, proba, labels=labels, task="classification")
        return value if higher_is_better(self.metric) else -value


# PyCaret metric ids whose scorer FoldScorer replaces, with the metric's name in metric_value
FOLD_SCORED = {"auc": "AUC", "logloss": "LogLoss"}


def use_fold_scorers(exp: Any) -> None:
    """Put :class:`FoldScorer` in place of PyCaret's scorers of :data:`FOLD_SCORED`. PyCaret has no
    public way to give a metric its own scorer (``add_metric`` takes a score function of
    ``(y, proba)``, which cannot know a fold model's classes), so its metric containers are set."""
    containers = exp._all_metrics
    for metric_id, name in FOLD_SCORED.items():
        containers[metric_id].scorer = FoldScorer(name)


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


def late_classes(train: pd.DataFrame, spec: FeatureSpec, train_fraction: float) -> dict[str, int]:
    """Classes of a time-ordered window first seen in the later half of PyCaret's training split
    (its earlier ``train_fraction``, not shuffled) or after it, with their row counts.

    Every fold model's label encoder knows only the classes of its own training rows, so a class
    first seen in a fold's validation rows fails the search ('y contains previously unseen
    labels'), and one first seen after the split fails PyCaret's setup. :func:`cv_folds` starts
    the folds' validation after every class has appeared, which keeps such a class as long as the
    folds still validate the later half of the split: CV then compares models on at least half of
    the window's training rows, not on a sliver of it. A class seen later than that is left out."""
    if spec.task != "classification" or train.empty:
        return {}
    cut = int(len(train) * train_fraction) // 2
    y = train[spec.target].reset_index(drop=True)
    seen = set(y.iloc[:cut].dropna())
    late = y.iloc[cut:][~y.iloc[cut:].isin(seen)].dropna()
    return {str(k): int(v) for k, v in late.value_counts().items()}


def without_late_classes(train: pd.DataFrame, spec: FeatureSpec, train_fraction: float
                         ) -> tuple[pd.DataFrame, dict[str, int]]:
    """``train`` less the rows of :func:`late_classes`, and those classes with their row counts.
    Leaving rows out shortens the split, so a class near the cut can become late: repeated until none."""
    left_out: dict[str, int] = {}
    while late := late_classes(train, spec, train_fraction):
        train = train[~train[spec.target].astype(object).map(str).isin(late).to_numpy()].reset_index(drop=True)
        left_out.update(late)
    return train, left_out


def cv_folds(y: pd.Series, train_fraction: float, folds: int) -> str | Any:
    """PyCaret's ``fold_strategy``: expanding time-series folds over its training split whose
    first fold trains on every class of the split. That is sklearn's ``TimeSeriesSplit`` with its
    default fold size ("timeseries") when every class appears within the first fold's training
    rows; otherwise the validation folds are shrunk to the rows after the last class's first
    appearance (:func:`late_classes` keeps that within the later half)."""
    from sklearn.model_selection import TimeSeriesSplit

    n_train = int(len(y) * train_fraction)
    first_rows = pd.Series(np.arange(n_train)).groupby(np.asarray(y)[:n_train]).min()
    all_seen = int(first_rows.max()) + 1 if len(first_rows) else 0
    if all_seen <= n_train - folds * (n_train // (folds + 1)):
        return "timeseries"
    return TimeSeriesSplit(n_splits=folds, test_size=(n_train - all_seen) // folds)


@dataclass
class Leader:
    """One of the CV leaders of a variant: its pooled and CV figures in the sort metric, the model
    (fitted on PyCaret's training split), its experiment, and its CV means of every metric."""

    pooled: float
    cv: float
    model: Any
    exp: Any
    variant: str
    model_id: str
    cv_metrics: dict[str, float]
    fold_values: list[float] = field(default_factory=list)  # its CV scores per fold in the sort metric
    cost: ServingCost | None = None


def pooled_scores(exp: Any, models: list[Any], cv_means: list[float], metric: str) -> list[dict[str, Any]]:
    """Each of the CV leaders ``models`` (fitted by compare_models on PyCaret's training split)
    scored on every validation row the window offers: its CV mean over the folds' validation rows
    and its metric on PyCaret's test split (the window's latest rows, never trained on), pooled as
    a mean weighted by rows. Three expanding folds of a small window validate a few hundred rows
    each, so one fold decides the CV ranking; the test split adds the rows nearest in time to the
    hold-out. ``shown``: the figures for the leaderboard row. A metric undefined on the test split
    (AUC with one class there) leaves the CV mean alone."""
    x_train = exp.get_config("X_train")
    cv_rows = sum(len(te) for _, te in exp.get_config("fold_generator").split(x_train))
    x_test, y_test = exp.get_config("X_test_transformed"), exp.get_config("y_test_transformed")
    # the search's own scorer of the metric (FoldScorer for AUC / log loss), sklearn's sign convention
    scorer = exp._all_metrics[_metric_id(exp, metric)].scorer
    if isinstance(scorer, str):  # PyCaret names sklearn's built-in scorers (regression: "neg_mean_absolute_error")
        from sklearn.metrics import get_scorer

        scorer = get_scorer(scorer)
    out = []
    for model, cv in zip(models, cv_means, strict=True):
        test = float("nan")
        if len(x_test):
            value = scorer(model, x_test, y_test)  # sklearn's convention: greater is better
            test = float(value if higher_is_better(metric) else -value)
        pooled = cv if np.isnan(test) else (cv * cv_rows + test * len(x_test)) / (cv_rows + len(x_test))
        out.append({"cv": cv, "test": test, "pooled": float(pooled),
                    "shown": {f"{metric} (test split)": test, f"{metric} (CV and test split)": float(pooled)}})
    return out


def fold_values(scores: pd.DataFrame | None, metric: str) -> list[float]:
    """The per-fold figures of a PyCaret score grid (its rows other than Mean and Std)."""
    if scores is None or metric not in scores.columns:
        return []
    return [float(v) for i, v in scores[metric].items() if str(i) not in ("Mean", "Std")]


def compare_fold_values(exp: Any, model_id: str, metric: str, since: int) -> list[float]:
    """The CV fold figures compare_models recorded for ``model_id`` (its experiment's model
    container from position ``since``, where this compare_models call started)."""
    cls = exp._all_models[model_id].class_def
    for entry in exp._master_model_container[since:]:
        scores = entry.get("scores")
        if type(entry.get("model")) is cls and scores is not None and "Std" in scores.index:
            return fold_values(scores, metric)
    return []


def _serving_cost(exp: Any, model: Any, task: str, model_id: str, notes: list[str]) -> ServingCost | None:
    """:func:`serving_cost.measure` on a transformed row of the experiment; a failure is a note
    (the model stays a candidate, chosen by its figure alone)."""
    rows = exp.get_config("X_test_transformed")
    if not len(rows):
        rows = exp.get_config("X_train_transformed")
    try:
        return measure_serving_cost(model, rows, task)
    except Exception as exc:  # noted in the search's notes and logged; the search goes on
        log.exception("measuring the serving cost of %s failed", model_id)
        notes.append(f"serving cost of {model_id} not measured ({type(exc).__name__}: {exc})"[:300])
        return None


def _metric_id(exp: Any, name: str) -> str:
    """PyCaret's id of the metric whose display name is ``name`` (e.g. MAE -> mae)."""
    return next(k for k, container in exp._all_metrics.items() if container.display_name == name)


def run_search(train: pd.DataFrame, spec: FeatureSpec, cfg: PipelineConfig, run_id: str,
               progress: Any = None) -> SearchResult:
    """compare_models for every preprocessing variant; its ``select_top`` leaders scored on CV folds
    and PyCaret's test split pooled (:func:`pooled_scores`); the best ``tune_top`` of them tuned
    (kept where that improves the pooled figure); the best pooled finalized on the window.

    Rows of a class that only appears in the last part of the window (:func:`late_classes`) are
    left out of this search, and the result's ``notes`` say so: the next window, where the class
    appears early enough, learns it."""
    t, metric = cfg.training, cfg.sort_metric
    started = time.perf_counter()
    say = progress or log.info
    notes: list[str] = []
    train, late = without_late_classes(train, spec, t.train_fraction)
    if late:
        notes.append(f"class(es) {late} first appear after the first {t.train_fraction / 2:.0%} of the window "
                     f"(the later half of PyCaret's training split, where the CV folds validate, or after it): "
                     f"their {sum(late.values())} row(s) are left out of this search (no fold model of this "
                     "window could learn them; a later window will)")
        say(notes[-1])
    rows: list[dict] = []
    leaders: list[Leader] = []
    sign = 1 if higher_is_better(metric) else -1
    candidates = list(t.models)
    for i, variant in enumerate(t.variants):
        say(f"variant {variant.name}: setup on {len(train)} rows, comparing {candidates} by {metric}")
        exp = setup_experiment(train, spec, cfg, variant)
        since = len(exp._master_model_container)
        top = exp.compare_models(include=candidates, sort=metric, n_select=max(t.select_top, t.tune_top, 1),
                                 budget_time=t.budget_time_minutes, verbose=False, errors="raise")
        grid = exp.pull()
        if i == 0:  # later variants re-run only the strongest families of the first
            candidates = [str(m) for m in grid.index[: t.variant_models]]
        board_rows = _leaderboard_rows(grid, exp, variant.name, metric, "compare")
        rows += board_rows
        top = top if isinstance(top, list) else [top]
        if np.isnan(float(grid.iloc[0][metric])):  # FoldScorer: undefined on a fold, for every model alike
            raise ValueError(
                f"{metric} is undefined on at least one time-series CV fold of variant {variant.name} for every "
                f"model (e.g. a fold whose validation rows hold a single class), so it cannot rank the search: "
                "set training.metric to LogLoss, defined on any fold, or use fewer training.folds")
        pooled = pooled_scores(exp, top, [float(v) for v in grid[metric].iloc[:len(top)]], metric)
        for k, (row, entry) in enumerate(zip(board_rows, pooled, strict=False)):  # leaders first, in order
            model_id = str(grid.index[k])
            cv = {key: v for key, v in json.loads(row["metrics"]).items() if "(" not in key}
            folds = compare_fold_values(exp, model_id, metric, since)
            cost = _serving_cost(exp, top[k], spec.task, model_id, notes)
            row["metrics"] = json.dumps({**json.loads(row["metrics"]), **entry["shown"],
                                         f"{metric} (CV standard error)": standard_error(folds),
                                         **(cost.shown() if cost else {})})
            leaders.append(Leader(entry["pooled"], entry["cv"], top[k], exp, variant.name, model_id, cv, folds, cost))
        figures = ", ".join(f"{grid.index[k]} {e['pooled']:.4f}" for k, e in enumerate(pooled))
        say(f"variant {variant.name}: {metric} over CV folds and PyCaret's test split: {figures}")
    leaders.sort(key=lambda leader: -sign * leader.pooled)
    tuning_started = time.perf_counter()
    for rank, leader in enumerate(leaders[:t.tune_top]):
        spent = (time.perf_counter() - tuning_started) / 60
        if spent > t.budget_time_minutes:  # as compare_models' budget: no new model once it is spent
            notes.append(f"tuning stopped after {rank} of {min(t.tune_top, len(leaders))} leaders: "
                         f"{spent:.1f} min spent, over training.budget_time_minutes {t.budget_time_minutes:g}")
            say(notes[-1])
            break
        say(f"tuning {leader.model_id} of variant {leader.variant} ({t.tune_iterations} iterations)")
        tuned = leader.exp.tune_model(leader.model, n_iter=t.tune_iterations, optimize=metric, choose_better=True,
                                      verbose=False)
        tuned_grid = leader.exp.pull()
        tuned_metrics = {k: float(v) for k, v in tuned_grid.loc["Mean"].items()}
        improved = params_of(tuned) != params_of(leader.model)  # choose_better returns the original otherwise
        entry = pooled_scores(leader.exp, [tuned], [tuned_metrics[metric]], metric)[0] if improved else None
        better = entry is not None and sign * entry["pooled"] > sign * leader.pooled
        folds = fold_values(tuned_grid, metric) if improved else []
        cost = _serving_cost(leader.exp, tuned, spec.task, leader.model_id, notes) if better else None
        rows.append({"model_id": leader.model_id, "model": type(tuned).__name__, "variant": leader.variant,
                     "stage": "tuned" if better else "tuned (not better: kept the default)",
                     "hyperparameters": json.dumps(params_of(tuned), sort_keys=True),
                     "metrics": json.dumps({**tuned_metrics, **(entry["shown"] if entry else {}),
                                            **({f"{metric} (CV standard error)": standard_error(folds)}
                                               if folds else {}), **(cost.shown() if cost else {})}),
                     "sort_metric": metric, "sort_value": tuned_metrics.get(metric), "fit_seconds": np.nan})
        if better:
            leader.model, leader.pooled, leader.cv, leader.cv_metrics = (tuned, entry["pooled"], entry["cv"],
                                                                         tuned_metrics)
            leader.fold_values, leader.cost = folds, cost
    best = max(leaders, key=lambda leader: sign * leader.pooled)
    pick = choose_by_serving_cost([leader.pooled for leader in leaders], higher_is_better(metric),
                                  standard_error(best.fold_values), costs=[leader.cost for leader in leaders],
                                  names=[f"{leader.model_id} ({leader.variant})" for leader in leaders],
                                  mode=t.serving_cost, factor=t.serving_cost_factor,
                                  min_saving=t.serving_cost_min_saving_ms if t.serving_cost == "latency"
                                  else t.serving_cost_min_saving_mib)
    chosen = leaders[pick.index]
    if pick.note:
        notes.append(pick.note)
        say(notes[-1])
    by_cv = max(leaders, key=lambda leader: sign * leader.cv)
    if best is not by_cv:
        notes.append(f"{best.model_id} ({best.variant}) is best over the CV leader {by_cv.model_id} "
                     f"({by_cv.variant}) on all validation rows (CV folds and PyCaret's test split): {metric} "
                     f"{best.pooled:.4f} vs {by_cv.pooled:.4f}")
        say(notes[-1])
    model, exp, variant_name, model_id, cv = chosen.model, chosen.exp, chosen.variant, chosen.model_id, \
        chosen.cv_metrics
    bounds = fold_bounds(exp)
    say(f"finalizing {model_id} on the whole window")
    final = exp.finalize_model(model)
    board = pd.DataFrame(rows)
    board = board.sort_values("sort_value", ascending=not higher_is_better(metric), kind="stable")
    board.insert(0, "rank", range(1, len(board) + 1))
    board.insert(0, "trained_at", datetime.now(UTC))
    board.insert(0, "run_id", run_id)
    return SearchResult(final, model_id, type(final.steps[-1][1]).__name__, variant_name, cv, board, bounds,
                        time.perf_counter() - started, notes)
