"""The demo's A/B stage is sized by the data: the power calculation's need from prod's hold-out,
as many users as the latest batches can supply (issue 11: a fixed 24,000 crashed every small dataset)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from cli.demo import demo_sizing
from config import load_config
from lake.batch_files import BatchFiles
from lake.files import FileRoot
from lake.paths import data_paths
from stream.traffic import latest_rows
from tests.conftest import write_config


def _cfg(tmp_path: Path, override: dict | None = None):
    return load_config(write_config(tmp_path / "cfg", override))


def _n(mde: float, sd: float, alpha: float = 0.05, power: float = 0.8, k: int = 2) -> int:
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return math.ceil(k * (z * sd / mde) ** 2)


def test_accuracy_need_comes_from_prods_holdout_accuracy_and_the_smaller_arm(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, {"router": {"default_split_b": 0.25}})
    sizing = demo_sizing({"Accuracy": 0.8, "AUC": 0.85}, cfg)
    required = _n(0.02, math.sqrt(0.8 * 0.2))  # 6,280 labelled requests per variant at the defaults
    assert (sizing.metric, sizing.required_per_variant) == ("accuracy", required)
    assert sizing.users == math.ceil(required / 0.25)  # B gets a quarter of the users
    assert "loss sd 0.400 from prod's hold-out accuracy 0.800" in sizing.basis


def test_mae_spread_is_sqrt_of_rmse_squared_minus_mae_squared(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, {"dataset": {"task": "regression", "target": "amount", "numeric": ["temp", "visits"]},
                          "ab": {"mde": 1.0, "mde_unit": "absolute"}})
    sizing = demo_sizing({"MAE": 3.0, "RMSE": 5.0, "R2": 0.4}, cfg)
    assert sizing.required_per_variant == _n(1.0, 4.0)  # sqrt(25 - 9) = 4
    relative = demo_sizing({"MAE": 3.0, "RMSE": 5.0}, _cfg(tmp_path / "rel", {"dataset": {
        "task": "regression", "target": "amount", "numeric": ["temp", "visits"]}, "ab": {"mde": 0.1}}))
    assert relative.required_per_variant == _n(0.3, 4.0)  # 10% of A's MAE 3, on any scale of the target
    cents = demo_sizing({"MAE": 300.0, "RMSE": 500.0}, _cfg(tmp_path / "cents", {"dataset": {
        "task": "regression", "target": "amount", "numeric": ["temp", "visits"]}, "ab": {"mde": 0.1}}))
    assert cents.required_per_variant == relative.required_per_variant
    assert sizing.users == 2 * sizing.required_per_variant


def test_the_floor_and_the_unknown_spread(tmp_path: Path) -> None:
    easy = demo_sizing({"Accuracy": 0.999}, _cfg(tmp_path / "a", {"ab": {"min_samples": 500, "mde": 0.02,
                                                                                "mde_unit": "absolute"}}))
    assert easy.required_per_variant == 500  # the power calculation asks for fewer: the floor holds
    unknown = demo_sizing({"Accuracy": 0.8, "LogLoss": 0.4}, _cfg(tmp_path / "b", {"ab": {"metric": "log_loss"}}))
    assert (unknown.users, unknown.required_per_variant) == (None, None)
    assert unknown.describe(700, 700, ["batch_00003"]) == ("700 users drawn from the latest 1 batch(es) (700 rows): "
                                                           "every row they hold, since the spread of the "
                                                           "per-request log_loss is unknown before traffic")
    perfect = demo_sizing({"Accuracy": 1.0}, _cfg(tmp_path / "c"))
    assert perfect.users is None and "no spread" in perfect.basis


def test_paired_decisions_are_sized_on_the_shadow_share(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, {"router": {"shadow_share": 0.5}, "ab": {"decision_basis": "paired", "mde": 0.02,
                                                                   "mde_unit": "absolute"}})
    sizing = demo_sizing({"Accuracy": 0.8}, cfg)
    assert sizing.required_per_variant == _n(0.02, 0.4 * math.sqrt(2), k=1)
    assert sizing.users == 2 * sizing.required_per_variant


def test_describe_says_when_the_data_holds_fewer_users_than_the_test_needs(tmp_path: Path) -> None:
    sizing = demo_sizing({"Accuracy": 0.8}, _cfg(tmp_path))  # default: 10% of A's loss 0.2 = 0.02
    short = sizing.describe(1_200, 1_200, ["batch_00004", "batch_00003"])
    assert short.startswith("1,200 users drawn from the latest 2 batch(es) (1,200 rows): FEWER than the 12,560 "
                            "the A/B test needs for 6,280")
    assert short.endswith("the data holds no more, so `continue` is the expected decision")
    assert "FEWER" not in sizing.describe(12_560, 20_000, ["batch_00009"])


def _archive(tmp_path: Path, sizes: list[int]) -> Path:
    paths = data_paths(tmp_path / "data").ensure()
    for i, n in enumerate(sizes, start=1):
        pd.DataFrame({"k": [f"{i}-{j}" for j in range(n)]}).to_csv(paths.archive / f"batch_{i:05d}.csv", index=False)
    return paths.root


def test_users_are_pooled_from_the_latest_batches_as_many_as_they_hold(tmp_path: Path) -> None:
    files = BatchFiles(FileRoot(_archive(tmp_path, [300, 200, 150])))
    pool = latest_rows(files, 320)
    assert (pool.batches, pool.available, len(pool.rows)) == (["batch_00003", "batch_00002"], 350, 320)
    assert pool.rows["k"].str.split("-").str[0].isin(["2", "3"]).all()
    everything = latest_rows(files, 10_000)  # more than the data holds: all of it, no error
    assert (len(everything.rows), everything.available, len(everything.batches)) == (650, 650, 3)
    unseen = latest_rows(files, None, skip=frozenset({"batch_00001"}))
    assert (unseen.batches, len(unseen.rows)) == (["batch_00003", "batch_00002"], 350)
    with pytest.raises(LookupError, match="no ingested batch file"):
        latest_rows(BatchFiles(FileRoot(data_paths(tmp_path / "empty").ensure().root)), 10)


def test_the_demo_trains_on_the_first_half_of_the_stream() -> None:
    from cli.demo import initial_batches

    assert [initial_batches(n) for n in (1, 2, 3, 6, 7, 12)] == [1, 2, 2, 3, 3, 6]
    assert initial_batches(12, 4) == 4 and initial_batches(3, 10) == 3 and initial_batches(6, 1) == 2
