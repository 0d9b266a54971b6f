"""In-process Dagster runs of ingest_job on a temporary lake: contents, idempotency, quarantine."""

import json
import shutil
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import pandas as pd
import pytest

from lake.tables import BATCHES, CLEANED, FEATURES, QUALITY, QUALITY_BATCH_ROW, RAW
from tests.conftest import make_source, write_config
from tests.support.pipeline import Pipeline


class Ingested(NamedTuple):
    pipe: Pipeline                              # three batches, one Dagster instance: only read
    results: list[dg.ExecuteInProcessResult]    # its three ingest runs, in order
    after: dict[int, Pipeline]                  # its data root after 1 and after 2 batches (copies)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    """The toy stream's three batches ingested once for the module (an ingest run costs ~1.5 s,
    mostly the EDA report), the data root copied after the first and after the second batch. A test
    that starts from an ingested lake works on a private copy of one of those; the original is only
    read (test_three_batches_flow_into_every_table)."""
    pipe = Pipeline(tmp_path_factory.mktemp("ingested"))
    results, after = [], {}
    for n in (1, 2, 3):
        results.append(pipe.emit_and_run())
        if n in (1, 2):
            assert results[-1].success, f"batch {n} of the shared lake failed"
            after[n] = pipe.copy_to(tmp_path_factory.mktemp(f"after_{n}_batches"))
    return Ingested(pipe, results, after)


@pytest.fixture
def after_one_batch(ingested: Ingested, tmp_path: Path) -> Pipeline:
    """batch_00001 ingested (a private copy); the emulator's next batch is batch_00002."""
    return ingested.after[1].copy_to(tmp_path)


@pytest.fixture
def after_two_batches(ingested: Ingested, tmp_path: Path) -> Pipeline:
    """batch_00001 and batch_00002 ingested (a private copy); the next batch is batch_00003."""
    return ingested.after[2].copy_to(tmp_path)


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(str(e.step_failure_data.user_failure_data.description)
                    for e in result.all_events if e.is_step_failure and e.step_failure_data.user_failure_data)


def test_three_batches_flow_into_every_table(ingested: Ingested) -> None:
    pipe, results = ingested.pipe, ingested.results  # three emit_and_run() on a new lake and instance
    assert len(results) == 3 and all(r.success for r in results)
    raw = pipe.lake.read(RAW)
    assert len(raw) == 900
    assert raw.groupby("_batch_id").size().to_dict() == {"batch_00001": 300, "batch_00002": 300, "batch_00003": 300}
    assert set(raw["_source_file"]) == {"batch_00001.csv", "batch_00002.csv", "batch_00003.csv"}
    assert raw["_ingested_at"].notna().all()
    source = make_source()
    assert sorted(raw["row_id"]) == sorted(source["row_id"])  # nothing lost, nothing invented
    assert raw["temp"].isna().sum() == source["temp"].isna().sum()
    # batches are time ordered: every row of batch 1 precedes every row of batch 2
    spans = raw.groupby("_batch_id")["ts"].agg(["min", "max"]).sort_index()
    assert (spans["max"].iloc[:-1].to_numpy() < spans["min"].iloc[1:].to_numpy()).all()
    features = pipe.lake.read(FEATURES)
    assert len(features) == pipe.count(CLEANED) == 900  # the toy data has nothing to clean away
    assert pipe.lake.rows_per_batch(FEATURES) == {"batch_00001": 300, "batch_00002": 300, "batch_00003": 300}
    assert set(features["churn"].unique()) == {0, 1}
    assert features["hour"].between(0, 23).all()
    quality = pipe.lake.read(QUALITY)
    assert sorted(quality.loc[quality["column"] == QUALITY_BATCH_ROW, "batch_id"]) == [
        "batch_00001", "batch_00002", "batch_00003"]
    batches = pipe.lake.read(BATCHES).set_index("batch_id").sort_index()
    assert batches["status"].tolist() == ["ingested"] * 3
    assert batches.loc["batch_00002", "row_count"] == 300
    assert json.loads(batches.loc["batch_00002", "columns"])[:3] == ["ts", "city", "plan"]
    assert batches["time_min"].is_monotonic_increasing
    assert sorted(p.name for p in pipe.paths.archive.iterdir()) == ["batch_00001.csv", "batch_00002.csv",
                                                                    "batch_00003.csv"]
    assert not list(pipe.paths.inbox.iterdir())
    report = pipe.paths.reports / "eda_report.html"
    html = report.read_text()
    assert "Target balance over batches" in html and html.count("data:image/png;base64,") >= 5
    mat = pipe.instance.get_latest_materialization_event(dg.AssetKey("quality"))
    assert mat.asset_materialization.metadata["quality_score"].value > 0.8


def test_rerunning_a_batch_replaces_it(after_two_batches: Pipeline) -> None:
    pipe = after_two_batches
    before = {t: pipe.count(t) for t in (RAW, CLEANED, FEATURES, QUALITY, BATCHES)}
    version = pipe.lake.version(RAW)
    # the crash case: file ingested but never moved out of the inbox, so it arrives again
    shutil.copy(pipe.paths.archive / "batch_00002.csv", pipe.paths.inbox / "batch_00002.csv")
    assert pipe.run("batch_00002").success
    assert {t: pipe.count(t) for t in before} == before
    assert pipe.lake.version(RAW) == version + 1
    assert pipe.lake.read(RAW).groupby("_batch_id").size().to_dict() == {"batch_00001": 300, "batch_00002": 300}
    assert pipe.run("batch_00002").success  # and again from the archive (a manual re-run in the UI)
    assert pipe.count(RAW) == before[RAW]


MALFORMED = {
    "unreadable": lambda good: b'ts,city,plan\n"2024-01-01,Oslo\n1,2,3,4,5\n',
    "encoding": lambda good: good.replace("Oslo", "Zürich").encode("latin-1"),
    "empty": lambda good: b"",
    "missing_columns": lambda good: pd.read_csv(pd.io.common.StringIO(good)).drop(columns=["temp"])
    .to_csv(index=False).encode(),
    "wrong_types": lambda good: pd.read_csv(pd.io.common.StringIO(good)).assign(amount="lots")
    .to_csv(index=False).encode(),
    "target_all_missing": lambda good: pd.read_csv(pd.io.common.StringIO(good)).assign(churn=None)
    .to_csv(index=False).encode(),
}


@pytest.mark.parametrize("code", sorted(MALFORMED))
def test_malformed_batch_is_quarantined_and_the_next_batch_flows(after_one_batch: Pipeline, code: str) -> None:
    pipe = after_one_batch
    good = pipe.paths.inbox / pipe.emulator.emit_next().name
    text = good.read_text()
    good.rename(pipe.paths.root / "held_back.csv")
    bad = pipe.paths.inbox / "batch_00002.csv"
    bad.write_bytes(MALFORMED[code](text))
    result = pipe.run("batch_00002")
    assert not result.success
    assert f"quarantined ({code})" in _failure_message(result)
    reason = json.loads((pipe.paths.quarantine / "batch_00002.csv.reason.json").read_text())
    assert reason["code"] == code and reason["batch_id"] == "batch_00002" and reason["reason"]
    assert (pipe.paths.quarantine / "batch_00002.csv").exists() and not bad.exists()
    assert pipe.lake.read(BATCHES).set_index("batch_id").loc["batch_00002", "reason_code"] == code
    assert pipe.count(RAW) == 300  # nothing of the bad batch reached the lake
    next_batch = pipe.emit_and_run()  # batch_00003 still flows
    assert next_batch.success
    assert sorted(pipe.lake.read(FEATURES)["_batch_id"].unique()) == ["batch_00001", "batch_00003"]


def test_header_only_file_is_empty(after_one_batch: Pipeline) -> None:
    pipe = after_one_batch
    (pipe.paths.inbox / "batch_00009.csv").write_text("ts,city,plan,temp,amount,visits,row_id,churn\n")
    result = pipe.run("batch_00009")
    assert not result.success and "quarantined (empty)" in _failure_message(result)


def test_failing_blocking_quality_check_stops_cleaning(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path, {"quality": {"min_score": 0.999}})
    result = pipe.emit_and_run()
    assert not result.success
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks["quality_score_above_min"] is False
    # evaluated per batch partition, so the UI's partition view names the batch that failed
    partitions = {e.asset_check_evaluation_data.partition for e in result.all_events
                  if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert partitions == {"batch_00001"}
    specs = {spec.name: spec for spec in pipe.defs.resolve_assets_def("quality").check_specs}
    assert all(spec.description and spec.partitions_def is not None for spec in specs.values())
    assert "at least 1.00 (quality.min_score). Blocking" in specs["quality_score_above_min"].description
    assert pipe.lake.exists(QUALITY) and not pipe.lake.exists(CLEANED)  # stopped before cleaning
    # complete as far as it goes: `blocked`, not `ingesting`, and its file archived
    assert pipe.lake.read(BATCHES)["status"].tolist() == ["blocked"]
    assert not list(pipe.paths.inbox.iterdir()) and len(list(pipe.paths.archive.iterdir())) == 1


def test_tables_are_real_delta_tables_for_duckdb(after_two_batches: Pipeline) -> None:
    import duckdb
    import duckdb_extensions

    pipe = after_two_batches
    duckdb_extensions.import_extension("delta")
    con = duckdb.connect()
    con.load_extension("delta")
    for table in (RAW, FEATURES, QUALITY, BATCHES):
        rows = con.sql(f"select count(*) from delta_scan('{pipe.lake.uri(table)}')").fetchone()[0]
        assert rows == pipe.count(table)
    by_batch = con.sql(f"select _batch_id, count(*), round(sum(amount), 2) from delta_scan('{pipe.lake.uri(RAW)}') "
                       "group by 1 order by 1").fetchall()
    raw = pipe.lake.read(RAW)
    expected = raw.groupby("_batch_id")["amount"].sum().round(2)
    assert by_batch == [(b, 300, pytest.approx(expected[b])) for b in ("batch_00001", "batch_00002")]


def test_any_dataset_through_config_alone_xlsx_join_and_inferred_roles(tmp_path: Path) -> None:
    """An XLSX fact table joined with a Parquet lookup, regression target, roles inferred."""
    folder = tmp_path / "cfg"
    folder.mkdir()
    source = make_source(400).drop(columns=["churn"])
    source["store"] = [f"s{i % 4}" for i in range(len(source))]
    source.to_excel(folder / "facts.xlsx", index=False)
    pd.DataFrame({"store": ["s0", "s1", "s2", "s3"], "size": [10.0, 20.0, 30.0, None],
                  "region": ["north", "south", "north", "east"]}).to_parquet(folder / "stores.parquet")
    override = {"dataset": {"name": "shops", "task": "regression", "source": {"path": "facts.xlsx"},
                            "joins": [{"source": {"path": "stores.parquet"}, "keys": ["store"], "prefix": "store_"}],
                            "target": "amount", "numeric": None, "categorical": None, "text": None,
                            "ignore": ["row_id"], "id_column": None},
                "quality": {"ranges": {}}, "stream": {"batch_rows": 200}}
    pipe = Pipeline(tmp_path, config_path=write_config(folder, override))
    assert pipe.emit_and_run().success and pipe.emit_and_run().success
    from assets.ingest.contract import load_contract

    contract = load_contract(pipe.lake)
    roles = {c.name: c.role for c in contract.columns}
    assert roles["temp"] == roles["visits"] == roles["store_size"] == "numeric"
    assert roles["city"] == roles["plan"] == roles["store"] == roles["store_region"] == "categorical"
    assert roles["row_id"] == "ignore" and roles["amount"] == "target"
    features = pipe.lake.read(FEATURES)
    assert len(features) == 400 and features["amount"].dtype == "float64"
    assert features["store_region"].notna().all() and features["store_size"].isna().sum() == 100
