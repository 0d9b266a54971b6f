"""Sampling noise of a metric (evaluation.metric_standard_error) and the model-drift test built on
it (drift.stats.metric_worse_test, drift.compute.model_drift): a batch's drop counts as model
drift only beyond both samples' noise and beyond the gate's tolerance, on any scale."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from assets.drift.stats import metric_worse_test
from assets.training.evaluation import SE_RESAMPLES, metric_standard_error, metric_value

REPEATS = 400  # independent samples per empirical standard error: its relative error is ~1/sqrt(800) = 3.5%


def _binary(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A calibrated binary model: P(y = 1) = p, p spread over (0.05, 0.95)."""
    p = rng.uniform(0.05, 0.95, n)
    y = (rng.uniform(size=n) < p).astype(int)
    return y, (p > 0.5).astype(int), np.column_stack([1 - p, p])


def _regression(rng: np.random.Generator, n: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    truth = rng.normal(0, scale, n)
    return truth + rng.standard_t(8, n) * scale / 3, truth


@pytest.mark.parametrize("metric", ["LogLoss", "Accuracy", "AUC", "F1"])
def test_classification_standard_error_matches_the_spread_over_fresh_samples(metric: str) -> None:
    rng = np.random.default_rng(1)
    n = 600
    values = [metric_value(metric, y, pred, proba, labels=[0, 1], task="classification")
              for y, pred, proba in (_binary(rng, n) for _ in range(REPEATS))]
    empirical = float(np.std(values, ddof=1))
    y, pred, proba = _binary(rng, n)
    se = metric_standard_error(metric, y, pred, proba, labels=[0, 1], task="classification")
    # the estimate from one sample is within 20% of the truth (its own noise ~5-10% at n = 600)
    assert se == pytest.approx(empirical, rel=0.2)


@pytest.mark.parametrize("scale", [0.001, 1.0, 1e6])
@pytest.mark.parametrize("metric", ["MAE", "RMSE", "R2"])
def test_regression_standard_error_matches_the_spread_on_any_scale(metric: str, scale: float) -> None:
    rng = np.random.default_rng(2)
    n = 800
    values = [metric_value(metric, y, pred, None, labels=None, task="regression")
              for y, pred in (_regression(rng, n, scale) for _ in range(REPEATS))]
    empirical = float(np.std(values, ddof=1))
    y, pred = _regression(rng, n, scale)
    se = metric_standard_error(metric, y, pred, None, labels=None, task="regression")
    assert se == pytest.approx(empirical, rel=0.25)


def test_multiclass_auc_uses_the_bootstrap_and_is_nan_when_undefined() -> None:
    rng = np.random.default_rng(3)
    labels = ["a", "b", "c"]
    proba = rng.dirichlet([1, 1, 1], 500)
    y = np.array([rng.choice(labels, p=row) for row in proba])
    se = metric_standard_error("AUC", y, None, proba, labels=labels, task="classification", seed=0)
    assert 0.005 < se < 0.05 and SE_RESAMPLES == 200
    # the same seed gives the same answer; one class only: AUC undefined, so is its error
    assert se == metric_standard_error("AUC", y, None, proba, labels=labels, task="classification", seed=0)
    one = np.full(500, "a")
    assert np.isnan(metric_standard_error("AUC", one, None, proba, labels=labels, task="classification"))
    assert np.isnan(metric_standard_error("MAE", np.ones(1), np.ones(1), None, labels=None, task="regression"))


def test_worse_test_is_one_sided_and_combines_both_errors() -> None:
    loss = metric_worse_test(0.55, 0.50, 0.03, 0.04, higher_is_better=False)
    assert loss["worse_by"] == pytest.approx(0.05) and loss["standard_error"] == pytest.approx(0.05)
    assert loss["z"] == pytest.approx(1.0) and loss["p_value"] == pytest.approx(0.158655, abs=1e-6)
    auc = metric_worse_test(0.80, 0.70, 0.01, 0.01, higher_is_better=True)  # better: p near 1
    assert auc["worse_by"] == pytest.approx(-0.10) and auc["p_value"] > 0.999
    exact = metric_worse_test(0.5, 0.5, 0.0, 0.0, higher_is_better=False)
    assert exact["p_value"] == 0.5


def _toy_model_drift(rows: int, shift: float, tmp_path) -> dict:
    """model_drift of a fixed 'prod' (a DummyRegressor predicting 0) on a batch whose errors are
    |N(shift, 1)|, against a hold-out MAE of E|N(0, 1)| measured on 2,000 rows."""
    from sklearn.dummy import DummyRegressor

    from assets.drift.compute import model_drift
    from config import load_config
    from features import FeatureSpec
    from tests.conftest import write_config

    cfg = load_config(write_config(tmp_path))
    spec = FeatureSpec(task="regression", time_column="ts", target="amount", id_column=None, numeric=("x",),
                       categorical=(), text=(), time_features=())
    rng = np.random.default_rng(4)
    batch = pd.DataFrame({"x": np.zeros(rows), "amount": rng.normal(shift, 1.0, rows)})
    model = DummyRegressor(strategy="constant", constant=0.0).fit(np.zeros((2, 1)), [0.0, 0.0])
    mae = float(np.sqrt(2 / np.pi))
    prod_row = {"holdout_metrics": json.dumps({"MAE": mae, "RMSE": 1.0, "R2": 0.0}),
                "gate": json.dumps({"holdout_rows": 2000,
                                    "holdout_standard_errors": {"MAE": 0.6028 / np.sqrt(2000)}})}
    return model_drift(model, prod_row, batch, spec, cfg, outputs=(np.zeros(rows), None))


def test_model_drift_needs_a_drop_beyond_noise_and_beyond_the_gate_tolerance(tmp_path) -> None:
    # errors shifted by 0.3 sd: MAE 4.5% worse (E|N(0.3, 1)| = 0.834 against 0.798). On 200 rows
    # the batch's own noise (MAE se ~ 0.6 / sqrt(200) = 0.042, 5%) leaves it unsure: not drift
    small = _toy_model_drift(200, 0.3, tmp_path)
    assert small["model_metric"] == "MAE" and small["model_drift_tolerance"] == 0.01
    assert small["model_drop"] > 0.01 and small["model_p_value"] > 0.01 and small["model_drifted"] is False
    # the same shift on 20,000 rows is far beyond noise and beyond 1%: drift
    large = _toy_model_drift(20_000, 0.3, tmp_path)
    # (the 2,000-row hold-out's own noise, se 0.013, now dominates: z 2.6)
    assert large["model_drop"] == pytest.approx(0.045, abs=0.01) and large["model_p_value"] < 0.01
    assert large["model_drifted"] is True
    assert "z " in large["model_metric_note"] and "training.gate.tolerance" in large["model_metric_note"]
    # nothing changed, many rows: no drift
    same = _toy_model_drift(20_000, 0.0, tmp_path)
    assert abs(same["model_drop"]) < 0.02 and same["model_drifted"] is False
