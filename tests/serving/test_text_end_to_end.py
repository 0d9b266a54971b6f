"""An e-mail stream with two free-text columns (missing, empty and whitespace-only values) and a
sender domain that appears only late, through the real loop: ingestion, PyCaret training, the
registry, `-mode inference` and the router's /predict_batch (observation 2 of issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from config.loader import CONFIG_ENV
from lake.registry import ModelRegistry
from lake.tables import FEATURES
from tests.support.pipeline import FAST, Pipeline
from tests.support.text_data import write_mail_config


@pytest.fixture(scope="module")
def mail(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """Three ingested batches of the mail stream and one training run."""
    folder = tmp_path_factory.mktemp("mail")
    pipe = Pipeline(folder, config_path=write_mail_config(folder / "cfg", FAST))
    for _ in range(3):
        assert pipe.emit_and_run().success
    assert pipe.defs.resolve_job_def("retrain_job").execute_in_process(instance=pipe.instance).success
    return pipe


@pytest.mark.slow
def test_missing_texts_train_a_model_that_reads_the_words(mail: Pipeline) -> None:
    features = mail.lake.read(FEATURES)
    for col in ("subject", "body"):  # the features table: blank texts are missing, nothing in between
        present = features[col].dropna()
        assert features[col].isna().mean() == pytest.approx(0.12, abs=0.04)
        assert (present.str.strip() != "").all() and (present == present.str.strip()).all()
    registry = ModelRegistry(mail.lake, mail.paths.artifacts)
    prod = registry.get(registry.aliases()["prod"])
    assert json.loads(prod["input_schema"])["spec"]["text"] == ["subject", "body"]
    # the label is in the words only (the domain and length are noise): 0.99 measured
    assert json.loads(prod["holdout_metrics"])["AUC"] > 0.9


REQUESTS = pd.DataFrame({
    "ts": ["2024-02-10T10:00:00Z"] * 8 + [None],
    "subject": ["free prize claim", np.nan, "", "   ", None, "team meeting", "cash offer", "notes", "notes"],
    "body": ["click cash winner", "urgent deal", np.nan, " ", None, "agenda review", "bonus", "lunch", "lunch"],
    "domain": ["corp.example", "mail.example", None, "  ", None, "brand-new.example", "shop.example",
               "corp.example", "corp.example"],
    "length": ["120", "80", None, "  ", None, "40", "lots", "10", "10"],
    "msg_id": [f"q{i}" for i in range(9)],
})
# row 4: every feature missing; row 5: a domain never seen; row 6: a number that is not one; row 8: no time


@pytest.mark.slow
def test_inference_scores_every_scorable_row_and_writes_the_file(mail: Pipeline, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from cli.modes import inference

    source = tmp_path / "mail_requests.csv"
    REQUESTS.to_csv(source, index=False)
    monkeypatch.setenv(CONFIG_ENV, str(mail.config_path))
    assert inference(mail.paths, str(source)) == 0
    out = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == mail.paths.reports / "mail_requests_predictions.csv"
    scored = pd.read_csv(out, keep_default_na=False)
    assert scored["error"].tolist() == ["", "", "", "", "", "", "length: 'lots' is not a finite number",
                                        "", "ts: missing or not a time"]
    ok = scored["error"] == ""
    assert scored.loc[ok, "predict"].astype(int).isin([0, 1]).all()
    proba = pd.to_numeric(scored.loc[ok, "probability"])
    assert proba.between(0, 1).all()
    assert proba.iloc[0] > 0.5 > proba.iloc[5]  # spam words vs work words


@pytest.mark.slow
def test_predict_batch_answers_missing_texts_with_the_assigned_model(mail: Pipeline) -> None:
    from router.app import create_app

    app = create_app(mail.cfg, str(mail.paths.root), poll=False)
    try:
        texts = [None, "", "   ", "free prize", "team notes"]
        rows = [{"user_id": f"t{i}", "features": {"ts": "2024-02-10T10:00:00Z", "subject": texts[i % 5],
                                                  "body": texts[(i + 1) % 5], "domain": "corp.example",
                                                  "length": 50.0, "msg_id": f"t{i}"}} for i in range(20)]
        response = app.test_client().post("/predict_batch", json={"rows": rows})
        assert response.status_code == 200
        results = response.get_json()["results"]
        assert [r["model_used"] for r in results] == ["prod"] * 20  # no staging yet: everyone is A
        assert all(r["fallback_reason"] is None and 0.0 <= r["probability"] <= 1.0 for r in results)
    finally:
        app.extensions["lakehouse"].events.close()
