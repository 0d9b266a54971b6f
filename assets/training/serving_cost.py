"""Serving cost in model choice: among the search's leaders within the CV noise of the best, the one
cheapest to serve.

The noise is one standard error of the best leader's CV mean (its fold scores' standard
deviation over the square root of the number of folds): the one-standard-error rule of Breiman
et al. (1984) and Hastie, Tibshirani & Friedman (2009, section 7.10), which takes the simplest
model within one standard error of the best because the CV figures cannot tell them apart.
"Simplest" here is what serving pays: the model's predict time on one row through the path the
router runs (the compiled scorer's kernel, :func:`serving.compiled.make_kernel`) and its pickled
size (what every router worker loads and keeps in memory). A cheaper leader replaces the best
only when it is ``factor`` times cheaper, so the choice does not follow timing noise.
"""

from __future__ import annotations

import math
import pickle
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

TIMED_CALLS = 15


@dataclass(frozen=True)
class ServingCost:
    """What serving a model costs: the median predict time of one row (ms) and its pickled size."""

    predict_ms: float
    artifact_bytes: int
    path: str  # the kernel the time was measured on, as serving.compiled names it

    def shown(self) -> dict[str, float]:
        """The leaderboard's figures of this cost."""
        return {"predict ms (1 row)": round(self.predict_ms, 4),
                "artifact MiB": round(self.artifact_bytes / 2**20, 3)}


def measure(model: Any, rows: pd.DataFrame, task: str) -> ServingCost:
    """Serving cost of a fitted estimator on transformed rows (one is timed) through the kernel the
    compiled scorer runs it with (LightGBM single-threaded as served, trees through their
    predictor, linear models as a dot product, others by their own predictor)."""
    from serving.compiled import make_kernel

    x = np.ascontiguousarray(rows.head(1).to_numpy(dtype=np.float64))
    kernel = make_kernel(model, task)
    def call() -> Any:
        return kernel.outputs(x)

    call()  # first call: lazy initialisation (LightGBM's booster, sklearn's checks) is not a row's cost
    times = []
    for _ in range(TIMED_CALLS):
        started = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - started))
    size = len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    return ServingCost(statistics.median(times), size, kernel.kind)


def standard_error(fold_values: Sequence[float]) -> float:
    """Standard error of a CV mean from its fold scores (NaN with fewer than two finite ones)."""
    values = [v for v in fold_values if v is not None and math.isfinite(v)]
    if len(values) < 2:
        return math.nan
    return statistics.stdev(values) / math.sqrt(len(values))


@dataclass(frozen=True)
class Choice:
    index: int          # the chosen candidate
    best: int           # the candidate with the best figure
    within: list[int]   # the candidates within the noise of the best
    note: str | None    # why the choice differs from the best, or why cost could not be used


def choose(figures: Sequence[float], higher_is_better: bool, best_se: float | None, *,
           costs: Sequence[ServingCost | None], names: Sequence[str], mode: str, factor: float,
           min_saving: float = 0.0) -> Choice:
    """The candidate to finalize: the best figure, unless one within ``best_se`` of it is ``factor``
    times cheaper in ``mode`` (``latency`` / ``size``; ``off`` keeps the best) and saves at least
    ``min_saving`` (ms per row for latency, MiB for size)."""
    sign = 1 if higher_is_better else -1
    best = max(range(len(figures)), key=lambda i: sign * figures[i])
    if mode == "off":
        return Choice(best, best, [best], None)
    if best_se is None or not math.isfinite(best_se):
        return Choice(best, best, [best], f"serving cost not used: the CV noise of {names[best]} is unknown "
                                          "(fewer than two finite fold scores)")
    within = [i for i in range(len(figures)) if math.isfinite(figures[i])
              and sign * (figures[best] - figures[i]) <= best_se]

    def cost(i: int) -> float:
        c = costs[i]
        if c is None:
            return math.inf
        return c.predict_ms if mode == "latency" else float(c.artifact_bytes)

    cheapest = min(within, key=lambda i: (cost(i), -sign * figures[i]))
    saving = (cost(best) - cost(cheapest)) / (1.0 if mode == "latency" else 2**20)
    if costs[best] is None or cheapest == best or cost(cheapest) * factor > cost(best) or saving < min_saving:
        return Choice(best, best, within, None)
    b, c = costs[best], costs[cheapest]
    note = (f"{names[cheapest]} chosen over the best figure {names[best]}: within its CV noise "
            f"({figures[cheapest]:.4f} vs {figures[best]:.4f}, one standard error {best_se:.4f}) and "
            f"{cost(best) / cost(cheapest):.1f}x cheaper by {mode} (predict {c.predict_ms:.3f} vs {b.predict_ms:.3f} "
            f"ms per row, {c.artifact_bytes / 2**20:.2f} vs {b.artifact_bytes / 2**20:.2f} MiB)")
    return Choice(cheapest, best, within, note)
