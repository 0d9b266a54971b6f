"""A/B statistics: plain functions (scipy), no Dagster, no lake.

The comparison is on a per-request *loss* where lower is better (classification: 1 - correct, or
log loss; regression: absolute error), so one set of functions serves every metric:

- :func:`srm_test`: sample ratio mismatch, chi-square of users per variant against the split;
- :func:`label_balance_test`: labelled share per variant (uneven label arrival biases the result);
- :func:`compare_means`: B - A with a Welch confidence interval and p-value (fixed-horizon view);
- :func:`msprt_p_value`: the always-valid p-value of a mixture SPRT (normal mixture over the effect),
  which stays valid however often it is looked at, so the analysis can run after every batch of
  traffic without inflating false promotions;
- :func:`required_sample_size`: per-variant sample size for the minimum detectable effect, which
  :func:`effect_in_loss_units` turns from a relative or standardised effect into loss units;
- :func:`mcnemar_test`, :func:`paired_test`: paired comparisons where both models scored the same
  requests (shadow mode);
- :func:`decide`: promote / rollback / continue with its reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

from lake.experiments import CONTINUE, PROMOTE, ROLLBACK


@dataclass(frozen=True)
class StatTest:
    statistic: float
    p_value: float
    detail: dict = field(default_factory=dict)


def srm_test(users_a: int, users_b: int, split_b: float) -> StatTest:
    """Chi-square goodness of fit of the users per variant to the configured split."""
    total = users_a + users_b
    if total == 0 or split_b in (0.0, 1.0):
        return StatTest(0.0, 1.0, {"expected_b": split_b, "observed_b": users_b / total if total else None})
    result = stats.chisquare([users_a, users_b], f_exp=[total * (1 - split_b), total * split_b])
    return StatTest(float(result.statistic), float(result.pvalue),
                      {"expected_b": split_b, "observed_b": users_b / total})


def label_balance_test(labelled_a: int, total_a: int, labelled_b: int, total_b: int) -> StatTest:
    """Chi-square test that A and B have the same labelled share (2 x 2 table)."""
    table = np.array([[labelled_a, total_a - labelled_a], [labelled_b, total_b - labelled_b]])
    shares = {"labelled_share_a": labelled_a / total_a if total_a else None,
              "labelled_share_b": labelled_b / total_b if total_b else None}
    if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        return StatTest(0.0, 1.0, shares)
    result = stats.chi2_contingency(table, correction=False)
    return StatTest(float(result.statistic), float(result.pvalue), shares)


@dataclass(frozen=True)
class Comparison:
    """Loss of B minus loss of A (negative: B is better)."""

    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    difference: float
    ci_low: float
    ci_high: float
    p_value: float           # Welch (paired: t on the differences), fixed horizon
    variance: float          # of the difference: var_a / n_a + var_b / n_b (paired: var(b - a) / n)
    paired: bool = False     # both models on the same requests (shadow scoring)


def compare_means(loss_a: Sequence[float], loss_b: Sequence[float], alpha: float = 0.05) -> Comparison:
    """Welch's comparison of mean loss, with a (1 - alpha) confidence interval of B - A."""
    a, b = np.asarray(loss_a, dtype=float), np.asarray(loss_b, dtype=float)
    if a.size < 2 or b.size < 2:
        raise ValueError(f"need at least 2 labelled requests per variant, got {a.size} and {b.size}")
    var = a.var(ddof=1) / a.size + b.var(ddof=1) / b.size
    diff = float(b.mean() - a.mean())
    if var == 0:
        p = 1.0 if diff == 0 else 0.0
        return Comparison(float(a.mean()), float(b.mean()), a.size, b.size, diff, diff, diff, p, 0.0)
    # Welch-Satterthwaite degrees of freedom
    dof = var ** 2 / ((a.var(ddof=1) / a.size) ** 2 / (a.size - 1) + (b.var(ddof=1) / b.size) ** 2 / (b.size - 1))
    half, p = _t_interval_and_p(diff, var, dof, alpha)
    return Comparison(float(a.mean()), float(b.mean()), a.size, b.size, diff, diff - half, diff + half, p, float(var))


def compare_paired(loss_a: Sequence[float], loss_b: Sequence[float], alpha: float = 0.05) -> Comparison:
    """Paired comparison: both models' losses on the same requests; B - A with the paired t
    interval and p-value. Each request is its own control, so the variance is that of the
    differences, far smaller than the split's when the models mostly agree."""
    a, b = np.asarray(loss_a, dtype=float), np.asarray(loss_b, dtype=float)
    if a.size != b.size or a.size < 2:
        raise ValueError(f"need at least 2 pairs of equal length, got {a.size} and {b.size}")
    d = b - a
    var = float(d.var(ddof=1) / d.size)
    diff = float(d.mean())
    if var == 0:
        p = 1.0 if diff == 0 else 0.0
        return Comparison(float(a.mean()), float(b.mean()), a.size, b.size, diff, diff, diff, p, 0.0, paired=True)
    half, p = _t_interval_and_p(diff, var, d.size - 1, alpha)
    return Comparison(float(a.mean()), float(b.mean()), a.size, b.size, diff, diff - half, diff + half, p, var,
                      paired=True)


def _t_interval_and_p(difference: float, variance: float, dof: float, alpha: float) -> tuple[float, float]:
    """Half-width of the (1 - alpha) t interval and the two-sided t-test p-value of ``difference``
    with ``variance`` (> 0) on ``dof`` degrees of freedom: ``stats.t.ppf`` and ``stats.ttest_ind(...,
    equal_var=False)`` / ``stats.ttest_rel`` on the same figures (Welch's dof / n - 1), through the
    special functions those call (``stdtrit``, ``stdtr``). The wrappers' argument checks cost ~1 ms a
    call, which the analysis and its tests pay at every look."""
    sd = math.sqrt(variance)
    half = special.stdtrit(dof, 1 - alpha / 2) * sd
    p = float(2 * special.stdtr(dof, -abs(difference) / sd))
    return half, p


def msprt_p_value(difference: float, variance: float, tau: float) -> float:
    """One look of the mixture SPRT for a difference of means (Johari et al., "Always valid
    inference", 2017): with the effect's mixing distribution N(0, tau^2) and the difference's
    variance V, the likelihood ratio against "no difference" is

        L = sqrt(V / (V + tau^2)) * exp(tau^2 * d^2 / (2 V (V + tau^2)))

    and 1 / L is a p-value valid at any stopping time. :func:`always_valid_p_values` takes the
    running minimum over looks."""
    return float(msprt_p_values(np.array([difference]), np.array([variance]), tau)[0])


def msprt_p_values(difference: np.ndarray, variance: np.ndarray, tau: float) -> np.ndarray:
    """:func:`msprt_p_value` of many looks at once (a zero variance: 1 if no difference, else 0)."""
    difference, variance = np.asarray(difference, dtype=float), np.asarray(variance, dtype=float)
    positive = variance > 0
    v = np.where(positive, variance, 1.0)
    tau2 = tau * tau
    log_l = 0.5 * np.log(v / (v + tau2)) + tau2 * difference ** 2 / (2 * v * (v + tau2))
    return np.where(positive, np.minimum(1.0, np.exp(-log_l)), np.where(difference == 0, 1.0, 0.0))


def always_valid_interval(difference: float, variance: float, tau: float, alpha: float) -> tuple[float, float]:
    """The (1 - alpha) confidence sequence of the same mixture SPRT: the effects it would not
    reject at this look. Valid at any stopping time, unlike the Welch interval, so a
    non-inferiority rule may look at it after every batch of labels:

        d +- sqrt(V (V + tau^2) / tau^2 * (2 ln(1/alpha) + ln((V + tau^2) / V)))
    """
    if variance <= 0:
        return difference, difference
    tau2 = tau * tau
    radius = math.sqrt(variance * (variance + tau2) / tau2
                       * (2 * math.log(1 / alpha) + math.log((variance + tau2) / variance)))
    return difference - radius, difference + radius


def always_valid_p_values(looks: Sequence[tuple[float, float]], tau: float) -> list[float]:
    """Running minimum of the mSPRT p-value over looks ((difference, variance) at each look)."""
    out, best = [], 1.0
    for difference, variance in looks:
        best = min(best, msprt_p_value(difference, variance, tau))
        out.append(best)
    return out


def required_sample_size(mde: float, sd: float, alpha: float = 0.05, power: float = 0.8, *,
                         paired: bool = False) -> int:
    """Per-variant sample size of a two-sided two-sample test detecting a difference of ``mde`` in
    means of a loss with standard deviation ``sd`` (for a rate p: sd = sqrt(p (1 - p))); with
    ``paired``, the number of pairs for a paired test, ``sd`` being that of the differences."""
    if mde <= 0 or sd <= 0:
        raise ValueError(f"mde and sd must be positive, got {mde} and {sd}")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return math.ceil((1 if paired else 2) * (z * sd / mde) ** 2)


def effect_in_loss_units(value: float, unit: str, *, mean_loss_a: float, sd_loss_a: float) -> float:
    """An effect (the MDE or the non-inferiority margin) in the loss's own units.

    ``relative``: a share of A's observed mean loss; ``standardised``: in standard deviations of
    A's per-request loss; ``absolute``: as given. The first two are scale-free, so the same
    configuration decides a price in cents and one in millions, an error rate of 1% and of 40%
    alike. Zero when A's loss (or its spread) is zero: no relative effect is defined then."""
    if unit == "relative":
        return value * mean_loss_a
    if unit == "standardised":
        return value * sd_loss_a
    if unit == "absolute":
        return value
    raise ValueError(f"unknown effect unit {unit!r}: relative, standardised or absolute")


def mcnemar_test(only_a_right: int, only_b_right: int) -> StatTest:
    """McNemar's exact test on the discordant pairs of a paired classification comparison."""
    n = only_a_right + only_b_right
    if n == 0:
        return StatTest(0.0, 1.0, {"discordant": 0})
    result = stats.binomtest(only_b_right, n, 0.5)
    return StatTest(float(only_b_right - only_a_right), float(result.pvalue), {"discordant": n})


def paired_test(loss_a: Sequence[float], loss_b: Sequence[float]) -> StatTest:
    """Wilcoxon signed-rank test of paired losses (both models on the same requests)."""
    a, b = np.asarray(loss_a, dtype=float), np.asarray(loss_b, dtype=float)
    diff = b - a
    if diff.size == 0 or not np.any(diff):
        return StatTest(0.0, 1.0, {"pairs": int(diff.size)})
    result = stats.wilcoxon(b, a)
    return StatTest(float(result.statistic), float(result.pvalue),
                      {"pairs": int(diff.size), "mean_difference": float(diff.mean())})


@dataclass(frozen=True)
class DecisionRules:
    alpha: float = 0.05             # of the always-valid p-value
    srm_alpha: float = 0.001
    label_alpha: float = 0.001
    tau: float = 0.02               # mixing sd of the effect, in loss units (the MDE in loss units)
    min_samples: int = 200          # labelled requests per variant before any decision
    non_inferiority_margin: float | None = None  # promote when B - A < margin (always-valid upper bound)
    latency_p95_ratio: float = 1.25  # B's p95 may be at most this times A's
    fallback_share_margin: float = 0.05  # B's fallback share may exceed A's by at most this
    error_rate_margin: float = 0.01  # B's error rate (its model raised) may exceed A's by at most this
    undefined_effect: str | None = None  # why the MDE has no value in loss units yet (no decision then)
    margin_text: str | None = None  # the margin as configured, e.g. "7% of A's loss (0.0213)", for the reason


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    always_valid_p: float | None = None
    blocked: bool = False
    guardrail: str | None = None  # the breached guardrail of a rollback (the key of ``guardrails``)


@dataclass(frozen=True)
class GuardrailCheck:
    """One guardrail of B against A: the values, the limit B must stay within, pass or fail."""

    name: str          # a key of lake.experiments.GUARDRAILS
    what: str          # in words, e.g. "model latency p95"
    a: float
    b: float
    limit: float       # the largest value of B that passes
    limit_text: str    # how the limit is derived, e.g. "A's + 1.0%"
    value_format: str  # how a value is written: ".2%", ".1%" or ".3g" (then in ms)
    passed: bool

    def show(self, value: float) -> str:
        return f"{value:{self.value_format}}" + ("" if self.value_format.endswith("%") else " ms")

    @property
    def breach(self) -> str:
        """The rollback reason when it failed."""
        how = self.limit_text.removeprefix("A's ")
        return f"B's {self.what} {self.show(self.b)} exceeds A's {self.show(self.a)} {how}"


def guardrail_checks(guardrails: dict[str, tuple[float, float]], rules: DecisionRules) -> list[GuardrailCheck]:
    """Every guardrail measured, in the order :func:`decide` applies them (the first failing one
    rolls B back): error rate, latency p95 (the model's own time, else the whole request's), fallback share.
    ``guardrails``: name -> (A's value, B's value)."""
    checks = []
    if "error_rate" in guardrails:
        a, b = guardrails["error_rate"]
        limit = a + rules.error_rate_margin
        checks.append(GuardrailCheck("error_rate", "error rate", a, b, limit, f"A's + {rules.error_rate_margin:.1%}",
                                     ".2%", b <= limit))
    for key, what in (("model_p95_ms", "model latency p95"),
                      ("latency_p95_ms", "request latency p95 (no per-model time logged)")):
        if key in guardrails:
            a, b = guardrails[key]
            limit = a * rules.latency_p95_ratio
            checks.append(GuardrailCheck(key, what, a, b, limit, f"A's x {rules.latency_p95_ratio}", ".3g",
                                         a <= 0 or b <= limit))
    if "fallback_share" in guardrails:
        a, b = guardrails["fallback_share"]
        limit = a + rules.fallback_share_margin
        checks.append(GuardrailCheck("fallback_share", "fallback share", a, b, limit,
                                     f"A's + {rules.fallback_share_margin:.0%}", ".1%", b <= limit))
    return checks


def decide(comparison: Comparison | None, always_valid_p: float | None, srm: StatTest, labels: StatTest, *,
           guardrails: dict[str, tuple[float, float]], rules: DecisionRules) -> Decision:
    """promote / rollback / continue, with the reason.

    Order: a sample ratio mismatch or uneven labelling blocks everything (the groups are not
    comparable); a guardrail breach rolls back; below the minimum sample nothing is decided; then
    the always-valid p-value: B significantly better -> promote, significantly worse -> rollback;
    with a non-inferiority margin, B whose always-valid upper bound (:func:`always_valid_interval`)
    stays under it is promoted.
    ``guardrails``: name -> (A's value, B's value) for error_rate, fallback_share and latency:
    ``model_p95_ms`` (each model's own scoring time, preferred) or ``latency_p95_ms`` (the whole
    request's, for events logged before the model's time was).
    """
    if srm.p_value < rules.srm_alpha:
        return Decision(CONTINUE, f"blocked: sample ratio mismatch (p={srm.p_value:.2g} < {rules.srm_alpha}; "
                                  f"B has {srm.detail['observed_b']:.1%} of users, expected "
                                  f"{srm.detail['expected_b']:.1%}): fix the assignment before reading results",
                        always_valid_p, blocked=True)
    if labels.p_value < rules.label_alpha:
        shares = labels.detail
        return Decision(CONTINUE, f"blocked: labels arrive unevenly (p={labels.p_value:.2g}; labelled share A "
                                  f"{shares['labelled_share_a']:.1%}, B {shares['labelled_share_b']:.1%})",
                        always_valid_p, blocked=True)
    for check in guardrail_checks(guardrails, rules):
        if not check.passed:
            return Decision(ROLLBACK, f"guardrail: {check.breach}", always_valid_p, guardrail=check.name)
    if rules.undefined_effect is not None:
        return Decision(CONTINUE, rules.undefined_effect, always_valid_p)
    if comparison is None or min(comparison.n_a, comparison.n_b) < rules.min_samples:
        have = 0 if comparison is None else min(comparison.n_a, comparison.n_b)
        unit = "labelled pairs" if comparison is not None and comparison.paired else "labelled requests per variant"
        return Decision(CONTINUE, f"not enough {unit} yet: {have} of {rules.min_samples}", always_valid_p)
    c = comparison
    effect = (f"loss B - A = {c.difference:+.4f} (95% CI {c.ci_low:+.4f} .. {c.ci_high:+.4f}"
              f"{f', paired, {c.n_a} requests' if c.paired else ''})")
    if always_valid_p is not None and always_valid_p < rules.alpha:
        if c.difference < 0:
            return Decision(PROMOTE, f"B is better: {effect}, always-valid p={always_valid_p:.3g}", always_valid_p)
        return Decision(ROLLBACK, f"B is worse: {effect}, always-valid p={always_valid_p:.3g}", always_valid_p)
    if rules.non_inferiority_margin is not None:
        _, high = always_valid_interval(c.difference, c.variance, rules.tau, rules.alpha)
        if high < rules.non_inferiority_margin:
            margin = rules.margin_text or f"{rules.non_inferiority_margin:.4g}"
            return Decision(PROMOTE, f"B is not worse than A by more than {margin} (always-"
                                     f"valid upper bound {high:+.4f}): {effect}", always_valid_p)
    return Decision(CONTINUE, f"no significant difference yet: {effect}, always-valid p="
                              f"{always_valid_p if always_valid_p is None else round(always_valid_p, 3)}",
                    always_valid_p)
