"""The A/B analysis in one label domain and on any scale (issue 11, observations 3 and 4).

3. With some requests unlabelled and labels arriving as ``0.0`` / ``1.0`` (a float column because
   of the gaps), both variants showed loss 1.0 and ``B - A = +0.0000`` (labels compared as text).
4. ``ab.mde`` was in the target's units: 17 million labelled requests per variant for prices.

The A/A simulations extend those of test_ab_stats.py to a regression and a multiclass target,
through the analysis' own evidence (:func:`assets.ab.analysis.weigh`) with the default config.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from assets.ab.analysis import analyse, request_loss, weigh
from assets.ab.stats import CONTINUE, PROMOTE, ROLLBACK, StatTest, decide
from config.schema import ABConfig
from lake.experiments import Experiment

EXPERIMENT = Experiment("exp-1", 1, 2, 0.5, "running")
OK = StatTest(0.0, 0.5, {"observed_b": 0.5, "expected_b": 0.5, "labelled_share_a": 0.8, "labelled_share_b": 0.8})


def _events(predictions: list, labels: list, variants: list[str], probability: list | None = None) -> pd.DataFrame:
    """An ``labelled_events`` frame: predictions and labels as the lake stores them (JSON texts),
    a missing label as null."""
    n = len(predictions)
    times = pd.date_range("2024-06-01", periods=n, freq="s", tz="UTC")
    return pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)], "event_time": times, "user_id": [f"u{i}" for i in range(n)],
        "variant": variants, "experiment_id": "exp-1", "model_version": [1 if v == "A" else 2 for v in variants],
        "model_used": ["prod" if v == "A" else "staging" for v in variants], "fallback_reason": None,
        "prediction": [json.dumps(p) for p in predictions],
        "probability": probability if probability is not None else [None] * n,
        "latency_ms": 5.0, "error": None,
        "label": [None if y is None else json.dumps(y) for y in labels],
        "label_delay_s": [None if y is None else 60.0 for y in labels]})


def test_unlabelled_requests_and_float_labels_give_each_variant_its_true_accuracy() -> None:
    """Observation 3: 4,000 requests per variant, a fifth unlabelled, labels sent as 0.0 / 1.0 for
    integer classes 0 / 1; true accuracies 0.90 (A) and 0.865 (B)."""
    rng = np.random.default_rng(3)
    n = 4000
    variants = ["A"] * n + ["B"] * n
    truth = rng.integers(0, 2, 2 * n)
    right = np.concatenate([rng.random(n) < 0.90, rng.random(n) < 0.865])
    predictions = [int(t) if r else int(1 - t) for t, r in zip(truth, right, strict=True)]
    labelled = rng.random(2 * n) >= 0.2
    labels = [float(t) if m else None for t, m in zip(truth, labelled, strict=True)]
    analysis = analyse(_events(predictions, labels, variants), EXPERIMENT, "classification",
                       ABConfig(min_samples=100))
    for v, rows in (("A", slice(0, n)), ("B", slice(n, 2 * n))):
        expected_error = float(np.mean(~right[rows][labelled[rows]]))
        figures = analysis.variants[v]
        assert figures.labelled == int(labelled[rows].sum()) and figures.invalid_labels == 0
        assert figures.metric == pytest.approx(expected_error)  # was 1.0 for both
    assert analysis.variants["A"].metric == pytest.approx(0.10, abs=0.015)
    c = analysis.comparison
    assert c.difference == pytest.approx(analysis.variants["B"].metric - analysis.variants["A"].metric)
    assert c.ci_low < c.difference < c.ci_high and c.ci_high - c.ci_low > 0.01  # was +0.0000 .. +0.0000
    # the default MDE (a tenth of A's error: 1 point) needs more labels than these ~3,200 per variant
    assert analysis.always_valid_p < 0.05 and analysis.decision.action == CONTINUE
    assert f"of {analysis.required_per_variant}" in analysis.decision.reason and analysis.required_per_variant > 5000
    # planned for a 30% change of A's error (3 points), the same labels decide: B is worse
    coarse = analyse(_events(predictions, labels, variants), EXPERIMENT, "classification",
                     ABConfig(min_samples=100, mde=0.3))
    assert coarse.required_per_variant < 3000 and coarse.decision.action == ROLLBACK
    assert coarse.decision.reason.startswith("B is worse")


def test_labels_in_any_spelling_compare_with_the_answered_class() -> None:
    # yes/no target trained as 0 / 1; labels as the client spelled them
    frame = _events([1, 0, 1, 0, 1], ["YES", "no", True, "0.0", None], ["A"] * 5)
    assert request_loss(frame, "accuracy").tolist()[:4] == [0.0, 0.0, 0.0, 0.0]
    assert np.isnan(request_loss(frame, "accuracy").iloc[4])
    # multiclass strings: case and blanks do not make a new class; an unknown class is an error
    frame = _events(["cat", "dog", "bird", "cat"], [" Cat", "DOG", "cat", "fish"], ["A"] * 4)
    assert request_loss(frame, "accuracy").tolist() == [0.0, 0.0, 1.0, 1.0]


def test_log_loss_takes_the_positive_class_from_the_models_classes() -> None:
    # string classes "no" < "yes": the probability is of "yes", labels in any spelling
    frame = _events(["yes", "no", "yes"], ["YES", " no", "no"], ["A"] * 3, probability=[0.8, 0.3, 0.6])
    assert request_loss(frame, "log_loss").tolist() == pytest.approx([-np.log(0.8), -np.log(0.7), -np.log(0.4)])
    with pytest.raises(ValueError, match="binary"):
        request_loss(_events(["a", "b", "c"], ["a", "b", "c"], ["A"] * 3, probability=[0.5] * 3), "log_loss")


def test_regression_labels_as_text_and_invalid_labels_are_counted_not_guessed() -> None:
    frame = _events([10.0, 20.0, 30.0, 40.0], ["12.5", 18, "n/a", None], ["A", "A", "B", "B"])
    loss = request_loss(frame, "mae")
    assert loss.tolist()[:2] == [2.5, 2.0] and loss.iloc[2:].isna().all()
    analysis = analyse(frame, EXPERIMENT, "regression", ABConfig())
    assert analysis.variants["B"].invalid_labels == 1 and analysis.variants["B"].labelled == 0
    assert analysis.summary()["invalid_labels_B"] == 1


def _price_errors(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Absolute errors of a price model: heavy-tailed (Student t, 3 dof), MAE about 1.1 x scale."""
    return np.abs(rng.standard_t(3, n)) * scale


def test_the_default_mde_sizes_a_price_experiment_the_same_on_any_scale() -> None:
    """Observation 4: with `ab.mde` in loss units a price MAE of ~44 needed 17 million labelled
    requests per variant. Relative by default, the required sample is set by the loss' shape
    only: the same for prices in units and in cents, and a few thousand requests."""
    rng = np.random.default_rng(4)
    a, b = _price_errors(rng, 3000, 40.0), _price_errors(rng, 3000, 40.0)
    cfg = ABConfig()
    assert cfg.mde_unit == "relative" and cfg.mde == 0.10
    units, cents = weigh(a, b, cfg), weigh(100 * a, 100 * b, cfg)
    assert units.required == cents.required and 1_000 < units.required < 10_000
    assert units.effect.mde == pytest.approx(0.10 * a.mean()) and cents.effect.mde == pytest.approx(10 * a.mean())
    assert units.always_valid_p == pytest.approx(cents.always_valid_p)
    assert "10% of A's mean loss" in units.effect.describe()
    # standardised and absolute units: as configured
    assert weigh(a, b, ABConfig(mde_unit="standardised", mde=0.1)).effect.mde == pytest.approx(0.1 * a.std(ddof=1))
    assert weigh(a, b, ABConfig(mde_unit="absolute", mde=2.0)).effect.mde == 2.0


def test_a_perfect_prod_leaves_the_relative_effect_undefined_and_says_so() -> None:
    evidence = weigh(np.zeros(500), np.full(500, 0.0), ABConfig())
    decision = decide(evidence.comparison, evidence.always_valid_p, OK, OK, guardrails={}, rules=evidence.rules)
    assert decision.action == CONTINUE and "A's loss has mean 0 over 500 labelled requests" in decision.reason


def _decisions_over_looks(loss_a: np.ndarray, loss_b: np.ndarray, cfg: ABConfig, *, per_look: int,
                          looks: int) -> str:
    """The analysis run after every ``per_look`` labels per variant (as ab_sensor does), each time
    on everything so far with the MDE re-scaled to A's loss: the first decision that is not
    `continue`."""
    for k in range(1, looks + 1):
        evidence = weigh(loss_a[: k * per_look], loss_b[: k * per_look], cfg)
        decision = decide(evidence.comparison, evidence.always_valid_p, OK, OK, guardrails={}, rules=evidence.rules)
        if decision.action != CONTINUE:
            return decision.action
    return CONTINUE


def _multiclass_losses(rng: np.random.Generator, n: int, error: float) -> np.ndarray:
    """Accuracy losses of a five-class classifier, through the analysis' label mapping (labels
    spelled in upper case, predictions as the model's classes)."""
    classes = np.array(["bus", "car", "bike", "walk", "train"])
    truth = rng.integers(0, 5, n)
    wrong = rng.random(n) < error
    predicted = np.where(wrong, (truth + rng.integers(1, 5, n)) % 5, truth)
    frame = _events(classes[predicted].tolist(), [c.upper() for c in classes[truth]], ["A"] * n)
    return request_loss(frame, "accuracy").to_numpy()


@pytest.mark.slow  # 200 x 30 analyses: about half a minute
@pytest.mark.parametrize("target", ["regression", "multiclass"])
def test_a_a_experiments_stay_within_the_nominal_false_decision_rate(target: str) -> None:
    """200 A/A experiments, 30 analyses each (100 labels per variant apart), the default config
    (relative MDE 0.10, no non-inferiority margin): at most 5% end in a promotion or a rollback
    (measured: 4 of 200 on the regression)."""
    rng = np.random.default_rng(11)
    cfg = ABConfig(look_every=100)
    outcomes = []
    for _ in range(200):
        if target == "regression":
            a, b = _price_errors(rng, 3000, 40.0), _price_errors(rng, 3000, 40.0)
        else:
            a, b = _multiclass_losses(rng, 3000, 0.4), _multiclass_losses(rng, 3000, 0.4)
        outcomes.append(_decisions_over_looks(a, b, cfg, per_look=100, looks=30))
    false_decisions = outcomes.count(PROMOTE) + outcomes.count(ROLLBACK)
    assert false_decisions <= 0.05 * 200, f"{false_decisions} false decisions in 200 A/A runs ({target})"


@pytest.mark.slow  # 100 x 30 analyses
@pytest.mark.parametrize("target", ["regression", "multiclass"])
def test_a_b_better_by_the_mde_is_promoted_under_the_same_rules(target: str) -> None:
    """A B whose loss is 20% lower (twice the default relative MDE) is promoted in most of 100 runs
    of 30 looks: the relative default can decide a regression and a multiclass target."""
    rng = np.random.default_rng(12)
    cfg = ABConfig(look_every=100)
    outcomes = []
    for _ in range(100):
        if target == "regression":
            a, b = _price_errors(rng, 3000, 40.0), _price_errors(rng, 3000, 32.0)
        else:
            a, b = _multiclass_losses(rng, 3000, 0.4), _multiclass_losses(rng, 3000, 0.32)
        outcomes.append(_decisions_over_looks(a, b, cfg, per_look=100, looks=30))
    assert outcomes.count(ROLLBACK) == 0 and outcomes.count(PROMOTE) >= 80, outcomes.count(PROMOTE)


def test_the_report_and_summary_state_the_effects_unit(tmp_path) -> None:
    from assets.ab.report import write_report

    rng = np.random.default_rng(5)
    n = 600
    preds = rng.integers(0, 2, 2 * n).tolist()
    labels = [p if rng.random() < 0.8 else 1 - p for p in preds]
    events = _events(preds, labels, ["A"] * n + ["B"] * n)
    cfg = ABConfig(min_samples=100, non_inferiority_margin=0.05)
    analysis = analyse(events, EXPERIMENT, "classification", cfg)
    error_a = analysis.variants["A"].metric
    s = analysis.summary()
    assert (s["mde"], s["mde_unit"]) == (0.10, "relative")
    assert s["mde_loss_units"] == pytest.approx(0.10 * error_a)
    assert s["non_inferiority_margin_loss_units"] == pytest.approx(0.05 * error_a)
    text = write_report(analysis, events, tmp_path / "ab.html").read_text()
    assert f"10% of A&#x27;s mean loss ({0.10 * error_a:.4g} in loss units)" in text
    assert f"non-inferiority margin 5% of A&#x27;s mean loss ({0.05 * error_a:.4g} in loss units)" in text
    # the table names the loss it shows and gives accuracy beside it, as the chart plots it
    assert "<th>loss (error rate = 1 - accuracy)</th>" in text and "<th>accuracy</th>" in text
    assert f"<td>{1 - error_a:.4g}</td>" in text and f"<td>{error_a:.4g}</td>" in text


def test_paired_evidence_scales_the_effect_by_as_loss_and_sizes_by_the_differences() -> None:
    rng = np.random.default_rng(6)
    a = (rng.random(2000) < 0.3).astype(float)
    b = np.where(rng.random(2000) < 0.9, a, 1 - a)  # the two models agree on 90% of requests
    evidence = weigh(a, b, ABConfig(), paired=True)
    assert evidence.effect.mde == pytest.approx(0.10 * a.mean())
    z = 1.959963984540054 + 0.8416212335729143
    assert evidence.required == max(200, int(np.ceil((z * (b - a).std(ddof=1) / (0.10 * a.mean())) ** 2)))
    assert evidence.comparison.paired and evidence.rules.tau == pytest.approx(0.10 * a.mean())


def test_an_experiment_without_any_label_yet_is_analysed_not_crashed(lake) -> None:
    """Requests logged, no feedback table yet: the label delay was tz-naive NaT minus UTC times
    (TypeError); now every request is unlabelled and the decision waits for labels."""
    from assets.ab.analysis import labelled_events
    from lake.request_log import prediction_event, prediction_row
    from lake.tables import AB_EVENTS, AB_EVENTS_SCHEMA

    rows = [prediction_row(prediction_event(
        request_id=f"r{i}", variant="AB"[i % 2], experiment_id="exp-1", model_version=1 + i % 2,
        model_used="prod" if i % 2 == 0 else "staging", fallback_reason=None, prediction=i % 2, probability=0.6,
        latency_ms=3.0, user_id=f"u{i}", features={}, worker="w", time=f"2024-06-01T00:00:{i:02d}+00:00"))
        for i in range(20)]
    frame = pd.DataFrame(rows).assign(segment="s1", ingested_at=pd.Timestamp("2024-06-02", tz="UTC"))
    lake.append(AB_EVENTS, frame, schema=AB_EVENTS_SCHEMA)
    events = labelled_events(lake, "exp-1")
    assert len(events) == 20 and events["label"].isna().all() and events["label_delay_s"].isna().all()
    analysis = analyse(events, EXPERIMENT, "classification", ABConfig())
    assert analysis.variants["A"].labelled == 0 and analysis.decision.action == CONTINUE
    assert analysis.decision.reason.startswith("not enough labelled requests per variant yet: 0 of 200")


def test_the_latency_guardrail_compares_each_models_own_time_not_the_requests() -> None:
    """The demo's case: every request took ~50 ms (both variants' rows of a batch, the shadow, the
    log write), so request latency cannot tell the models apart; their own scoring times can.
    Rows the fallback answered measure the fallback, so they stay out of the variant's figure."""
    rng = np.random.default_rng(5)
    n = 2000
    variants = ["A"] * n + ["B"] * n
    truth = rng.integers(0, 2, 2 * n)
    events = _events([int(t) for t in truth], [float(t) for t in truth], variants)
    events["latency_ms"] = 50.0 + rng.random(2 * n)
    events["model_ms"] = np.r_[rng.uniform(0.04, 0.05, n), rng.uniform(0.5, 0.6, n)]  # B is 10x slower
    fallback = np.r_[np.zeros(n, bool), np.arange(n) < 100]
    events.loc[fallback, "model_used"] = "fallback"
    events.loc[fallback, "model_ms"] = 1000.0  # would dominate B's p95 if counted
    analysis = analyse(events, EXPERIMENT, "classification", ABConfig(min_samples=100))
    a, b = analysis.variants["A"], analysis.variants["B"]
    assert 0.04 <= a.model_p50_ms <= a.model_p95_ms <= 0.05 and 0.5 <= b.model_p50_ms <= b.model_p95_ms <= 0.6
    assert abs(a.latency_p95_ms - b.latency_p95_ms) < 0.2  # indistinguishable per request
    assert analysis.decision.action == ROLLBACK and "B's model latency p95 0.5" in analysis.decision.reason
    assert analysis.summary()["model_p95_ms_B"] == pytest.approx(b.model_p95_ms)
    # events logged before the column existed: the request's latency, and the reason says so
    older = analyse(events.drop(columns=["model_ms"]), EXPERIMENT, "classification", ABConfig(min_samples=100))
    assert older.variants["B"].model_p95_ms is None and older.decision.action != ROLLBACK
