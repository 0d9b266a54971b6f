"""Benchmark: what the full per-feature drift statistics cost compared with a bare KS test.

Synthetic reference and current frames with the same number of rows (10k, and 1M unless
--quick), 20 features: 14 numeric float columns (normal, log-normal, gamma, uniform; ~1% NaN)
and 6 categorical string columns (~20 categories each, skewed frequencies). The current frame is
slightly shifted on some columns, so a few features really drift. Fixed seed.

- baseline: scipy.stats.ks_2samp alone on each column (NaNs dropped; categoricals on their
  integer codes), summed over the 20 columns;
- ours: assets.drift_stats.numeric_drift (quantile-bin PSI with a missing bin, KS, Wasserstein,
  Jensen-Shannon) on the numeric columns, categorical_drift (PSI over categories, chi-square) on
  the string columns, then flag_features (Holm correction, effect-size rule) with the default
  DriftConfig, i.e. what assets.drift.compute.feature_drifts + flag_features do per batch.

Both are timed with time.perf_counter in the same run, best of N repeats. "ratio" is ours /
baseline: how many times a KS-only check the full statistics cost. rows/s counts the rows of
one side (n) per second over all 20 features. The last columns split ours into its parts.

    python bench/drift.py [--quick] [--repeats 3] [--large-repeats 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
from scipy import stats

from assets.drift.stats import categorical_drift, flag_features, numeric_drift
from config.schema import DriftConfig

N_NUMERIC, N_CATEGORICAL, N_CATEGORIES = 14, 6, 20
MISSING_SHARE = 0.01


@dataclass
class Frames:
    """Reference and current data of one size, in the shapes both contenders consume."""

    numeric_ref: list[np.ndarray]    # float, with NaNs
    numeric_cur: list[np.ndarray]
    cat_ref: list[pd.Series]         # object strings, as the features table holds them
    cat_cur: list[pd.Series]
    codes_ref: list[np.ndarray]      # the same categories as integer codes (baseline)
    codes_cur: list[np.ndarray]


def _numeric(rng: np.random.Generator, kind: int, n: int, shift: float) -> np.ndarray:
    """One numeric column; ``shift`` moves it by that many of its standard deviations."""
    if kind == 0:
        values, std = rng.normal(50.0, 10.0, n), 10.0
    elif kind == 1:
        values, std = rng.lognormal(1.0, 0.5, n), 1.5
    elif kind == 2:
        values, std = rng.gamma(2.0, 3.0, n), 4.2
    else:
        values, std = rng.uniform(0.0, 100.0, n), 28.9
    values = values + shift * std
    values[rng.random(n) < MISSING_SHARE] = np.nan
    return values


def _category_probs(rng: np.random.Generator, tilt: float) -> np.ndarray:
    """Zipf-like frequencies over the categories; ``tilt`` > 0 moves mass towards the rare ones."""
    weights = 1.0 / np.arange(1, N_CATEGORIES + 1) ** (1.0 - tilt)
    weights *= rng.uniform(0.9, 1.1, N_CATEGORIES)
    return weights / weights.sum()


def make_frames(n: int, seed: int) -> Frames:
    rng = np.random.default_rng(seed)
    numeric_ref, numeric_cur = [], []
    for i in range(N_NUMERIC):
        shift = 0.5 if i % 5 == 0 else (0.02 if i % 5 == 1 else 0.0)  # 3 drift clearly, 3 negligibly
        numeric_ref.append(_numeric(rng, i % 4, n, 0.0))
        numeric_cur.append(_numeric(rng, i % 4, n, shift))
    labels = np.array([f"c{j:02d}" for j in range(N_CATEGORIES)], dtype=object)
    cat_ref, cat_cur, codes_ref, codes_cur = [], [], [], []
    for i in range(N_CATEGORICAL):
        tilt = 0.6 if i == 0 else 0.0  # one categorical drifts
        ref_codes = rng.choice(N_CATEGORIES, n, p=_category_probs(np.random.default_rng(seed + i), 0.0))
        cur_codes = rng.choice(N_CATEGORIES, n, p=_category_probs(np.random.default_rng(seed + i), tilt))
        ref_s, cur_s = pd.Series(labels[ref_codes]), pd.Series(labels[cur_codes])
        ref_s[rng.random(n) < MISSING_SHARE] = None
        cur_s[rng.random(n) < MISSING_SHARE] = None
        codes_ref.append(ref_codes)
        codes_cur.append(cur_codes)
        cat_ref.append(ref_s)
        cat_cur.append(cur_s)
    return Frames(numeric_ref, numeric_cur, cat_ref, cat_cur, codes_ref, codes_cur)


def baseline(f: Frames) -> int:
    """KS alone per column; returns how many columns have p < 0.01 (uncorrected)."""
    significant = 0
    for ref, cur in zip(f.numeric_ref, f.numeric_cur, strict=True):
        significant += stats.ks_2samp(ref[~np.isnan(ref)], cur[~np.isnan(cur)]).pvalue < 0.01
    for ref, cur in zip(f.codes_ref, f.codes_cur, strict=True):
        significant += stats.ks_2samp(ref, cur).pvalue < 0.01
    return int(significant)


def ours(f: Frames, cfg: DriftConfig) -> tuple[int, float, float, float]:
    """The full statistics and flags; returns drifted features and seconds of numeric, categorical, flags."""
    t0 = time.perf_counter()
    drifts = [numeric_drift(f"n{i:02d}", ref, cur, bins=cfg.bins, epsilon=cfg.epsilon)
              for i, (ref, cur) in enumerate(zip(f.numeric_ref, f.numeric_cur, strict=True))]
    t1 = time.perf_counter()
    drifts += [categorical_drift(f"c{i}", ref, cur, epsilon=cfg.epsilon, max_categories=cfg.max_categories)
               for i, (ref, cur) in enumerate(zip(f.cat_ref, f.cat_cur, strict=True))]
    t2 = time.perf_counter()
    flags = flag_features(drifts, alpha=cfg.alpha, correction=cfg.correction, effect=cfg.effect,
                          min_effect=cfg.effect_threshold, min_rows=cfg.min_current_rows)
    t3 = time.perf_counter()
    return int(flags["drifted"].sum()), t1 - t0, t2 - t1, t3 - t2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the 10k-row case")
    parser.add_argument("--repeats", type=int, default=3, help="repeats at 10k rows (best is reported)")
    parser.add_argument("--large-repeats", type=int, default=2, help="repeats at 1M rows (best is reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = DriftConfig()
    cases = [(10_000, args.repeats)] + ([] if args.quick else [(1_000_000, args.large_repeats)])
    print(f"{N_NUMERIC} numeric + {N_CATEGORICAL} categorical features ({N_CATEGORIES} categories), "
          f"reference and current of n rows each; best of N repeats")
    print(f"{'rows (n)':>10} {'N':>2} | {'baseline KS (s)':>15} {'rows/s':>11} | {'ours (s)':>9} {'rows/s':>11} | "
          f"{'ratio':>6} | {'KS p<.01':>8} {'drifted':>7} | {'numeric':>8} {'categ.':>8} {'flags':>7}")
    for n, repeats in cases:
        frames = make_frames(n, args.seed)
        base_best = ours_best = float("inf")
        parts = (0.0, 0.0, 0.0)
        significant = n_drifted = 0
        for _ in range(max(repeats, 1)):
            started = time.perf_counter()
            significant = baseline(frames)
            base_best = min(base_best, time.perf_counter() - started)
            started = time.perf_counter()
            n_drifted, *split = ours(frames, cfg)
            elapsed = time.perf_counter() - started
            if elapsed < ours_best:
                ours_best, parts = elapsed, tuple(split)
        print(f"{n:>10,} {repeats:>2} | {base_best:>15.3f} {n / base_best:>11,.0f} | {ours_best:>9.3f} "
              f"{n / ours_best:>11,.0f} | {ours_best / base_best:>6.2f} | {significant:>8} {n_drifted:>7} | "
              f"{parts[0]:>8.3f} {parts[1]:>8.3f} {parts[2]:>7.3f}", flush=True)


if __name__ == "__main__":
    main()
