"""Model lifecycle on small data: time-ordered validation, the gate, the registry and its aliases."""

import json
import math
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.ingest.steps import require_contract
from assets.training.data import select_training_data
from assets.training.retrain import retrain
from assets.training.search import fold_bounds, setup_experiment
from features import FeatureSpec
from lake.paths import PROJECT_ROOT
from lake.registry import AliasChange, IntegrityError, ModelRegistry
from lake.tables import FEATURES, LEADERBOARD, MODEL_REGISTRY_SCHEMA
from tests.support.pipeline import FAST, Pipeline


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """Three ingested batches and one training run (shared: PyCaret runs take seconds)."""
    pipe = Pipeline(tmp_path_factory.mktemp("trained"), {"training": FAST})
    for _ in range(3):
        assert pipe.emit_and_run().success
    result = pipe.defs.resolve_job_def("retrain_job").execute_in_process(instance=pipe.instance)
    assert result.success
    return pipe


@pytest.mark.slow
def test_window_and_holdout_follow_time(trained: Pipeline) -> None:
    data = select_training_data(trained.lake.read(FEATURES), trained.cfg)
    assert data.holdout_batches == ["batch_00003"] and data.train_batches == ["batch_00001", "batch_00002"]
    assert data.train["event_time"].max() < data.holdout["event_time"].min()
    capped = trained.cfg.model_copy(update={"training": trained.cfg.training.model_copy(
        update={"max_train_rows": 250, "holdout_min_rows": 301})})
    data = select_training_data(trained.lake.read(FEATURES), capped)
    assert data.holdout_batches == ["batch_00002", "batch_00003"]  # one batch is not enough rows
    assert len(data.train) == 250 and data.train_batches == ["batch_00001"]


@pytest.mark.slow
def test_cross_validation_never_trains_on_later_rows(trained: Pipeline) -> None:
    spec = FeatureSpec.from_contract(require_contract(trained.lake), trained.cfg)
    data = select_training_data(trained.lake.read(FEATURES), trained.cfg)
    exp = setup_experiment(data.train, spec, trained.cfg, trained.cfg.training.variants[0])
    bounds = fold_bounds(exp)
    assert len(bounds) == 3  # 2 CV folds + PyCaret's own test split
    assert all(last_train < first_valid for last_train, first_valid in bounds)
    x_train = exp.get_config("X_train")
    assert list(x_train.index) == list(range(len(x_train)))  # no shuffling: rows stay in time order


@pytest.mark.slow
def test_first_model_is_prod_with_every_registry_field(trained: Pipeline) -> None:
    registry = ModelRegistry(trained.lake, trained.paths.artifacts)
    assert registry.aliases() == {"prod": 1, "fallback": 2}
    row = registry.get(1)
    assert (row["role"], registry.get(2)["role"], registry.get(2)["model_id"]) == ("candidate", "fallback",
                                                                                   "hgb_fallback")
    empty = [f.name for f in MODEL_REGISTRY_SCHEMA if row.get(f.name) is None or
             (isinstance(row.get(f.name), float) and pd.isna(row.get(f.name)))]
    assert empty == []
    assert json.loads(row["training_batches"]) == ["batch_00001", "batch_00002"]
    assert json.loads(row["holdout_metrics"])["AUC"] > 0.7  # the toy target is learnable
    assert set(json.loads(row["cv_metrics"])) >= {"Accuracy", "AUC", "F1", "LogLoss"}
    schema = json.loads(row["input_schema"])
    assert sorted(schema["categories"]["city"]) == ["Lima", "Oslo", "Rome"]
    assert row["latency_single_ms"] > 0 and row["peak_memory_mb"] > 0
    model = registry.load(1)
    assert set(model.classes_) == {0, 1}
    folder = registry.version_folder(row)
    files = json.loads(row["interpretation"])
    importance = json.loads((folder / files["permutation_importance"]).read_text())
    assert importance[0]["feature"] == "temp"  # the toy target is driven by temperature
    assert (folder / files["permutation_importance_plot"]).stat().st_size > 1000
    if row["model_id"] == "lr":
        coefficients = json.loads((folder / files["coefficients"]).read_text())
        assert {c["feature"] for c in coefficients} >= {"temp", "amount"}
    elif row["model_id"] == "dt":
        assert "temp" in (folder / files["tree"]).read_text()
    shap_doc = json.loads((folder / files["shap"]).read_text())
    if row["model_id"] in ("lr", "dt"):  # exact explainers: linear and tree
        assert next(iter(shap_doc["mean_abs_shap"])) == "temp" and shap_doc["rows"] == 300
    else:
        assert "no exact SHAP explainer" in shap_doc["unavailable"]
    fallback_row = registry.get(2)
    fallback_shap = registry.version_folder(fallback_row) / json.loads(fallback_row["interpretation"])["shap"]
    assert "HistGradientBoostingClassifier has no exact SHAP explainer" in json.loads(
        fallback_shap.read_text())["unavailable"]
    board = trained.lake.read(LEADERBOARD)
    assert set(board["model_id"]) == {"lr", "dt", "knn"} and board["rank"].min() == 1
    # every leader of the search carries its serving cost and CV noise (the model choice reads them)
    leaders = [json.loads(m) for m in board.loc[board["stage"] == "compare", "metrics"]]
    costed = [m for m in leaders if "predict ms (1 row)" in m]
    assert costed and all(m["predict ms (1 row)"] > 0 and m["artifact MiB"] > 0 for m in costed)
    assert all(math.isfinite(m[f"{board['sort_metric'].iloc[0]} (CV standard error)"]) for m in costed)


@pytest.mark.slow
def test_second_run_goes_to_staging_only_when_it_passes_the_gate(trained: Pipeline) -> None:
    registry = ModelRegistry(trained.lake, trained.paths.artifacts)
    assert trained.cfg.sort_metric == "LogLoss"  # the default: min_score is then a ceiling
    strict = trained.cfg.model_copy(update={"training": trained.cfg.training.model_copy(
        update={"metric": "LogLoss", "gate": trained.cfg.training.gate.model_copy(update={"min_score": 0.001})})})
    refused = retrain(trained.lake, registry, strict, "run-strict")
    assert refused.version is None and not refused.gate["passed"]
    assert "does not beat the floor 0.0010 (training.gate.min_score)" in refused.gate["reason"]
    assert registry.aliases() == {"prod": 1, "fallback": 2} and len(registry.versions()) == 2
    passed = retrain(trained.lake, registry, trained.cfg, "run-2")
    assert passed.gate["passed"] and passed.gate["prod"] == pytest.approx(
        json.loads(registry.get(1)["holdout_metrics"])["LogLoss"])  # compared on the same hold-out
    assert (passed.version, passed.alias, passed.fallback_version) == (3, "staging", 4)
    assert registry.aliases() == {"prod": 1, "staging": 3, "fallback": 4}
    history = registry.alias_history().sort_values("change_id")
    assert history[["alias", "version", "from_version"]].fillna(0).astype({"version": int, "from_version": int}) \
        .values.tolist() == [["prod", 1, 0], ["fallback", 2, 0], ["staging", 3, 0], ["fallback", 4, 2]]
    assert history["actor"].iloc[2] == "retrain_job:run-2"


@pytest.mark.slow
def test_tampered_artifact_is_refused(trained: Pipeline) -> None:
    registry = ModelRegistry(trained.lake, trained.paths.artifacts)
    path = registry.artifact_file(registry.get(1))
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\x00")
        with pytest.raises(IntegrityError, match="refusing to load model version 1"):
            registry.load(1)
    finally:
        path.write_bytes(original)
    assert registry.load(1) is not None


def test_concurrent_alias_writers_end_consistent(lake, tmp_path: Path) -> None:
    registry = ModelRegistry(lake, tmp_path / "artifacts")
    errors: list[BaseException] = []

    def writer(alias: str) -> None:
        try:
            for version in range(1, 8):
                registry.set_aliases([AliasChange(alias, version)], actor=alias, reason="test")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(a,)) for a in ("prod", "staging", "fallback")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    history = registry.alias_history().sort_values("change_id")
    assert history["change_id"].tolist() == list(range(1, 22))  # no lost or duplicated change
    assert registry.aliases() == {"prod": 7, "staging": 7, "fallback": 7}
    for alias in ("prod", "staging", "fallback"):  # each chain links: from_version = previous version
        chain = history[history["alias"] == alias]
        assert chain["from_version"].fillna(0).astype(int).tolist() == list(range(0, 7))
    with pytest.raises(ValueError, match="changed concurrently"):
        registry.set_aliases([AliasChange("prod", 9)], actor="x", reason="cas", expect={"prod": 3})
    with pytest.raises(ValueError, match="unknown alias"):
        registry.set_aliases([AliasChange("canary", 1)], actor="x", reason="typo")


@pytest.mark.slow
def test_regression_config_trains_end_to_end(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path, {"dataset": {"task": "regression", "target": "amount",
                                           "numeric": ["temp", "visits"], "ignore": ["churn"]},
                               "training": {**FAST, "metric": "MAE", "gate": {"min_score": 1000.0}}})
    for _ in range(3):
        assert pipe.emit_and_run().success
    registry = ModelRegistry(pipe.lake, pipe.paths.artifacts)
    outcome = retrain(pipe.lake, registry, pipe.cfg, "reg-1")
    assert outcome.gate["metric"] == "MAE" and set(outcome.holdout_metrics) == {"MAE", "RMSE", "R2"}
    assert outcome.holdout_metrics["MAE"] < 30 and outcome.version == 1
    assert registry.aliases() == {"prod": 1, "fallback": 2}
    from serving.scoring import ServedModel, score_frame

    fallback = ServedModel.from_registry_row(registry.get(2), registry.load(2))
    scored = score_frame(pd.DataFrame({"ts": ["2024-02-01T10:00:00Z"]}), fallback)  # every feature missing
    assert scored["error"].tolist() == [""] and np.isfinite(float(scored["predict"].iloc[0]))
    assert pipe.lake.read(FEATURES)["amount"].dtype == "float64"


INFERENCE_ROWS = pd.DataFrame({
    "ts": ["2024-02-01T10:00:00Z", "2024-02-01T11:00:00Z", "2024-02-01T12:00:00Z", "2024-02-01T13:00:00Z",
           "yesterday"],
    "city": ["Oslo", "Paris", None, "Rome", "Rome"],      # Paris: never seen in training
    "plan": ["pro", "basic", None, "pro", "pro"],
    "temp": ["25.5", "3", None, "warm", "10"],            # "warm": cannot be a number
    "amount": ["10", "20", "30", "40", "50"],
    "visits": ["1", "2", None, "4", "5"],
})


@pytest.mark.slow
def test_scoring_predicts_unseen_and_missing_and_reports_bad_rows(trained: Pipeline) -> None:
    from serving.scoring import ServedModel, score_frame

    registry = ModelRegistry(trained.lake, trained.paths.artifacts)
    served = ServedModel.from_registry_row(registry.get(1), registry.load(1))
    scored = score_frame(INFERENCE_ROWS, served)
    assert scored["predict"].iloc[:3].notna().all() and scored["probability"].iloc[:3].between(0, 1).all()
    assert scored["error"].tolist()[:3] == ["", "", ""]
    assert scored["error"].iloc[3] == "temp: 'warm' is not a finite number"
    assert scored["error"].iloc[4] == "ts: missing or not a time"
    assert scored["predict"].iloc[3:].isna().all() and scored["model_version"].eq(1).all()
    hot = INFERENCE_ROWS.iloc[[0]].assign(temp="40")
    assert score_frame(hot, served)["probability"].iloc[0] > score_frame(
        INFERENCE_ROWS.iloc[[0]].assign(temp="-5"), served)["probability"].iloc[0]  # churn follows temp


@pytest.mark.slow
def test_inference_command_writes_predictions_csv(trained: Pipeline, tmp_path: Path) -> None:
    import subprocess
    import sys

    source = tmp_path / "requests.xlsx"
    INFERENCE_ROWS.to_excel(source, index=False)
    root = PROJECT_ROOT
    result = subprocess.run([sys.executable, str(root / "run.py"), "-mode", "inference", "-file", str(source),
                             "--config", str(trained.config_path), "--data", str(trained.paths.root)],
                            check=False, capture_output=True, text=True, timeout=300, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    out = Path(result.stdout.strip().splitlines()[-1])
    assert out == trained.paths.reports / "requests_predictions.csv"
    scored = pd.read_csv(out)
    assert list(scored.columns[-4:]) == ["predict", "probability", "model_version", "error"]
    assert scored["predict"].notna().sum() == 3 and scored["error"].notna().sum() == 2


@pytest.mark.slow
def test_summary_report_covers_batches_and_versions(trained: Pipeline) -> None:
    from assets.training.report import make_summary_report

    report = trained.paths.reports / "summary.html"  # written by retrain_job's summary_report step
    assert report.exists()
    out = trained.paths.reports / "summary_again.html"
    counts = make_summary_report(trained.lake, out, dataset="toy", metric="AUC")
    assert counts["batches"] == 3 and counts["versions"] >= 2 and counts["training_runs"] >= 1
    text = out.read_text()
    assert text.count("data:image/png;base64,") == 2
    assert "Data quality over batches" in text and "Selected hyperparameters" in text and "Alias history" in text
    assert "hgb_fallback" in text
    assert "All versions on one evaluation set" in report.read_text()  # the asset passes the registry


@pytest.mark.slow
def test_every_version_is_scored_on_one_common_evaluation_set(trained: Pipeline) -> None:
    from assets.training.evaluation import common_evaluation

    registry = ModelRegistry(trained.lake, trained.paths.artifacts)
    batches, common = common_evaluation(registry, trained.lake.read(FEATURES), trained.cfg.dataset.target, 200)
    assert batches == ["batch_00003"]  # the latest batches holding the hold-out's 200 rows
    assert list(common["version"]) == sorted(registry.versions()["version"]) and set(common["rows"]) == {300}
    assert not common["in_sample"].any() and "error" not in common  # all trained on batches 1-2
    for row in common.to_dict("records"):  # batch 3 was every version's own hold-out: the same figure
        own = json.loads(registry.get(row["version"])["holdout_metrics"])
        assert row["AUC"] == pytest.approx(own["AUC"])
    _, later = common_evaluation(registry, trained.lake.read(FEATURES), trained.cfg.dataset.target, 500)
    assert set(later["rows"]) == {600} and later["in_sample"].all()  # batches 2-3: trained on batch 2


@pytest.mark.slow
def test_the_fallback_comparison_is_in_the_registry_row_the_metadata_and_the_summary(trained: Pipeline) -> None:
    import dagster as dg

    from assets.training.report import make_summary_report

    registry = ModelRegistry(trained.lake, trained.paths.artifacts)
    versus = json.loads(registry.get(1)["gate"])["fallback"]
    # both figures are the models' own hold-out metrics on the same rows
    assert versus["metric"] == "LogLoss"
    assert versus["candidate"] == pytest.approx(json.loads(registry.get(1)["holdout_metrics"])["LogLoss"])
    assert versus["fallback"] == pytest.approx(json.loads(registry.get(2)["holdout_metrics"])["LogLoss"])
    assert versus["advantage"] == pytest.approx(versus["candidate"] - versus["fallback"])  # a loss: lower leads
    assert versus["rows"] == 300 and versus["resamples"] == 500
    assert versus["ci95"][0] <= versus["advantage"] <= versus["ci95"][1]
    assert "fallback" in json.loads(registry.get(1)["gate"])["reason"]
    event = trained.instance.get_latest_materialization_event(dg.AssetKey("candidate_models"))
    metadata = event.asset_materialization.metadata
    assert metadata["holdout_fallback_LogLoss"].value == pytest.approx(versus["fallback"])
    assert metadata["fallback_beats_candidate"].value is versus["fallback_better"]
    assert metadata["fallback_comparison"].data["ci95"] == versus["ci95"]
    out = trained.paths.reports / "summary_fallback.html"
    counts = make_summary_report(trained.lake, out, dataset="toy", metric="LogLoss")
    gates = [json.loads(g) for g, role in zip(registry.versions()["gate"], registry.versions()["role"], strict=True)
             if role == "candidate"]  # other tests of the module may have registered more candidates
    beaten = sum(g.get("fallback", {}).get("fallback_better", False) for g in gates)
    assert counts["candidates_beaten_by_fallback"] == beaten
    assert "Fallback against the candidate on the same hold-out" in out.read_text()


@pytest.mark.slow
def test_candidate_models_metadata_links_interpretation(trained: Pipeline) -> None:
    import dagster as dg

    event = trained.instance.get_latest_materialization_event(dg.AssetKey("candidate_models"))
    metadata = event.asset_materialization.metadata
    assert metadata["registered_version"].value == 1 and metadata["alias"].value == "prod"
    for kind in ("permutation_importance", "permutation_importance_plot", "shap"):
        assert Path(metadata[f"interpretation_{kind}"].value).exists()
    assert metadata["holdout_AUC"].value > 0.7


def test_time_order_does_not_depend_on_the_order_rows_were_read_in() -> None:
    """Hourly times tie; the files of a Delta table are read in an order that changes with every
    write: the order (and so the folds, the row cap and the reference sample) must not."""
    from assets.training.data import time_ordered

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"event_time": pd.to_datetime("2024-01-01", utc=True)
                          + pd.to_timedelta(rng.integers(0, 5, 400), unit="h"),
                          "x": rng.normal(size=400), "city": rng.choice(["Oslo", None, "Lima"], 400)})
    once = time_ordered(frame).reset_index(drop=True)
    for seed in range(3):
        shuffled = frame.sample(frac=1.0, random_state=seed)
        pd.testing.assert_frame_equal(time_ordered(shuffled).reset_index(drop=True), once)
    assert once["event_time"].is_monotonic_increasing
    assert sorted(map(tuple, once.astype(str).to_numpy())) == sorted(map(tuple, frame.astype(str).to_numpy()))
