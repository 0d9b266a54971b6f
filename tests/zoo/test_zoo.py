"""The dataset zoo through ``run.py -mode demo``, one real subprocess per dataset: every stage runs,
the registered model beats the naive baseline on its hold-out, and the A/B stage ends in a decision,
in ``continue`` with its reason, or in ``none`` saying why there was no experiment (no staging model
passed the gate against prod). The configs set the data's description only (see zoo/catalog.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from config import load_config
from lake.open import open_lake, open_registry
from lake.paths import PROJECT_ROOT, data_paths
from lake.tables import BATCH_COLUMN, CLEANED
from router.server import config_with_router, free_port
from zoo.catalog import ZOO, ZooDataset

pytestmark = pytest.mark.slow

DEMO_TIMEOUT_S = 900  # a bound for a stuck run, not a speed target: one dataset takes a minute or two
PARALLEL_DEMOS = 2


def naive_baseline(train: pd.Series, holdout: pd.Series, task: str) -> dict[str, float]:
    """What a model that ignores the features scores on the hold-out: the training majority class
    (accuracy) or the training median (MAE)."""
    if task == "classification":
        shares = train.astype(str).value_counts(normalize=True)
        # log loss of predicting the training class shares; a class unseen in training has no share
        probability = holdout.astype(str).map(shares)
        out = {"Accuracy": float((holdout.astype(str) == shares.index[0]).mean()), "AUC": 0.5}
        if probability.notna().all():
            out["LogLoss"] = float(-np.log(probability.astype(float)).mean())
        return out
    return {"MAE": float(np.abs(holdout.astype(float) - float(train.astype(float).median())).mean())}


def test_naive_baseline_values() -> None:
    naive = naive_baseline(pd.Series(["a", "a", "b", "b"]), pd.Series(["a", "b", "b", "b"]), "classification")
    assert naive["AUC"] == 0.5 and naive["LogLoss"] == pytest.approx(np.log(2))
    assert naive_baseline(pd.Series(["a", "a", "b"]), pd.Series(["a", "b", "b", "b"]), "classification")[
        "Accuracy"] == 0.25
    assert "LogLoss" not in naive_baseline(pd.Series(["a", "b"]), pd.Series(["c"]), "classification")
    assert naive_baseline(pd.Series([1.0, 2.0, 10.0]), pd.Series([2.0, 4.0]), "regression") == {"MAE": 1.0}


@dataclass(frozen=True)
class DemoRun:
    done: subprocess.CompletedProcess
    config: Path
    data: Path
    seconds: float


def run_demo(entry: ZooDataset, folder: Path) -> DemoRun:
    """``run.py -mode demo`` on ``entry`` in a fresh data root, its router on a port of its own."""
    config = config_with_router(entry.build(folder / "config"), port=free_port())
    data = folder / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEHOUSE_", "DAGSTER_"))}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "run.py", "-mode", "demo", "--config", str(config), "--data", str(data)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S,
                          check=False)
    (folder / "demo.out").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    return DemoRun(done, config, data, time.perf_counter() - started)


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DemoRun]:
    """Every zoo demo, two at a time: a demo waits on its router, its subprocesses and the disk for
    part of its run, so two overlap well on two cores (the zoo's share of ``make test``)."""
    with ThreadPoolExecutor(max_workers=PARALLEL_DEMOS) as pool:
        futures = {d.name: pool.submit(run_demo, d, tmp_path_factory.mktemp(d.name)) for d in ZOO}
        return {name: future.result() for name, future in futures.items()}


# the first test also waits for the module fixture, i.e. every demo of the zoo (~15 minutes on two
# cores): a bound for a stuck zoo, above the suite's per-test 600 s
@pytest.mark.timeout(DEMO_TIMEOUT_S * len(ZOO) // PARALLEL_DEMOS)
@pytest.mark.parametrize("entry", ZOO, ids=[d.name for d in ZOO])
def test_the_demo_runs_every_stage_on_the_dataset(entry: ZooDataset, demos: dict[str, DemoRun]) -> None:
    run = demos[entry.name]
    done, config, data = run.done, run.config, run.data
    tail = f"\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
    assert done.returncode == 0, tail
    stages = sorted({int(k) for k in re.findall(r"^\[(\d)/7\]", done.stdout, flags=re.M)})
    assert stages == list(range(8)), tail
    assert re.search(r"^  decision: (PROMOTE|ROLLBACK|CONTINUE|NONE): \S", done.stdout, flags=re.M), tail

    cfg = load_config(str(config))
    paths = data_paths(data)
    registry, lake = open_registry(cfg, paths), open_lake(cfg, paths)
    row = registry.get(registry.aliases()["prod"])
    cleaned = lake.read(CLEANED)
    target = cleaned[cfg.dataset.target]
    held = cleaned[BATCH_COLUMN].isin(json.loads(row["holdout_batches"]))
    trained = cleaned[BATCH_COLUMN].isin(json.loads(row["training_batches"]))
    baseline = naive_baseline(target[trained].dropna(), target[held].dropna(), cfg.dataset.task)
    holdout = json.loads(row["holdout_metrics"])
    decision = re.search(r"^  decision: (\w+): (.*)$", done.stdout, flags=re.M)
    # the zoo's table (docs/datasets.md): one JSON line per dataset beside its demo output
    (config.parent.parent / "zoo_row.json").write_text(json.dumps({
        "dataset": entry.name, "shape": entry.shape, "seconds": round(run.seconds), "algorithm": row["algorithm"],
        "holdout": holdout, "naive": baseline, "ab": f"{decision.group(1)}: {decision.group(2)}"}))
    if cfg.dataset.task == "classification":
        # the threshold-free skill: ranking (AUC) and probabilities (log loss) beat the class shares;
        # where the hold-out holds a class the model never saw, those are undefined and accuracy decides
        if "AUC" in holdout:
            assert holdout["AUC"] > 0.6 and holdout["LogLoss"] < baseline["LogLoss"], (holdout, baseline)
        else:
            assert holdout["Accuracy"] > baseline["Accuracy"], (holdout, baseline)
    else:
        assert holdout["MAE"] < baseline["MAE"], (holdout, baseline)
