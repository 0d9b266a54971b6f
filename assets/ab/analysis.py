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
                    "model_used", "fallback_reason", "prediction", "probability", "latency_ms", "shadow_version",
                    "shadow_prediction", "shadow_probability", "error"]


def labelled_events(lake: Lake, experiment_id: str) -> pd.DataFrame:
    """The experiment's answered requests with their label (the latest feedback per request) and
    the label delay in seconds; unlabelled requests have a null label."""
    if not lake.exists(AB_EVENTS):
        return pd.DataFrame()
    quoted = experiment_id.replace("'", "''")
    present = {f.name for f in lake.table(AB_EVENTS).schema().fields}  # `error` is newer than some tables
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
        events = events.assign(label=None, label_time=pd.NaT)
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


def request_loss(frame: pd.DataFrame, metric: str) -> pd.Series:
    """Per-request loss (lower is better) of labelled rows; NaN where there is no label."""
    labels = _decoded(frame["label"])
    preds = _decoded(frame["prediction"])
    has = labels.notna()
    out = pd.Series(np.nan, index=frame.index)
    if metric == "accuracy":
        out[has] = (preds[has].astype(str) != labels[has].astype(str)).astype(float)
    elif metric == "log_loss":
        y = pd.to_numeric(labels[has], errors="raise").astype(float)
        if not set(y.unique()) <= {0.0, 1.0}:
            raise ValueError("log_loss compares binary labels (0 / 1) with the positive-class probability")
        p = frame.loc[has, "probability"].astype(float).clip(EPS, 1 - EPS)
        out[has] = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    elif metric == "mae":
        out[has] = (pd.to_numeric(preds[has], errors="raise") - pd.to_numeric(labels[has], errors="raise")).abs()
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return out


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
    computed_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def summary(self) -> dict[str, Any]:
        c = self.comparison
        return {"experiment_id": self.experiment.experiment_id, "metric": self.metric,
                "decision": self.decision.action, "reason": self.decision.reason,
                "blocked": self.decision.blocked, "srm_p": self.srm.p_value, "labels_p": self.labels.p_value,
                "difference": c.difference if c else None, "ci_low": c.ci_low if c else None,
                "ci_high": c.ci_high if c else None, "p_fixed": c.p_value if c else None,
                "always_valid_p": self.always_valid_p, "required_per_variant": self.required_per_variant,
                "paired_p": self.paired.p_value if self.paired else None,
                "pairs": self.paired.detail.get("pairs", self.paired.detail.get("discordant")) if self.paired else 0,
                **{f"{k}_{v}": getattr(f, k) for v, f in self.variants.items()
                   for k in ("requests", "users", "labelled", "metric", "latency_p95_ms", "fallback_share",
                             "error_rate")}}


def _figures(frame: pd.DataFrame, loss: pd.Series) -> VariantFigures:
    labelled = int(loss.notna().sum())
    # tables written before the column existed have no `error`: no error was recorded then
    errors = int(frame["error"].notna().sum()) if "error" in frame else 0
    lat = frame["latency_ms"].dropna()
    delays = frame["label_delay_s"].dropna()
    return VariantFigures(
        requests=len(frame), users=int(frame["user_id"].nunique()), labelled=labelled,
        labelled_share=labelled / len(frame) if len(frame) else 0.0,
        metric=float(loss.mean()) if labelled else None,
        latency_p50_ms=float(lat.quantile(0.5)) if len(lat) else None,
        latency_p95_ms=float(lat.quantile(0.95)) if len(lat) else None,
        fallback_share=float((frame["model_used"] == "fallback").mean()) if len(frame) else 0.0,
        median_label_delay_s=float(delays.median()) if len(delays) else None,
        errors=errors, error_rate=errors / len(frame) if len(frame) else 0.0)


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
    if paired:  # both models on the same requests: the spread that matters is the differences'
        loss_a, loss_b = paired_losses(events, metric)
        compare, spread = compare_paired, (loss_b - loss_a) if len(loss_a) else loss_a
    else:
        loss_a = loss[by[A].index].dropna().to_numpy()
        loss_b = loss[by[B].index].dropna().to_numpy()
        compare, spread = compare_means, loss_a
    comparison = compare(loss_a, loss_b) if min(len(loss_a), len(loss_b)) >= 2 else None
    required = None
    if len(spread) >= 2 and spread.std(ddof=1) > 0:
        required = max(cfg.min_samples, required_sample_size(cfg.mde, float(spread.std(ddof=1)), cfg.alpha,
                                                             cfg.power, paired=paired))
    looks = sequential_looks(loss_a, loss_b, cfg.look_every, cfg.mde, paired=paired)
    always_valid = float(looks["always_valid_p"].iloc[-1]) if len(looks) else None
    rules = DecisionRules(alpha=cfg.alpha, srm_alpha=cfg.srm_alpha, label_alpha=cfg.label_alpha, tau=cfg.mde,
                          min_samples=required or cfg.min_samples,
                          non_inferiority_margin=cfg.non_inferiority_margin,
                          latency_p95_ratio=cfg.latency_p95_ratio, fallback_share_margin=cfg.fallback_share_margin,
                          error_rate_margin=cfg.error_rate_margin)
    guardrails = {"fallback_share": (figures[A].fallback_share, figures[B].fallback_share),
                  "error_rate": (figures[A].error_rate, figures[B].error_rate)}
    if figures[A].latency_p95_ms is not None and figures[B].latency_p95_ms is not None:
        guardrails["latency_p95_ms"] = (figures[A].latency_p95_ms, figures[B].latency_p95_ms)
    decision = decide(comparison, always_valid, srm, labels, guardrails=guardrails, rules=rules)
    return Analysis(experiment, metric, figures, srm, labels, comparison, always_valid, required, looks, decision,
                    paired_comparison(events, metric))
