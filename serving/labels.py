"""One label domain for training, serving, feedback and the A/B analysis.

A target arrives spelled in many ways: booleans, ``"YES"``/``"no"``, ``0.0``/``1.0`` (a float
column because some rows are unlabelled), integer codes as text (``" 2 "``), class names in any
case. The model's classes (what ``/model_info`` publishes, :func:`serving.model_io.class_labels`)
are the domain; every other spelling is mapped to one of them by :func:`to_class`, or refused with
a reason that names what was expected. The A/B analysis compares a prediction with a label through
the same :func:`class_key`, so ``"0.0"`` and ``0`` are the same class there too.

Plain functions, no pandas state, no Dagster: the router (``/feedback``), the A/B analysis and the
training target encoding (:func:`features.encode_target`) all import this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

# spellings of a yes/no target; they map to 1 / 0, the classes a boolean target is trained on
BOOLEAN_WORDS = {"true": 1, "false": 0, "yes": 1, "no": 0, "1": 1, "0": 0, "1.0": 1, "0.0": 0}


class LabelInvalid(ValueError):
    """A label that no class of the domain can be: the message says why and what was expected."""


def is_missing(value: Any) -> bool:
    """None, NaN, pandas' NA / NaT and empty or whitespace-only text: no label."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return isinstance(value, str) and not value.strip()


def _number_key(number: float) -> int | float:
    """An integral number as int (0.0 -> 0, so a float-typed label column matches integer classes)."""
    return int(number) if number.is_integer() else number


def class_key(value: Any) -> Any:
    """The comparison key of a label or class: numbers (and numeric text) as int when integral,
    else float; booleans as 0 / 1; other text stripped and case-folded; None when missing.

    Two spellings with the same key are the same class: ``"0.0"``, ``0``, ``False`` -> ``0``;
    ``" Cat "``, ``"cat"`` -> ``"cat"``. Non-finite numbers are not labels (ValueError)."""
    if is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise LabelInvalid(f"a label must be finite, got {value}")
        return _number_key(float(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text.casefold()
    if not math.isfinite(number):  # "nan", "inf" as text
        return text.casefold()
    return _number_key(number)


def is_boolean_domain(keys: Iterable[Any]) -> bool:
    """Classes 0 / 1 (or one of them): yes/no and true/false spellings then map onto them."""
    present = set(keys)
    return bool(present) and present <= {0, 1}


class ClassDomain:
    """The classes of a classifier and the map from any spelling to one of them.

    Built once per class list (the router builds it per loaded model, the analysis per
    experiment), so mapping a label costs one key computation and one dict look-up."""

    def __init__(self, classes: Sequence[Any]) -> None:
        self.classes = list(classes)
        by_key: dict[Any, list[Any]] = {}
        for c in self.classes:
            by_key.setdefault(class_key(c), []).append(c)
        # classes whose spellings collide ("a" and "A") are reachable only by their exact spelling
        self._by_key = {k: v[0] for k, v in by_key.items() if len(v) == 1}
        self._exact = {(type(c), c) for c in self.classes if len(by_key[class_key(c)]) > 1}
        self.boolean = is_boolean_domain(by_key)

    def key(self, value: Any) -> Any:
        """:func:`class_key`, with yes/no words mapped to 1 / 0 when the classes are 0 / 1."""
        key = class_key(value)
        if self.boolean and isinstance(key, str) and key in BOOLEAN_WORDS:
            return BOOLEAN_WORDS[key]
        return key

    def to_class(self, value: Any) -> Any:
        """The class ``value`` spells; LabelInvalid (naming the classes) when it spells none."""
        if is_missing(value):
            raise LabelInvalid(f"the label is missing: expected one of {self.classes}")
        if (type(value), value) in self._exact:
            return value
        key = self.key(value)
        if key in self._by_key:
            return self._by_key[key]
        if isinstance(key, float):  # 0.5 for classes 0 / 1: a probability or a score, not a class
            raise LabelInvalid(f"expected a class label, got {value}: expected one of {self.classes}")
        raise LabelInvalid(f"unknown class {value!r}: expected one of {self.classes}")


def to_class(value: Any, classes: Sequence[Any]) -> Any:
    """The class of ``classes`` that ``value`` spells (see :class:`ClassDomain`)."""
    return ClassDomain(classes).to_class(value)


def to_number(value: Any) -> float:
    """A regression label as a float: numbers and numeric text; booleans, other text and
    non-finite values are refused (LabelInvalid)."""
    if is_missing(value):
        raise LabelInvalid("the label is missing: expected a number for a regression target")
    if isinstance(value, bool | np.bool_):
        raise LabelInvalid("expected a number for a regression target, got bool")
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError as exc:
            raise LabelInvalid(f"expected a number for a regression target, got {value!r}") from exc
    elif isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
    else:
        raise LabelInvalid(f"expected a number for a regression target, got {type(value).__name__}")
    if not math.isfinite(number):
        raise LabelInvalid(f"a regression label must be finite, got {value!r}")
    return number


def canonical_target(values: pd.Series, task: str) -> pd.Series:
    """The target column as training stores it, missing labels kept missing (``pd.NA`` / NaN):

    - regression: float; text that is not a number is missing;
    - classification, every present value a yes/no spelling: 0 / 1 (``Int64``);
    - every present value an integral number in any spelling (``"1"``, ``1.0``, ``" 2 "``): ``Int64``;
    - otherwise text, stripped (case is kept: it is the class name the model will answer with).

    Empty or whitespace-only cells are missing. Each distinct value is converted once."""
    if task == "regression":
        return pd.to_numeric(values.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v),
                             errors="coerce").astype("float64")
    raw = values.astype(object)
    present = [v for v in pd.unique(raw) if not is_missing(v)]
    missing = raw.map(is_missing)
    if present and {str(v).strip().lower() for v in present} <= set(BOOLEAN_WORDS):
        mapping = {v: BOOLEAN_WORDS[str(v).strip().lower()] for v in present}
        return raw.where(~missing, None).map(lambda v: None if v is None else mapping[v]).astype("Int64")
    keys = {v: class_key(v) for v in present}
    if present and all(isinstance(k, int) for k in keys.values()):
        return raw.where(~missing, None).map(lambda v: None if v is None else keys[v]).astype("Int64")
    return raw.where(~missing, None).map(lambda v: None if v is None else str(v).strip())
