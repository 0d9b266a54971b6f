"""A compiled scorer: a fitted model pipeline translated into a lean path over arrays.

PyCaret's pipeline runs every step on pandas frames, one wrapped transformer at a time, and
costs about 15 ms for one row of the demo model; the estimator inside it needs 0.02–0.5 ms.
:func:`compile_pipeline` reads the fitted steps and builds, per step, what it computes:

- imputers: one fill constant per column;
- rare-category grouping: the set of categories that become the rare value;
- category encoders (one-hot, ordinal, target, sklearn's ordinal): one lookup table per column,
  made by calling the fitted encoder on every category it knows plus one unseen value (unseen
  and missing categories each map to one row, as the encoder maps them);
- text vectorisers: the fitted TF-IDF / count vectoriser itself, on a list of strings;
- scalers (standard, min-max, max-abs, robust): the same per-column arithmetic;
- the estimator: linear models as a dot product, decision trees and forests through sklearn's
  tree predictor on a float32 matrix, LightGBM through its booster, anything else (k-nearest
  neighbours, histogram boosting) through its own predictor on the matrix.

Nothing is trusted on faith: :func:`verify` scores the hold-out rows and adversarial rows
(missing values, unseen categories, empty text, extreme numbers) both ways and the scorer is
used only when the predicted classes are identical and the probabilities agree within 1e-9
(regression: relative 1e-9). A step without a translation raises :class:`Untranslatable`
naming it; that version is then scored by its pipeline, and the registry row says why.

The scorer's input is :data:`Columns`: one array per model input column, in model-frame
semantics (:func:`serving.model_io.model_frame`): float64 with NaN for time features and
numbers, object arrays of str or None for categories, str ('' when missing) for texts.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features import FeatureSpec, text_value_for_model
from serving.model_io import class_labels, model_frame

Columns = dict[str, np.ndarray]

# the compiled scorer's file in a version's artifact folder (without its estimator)
SCORER_FILE = "scorer.joblib"
# a category no encoder has seen: probes the encoders' "unknown" output
UNSEEN = "\x00unseen\x00"
# classification: probabilities within this absolute difference; regression: relative
TOLERANCE = 1e-9


class Untranslatable(Exception):
    """A fitted step the compiler has no exact translation for."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"step {step!r}: {reason}")
        self.step = step
        self.reason = reason


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _missing(values: np.ndarray) -> np.ndarray:
    """Missing entries of an object column: None or a float NaN (what sklearn's imputers see)."""
    return np.fromiter((v is None or _is_nan(v) for v in values), bool, len(values))


# ---- preprocessing steps ----------------------------------------------------------------------
@dataclass
class FillNumeric:
    """SimpleImputer over numbers: NaN -> the fitted statistic of its column."""

    fills: dict[str, float]

    def apply(self, cols: Columns) -> None:
        for name, value in self.fills.items():
            x = cols[name]
            cols[name] = np.where(np.isnan(x), value, x)


@dataclass
class FillCategory:
    """SimpleImputer over categories: a missing value -> the fitted constant of its column."""

    fills: dict[str, Any]

    def apply(self, cols: Columns) -> None:
        for name, value in self.fills.items():
            x = cols[name].copy()
            x[_missing(x)] = value
            cols[name] = x


@dataclass
class Drop:
    """Columns a step removed (an imputer drops a column that was empty in training)."""

    names: list[str]

    def apply(self, cols: Columns) -> None:
        for name in self.names:
            cols.pop(name, None)


@dataclass
class GroupRare:
    """PyCaret's RareCategoryGrouping: categories rare in training -> one value."""

    rare: dict[str, frozenset]
    value: str

    def apply(self, cols: Columns) -> None:
        for name, rare in self.rare.items():
            x = cols[name]
            cols[name] = np.array([self.value if v in rare else v for v in x], dtype=object)


@dataclass
class Lookup:
    """Per input column, a table of the encoder's output rows: one per known category, one for
    an unseen category and one for a missing value. The input column is replaced by its outputs."""

    tables: dict[str, tuple[dict[Any, int], int, int, list[str], np.ndarray]]
    # column -> (category -> row, unseen row, missing row, output names, table)

    def apply(self, cols: Columns) -> None:
        for name, (index, unseen, missing, outputs, table) in self.tables.items():
            x = cols.pop(name)
            rows = np.fromiter(
                (missing if (v is None or _is_nan(v)) else index.get(v, unseen) for v in x),
                np.intp, len(x))
            picked = table[rows]
            for j, out in enumerate(outputs):
                cols[out] = picked[:, j]


@dataclass
class EmbedText:
    """PyCaret's EmbedTextFeatures: each text column -> its fitted vectoriser's columns.

    A fitted sklearn ``CountVectorizer`` / ``TfidfVectorizer`` is applied without its sparse
    matrices (which cost 0.3 ms for one text): the vectoriser's own analyzer (tokens, n-grams,
    stop words, as fitted), its vocabulary, then ``binary``, ``sublinear_tf``, ``idf_`` and
    ``norm`` as sklearn applies them, on a dense row. Another vectoriser class runs its own
    ``transform``. Verified against the pipeline at registration like every step."""

    vectorizers: dict[str, Any]

    def __getstate__(self) -> dict:
        return {"vectorizers": self.vectorizers}  # analyzers are rebuilt from the vectorisers

    def __setstate__(self, state: dict) -> None:
        self.vectorizers = state["vectorizers"]

    def _lean(self, name: str) -> tuple[Any, dict, list[str]] | None:
        cache = self.__dict__.setdefault("_analyzers", {})
        if name not in cache:
            from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

            vec = self.vectorizers[name]
            cache[name] = (vec.build_analyzer(), vec.vocabulary_, list(vec.get_feature_names_out())) \
                if type(vec) in (CountVectorizer, TfidfVectorizer) else None
        return cache[name]

    def _embed(self, name: str, docs: np.ndarray) -> tuple[np.ndarray, list[str]]:
        vec = self.vectorizers[name]
        lean = self._lean(name)
        if lean is None:
            return vec.transform(list(docs)).toarray(), list(vec.get_feature_names_out())
        analyzer, vocabulary, names = lean
        out = np.zeros((len(docs), len(names)), dtype=np.float64)
        for i, doc in enumerate(docs):
            for token in analyzer(doc):
                j = vocabulary.get(token)
                if j is not None:
                    out[i, j] += 1.0
        if vec.binary:
            out = (out > 0).astype(np.float64)
        if hasattr(vec, "idf_") or hasattr(vec, "norm"):  # TfidfVectorizer
            if vec.sublinear_tf:
                nonzero = out > 0
                out[nonzero] = np.log(out[nonzero]) + 1.0
            if vec.use_idf:
                out = out * vec.idf_
            if vec.norm == "l2":
                norms = np.sqrt(np.einsum("ij,ij->i", out, out))
            elif vec.norm == "l1":
                norms = np.abs(out).sum(axis=1)
            else:
                norms = None
            if norms is not None:
                norms[norms == 0.0] = 1.0
                out = out / norms[:, np.newaxis]
        return out, names

    def apply(self, cols: Columns) -> None:
        for name in self.vectorizers:
            dense, words = self._embed(name, cols.pop(name))
            for j, word in enumerate(words):
                cols[f"{name}_{word}"] = dense[:, j]


@dataclass
class Scale:
    """sklearn's scalers, column by column with the same arithmetic (``sub`` then ``div``, or
    ``mul`` then ``add``); a None parameter is skipped as the scaler skips it."""

    names: list[str]
    sub: np.ndarray | None = None
    div: np.ndarray | None = None
    mul: np.ndarray | None = None
    add: np.ndarray | None = None
    clip: tuple[float, float] | None = None

    def apply(self, cols: Columns) -> None:
        for j, name in enumerate(self.names):
            x = np.asarray(cols[name], dtype=np.float64)
            if self.sub is not None:
                x = x - self.sub[j]
            if self.div is not None:
                x = x / self.div[j]
            if self.mul is not None:
                x = x * self.mul[j]
            if self.add is not None:
                x = x + self.add[j]
            if self.clip is not None:
                x = np.clip(x, *self.clip)
            cols[name] = x


@dataclass
class Rename:
    """PyCaret's CleanColumnNames: the same regular expression removed from every name."""

    pattern: str

    def apply(self, cols: Columns) -> None:
        for name in list(cols):
            cols[re.sub(self.pattern, "", str(name))] = cols.pop(name)


Step = FillNumeric | FillCategory | Drop | GroupRare | Lookup | EmbedText | Scale | Rename


def _scale_step(name: str, scaler: Any) -> Scale:
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

    names = [str(c) for c in getattr(scaler, "feature_names_in_", [])]
    if not names:
        raise Untranslatable(name, f"{type(scaler).__name__} was fitted without column names")
    if type(scaler) is StandardScaler:
        return Scale(names, sub=scaler.mean_ if scaler.with_mean else None,
                     div=scaler.scale_ if scaler.with_std else None)
    if type(scaler) is MinMaxScaler:
        return Scale(names, mul=scaler.scale_, add=scaler.min_,
                     clip=tuple(scaler.feature_range) if scaler.clip else None)
    if type(scaler) is MaxAbsScaler:
        return Scale(names, div=scaler.scale_)
    if type(scaler) is RobustScaler:
        return Scale(names, sub=scaler.center_ if scaler.with_centering else None,
                     div=scaler.scale_ if scaler.with_scaling else None)
    raise Untranslatable(name, f"no translation for the scaler {type(scaler).__name__}")


def _known_categories(name: str, encoder: Any, columns: list[str]) -> dict[str, list]:
    """The categories an encoder distinguishes, per column (category_encoders keep an ordinal
    mapping, sklearn's encoders ``categories_``)."""
    if hasattr(encoder, "categories_"):  # sklearn OrdinalEncoder / OneHotEncoder
        return {c: [v for v in cats if not _is_nan(v)]
                for c, cats in zip(columns, encoder.categories_, strict=True)}
    ordinal = getattr(encoder, "ordinal_encoder", None) or encoder
    mapping = getattr(ordinal, "mapping", None)
    if not isinstance(mapping, list):
        raise Untranslatable(name, f"{type(encoder).__name__} exposes no category mapping")
    known = {}
    for switch in mapping:
        values = switch["mapping"]
        keys = values.index if isinstance(values, pd.Series) else list(values)
        known[switch["col"]] = [v for v in keys if v is not None and not _is_nan(v)]
    missing = [c for c in columns if c not in known]
    if missing:
        raise Untranslatable(name, f"no category mapping for column(s) {missing}")
    return known


def _lookup_step(name: str, transform: Any, columns: list[str], known: dict[str, list],
                 output_names: list[str] | None = None) -> Lookup:
    """Tables of an encoder made by calling it: for each column, a probe frame in which only
    that column varies (over its categories, an unseen one and a missing one) tells which output
    columns it owns and their values. Every output must belong to exactly one input column."""
    base = {c: (known[c][0] if known[c] else UNSEEN) for c in columns}
    tables: dict[str, tuple] = {}
    owner: dict[str, str] = {}
    for col in columns:
        values = [*known[col], UNSEEN, np.nan]
        probe = pd.DataFrame({c: ([base[c]] * len(values) if c != col else values) for c in columns})
        probe = probe.astype(object)
        out = transform(probe)
        if not isinstance(out, pd.DataFrame):
            out = pd.DataFrame(np.asarray(out), columns=output_names)
        varying = [o for o in out.columns if out[o].astype(float).nunique(dropna=False) > 1]
        # a one-category column varies between its category and the unseen value; a column
        # whose output never varies (constant encoding) is owned by name
        if not varying and col in out.columns:
            varying = [col]
        for o in varying:
            if o in owner:
                raise Untranslatable(name, f"output {o!r} depends on both {owner[o]!r} and {col!r}")
            owner[o] = col
        table = out[varying].to_numpy(dtype=np.float64)
        index = {v: i for i, v in enumerate(known[col])}
        tables[col] = (index, len(values) - 2, len(values) - 1, [str(o) for o in varying], table)
    unowned = [str(o) for o in out.columns if o not in owner and o not in columns]
    if unowned:
        raise Untranslatable(name, f"output(s) {unowned[:5]} depend on no single input column")
    return Lookup(tables)


def _wrapped_step(name: str, wrapper: Any, cols_before: list[str]) -> Step | None:
    """A PyCaret TransformerWrapper step; None for steps that touch only the target."""
    from sklearn.impute import SimpleImputer

    inner = wrapper.transformer
    kind = type(inner).__name__
    include = list(wrapper._include) if wrapper._include is not None else list(cols_before)
    if kind == "LabelEncoder":  # the target's encoding: no effect on the features
        return None
    if wrapper._include is not None and not wrapper._include:
        return None  # PyCaret neither fits nor applies a step with no columns (e.g. no categorical input)
    if isinstance(inner, SimpleImputer):
        if not _is_nan(inner.missing_values):
            raise Untranslatable(name, f"imputer of missing value {inner.missing_values!r}")
        stats = list(inner.statistics_)
        names = [str(c) for c in getattr(inner, "feature_names_in_", include)]
        if len(stats) != len(names):
            raise Untranslatable(name, "imputer statistics do not match its columns")
        dropped = [c for c, s in zip(names, stats, strict=True)
                   if isinstance(s, float) and np.isnan(s) and not inner.keep_empty_features]
        if dropped:
            raise Untranslatable(name, f"the imputer dropped column(s) {dropped} that were empty in training")
        if inner.strategy in ("mean", "median") or all(isinstance(s, int | float | np.number) for s in stats):
            return FillNumeric({c: float(s) for c, s in zip(names, stats, strict=True)})
        return FillCategory(dict(zip(names, stats, strict=True)))
    if kind == "RareCategoryGrouping":
        return GroupRare({c: frozenset(inner.to_other_.get(c, [])) for c in include if inner.to_other_.get(c)},
                         inner.value)
    if kind == "EmbedTextFeatures":
        return EmbedText(dict(inner.estimators_))
    if kind in ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder") and \
            type(inner).__module__.startswith("category_encoders"):
        if not include:
            return None
        known = _known_categories(name, inner, include)
        return _lookup_step(name, inner.transform, include, known)
    if kind in ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler"):
        return _scale_step(name, inner)
    if kind == "CleanColumnNames":
        return Rename(inner.match)
    raise Untranslatable(name, f"no translation for {kind}")


def _column_transformer_steps(name: str, ct: Any) -> list[Step]:
    """sklearn's ColumnTransformer of the fallback: ordinal-encoded categories + passthrough."""
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    if getattr(ct, "verbose_feature_names_out", True):
        raise Untranslatable(name, "ColumnTransformer with prefixed output names")
    steps: list[Step] = []
    for part, transformer, selected in ct.transformers_:
        columns = [str(c) for c in selected]
        if (isinstance(transformer, str) and transformer in ("passthrough", "drop")) or not columns:
            continue
        if type(transformer) is FunctionTransformer and transformer.func is None:  # fitted 'passthrough'
            continue
        if type(transformer) is OrdinalEncoder:
            known = _known_categories(f"{name}/{part}", transformer, columns)

            def encode(frame: pd.DataFrame, enc: Any = transformer, cols: list[str] = columns) -> pd.DataFrame:
                # missing as NaN, as model_frame hands it to the pipeline
                values = frame[cols].astype(object).where(frame[cols].notna(), np.nan)
                return pd.DataFrame(enc.transform(values), columns=cols)

            steps.append(_lookup_step(f"{name}/{part}", encode, columns, known))
        else:
            raise Untranslatable(f"{name}/{part}", f"no translation for {type(transformer).__name__}")
    return steps


# ---- estimators -------------------------------------------------------------------------------
def _without_names(estimator: Any) -> Any:
    """A shallow copy that takes a matrix without warning that it lacks the fitted column names
    (the compiled matrix has the fitted columns in the fitted order, checked at compile time)."""
    bare = copy.copy(estimator)
    if hasattr(bare, "feature_names_in_"):
        del bare.feature_names_in_
    return bare


@dataclass
class Kernel:
    """The estimator over a float64 matrix. ``kind`` names the path: linear, trees, lightgbm or
    estimator (the estimator's own predictor on the matrix)."""

    kind: str
    task: str
    estimator: Any = field(repr=False)
    trees: list[Any] = field(default_factory=list, repr=False)
    allow_nan: bool = True

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (rows x classes) or regression predictions."""
        est = self.estimator
        if self.kind == "linear":
            scores = np.asfortranarray(x) @ est.coef_.T + est.intercept_
            if self.task == "regression":
                return scores.reshape(-1) if scores.ndim > 1 and scores.shape[1] == 1 else scores
            from scipy.special import expit
            from sklearn.utils.extmath import softmax

            scores = scores.reshape(-1) if scores.ndim > 1 and scores.shape[1] == 1 else scores
            if getattr(est, "_compiled_ovr", True):
                prob = expit(scores)
                if prob.ndim == 1:
                    return np.vstack([1 - prob, prob]).T
                return prob / prob.sum(axis=1).reshape((prob.shape[0], -1))
            scores = np.c_[-scores, scores] if scores.ndim == 1 else scores
            return softmax(scores, copy=False)
        if self.kind == "trees":
            x32 = np.ascontiguousarray(x, dtype=np.float32)
            if not self.allow_nan and not np.isfinite(x32).all():
                # what sklearn's input check refuses for trees without missing-value support
                raise ValueError("Input X contains NaN, infinity or a value too large for dtype('float32').")
            total = None
            for tree in self.trees:
                value = tree.predict(x32)
                if self.task == "classification":
                    value = value[:, : est.n_classes_]
                    norm = value.sum(axis=1)[:, np.newaxis]
                    norm[norm == 0.0] = 1.0
                    value = value / norm
                else:
                    value = value[:, 0]
                total = value if total is None else total + value
            return total / len(self.trees) if len(self.trees) > 1 else total
        if self.kind == "lightgbm":
            # one thread: the processes around it (gunicorn workers x threads, Dagster's run
            # processes) already own the cores; LightGBM's OpenMP team per call cost 8 ms instead of
            # 0.02 ms for one row on 2 busy cores (bench/compiled_scorer.py), same numbers either way
            raw = est.booster_.predict(x, num_threads=1)
            if self.task == "regression" or raw.ndim == 2:
                return raw
            return np.vstack((1.0 - raw, raw)).transpose()
        return est.predict_proba(x) if self.task == "classification" else est.predict(x)


def make_kernel(estimator: Any, task: str) -> Kernel:
    """The fastest exact path for a fitted estimator (verified by :func:`verify`)."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    kind = type(estimator)
    if kind is LogisticRegression:
        bare = _without_names(estimator)
        bare._compiled_ovr = estimator.multi_class in ("ovr", "warn") or (
            estimator.multi_class == "auto" and (estimator.classes_.size <= 2
                                                 or estimator.solver in ("liblinear", "newton-cholesky")))
        return Kernel("linear", task, bare)
    if kind in (LinearRegression, Ridge):
        return Kernel("linear", task, estimator)
    if kind in (DecisionTreeClassifier, DecisionTreeRegressor):
        return Kernel("trees", task, estimator, [estimator.tree_],
                      allow_nan=bool(estimator._support_missing_values(np.zeros((1, 1)))))
    if kind in (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor):
        first = estimator.estimators_[0]
        return Kernel("trees", task, estimator, [e.tree_ for e in estimator.estimators_],
                      allow_nan=bool(first._support_missing_values(np.zeros((1, 1)))))
    if type(estimator).__module__.startswith("lightgbm"):
        return Kernel("lightgbm", task, estimator)
    return Kernel("estimator", task, _without_names(estimator))


# ---- the scorer ---------------------------------------------------------------------------------
@dataclass
class CompiledScorer:
    """Preprocessing steps over :data:`Columns`, the model matrix's columns, and a kernel.

    Pickled without its kernel (:meth:`state_bytes`): the estimator is the pipeline's own, bound
    again at load time (:meth:`bind`), so a forest's trees are not stored twice."""

    task: str
    inputs: list[str]
    steps: list[Step]
    matrix_columns: list[str]
    classes: list
    kernel_kind: str
    kernel: Kernel | None = field(default=None, repr=False)

    def matrix(self, cols: Columns) -> np.ndarray:
        """The model matrix (rows x model columns, float64) of input columns."""
        work = dict(cols)
        for step in self.steps:
            step.apply(work)
        n = len(next(iter(cols.values()))) if cols else 0
        out = np.empty((n, len(self.matrix_columns)), dtype=np.float64)
        for j, name in enumerate(self.matrix_columns):
            out[:, j] = work[name]
        return out

    def outputs(self, cols: Columns) -> np.ndarray:
        """Class probabilities (columns in :attr:`classes` order) or regression predictions."""
        if self.kernel is None:
            raise RuntimeError("compiled scorer is not bound to its estimator (CompiledScorer.bind)")
        return self.kernel.outputs(self.matrix(cols))

    def predict(self, cols: Columns) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions and, for classification, class probabilities, as
        :func:`serving.model_io.model_outputs` returns them from the pipeline."""
        out = self.outputs(cols)
        if self.task == "regression":
            return np.asarray(out), None
        return np.asarray(self.classes, dtype=object)[np.argmax(out, axis=1)], out

    def state_bytes(self) -> bytes:
        """The scorer pickled without its kernel (what ``scorer.joblib`` holds)."""
        import joblib

        buffer = io.BytesIO()
        joblib.dump(copy.copy(self).__dict__ | {"kernel": None}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_state(cls, data: bytes, pipeline: Any) -> CompiledScorer:
        """A scorer from :meth:`state_bytes`, bound to the estimator of the pipeline it was compiled from."""
        import joblib

        scorer = cls(**joblib.load(io.BytesIO(data)))
        return scorer.bind(pipeline)

    def bind(self, pipeline: Any) -> CompiledScorer:
        kernel = make_kernel(pipeline.steps[-1][1], self.task)
        if kernel.kind != self.kernel_kind:
            raise ValueError(f"compiled for a {self.kernel_kind} kernel, the pipeline gives {kernel.kind}")
        self.kernel = kernel
        return self

    def sha256(self) -> str:
        return hashlib.sha256(self.state_bytes()).hexdigest()


def _reference_matrix(pipeline: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """The pipeline's own transform of model-frame rows (every step but the estimator)."""
    x = frame
    for _, step in pipeline.steps[:-1]:
        out = step.transform(x)
        x = out[0] if isinstance(out, tuple) else out
    return x if isinstance(x, pd.DataFrame) else pd.DataFrame(x)


def _name_key(name: object) -> str:
    """A column name as LightGBM stores it: every character outside [0-9A-Za-z_] becomes '_'."""
    return re.sub(r"[^0-9A-Za-z_]", "_", str(name))


def compile_pipeline(pipeline: Any, spec: FeatureSpec, sample: pd.DataFrame) -> CompiledScorer:
    """Translate a fitted pipeline (PyCaret's, or the fallback's sklearn Pipeline) into a
    :class:`CompiledScorer`; ``sample`` (features rows) fixes the model matrix's column order
    as the pipeline's own transform produces it. Raises :class:`Untranslatable`."""
    steps_in = getattr(pipeline, "steps", None)
    if not steps_in:
        raise Untranslatable("pipeline", f"{type(pipeline).__name__} is not a fitted pipeline")
    frame = model_frame(sample.head(50), spec, with_target=False)
    cols_before = list(frame.columns)
    steps: list[Step] = []
    for name, step in steps_in[:-1]:
        kind = type(step).__name__
        if kind in ("TransformerWrapper", "TransformerWrapperWithInverse"):
            translated = _wrapped_step(name, step, cols_before)
            if translated is not None:
                steps.append(translated)
        elif kind == "ColumnTransformer":
            steps.extend(_column_transformer_steps(name, step))
        elif step == "passthrough" or step is None:
            continue
        else:
            raise Untranslatable(name, f"no translation for {kind}")
    reference = _reference_matrix(pipeline, frame)
    estimator = steps_in[-1][1]
    fitted_names = getattr(estimator, "feature_names_in_", None)
    if fitted_names is None and hasattr(estimator, "feature_name_"):
        fitted_names = estimator.feature_name_
    matrix_columns = [str(c) for c in reference.columns]
    # LightGBM renames the columns it is fitted on (PyCaret's one-hot column "plane_type_Fixed wing
    # multi engine" becomes "..._Fixed_wing_multi_engine"), so names are compared as it writes them;
    # the kernel takes a matrix by position, and verify() checks the outputs themselves
    if fitted_names is not None and [_name_key(c) for c in fitted_names] != [_name_key(c) for c in matrix_columns]:
        raise Untranslatable(steps_in[-1][0], "the estimator was fitted on other columns than the "
                             "pipeline's transform gives")
    kernel = make_kernel(estimator, spec.task)
    classes = class_labels(pipeline) if spec.task == "classification" else []
    scorer = CompiledScorer(spec.task, list(spec.feature_columns), steps, matrix_columns, classes, kernel.kind, kernel)
    produced = scorer.matrix(columns_of(sample.head(50), spec))
    if produced.shape[1] != reference.shape[1]:
        raise Untranslatable("pipeline", "the translated steps give other columns than the pipeline")
    return scorer


def columns_of(frame: pd.DataFrame, spec: FeatureSpec) -> Columns:
    """:data:`Columns` of features rows (the ``features`` table's or ``build_features``' output),
    converted as :func:`serving.model_io.model_frame` converts them for the pipeline, column by
    column without copying the frame (that copy was most of a one-row call). The steps never
    write into these arrays (each makes a new one), so views of the frame are safe."""
    cols: Columns = {}
    for name in spec.time_features:
        cols[name] = frame[name].to_numpy(dtype=np.float64)
    for name in spec.numeric:
        cols[name] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    for name in spec.categorical:
        values = np.array(frame[name].to_numpy(dtype=object), dtype=object)  # own copy: written below
        values[pd.isna(values)] = None  # None, NaN, pd.NA (Arrow strings) alike
        cols[name] = values
    for name in spec.text:
        cols[name] = np.array([text_value_for_model(v) for v in frame[name].to_numpy(dtype=object)], dtype=object)
    return cols


# ---- verification -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verification:
    """The compiled path against the pipeline: ``ok`` when classes are identical and outputs
    within :data:`TOLERANCE` on every checked row (a row the pipeline refuses must be refused)."""

    ok: bool
    rows: int
    adversarial_rows: int
    max_abs_diff: float
    max_rel_diff: float
    class_mismatches: int
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "adversarial_rows": self.adversarial_rows,
                "max_abs_diff": self.max_abs_diff, "max_rel_diff": self.max_rel_diff,
                "class_mismatches": self.class_mismatches, "tolerance": TOLERANCE, "reason": self.reason}


def adversarial_rows(base: pd.DataFrame, spec: FeatureSpec, schema: dict | None = None) -> pd.DataFrame:
    """Rows a model meets in serving and rarely in training, one value changed at a time from
    ``base``'s first row: missing, zero and extreme numbers (±1e12, far beyond the training
    range), missing / blank / unseen / numeric-looking categories, missing, empty, unseen and
    very long texts; plus one row with every input missing."""
    row = base.iloc[[0]].reset_index(drop=True)
    ranges = (schema or {}).get("numeric_ranges", {})
    rows = []

    def variant(col: str, value: Any) -> None:
        changed = row.copy()
        changed[col] = changed[col].astype(object)
        changed.loc[0, col] = value
        rows.append(changed)

    for col in spec.numeric:
        lo, hi = ranges.get(col, (0.0, 1.0))
        width = max(hi - lo, 1.0)
        for value in (np.nan, 0.0, -1e12, 1e12, lo - 10 * width, hi + 10 * width):
            variant(col, value)
    for col in spec.categorical:
        for value in (None, "", UNSEEN, "1", "unseen category"):
            variant(col, value)
    for col in spec.text:
        for value in (None, "", "zzqx unseen words only", "free " * 2000):
            variant(col, value)
    empty = row.copy()
    for col in [*spec.numeric, *spec.categorical, *spec.text]:
        empty[col] = empty[col].astype(object)
        empty.loc[0, col] = None
    rows.append(empty)
    out = pd.concat(rows, ignore_index=True) if rows else row
    for col in spec.numeric:
        out[col] = pd.to_numeric(out[col]).astype("float64")
    for col in spec.categorical:
        out[col] = [None if v is None or _is_nan(v) or (isinstance(v, str) and not v.strip())
                    else v for v in out[col]]
    return out


def _compare(ref: np.ndarray, got: np.ndarray, task: str) -> tuple[float, float]:
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        return float("inf"), float("inf")
    same_nan = np.isnan(ref) & np.isnan(got)
    diff = np.where(same_nan, 0.0, np.abs(ref - got))
    diff = np.where(np.isinf(ref) & (ref == got), 0.0, diff)
    rel = diff / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)
    rel = np.where(diff == 0, 0.0, rel)
    return (float(np.nanmax(diff)) if diff.size else 0.0), (float(np.nanmax(rel)) if rel.size else 0.0)


def verify(pipeline: Any, scorer: CompiledScorer, holdout: pd.DataFrame, spec: FeatureSpec, *,
           schema: dict | None = None, single_rows: int = 20) -> Verification:
    """Score ``holdout`` (features rows) and :func:`adversarial_rows` with the pipeline and the
    scorer, batched and row by row, and compare."""
    from serving.model_io import model_outputs

    max_abs = max_rel = 0.0
    mismatches = 0
    reasons: list[str] = []

    def check(rows: pd.DataFrame, label: str) -> None:
        nonlocal max_abs, max_rel, mismatches
        try:
            ref_pred, ref_proba = model_outputs(pipeline, rows, spec)
        except Exception as exc:  # the pipeline refuses these rows: the scorer must refuse them too
            try:
                scorer.predict(columns_of(rows, spec))
            except Exception:  # both refuse: the same outcome
                return
            reasons.append(f"{label}: the pipeline refuses ({type(exc).__name__}: {str(exc)[:120]}), "
                           "the compiled path answers")
            return
        try:
            pred, proba = scorer.predict(columns_of(rows, spec))
        except Exception as exc:
            reasons.append(f"{label}: the compiled path fails ({type(exc).__name__}: {str(exc)[:160]})")
            return
        if spec.task == "classification":
            mismatches += int(np.sum(np.asarray(pred, dtype=object) != np.asarray(ref_pred, dtype=object)))
            a, r = _compare(ref_proba, proba, spec.task)
        else:
            a, r = _compare(ref_pred, pred, spec.task)
        max_abs, max_rel = max(max_abs, a), max(max_rel, r)

    check(holdout, "hold-out rows")
    for i in range(min(single_rows, len(holdout))):
        check(holdout.iloc[[i]].reset_index(drop=True), f"hold-out row {i} alone")
    adversarial = adversarial_rows(holdout, spec, schema) if len(holdout) else holdout
    for i in range(len(adversarial)):  # alone: a row the pipeline refuses must not hide the others
        check(adversarial.iloc[[i]].reset_index(drop=True), f"adversarial row {i}")
    tolerated = max_abs if spec.task == "classification" else max_rel
    if mismatches:
        reasons.append(f"{mismatches} predicted class(es) differ")
    if not tolerated <= TOLERANCE:
        reasons.append(f"max {'absolute' if spec.task == 'classification' else 'relative'} difference "
                       f"{tolerated:.3g} > {TOLERANCE:g}")
    return Verification(not reasons, len(holdout), len(adversarial), max_abs, max_rel, mismatches, "; ".join(reasons))


def compile_verified(pipeline: Any, spec: FeatureSpec, holdout: pd.DataFrame, schema: dict | None = None
                     ) -> tuple[CompiledScorer | None, dict[str, Any]]:
    """Compile ``pipeline`` and verify it on ``holdout`` (features rows): the scorer, or None when
    a step has no translation or the check fails, and the registry row's ``scorer*`` fields
    (``scorer_sha256`` is added by whoever writes the file: it is the file's hash)."""
    import logging

    log = logging.getLogger(__name__)
    try:
        scorer = compile_pipeline(pipeline, spec, holdout)
    except Untranslatable as exc:
        log.warning("model not compiled, it is scored by its pipeline: %s", exc)
        return None, {"scorer": "pipeline", "scorer_max_diff": None,
                      "scorer_check": {"step": exc.step, "reason": f"no compiled translation: {exc.reason}"}}
    check = verify(pipeline, scorer, holdout, spec, schema=schema)
    detail = {**check.as_dict(), "kernel": scorer.kernel_kind, "steps": [type(s).__name__ for s in scorer.steps]}
    if not check.ok:
        log.warning("compiled scorer differs from its pipeline, the pipeline scores: %s", check.reason)
        worst = check.max_abs_diff if spec.task == "classification" else check.max_rel_diff
        return None, {"scorer": "pipeline", "scorer_max_diff": worst,
                      "scorer_check": {**detail, "reason": f"verification failed: {check.reason}"}}
    return scorer, {"scorer": "compiled", "scorer_check": detail,
                    "scorer_max_diff": check.max_abs_diff if spec.task == "classification" else check.max_rel_diff}
