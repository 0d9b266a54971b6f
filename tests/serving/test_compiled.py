"""The compiled scorer is the pipeline, number for number: the contract of serving/compiled.py.

Every family the AutoML can pick (lr, knn, dt, rf, et, lightgbm) and the fallback's histogram
boosting, under every preprocessing variant of the default configuration and the other scalers,
on columns that exercise every encoder PyCaret fits (one-hot, ordinal for two levels, target
encoding above max_encoding_ohe, rare grouping, TF-IDF text): identical classes and probabilities
within 1e-9 (regression: relative 1e-9) on the hold-out and on adversarial rows.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from assets.training.fallback import fit_fallback
from assets.training.search import setup_experiment
from config.loader import load_config
from config.schema import PreprocessingVariant
from features import FeatureSpec, build_features
from serving.compiled import (
    TOLERANCE,
    CompiledScorer,
    Untranslatable,
    adversarial_rows,
    columns_of,
    compile_pipeline,
    compile_verified,
    make_kernel,
    verify,
)
from serving.model_io import model_outputs

FAMILIES = ["lr", "knn", "dt", "rf", "et", "lightgbm"]
DEFAULT_VARIANTS = {v.name: v for v in load_config().training.variants}
OTHER_SCALERS = {m: PreprocessingVariant(name=f"median_{m}", numeric_imputation="median", normalize=True,
                                         normalize_method=m) for m in ("minmax", "maxabs", "robust")}


def make_rows(task: str, n: int = 900, seed: int = 0) -> pd.DataFrame:
    """Hourly rows: two numbers (one 10% missing), categories of 5 levels (10% missing, one-hot; with
    spaces and punctuation, which LightGBM renames in its one-hot columns' names),
    2 levels (ordinal), 40 levels (target-encoded above max_encoding_ohe 25; some rare), a text."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "ts": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
        "x1": rng.normal(size=n), "x2": rng.gamma(2, 3, n),
        "c1": rng.choice(["a", "b b", "c-c", "d/d", "e (e)"], n).astype(object), "c2": rng.choice(["yes", "no"], n),
        "c3": rng.choice([f"k{i}" for i in range(40)], n, p=np.r_[np.full(30, 0.03), np.full(10, 0.01)]),
        "txt": [" ".join(rng.choice(["free", "cash", "meet", "team", "lunch", "prize"], 4)) for _ in range(n)],
    })
    df.loc[rng.random(n) < 0.1, "x1"] = np.nan
    df.loc[rng.random(n) < 0.1, "c1"] = None
    signal = df["x1"].fillna(0) + (df["c1"] == "a") + df["txt"].str.count("free") * 0.5 + rng.normal(size=n)
    if task == "classification":
        df["y"] = np.where(signal > 0.6, "late", "on time")
    elif task == "multiclass":
        df["y"] = pd.cut(signal, [-np.inf, 0, 1, np.inf], labels=["low", "mid", "high"]).astype(str)
    else:
        df["y"] = 3 * signal + 10
    return df


def spec_for(task: str) -> FeatureSpec:
    return FeatureSpec(task="regression" if task == "regression" else "classification", time_column="ts",
                       target="y", id_column=None, numeric=("x1", "x2"), categorical=("c1", "c2", "c3"),
                       text=("txt",), time_features=("hour", "day_of_week"))


@pytest.fixture(scope="module")
def frames() -> dict[str, tuple[pd.DataFrame, pd.DataFrame, FeatureSpec]]:
    out = {}
    for task in ("classification", "multiclass", "regression"):
        spec = spec_for(task)
        feats = build_features(make_rows(task), spec)
        out[task] = (feats.iloc[:700].reset_index(drop=True), feats.iloc[700:].reset_index(drop=True), spec)
    return out


def check_family_variants(frames, task: str, variant: PreprocessingVariant, families=FAMILIES) -> None:
    train, holdout, spec = frames[task]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = setup_experiment(train, spec, load_config(), variant)
        for family in families:
            pipeline = exp.finalize_model(exp.create_model(family, verbose=False))
            scorer = compile_pipeline(pipeline, spec, train)
            check = verify(pipeline, scorer, holdout, spec)
            assert check.ok, f"{task} {variant.name} {family}: {check.reason}"
            assert check.class_mismatches == 0 and check.rows == len(holdout)
            # 6 per number, 5 per category, 4 per text, one all-missing row
            assert check.adversarial_rows == 6 * len(spec.numeric) + 5 * len(spec.categorical) + 4 * len(spec.text) + 1
            limit = check.max_abs_diff if spec.task == "classification" else check.max_rel_diff
            assert limit <= TOLERANCE
            # and directly: the compiled outputs are the pipeline's on the hold-out
            ref_pred, ref_proba = model_outputs(pipeline, holdout, spec)
            pred, proba = scorer.predict(columns_of(holdout, spec))
            if spec.task == "classification":
                assert list(pred) == list(ref_pred)
                np.testing.assert_allclose(proba, ref_proba, rtol=0, atol=TOLERANCE)
            else:
                np.testing.assert_allclose(pred, ref_pred, rtol=TOLERANCE)


def test_every_family_binary_default_variant(frames) -> None:
    check_family_variants(frames, "classification", DEFAULT_VARIANTS["median_raw"])


def test_numbers_only_data_skips_the_steps_pycaret_leaves_unfitted() -> None:
    """No categorical or text input (breast_cancer in the zoo): PyCaret neither fits nor applies its
    categorical imputer and encoders, and the compiled path must not read their missing state."""
    from dataclasses import replace

    spec = replace(spec_for("classification"), categorical=(), text=())
    feats = build_features(make_rows("classification").drop(columns=["c1", "c2", "c3", "txt"]), spec)
    frames = {"classification": (feats.iloc[:700].reset_index(drop=True), feats.iloc[700:].reset_index(drop=True),
                                 spec)}
    check_family_variants(frames, "classification", DEFAULT_VARIANTS["median_raw"], families=["lr", "lightgbm"])


@pytest.mark.slow
@pytest.mark.parametrize("variant", [*[v for n, v in DEFAULT_VARIANTS.items() if n != "median_raw"],
                                     *OTHER_SCALERS.values()], ids=lambda v: v.name)
def test_every_family_binary_other_variants(frames, variant) -> None:
    check_family_variants(frames, "classification", variant)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multiclass", "regression"])
@pytest.mark.parametrize("variant", list(DEFAULT_VARIANTS.values()), ids=lambda v: v.name)
def test_every_family_multiclass_and_regression(frames, task, variant) -> None:
    check_family_variants(frames, task, variant)


@pytest.mark.parametrize("task", ["classification", "multiclass", "regression"])
def test_fallback_histogram_boosting(frames, task) -> None:
    train, holdout, spec = frames[task]
    pipeline = fit_fallback(train, spec)
    scorer, fields = compile_verified(pipeline, spec, holdout)
    assert scorer is not None and fields["scorer"] == "compiled", fields
    assert fields["scorer_check"]["kernel"] == "estimator" and fields["scorer_max_diff"] <= TOLERANCE
    assert [type(s).__name__ for s in scorer.steps] == ["Lookup"]


def test_adversarial_rows_cover_missing_unseen_empty_and_extreme(frames) -> None:
    _, holdout, spec = frames["classification"]
    rows = adversarial_rows(holdout, spec, {"numeric_ranges": {"x1": [-3.0, 3.0]}})
    assert rows["x1"].isna().sum() >= 2 and rows["x1"].max() == 1e12 and rows["x1"].min() == -1e12
    assert (rows["x1"] == 63.0).sum() == 1  # 10 widths beyond the training maximum
    assert rows["c1"].isna().sum() >= 3 and "unseen category" in set(rows["c3"])
    assert {"", "zzqx unseen words only"} <= set(rows["txt"].dropna()) and rows["txt"].isna().sum() >= 2
    assert rows.iloc[-1][["x1", "x2", "c1", "c2", "c3", "txt"]].isna().all()  # every input missing


def test_untranslatable_step_is_named_and_a_difference_is_caught(frames) -> None:
    train, holdout, spec = frames["classification"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = setup_experiment(train, spec, load_config(),
                               PreprocessingVariant(name="knn_impute", numeric_imputation="knn"))
        pipeline = exp.finalize_model(exp.create_model("lr", verbose=False))
    with pytest.raises(Untranslatable) as caught:
        compile_pipeline(pipeline, spec, train)
    assert caught.value.step == "numerical_imputer" and "KNNImputer" in caught.value.reason
    scorer, fields = compile_verified(pipeline, spec, holdout)
    assert scorer is None and fields["scorer"] == "pipeline"
    assert fields["scorer_check"]["step"] == "numerical_imputer"
    assert "no compiled translation" in fields["scorer_check"]["reason"]

    # a scorer that is off by more than the tolerance is refused, with the difference named
    good = compile_pipeline(fit_fallback(train, spec), spec, train)
    pipeline = fit_fallback(train, spec)
    bad = compile_pipeline(pipeline, spec, train)
    bad.kernel = make_kernel(fit_fallback(train.iloc[:400], spec).steps[-1][1], spec.task)  # another model
    check = verify(pipeline, bad, holdout, spec)
    assert not check.ok and check.max_abs_diff > 1e-3 and "difference" in check.reason
    assert verify(pipeline, good.bind(pipeline), holdout, spec).ok


def test_scorer_state_round_trip_binds_the_pipelines_estimator(frames) -> None:
    train, holdout, spec = frames["classification"]
    pipeline = fit_fallback(train, spec)
    scorer = compile_pipeline(pipeline, spec, train)
    data = scorer.state_bytes()
    assert len(data) < 20_000  # tables only: the estimator is the pipeline's, bound again on load
    again = CompiledScorer.from_state(data, pipeline)
    np.testing.assert_array_equal(again.outputs(columns_of(holdout, spec)), scorer.outputs(columns_of(holdout, spec)))
    assert scorer.sha256() == again.sha256()
