"""Benchmark: the whole A/B analysis of an experiment against a bare fixed-horizon test.

A synthetic experiment of n labelled requests (100k, and 1M unless --quick), half per variant,
binary predictions with accuracy 0.70 (A) and 0.71 (B), latencies, users; fixed seed. The frame
is what ``assets.ab.analysis.labelled_events`` returns, so the lake read is not timed (see the
README for it).

- baseline: what a hand-written check does, ``scipy.stats.ttest_ind`` (Welch) of B's and A's
  per-request errors, once, on all requests;
- ours: ``assets.ab.analysis.analyse``: per-variant figures, SRM and label balance, Welch with its
  interval, the mSPRT always-valid p-value at a look every ``ab.look_every`` (50) labelled requests
  per variant, the required sample, guardrails, the decision;
- previous: the same looks computed one ``compare_means`` per look, as before the vectorised
  running sums (100k only: it grows with the square of n).

Best of N repeats, time.perf_counter, same run; "ratio" is ours / baseline.

    python bench/ab_analysis.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
from scipy import stats

from assets.ab.analysis import analyse, planned_effect, request_loss, sequential_looks
from assets.ab.stats import compare_means, msprt_p_value
from config.schema import ABConfig
from lake.experiments import Experiment

SEED = 0


def experiment_frame(n: int, seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    variant = np.where(rng.random(n) < 0.5, "A", "B")
    label = (rng.random(n) < 0.3).astype(int)
    right = rng.random(n) < np.where(variant == "A", 0.70, 0.71)
    prediction = np.where(right, label, 1 - label)
    start = pd.Timestamp("2026-11-01", tz="UTC")
    event_time = start + pd.to_timedelta(np.sort(rng.random(n)) * 86400, unit="s")
    return pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)], "event_time": event_time,
        "user_id": [f"u{i}" for i in range(n)], "variant": variant, "experiment_id": "exp-bench",
        "model_version": np.where(variant == "A", 1, 2), "model_used": np.where(variant == "A", "prod", "staging"),
        "fallback_reason": None, "prediction": prediction.astype(str), "probability": rng.random(n),
        "latency_ms": rng.gamma(2.0, 5.0, n), "shadow_version": None, "shadow_prediction": None,
        "shadow_probability": np.nan, "error": None, "label": label.astype(str),
        "label_time": event_time + pd.Timedelta(minutes=5), "label_delay_s": 300.0})


def previous_looks(loss_a: np.ndarray, loss_b: np.ndarray, every: int, tau: float) -> float:
    """The looks as computed before: one compare_means per look (the running minimum returned)."""
    best = 1.0
    for k in range(every, min(len(loss_a), len(loss_b)) + 1, every):
        c = compare_means(loss_a[:k], loss_b[:k])
        best = min(best, msprt_p_value(c.difference, c.variance, tau))
    return best


def welch(loss_b: np.ndarray, loss_a: np.ndarray):
    return stats.ttest_ind(loss_b, loss_a, equal_var=False)


def best_of(repeats: int, fn, *args) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - started)
    return min(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k requests only")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = ABConfig()
    experiment = Experiment("exp-bench", 1, 2, 0.5, "running")
    print(f"{'requests':>10} {'baseline s':>11} {'ours s':>8} {'ratio':>6} | {'looks':>6} {'ours s':>8} "
          f"{'previous s':>11} {'speed-up':>9} | decision")
    for n in (100_000,) if args.quick else (100_000, 1_000_000):
        frame = experiment_frame(n)
        loss = request_loss(frame, "accuracy")
        loss_a = loss[frame["variant"] == "A"].to_numpy()
        loss_b = loss[frame["variant"] == "B"].to_numpy()
        base, _ = best_of(args.repeats, welch, loss_b, loss_a)
        ours, result = best_of(args.repeats, analyse, frame, experiment, "classification", cfg)
        tau = planned_effect(loss_a, cfg).mde  # ab.mde in loss units, as the analysis uses it
        looks_s, looks = best_of(args.repeats, sequential_looks, loss_a, loss_b, cfg.look_every, tau)
        previous, speedup = "-", "-"
        if n <= 100_000:  # quadratic: minutes at a million
            previous_s, best = best_of(1, previous_looks, loss_a, loss_b, cfg.look_every, tau)
            assert abs(best - looks["always_valid_p"].iloc[-1]) < 1e-9, "the two implementations disagree"
            previous, speedup = f"{previous_s:.2f}", f"{previous_s / looks_s:.0f}x"
        print(f"{n:>10,} {base:11.4f} {ours:8.2f} {ours / base:6.0f} | {len(looks):>6} {looks_s:8.3f} "
              f"{previous:>11} {speedup:>9} | {result.decision.action}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
