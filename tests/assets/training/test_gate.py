"""The registration gate's floor: the naive baseline on the same hold-out unless one is configured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.training.evaluation import gate_decision, metrics_of, naive_metrics
from config import load_config
from features import FeatureSpec
from tests.conftest import write_config


def _spec(task: str) -> FeatureSpec:
    return FeatureSpec(task=task, time_column="t", target="y", id_column=None, numeric=("x",), categorical=(),
                       text=(), time_features=())


def _cfg(tmp_path: Path, task: str, gate: dict | None = None):
    return load_config(str(write_config(tmp_path / task, {"dataset": {"task": task}, "training": {
        "metric": "MAE" if task == "regression" else "AUC", **({"gate": gate} if gate else {})}})))


def test_the_naive_baseline_is_the_training_median_or_class_shares() -> None:
    train = pd.DataFrame({"x": [0.0] * 5, "y": [1.0, 2.0, 3.0, 100.0, 4.0]})
    holdout = pd.DataFrame({"x": [0.0] * 2, "y": [3.0, 5.0]})
    assert naive_metrics(train, holdout, _spec("regression"))["MAE"] == 1.0  # median 3
    train = pd.DataFrame({"x": [0.0] * 4, "y": ["no", "no", "no", "yes"]})
    holdout = pd.DataFrame({"x": [0.0] * 4, "y": ["no", "yes", "yes", "yes"]})
    naive = naive_metrics(train, holdout, _spec("classification"))
    assert naive["AUC"] == 0.5 and naive["Accuracy"] == 0.25


def test_a_price_model_is_judged_against_the_naive_model_not_a_fixed_number(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "regression")
    assert cfg.training.gate.min_score is None
    naive = {"MAE": 40_000.0}  # cents: any fixed floor (the old default was 0.55) is wrong on this scale
    passed = gate_decision({"MAE": 9_000.0}, None, cfg, naive)
    assert passed["passed"] and passed["floor"] == 40_000.0
    assert passed["floor_source"] == "the naive baseline on the same hold-out" and passed["naive"] == naive
    failed = gate_decision({"MAE": 40_000.0}, None, cfg, naive)  # no better than ignoring the features
    assert not failed["passed"] and "does not beat the floor 40000.0000" in failed["reason"]


def test_a_configured_floor_wins_and_a_missing_floor_fails_loudly(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "classification", {"min_score": 0.7})
    decision = gate_decision({"AUC": 0.65}, None, cfg, {"AUC": 0.5})
    assert not decision["passed"] and decision["floor_source"] == "training.gate.min_score"
    with pytest.raises(ValueError, match="needs a floor for AUC"):
        gate_decision({"AUC": 0.9}, None, _cfg(tmp_path, "classification"))


def test_a_class_the_model_never_saw_leaves_auc_and_log_loss_out() -> None:
    y = pd.Series(["a", "b", "c"])
    proba = pd.DataFrame({"a": [0.7, 0.2, 0.5], "b": [0.3, 0.8, 0.5]}).to_numpy()
    out = metrics_of(y, pd.Series(["a", "b", "a"]).to_numpy(dtype=object), proba, ["a", "b"], "classification")
    assert set(out) == {"Accuracy", "F1"} and out["Accuracy"] == pytest.approx(2 / 3)


def test_an_undefined_sort_metric_hands_the_decision_to_accuracy(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "classification", {"min_score": 0.7})  # an AUC floor: not in accuracy's units
    decision = gate_decision({"Accuracy": 0.8, "F1": 0.7}, {"Accuracy": 0.78, "AUC": 0.9}, cfg,
                             {"Accuracy": 0.6, "AUC": 0.5})
    assert decision["passed"] and decision["metric"] == "Accuracy" and decision["floor"] == 0.6
    assert decision["reason"].startswith("AUC is undefined on this hold-out, so Accuracy decides: ")
    worse = gate_decision({"Accuracy": 0.7}, {"Accuracy": 0.78}, cfg, {"Accuracy": 0.6})
    assert not worse["passed"] and "worse than prod's 0.7800" in worse["reason"]


def test_a_class_that_appears_late_in_the_window_is_named_not_crashed_on() -> None:
    from assets.training.search import late_classes

    frame = pd.DataFrame({"x": range(10), "y": ["a", "b"] * 4 + ["c", "c"]})
    assert late_classes(frame, _spec("classification"), 0.8) == {"c": 2}  # after the training split
    # in the split's later half (rows 4-8 of 9), where the folds validate: late too
    assert late_classes(frame, _spec("classification"), 0.9) == {"c": 2}
    early = pd.DataFrame({"x": range(10), "y": ["a", "b", "a", "c", "b", "a", "b", "a", "b", "c"]})
    assert late_classes(early, _spec("classification"), 0.8) == {}  # "c" at row 3, within the first half
    assert late_classes(frame.iloc[:8], _spec("classification"), 0.8) == {}
    assert late_classes(frame.assign(y=range(10)), _spec("regression"), 0.8) == {}


def test_the_cv_folds_start_validating_once_every_class_has_appeared() -> None:
    from assets.training.search import cv_folds

    y = pd.Series(["a", "b"] * 50)  # 80 training rows, 3 folds of 20: the first trains on rows 0-19
    assert cv_folds(y, 0.8, 3) == "timeseries"
    y[:35] = "a"  # "b" first at row 35: the folds shrink to validate rows 36-79 (3 x 14, from row 38)
    folds = list(cv_folds(y, 0.8, 3).split(np.zeros((80, 1))))
    assert [(len(tr), te.min(), te.max()) for tr, te in folds] == [(38, 38, 51), (52, 52, 65), (66, 66, 79)]
    assert all(set(y[tr]) == {"a", "b"} for tr, _ in folds)


def test_the_tolerance_against_prod_is_a_share_of_prods_metric(tmp_path: Path) -> None:
    """An absolute 0.01 let a failure-rate model five times worse than prod through (MAE 0.005 vs
    0.001) and refused a price model 0.5% worse (MAE in cents); 1% of prod's value is right on both."""
    cfg = _cfg(tmp_path, "regression")
    assert cfg.training.gate.tolerance == 0.01
    rate = gate_decision({"MAE": 0.005}, {"MAE": 0.001}, cfg, {"MAE": 0.02})
    assert not rate["passed"] and rate["reason"] == (
        "MAE=0.0050 is worse than prod's 0.0010 beyond the tolerance (1% of prod's, 1e-05)")
    assert gate_decision({"MAE": 10_050.0}, {"MAE": 10_000.0}, cfg, {"MAE": 40_000.0})["passed"]
    assert not gate_decision({"MAE": 10_150.0}, {"MAE": 10_000.0}, cfg, {"MAE": 40_000.0})["passed"]
