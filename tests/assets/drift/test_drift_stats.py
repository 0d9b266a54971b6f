"""Drift statistics (assets.drift_stats): known answers, the significance-and-effect rule, p-value
corrections, drifted-share weighting, and property tests of PSI and its smoothing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from assets.drift.stats import (
    MISSING,
    OTHER,
    FeatureDrift,
    adjust_p_values,
    bin_counts,
    categorical_drift,
    category_counts,
    drifted_share,
    effect_size,
    flag_features,
    metric_drop,
    numeric_drift,
    persistent,
    psi,
    quantile_edges,
    smoothed_shares,
)
from config.schema import DriftConfig

CFG = DriftConfig()  # the defaults: bins 10, epsilon 1e-4, alpha 0.01, holm, PSI >= 0.2, >= 200 current rows


def flag(*drifts: FeatureDrift, cfg: DriftConfig = CFG, min_rows: int | None = None) -> pd.DataFrame:
    """flag_features with the configured defaults."""
    return flag_features(list(drifts), alpha=cfg.alpha, correction=cfg.correction, effect=cfg.effect,
                         min_effect=cfg.effect_threshold,
                         min_rows=cfg.min_current_rows if min_rows is None else min_rows)


def drifted(*drifts: FeatureDrift, **kwargs) -> list[bool]:
    return flag(*drifts, **kwargs)["drifted"].astype(bool).tolist()


def normal(seed: int, n: int, loc: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, 1.0, n)


# ---- PSI and binning -----------------------------------------------------------------------
def test_config_defaults_used_here() -> None:
    assert (CFG.bins, CFG.epsilon, CFG.alpha, CFG.correction) == (10, 1e-4, 0.01, "holm")
    assert (CFG.effect, CFG.effect_threshold, CFG.min_current_rows) == ("psi", 0.2, 200)


def test_psi_known_answer() -> None:
    expected = 0.4 * math.log(0.9 / 0.5) + 0.4 * math.log(0.5 / 0.1)  # (q - p) ln(q / p) per bin
    assert psi(np.array([50, 50]), np.array([90, 10]), epsilon=1e-12) == pytest.approx(expected, rel=1e-9)
    assert psi(np.array([90, 10]), np.array([50, 50]), epsilon=1e-12) == pytest.approx(expected, rel=1e-9)


def test_psi_empty_bin_is_finite_thanks_to_smoothing() -> None:
    value = psi(np.array([100, 0]), np.array([50, 50]), epsilon=1e-4)
    assert math.isfinite(value)
    assert value > 1.0


def test_bin_counts_right_closed_with_missing_last() -> None:
    edges = np.array([1.0, 2.0])
    values = np.array([0.5, 1.0, 1.5, 2.0, 2.5, np.nan, np.nan])
    # (-inf, 1], (1, 2], (2, inf), missing
    assert bin_counts(values, edges).tolist() == [2, 2, 1, 2]


def test_quantile_edges_ignore_missing_and_merge_ties() -> None:
    ref = np.array([*range(100), np.nan, np.nan], dtype=float)
    edges = quantile_edges(ref, 4)
    assert edges.tolist() == pytest.approx([24.75, 49.5, 74.25])
    assert quantile_edges(np.array([3.0] * 50 + [np.nan]), 10).tolist() == [3.0]
    assert quantile_edges(np.array([np.nan, np.nan]), 10).size == 0


def test_identical_samples_do_not_drift() -> None:
    values = normal(0, 5000)
    d = numeric_drift("x", values, values.copy(), bins=CFG.bins, epsilon=CFG.epsilon)
    assert d.psi < 1e-12
    assert d.test == "ks"
    assert d.statistic == 0.0
    assert d.p_value == pytest.approx(1.0)
    assert d.wasserstein_std == 0.0
    assert d.js_distance == pytest.approx(0.0, abs=1e-7)
    assert d.reference_mean == pytest.approx(d.current_mean)
    assert drifted(d) == [False]


def test_shifted_mean_drifts() -> None:
    d = numeric_drift("x", normal(1, 5000), normal(2, 5000, loc=0.5), bins=CFG.bins, epsilon=CFG.epsilon)
    assert d.p_value < 1e-10
    assert d.psi > 0.2
    assert d.wasserstein_std == pytest.approx(0.5, abs=0.06)
    assert d.current_mean - d.reference_mean == pytest.approx(0.5, abs=0.06)
    frame = flag(d)
    assert frame["p_adjusted"].iloc[0] < CFG.alpha
    assert frame["effect"].iloc[0] == d.psi
    assert frame["drifted"].tolist() == [True]


def test_missing_values_go_to_the_last_bin_and_a_missing_jump_moves_psi() -> None:
    ref = normal(3, 5000)
    cur = normal(4, 5000)
    cur[::2] = np.nan  # 0% -> 50% missing, present values from the same distribution
    edges = quantile_edges(ref, CFG.bins)
    counts = bin_counts(cur, edges)
    assert counts.size == edges.size + 2
    assert counts[-1] == 2500
    assert counts.sum() == 5000
    assert bin_counts(ref, edges)[-1] == 0

    d = numeric_drift("x", ref, cur, bins=CFG.bins, epsilon=CFG.epsilon)
    assert (d.missing_reference, d.missing_current) == (0.0, 0.5)
    # the missing bin alone contributes about 0.5 * ln(0.5 / epsilon)
    assert d.psi > 0.5 * math.log(0.5 / CFG.epsilon) - 0.1
    assert d.psi > CFG.effect_threshold
    assert effect_size(d, "psi") >= CFG.effect_threshold
    # KS on the present values sees nothing; the missing-share test does, so the feature drifts
    assert d.test == "ks+missing" and d.p_value < 1e-100
    assert flag(d)["drifted"].tolist() == [True]


# ---- categories ----------------------------------------------------------------------------
def test_new_category_drifts() -> None:
    ref = pd.Series(["a", "b", "c"] * 1000)
    cur = pd.Series(["a", "b", "c"] * 233 + ["a"] + ["zzz"] * 300)
    assert len(cur) == 1000
    labels, ref_counts, cur_counts = category_counts(ref, cur)
    assert labels[-2:] == [OTHER, MISSING]
    assert dict(zip(labels, cur_counts.tolist(), strict=True))[OTHER] == 300
    assert dict(zip(labels, ref_counts.tolist(), strict=True))[OTHER] == 0

    d = categorical_drift("cat", ref, cur, epsilon=CFG.epsilon, max_categories=CFG.max_categories)
    assert d.kind == "categorical"
    assert d.test == "chi2"
    assert d.unseen_share == pytest.approx(0.3)
    assert d.p_value < 1e-50
    assert d.psi > 0.2
    assert drifted(d) == [True]


def test_identical_categories_do_not_drift() -> None:
    ref = pd.Series(["a", "b", None, "c"] * 250)
    d = categorical_drift("cat", ref, ref.copy(), epsilon=CFG.epsilon)
    assert d.psi == 0.0
    assert d.p_value == pytest.approx(1.0)
    assert d.unseen_share == 0.0
    assert d.missing_reference == d.missing_current == 0.25
    assert drifted(d) == [False]


def test_rare_reference_categories_fold_into_other() -> None:
    ref = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    cur = pd.Series(["a"] * 40 + ["c"] * 10 + ["d"] * 5 + [None] * 5)
    labels, ref_counts, cur_counts = category_counts(ref, cur, max_categories=2)
    assert labels == ["a", "b", OTHER, MISSING]
    assert ref_counts.tolist() == [50, 30, 20, 0]
    assert cur_counts.tolist() == [40, 0, 15, 5]


# ---- large samples: significance alone is not drift -----------------------------------------
def test_a_million_rows_significant_but_tiny_shift_is_not_drift() -> None:
    n = 1_000_000
    ref = normal(11, n)
    same = numeric_drift("same", ref, normal(12, n), bins=CFG.bins, epsilon=CFG.epsilon)
    assert same.psi < 0.001
    assert same.p_value > CFG.alpha
    assert drifted(same) == [False]

    # 0.01 standard deviations: KS notices it at this size, nobody else should care
    tiny = numeric_drift("tiny", ref, normal(13, n, loc=0.01), bins=CFG.bins, epsilon=CFG.epsilon)
    assert tiny.p_value < 0.001
    assert tiny.psi < 0.2
    assert tiny.psi < 0.001
    frame = flag(tiny)
    assert frame["p_adjusted"].iloc[0] < CFG.alpha  # significant even after correction ...
    assert frame["drifted"].tolist() == [False]     # ... yet not drifted: the effect is too small


# ---- p-value corrections -------------------------------------------------------------------
def test_holm_known_answer() -> None:
    assert adjust_p_values([0.01, 0.04, 0.03], "holm") == pytest.approx([0.03, 0.06, 0.06])


def test_bonferroni_caps_at_one_and_none_stays_none() -> None:
    assert adjust_p_values([0.01, None, 0.5, 0.2], "bonferroni") == pytest.approx([0.03, None, 1.0, 0.6])
    assert adjust_p_values([None, 0.02, 0.04], "holm") == pytest.approx([None, 0.04, 0.04])
    assert adjust_p_values([None, None], "holm") == [None, None]
    assert adjust_p_values([], "bh") == []
    assert adjust_p_values([0.01, None, 0.5], "none") == [0.01, None, 0.5]


def test_bh_matches_scipy() -> None:
    raw = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]
    expected = stats.false_discovery_control(np.array(raw), method="bh")
    got = adjust_p_values([*raw[:3], None, *raw[3:]], "bh")
    assert got[3] is None
    assert [got[i] for i in (0, 1, 2, 4, 5, 6, 7, 8, 9, 10)] == pytest.approx(expected.tolist())


def test_holm_is_never_above_bonferroni() -> None:
    raw = [0.001, 0.2, 0.013, 0.04, 0.5, 0.0004]
    holm, bonf = adjust_p_values(raw, "holm"), adjust_p_values(raw, "bonferroni")
    assert all(h <= b + 1e-15 for h, b in zip(holm, bonf, strict=True))
    assert all(h >= r for h, r in zip(holm, raw, strict=True))


def test_unknown_correction_raises() -> None:
    with pytest.raises(ValueError, match="unknown p-value correction 'sidak'"):
        adjust_p_values([0.1, 0.2], "sidak")


# ---- effect sizes and flags ----------------------------------------------------------------
def test_wasserstein_on_a_categorical_falls_back_to_js() -> None:
    d = categorical_drift("cat", pd.Series(["a", "b"] * 500), pd.Series(["a"] * 800 + ["b"] * 200))
    assert d.wasserstein_std is None
    assert d.js_distance > 0.1
    assert effect_size(d, "wasserstein") == d.js_distance
    assert effect_size(d, "jensen_shannon") == d.js_distance
    assert effect_size(d, "psi") == d.psi
    with pytest.raises(ValueError, match="unknown effect size"):
        effect_size(d, "kl")


def test_wasserstein_is_in_reference_standard_deviations() -> None:
    ref = np.random.default_rng(5).normal(10.0, 4.0, 20_000)
    d = numeric_drift("x", ref, ref + 2.0)  # a shift by about half a std
    assert d.wasserstein_std == pytest.approx(2.0 / np.std(ref), rel=1e-9)  # the sample's std, not 4
    assert d.wasserstein_std == pytest.approx(0.5, abs=0.01)
    assert effect_size(d, "wasserstein") == d.wasserstein_std


def test_min_rows_gate() -> None:
    d = numeric_drift("x", normal(6, 5000), normal(7, 150, loc=3.0), bins=CFG.bins, epsilon=CFG.epsilon)
    assert d.n_current == 150
    assert d.p_value < 1e-10
    assert d.psi > 1.0
    assert drifted(d) == [False]               # 150 < 200 current rows
    assert drifted(d, min_rows=150) == [True]  # the gate alone held it back


def test_flag_features_corrects_across_features() -> None:
    # one p-value of 0.005 alone is significant at 0.01, but not after Holm over three features
    base = numeric_drift("x", normal(8, 1000), normal(9, 1000, loc=1.0))
    marginal = FeatureDrift(**{**base.__dict__, "feature": "m", "p_value": 0.005})
    quiet = FeatureDrift(**{**base.__dict__, "feature": "q", "p_value": 0.9})
    assert drifted(marginal) == [True]
    frame = flag(marginal, quiet, FeatureDrift(**{**quiet.__dict__, "feature": "q2"}))
    assert frame["p_adjusted"].tolist() == pytest.approx([0.015, 1.0, 1.0])
    assert frame["drifted"].tolist() == [False, False, False]


def test_flag_features_empty() -> None:
    frame = flag()
    assert frame.empty
    assert {"p_adjusted", "effect", "drifted"} <= set(frame.columns)


# ---- batch verdict helpers -----------------------------------------------------------------
def _flags(drifted_by_feature: dict[str, bool]) -> pd.DataFrame:
    return pd.DataFrame({"feature": list(drifted_by_feature), "drifted": list(drifted_by_feature.values())})


def test_drifted_share_uniform_and_weighted() -> None:
    flags = _flags({"a": True, "b": False, "c": True, "d": False, "e": True, "f": False})
    assert drifted_share(flags) == pytest.approx(0.5)
    assert drifted_share(flags, {}) == pytest.approx(0.5)
    # c has no weight, e zero and f a negative one: each counts with the smallest positive weight, 0.1
    weights = {"a": 0.6, "b": 0.3, "d": 0.1, "e": 0.0, "f": -0.2}
    expected = (0.6 + 0.1 + 0.1) / (0.6 + 0.3 + 0.1 + 0.1 + 0.1 + 0.1)
    assert drifted_share(flags, weights) == pytest.approx(expected)
    assert drifted_share(flags, weights) == pytest.approx(8 / 13)
    # no positive weight at all: every feature weighs 1, the uniform share
    assert drifted_share(flags, {"a": 0.0, "b": -1.0}) == pytest.approx(0.5)
    assert drifted_share(_flags({})) == 0.0


def test_persistent() -> None:
    assert persistent([True], 1)
    assert not persistent([False], 1)
    assert persistent([False, True, True], 2)
    assert not persistent([True, False, True], 2)
    assert not persistent([True, True], 3)  # not enough history yet
    assert persistent([True, True, True], 3)
    assert not persistent([], 1)


def test_metric_drop() -> None:
    assert metric_drop(0.63, 0.70, True) == pytest.approx(0.1)     # AUC fell: worse
    assert metric_drop(0.77, 0.70, True) == pytest.approx(-0.1)    # AUC rose: better
    assert metric_drop(11.0, 10.0, False) == pytest.approx(0.1)    # RMSE rose: worse
    assert metric_drop(9.0, 10.0, False) == pytest.approx(-0.1)    # RMSE fell: better
    assert metric_drop(0.2, 0.0, False) == pytest.approx(0.2)      # reference 0: absolute change
    assert metric_drop(-0.6, -0.5, True) == pytest.approx(0.2)     # negative reference (e.g. R2)


# ---- properties ----------------------------------------------------------------------------
_count = st.integers(min_value=0, max_value=10_000)


def _counts(size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(_count, min_size=size, max_size=size).filter(any)


same_length_pairs = st.integers(min_value=2, max_value=20).flatmap(lambda n: st.tuples(_counts(n), _counts(n)))


@settings(max_examples=200, deadline=None)
@given(same_length_pairs)
def test_psi_is_non_negative(pair: tuple[list[int], list[int]]) -> None:
    a, b = (np.array(x) for x in pair)
    value = psi(a, b)
    assert math.isfinite(value)
    assert value >= 0.0


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=2, max_value=20).flatmap(_counts), st.integers(min_value=1, max_value=1000))
def test_psi_of_equal_shares_is_zero(counts: list[int], k: int) -> None:
    c = np.array(counts)
    assert psi(c, c) == 0.0
    assert psi(c, k * c) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=2, max_value=20).flatmap(_counts),
       st.floats(min_value=1e-12, max_value=0.01, allow_nan=False))
def test_smoothed_shares_sum_to_one(counts: list[int], epsilon: float) -> None:
    shares = smoothed_shares(np.array(counts), epsilon)
    assert shares.sum() == pytest.approx(1.0, rel=1e-12)
    assert (shares > 0).all()


def test_mixed_type_categories_are_one_category_in_every_statistic() -> None:
    ref = pd.Series([1, 2, 3] * 100, dtype=object)
    cur = pd.Series(["1", "2", "3"] * 100, dtype=object)
    d = categorical_drift("x", ref, cur, epsilon=CFG.epsilon)
    assert d.unseen_share == 0.0 and d.psi == pytest.approx(0.0, abs=1e-12) and d.p_value == pytest.approx(1.0)


def test_weights_that_are_nan_or_absent_count_with_the_floor() -> None:
    flags = pd.DataFrame({"feature": ["a", "b", "c"], "drifted": [True, False, True]})
    # a: NaN -> floor 0.5 (the smallest positive weight among a, b, c); c: absent -> 0.5
    assert drifted_share(flags, {"a": float("nan"), "b": 0.5, "z": 0.01}) == pytest.approx(1.0 / 1.5)


def test_empty_counts_give_uniform_shares_and_k_zero_needs_nothing() -> None:
    assert smoothed_shares(np.zeros(4), 1e-4).tolist() == [0.25] * 4
    assert persistent([], 0) and persistent([False], 0)
