"""The code location's wiring that no single asset test sees."""

from __future__ import annotations

import itertools
from pathlib import Path

import dagster as dg

from definitions import build_definitions
from tests.conftest import write_config


def test_every_job_runs_its_steps_in_the_run_process(tmp_path: Path) -> None:
    # a process per step would import the code location again for every step (about 12 s each
    # on 2 cores) where the steps themselves take under a second
    defs = build_definitions(str(write_config(tmp_path / "cfg")), str(tmp_path / "data"))
    jobs = {job.name: job.executor_def.name for job in defs.get_repository_def().get_all_jobs()
            if not job.name.startswith("__")}
    assert jobs == {name: "in_process" for name in ("ingest_job", "retrain_job", "drift_job", "ab_events_job",
                                                    "ab_analysis_job", "promote_job")}


def test_the_lineage_is_one_chain_from_raw_to_the_promoted_model(tmp_path: Path) -> None:
    defs = build_definitions(str(write_config(tmp_path / "cfg")), str(tmp_path / "data"))
    graph = defs.resolve_asset_graph()
    parents = {key.to_user_string(): sorted(p.to_user_string() for p in graph.get(key).parent_keys)
               for key in graph.get_all_asset_keys()}
    chain = ["raw", "quality", "cleaned", "features", "candidate_models", "staging_model", "request_log",
             "ab_events", "ab_analysis", "prod_model", "drift"]
    for parent, child in itertools.pairwise(chain):
        assert parent in parents[child], (parent, child)
    # the analysis names what it compares; drift is measured against prod, so a promotion makes it stale
    assert parents["ab_analysis"] == ["ab_events", "staging_model"]
    assert parents["drift"] == ["features", "prod_model"]
    # the router writes the request log: an external asset, not one Dagster materializes
    assert not graph.get(dg.AssetKey("request_log")).is_materializable
    # promote_job materializes prod_model; retrain_job the candidates and the staging model
    jobs = {job.name: job for job in defs.get_repository_def().get_all_jobs()}
    assert {k.to_user_string() for k in jobs["promote_job"].asset_layer.selected_asset_keys} == {"prod_model"}
    assert {k.to_user_string() for k in jobs["retrain_job"].asset_layer.selected_asset_keys} == {
        "candidate_models", "staging_model", "summary_report"}
