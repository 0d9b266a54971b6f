"""The A/B analysis of one experiment from the request log: per-variant figures, SRM and label
health, the effect with its confidence interval, the always-valid p-value over every look, the
required sample size, guardrails and the decision. Plain functions over DataFrames (the Dagster
asset and the command line call :func:`analyse_experiment`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from assets.ab.stats import (
    Comparison,
    Decision,
    DecisionRules,
    StatTest,
    compare_means,
    compare_paired,
    decide,
    effect_in_loss_units,
    label_balance_test,
    mcnemar_test,
    msprt_p_values,
    paired_test,
    required_sample_size,
    srm_test,
)
from config.schema import ABConfig
from lake.delta import Lake
from lake.experiments import Experiment
from lake.tables import AB_EVENTS, AB_FEEDBACK
from serving.labels import ClassDomain, LabelInvalid, to_number

A, B = "A", "B"
EPS = 1e-15


def metric_of(task: str, cfg: ABConfig) -> str:
    return cfg.metric or ("accuracy" if task == "classification" else "mae")


def _scalar(text: Any) -> Any:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    return json.loads(text) if isinstance(text, str) else text


def _decoded(texts: pd.Series) -> pd.Series:
    """JSON scalars as Python values, each distinct text parsed once (a classifier's million
    answers are a handful of texts)."""
    distinct = texts.dropna().unique()
    return texts.map(dict(zip(distinct, map(_scalar, distinct), strict=True))).astype(object)


# what the analysis and its report read: everything but the request's features and provenance
ANALYSED_COLUMNS = ["request_id", "event_time", "user_id", "variant", "experiment_id", "model_version",
                    "model_used", "fallback_reason", "prediction", "probability", "latency_ms", "model_ms",
                    "shadow_version", "shadow_prediction", "shadow_probability", "error"]


def labelled_events(lake: Lake, experiment_id: str) -> pd.DataFrame:
    """The experiment's answered requests with their label (the latest feedback per request) and
    the label delay in seconds; unlabelled requests have a null label."""
    if not lake.exists(AB_EVENTS):
        return pd.DataFrame()
    quoted = experiment_id.replace("'", "''")
    # `error` and `model_ms` are newer than some tables
    present = {f.name for f in lake.table(AB_EVENTS).schema().fields}
    events = lake.read(AB_EVENTS, where=f"experiment_id = '{quoted}'",
                       columns=[c for c in ANALYSED_COLUMNS if c in present])
    if events.empty:
        return events
    feedback = lake.read(AB_FEEDBACK, columns=["request_id", "event_time", "label"], missing_ok=True)
    if len(feedback):
        feedback = (feedback.sort_values("event_time").drop_duplicates("request_id", keep="last")
                    .rename(columns={"event_time": "label_time"}))
        events = events.merge(feedback, on="request_id", how="left")
    else:
        # no label yet at all: a typed (UTC) empty label time, so the delay below is NaN, not a crash
        events = events.assign(label=None, label_time=pd.Series(pd.NaT, index=events.index,
                                                                dtype=events["event_time"].dtype))
    events["label_delay_s"] = (events["label_time"] - events["event_time"]).dt.total_seconds()
    return events.sort_values("event_time", kind="stable").reset_index(drop=True)


def labelled_count(lake: Lake, experiment_id: str) -> int:
    """Requests of the experiment that have at least one label in `ab_feedback` (two key columns
    read, no features): what ab_sensor compares with its cursor."""
    if not lake.exists(AB_EVENTS) or not lake.exists(AB_FEEDBACK):
        return 0
    quoted = experiment_id.replace("'", "''")
    ids = lake.read(AB_EVENTS, where=f"experiment_id = '{quoted}'", columns=["request_id"])["request_id"]
    labelled = lake.read(AB_FEEDBACK, columns=["request_id"])["request_id"]
    return int(ids.isin(set(labelled)).sum())


def _distinct_map(values: pd.Series, convert) -> pd.Series:
    """``convert`` applied once per distinct non-null value (a million labels are a handful of
    texts); values it refuses (LabelInvalid) become None."""
    out: dict[Any, Any] = {}
    for value in values.dropna().unique():
        try:
            out[value] = convert(value)
        except LabelInvalid:
            out[value] = None
    return values.map(out).astype(object)


def prediction_domain(frame: pd.DataFrame) -> ClassDomain:
    """The classes the models answered with in this frame (served and shadow predictions): the
    label domain the analysis maps feedback onto (the router accepted each label against prod's
    classes, see router.plan.label_problem)."""
    # the distinct answer texts only (a classifier's million answers are a handful of texts)
    texts = dict.fromkeys(t for c in ("prediction", "shadow_prediction") if c in frame
                          for t in frame[c].dropna().unique())
    return ClassDomain(list(dict.fromkeys(_scalar(t) for t in texts)))


def request_loss(frame: pd.DataFrame, metric: str) -> pd.Series:
    """Per-request loss (lower is better) of labelled rows; NaN where there is no label, or a
    label that is not a value of the target (counted by :func:`invalid_labels`).

    Predictions and labels are compared in one label domain (:mod:`serving.labels`): a label
    ``0.0``, ``"0"`` or ``false`` is class ``0``, ``"YES"`` is class 1 of a yes/no target, ``" Cat "``
    is ``"cat"``; labels were compared as text before, so ``"0.0"`` never equalled ``"0"``."""
    labels = _decoded(frame["label"])
    preds = _decoded(frame["prediction"])
    out = pd.Series(np.nan, index=frame.index)
    if metric in ("accuracy", "log_loss"):
        domain = prediction_domain(frame)
        label_keys = _distinct_map(labels, domain.key)
        has = label_keys.notna()
        if metric == "accuracy":
            pred_keys = _distinct_map(preds, domain.key)
            out[has] = (pred_keys[has] != label_keys[has]).astype(float)
            return out
        # the probability is of the positive class: the second of the model's sorted classes
        classes = sorted({*domain.classes, *labels[has]}, key=lambda c: (isinstance(c, str), c))
        keys = list(dict.fromkeys(domain.key(c) for c in classes))
        if len(keys) > 2:
            raise ValueError(f"log_loss compares binary labels with the positive-class probability; "
                             f"the labels and answers hold {len(keys)} classes: {keys}")
        positive = keys[-1]
        y = (label_keys[has] == positive).astype(float)
        p = frame.loc[has, "probability"].astype(float).clip(EPS, 1 - EPS)
        out[has] = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    elif metric == "mae":
        # numbers (the usual case: one distinct value per request) in one vectorised pass; text and
        # booleans one distinct value at a time through the label rules (booleans are refused)
        spelled = labels.map(lambda v: isinstance(v, str | bool))
        numbers = pd.to_numeric(labels.where(~spelled), errors="coerce").astype(object)
        numbers[spelled] = _distinct_map(labels[spelled], to_number)
        has = numbers.notna()
        out[has] = (pd.to_numeric(preds[has], errors="raise").astype(float) - numbers[has].astype(float)).abs()
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return out


def invalid_labels(frame: pd.DataFrame, loss: pd.Series) -> int:
    """Labelled requests whose label is not a value of the target (no loss computed for them)."""
    return int((frame["label"].notna() & loss.reindex(frame.index).isna()).sum()) if "label" in frame else 0


@dataclass
class VariantFigures:
    requests: int
    users: int
    labelled: int
    labelled_share: float
    metric: float | None          # mean loss (accuracy is reported as 1 - loss)
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    fallback_share: float
    median_label_delay_s: float | None
    errors: int = 0               # requests on which the variant's model raised
    error_rate: float = 0.0
    invalid_labels: int = 0       # feedback that is no value of the target: left out, counted here
    # the variant's own model's scoring time on the rows it answered (fallback rows left out);
    # None when the events predate the `model_ms` column
    model_p50_ms: float | None = None
    model_p95_ms: float | None = None


@dataclass
class Analysis:
    experiment: Experiment
    metric: str
    variants: dict[str, VariantFigures]
    srm: StatTest
    labels: StatTest
    comparison: Comparison | None
    always_valid_p: float | None
    required_per_variant: int | None
    looks: pd.DataFrame
    decision: Decision
    paired: StatTest | None = None  # both models on the same labelled requests (shadow scoring)
    effect: PlannedEffect | None = None  # the MDE and margin as configured and in loss units
    guardrails: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (A's, B's), as decided
    rules: DecisionRules | None = None   # what the decision applied (alpha, margins, minimum sample)
    basis: str = "split"                 # the decision's data: "split" (A's users vs B's) or "paired"
    computed_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def summary(self) -> dict[str, Any]:
        c = self.comparison
        return {"experiment_id": self.experiment.experiment_id, "metric": self.metric,
                "decision": self.decision.action, "reason": self.decision.reason,
                "blocked": self.decision.blocked, "srm_p": self.srm.p_value, "labels_p": self.labels.p_value,
                "difference": c.difference if c else None, "ci_low": c.ci_low if c else None,
                "ci_high": c.ci_high if c else None, "p_fixed": c.p_value if c else None,
                "always_valid_p": self.always_valid_p, "required_per_variant": self.required_per_variant,
                "mde": self.effect.configured if self.effect else None,
                "mde_unit": self.effect.unit if self.effect else None,
                "mde_loss_units": self.effect.mde if self.effect else None,
                "non_inferiority_margin_loss_units": self.effect.margin if self.effect else None,
                "paired_p": self.paired.p_value if self.paired else None,
                "pairs": self.paired.detail.get("pairs", self.paired.detail.get("discordant")) if self.paired else 0,
                **{f"{k}_{v}": getattr(f, k) for v, f in self.variants.items()
                   for k in ("requests", "users", "labelled", "metric", "latency_p95_ms", "model_p50_ms",
                             "model_p95_ms", "fallback_share",
                             "error_rate", "invalid_labels")}}


def _figures(frame: pd.DataFrame, loss: pd.Series) -> VariantFigures:
    labelled = int(loss.notna().sum())
    # tables written before the column existed have no `error`: no error was recorded then
    errors = int(frame["error"].notna().sum()) if "error" in frame else 0
    lat = frame["latency_ms"].dropna()
    own = frame.loc[frame["model_used"].isin(["prod", "staging"]), "model_ms"].dropna() \
        if "model_ms" in frame else pd.Series(dtype=float)
    delays = frame["label_delay_s"].dropna()
    return VariantFigures(
        requests=len(frame), users=int(frame["user_id"].nunique()), labelled=labelled,
        labelled_share=labelled / len(frame) if len(frame) else 0.0,
        metric=float(loss.mean()) if labelled else None,
        latency_p50_ms=float(lat.quantile(0.5)) if len(lat) else None,
        latency_p95_ms=float(lat.quantile(0.95)) if len(lat) else None,
        fallback_share=float((frame["model_used"] == "fallback").mean()) if len(frame) else 0.0,
        median_label_delay_s=float(delays.median()) if len(delays) else None,
        errors=errors, error_rate=errors / len(frame) if len(frame) else 0.0,
        invalid_labels=invalid_labels(frame, loss),
        model_p50_ms=float(own.quantile(0.5)) if len(own) else None,
        model_p95_ms=float(own.quantile(0.95)) if len(own) else None)


def paired_losses(events: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """A's and B's loss on each labelled request that both models scored (the served one and the
    other variant's in shadow), in time order."""
    if "shadow_prediction" not in events or events.empty:
        return np.empty(0), np.empty(0)
    both = events[events["shadow_prediction"].notna() & events["label"].notna()]
    if both.empty:
        return np.empty(0), np.empty(0)
    served = request_loss(both, metric)
    shadow = request_loss(both.assign(prediction=both["shadow_prediction"],
                                      probability=both["shadow_probability"]), metric)
    is_a = both["variant"] == A
    return served.where(is_a, shadow).to_numpy(), shadow.where(is_a, served).to_numpy()


def paired_comparison(events: pd.DataFrame, metric: str) -> StatTest | None:
    """McNemar (accuracy) or Wilcoxon (other losses) on labelled requests that both models scored:
    the served one and the other variant's in shadow. Far fewer samples than the split needs,
    since each request is its own control."""
    loss_a, loss_b = paired_losses(events, metric)
    if not len(loss_a):
        return None
    if metric == "accuracy":
        result = mcnemar_test(int(((loss_a == 0) & (loss_b == 1)).sum()), int(((loss_a == 1) & (loss_b == 0)).sum()))
        return StatTest(result.statistic, result.p_value, {**result.detail, "pairs": len(loss_a)})
    return paired_test(loss_a, loss_b)


def sequential_looks(loss_a: np.ndarray, loss_b: np.ndarray, every: int, tau: float, *,
                     paired: bool = False) -> pd.DataFrame:
    """The comparison after every ``every`` labelled requests per variant (time order), with the
    running-minimum always-valid p-value: what an analyst looking at each step would have seen.
    With ``paired``, ``loss_a[i]`` and ``loss_b[i]`` are the two models on the same request and
    each look is the paired comparison of the first k pairs.

    Vectorised over the looks with running sums, so a million labelled requests (20,000 looks) cost
    about as much as one pass; each row equals :func:`compare_means` (:func:`compare_paired`) on the
    first k requests of each variant (tested against it).
    """
    n = min(len(loss_a), len(loss_b))
    k = np.arange(every, n + 1, every)
    columns = ["n_per_variant", "metric_a", "metric_b", "sd_a", "sd_b", "difference", "ci_low", "ci_high",
               "p_fixed", "always_valid_p"]
    k = k[k >= 2]
    if not len(k):
        return pd.DataFrame(columns=columns)

    def running(loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(loss[:n], dtype=float)
        total, squares = np.cumsum(values)[k - 1], np.cumsum(values * values)[k - 1]
        mean = total / k
        var = np.clip((squares - total * mean) / (k - 1), 0.0, None)  # sample variance, >= 0 after rounding
        return mean, var

    mean_a, var_a = running(loss_a)
    mean_b, var_b = running(loss_b)
    diff = mean_b - mean_a
    if paired:
        _, var_d = running(np.asarray(loss_b[:n], dtype=float) - np.asarray(loss_a[:n], dtype=float))
        var = var_d / k
    else:
        var = var_a / k + var_b / k
    positive = var > 0
    safe = np.where(positive, var, 1.0)
    if paired:
        dof = (k - 1).astype(float)
    else:  # Welch-Satterthwaite
        denominator = np.where(positive, (var_a / k) ** 2 / (k - 1) + (var_b / k) ** 2 / (k - 1), 1.0)
        dof = np.where(denominator > 0, safe ** 2 / np.where(denominator > 0, denominator, 1.0), np.inf)
    half = np.where(positive, stats.t.ppf(0.975, dof) * np.sqrt(safe), 0.0)
    p_fixed = np.where(positive, 2 * stats.t.sf(np.abs(diff) / np.sqrt(safe), dof), np.where(diff == 0, 1.0, 0.0))
    msprt = msprt_p_values(diff, var, tau)
    return pd.DataFrame({"n_per_variant": k, "metric_a": mean_a, "metric_b": mean_b, "sd_a": np.sqrt(var_a),
                         "sd_b": np.sqrt(var_b), "difference": diff, "ci_low": diff - half, "ci_high": diff + half,
                         "p_fixed": p_fixed, "always_valid_p": np.minimum.accumulate(msprt)})


UNIT_TEXT = {"relative": "of A's mean loss", "standardised": "standard deviations of A's loss",
             "absolute": "in loss units"}


@dataclass(frozen=True)
class PlannedEffect:
    """The minimum detectable effect and the non-inferiority margin, as configured and in loss
    units (from A's observed loss: see :func:`assets.ab.stats.effect_in_loss_units`)."""

    configured: float
    unit: str
    mde: float                     # in loss units; 0 while undefined
    margin: float | None           # in loss units; None: no non-inferiority rule
    undefined: str | None = None   # why the effect has no value in loss units yet
    margin_text: str | None = None

    def describe(self) -> str:
        """E.g. ``10% of A's mean loss (0.0213 in loss units)``: the unit the report states."""
        return f"{_in_unit(self.configured, self.unit)} ({self.mde:.4g} in loss units)"


def _in_unit(value: float, unit: str) -> str:
    if unit == "relative":
        return f"{value:.0%} {UNIT_TEXT[unit]}"
    return f"{value:g} {UNIT_TEXT[unit]}"


def planned_effect(loss_a: np.ndarray, cfg: ABConfig) -> PlannedEffect:
    """``ab.mde`` and ``ab.non_inferiority_margin`` in loss units, scaled by A's observed loss
    (``loss_a``: A's per-request losses, on the pairs for the paired basis). Re-estimated at
    every analysis: the scale is A's, never B's, so it does not move with the effect tested."""
    mean = float(np.mean(loss_a)) if len(loss_a) else 0.0
    sd = float(np.std(loss_a, ddof=1)) if len(loss_a) >= 2 else 0.0
    mde = effect_in_loss_units(cfg.mde, cfg.mde_unit, mean_loss_a=mean, sd_loss_a=sd)
    margin = None if cfg.non_inferiority_margin is None else effect_in_loss_units(
        cfg.non_inferiority_margin, cfg.mde_unit, mean_loss_a=mean, sd_loss_a=sd)
    undefined = None
    if mde <= 0:
        basis = "mean" if cfg.mde_unit == "relative" else "spread"
        undefined = (f"the minimum detectable effect ({_in_unit(cfg.mde, cfg.mde_unit)}) is 0 in loss units: "
                     f"A's loss has {basis} 0 over {len(loss_a)} labelled requests; waiting for more labels "
                     f"(or set ab.mde_unit: absolute)")
    margin_text = None if margin is None else (
        f"{_in_unit(cfg.non_inferiority_margin, cfg.mde_unit)} ({margin:.4g} in loss units)")
    return PlannedEffect(cfg.mde, cfg.mde_unit, mde, margin, undefined, margin_text)


@dataclass(frozen=True)
class Evidence:
    """What the losses say, before the health checks and guardrails: the comparison, the planned
    effect, the required sample, the looks and their always-valid p-value, the decision rules."""

    comparison: Comparison | None
    effect: PlannedEffect
    required: int | None
    looks: pd.DataFrame
    always_valid_p: float | None
    rules: DecisionRules


def weigh(loss_a: np.ndarray, loss_b: np.ndarray, cfg: ABConfig, *, paired: bool = False) -> Evidence:
    """The evidence of A's and B's per-request losses (time order; with ``paired``, both models on
    the same requests), by the same rules for every metric and target scale: the MDE in loss units
    from A's observed loss (:func:`planned_effect`), the sample size from the observed variance
    (of the differences on pairs), the mSPRT with the MDE as the mixture's spread."""
    compare = compare_paired if paired else compare_means
    spread = (loss_b - loss_a) if paired and len(loss_a) else loss_a
    comparison = compare(loss_a, loss_b) if min(len(loss_a), len(loss_b)) >= 2 else None
    effect = planned_effect(loss_a, cfg)
    required = None
    if effect.mde > 0 and len(spread) >= 2 and spread.std(ddof=1) > 0:
        required = max(cfg.min_samples, required_sample_size(effect.mde, float(spread.std(ddof=1)), cfg.alpha,
                                                             cfg.power, paired=paired))
    # the mixture's spread is the MDE in loss units; a positive placeholder while it is undefined
    # (no look is decided then: `undefined_effect` holds the decision at `continue`)
    tau = effect.mde if effect.mde > 0 else 1.0
    looks = sequential_looks(loss_a, loss_b, cfg.look_every, tau, paired=paired)
    always_valid = float(looks["always_valid_p"].iloc[-1]) if len(looks) else None
    rules = DecisionRules(alpha=cfg.alpha, srm_alpha=cfg.srm_alpha, label_alpha=cfg.label_alpha, tau=tau,
                          min_samples=required or cfg.min_samples, non_inferiority_margin=effect.margin,
                          latency_p95_ratio=cfg.latency_p95_ratio, fallback_share_margin=cfg.fallback_share_margin,
                          error_rate_margin=cfg.error_rate_margin,
                          undefined_effect=effect.undefined if comparison is not None else None,
                          margin_text=effect.margin_text)
    return Evidence(comparison, effect, required, looks, always_valid, rules)


def analyse(events: pd.DataFrame, experiment: Experiment, task: str, cfg: ABConfig) -> Analysis:
    """The analysis of one experiment's labelled request log (see :func:`labelled_events`)."""
    metric = metric_of(task, cfg)
    events = events[events["variant"].isin([A, B])]
    loss = request_loss(events, metric) if len(events) else pd.Series(dtype=float)
    by = {v: events[events["variant"] == v] for v in (A, B)}
    figures = {v: _figures(by[v], loss[by[v].index]) for v in (A, B)}
    srm = srm_test(figures[A].users, figures[B].users, experiment.ab_split_b)
    labels = label_balance_test(figures[A].labelled, figures[A].requests, figures[B].labelled, figures[B].requests)
    paired = cfg.decision_basis == "paired"
    if paired:  # both models on the same requests
        loss_a, loss_b = paired_losses(events, metric)
    else:
        loss_a = loss[by[A].index].dropna().to_numpy()
        loss_b = loss[by[B].index].dropna().to_numpy()
    evidence = weigh(loss_a, loss_b, cfg, paired=paired)
    guardrails = {"fallback_share": (figures[A].fallback_share, figures[B].fallback_share),
                  "error_rate": (figures[A].error_rate, figures[B].error_rate)}
    # latency: each model's own scoring time when the events carry it; the request's time (both
    # variants' rows of a batch, shadow scoring, the log write) only for older events, said so
    if figures[A].model_p95_ms is not None and figures[B].model_p95_ms is not None:
        guardrails["model_p95_ms"] = (figures[A].model_p95_ms, figures[B].model_p95_ms)
    elif figures[A].latency_p95_ms is not None and figures[B].latency_p95_ms is not None:
        guardrails["latency_p95_ms"] = (figures[A].latency_p95_ms, figures[B].latency_p95_ms)
    decision = decide(evidence.comparison, evidence.always_valid_p, srm, labels, guardrails=guardrails,
                      rules=evidence.rules)
    return Analysis(experiment, metric, figures, srm, labels, evidence.comparison, evidence.always_valid_p,
                    evidence.required, evidence.looks, decision, paired_comparison(events, metric),
                    effect=evidence.effect, guardrails=guardrails, rules=evidence.rules,
                    basis="paired" if paired else "split")
