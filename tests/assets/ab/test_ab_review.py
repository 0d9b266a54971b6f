"""The reviewer's summary of ab_analysis: versions named, the deciding basis and interval, guardrails
as pass/fail with values and limits, health banners, counts written out."""

from __future__ import annotations

import numpy as np

from assets.ab.analysis import analyse
from assets.ab.review import count, review_markdown
from config.schema import ABConfig
from tests.assets.ab.test_ab_labels_and_scale import EXPERIMENT, _events

MODELS = {"A": {"version": 1, "algorithm": "LogisticRegression"}, "B": {"version": 3, "algorithm": "LGBMClassifier"}}


def test_the_summary_names_the_versions_the_basis_the_interval_and_each_guardrail() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    variants = ["A" if i % 2 == 0 else "B" for i in range(n)]
    labels = rng.integers(0, 2, n).tolist()
    # B right 90% of the time, A 70%: B is clearly better
    right = [rng.random() < (0.7 if v == "A" else 0.9) for v in variants]
    predictions = [y if ok else 1 - y for y, ok in zip(labels, right, strict=True)]
    analysis = analyse(_events(predictions, labels, variants), EXPERIMENT, "classification",
                       ABConfig(min_samples=100, non_inferiority_margin=0.02, mde_unit="absolute", mde=0.15))
    text = review_markdown(analysis, MODELS)
    assert text.startswith("**PROMOTE**: B is better")
    assert "**A** = prod **v1** (LogisticRegression)" in text and "**B** = staging **v3** (LGBMClassifier)" in text
    assert "decided on: split: A's users against B's users" in text
    effect_row = next(line for line in text.splitlines() if line.startswith("| -0."))
    cells = [c.strip() for c in effect_row.strip("|").split("|")]
    low, high = (float(x) for x in cells[2].split(" .. "))
    assert low < high < 0 and cells[4] == "no" and cells[5] == "+0.0200" and cells[6] == "yes"
    guardrails = [line for line in text.splitlines() if line.startswith(("| error rate", "| fallback share",
                                                                          "| request latency"))]
    assert len(guardrails) == 3 and all(line.endswith("| pass |") for line in guardrails)
    assert "| error rate | 0.00% | 0.00% | 1.00% (A's + 1.0%) | pass |" in text
    assert "- OK: sample ratio" in text and "- OK: label balance" in text
    assert "| A | 1,000 | 1,000 | 1,000 (100.0%) |" in text


def test_counts_are_written_out() -> None:
    assert (count(12140), count(0), count(None)) == ("12,140", "0", "")
