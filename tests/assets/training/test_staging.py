"""staging is replaced only by a candidate that beats it on the same rows (issue 11, observation 5:
`-mode update` replaced the drift-trained staging with a refresh of the stale prod, comparing
nothing)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from assets.training.staging import beats, comparable_metric, staging_comparison
from features import FeatureSpec
from lake.tables import BATCH_COLUMN

SPEC = FeatureSpec(task="classification", time_column="ts", target="y", id_column=None, numeric=("x",),
                   categorical=(), text=(), time_features=())


def stream(seed: int, batches: list[str], flip: bool = False) -> pd.DataFrame:
    """300 rows per batch; y follows x (or, with ``flip``, the opposite: the old regime)."""
    rng = np.random.default_rng(seed)
    n = 300 * len(batches)
    frame = pd.DataFrame({"x": rng.normal(0, 1, n), BATCH_COLUMN: np.repeat(batches, 300)})
    frame["y"] = ((frame["x"] + rng.normal(0, 0.5, n) > 0) ^ flip).astype(int)
    return frame


class FakeRegistry:
    """aliases / get / load, as ModelRegistry answers them."""

    def __init__(self, models: dict[int, tuple[Any, list[str]]], aliases: dict[str, int]) -> None:
        self.models, self._aliases = models, aliases

    def aliases(self) -> dict[str, int]:
        return dict(self._aliases)

    def get(self, version: int) -> dict:
        return {"version": version, "training_batches": json.dumps(self.models[version][1]),
                "input_schema": json.dumps({"spec": asdict(SPEC)})}

    def load(self, version: int) -> Any:
        return self.models[version][0]


def fitted(frame: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression().fit(frame[["x"]], frame["y"])


@pytest.fixture
def models() -> dict[str, Any]:
    old = stream(0, ["b1", "b2"], flip=True)   # stale prod's regime
    new = stream(1, ["b3", "b4"])              # the drifted regime staging was trained on
    return {"stale": fitted(old), "drift_trained": fitted(new), "holdout": stream(2, ["b5"])}


def test_a_refresh_of_stale_prod_does_not_replace_a_better_drift_trained_staging(models) -> None:
    registry = FakeRegistry({1: (models["stale"], ["b1", "b2"]), 2: (models["drift_trained"], ["b3", "b4"])},
                            {"prod": 1, "staging": 2})
    out = staging_comparison(registry, models["stale"], SPEC, models["holdout"], "AUC")
    assert out["replace"] is False and out["metric"] == "AUC" and out["staging_version"] == 2
    assert out["rows"] == 300 and out["batches"] == ["b5"]
    assert out["candidate"] < 0.2 and out["staging"] > 0.8
    assert out["reason"].startswith("candidate vs staging v2 on 300 hold-out rows staging never trained on: AUC ")
    assert out["reason"].endswith("so the candidate is kept out; staging v2 stays")


def test_a_better_candidate_replaces_staging(models) -> None:
    registry = FakeRegistry({1: (models["stale"], ["b1", "b2"]), 2: (models["stale"], ["b1", "b2"])},
                            {"prod": 1, "staging": 2})
    out = staging_comparison(registry, models["drift_trained"], SPEC, models["holdout"], "AUC")
    assert out["replace"] is True and out["candidate"] > out["staging"]
    assert out["reason"].endswith("so the candidate replaces staging v2")


def test_only_rows_staging_never_trained_on_count(models) -> None:
    holdout = pd.concat([stream(3, ["b4"]), models["holdout"]], ignore_index=True)
    registry = FakeRegistry({2: (models["drift_trained"], ["b3", "b4"])}, {"prod": 1, "staging": 2})
    out = staging_comparison(registry, models["stale"], SPEC, holdout, "AUC")
    assert out["rows"] == 300 and out["batches"] == ["b5"]
    # staging trained on every hold-out batch: nothing fair to compare on, so staging is kept, saying so
    registry = FakeRegistry({2: (models["drift_trained"], ["b3", "b4", "b5"])}, {"prod": 1, "staging": 2})
    kept = staging_comparison(registry, models["stale"], SPEC, models["holdout"], "AUC")
    assert kept["replace"] is False and kept["rows"] == 0
    assert "trained on every hold-out batch" in kept["reason"]


def test_no_staging_model_means_no_comparison(models) -> None:
    assert staging_comparison(FakeRegistry({}, {"prod": 1}), models["stale"], SPEC, models["holdout"], "AUC") is None


def test_beats_is_strict_and_falls_back_to_a_defined_metric() -> None:
    assert beats({"MAE": 17.9}, {"MAE": 66.2}, "MAE", "regression")["replace"] is True
    assert beats({"MAE": 17.9}, {"MAE": 17.9}, "MAE", "regression")["replace"] is False  # a tie keeps
    assert beats({"AUC": 0.7}, {"AUC": 0.8}, "AUC", "classification")["replace"] is False
    one_class = beats({"LogLoss": 0.2, "AUC": float("nan")}, {"LogLoss": 0.9}, "AUC", "classification")
    assert one_class["replace"] is True and one_class["metric"] == "LogLoss"
    assert "AUC is undefined on these rows" in one_class["reason"]
    assert comparable_metric([{"R2": float("nan"), "MAE": 1.0}], "R2", "regression") == (
        "MAE", "R2 is undefined on these rows (one class only, or a constant target), so MAE decides")
    assert comparable_metric([{}], "AUC", "classification")[0] is None
