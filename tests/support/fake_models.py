"""Served models without PyCaret, for fast tests of scoring and the router's plan: a TF-IDF +
logistic regression pipeline on the model frame of the mail toy (tests/support/text_data.py), and
a wrapper that raises on the rows carrying a poison word, as a pipeline that cannot take a value
would."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from features import FeatureSpec, build_features
from serving.model_io import model_frame
from serving.scoring import ServedModel
from tests.support.text_data import make_mail

MAIL_SPEC = FeatureSpec(task="classification", time_column="ts", target="spam", id_column="msg_id",
                        numeric=("length",), categorical=("domain",), text=("subject", "body"),
                        time_features=("hour",))
POISON = "poison"


def fit_mail_pipeline(n: int = 400) -> Pipeline:
    """A small text classifier fitted on the model frame (what PyCaret's setup receives)."""
    frame = model_frame(build_features(make_mail(n), MAIL_SPEC), MAIL_SPEC)
    pre = ColumnTransformer([
        ("subject", TfidfVectorizer(), "subject"), ("body", TfidfVectorizer(), "body"),
        ("domain", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                             ("encode", OneHotEncoder(handle_unknown="ignore"))]), ["domain"]),
        ("numeric", SimpleImputer(), ["hour", "length"]),
    ])
    return Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=500))]).fit(
        frame.drop(columns=[MAIL_SPEC.target]), frame[MAIL_SPEC.target])


class Poisoned:
    """``model`` that raises on any call whose rows hold the word :data:`POISON` in a text column;
    ``calls`` counts the calls."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def _check(self, x: pd.DataFrame) -> None:
        self.calls += 1
        if any(x[c].str.contains(POISON).any() for c in MAIL_SPEC.text):
            raise ValueError("cannot take this value")

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        self._check(x)
        return self.model.predict_proba(x)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        self._check(x)
        return self.model.predict(x)


def served(model: Any, version: int = 1) -> ServedModel:
    """``model`` served with the mail spec and an input schema like the registry stores."""
    schema = {"spec": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(MAIL_SPEC).items()},
              "categories": {"domain": ["corp.example", "mail.example", "shop.example"]},
              "numeric_ranges": {"length": [0.0, 1000.0]}}
    return ServedModel(version, model, MAIL_SPEC, schema)
