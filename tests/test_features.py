"""The one feature definition on missing and odd values: missing text in every spelling, whole rows
of missing features, categories with stray whitespace; identical for a training batch and a
serving row, and accepted by the text vectorizer PyCaret puts in the model pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from features import MISSING_TEXT, FeatureSpec, build_features, normalize_strings, text_for_model
from serving.model_io import model_frame

SPEC = FeatureSpec(task="classification", time_column="ts", target="spam", id_column="msg_id",
                   numeric=("length",), categorical=("domain",), text=("subject", "body"),
                   time_features=("hour",))

BLANKS = [np.nan, None, pd.NA, "", "   ", "\t\n"]


def _mail() -> pd.DataFrame:
    return pd.DataFrame({
        "ts": [f"2024-01-01T0{i}:00:00Z" for i in range(8)],
        "subject": ["free prize", *BLANKS, "team  meeting "],
        "body": ["click here", "notes", " ", None, "", np.nan, "agenda", "lunch"],
        "domain": [" corp.example", "", "   ", None, "mail.example ", 7, "corp.example", "shop.example"],
        "length": [10.0, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        "msg_id": [f"m{i}" for i in range(8)],
        "spam": ["yes", "no", "no", "yes", "no", "no", "yes", "no"],
    })


def test_every_spelling_of_missing_text_is_missing_and_the_rest_is_kept() -> None:
    values = pd.Series(["free prize", *BLANKS, "team  meeting ", 3.5], dtype=object)
    assert normalize_strings(values).tolist() == ["free prize", None, None, None, None, None, None,
                                                  "team  meeting", "3.5"]
    assert text_for_model(values).tolist() == ["free prize", *[MISSING_TEXT] * 6, "team  meeting", "3.5"]


def test_build_features_normalises_text_and_categories_in_every_column() -> None:
    out = build_features(_mail(), SPEC)
    assert out["subject"].tolist() == ["free prize", None, None, None, None, None, None, "team  meeting"]
    assert out["body"].tolist() == ["click here", "notes", None, None, None, None, "agenda", "lunch"]
    # a serving row has no cleaning step: stray whitespace would make " corp.example" an unseen level
    assert out["domain"].tolist() == ["corp.example", None, None, None, "mail.example", "7", "corp.example",
                                      "shop.example"]


def test_a_serving_row_gets_exactly_the_features_of_the_same_row_in_a_training_batch() -> None:
    batch = build_features(_mail(), SPEC)
    for i in range(len(_mail())):
        alone = build_features(_mail().iloc[[i]].drop(columns=["spam"]), SPEC)
        pd.testing.assert_frame_equal(alone, batch.drop(columns=["spam"]).iloc[[i]].reset_index(drop=True))


def test_the_model_input_has_no_missing_text_and_the_vectorizer_takes_it() -> None:
    x = model_frame(build_features(_mail(), SPEC), SPEC, with_target=False)
    assert x["subject"].tolist() == ["free prize", "", "", "", "", "", "", "team  meeting"]
    assert x["body"].tolist() == ["click here", "notes", "", "", "", "", "agenda", "lunch"]
    assert x["domain"].isna().tolist() == [False, True, True, True, False, False, False, False]  # imputed later
    # what PyCaret's text step runs (one TfidfVectorizer per column): NaN made it raise
    # "np.nan is an invalid document" in training and "'float' object has no attribute 'lower'" at serving
    for col in SPEC.text:
        vectors = TfidfVectorizer().fit(x[col]).transform(x[col]).toarray()
        missing = x[col] == MISSING_TEXT
        assert np.all(vectors[missing.to_numpy()] == 0) and np.all(vectors[~missing.to_numpy()].sum(axis=1) > 0)


def test_a_row_with_every_feature_missing_is_a_valid_model_input() -> None:
    row = pd.DataFrame({"ts": ["2024-03-01T12:00:00Z"], "subject": [None], "body": ["  "], "domain": [""],
                        "length": [np.nan]})
    x = model_frame(build_features(row, SPEC), SPEC, with_target=False)
    assert x.columns.tolist() == ["hour", "length", "domain", "subject", "body"]
    assert x.iloc[0]["hour"] == 12.0 and np.isnan(x.iloc[0]["length"]) and pd.isna(x.iloc[0]["domain"])
    assert (x.iloc[0]["subject"], x.iloc[0]["body"]) == (MISSING_TEXT, MISSING_TEXT)


@pytest.mark.parametrize("value", BLANKS)
def test_missing_text_reads_the_same_in_each_spelling(value: object) -> None:
    row = pd.DataFrame({"ts": ["2024-03-01T12:00:00Z"], "subject": [value], "body": ["x y"], "domain": ["a"],
                        "length": [1.0]})
    out = build_features(row, SPEC)
    assert out["subject"].tolist() == [None]
    assert model_frame(out, SPEC, with_target=False)["subject"].tolist() == [MISSING_TEXT]
