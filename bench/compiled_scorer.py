"""Benchmark, in process: the compiled scorer against the PyCaret pipeline and the bare estimator.

For every family the AutoML can pick (lr, knn, dt, rf, et, lightgbm) and the fallback's histogram
boosting, fitted on the same mixed rows (two numbers, one with missing values; categories that
PyCaret one-hot, ordinal- and target-encodes; a text column it embeds with TF-IDF), four timings
of the same features, one row and 1,000 rows, median of ``--repeat`` calls:

- pipeline: ``serving.model_io.model_outputs`` (the registered pipeline's ``predict_proba`` /
  ``predict`` on a model frame), what scoring cost before this issue;
- compiled: ``CompiledScorer.predict(columns_of(features))``: input columns out of the frame,
  the translated preprocessing, the kernel (what the router, ``-mode inference`` and the drift
  step now run);
- compiled, from arrays: the same without ``columns_of`` (input already as arrays);
- floor: the kernel alone on the ready model matrix (for LightGBM the booster on a numpy
  row, the "floor" of the issue's measurement; for the others the estimator's own predictor or
  the dot product), i.e. the model with no preprocessing at all.

Ratios printed: pipeline / compiled (the speed-up) and compiled / floor (how far from the floor).
Every compiled scorer is verified against its pipeline first (``serving.compiled.verify``), so
the timings compare equal answers.

    python bench/compiled_scorer.py [--repeat 50] [--families lr,lightgbm]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from assets.training.fallback import fit_fallback
from assets.training.search import setup_experiment
from config.loader import load_config
from features import FeatureSpec, build_features
from serving.compiled import columns_of, compile_pipeline, verify
from serving.model_io import model_outputs

FAMILIES = ["lr", "knn", "dt", "rf", "et", "lightgbm", "fallback"]


def rows(n: int, seed: int = 0) -> pd.DataFrame:
    """Hourly rows with every kind of input the preprocessing handles, and a binary target."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "ts": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
        "x1": rng.normal(size=n), "x2": rng.gamma(2, 3, n),
        "c1": rng.choice(list("abcde"), n).astype(object), "c2": rng.choice(["yes", "no"], n),
        "c3": rng.choice([f"k{i}" for i in range(40)], n),
        "txt": [" ".join(rng.choice(["free", "cash", "meet", "team", "lunch", "prize"], 4)) for _ in range(n)],
    })
    df.loc[rng.random(n) < 0.1, "x1"] = np.nan
    signal = df["x1"].fillna(0) + (df["c1"] == "a") + df["txt"].str.count("free") * 0.5 + rng.normal(size=n)
    df["y"] = np.where(signal > 0.6, "late", "on time")
    return df


SPEC = FeatureSpec(task="classification", time_column="ts", target="y", id_column=None, numeric=("x1", "x2"),
                   categorical=("c1", "c2", "c3"), text=("txt",), time_features=("hour", "day_of_week"))


def median_ms(call: Callable[[], object], repeat: int) -> float:
    call()  # warm
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def floor_call(scorer, cols) -> Callable[[], object]:
    """The model alone on its ready matrix: LightGBM's booster, else the kernel."""
    x = scorer.matrix(cols)
    est = scorer.kernel.estimator
    if scorer.kernel.kind == "lightgbm":
        booster = est.booster_
        return lambda: booster.predict(x, num_threads=1)
    return lambda: scorer.kernel.outputs(x)


def timings(family: str, label: str, pipeline, scorer, frame: pd.DataFrame, *, repeat: int) -> str:
    """One line of the table: the four paths on ``frame`` and the two ratios."""
    cols = columns_of(frame, SPEC)
    pipe = median_ms(lambda: model_outputs(pipeline, frame, SPEC), repeat)
    comp = median_ms(lambda: scorer.predict(columns_of(frame, SPEC)), repeat)
    arrays = median_ms(lambda: scorer.predict(cols), repeat)
    floor = median_ms(floor_call(scorer, cols), repeat)
    return (f"{family:<9} {label:>5} {pipe:>12.3f} {comp:>12.3f} {arrays:>12.3f} {floor:>10.3f} "
            f"{pipe / comp:>9.1f}x {comp / floor:>10.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args()
    cfg = load_config()
    feats = build_features(rows(3000), SPEC)
    train, test = feats.iloc[:2000].reset_index(drop=True), feats.iloc[2000:].reset_index(drop=True)
    one, many = test.iloc[[0]].reset_index(drop=True), test.iloc[:1000].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = setup_experiment(train, SPEC, cfg, cfg.training.variants[0])
        print(f"{'family':<9} {'rows':>5} {'pipeline ms':>12} {'compiled ms':>12} {'from arrays':>12} "
              f"{'floor ms':>10} {'pipe/comp':>10} {'comp/floor':>11}")
        for family in args.families.split(","):
            if family == "fallback":
                pipeline = fit_fallback(train, SPEC)
            else:
                pipeline = exp.finalize_model(exp.create_model(family, verbose=False))
            scorer = compile_pipeline(pipeline, SPEC, train)
            check = verify(pipeline, scorer, test.iloc[:200].reset_index(drop=True), SPEC)
            if not check.ok:
                raise SystemExit(f"{family}: the compiled scorer differs from its pipeline: {check.reason}")
            for label, frame in (("1", one), ("1000", many)):
                print(timings(family, label, pipeline, scorer, frame, repeat=args.repeat), flush=True)

if __name__ == "__main__":
    main()
