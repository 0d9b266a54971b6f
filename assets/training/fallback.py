"""The robust fallback model: gradient-boosted trees that take missing values and unseen
categories natively, for rows too sparse or unusual for the AutoML winner (alias ``fallback``)."""

from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from features import FeatureSpec
from serving.model_io import model_frame

FALLBACK_MODEL_ID = "hgb_fallback"


def build_fallback(spec: FeatureSpec, seed: int = 0) -> Pipeline:
    """Categories -> ordinal codes (unknown and missing -> NaN); trees split on NaN themselves.

    Text columns are left out: the fallback must score whatever arrives, with few assumptions.
    Strong L2 regularisation and early stopping keep it conservative.
    """
    encode = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)
    pre = ColumnTransformer([("categorical", encode, list(spec.categorical)),
                             ("numeric", "passthrough", [*spec.time_features, *spec.numeric])],
                            remainder="drop", verbose_feature_names_out=False)
    params = {"max_iter": 300, "learning_rate": 0.05, "l2_regularization": 1.0, "min_samples_leaf": 40,
              "early_stopping": True, "validation_fraction": 0.1, "random_state": seed}
    estimator = HistGradientBoostingClassifier(**params) if spec.task == "classification" \
        else HistGradientBoostingRegressor(**params)
    return Pipeline([("encode", pre), ("model", estimator)]).set_output(transform="pandas")


def fit_fallback(train, spec: FeatureSpec, seed: int = 0) -> Pipeline:
    """Fit the fallback on the same time-ordered window as the winner."""
    frame = model_frame(train, spec)
    return build_fallback(spec, seed).fit(frame.drop(columns=[spec.target]), frame[spec.target])
