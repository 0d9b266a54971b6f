"""The shipped example configs: a text column turns into TF-IDF features through config alone."""

import json
from pathlib import Path

import pandas as pd
import pytest

from assets.ingest.contract import load_contract
from lake.paths import PROJECT_ROOT
from lake.registry import ModelRegistry
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.slow  # each example config trained end to end

EXAMPLES = PROJECT_ROOT / "config" / "examples"


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
    if name == "tickets":  # string labels: metrics and scores in the original label space
        metrics = json.loads(row["holdout_metrics"])
        assert metrics["AUC"] > 0.9 and 0 < metrics["LogLoss"] < 1
        from serving.scoring import ServedModel, score_frame

        rows = pd.read_csv(EXAMPLES / "tickets.csv").tail(20).drop(columns=["category"])
        scored = score_frame(rows, ServedModel.from_registry_row(row, model))
        assert set(scored["predict"]) <= {"account", "billing", "shipping", "technical"}
        assert scored["probability"].between(0.25, 1).all()  # the predicted class's probability
    text_steps = [step.transformer for name, step in model.steps if name == "text_embedding"]
    assert [t.method for t in text_steps] == ["tf-idf"]  # PyCaret's TF-IDF embedding of the text column
