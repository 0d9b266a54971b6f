"""The shipped example configs: a text column turns into TF-IDF features through config alone."""

import json
from pathlib import Path

import pytest

from assets.contract import load_contract
from lake.registry import ModelRegistry
from tests.test_ingest_pipeline import Pipeline

EXAMPLES = Path(__file__).resolve().parents[1] / "config" / "examples"


@pytest.mark.parametrize(("name", "metric", "bound"), [("reviews", "MAE", 0.8), ("tickets", "Accuracy", 0.8)])
def test_text_example_trains_end_to_end(tmp_path: Path, name: str, metric: str, bound: float) -> None:
    pipe = Pipeline(tmp_path, config_path=EXAMPLES / f"{name}.yaml")
    while (batch := pipe.emulator.emit_next()) is not None:
        assert pipe.run(batch.batch_id).success
    text_column = {"reviews": "review_text", "tickets": "message"}[name]
    assert load_contract(pipe.lake).spec(text_column).role == "text"
    result = pipe.defs.resolve_job_def("retrain_job").execute_in_process(instance=pipe.instance)
    assert result.success
    registry = ModelRegistry(pipe.lake, pipe.paths.artifacts)
    row = registry.get(registry.aliases()["prod"])
    value = json.loads(row["holdout_metrics"])[metric]
    # the text carries the signal: a model that ignored it could not get this close
    assert value < bound if metric == "MAE" else value > bound
    model = registry.load(row["version"])
    text_steps = [step.transformer for name, step in model.steps if name == "text_embedding"]
    assert [t.method for t in text_steps] == ["tf-idf"]  # PyCaret's TF-IDF embedding of the text column
