"""SHAP stays bounded: deep forests whose exact TreeSHAP would take minutes use the approximate mode."""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.tree import DecisionTreeClassifier

from assets.training.interpretation import SHAP_BUDGET_SECONDS, exact_tree_shap_seconds, shap_summary


def _data(n: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"f{i}" for i in range(6)])
    return x, ((x["f0"] + rng.normal(size=n)) > 0).to_numpy().astype(int)  # noisy: deep, unpruned trees


def test_deep_forest_gets_approximate_shap_within_budget(tmp_path: Path) -> None:
    x, y = _data(20_000)
    forest = ExtraTreesClassifier(n_estimators=60, random_state=0, n_jobs=1).fit(x, y)
    assert exact_tree_shap_seconds(forest, 500) > 5 * SHAP_BUDGET_SECONDS
    started = time.perf_counter()
    doc = json.loads(shap_summary(forest, x, tmp_path).read_text())
    assert time.perf_counter() - started < SHAP_BUDGET_SECONDS
    assert doc["explainer"].startswith("TreeExplainer (approximate") and doc["rows"] == 500
    assert next(iter(doc["mean_abs_shap"])) == "f0"  # the only informative feature leads


def test_small_tree_gets_exact_shap(tmp_path: Path) -> None:
    x, y = _data(2_000)
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(x, y)
    assert exact_tree_shap_seconds(tree, 500) < 1
    doc = json.loads(shap_summary(tree, x, tmp_path).read_text())
    assert doc["explainer"] == "TreeExplainer" and next(iter(doc["mean_abs_shap"])) == "f0"
