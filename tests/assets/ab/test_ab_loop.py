"""The A/B loop end to end on small data: prod, a concept shift, a retrained staging, traffic through
the router, labels, ab_events, the analysis, ab_sensor and the promotion; plus the atomic flip.

The toy target flips its rule in the last two batches (churn when cold instead of warm): prod,
trained before the flip, is mostly wrong on new traffic; staging, trained on the flipped batch,
is right. The analysis must promote it, and promote_job must make it prod in one commit.
"""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.ab.analysis import analyse, labelled_events
from assets.ab.promotion import prod_at, promote
from assets.resources import LakehouseResource
from features import encode_target
from lake.experiments import ExperimentStore
from lake.registry import AliasChange, ModelRegistry
from router.app import create_app
from stream.sources import read_file
from tests.conftest import make_source, write_config
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.slow  # the A/B loop end to end, models trained

TRAINING = {"models": ["lr", "dt"], "folds": 2, "budget_time_minutes": 0.5, "tune_top": 0, "holdout_min_rows": 200,
            "window_batches": 1, "metric": "AUC", "gate": {"min_score": 0.55, "tolerance": 0.05}}
AB = {"mde": 0.2, "min_samples": 40, "look_every": 20, "auto_promote": True, "min_new_labels": 50}


def concept_shift_source(n: int = 1500) -> pd.DataFrame:
    df = make_source(n, seed=7)
    order = pd.to_datetime(df["ts"]).rank(method="first")
    late = order > n - 600  # the last two batches of 300
    df.loc[late, "churn"] = np.where(df.loc[late, "churn"] == "yes", "no", "yes")
    return df


def concept_shift_lakehouse(tmp_path: Path, override: dict | None = None) -> tuple[Pipeline, Path, dict[str, int]]:
    """prod trained before the flip, staging after it; returns the pipeline, its config file and
    the aliases."""
    cfg_path = write_config(tmp_path / "cfg", {"training": TRAINING, "ab": AB, "router": {"shadow_share": 1.0},
                                               **(override or {})}, concept_shift_source())
    pipe = Pipeline(tmp_path, config_path=cfg_path)
    retrain = pipe.defs.resolve_job_def("retrain_job")
    for _ in range(3):
        assert pipe.emit_and_run().success
    assert retrain.execute_in_process(instance=pipe.instance).success  # prod: the old rule
    for _ in range(2):
        assert pipe.emit_and_run().success
    assert retrain.execute_in_process(instance=pipe.instance).success  # staging: the new rule
    aliases = ModelRegistry(pipe.lake, pipe.paths.artifacts).aliases()
    assert aliases["prod"] == 1 and aliases["staging"] > 1
    return pipe, cfg_path, aliases


def play_latest_batch(pipe: Pipeline):
    """Every row of the latest batch through the router in process (predict, then its true label);
    the event log is closed at the end. Returns the app and the number of answered requests."""
    app = create_app(pipe.cfg, str(pipe.paths.root), poll=False)
    client = app.test_client()
    rows = read_file(sorted(pipe.paths.archive.iterdir())[-1], as_strings=True)
    labels = encode_target(rows["churn"], "classification")
    answered = 0
    for i, row in rows.iterrows():
        features = {"ts": row["ts"], "city": row["city"], "plan": None if pd.isna(row["plan"]) else row["plan"],
                    "temp": None if pd.isna(row["temp"]) else float(row["temp"]), "amount": float(row["amount"]),
                    "visits": float(row["visits"])}
        r = client.post("/predict", json={"user_id": f"user-{i}", "features": features})
        assert r.status_code == 200, r.get_json()
        r.close()  # as a server does once the answer is sent: the shadow is scored and logged now
        answered += 1
        fb = client.post("/feedback", json={"request_id": r.get_json()["request_id"], "label": int(labels[i])})
        assert fb.status_code == 200
    app.extensions["lakehouse"].events.close()
    return app, answered


def test_the_loop_promotes_a_better_staging(tmp_path: Path) -> None:
    pipe, cfg_path, before = concept_shift_lakehouse(tmp_path)
    registry = ModelRegistry(pipe.lake, pipe.paths.artifacts)
    app, answered = play_latest_batch(pipe)

    resource = LakehouseResource(config_path=str(cfg_path), data_root=str(pipe.paths.root))
    sensor = pipe.defs.resolve_sensor_def("ab_sensor")
    with dg.build_sensor_context(instance=pipe.instance, resources={"lakehouse": resource}) as ctx:
        skip = sensor(ctx)
    assert not skip.run_requests and "no new version" in skip.skip_reason.skip_message  # labels are still in
    # the log, not in ab_feedback

    analysis = pipe.defs.resolve_job_def("ab_analysis_job").execute_in_process(instance=pipe.instance)
    assert analysis.success
    [mat] = analysis.asset_materializations_for_node("ab_analysis")
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    assert meta["decision"] == "promote", meta["reason"]
    algorithms = {v: registry.get(v)["algorithm"] for v in (before["prod"], before["staging"])}
    assert (meta["A"], meta["B"], meta["decision_basis"]) == (
        f"v{before['prod']} ({algorithms[before['prod']]})", f"v{before['staging']} ({algorithms[before['staging']]})",
        "split")
    assert f"**B** = staging **v{before['staging']}**" in meta["summary"] and "| pass |" in meta["summary"]
    experiment = ExperimentStore(pipe.lake).running()
    [look] = ExperimentStore(pipe.lake).decisions().to_dict("records")  # the look, appended to the trail
    assert (look["experiment_id"], look["action"], look["run_id"], look["reason"]) == (
        experiment.experiment_id, "promote", analysis.run_id, meta["reason"])
    assert pd.isna(look["guardrail"]) and not look["blocked"] and look["prod_version"] == before["prod"]
    on_pairs = analyse(labelled_events(pipe.lake, experiment.experiment_id), experiment, "classification",
                       pipe.cfg.ab.model_copy(update={"decision_basis": "paired"}))
    assert on_pairs.comparison.paired and on_pairs.decision.action == "promote"
    assert "paired" in on_pairs.decision.reason and on_pairs.comparison.n_a == meta["pairs"]
    checks = {e.check_name: e.passed for e in analysis.get_asset_check_evaluations()}
    assert checks == {"each_request_once": True, "no_sample_ratio_mismatch": True, "labels_arrive_evenly": True}
    assert meta["requests_A"] + meta["requests_B"] == answered and meta["metric_B"] < meta["metric_A"]
    # every request was also scored by the other model in shadow: the paired test sees it at once
    events = pipe.lake.read("ab_events")
    served = events[events["model_used"] != "fallback"]  # the fallback's answers are not paired
    assert meta["pairs"] == len(served) >= answered - 5 and meta["paired_p"] < 1e-6
    other = {before["prod"]: before["staging"], before["staging"]: before["prod"]}
    assert (served["shadow_version"] == served["model_version"].map(other)).all()
    assert events.loc[events["model_used"] == "fallback", "shadow_version"].isna().all()
    report = pipe.paths.reports / "ab_report.html"
    assert report.exists() and "Decision: PROMOTE" in report.read_text()

    with dg.build_sensor_context(instance=pipe.instance, resources={"lakehouse": resource}) as ctx:
        result = sensor(ctx)
    jobs = {r.job_name: r for r in result.run_requests}
    assert set(jobs) == {"ab_analysis_job", "promote_job"}  # new labels arrived, and auto-promotion is on
    promote_run = pipe.defs.resolve_job_def("promote_job").execute_in_process(
        instance=pipe.instance, run_config=jobs["promote_job"].run_config)
    assert promote_run.success
    # the lineage's end: the promotion is a materialization of prod_model naming the experiment,
    # after the first version's (registered straight to prod by training); staging_model holds
    # the second training run's challenger
    [promoted] = promote_run.asset_materializations_for_node("prod_model")
    shown = {k: getattr(v, "value", v) for k, v in promoted.metadata.items()}
    assert (shown["version"], shown["previous_version"], shown["experiment_id"]) == (
        before["staging"], 1, look["experiment_id"])
    assert shown["decided_by"] == f"ab_analysis decision of experiment {look['experiment_id']}" \
        and shown["algorithm"] == algorithms[before["staging"]]
    history = pipe.instance.fetch_materializations(dg.AssetKey("prod_model"), limit=10).records
    assert [r.asset_materialization.metadata["version"].value for r in history] == [before["staging"], 1]
    assert history[1].asset_materialization.metadata["decided_by"].value == "no prod before (first version)"
    staging = pipe.instance.get_latest_materialization_event(dg.AssetKey("staging_model"))
    assert staging.asset_materialization.metadata["version"].value == before["staging"]

    after = registry.aliases()
    assert after == {"prod": before["staging"], "previous": 1, "fallback": before["fallback"]}
    experiment = ExperimentStore(pipe.lake).all().iloc[-1]
    assert experiment["status"] == "promoted" and experiment["decision"] == "promote"
    history = registry.alias_history()
    flip = history[history["reason"].str.startswith("ab_sensor")]
    assert set(flip["alias"]) == {"prod", "staging", "previous"} and flip["changed_at"].nunique() == 1
    assert prod_at(history, flip["changed_at"].iloc[0] - pd.Timedelta(microseconds=1)) == 1
    assert prod_at(history, flip["changed_at"].iloc[0]) == before["staging"]
    pool = app.extensions["lakehouse"].pool
    state = pool.reload()
    assert state.prod.version == before["staging"] and state.running is None  # the router follows


def test_promotion_is_one_commit_readers_never_see_prod_missing(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path)
    registry = ModelRegistry(pipe.lake, pipe.paths.artifacts)
    registry.set_aliases([AliasChange("prod", 1), AliasChange("staging", 2)], actor="test", reason="setup")
    seen: list[dict] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(registry.aliases())

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(6):  # promote, then a new staging, promote again...
            promote(registry, actor="test", reason=f"round {i}")
            registry.set_aliases([AliasChange("staging", 3 + i)], actor="test", reason="next candidate")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert len(seen) > 20
    assert all("prod" in a for a in seen)
    assert all(a.get("prod") != a.get("staging") for a in seen)  # never half-applied
    assert registry.aliases()["prod"] == 7 and registry.aliases()["previous"] == 6
