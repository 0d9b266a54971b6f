"""A/B statistics against known answers and by simulation (fixed seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from assets.ab.stats import (
    CONTINUE,
    PROMOTE,
    ROLLBACK,
    DecisionRules,
    StatTest,
    always_valid_interval,
    always_valid_p_values,
    compare_means,
    compare_paired,
    decide,
    label_balance_test,
    mcnemar_test,
    msprt_p_value,
    paired_test,
    required_sample_size,
    srm_test,
)

RULES = DecisionRules(alpha=0.05, tau=0.03, min_samples=200)
OK = StatTest(0.0, 0.5, {"observed_b": 0.5, "expected_b": 0.5, "labelled_share_a": 0.9, "labelled_share_b": 0.9})


def _decision_over_looks(a: np.ndarray, b: np.ndarray, compare, *, per_look: int, looks: int,
                         rules: DecisionRules) -> str:
    """The decision taken at every look (as ab_sensor would), the first that is not `continue`."""
    best = 1.0
    for k in range(1, looks + 1):
        c = compare(a[: k * per_look], b[: k * per_look])
        best = min(best, msprt_p_value(c.difference, c.variance, rules.tau))
        decision = decide(c, best, OK, OK, guardrails={}, rules=rules)
        if decision.action != CONTINUE:
            return decision.action
    return CONTINUE


def _sequential_run(rng: np.random.Generator, p_a: float, p_b: float, *, per_look: int = 100,
                    looks: int = 30, rules: DecisionRules = RULES) -> str:
    """One experiment on error indicators (1 = wrong) of A's and B's users."""
    a = rng.random(per_look * looks) < p_a
    b = rng.random(per_look * looks) < p_b
    return _decision_over_looks(a, b, compare_means, per_look=per_look, looks=looks, rules=rules)


def test_a_a_experiments_promote_at_most_the_nominal_rate_with_a_look_at_every_batch() -> None:
    rng = np.random.default_rng(0)
    outcomes = [_sequential_run(rng, 0.3, 0.3) for _ in range(200)]
    false_promotions = outcomes.count(PROMOTE)
    false_decisions = false_promotions + outcomes.count(ROLLBACK)
    assert false_decisions <= 0.05 * 200, f"{false_decisions} false decisions in 200 A/A runs"
    # the fixed-horizon p-value looked at 30 times would not hold the line: that is why mSPRT
    naive = 0
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = rng.random(3000) < 0.3, rng.random(3000) < 0.3
        naive += any(compare_means(a[:k], b[:k]).p_value < 0.05 for k in range(100, 3001, 100))
    assert naive > false_decisions and naive > 0.1 * 200


def test_a_clearly_better_b_is_promoted_with_the_expected_power() -> None:
    rng = np.random.default_rng(1)
    outcomes = [_sequential_run(rng, 0.30, 0.24) for _ in range(100)]
    assert outcomes.count(PROMOTE) >= 80 and outcomes.count(ROLLBACK) == 0


def test_a_worse_b_is_rolled_back() -> None:
    rng = np.random.default_rng(2)
    outcomes = [_sequential_run(rng, 0.24, 0.30) for _ in range(50)]
    assert outcomes.count(ROLLBACK) >= 40 and outcomes.count(PROMOTE) == 0


def test_sample_ratio_mismatch_blocks_the_decision() -> None:
    srm = srm_test(5200, 4800, 0.5)
    assert srm.p_value == pytest.approx(stats.chisquare([5200, 4800]).pvalue) and srm.p_value < 0.001
    rng = np.random.default_rng(3)
    c = compare_means(rng.random(4000) < 0.3, rng.random(4000) < 0.2)  # B far better ...
    decision = decide(c, 1e-9, srm, OK, guardrails={}, rules=RULES)
    assert decision.action == CONTINUE and decision.blocked and "sample ratio mismatch" in decision.reason
    assert srm_test(5030, 4970, 0.5).p_value > 0.5 and srm_test(0, 100, 1.0).p_value == 1.0


def test_uneven_labels_block_like_an_srm() -> None:
    labels = label_balance_test(900, 1000, 700, 1000)
    assert labels.p_value < 1e-20 and labels.detail["labelled_share_b"] == 0.7
    decision = decide(None, None, OK, labels, guardrails={}, rules=RULES)
    assert decision.blocked and "unevenly" in decision.reason
    assert label_balance_test(900, 1000, 905, 1000).p_value > 0.5


def test_guardrails_roll_back_and_the_minimum_sample_waits() -> None:
    c = compare_means([0, 1] * 150, [0, 1] * 150)
    slow = decide(c, 0.5, OK, OK, guardrails={"latency_p95_ms": (100.0, 140.0)}, rules=RULES)
    assert slow.action == ROLLBACK and "request latency p95 (no per-model time logged) 140 ms" in slow.reason
    model = decide(c, 0.5, OK, OK, guardrails={"model_p95_ms": (0.0412, 0.0618)}, rules=RULES)
    assert model.action == ROLLBACK and "B's model latency p95 0.0618 ms exceeds A's 0.0412 ms" in model.reason
    assert decide(c, 0.5, OK, OK, guardrails={"model_p95_ms": (0.0412, 0.05)}, rules=RULES).action == CONTINUE
    fallbacks = decide(c, 0.5, OK, OK, guardrails={"fallback_share": (0.01, 0.10)}, rules=RULES)
    assert fallbacks.action == ROLLBACK and "fallback" in fallbacks.reason
    errors = decide(c, 0.5, OK, OK, guardrails={"error_rate": (0.001, 0.02)}, rules=RULES)
    assert errors.action == ROLLBACK and "error rate 2.00%" in errors.reason
    within = decide(c, 0.5, OK, OK, guardrails={"error_rate": (0.001, 0.0105)}, rules=RULES)
    assert within.action == CONTINUE  # 0.95 points above A: inside the 1-point margin
    # the breached guardrail is named in the decision (ab_decisions.guardrail, what alerts count)
    assert [d.guardrail for d in (slow, model, fallbacks, errors, within)] == [
        "latency_p95_ms", "model_p95_ms", "fallback_share", "error_rate", None]
    few = decide(compare_means([0, 1] * 50, [0, 0] * 50), 1e-6, OK, OK, guardrails={}, rules=RULES)
    assert few.action == CONTINUE and "100 of 200" in few.reason


def test_non_inferiority_promotes_an_equal_b_when_configured() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.random(20000) < 0.3, rng.random(20000) < 0.3
    c = compare_means(a, b)
    rules = DecisionRules(tau=0.03, min_samples=200, non_inferiority_margin=0.02)
    assert decide(c, 0.9, OK, OK, guardrails={}, rules=rules).action == PROMOTE
    assert decide(c, 0.9, OK, OK, guardrails={}, rules=RULES).action == CONTINUE


def test_welch_comparison_and_msprt_known_values() -> None:
    c = compare_means([1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0])
    assert c.difference == 1.0 and c.variance == pytest.approx(2 * (5 / 3) / 4)
    assert c.p_value == pytest.approx(stats.ttest_ind([2, 3, 4, 5], [1, 2, 3, 4], equal_var=False).pvalue)
    assert c.ci_low < 0 < c.ci_high
    v, tau, d = 0.0004, 0.03, 0.05
    expected = math.sqrt((v + tau**2) / v) * math.exp(-(tau**2) * d**2 / (2 * v * (v + tau**2)))
    assert msprt_p_value(d, v, tau) == pytest.approx(expected)
    assert msprt_p_value(0.0, v, tau) == 1.0  # no effect observed: no evidence
    assert always_valid_p_values([(0.05, v), (0.0, v), (0.05, v)], tau) == pytest.approx([expected, expected,
                                                                                           expected])


def test_required_sample_size_matches_the_textbook_formula() -> None:
    # two proportions 0.30 vs 0.27 (sd of the baseline), alpha 0.05, power 0.8: about 3,700 per arm
    n = required_sample_size(0.03, math.sqrt(0.3 * 0.7), 0.05, 0.8)
    assert n == math.ceil(2 * ((1.959964 + 0.841621) * math.sqrt(0.21) / 0.03) ** 2)
    assert 3600 < n < 3700
    with pytest.raises(ValueError, match="positive"):
        required_sample_size(0, 1)


def test_paired_tests() -> None:
    assert mcnemar_test(10, 30).p_value == pytest.approx(stats.binomtest(30, 40, 0.5).pvalue)
    assert mcnemar_test(0, 0).p_value == 1.0
    rng = np.random.default_rng(5)
    a = rng.random(300)
    assert paired_test(a, a - 0.05).p_value < 1e-10 and paired_test(a, a).p_value == 1.0


def test_always_valid_interval_known_value_and_safe_non_inferiority_under_repeated_looks() -> None:
    v, tau, alpha, d = 0.0004, 0.03, 0.05, 0.01
    radius = math.sqrt(v * (v + tau**2) / tau**2 * (2 * math.log(20) + math.log((v + tau**2) / v)))
    assert always_valid_interval(d, v, tau, alpha) == pytest.approx((d - radius, d + radius))
    # the interval is the set of effects the mSPRT does not reject: at its edge p is exactly alpha
    assert msprt_p_value(radius, v, tau) == pytest.approx(alpha)
    # B truly worse by exactly the margin, looked at after every 100 labels: promoted at most alpha
    rules = DecisionRules(alpha=0.05, tau=0.03, min_samples=200, non_inferiority_margin=0.03)
    rng = np.random.default_rng(6)
    outcomes = [_sequential_run(rng, 0.30, 0.33, rules=rules) for _ in range(200)]
    assert outcomes.count(PROMOTE) <= 0.05 * 200, outcomes.count(PROMOTE)
    # and an equal B is promoted once the interval is narrow enough
    equal = [_sequential_run(rng, 0.30, 0.30, looks=120, rules=rules) for _ in range(50)]
    assert equal.count(PROMOTE) >= 40


def test_vectorised_looks_equal_a_comparison_at_every_look() -> None:
    """sequential_looks (running sums) against compare_means + msprt_p_value on the first k
    requests of each variant, look by look: 0/1 losses with a zero-variance start, and log losses."""
    from assets.ab.analysis import sequential_looks

    rng = np.random.default_rng(11)
    zero_one_a = np.r_[np.zeros(60), (rng.random(1940) < 0.3).astype(float)]
    zero_one_b = np.r_[np.zeros(60), (rng.random(2100) < 0.27).astype(float)]
    log_a, log_b = rng.gamma(1.2, 0.5, 1500), rng.gamma(1.2, 0.48, 1400)
    pair_a, pair_b = _paired_errors(rng, 1200, 0.06, 0.04)
    for loss_a, loss_b, every, paired in ((zero_one_a, zero_one_b, 20, False), (log_a, log_b, 37, False),
                                          (pair_a, pair_b, 30, True)):
        looks = sequential_looks(loss_a, loss_b, every, tau=0.02, paired=paired)
        assert list(looks["n_per_variant"]) == list(range(every, min(len(loss_a), len(loss_b)) + 1, every))
        best = 1.0
        for row in looks.itertuples():
            k = row.n_per_variant
            c = (compare_paired if paired else compare_means)(loss_a[:k], loss_b[:k])
            best = min(best, msprt_p_value(c.difference, c.variance, 0.02))
            assert row.difference == pytest.approx(c.difference, abs=1e-12)
            assert (row.ci_low, row.ci_high) == pytest.approx((c.ci_low, c.ci_high), abs=1e-9)
            assert row.p_fixed == pytest.approx(c.p_value, abs=1e-9)
            assert row.always_valid_p == pytest.approx(best, rel=1e-9, abs=1e-300)
            assert row.sd_a == pytest.approx(loss_a[:k].std(ddof=1), abs=1e-9)


def _paired_errors(rng: np.random.Generator, n: int, only_a: float, only_b: float) -> tuple[np.ndarray, np.ndarray]:
    """Two models on the same n requests: both wrong on a quarter, each wrong alone at its own rate."""
    both = rng.random(n) < 0.25
    return (both | (rng.random(n) < only_a)).astype(float), (both | (rng.random(n) < only_b)).astype(float)


def _paired_run(rng: np.random.Generator, only_a: float, only_b: float, *, per_look: int = 100,
                looks: int = 30, rules: DecisionRules = RULES) -> str:
    """One shadow-paired experiment: both models on the same requests."""
    a, b = _paired_errors(rng, per_look * looks, only_a, only_b)
    return _decision_over_looks(a, b, compare_paired, per_look=per_look, looks=looks, rules=rules)


def test_paired_decisions_hold_the_error_rate_and_need_far_fewer_requests() -> None:
    """A/A on pairs: at most the nominal share of wrong decisions over 200 runs with 30 looks; a B
    better by 3 points is promoted by the paired rule in most runs where the split rule, on the same
    number of requests, mostly cannot tell yet."""
    rng = np.random.default_rng(5)
    outcomes = [_paired_run(rng, 0.06, 0.06) for _ in range(200)]
    assert outcomes.count(PROMOTE) + outcomes.count(ROLLBACK) <= 0.05 * 200
    rng = np.random.default_rng(6)
    paired = [_paired_run(rng, 0.06, 0.03) for _ in range(100)]
    rng = np.random.default_rng(6)
    split = [_sequential_run(rng, 0.31, 0.28) for _ in range(100)]  # the same error rates, unpaired
    assert paired.count(PROMOTE) >= 80 and paired.count(ROLLBACK) == 0
    assert split.count(PROMOTE) < paired.count(PROMOTE) - 30


def test_compare_paired_known_values() -> None:
    a = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=float)
    b = np.array([0, 0, 1, 0, 0, 0, 1, 1], dtype=float)
    c = compare_paired(a, b)
    d = b - a
    assert c.paired and (c.n_a, c.n_b) == (8, 8)
    assert c.difference == pytest.approx(d.mean()) and c.variance == pytest.approx(d.var(ddof=1) / 8)
    assert c.p_value == pytest.approx(stats.ttest_rel(b, a).pvalue)
    half = stats.t.ppf(0.975, 7) * math.sqrt(d.var(ddof=1) / 8)
    assert (c.ci_low, c.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert required_sample_size(0.02, 0.3, paired=True) * 2 == pytest.approx(required_sample_size(0.02, 0.3), abs=2)
    with pytest.raises(ValueError, match="equal length"):
        compare_paired([1, 0, 1], [1, 0])
