"""serving.scoring on missing, odd and poisoned rows: every row that can be scored is scored, and
an error is only where a row is truly unscorable (its values cannot be typed, or the model fails
on it alone)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.scoring import MODEL_FAILED, score_frame
from tests.support.fake_models import POISON, Poisoned, fit_mail_pipeline, served

ROWS = pd.DataFrame({  # as -mode inference reads a file: every cell a string or missing
    "ts": ["2024-02-01T10:00:00Z"] * 7 + ["", "yesterday"],
    "subject": ["free prize", np.nan, "", "   ", f"a {POISON} pill", None, "team notes", "x", "x"],
    "body": ["click cash", "", np.nan, " ", "hello", None, "agenda", "x", "x"],
    "domain": ["corp.example", None, "", "new.example", "corp.example", None, " mail.example", "a", "a"],
    "length": ["10", None, "  ", "5", "7", None, "warm", "1", "1"],
})


@pytest.fixture(scope="module")
def pipeline():
    return fit_mail_pipeline()


def test_missing_text_blank_cells_whole_missing_rows_and_unseen_levels_are_scored(pipeline) -> None:
    scored = score_frame(ROWS.iloc[[0, 1, 2, 3, 5]], served(pipeline))
    assert scored["error"].tolist() == [""] * 5
    assert scored["predict"].isin([0, 1]).all() and scored["probability"].between(0, 1).all()  # yes/no -> 1/0
    assert scored["predict"].iloc[0] == 1 and scored["probability"].iloc[0] > 0.5  # spam words only


def test_only_the_rows_that_fail_alone_get_an_error(pipeline) -> None:
    model = Poisoned(pipeline)
    scored = score_frame(ROWS, served(model, version=7))
    errors = scored["error"].tolist()
    assert errors[4] == MODEL_FAILED.format(version=7) + "ValueError: cannot take this value"
    assert errors[6] == "length: 'warm' is not a finite number"  # a wrong type, never sent to the model
    assert errors[7] == errors[8] == "ts: missing or not a time"
    assert [i for i, e in enumerate(errors) if e] == [4, 6, 7, 8]
    good = [0, 1, 2, 3, 5]
    assert scored["predict"].iloc[good].notna().all() and scored["probability"].iloc[good].between(0, 1).all()
    assert scored["predict"].iloc[[4, 6, 7, 8]].isna().all() and scored["probability"].iloc[[4, 6, 7, 8]].isna().all()
    # the same predictions as without the poisoned row: its neighbours lost nothing
    clean = score_frame(ROWS.iloc[good], served(pipeline))
    assert scored["predict"].iloc[good].tolist() == clean["predict"].tolist()
    assert np.allclose(scored["probability"].iloc[good], clean["probability"])
    # 6 scorable rows, 1 poisoned: 1 group call + 2·log2(6) halvings at most
    assert model.calls <= 1 + 2 * int(np.ceil(np.log2(6)))


def test_a_model_that_fails_on_every_row_errs_every_row_without_raising(pipeline) -> None:
    rows = ROWS.iloc[:4].assign(subject=POISON)
    model = Poisoned(pipeline)
    scored = score_frame(rows, served(model))
    assert scored["error"].str.startswith(MODEL_FAILED.format(version=1)).all()
    assert scored["predict"].isna().all() and model.calls == 2 * len(rows) - 1
