"""How the search scores its CV folds: AUC and log loss on the fold model's own classes, never a
failure counted as a score, and log loss as the default sort metric for classification."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from assets.training.evaluation import class_auc, metric_value
from assets.training.search import run_search
from config import load_config
from features import FeatureSpec
from tests.conftest import write_config

SPEC = FeatureSpec(task="classification", time_column="t", target="y", id_column=None, numeric=("x", "z"),
                   categorical=(), text=(), time_features=())


def test_multiclass_auc_is_sklearns_ovr_macro_and_leaves_out_an_absent_class() -> None:
    rng = np.random.default_rng(3)
    labels = ["a", "b", "c"]
    proba = rng.dirichlet([1, 1, 1], 200)
    y = np.asarray(labels, dtype=object)[rng.integers(0, 3, 200)]
    assert class_auc(y, proba, labels) == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", labels=labels), abs=1e-12)
    # no row of class c: sklearn raises, here the macro average runs over a and b only
    two = y != "c"
    expected = np.mean([roc_auc_score(y[two] == c, proba[two, i]) for i, c in enumerate(labels[:2])])
    assert class_auc(y[two], proba[two], labels) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(class_auc(np.array(["a"] * 5, dtype=object), proba[:5], labels))
    assert np.isnan(metric_value("AUC", np.array(["d", "a"], dtype=object), None, proba[:2], labels=labels,
                                 task="classification"))  # a class the model does not know


def _three_classes(n: int = 600) -> pd.DataFrame:
    """x separates three word classes; class ``mid`` is missing from rows 240-359, which the second of
    three time-series folds validates on (PyCaret's training split is the first 480 rows, so the
    folds validate 120-239, 240-359, 360-479): sklearn's log_loss fails there unless given the
    model's labels."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    y = np.where(x > 0.5, "high", np.where(x < -0.5, "low", "mid")).astype(object)
    y[240:360] = np.where(x[240:360] > 0, "high", "low")
    return pd.DataFrame({"x": x, "z": rng.normal(size=n), "y": y, "t": pd.date_range("2024-01-01", periods=n,
                                                                                       freq="h")})


def _cfg(tmp_path: Path, training: dict):
    return load_config(str(write_config(tmp_path, {"training": {
        "models": ["lr", "dt"], "folds": 3, "tune_top": 0, "budget_time_minutes": 1, **training}})))


@pytest.mark.slow
def test_fold_scores_rank_calibrated_probabilities_first(tmp_path: Path) -> None:
    """PyCaret's own scorers gave logistic regression AUC 0.0 on every fold (its multiclass AUC
    takes decision_function scores) and a tree with 0/1 leaves won; scored on probabilities, the
    logistic regression wins on both metrics and log loss is the default sort."""
    cfg = _cfg(tmp_path / "cfg", {})
    assert cfg.sort_metric == "LogLoss"
    result = run_search(_three_classes(), SPEC, cfg, "run-1")
    assert result.model_id == "lr"
    board = result.leaderboard.set_index("model_id")
    metrics = {m: json.loads(board.loc[m, "metrics"]) for m in ("lr", "dt")}
    assert metrics["lr"]["AUC"] > 0.95 and metrics["dt"]["AUC"] < metrics["lr"]["AUC"]
    assert 0 < metrics["lr"]["LogLoss"] < 0.5 and metrics["dt"]["LogLoss"] > 2  # 0/1 leaves: a few nats
    assert list(board["rank"]) == [1, 2] and board.loc["lr", "sort_value"] == metrics["lr"]["LogLoss"]


@pytest.mark.slow
def test_a_sort_metric_undefined_on_a_fold_stops_the_search_and_names_log_loss(tmp_path: Path) -> None:
    frame = _three_classes()
    frame["y"] = np.where(frame["x"] > 0, "yes", "no").astype(object)
    frame.loc[100:250, "y"] = "yes"  # the first fold validates on rows 120-239: one class, AUC undefined
    with pytest.raises(ValueError, match=r"AUC is undefined on at least one time-series CV fold .* LogLoss"):
        run_search(frame, SPEC, _cfg(tmp_path / "cfg", {"metric": "AUC"}), "run-2")


@pytest.mark.slow
def test_a_class_first_seen_mid_window_is_learned_and_a_later_one_left_out_with_a_note(tmp_path: Path) -> None:
    """Before, a class first seen after the first fold's training rows (here row 200 of 480; the
    default first fold trains on rows 0-119) failed the search: 'y contains previously unseen
    labels'. Now the folds validate from row 200 on; a class first seen at row 300, in the later
    half of the split, is left out of this search with a note."""
    frame = _three_classes()
    x = frame["x"].to_numpy()
    frame.loc[:199, "y"] = np.where(x[:200] > 0, "high", "low")
    result = run_search(frame, SPEC, _cfg(tmp_path / "a", {}), "run-3")
    assert result.notes == []
    assert result.fold_bounds[0][1] >= 200 and result.fold_bounds[0][0] == result.fold_bounds[0][1] - 1
    assert set(result.pipeline.predict(frame[["x", "z"]])) == {"high", "mid", "low"}

    frame.loc[:299, "y"] = np.where(x[:300] > 0, "high", "low")
    later = run_search(frame, SPEC, _cfg(tmp_path / "b", {}), "run-4")
    left_out = int((frame["y"] == "mid").sum())
    assert len(later.notes) == 1 and f"{{'mid': {left_out}}} first appear after the first 40%" in later.notes[0]
    assert set(later.pipeline.predict(frame[["x", "z"]])) == {"high", "low"}


@pytest.mark.slow
def test_the_leaders_are_chosen_on_cv_folds_and_the_test_split_pooled_by_rows(tmp_path: Path) -> None:
    """Three folds of a small window validate 120 rows each here; the leaders are re-scored on
    PyCaret's test split too (the window's last 120 rows), the two pooled by rows: 360 CV rows and
    120 test rows, and the model with the best pooled figure is the one chosen."""
    result = run_search(_three_classes(), SPEC, _cfg(tmp_path / "cfg", {}), "run-5")
    board = result.leaderboard.set_index("model_id")
    pooled = {}
    for model_id in ("lr", "dt"):
        metrics = json.loads(board.loc[model_id, "metrics"])
        test = metrics["LogLoss (test split)"]
        assert np.isfinite(test) and test > 0
        assert metrics["LogLoss (CV and test split)"] == pytest.approx((metrics["LogLoss"] * 360 + test * 120) / 480)
        pooled[model_id] = metrics["LogLoss (CV and test split)"]
    assert result.model_id == min(pooled, key=pooled.get) == "lr"
    assert "(" not in "".join(result.cv_metrics)  # the registry's cv_metrics hold CV means only


@pytest.mark.slow
def test_regression_leaders_are_pooled_in_mae_with_sklearns_scorer(tmp_path: Path) -> None:
    """PyCaret names its regression scorers by string (``neg_mean_absolute_error``): the pooled
    figure is still the row-weighted mean of the CV and test-split MAE, in the metric's own sign."""
    rng = np.random.default_rng(5)
    frame = _three_classes().drop(columns="y")
    frame["y"] = 1000 * frame["x"] + rng.normal(0, 100, len(frame))
    spec = FeatureSpec(task="regression", time_column="t", target="y", id_column=None, numeric=("x", "z"),
                       categorical=(), text=(), time_features=())
    cfg = load_config(str(write_config(tmp_path / "cfg", {"dataset": {"task": "regression"}, "training": {
        "models": ["lr", "dt"], "folds": 3, "tune_top": 0, "budget_time_minutes": 1}})))
    assert cfg.sort_metric == "MAE"
    result = run_search(frame, spec, cfg, "run-6")
    metrics = json.loads(result.leaderboard.set_index("model_id").loc["lr", "metrics"])
    assert 50 < metrics["MAE (test split)"] < 150  # the noise's MAE is 100 * sqrt(2 / pi) = 80
    assert metrics["MAE (CV and test split)"] == pytest.approx((metrics["MAE"] * 360 + metrics["MAE (test split)"]
                                                                 * 120) / 480)
    assert result.model_id == "lr"


@pytest.mark.slow
def test_every_leader_is_tuned_within_the_budget_and_the_pooled_best_is_kept(tmp_path: Path) -> None:
    """tune_top 2 tunes both leaders (best pooled first), each kept only where tuning improved its
    pooled figure; the registered choice is the best pooled model after tuning."""
    result = run_search(_three_classes(), SPEC, _cfg(tmp_path / "cfg", {"tune_top": 2, "tune_iterations": 3}),
                        "run-7")
    board = result.leaderboard
    tuned = board[board["stage"].str.startswith("tuned")]
    assert sorted(tuned["model_id"]) == ["dt", "lr"]
    for _, row in tuned.iterrows():
        metrics = json.loads(row["metrics"])
        if row["stage"] == "tuned":  # kept: its pooled figure beats the default's
            default = json.loads(board[(board["model_id"] == row["model_id"]) & (board["stage"] == "compare")]
                                 .iloc[0]["metrics"])
            assert metrics["LogLoss (CV and test split)"] < default["LogLoss (CV and test split)"]
    assert result.model_id == "lr" and not any("tuning stopped" in n for n in result.notes)
