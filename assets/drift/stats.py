"""Drift statistics: plain functions over arrays and frames (scipy), no Dagster, no lake.

Per feature, a *significance* test (two-sample KS for numeric values, chi-square homogeneity for
categories) answers "could both samples come from one distribution?", and an *effect size* (PSI,
Wasserstein distance in reference standard deviations, or Jensen-Shannon distance) answers "how
far apart are they?". At large n every test is significant for differences nobody cares about,
so a feature counts as drifted only when both say so (see :func:`flag_features`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from features import CALENDAR_PERIODS, period_text

MISSING = "<missing>"
OTHER = "<other>"


# ---- binning and PSI ----------------------------------------------------------------------
def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates merged, so ties make fewer bins)."""
    values = reference[~np.isnan(reference)]
    if values.size == 0:
        return np.array([])
    inner = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(inner)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin (right-closed at the inner edges, open at both ends) plus one missing bin."""
    missing = np.isnan(values)
    present = values[~missing]
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=edges.size + 1)
    return np.append(counts, missing.sum())


def smoothed_shares(counts: np.ndarray, epsilon: float) -> np.ndarray:
    """Shares with additive smoothing, so an empty bin has a small positive share, not zero."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    if total <= 0:  # an empty sample says nothing: uniform, so it is no evidence either way
        return np.full(counts.size, 1.0 / counts.size)
    return (counts / total + epsilon) / (1.0 + epsilon * counts.size)


def psi(reference_counts: np.ndarray, current_counts: np.ndarray, epsilon: float = 1e-4) -> float:
    """Population stability index, sum of (q - p) * ln(q / p) over bins; >= 0, and 0 for equal shares.

    Every term is non-negative (q - p and ln(q / p) have the same sign), so PSI is a symmetric
    KL divergence. Conventional reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift.
    """
    p = smoothed_shares(reference_counts, epsilon)
    q = smoothed_shares(current_counts, epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


# ---- per-feature statistics ---------------------------------------------------------------
@dataclass(frozen=True)
class FeatureDrift:
    """Statistics of one feature, current batch against the reference."""

    feature: str
    kind: str                      # numeric | categorical
    n_reference: int
    n_current: int
    psi: float
    test: str                      # ks | chi2 | none
    statistic: float | None
    p_value: float | None
    wasserstein_std: float | None  # numeric: Wasserstein distance / reference std
    js_distance: float             # Jensen-Shannon distance of the binned shares (base 2, in [0, 1])
    reference_mean: float | None
    current_mean: float | None
    missing_reference: float
    missing_current: float
    unseen_share: float | None     # categorical: share of current rows with a category the reference lacks


def numeric_drift(feature: str, reference: np.ndarray, current: np.ndarray, *, bins: int = 10,
                  epsilon: float = 1e-4) -> FeatureDrift:
    """PSI over the reference's quantile bins (missing values are a bin of their own), two-sample
    KS test and normalised Wasserstein distance on the present values."""
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    edges = quantile_edges(reference, bins)
    ref_counts, cur_counts = bin_counts(reference, edges), bin_counts(current, edges)
    ref_present, cur_present = reference[~np.isnan(reference)], current[~np.isnan(current)]
    statistic = p_value = wasserstein = None
    test = "none"
    if ref_present.size and cur_present.size:
        ks = stats.ks_2samp(ref_present, cur_present)
        statistic, p_value, test = float(ks.statistic), float(ks.pvalue), "ks"
        # KS sees present values only; a change in how often the value is missing is drift too,
        # tested on the present/missing counts. Two tests per feature: Bonferroni over both.
        missing = missing_p_value(ref_counts[-1], reference.size, cur_counts[-1], current.size)
        if missing is not None:
            p_value, test = min(1.0, 2 * min(p_value, missing)), "ks" if p_value <= missing else "ks+missing"
        scale = float(np.std(ref_present))
        distance = stats.wasserstein_distance(_sample(ref_present), _sample(cur_present))
        # A constant reference has no spread to compare with: any move is infinitely many stds.
        wasserstein = float(distance / scale) if scale > 0 else (0.0 if distance == 0 else float("inf"))
    return FeatureDrift(
        feature=feature, kind="numeric", n_reference=int(reference.size), n_current=int(current.size),
        psi=psi(ref_counts, cur_counts, epsilon), test=test, statistic=statistic, p_value=p_value,
        wasserstein_std=wasserstein, js_distance=_js(ref_counts, cur_counts),
        reference_mean=float(ref_present.mean()) if ref_present.size else None,
        current_mean=float(cur_present.mean()) if cur_present.size else None,
        missing_reference=_share(reference.size - ref_present.size, reference.size),
        missing_current=_share(current.size - cur_present.size, current.size), unseen_share=None)


EFFECT_SAMPLE_ROWS = 100_000


def _sample(values: np.ndarray, rows: int = EFFECT_SAMPLE_ROWS) -> np.ndarray:
    """At most ``rows`` values (fixed seed). An effect size needs no more: the standard error of
    Wasserstein / std at 100k rows is about 0.003, against a threshold of 0.1; the tests' p-values
    still use every row."""
    if values.size <= rows:
        return values
    return np.random.default_rng(0).choice(values, rows, replace=False)


def missing_p_value(ref_missing: int, ref_total: int, cur_missing: int, cur_total: int) -> float | None:
    """Chi-square test that both samples have the same missing share; None when neither has any."""
    if ref_missing == 0 and cur_missing == 0:
        return None
    table = np.array([[ref_missing, ref_total - ref_missing], [cur_missing, cur_total - cur_missing]])
    if (table.sum(axis=0) == 0).any():  # everything missing on both sides
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def category_counts(reference: pd.Series, current: pd.Series,
                    max_categories: int = 50) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Aligned counts over the reference's most frequent categories, ``<other>`` (rarer reference
    categories and every category the reference never saw) and ``<missing>``."""
    ref = _as_text(reference).where(reference.notna(), MISSING)
    cur = _as_text(current).where(current.notna(), MISSING)
    ref_freq = ref[ref != MISSING].value_counts()
    kept = ref_freq.index[:max_categories].tolist()
    labels = [*kept, OTHER, MISSING]
    known = set(kept) | {MISSING}

    def counts(values: pd.Series) -> np.ndarray:
        folded = values.where(values.isin(known), OTHER)
        return folded.value_counts().reindex(labels, fill_value=0).to_numpy()

    return labels, counts(ref), counts(cur)


def categorical_drift(feature: str, reference: pd.Series, current: pd.Series, *, epsilon: float = 1e-4,
                      max_categories: int = 50) -> FeatureDrift:
    """PSI over categories (unseen ones counted in ``<other>``, missing in ``<missing>``) and the
    chi-square test of homogeneity of the 2 x k table of counts."""
    _, ref_counts, cur_counts = category_counts(reference, current, max_categories)
    seen = set(_as_text(reference.dropna()))
    present = _as_text(current.dropna())
    unseen = float((~present.isin(seen)).sum() / len(current)) if len(current) else 0.0
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    statistic = p_value = None
    test = "none"
    if table.shape[1] >= 2 and ref_counts.sum() and cur_counts.sum():
        chi2 = stats.chi2_contingency(table, correction=False)
        statistic, p_value, test = float(chi2.statistic), float(chi2.pvalue), "chi2"
    elif ref_counts.sum() and cur_counts.sum():
        statistic, p_value, test = 0.0, 1.0, "chi2"  # one category on both sides: identical
    return FeatureDrift(
        feature=feature, kind="categorical", n_reference=len(reference), n_current=len(current),
        psi=psi(ref_counts, cur_counts, epsilon), test=test, statistic=statistic, p_value=p_value,
        wasserstein_std=None, js_distance=_js(ref_counts, cur_counts), reference_mean=None, current_mean=None,
        missing_reference=_share(int(reference.isna().sum()), len(reference)),
        missing_current=_share(int(current.isna().sum()), len(current)), unseen_share=unseen)


def _as_text(values: pd.Series) -> pd.Series:
    """Categories as text, so 1 and "1" are one category in every count (missing stays missing)."""
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        return values.astype("object")  # already text (the usual case): skip a slow per-value str()
    return values.astype("object").where(values.isna(), values.astype(str))


def _share(part: int, total: int) -> float:
    return float(part / total) if total else 0.0


def _js(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    if ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return 0.0
    return float(jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum(), base=2))


# ---- deciding which features drifted ------------------------------------------------------
def adjust_p_values(p_values: Sequence[float | None], method: str) -> list[float | None]:
    """p-values corrected for testing many features at once (None stays None).

    ``holm`` (default) controls the family-wise error like Bonferroni but is uniformly more
    powerful; ``bh`` controls the false discovery rate (scipy's Benjamini-Hochberg); ``none``.
    """
    idx = [i for i, p in enumerate(p_values) if p is not None]
    raw = np.array([p_values[i] for i in idx], dtype=float)
    out: list[float | None] = list(p_values)
    if raw.size == 0 or method == "none":
        return out
    m = raw.size
    if method == "bonferroni":
        adjusted = np.minimum(raw * m, 1.0)
    elif method == "holm":
        order = np.argsort(raw)
        stepped = np.maximum.accumulate(raw[order] * (m - np.arange(m)))
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
    elif method == "bh":
        adjusted = stats.false_discovery_control(raw, method="bh")
    else:
        raise ValueError(f"unknown p-value correction {method!r}; expected holm, bonferroni, bh or none")
    for i, value in zip(idx, adjusted, strict=True):
        out[i] = float(value)
    return out


def effect_size(d: FeatureDrift, measure: str) -> float:
    """The configured effect size of a feature: ``psi``, ``wasserstein`` (numeric; categorical
    features use Jensen-Shannon instead, having no distance between categories) or ``jensen_shannon``."""
    if measure == "psi":
        return d.psi
    if measure == "wasserstein":
        return d.wasserstein_std if d.wasserstein_std is not None else d.js_distance
    if measure == "jensen_shannon":
        return d.js_distance
    raise ValueError(f"unknown effect size {measure!r}; expected psi, wasserstein or jensen_shannon")


def flag_features(drifts: Sequence[FeatureDrift], *, alpha: float, correction: str, effect: str,
                  min_effect: float, min_rows: int) -> pd.DataFrame:
    """One row per feature with its statistics, the corrected p-value, the effect size and the
    ``drifted`` flag: enough current rows, significant after correction, and effect >= minimum."""
    frame = pd.DataFrame([d.__dict__ for d in drifts])
    if frame.empty:
        return frame.assign(p_adjusted=[], effect=[], drifted=[])
    frame["p_adjusted"] = adjust_p_values([d.p_value for d in drifts], correction)
    frame["effect"] = [effect_size(d, effect) for d in drifts]
    significant = frame["p_adjusted"].astype(float).fillna(1.0) < alpha
    frame["drifted"] = (frame["n_current"] >= min_rows) & significant & (frame["effect"] >= min_effect)
    return frame


def drifted_share(flags: pd.DataFrame, weights: dict[str, float] | None = None) -> float:
    """Share of drifted features; with ``weights`` (e.g. permutation importance) a weighted share.
    Features without a positive weight (missing, NaN, zero or negative) count with the smallest
    positive weight among the tested features, so a feature the model ignores still counts a
    little rather than not at all."""
    if flags.empty:
        return 0.0
    if not weights:
        return float(flags["drifted"].mean())
    given = flags["feature"].map(lambda f: float(weights.get(f, 0.0))).fillna(0.0).clip(lower=0.0)
    floor = given[given > 0].min() if (given > 0).any() else 1.0
    w = given.where(given > 0, floor).to_numpy()
    return float((w * flags["drifted"].to_numpy()).sum() / w.sum())


def persistent(history: Sequence[bool], k: int) -> bool:
    """True when the last ``k`` batches (oldest first in ``history``, current last) all drifted."""
    if k <= 0:
        return True
    return len(history) >= k and all(history[-k:])


def persistent_for(history: Sequence[tuple[bool, pd.Timestamp]], current_end: pd.Timestamp,
                   duration: pd.Timedelta) -> bool:
    """True when the trailing run of drifted batches (``history``: (drifted, batch start) oldest
    first, the current batch last) spans at least ``duration`` of event time, from the start of
    its first batch to ``current_end``, the current batch's last event time."""
    if not history or not history[-1][0]:
        return False
    start = history[-1][1]
    for drifted, batch_start in reversed(history):
        if not drifted:
            break
        start = batch_start
    return bool(current_end - start >= duration)


def metric_drop(current: float, reference: float, higher_is_better: bool) -> float:
    """Relative deterioration of a metric (positive = worse), e.g. AUC 0.70 -> 0.63 is 0.10."""
    scale = abs(reference) if reference else 1.0
    return float((reference - current) / scale if higher_is_better else (current - reference) / scale)


def metric_worse_test(current: float, reference: float, se_current: float, se_reference: float,
                      higher_is_better: bool) -> dict[str, float]:
    """One-sided z-test that a model's metric on a batch is worse than on its hold-out beyond both
    samples' noise: z = (worsening in the metric's units) / sqrt(se_current² + se_reference²), the
    two samples being independent (different rows). Returns the worsening, the combined standard
    error, z and the p-value (normal approximation: both metrics are means, or smooth functions of
    means, over at least ``drift.min_current_rows`` rows)."""
    worse = (reference - current) if higher_is_better else (current - reference)
    se = float(np.hypot(se_current, se_reference))
    z = worse / se if se > 0 else (np.inf if worse > 0 else -np.inf if worse < 0 else 0.0)
    return {"worse_by": float(worse), "standard_error": se, "z": float(z), "p_value": float(stats.norm.sf(z))}


# ---- calendar features and the batching -----------------------------------------------------
# CALENDAR_PERIODS (features.py, beside the features it names): the cycle of each calendar feature.


def calendar_not_voting(names: Sequence[str], reference_span: pd.Timedelta, current_span: pd.Timedelta,
                        min_cycles: float) -> dict[str, str]:
    """Calendar features whose distribution the batching sets, with why: the batch or the
    reference spans fewer than ``min_cycles`` of the feature's period (``CALENDAR_PERIODS``).

    A monthly batch holds one value of ``month`` whatever the data do; a two-day batch holds two
    values of ``day_of_week``. Testing them measures where the batch was cut, not the stream.
    """
    out: dict[str, str] = {}
    if min_cycles <= 0:
        return out
    for name in names:
        period = CALENDAR_PERIODS.get(name)
        if period is None:
            raise KeyError(f"calendar feature {name!r} has no period in CALENDAR_PERIODS")
        cycles = min(reference_span / period, current_span / period)
        if cycles < min_cycles:
            which = "batch" if current_span <= reference_span else "reference"
            out[name] = f"the {which} spans {cycles:.2f} of its {period_text(period)} period (< {min_cycles:g})"
    return out

