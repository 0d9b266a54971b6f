"""The cli package in process: the environment it exports, its one job runner, its parser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import run
from cli import runner
from cli.environment import prepare_environment
from cli.main import MODES, build_parser
from config.loader import CONFIG_ENV
from lake.paths import DATA_ENV, PYCARET_LOG_ENV, data_paths
from tests.conftest import write_config


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A toy config and a data root exported by prepare_environment (the variables restored after)."""
    cfg = write_config(tmp_path / "cfg")
    for name in (CONFIG_ENV, DATA_ENV, "DAGSTER_HOME"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # records the value to restore
    monkeypatch.delenv(PYCARET_LOG_ENV, raising=False)
    prepare_environment(str(cfg), str(tmp_path / "data"))
    return tmp_path / "data"


def test_prepare_environment_exports_the_roots_and_routes_the_pycaret_log(exported: Path) -> None:
    assert os.environ[DATA_ENV] == str(exported.resolve())
    assert os.environ["DAGSTER_HOME"] == str(exported.resolve() / "dagster_home")
    assert (exported / "dagster_home" / "dagster.yaml").exists()
    assert os.environ[PYCARET_LOG_ENV] == str(exported.resolve() / "logs" / "pycaret.log")


def test_the_definitions_are_built_once_per_config_and_data_root(exported: Path) -> None:
    from assets.jobs import INGEST_JOB, PROMOTE_JOB

    runner._definitions.cache_clear()
    paths = data_paths(exported)
    runner.JobRunner(paths).job(INGEST_JOB)
    runner.JobRunner(paths).job(PROMOTE_JOB)
    info = runner._definitions.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_a_failed_run_is_a_result_with_the_steps_error_not_an_exception(exported: Path) -> None:
    from assets.jobs import PROMOTE_JOB

    done = runner.apply(data_paths(exported), "rollback", "test")
    assert done.job == PROMOTE_JOB and not done.success
    assert done.failure.startswith("prod_model: LookupError: nothing to roll back: no running experiment")
    assert done.as_result("x") == runner.BatchResult("x", False, done.failure)


def test_every_mode_is_parsed_and_documented_in_run_py() -> None:
    assert list(MODES) == ["update", "stream", "ingest", "demo", "dev", "exporter", "inference", "summary", "analyse",
                           "promote", "rollback", "simulate"]
    for mode in MODES:
        assert f"-mode {mode}" in run.__doc__
        assert build_parser().parse_args(["-mode", mode]).mode == mode
    args = build_parser().parse_args(["--mode", "inference", "-file", "x.csv", "-config", "c", "-data", "d"])
    assert (args.file, args.config, args.data) == ("x.csv", "c", "d")
