"""Drift in the pipeline: the `drift` asset against prod's training data, its check, and drift_sensor.

The toy stream has four batches of 300 rows; the last one really shifts (temperatures 12 degrees
warmer, a city the model never saw). Prod is trained on batches 1-2 (hold-out 3) in process,
then batch 4 arrives.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.drift.compute import retrain_requests, trailing_true
from assets.training.policy import training_action
from config.schema import DriftConfig
from lake.registry import ModelRegistry
from lake.tables import DRIFT, DRIFT_BATCH_ROW, DRIFT_PREDICTION_ROW, DRIFT_TARGET_ROW, FEATURES
from sensors.drift import DriftCursor, DriftEvent, plan_drift_requests
from tests.conftest import make_source, write_config
from tests.support.pipeline import Pipeline

JUDGE_ROWS = 200  # FAST_TRAINING's holdout_min_rows
FAST_TRAINING = {"models": ["lr", "dt"], "folds": 2, "budget_time_minutes": 0.5, "tune_top": 0,
                 "holdout_min_rows": 200, "refresh_min_rows": 250,
                 "metric": "AUC", "gate": {"min_score": 0.55, "tolerance": 0.05}}  # an AUC floor


def drifting_source(n: int = 1200, shifted_rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """make_source rows; the last ``shifted_rows`` (in time) are warmer and partly in a new city."""
    df = make_source(n, seed)
    late = pd.to_datetime(df["ts"]) >= pd.to_datetime(df["ts"]).sort_values().iloc[n - shifted_rows]
    rng = np.random.default_rng(seed + 1)
    df.loc[late, "temp"] = df.loc[late, "temp"] + 12
    df.loc[late & (rng.random(n) < 0.4), "city"] = "Paris"
    return df


def drift_pipeline(folder: Path, override: dict | None = None) -> Pipeline:
    """Batches 1-3 ingested, prod trained on 1-2 (hold-out 3); batch 4 (the shift) not yet emitted."""
    cfg = {"training": FAST_TRAINING, **(override or {})}
    pipe = Pipeline(folder, config_path=write_config(folder / "cfg", cfg, drifting_source()))
    for _ in range(3):
        assert pipe.emit_and_run().success
    assert pipe.defs.resolve_job_def("retrain_job").execute_in_process(instance=pipe.instance).success
    return pipe


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    pipe = drift_pipeline(tmp_path_factory.mktemp("drift"))
    pipe.result4 = pipe.emit_and_run()
    return pipe


def _materializations(result: dg.ExecuteInProcessResult, key: str) -> list[dg.AssetMaterialization]:
    return [m for m in result.asset_materializations_for_node(key)]


def _verdicts(lake) -> pd.DataFrame:
    rows = lake.read(DRIFT)
    return rows[rows["feature"] == DRIFT_BATCH_ROW].set_index("batch_id")


@pytest.mark.slow
def test_the_shifted_batch_drifts_and_its_check_fails(drifted: Pipeline) -> None:
    assert drifted.result4.success  # drift is a warning about the data, not a failed ingestion
    [mat] = _materializations(drifted.result4, "drift")
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    assert meta["compared"] is True and meta["drifted"] is True and meta["retrain_requested"] is True
    assert meta["prod_version"] == 1
    assert set(meta["top_features"][:2]) == {"temp", "city"}
    [check] = [c for c in drifted.result4.get_asset_check_evaluations() if c.asset_key == dg.AssetKey("drift")]
    assert check.check_name == "batch_not_drifted" and check.passed is False
    assert check.partition == "batch_00004"  # per batch: the UI's partition view names it
    assert check.severity == dg.AssetCheckSeverity.WARN

    rows = drifted.lake.read(DRIFT).set_index("feature")
    assert set(rows["batch_id"]) == {"batch_00004"}  # batches before prod existed were not compared
    assert rows.loc["temp", "drifted"] and rows.loc["city", "drifted"]
    assert rows.loc["temp", "current_mean"] - rows.loc["temp", "reference_mean"] == pytest.approx(12, abs=1.5)
    assert rows.loc["city", "unseen_share"] == pytest.approx(0.4, abs=0.08)
    assert not rows.loc["amount", "drifted"] and not rows.loc["visits", "drifted"]
    assert rows.loc["temp", "test"] == "ks" and rows.loc["city", "test"] == "chi2"
    assert rows.loc["temp", "p_adjusted"] >= rows.loc["temp", "p_value"]
    assert {DRIFT_PREDICTION_ROW, DRIFT_TARGET_ROW} <= set(rows.index)
    assert rows.loc[DRIFT_PREDICTION_ROW, "drifted"]  # warmer days -> the model predicts churn more often
    tested = rows[~rows.index.str.startswith("__")]
    # a batch of 300 hourly rows spans 12.5 days: under 2 weeks, so day_of_week / is_weekend are set
    # by the batching and do not vote (drift.calendar_min_cycles); hour (12 whole days) does
    assert sorted(tested.index) == sorted(["hour", "temp", "amount", "visits", "city", "plan"])
    assert sorted(tested.index[tested["drifted"].astype(bool)]) == ["city", "temp"]
    batch = rows.loc[DRIFT_BATCH_ROW]
    assert batch["drifted_share"] == pytest.approx(2 / 6) and batch["n_current"] == 300
    assert "not voting (set by the batching): day_of_week: the batch spans 1.78 of its 7-day period" \
        in batch["reason"]
    assert meta["calendar_not_voting"].keys() == {"day_of_week", "is_weekend"}
    assert meta["labelled_rows"] == 300
    assert meta["batch_end"] == pd.Timestamp(drifted.lake.read_batch(FEATURES, "batch_00004")["event_time"].max()
                                             ).timestamp()


@pytest.mark.slow
def test_reference_is_prods_training_rows_at_its_features_version(drifted: Pipeline) -> None:
    registry = ModelRegistry(drifted.lake, drifted.paths.artifacts)
    prod = registry.get(registry.aliases()["prod"])
    rows = drifted.lake.read(DRIFT)
    assert set(rows["reference_features_version"].dropna()) == {prod["features_version"]}
    predictions = rows["feature"] == DRIFT_PREDICTION_ROW
    assert set(rows.loc[~predictions, "n_reference"].dropna()) == {prod["training_rows"]}  # batches 1-2, not 3 or 4
    # prod's predictions are compared out of sample: on its hold-out (batch 3), never its training rows
    assert set(rows.loc[predictions, "n_reference"]) == {300}
    assert drifted.lake.version(FEATURES) > prod["features_version"]  # newer rows exist but are not used


@pytest.mark.slow
def test_update_policy_retrains_fully_on_a_drift_request(drifted: Pipeline) -> None:
    registry = ModelRegistry(drifted.lake, drifted.paths.artifacts)
    assert retrain_requests(drifted.lake, ["batch_00004"], 1) == ["batch_00004"]
    assert retrain_requests(drifted.lake, ["batch_00004"], 2) == []  # the verdict was against prod v1
    action, why = training_action(drifted.lake, registry, drifted.cfg, ["batch_00004"])
    assert action == "full" and "batch_00004" in why
    assert training_action(drifted.lake, registry, drifted.cfg)[0] == "refresh"


def _sensor_eval(pipe: Pipeline, cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    sensor = pipe.defs.resolve_sensor_def("drift_sensor")
    with dg.build_sensor_context(instance=pipe.instance, cursor=cursor, definitions=pipe.defs) as ctx:
        return sensor(ctx)


@pytest.mark.slow
def test_drift_sensor_requests_one_full_retraining_per_drift_event(drifted: Pipeline) -> None:
    sensor = drifted.defs.resolve_sensor_def("drift_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    first = _sensor_eval(drifted, None)
    [request] = first.run_requests
    assert request.run_key == "drift-1-batch_00004" and request.job_name == "retrain_job"
    assert request.run_config == {"ops": {"candidate_models": {"config": {"mode": "full"}}}}
    assert request.tags["lakehouse/drift_batch"] == "batch_00004"
    assert request.tags["lakehouse/trigger"] == "drift_sensor"
    assert {"temp", "city"} <= set(request.tags["lakehouse/top_features"].split(","))
    assert float(request.tags["lakehouse/drifted_share"]) > 0.2

    again = _sensor_eval(drifted, first.cursor)  # the same event on the next tick / after a restart
    assert isinstance(again, dg.SkipReason)

    # the batch is re-checked (e.g. by the daily schedule): a new materialization, same drift event
    assert drifted.defs.resolve_job_def("drift_job").execute_in_process(
        partition_key="batch_00004", instance=drifted.instance).success
    rechecked = _sensor_eval(drifted, first.cursor)
    assert rechecked.run_requests == []  # a re-check brings no new rows: inside the cool-down
    cursor = DriftCursor.parse(rechecked.cursor)
    assert cursor.after_storage_id > DriftCursor.parse(first.cursor).after_storage_id


def _event(storage_id: int, batch: str, *, drifted: bool, requested: bool | None = None) -> DriftEvent:
    return DriftEvent(storage_id=storage_id, batch_id=batch, timestamp=0.0, compared=True, drifted=drifted,
                      retrain_requested=drifted if requested is None else requested, prod_version=3,
                      drifted_share=0.5 if drifted else 0.0, top_features=["temp"] if drifted else [])


def test_wall_clock_cooldown_turns_a_storm_of_drifted_batches_into_one_retraining() -> None:
    cfg = DriftConfig(cooldown_unit="wall_clock", cooldown_minutes=30)  # a live deployment
    now = 1_000_000.0
    storm = [_event(i, f"b{i}", drifted=True) for i in range(1, 6)]
    planned, cursor, skipped = plan_drift_requests(storm, DriftCursor(), cfg, now, JUDGE_ROWS)
    assert [(p.mode, p.run_key) for p in planned] == [("full", "drift-3-b1")]
    assert len(skipped) == 4 and all("cool-down" in s for s in skipped)
    assert cursor.after_storage_id == 5 and cursor.last_full.at == now

    later = plan_drift_requests([_event(6, "b6", drifted=True)], cursor, cfg, now + 29 * 60, JUDGE_ROWS)[0]
    assert later == []  # still inside the cool-down
    after = plan_drift_requests([_event(7, "b7", drifted=True)], cursor, cfg, now + 31 * 60, JUDGE_ROWS)[0]
    assert [p.run_key for p in after] == ["drift-3-b7"]


def test_not_drifted_goes_the_refresh_path_or_nowhere() -> None:
    cfg = DriftConfig()
    calm = [_event(1, "b1", drifted=False)]
    planned, _, _ = plan_drift_requests(calm, DriftCursor(), cfg, 0.0, JUDGE_ROWS)
    assert [(p.mode, p.run_key) for p in planned] == [("refresh", "refresh-3-b1")]
    assert planned[0].run_request().run_config["ops"]["candidate_models"]["config"]["mode"] == "refresh"
    no_refresh = cfg.model_copy(update={"refresh_when_stable": False})
    assert plan_drift_requests(calm, DriftCursor(), no_refresh, 0.0, JUDGE_ROWS)[0] == []
    # drifted, but not for enough batches in a row yet: nothing either
    waiting = plan_drift_requests([_event(2, "b2", drifted=True, requested=False)], DriftCursor(), cfg, 0.0,
                                  JUDGE_ROWS)
    assert waiting[0] == [] and "in a row" in waiting[2][0]
    uncompared = DriftEvent(3, "b3", 0.0, compared=False, reason="no prod model yet")
    assert plan_drift_requests([uncompared], DriftCursor(), cfg, 0.0, JUDGE_ROWS)[0] == []
    # run.py ingested it in process and applied the policy itself: the daemon must not act twice
    by_cli = DriftEvent(4, "b4", 0.0, compared=True, drifted=True, retrain_requested=True, prod_version=3,
                        trigger="run.py")
    planned, cursor, skipped = plan_drift_requests([by_cli], DriftCursor(), cfg, 0.0, JUDGE_ROWS)
    assert planned == [] and cursor.after_storage_id == 4 and "run.py" in skipped[0]


def test_trailing_true() -> None:
    assert trailing_true([True, False, True, True]) == 2 and trailing_true([]) == 0


@pytest.mark.slow
def test_persistence_waits_for_k_drifted_batches(tmp_path: Path) -> None:
    """With persistence_batches=2 one drifted batch is flagged but does not request retraining."""
    pipe = drift_pipeline(tmp_path, {"drift": {"persistence_batches": 2}})
    result = pipe.emit_and_run()
    assert result.success
    verdict = _verdicts(pipe.lake).loc["batch_00004"]
    assert bool(verdict["drifted"]) and not bool(verdict["retrain_requested"])
    assert verdict["consecutive_drifted"] == 1
    assert "waits for 2 in a row" in verdict["reason"]
    # re-checking the same batch does not make it two batches in a row
    assert pipe.defs.resolve_job_def("drift_job").execute_in_process(
        partition_key="batch_00004", instance=pipe.instance).success
    again = _verdicts(pipe.lake).loc["batch_00004"]
    assert again["consecutive_drifted"] == 1 and not bool(again["retrain_requested"])


@pytest.mark.slow
def test_persistence_in_event_time(tmp_path: Path) -> None:
    """With persistence_event_time 20D the shifted batch (12.5 days of hourly rows) is drifted but
    requests nothing yet; the verdict says what it waits for."""
    pipe = drift_pipeline(tmp_path, {"drift": {"persistence_event_time": "20D"}})
    assert pipe.emit_and_run().success
    verdict = _verdicts(pipe.lake).loc["batch_00004"]
    assert bool(verdict["drifted"]) and not bool(verdict["retrain_requested"])
    assert "retraining waits for drift lasting 20D of event time" in verdict["reason"]
    shorter = pipe.cfg.model_copy(update={"drift": pipe.cfg.drift.model_copy(update={"persistence_event_time": "12D"})})
    from assets.drift.compute import compute_drift

    again = compute_drift(pipe.lake, ModelRegistry(pipe.lake, pipe.paths.artifacts), shorter, "batch_00004")
    assert again.verdict["retrain_requested"] is True  # 300 hourly rows span 12 days 11 hours


@pytest.mark.slow
def test_drift_schedule_is_off_by_default_and_rechecks_the_latest_batches(drifted: Pipeline) -> None:
    schedule = drifted.defs.resolve_schedule_def("drift_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == "0 6 * * *"
    with dg.instance_for_test() as instance:  # schedule contexts need a persistent instance
        instance.add_dynamic_partitions("batches", drifted.instance.get_dynamic_partitions("batches"))
        with dg.build_schedule_context(instance=instance, repository_def=drifted.defs.get_repository_def(),
                                       scheduled_execution_time=pd.Timestamp("2026-01-02 06:00", tz="UTC")) as ctx:
            requests = schedule.evaluate_tick(ctx).run_requests
    assert [r.partition_key for r in requests] == ["batch_00002", "batch_00003", "batch_00004"]
    assert requests[0].run_key == "2026-01-02:batch_00002"


def test_drift_config_is_validated(tmp_path: Path) -> None:
    from config import ConfigError, load_config

    path = write_config(tmp_path, {"drift": {"schedule": {"cron": "every day"}}})
    with pytest.raises(ConfigError, match=r"drift\.schedule\.cron"):
        load_config(path)
    path = write_config(tmp_path, {"drift": {"correction": "sidak"}})
    with pytest.raises(ConfigError, match=r"drift\.correction"):
        load_config(path)
    assert json.loads(load_config(write_config(tmp_path)).drift.model_dump_json())["effect"] == "psi"


@pytest.mark.slow
def test_model_drift_counts_a_metric_drop_even_when_inputs_do_not_move(drifted: Pipeline) -> None:
    from assets.drift.compute import model_drift
    from serving.model_io import model_outputs
    from serving.scoring import ServedModel

    registry = ModelRegistry(drifted.lake, drifted.paths.artifacts)
    row, model = registry.get(1), registry.load(1)
    spec = ServedModel.from_registry_row(row, model).spec
    holdout = drifted.lake.read_batch(FEATURES, "batch_00003")  # prod's own hold-out: same inputs, same labels
    outputs = model_outputs(model, holdout, spec)  # the labels do not change what prod answers
    same = model_drift(model, row, holdout, spec, drifted.cfg, outputs=outputs)
    assert same["model_metric"] == "AUC" and same["model_drop"] == pytest.approx(0.0, abs=1e-9)
    assert same["model_drifted"] is False
    flipped = holdout.assign(**{spec.target: 1 - holdout[spec.target]})  # the world changed its mind
    worse = model_drift(model, row, flipped, spec, drifted.cfg, outputs=outputs)
    assert worse["model_metric_current"] == pytest.approx(1 - same["model_metric_current"])
    assert worse["model_drop"] > worse["model_drift_tolerance"] == drifted.cfg.training.gate.tolerance
    assert worse["model_p_value"] < drifted.cfg.drift.alpha and worse["model_drifted"] is True
    few = model_drift(model, row, flipped.head(50), spec, drifted.cfg,  # under min_current_rows: no verdict
                      outputs=tuple(None if o is None else o[:50] for o in outputs))
    assert few["model_drop"] is None and few["model_drifted"] is False


@pytest.mark.slow
def test_importance_weighting_uses_prods_importance_and_fails_loudly_without_it(
        drifted: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    import assets.drift.compute as drift_module

    registry = ModelRegistry(drifted.lake, drifted.paths.artifacts)
    cfg = drifted.cfg.model_copy(update={"drift": drifted.cfg.drift.model_copy(update={"weighting": "importance"})})
    weighted = drift_module.compute_drift(drifted.lake, registry, cfg, "batch_00004")
    rows = weighted.features
    weights = rows["importance"].clip(lower=0).fillna(0.0)
    floor = weights[weights > 0].min()
    weights = weights.where(weights > 0, floor)
    expected = float((weights * rows["drifted"].astype(float)).sum() / weights.sum())
    assert weighted.verdict["drifted_share"] == pytest.approx(expected)
    assert weighted.verdict["drifted_share"] > 2 / 6  # temp leads prod's importance, so it weighs more
    monkeypatch.setattr(drift_module, "importance_of", lambda row, folder: {})
    with pytest.raises(LookupError, match="no permutation importance"):
        drift_module.compute_drift(drifted.lake, registry, cfg, "batch_00004")


class _Counting:
    """prod's real pipeline, counting the rows it is asked to score."""

    def __init__(self, model) -> None:
        self.model, self.rows = model, 0

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def predict_proba(self, x):
        self.rows += len(x)
        return self.model.predict_proba(x)

    def predict(self, x):
        self.rows += len(x)
        return self.model.predict(x)


@pytest.mark.slow
def test_prods_reference_predictions_are_computed_once_per_reference(drifted: Pipeline) -> None:
    """The reference rows are scored on the first comparison only; later ones read the file beside
    the artifact, with the same values; another reference (other rows) gets its own file."""
    from assets.drift.compute import prediction_values, reference_frame, reference_predictions
    from serving.scoring import ServedModel

    registry = ModelRegistry(drifted.lake, drifted.paths.artifacts)
    prod = registry.get(registry.aliases()["prod"])
    model = _Counting(registry.load(prod["version"]))
    spec = ServedModel.from_registry_row(prod, model.model).spec
    reference, _ = reference_frame(drifted.lake, prod, spec.target, 100_000)
    folder = registry.version_folder(prod)
    for cached in folder.glob("drift_reference_predictions-*.parquet"):
        cached.unlink()  # the asset runs of the fixture wrote one already
    first = reference_predictions(model, folder, reference, spec)
    assert model.rows == len(reference) and len(list(folder.glob("drift_reference_predictions-*.parquet"))) == 1
    again = reference_predictions(model, folder, reference, spec)
    assert model.rows == len(reference)  # read, not scored
    pd.testing.assert_series_equal(again, first)
    pd.testing.assert_series_equal(first, prediction_values(model.model, reference, spec))
    fewer = reference.iloc[:100]
    reference_predictions(model, folder, fewer, spec)
    assert model.rows == len(reference) + 100
    assert len(list(folder.glob("drift_reference_predictions-*.parquet"))) == 2
    assert not list(folder.glob("*.tmp"))


@pytest.mark.slow
def test_a_drift_step_scores_the_batch_once_and_the_reference_never_again(
        drifted: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """With prod's reference predictions cached, one comparison runs prod once over the batch (for
    the prediction-drift row and the model metric together), and over nothing else."""
    from assets.drift.compute import compute_drift
    from serving.scoring import ServedModel

    registry = ModelRegistry(drifted.lake, drifted.paths.artifacts)
    compute_drift(drifted.lake, registry, drifted.cfg, "batch_00004")  # the cache is in place after this
    scored: list[tuple[str, int]] = []
    real = ServedModel.outputs_of_features

    def counting(self, features):  # the one scoring entry point, compiled or pipeline
        scored.append((self.scoring["path"], len(features)))
        return real(self, features)

    monkeypatch.setattr(ServedModel, "outputs_of_features", counting)
    result = compute_drift(drifted.lake, registry, drifted.cfg, "batch_00004")
    # one call over the batch, by prod's compiled scorer (the path the router serves)
    assert scored == [("compiled", len(drifted.lake.read_batch(FEATURES, "batch_00004")))]
    assert result.verdict["model_metric_current"] is not None


def test_a_batch_below_the_minimum_size_is_not_tested_rather_than_stable() -> None:
    from assets.drift.compute import NOT_TESTED, verdict_label

    assert [verdict_label(True, True), verdict_label(False, True), verdict_label(False, False)] == [
        "drifted", "no drift", NOT_TESTED]


@pytest.mark.slow
def test_a_small_batch_gets_no_verdict_and_no_figures(drifted: Pipeline) -> None:
    from assets.drift.assets import drift_metadata
    from assets.drift.compute import compute_drift

    registry = ModelRegistry(drifted.lake, drifted.paths.artifacts)
    # batch 4 drifts at its 300 rows (test above); with a minimum of 301 it is too small to test
    small = drifted.cfg.model_copy(update={"drift": drifted.cfg.drift.model_copy(update={"min_current_rows": 301})})
    try:
        result = compute_drift(drifted.lake, registry, small, "batch_00004")
        v = result.verdict
        assert (v["tested"], v["verdict"], v["drifted"], v["retrain_requested"]) == (False, "not tested", False, False)
        assert v["reason"].startswith("not tested: 300 rows, fewer than drift.min_current_rows 301")
        meta = drift_metadata(result, "uri")
        assert meta["verdict"] == "not tested" and meta["tested"].value is False
        assert not {"max_psi", "drifted_share", "drifted_features"} & set(meta)  # no noise plotted as figures
    finally:
        assert compute_drift(drifted.lake, registry, drifted.cfg, "batch_00004").verdict["verdict"] == "drifted"


@pytest.mark.slow
def test_prediction_drift_compares_with_prods_out_of_sample_predictions(drifted: Pipeline, tmp_path: Path) -> None:
    """The reference of the prediction-drift row is prod's hold-out (batch 3 here), never its own
    training rows: compared with itself, the hold-out batch shows no prediction drift at all."""
    from assets.drift.compute import compute_drift, holdout_frame, prediction_values
    from lake.tables import DRIFT_PREDICTION_ROW
    from serving.scoring import ServedModel

    pipe = drifted.copy_to(tmp_path)  # a batch compared here leaves the shared fixture's lake alone
    registry = ModelRegistry(pipe.lake, pipe.paths.artifacts)
    prod = registry.get(registry.aliases()["prod"])
    assert json.loads(prod["holdout_batches"]) == ["batch_00003"]
    served = ServedModel.load(registry, prod["version"])
    holdout = holdout_frame(pipe.lake, prod, served.spec.target, pipe.cfg.drift.reference_max_rows)
    assert set(holdout["_batch_id"]) == {"batch_00003"} and len(holdout) == 300
    row = compute_drift(pipe.lake, registry, pipe.cfg, "batch_00003").rows.set_index("feature").loc[
        DRIFT_PREDICTION_ROW]
    assert row["psi"] == pytest.approx(0.0, abs=1e-9) and not row["drifted"]
    expected = prediction_values(served, holdout, served.spec).mean()
    assert row["reference_mean"] == pytest.approx(expected) == pytest.approx(row["current_mean"])
