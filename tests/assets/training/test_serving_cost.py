"""Serving cost in model choice: the one-standard-error rule over the leaders, with the cost
measured on the kernel serving runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from assets.training.search import fold_values
from assets.training.serving_cost import ServingCost, choose, measure, standard_error

FOREST = ServingCost(predict_ms=4.0, artifact_bytes=430 * 2**20, path="trees")
BOOST = ServingCost(predict_ms=0.05, artifact_bytes=2 * 2**20, path="lightgbm")
LINEAR = ServingCost(predict_ms=0.03, artifact_bytes=3000, path="linear")
NAMES = ["et", "lightgbm", "lr"]


def test_standard_error_of_fold_scores() -> None:
    assert standard_error([0.80, 0.84, 0.82]) == pytest.approx(0.02 / math.sqrt(3))
    assert math.isnan(standard_error([0.8])) and math.isnan(standard_error([0.8, float("nan")]))


def test_a_model_within_the_noise_and_much_cheaper_is_chosen() -> None:
    # AUC: et best 0.850, lightgbm 0.845 within one standard error 0.01, lr 0.80 outside it
    pick = choose([0.850, 0.845, 0.80], True, 0.01, costs=[FOREST, BOOST, LINEAR], names=NAMES, mode="latency",
                  factor=2.0, min_saving=0.5)
    assert (pick.best, pick.index, pick.within) == (0, 1, [0, 1])
    assert "lightgbm chosen over the best figure et" in pick.note and "80.0x cheaper by latency" in pick.note
    by_size = choose([0.850, 0.845, 0.80], True, 0.01, costs=[FOREST, BOOST, LINEAR], names=NAMES, mode="size",
                     factor=2.0)
    assert by_size.index == 1 and "215.0x cheaper by size" in by_size.note


def test_lower_is_better_and_the_cheapest_of_several_within_the_noise() -> None:
    # MAE: et 10.0 best, lightgbm 10.3 and lr 10.4 both within 0.5: lr is cheapest by latency
    pick = choose([10.0, 10.3, 10.4], False, 0.5, costs=[FOREST, BOOST, LINEAR], names=NAMES, mode="latency",
                  factor=2.0)
    assert pick.index == 2 and pick.within == [0, 1, 2]


def test_the_best_stays_when_no_cheaper_model_is_in_the_noise_or_cheap_enough() -> None:
    outside = choose([0.85, 0.80, 0.79], True, 0.01, costs=[FOREST, BOOST, LINEAR], names=NAMES, mode="latency",
                     factor=2.0)
    assert outside.index == 0 and outside.note is None
    similar = ServingCost(predict_ms=3.0, artifact_bytes=400 * 2**20, path="trees")  # 1.3x: timing noise
    close = choose([0.85, 0.849], True, 0.01, costs=[FOREST, similar], names=NAMES[:2], mode="latency", factor=2.0)
    assert close.index == 0 and close.within == [0, 1]
    # 4x cheaper but only 25 microseconds a row: not worth a figure within the noise
    tiny = choose([0.6536, 0.6206], True, 0.0406, costs=[ServingCost(0.033, 340_000, "lightgbm"),
                                                         ServingCost(0.008, 3000, "linear")],
                  names=NAMES[1:], mode="latency", factor=2.0, min_saving=0.5)
    assert tiny.index == 0 and tiny.within == [0, 1]
    assert choose([0.850, 0.845], True, 0.01, costs=[FOREST, BOOST], names=NAMES[:2], mode="size", factor=2.0,
                  min_saving=16.0).index == 1
    off = choose([0.850, 0.845], True, 0.01, costs=[FOREST, BOOST], names=NAMES[:2], mode="off", factor=2.0)
    assert off.index == 0


def test_unknown_noise_or_cost_keeps_the_best_and_says_why() -> None:
    pick = choose([0.850, 0.845], True, float("nan"), costs=[FOREST, BOOST], names=NAMES[:2], mode="latency",
                  factor=2.0)
    assert pick.index == 0 and "CV noise of et is unknown" in pick.note
    unmeasured = choose([0.850, 0.845], True, 0.01, costs=[FOREST, None], names=NAMES[:2], mode="latency",
                        factor=2.0)
    assert unmeasured.index == 0


def test_measure_times_the_serving_kernel_and_pickles_the_model() -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(300, 5)), columns=[f"f{i}" for i in range(5)])
    y = (x["f0"] > 0).astype(int)
    small = measure(LogisticRegression().fit(x, y), x, "classification")
    big = measure(RandomForestClassifier(n_estimators=60, random_state=0).fit(x, y), x, "classification")
    assert (small.path, big.path) == ("linear", "trees")
    assert 0 < small.predict_ms < big.predict_ms and small.artifact_bytes * 20 < big.artifact_bytes
    assert set(small.shown()) == {"predict ms (1 row)", "artifact MiB"}


def test_fold_values_leave_out_mean_and_std() -> None:
    grid = pd.DataFrame({"AUC": [0.8, 0.82, 0.84, 0.82, 0.016]}, index=[0, 1, 2, "Mean", "Std"])
    assert fold_values(grid, "AUC") == [0.8, 0.82, 0.84]
    assert fold_values(grid, "F1") == [] and fold_values(None, "AUC") == []
