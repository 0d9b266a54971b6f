"""Configuration: the default loads, every bad config fails at once naming the key."""

from pathlib import Path

import pytest
import yaml

from config import ConfigError, load_config
from config.loader import DEFAULT_CONFIG_PATH
from tests.conftest import BASE_CONFIG, deep_merge


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_config_loads_and_names_the_flights_dataset() -> None:
    cfg = load_config(DEFAULT_CONFIG_PATH)
    assert cfg.dataset.name == "nycflights13"
    assert cfg.dataset.task == "classification"
    assert cfg.dataset.target == "is_delayed"
    assert [j.keys for j in cfg.dataset.joins] == [["origin", "time_hour"], ["tailnum"]]
    assert len(cfg.dataset.numeric) + len(cfg.dataset.categorical) >= 10
    assert len(cfg.dataset.categorical) >= 2


@pytest.mark.parametrize(("override", "key", "expected"), [
    ({"dataset": {"task": "clasification"}}, "dataset.task", "'classification' or 'regression'"),
    ({"dataset": {"tagret": "x"}}, "dataset.tagret", "Extra inputs are not permitted"),
    ({"stream": {"batch_rows": 0}}, "stream.batch_rows", "greater than 0"),
    ({"stream": {"batch_window": "fortnight"}}, "stream.batch_window", "not a pandas offset alias"),
    ({"quality": {"min_score": 1.5}}, "quality.min_score", "less than or equal to 1"),
    ({"quality": {"blocking_checks": ["nope"]}}, "quality.blocking_checks", "unknown check(s) ['nope']"),
    ({"cleaning": {"out_of_range": "explode"}}, "cleaning.out_of_range", "'clip', 'drop', 'null' or 'keep'"),
    ({"features": {"time_features": ["hour", "moon_phase"]}}, "features.time_features", "moon_phase"),
    ({"features": {"timezone": "Mars/Olympus"}}, "features.timezone", "unknown time zone"),
    ({"dataset": {"categorical": ["city", "temp"]}}, "dataset", "listed in both numeric and categorical"),
    ({"quality": {"ranges": {"nope": {"min": 0}}}}, "<root>", "not in dataset.numeric"),
    ({"quality": {"ranges": {"temp": {"min": 5, "max": 1}}}}, "quality.ranges.temp", "greater than max"),
    ({"ab": {"decision_basis": "paired"}, "router": {"shadow_share": 0.0}}, "<root>", "set router.shadow_share"),
    ({"training": {"gate": {"min_score": 0.55}}}, "<root>",  # an AUC floor read as a log-loss ceiling
     "training.gate.min_score 0.55 is in the units of the sort metric: set training.metric too (the default is "
     "LogLoss)"),
])
def test_bad_config_fails_naming_the_key(tmp_path: Path, override: dict, key: str, expected: str) -> None:
    path = _write(tmp_path, deep_merge(BASE_CONFIG, override))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"  - {key}: " in message
    assert expected in message
    assert str(path) in message


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    data = deep_merge(BASE_CONFIG, {})
    del data["dataset"]["target"]
    with pytest.raises(ConfigError, match=r"dataset\.target: Field required"):
        load_config(_write(tmp_path, data))


def test_yaml_and_file_errors_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "absent.yaml")
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)


def test_env_variable_selects_config_and_relative_sources_resolve_to_its_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, BASE_CONFIG)
    monkeypatch.setenv("LAKEHOUSE_CONFIG", str(path))
    cfg = load_config()
    assert cfg.dataset.name == "toy"
    assert cfg.dataset.source.path == str(tmp_path / "source.csv")
