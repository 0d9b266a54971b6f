"""The fallback against the candidate on the same hold-out: measured, recorded by the gate, never hidden."""

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor

from assets.ingest.cleaning import clean_batch
from assets.ingest.contract import build_contract
from assets.training.evaluation import compare_with_fallback, fallback_note, gate_decision, naive_metrics
from assets.training.fallback import fit_fallback
from assets.training.report import fallback_table
from config import load_config
from features import FeatureSpec, build_features
from serving.model_io import model_frame
from tests.conftest import make_source, write_config


def _features(cfg, n: int = 900) -> tuple[pd.DataFrame, FeatureSpec]:
    """Typed as ingestion types a batch (time as UTC timestamps, numbers as floats), cleaned, featurized."""
    raw = make_source(n).sort_values("ts").reset_index(drop=True)
    raw["ts"] = pd.to_datetime(raw["ts"], utc=True).astype("datetime64[us, UTC]")
    for col in ("temp", "amount", "visits"):
        raw[col] = raw[col].astype("float64")
    contract = build_contract(raw, cfg)
    kept, _ = clean_batch(raw, contract, cfg)
    spec = FeatureSpec.from_contract(contract, cfg)
    return build_features(kept.assign(_batch_id="b1"), spec), spec


def _fitted_dummy(model, frame: pd.DataFrame, spec: FeatureSpec):
    x = model_frame(frame, spec)
    return model.fit(x.drop(columns=[spec.target]), x[spec.target])


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    # these tests are about AUC's arithmetic (a prior-only model has AUC 0.5), not the default metric
    cfg = load_config(write_config(tmp_path_factory.mktemp("cls"), {"training": {"metric": "AUC"}}))
    frame, spec = _features(cfg)
    return cfg, frame.iloc[:600], frame.iloc[600:].reset_index(drop=True), spec


def test_a_fallback_that_beats_the_candidate_is_measured_and_named_by_the_gate(classification) -> None:
    cfg, train, holdout, spec = classification
    fallback = fit_fallback(train, spec)
    weak = _fitted_dummy(DummyClassifier(strategy="prior"), train, spec)  # AUC 0.5 by construction
    versus = compare_with_fallback(weak, fallback, holdout, spec, "AUC", resamples=200)
    assert versus["candidate"] == pytest.approx(0.5)
    assert versus["fallback"] > 0.8  # the toy target follows temperature
    assert versus["advantage"] == pytest.approx(versus["fallback"] - 0.5)
    low, high = versus["ci95"]
    assert 0 < low < versus["advantage"] < high
    assert (versus["fallback_better"], versus["significant"], versus["rows"]) == (True, True, len(holdout))
    gate = gate_decision({"AUC": versus["candidate"]}, None, cfg, naive_metrics(train, holdout, spec),
                         fallback=versus)
    assert gate["passed"] is False  # 0.5 does not beat the naive 0.5: the comparison does not change the outcome
    assert gate["fallback"] is versus
    assert "FALLBACK BEATS THE CANDIDATE beyond the hold-out's noise: AUC" in gate["reason"]
    assert "the AutoML winner is kept as the candidate because" in gate["reason"]
    # the other way round: the candidate leads, the lead is negative and the note says so
    reverse = compare_with_fallback(fallback, weak, holdout, spec, "AUC", resamples=200)
    assert reverse["advantage"] == pytest.approx(-versus["advantage"])
    assert not reverse["fallback_better"] and fallback_note(reverse).startswith("the candidate is not beaten")


def test_the_same_model_on_both_sides_is_a_tie_within_noise(classification) -> None:
    _, train, holdout, spec = classification
    fallback = fit_fallback(train, spec)
    versus = compare_with_fallback(fallback, fallback, holdout, spec, "LogLoss", resamples=50)
    assert versus["advantage"] == 0 and versus["ci95"] == [0.0, 0.0]
    assert not versus["fallback_better"] and not versus["significant"]


def test_lower_is_better_metrics_are_oriented_as_a_lead(tmp_path) -> None:
    cfg = load_config(write_config(tmp_path, {"dataset": {"task": "regression", "target": "amount",
                                                          "numeric": ["temp", "visits"]}}))
    frame, spec = _features(cfg)
    train, holdout = frame.iloc[:600], frame.iloc[600:].reset_index(drop=True)
    zero = _fitted_dummy(DummyRegressor(strategy="constant", constant=0.0), train, spec)
    mean = _fitted_dummy(DummyRegressor(strategy="mean"), train, spec)
    versus = compare_with_fallback(zero, mean, holdout, spec, "MAE", resamples=100)
    y = holdout["amount"].to_numpy()
    assert versus["candidate"] == pytest.approx(np.abs(y).mean())
    assert versus["fallback"] == pytest.approx(np.abs(y - train["amount"].mean()).mean())
    assert versus["advantage"] == pytest.approx(versus["candidate"] - versus["fallback"]) and versus["advantage"] > 0
    assert versus["fallback_better"] and versus["significant"]


def test_the_summary_table_lists_each_candidates_comparison() -> None:
    import json

    versus = {"metric": "AUC", "candidate": 0.789, "fallback": 0.8, "advantage": 0.011, "ci95": [0.002, 0.02],
              "fallback_better": True, "significant": True, "rows": 5000, "resamples": 1000}
    versions = pd.DataFrame({"version": [1, 2, 3], "model_id": ["et", "hgb_fallback", "lr"],
                             "role": ["candidate", "fallback", "candidate"],
                             "gate": [json.dumps({"fallback": versus}), json.dumps({}), json.dumps({"passed": True})]})
    table = fallback_table(versions)
    assert table.to_dict("records") == [{"version": 1, "model_id": "et", "metric": "AUC", "candidate": 0.789,
                                         "fallback": 0.8, "lead": 0.011, "ci95 low": 0.002, "ci95 high": 0.02,
                                         "fallback better": True, "beyond noise": True}]


def test_binary_auc_from_ranks_equals_sklearns() -> None:
    from sklearn.metrics import roc_auc_score

    from assets.training.evaluation import binary_auc

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    score = np.round(rng.random(500) + 0.3 * y, 2)  # rounded: ties count half, as in sklearn
    assert binary_auc(y == 1, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert np.isnan(binary_auc(np.ones(5, dtype=bool), np.arange(5.0)))
