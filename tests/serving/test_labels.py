"""One label domain (serving/labels.py): every spelling of a class maps to the model's class, the
rest is refused with the classes named; the training target is typed the same way, unlabelled
rows kept missing and left out of training and the hold-out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assets.training.data import select_training_data
from config.schema import PipelineConfig
from features import encode_target
from lake.tables import BATCH_COLUMN, EVENT_TIME_COLUMN
from serving.labels import ClassDomain, LabelInvalid, class_key, to_class, to_number


@pytest.mark.parametrize(("label", "classes", "expected"), [
    (1, [0, 1], 1), (1.0, [0, 1], 1), ("0.0", [0, 1], 0), (" 1 ", [0, 1], 1), (True, [0, 1], 1),
    ("YES", [0, 1], 1), ("no", [0, 1], 0), ("False", [0, 1], 0),
    (" Cat ", ["cat", "dog"], "cat"), ("DOG", ["cat", "dog"], "dog"), ("yes", ["no", "yes"], "yes"),
    (2, ["1", "2", "3"], "2"), ("2.0", [1, 2, 3], 2), (np.int64(3), [1, 2, 3], 3),
    ("A", ["A", "a"], "A"), ("a", ["A", "a"], "a"),  # colliding spellings: only the exact one
])
def test_any_spelling_of_a_class_is_that_class(label, classes, expected) -> None:
    got = to_class(label, classes)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("label", "classes", "words"), [
    (0.5, [0, 1], "expected a class label, got 0.5"),
    ("maybe", [0, 1], "unknown class 'maybe': expected one of [0, 1]"),
    ("yes", ["cat", "dog"], "unknown class 'yes'"),   # yes/no words map only onto classes 0 / 1
    (None, [0, 1], "the label is missing"), ("  ", ["cat"], "the label is missing"),
    ("Ab", ["A", "a"], "unknown class 'Ab'"), ("A ", ["A", "a"], "unknown class 'A '"),
])
def test_other_labels_are_refused_naming_the_classes(label, classes, words) -> None:
    with pytest.raises(LabelInvalid, match=words.replace("[", r"\[").replace("]", r"\]")):
        to_class(label, classes)


def test_keys_and_boolean_domain() -> None:
    assert [class_key(v) for v in ("0.0", 0, False, 1.5, " Cat ", None, "")] == [0, 0, 0, 1.5, "cat", None, None]
    assert ClassDomain([0, 1]).key("Yes") == 1 and ClassDomain(["no", "yes"]).key("Yes") == "yes"
    with pytest.raises(LabelInvalid, match="finite"):
        class_key(float("inf"))


def test_regression_labels() -> None:
    assert to_number(" 12.5 ") == 12.5 and to_number(3) == 3.0
    for bad, words in ((True, "got bool"), ("cheap", "got 'cheap'"), ("inf", "finite"), ("", "missing")):
        with pytest.raises(LabelInvalid, match=words):
            to_number(bad)


@pytest.mark.parametrize(("raw", "expected"), [
    (["YES", " no ", "", None, "  ", "Yes"], [1, 0, pd.NA, pd.NA, pd.NA, 1]),       # a yes/no target, 16% missing
    ([1.0, 0.0, np.nan, 1.0], [1, 0, pd.NA, 1]),                                   # float because of the gap
    (["0.0", "1.0", None, " 2 "], [0, 1, pd.NA, 2]),                               # integer-coded as text
    ([True, False, None], [1, 0, pd.NA]),                                          # boolean
    ([" cat", "dog ", "", "bird"], ["cat", "dog", None, "bird"]),                  # multiclass strings
])
def test_the_training_target_is_one_domain_and_blank_is_unlabelled(raw, expected) -> None:
    got = encode_target(pd.Series(raw, dtype=object), "classification").tolist()
    assert [None if v is pd.NA else v for v in got] == [None if v is pd.NA else v for v in expected]


def test_unlabelled_rows_are_left_out_of_training_and_hold_out(toy_cfg: PipelineConfig) -> None:
    raw = pd.Series(["YES", "NO", " ", None, "no", "Yes"] * 50, dtype=object)
    features = pd.DataFrame({
        EVENT_TIME_COLUMN: pd.date_range("2024-01-01", periods=len(raw), freq="h", tz="UTC"),
        BATCH_COLUMN: np.repeat([f"b{i}" for i in range(3)], len(raw) // 3),
        "churn": encode_target(raw, "classification")})
    cfg = toy_cfg.model_copy(update={"training": toy_cfg.training.model_copy(update={"holdout_min_rows": 50})})
    data = select_training_data(features.rename(columns={"churn": cfg.dataset.target}), cfg)
    assert len(data.train) + len(data.holdout) == 200  # 4 of every 6 rows carry a label
    target = cfg.dataset.target
    assert set(data.train[target]) | set(data.holdout[target]) == {0, 1}
