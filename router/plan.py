"""What the router does with rows to predict, without Flask: assign each row its variant, validate
it against the model that will serve it, score it (with the fallback model when the assigned one
fails), score a shadow share with the other variant, and write each row's event to the request log
before anything is answered.

The views of :mod:`router.views` parse the HTTP body and call :func:`predict`; the benchmarks time
:func:`plan_rows`, :func:`score_planned` and :func:`predict` directly. Bad rows raise
:class:`~router.validation.RequestInvalid` naming every bad field.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from config.schema import RouterConfig
from lake.request_log import answer_of, prediction_event, shadow_event
from router import metrics
from router.event_log import EventLog
from router.model_pool import ModelPool, PoolState
from router.schemas import PredictRequest
from router.split import B, assign
from router.validation import Checked, Problem, RequestInvalid, check_features, expected_fields
from serving.labels import LabelInvalid, to_class, to_number
from serving.model_io import class_labels
from serving.request_features import columns_of_values
from serving.scoring import ServedModel, picked_probability, score_rows

log = logging.getLogger(__name__)

Score = tuple[Any, float | None]  # (prediction, probability of the predicted class or None)


def _ms_since(began: float) -> float:
    return round(1000 * (time.perf_counter() - began), 3)


def json_scalar(value: Any) -> Any:
    """numpy / pandas scalars -> plain JSON values."""
    if hasattr(value, "item"):
        value = value.item()
    return value


@dataclass
class Planned:
    """One row on its way: its variant, its checked features, the model that serves it and why."""

    row: PredictRequest
    checked: Checked
    variant: str
    served: ServedModel
    model_used: str  # prod / staging / fallback
    fallback_reason: str | None
    error: str | None = None  # the assigned model raised (see score_planned)
    # wall time of the scoring call that answered this row (typing, features, model; the rows one
    # model serves in a request share one call): the model's own latency, free of the request's
    # other work (the other variant's rows, shadow scoring, the log write)
    model_ms: float | None = None


class ModelFailed(RuntimeError):
    """The assigned model raised and no other model could answer: the rows are logged as errors
    (they count in the variant's error rate) and the request gets a 500 naming the model."""


def plan_rows(state: PoolState, rows: list[PredictRequest], router_cfg: RouterConfig,
              prefix: str = "") -> list[Planned]:
    """Variant, validation and model choice of every row; RequestInvalid names all bad fields.

    ``prefix`` is where the rows sit in the body (``rows.`` for /predict_batch), so a problem's
    field reads ``rows.3.features.temp``."""
    experiment = state.running
    planned, problems = [], []
    for i, row in enumerate(rows):
        variant = assign(experiment.experiment_id if experiment else None, row.user_id,
                         experiment.ab_split_b if experiment else 0.0)
        served = state.staging if variant == B and state.staging is not None else state.prod
        try:
            checked = check_features(row.features, served.schema, router_cfg,
                                     prefix=f"{prefix}{i}.features" if prefix else "features")
        except RequestInvalid as exc:
            problems += exc.problems
            continue
        reason = checked.fallback_reason(router_cfg, len(served.spec.numeric))
        # while prod's own model cannot be loaded, the alias standing in for it is named on every answer
        used = "staging" if served is not state.prod else state.prod_alias
        if reason and state.fallback is not None:
            served, used = state.fallback, "fallback"
        planned.append(Planned(row, checked, variant, served, used, reason if used == "fallback" else None))
    if problems:
        raise RequestInvalid(problems)
    return planned


def score_group(served: ServedModel, rows: list[Planned]) -> tuple[list[Score], list[str]]:
    """Predictions of rows that one model serves, and per row the model's exception on that row
    alone ('' where it answered). One model call when nothing fails; when the call raises, the
    failing rows are isolated (serving.scoring.predict_isolated), so only they carry an error.

    A model with a compiled scorer is fed straight from the validated values
    (serving.request_features: no DataFrame, no pandas typing); when that call raises, the rows
    go through the frame path below, which finds the rows the model fails on."""
    if served.scorer is not None:
        try:
            time_column = served.spec.time_column  # a shadow model may read another field than validation did
            times = [p.checked.when if p.checked.time_column == time_column else None for p in rows]
            pred, proba = served.scorer.predict(columns_of_values([p.checked.values for p in rows], served.spec,
                                                                  times))
        except Exception:  # logged, then the frame path scores and isolates the failing rows
            log.warning("compiled scoring of v%s failed on %d row(s); isolating on the frame path",
                        served.version, len(rows), exc_info=True)
        else:
            probability = picked_probability(pred, proba, served.scorer.classes) if proba is not None else None
            return [(json_scalar(pred[j]), None if probability is None else float(probability[j]))
                    for j in range(len(rows))], [""] * len(rows)
    frame = pd.DataFrame([{name: p.checked.values.get(name) for name in expected_fields(served.schema)}
                          for p in rows])
    scored = score_rows(frame, served)
    bad = scored.input_error != ""
    if bad.any():  # validation should have caught it: name the row and the reason
        raise RequestInvalid([Problem("features", str(e)) for e in scored.input_error[bad]])
    scores = [(json_scalar(scored.predict[j]), None if pd.isna(scored.probability[j])
               else float(scored.probability[j])) for j in range(len(rows))]
    return scores, scored.model_error.tolist()


def _score_counted(served: ServedModel, rows: list[Planned]) -> tuple[list[Score], list[str]]:
    """:func:`score_group`, with a failure outside the model call (building the frame, typing it)
    counted as the model's error on every row, as a raising model would be; RequestInvalid passes."""
    try:
        return score_group(served, rows)
    except RequestInvalid:
        raise
    except Exception as exc:  # recorded on every row and logged by the caller, never swallowed
        log.exception("scoring with v%s failed outside the model call on %d row(s)", served.version, len(rows))
        return [(None, None)] * len(rows), [f"{type(exc).__name__}: {exc}"[:500]] * len(rows)


def _by_model(planned: list[Planned], model_of) -> list[list[int]]:
    """Indices of ``planned`` grouped by the model ``model_of(p)`` (one model call per group)."""
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(planned):
        groups.setdefault(id(model_of(p)), []).append(i)
    return list(groups.values())


def score_planned(planned: list[Planned], fallback: ServedModel | None) -> list[Score]:
    """Predictions of the planned rows, scored per served model in one call each.

    A model that raises (a bug in its pipeline, a dependency missing for a new artifact, a value its
    pipeline cannot take) is an *error of its variant* on the rows it fails on: those rows, and only
    those (one poisoned row of a /predict_batch leaves the others on their assigned model), are
    answered by the fallback model when there is one (marked ``model_used=fallback``, ``error``
    set), and otherwise fail the request with :class:`ModelFailed`. Either way the error is logged
    and lands in `ab_events`, where the A/B guardrail on B's error rate reads it.
    """
    out: list[Score] = [(None, None)] * len(planned)
    for idx in _by_model(planned, lambda p: p.served):
        served = planned[idx[0]].served
        used = planned[idx[0]].model_used
        began = time.perf_counter()
        scores, errors = _score_counted(served, [planned[i] for i in idx])
        took = _ms_since(began)
        for i, score in zip(idx, scores, strict=True):
            out[i] = score
            planned[i].model_ms = took
        failed = [i for i, e in zip(idx, errors, strict=True) if e]
        if not failed:
            continue
        log.error("model %s v%s failed on %d of %d row(s): %s", used, served.version, len(failed), len(idx),
                  next(e for e in errors if e))
        for i, e in zip(idx, errors, strict=True):
            if e:
                p = planned[i]
                metrics.MODEL_ERRORS.labels(p.variant, p.model_used).inc()
                p.error = f"{used} v{served.version}: {e}"[:500]
        first = planned[failed[0]].error
        if fallback is None or served is fallback:
            raise ModelFailed(f"{first} ({len(failed)} of {len(idx)} row(s))")
        began = time.perf_counter()
        try:  # the rows were checked against the assigned model's schema, not the fallback's
            rescued, again = _score_counted(fallback, [planned[i] for i in failed])
        except RequestInvalid as exc:
            rescued, again = [], [str(exc)]
        if any(again):  # both failed on these rows: the request fails, the rows are logged
            log.error("fallback v%s failed too on %d row(s)", fallback.version, sum(1 for e in again if e))
            raise ModelFailed(f"{first}; fallback v{fallback.version}: {next(e for e in again if e)}")
        for i, score in zip(failed, rescued, strict=True):
            p = planned[i]
            p.served, p.model_used, p.fallback_reason = fallback, "fallback", "model error"
            p.model_ms = _ms_since(began)  # the model that answered it
            out[i] = score
    return out


def shadow_scores(state: PoolState, planned: list[Planned], share: float) -> dict[int, dict[str, Any]]:
    """For a sampled ``share`` of the rows answered by prod or staging, the other variant's answer
    (logged for the paired tests, never returned), keyed by the row's index."""
    if share <= 0 or state.staging is None:
        return {}

    def other(p: Planned) -> ServedModel:
        return state.staging if p.served is state.prod else state.prod

    picked = [i for i, p in enumerate(planned)
              if p.model_used != "fallback" and secrets.randbelow(10**6) < share * 10**6]
    out: dict[int, dict[str, Any]] = {}
    for group in _by_model([planned[i] for i in picked], other):
        idx = [picked[g] for g in group]
        model = other(planned[idx[0]])
        shadows = [Planned(planned[i].row, planned[i].checked, planned[i].variant, model, "shadow", None)
                   for i in idx]
        began = time.perf_counter()
        try:
            scores, errors = score_group(model, shadows)
        except Exception:  # e.g. the row does not fit the other model's schema: never answered, keep the request
            for i in idx:
                metrics.MODEL_ERRORS.labels(planned[i].variant, "shadow").inc()
            log.exception("shadow scoring by v%s failed; %d row(s) answered without a shadow", model.version,
                          len(idx))
            continue
        took = _ms_since(began)
        for i, (prediction, probability), error in zip(idx, scores, errors, strict=True):
            if error:  # the shadow is never answered: count it, keep the row
                metrics.MODEL_ERRORS.labels(planned[i].variant, "shadow").inc()
                continue
            out[i] = {"model_version": model.version, "prediction": prediction, "probability": probability,
                      "model_ms": took}
        if any(errors):
            log.error("shadow scoring by v%s failed on %d of %d row(s); those are answered without a shadow: %s",
                      model.version, sum(1 for e in errors if e), len(idx), next(e for e in errors if e))
    return out


def _event(p: Planned, state: PoolState, events: EventLog, started: float, score: Score, *, model_used: str,
           fallback_reason: str | None) -> dict[str, Any]:
    """The prediction event of one planned row (the latency counts from the request's start)."""
    prediction, probability = score
    experiment = state.running
    return prediction_event(
        request_id=uuid.uuid4().hex, variant=p.variant,
        experiment_id=experiment.experiment_id if experiment else None, model_version=p.served.version,
        model_used=model_used, fallback_reason=fallback_reason, prediction=prediction, probability=probability,
        latency_ms=_ms_since(started), model_ms=p.model_ms, user_id=p.row.user_id,
        features=p.row.features, worker=events.writer_id, error=p.error)


def log_failed(state: PoolState, planned: list[Planned], events: EventLog, started: float) -> None:
    """Log the rows of a request that failed on a model error (never answered, so no label will
    follow): they are the numerator of the variant's error rate."""
    for p in (p for p in planned if p.error):
        event = _event(p, state, events, started, (None, None), model_used="none", fallback_reason=None)
        try:
            events.append(event)
        except (OSError, ValueError):
            metrics.LOG_FAILURES.labels("error").inc()
            log.exception("request log write failed for the error event of %s", event["request_id"])


def _observe(planned: list[Planned], scores: list[Score]) -> None:
    """The prediction metrics of answered rows: one histogram child per (variant, model) and the
    counters incremented once per label set (a 50-row batch is a few metric writes, not 150)."""
    children: dict[tuple[str, str], Any] = {}
    classes: Counter = Counter()
    fallbacks: Counter = Counter()
    for p, (prediction, probability) in zip(planned, scores, strict=True):
        key = (p.variant, p.model_used)
        child = children.get(key)
        if child is None:
            child = children[key] = metrics.PREDICTIONS.labels(*key)
        child.observe(probability if probability is not None else float(prediction)
                      if isinstance(prediction, int | float) and not isinstance(prediction, bool) else 0.0)
        if p.served.spec.task == "classification":
            classes[(p.variant, str(prediction))] += 1
        if p.model_used == "fallback":
            fallbacks[p.variant] += 1
    for labels, n in classes.items():
        metrics.PREDICTED_CLASS.labels(*labels).inc(n)
    for variant, n in fallbacks.items():
        metrics.FALLBACKS.labels(variant).inc(n)


def log_shadows(state: PoolState, planned: list[Planned], request_ids: list[str], share: float,
                events: EventLog) -> int:
    """Score a sampled ``share`` of answered rows with the other variant (:func:`shadow_scores`)
    and log each as a shadow line of its request; returns the lines written. Runs after the
    answer was sent, so it never raises: a failure is counted and logged, the answers stand."""
    try:
        shadows = shadow_scores(state, planned, share)
        lines = [shadow_event(request_id=request_ids[i], worker=events.writer_id, **shadow)
                 for i, shadow in sorted(shadows.items())]
        events.append_many(lines)
        return len(lines)
    except Exception:  # after the answer: nobody to tell but the log and the metric
        metrics.LOG_FAILURES.labels("shadow").inc()
        log.exception("shadow scoring or logging failed for %d answered row(s); they stay unpaired", len(planned))
        return 0


def predict(pool: ModelPool, rows: list[PredictRequest], router_cfg: RouterConfig, events: EventLog,
            prefix: str = "", *, defer: Callable[[Callable[[], Any]], None] | None = None
            ) -> list[dict[str, Any]]:
    """The answers to ``rows``: planned, scored, each event in the request log (in the OS) before
    its answer exists, so a killed worker loses nothing it answered.

    Shadow scoring (the other variant on ``router.shadow_share`` of the rows) is off the request's
    path: it is handed to ``defer`` (the views pass the response's ``call_on_close``, so it runs
    after the answer was sent) and logged as shadow lines of the answered requests; without
    ``defer`` it runs here, after the answers were logged.

    Raises RequestInvalid: 503 with no model loaded or when the log cannot be written (nothing is
    answered then), 500 when no model could answer (the failed rows are logged), 422 on bad rows."""
    state = pool.state
    if state is None:
        raise RequestInvalid([Problem("model", pool.last_error or "no model loaded yet")], status=503)
    started = time.perf_counter()
    planned = plan_rows(state, rows, router_cfg, prefix)
    try:
        scores = score_planned(planned, state.fallback)
    except ModelFailed as exc:
        log_failed(state, planned, events, started)
        raise RequestInvalid([Problem("model", f"the model failed and no fallback could answer: {exc}")],
                             status=500) from exc
    lines = [_event(p, state, events, started, score, model_used=p.model_used, fallback_reason=p.fallback_reason)
               for p, score in zip(planned, scores, strict=True)]
    try:  # one write for the whole request: every row's event is in the kernel, or none is and nothing is answered
        events.append_many(lines)
    except (OSError, ValueError) as exc:
        metrics.LOG_FAILURES.labels("prediction").inc()
        log.exception("request log write failed; refusing to answer %d row(s) (first %s)", len(lines),
                      lines[0]["request_id"] if lines else "-")
        raise RequestInvalid([Problem("log", f"the request log could not be written ({exc}); nothing was "
                                             "answered, retry")], status=503) from exc
    answers = [answer_of(event) for event in lines]
    _observe(planned, scores)
    share = router_cfg.shadow_share
    if state.running and share > 0 and state.staging is not None:
        ids = [a["request_id"] for a in answers]

        def job() -> int:
            return log_shadows(state, planned, ids, share, events)
        if defer is None:
            job()
        else:
            defer(job)
    return answers


def label_problem(label: Any, state: PoolState) -> str | None:
    """Why ``label`` cannot be the true outcome for prod's task and the served models' classes,
    or None when it can.

    Any spelling that :mod:`serving.labels` maps to a class is accepted (``"YES"`` or ``True`` for
    class 1 of a yes/no target, ``"0.0"`` for class 0, ``" Cat "`` for ``"cat"``); the A/B analysis
    maps the stored label the same way. The classes are prod's and staging's: a class that appeared
    after prod was trained is known to staging, and refusing its labels would leave B's requests
    of that class unlabelled (and bias the experiment)."""
    try:
        if state.prod.spec.task == "regression":
            to_number(label)
            return None
        classes = [json_scalar(c) for c in class_labels(state.prod.model)]
        if getattr(state, "staging", None) is not None:
            classes += [c for c in map(json_scalar, class_labels(state.staging.model)) if c not in classes]
        to_class(label, classes)
    except LabelInvalid as exc:
        return str(exc) if state.prod.spec.task == "regression" else \
            f"{exc} (the model's classes, see GET /model_info)"
    return None
