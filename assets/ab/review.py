"""The A/B review as a reviewer reads it (the Markdown summary of ``ab_analysis`` in the Dagster UI):
A and B by version and algorithm, the data the decision read, the effect with its interval against
zero and the margin, each guardrail as pass/fail with its values and limit, SRM and label health as
banners, per-variant figures with counts written out and floats rounded to what they mean.
"""

from __future__ import annotations

from assets.ab.analysis import A, Analysis, B
from assets.ab.stats import always_valid_interval, guardrail_checks


def count(n: int | None) -> str:
    """A count as people write it: 12,140 (never 1.214e+04)."""
    return "" if n is None else f"{int(n):,}"


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _banner(name: str, p: float, alpha: float, what: str) -> str:
    ok = p >= alpha
    return f"- {'OK' if ok else 'BLOCKED'}: {name} (p = {p:.3g}, blocks below {alpha:g}): {what}"


def review_markdown(analysis: Analysis, models: dict[str, dict]) -> str:
    """The summary; ``models``: variant (A / B) -> {"version", "algorithm"} of the model it served."""
    lines = [f"**{analysis.decision.action.upper()}**: {analysis.decision.reason}", ""]
    for variant, role in ((A, "prod"), (B, "staging")):
        m = models.get(variant) or {}
        lines.append(f"- **{variant}** = {role} **v{m.get('version', '?')}** ({m.get('algorithm', 'unknown')})")
    c = analysis.comparison
    if analysis.basis == "paired":
        basis = (f"paired: both models scored the same {count(c.n_a if c else 0)} labelled requests "
                 "(shadow scoring); the split's own figures are below for reference")
    else:
        basis = "split: A's users against B's users (the randomized assignment)"
    lines += [f"- decided on: {basis}", f"- loss: {analysis.metric} (lower is better for B)", ""]
    rules = analysis.rules
    if rules is not None:
        lines.append("**Health**")
        lines.append(_banner("sample ratio", analysis.srm.p_value, rules.srm_alpha,
                             "users reach A and B in the configured split"))
        lines.append(_banner("label balance", analysis.labels.p_value, rules.label_alpha,
                             "outcomes arrive at the same rate for A and B"))
        lines.append("")
    if c is not None and rules is not None:
        # the decision reads the always-valid interval (valid at every look), not the fixed-sample CI
        low, high = always_valid_interval(c.difference, c.variance, rules.tau, rules.alpha)
        margin = rules.non_inferiority_margin
        lines += ["**Effect** (B - A in loss; negative: B is better)", "",
                  "| estimate | 95% CI (fixed sample) | always-valid interval (decides) | always-valid p "
                  "| zero inside | non-inferiority margin | upper bound under margin |",
                  "|---|---|---|---|---|---|---|",
                  f"| {c.difference:+.4f} | {c.ci_low:+.4f} .. {c.ci_high:+.4f} | {low:+.4f} .. {high:+.4f} | "
                  f"{'' if analysis.always_valid_p is None else f'{analysis.always_valid_p:.3g}'} | "
                  f"{'yes' if low <= 0 <= high else 'no'} | "
                  f"{'none' if margin is None else f'{margin:+.4f}'} | "
                  f"{'' if margin is None else ('yes' if high < margin else 'no')} |", ""]
    if rules is not None and analysis.guardrails:
        lines += ["**Guardrails** (B must stay within the limit)", "",
                  "| guardrail | A | B | limit for B | result |", "|---|---|---|---|---|"]
        for check in guardrail_checks(analysis.guardrails, rules):
            lines.append(f"| {check.what} | {check.show(check.a)} | {check.show(check.b)} | "
                         f"{check.show(check.limit)} ({check.limit_text}) | {'pass' if check.passed else 'FAIL'} |")
        lines.append("")
    lines += ["**Variants**", "",
              f"| variant | requests | users | labelled | loss ({analysis.metric}) | model p95 ms | "
              "request p95 ms | fallback | errors |", "|---|---|---|---|---|---|---|---|---|"]
    for v, f in analysis.variants.items():
        lines.append(f"| {v} | {count(f.requests)} | {count(f.users)} | {count(f.labelled)} "
                     f"({f.labelled_share:.1%}) | {_num(f.metric)} | "
                     f"{'' if f.model_p95_ms is None else f'{f.model_p95_ms:.3g}'} | "
                     f"{'' if f.latency_p95_ms is None else f'{f.latency_p95_ms:.1f}'} | {f.fallback_share:.1%} | "
                     f"{f.error_rate:.2%} |")
    if analysis.required_per_variant is not None:
        lines += ["", f"Required sample: {count(analysis.required_per_variant)} labelled requests per variant "
                      f"(minimum detectable effect {analysis.effect.describe() if analysis.effect else 'n/a'})."]
    return "\n".join(lines)
