"""``-mode demo``: the whole loop on the configured data, told step by step on the console.

Reset, ingest the first batches, train prod, stream the rest with drift_sensor's rules deciding on
retraining, play users against the router, analyse the A/B experiment and apply its decision.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass

from cli.environment import Lakehouse
from cli.modes import start_router, write_summary
from cli.reports import print_new_staging, print_summary, print_training_summary, report_results
from cli.runner import BatchResult, analyse, apply, ingest_pending, run_retrain
from config.schema import PipelineConfig
from lake.paths import DataPaths

# Rows per /predict_batch call of the demo's users (each row still its own request).
DEMO_CALL_ROWS = 50


@dataclass(frozen=True)
class DemoSizing:
    """How many users the demo's A/B stage asks the latest batches for, and why.

    ``required_per_variant``: the power calculation's labelled requests per variant (the analysis'
    own :func:`assets.ab.stats.required_sample_size`) with the per-request loss spread estimated from
    prod's hold-out; ``users``: the users that put that many labelled requests in the smaller arm
    (or in the shadow pairs); None when the spread cannot be known before traffic.
    """

    metric: str
    required_per_variant: int | None
    users: int | None
    basis: str

    def describe(self, drawn: int, available: int, batches: list[str]) -> str:
        """What the demo plays against what the test needs, in one sentence."""
        source = f"{drawn:,} users drawn from the latest {len(batches)} batch(es) ({available:,} rows)"
        if self.users is None:
            return f"{source}: every row they hold, since {self.basis}"
        if drawn >= self.users:
            return (f"{source}: the {self.users:,} the A/B test needs for {self.required_per_variant:,} labelled "
                    f"requests per variant ({self.basis})")
        return (f"{source}: FEWER than the {self.users:,} the A/B test needs for {self.required_per_variant:,} "
                f"labelled requests per variant ({self.basis}); the data holds no more, so `continue` is the "
                "expected decision")


def demo_sizing(holdout: dict[str, float], cfg: PipelineConfig) -> DemoSizing:
    """Users the A/B stage needs, from prod's hold-out metrics and the ``ab`` / ``router`` settings.

    The spread of the per-request loss is estimated from the hold-out: accuracy loss is 0/1 with
    sd sqrt(p (1 - p)); for absolute errors E[e] = MAE and E[e^2] = RMSE^2, so their sd is
    sqrt(RMSE^2 - MAE^2) exactly; log loss has no such identity (None: play every row). The
    labelled requests per variant then come from the analysis' power calculation (at least
    ``ab.min_samples``), and the users from the smaller arm's share (``router.default_split_b``)
    or, when the decision reads shadow pairs, from ``router.shadow_share``.
    """
    from assets.ab.analysis import metric_of
    from assets.ab.stats import effect_in_loss_units, required_sample_size

    ab, router = cfg.ab, cfg.router
    metric = metric_of(cfg.dataset.task, ab)
    sd, mean, basis = None, None, f"the spread of the per-request {metric} is unknown before traffic"
    if metric == "accuracy" and "Accuracy" in holdout:
        p = holdout["Accuracy"]
        sd, mean = math.sqrt(p * (1 - p)), 1 - p
        basis = f"loss sd {sd:.3f} from prod's hold-out accuracy {p:.3f}"
    elif metric == "mae" and {"MAE", "RMSE"} <= set(holdout):
        sd, mean = math.sqrt(max(holdout["RMSE"] ** 2 - holdout["MAE"] ** 2, 0.0)), holdout["MAE"]
        basis = f"absolute-error sd {sd:.4g} = sqrt(RMSE^2 - MAE^2) from prod's hold-out"
    paired = ab.decision_basis == "paired"
    if sd is None or sd == 0:
        if sd == 0:
            basis = "prod's hold-out loss has no spread (a perfect or constant model): no power calculation"
        return DemoSizing(metric, None, None, basis)
    # paired: the spread that matters is that of the differences; without traffic, sd * sqrt(2)
    # (uncorrelated losses) is its upper bound
    # the effect in loss units, as the analysis will convert it (ab.mde_unit), from prod's hold-out
    mde = effect_in_loss_units(ab.mde, ab.mde_unit, mean_loss_a=mean, sd_loss_a=sd)
    if mde <= 0:
        return DemoSizing(metric, None, None, f"{basis}; the minimum detectable effect is 0 in loss units")
    required = max(ab.min_samples, required_sample_size(mde, sd * math.sqrt(2) if paired else sd, ab.alpha,
                                                        ab.power, paired=paired))
    share = router.shadow_share if paired else min(router.default_split_b, 1 - router.default_split_b)
    if share <= 0:
        return DemoSizing(metric, required, None, f"{basis}; no user reaches B (router.default_split_b "
                          f"{router.default_split_b})")
    basis += f", mde {ab.mde} ({ab.mde_unit}; {mde:.4g} in loss units), alpha {ab.alpha}, power {ab.power}, " \
             f"{share:.0%} of users in the smaller " \
             + ("sample (shadow pairs)" if paired else "arm")
    return DemoSizing(metric, required, math.ceil(required / share), basis)


def reset_data_root(paths: DataPaths) -> None:
    """Remove everything the pipeline wrote under the data root, except the Dagster instance
    (its run history stays visible in the UI)."""
    for folder in (paths.lake, paths.inbox, paths.archive, paths.quarantine, paths.artifacts, paths.reports,
                   paths.events, paths.stream_state.parent):
        shutil.rmtree(folder, ignore_errors=True)
    paths.ensure()


def initial_batches(planned: int, asked: int | None = None) -> int:
    """Batches the demo ingests before the first model: ``asked``, or the first half of the stream
    (the model is then checked for drift on as many batches as it learned from); at least two,
    since a model needs one batch to train on and a later one to be judged on; at most all."""
    wanted = asked if asked is not None else planned // 2
    return max(1, min(max(2, wanted), planned))


def run_demo(paths: DataPaths, batches: int | None, initial: int | None = None) -> int:
    """The loop on the configured data: ingest the first batches, train prod, then stream the rest
    with a drift check per batch (a drifted batch starts the retraining drift_sensor would), then
    as many users as the latest batches hold against the router (sized by :func:`demo_sizing`)."""
    from assets.jobs import INGEST_JOB, RETRAIN_JOB
    from lake.batch_files import INBOX
    from stream.emulator import StreamEmulator

    house = Lakehouse.current(paths)
    cfg = house.cfg
    started = time.perf_counter()
    print(f"[0/7] reset: fresh lake under {paths.root} (the Dagster run history is kept)", flush=True)
    reset_data_root(paths)
    emulator = StreamEmulator(cfg, paths)
    plan = emulator.plan[:batches] if batches else emulator.plan
    first = initial_batches(len(plan), initial)
    print(f"[1/7] stream: {cfg.dataset.name} -> {len(plan)} batches by {cfg.stream.batch_by} "
          f"({cfg.stream.batch_window if cfg.stream.batch_by == 'time' else cfg.stream.batch_rows}); "
          f"the first {first} now, the others after the first model", flush=True)
    for _ in range(first):
        emulator.emit_next()
    print(f"[2/7] ingest: {first} files in {house.batch_files.location(INBOX)}, one {INGEST_JOB} run each",
          flush=True)
    results = ingest_pending(paths)
    print_summary(house)
    print(f"[3/7] train: {RETRAIN_JOB}, PyCaret AutoML over {cfg.training.models} "
          f"({len(cfg.training.variants)} preprocessing variant(s), budget {cfg.training.budget_time_minutes} min "
          f"each, sorted by {cfg.sort_metric})", flush=True)
    results.append(run_retrain(paths))
    print_training_summary(house)
    print(f"[4/7] drift: the other {len(plan) - first} batches arrive one by one; each is compared with the rows "
          f"prod was trained on, and drift_sensor's rules decide on retraining", flush=True)
    results += stream_with_drift(house, emulator, len(plan) - first)
    prod = house.registry.get(house.aliases()["prod"]) if "prod" in house.aliases() else None
    if prod is None:
        print("[5/7] router: skipped, no prod model (training did not register one): nothing to serve\n"
              "[6/7] A/B analysis: skipped, no experiment without a model", flush=True)
    else:
        sizing = demo_sizing(json.loads(prod["holdout_metrics"]), cfg)
        print(f"[5/7] router: gunicorn on http://{cfg.router.host}:{cfg.router.port} ({cfg.router.workers} "
              f"workers); users of the latest batches call /predict_batch, then /feedback with their true labels",
              flush=True)
        # unknown need: every batch prod was not trained on (the traffic it has not seen)
        skip = frozenset(json.loads(prod["training_batches"])) if sizing.users is None else frozenset()
        results.append(demo_router(house, sizing, skip=skip, batch_size=DEMO_CALL_ROWS))
    summary_location = write_summary(house)
    print(f"[7/7] done in {time.perf_counter() - started:.0f}s; aliases: {house.aliases()}; summary report: "
          f"{summary_location}")
    return report_results(results)


def stream_with_drift(house: Lakehouse, emulator, count: int) -> list[BatchResult]:
    """Emit and ingest ``count`` batches; after each, apply drift_sensor's plan to its verdict and
    run what it would request (full retraining on drift, refresh when stable, cool-downs)."""
    from assets.drift.compute import NOT_TESTED, stored_result
    from assets.jobs import RETRAIN_JOB
    from assets.training.data import judge_rows
    from sensors.drift import DriftCursor, DriftEvent, plan_drift_requests

    cfg, paths = house.cfg, house.paths
    cursor = DriftCursor()
    results: list[BatchResult] = []
    for i in range(count):
        batch = emulator.emit_next()
        if batch is None:
            break
        ingested = ingest_pending(paths)
        results += ingested
        drift = stored_result(house.lake, batch.batch_id, cfg.dataset.target)
        if drift is None or not all(r.success for r in ingested):
            print(f"  {batch.batch_id}: not compared (ingestion failed or no prod model)")
            continue
        v = drift.verdict
        if str(v["reason"]).startswith(NOT_TESTED):  # below drift.min_current_rows: no verdict to show
            print(f"  {batch.batch_id} {batch.rows:>7} rows  {v['reason']}", flush=True)
        else:
            flag = "DRIFTED" if v["drifted"] else "stable "
            print(f"  {batch.batch_id} {batch.rows:>7} rows  {flag} share {v['drifted_share']:.2f}  "
                  f"top: {', '.join(drift.top_features(4)) or '-'}", flush=True)
        # the sensor's own planning, fed the verdict as the event it would read from the instance
        event = DriftEvent(storage_id=i + 1, batch_id=batch.batch_id, timestamp=time.time(), compared=True,
                           drifted=bool(v["drifted"]), retrain_requested=bool(v["retrain_requested"]),
                           prod_version=drift.prod_version, drifted_share=float(v["drifted_share"]),
                           top_features=drift.top_features(), reason=str(v["reason"]),
                           batch_end=v["batch_end"], labelled_rows=v["labelled_rows"])
        planned, cursor, skipped = plan_drift_requests([event], cursor, cfg.drift, time.time(),
                                                       judge_rows(house.lake, cfg))
        for note in skipped:
            print(f"    drift_sensor: {note}")
        for request in planned:
            print(f"    drift_sensor -> {RETRAIN_JOB} ({request.mode}, run key {request.run_key}): {v['reason']}",
                  flush=True)
            results.append(run_retrain(paths, request.mode))
            print_new_staging(house)
    return results


def demo_router(house: Lakehouse, sizing: DemoSizing, *, skip: frozenset[str] = frozenset(),
                batch_size: int = 1) -> BatchResult:
    """Start the router, play the users ``sizing`` asks for (as many as the latest batches hold)
    against it (predictions, then their true labels as feedback), stop it; then ingest the request
    log, analyse the experiment and apply a promote / rollback decision (promote_job), as ab_sensor
    would with auto-promotion. Too little data ends in the analysis' `continue`, never a crash."""
    from stream.traffic import simulate

    router = start_router(house)
    router.start()
    try:
        summary = simulate(house.cfg, house.paths, router.url, users=sizing.users, batch_size=batch_size, skip=skip)
    finally:
        router.stop()
    print(f"  {sizing.describe(summary['users_drawn'], summary['pool_rows'], summary['pooled_batches'])}")
    _print_traffic(summary)
    if not summary["answered"] == summary["sent"] == summary["requests"]:
        return BatchResult("router", False, f"router: {summary}")
    print("[6/7] A/B analysis: ab_events (request log -> Delta) + ab_analysis (SRM, labels, mSPRT, decision)",
          flush=True)
    analysed = analyse(house.paths)
    if not analysed.success:
        return analysed.as_result(analysed.job)
    meta = analysed.metadata("ab_analysis")
    _print_analysis(house, analysed.metadata("ab_events"), meta)
    if meta["decision"] in ("promote", "rollback"):
        applied = apply(house.paths, meta["decision"], f"demo: {meta['reason']}")
        if not applied.success:
            return applied.as_result(applied.job)
        print(f"  {applied.job} applied {meta['decision']}: aliases {house.aliases()}")
    else:
        print(f"  nothing applied ({meta['decision']}: {meta['reason']}): the experiment keeps running (more "
              "traffic, or `run.py -mode promote --reason ...` to decide by hand)")
    return BatchResult("ab_analysis", True)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _print_traffic(summary: dict) -> None:
    """The experiment the users met and how the router answered them."""
    experiment = summary["experiment"]
    print(f"  experiment {experiment['experiment_id'] if experiment else '(none: no staging model)'}: "
          f"A = prod v{summary['prod_version']}"
          + (f", B = staging v{summary['staging_version']}, {experiment['ab_split_b']:.0%} of users to B"
             if experiment else ""))
    print(f"  {summary['answered']}/{summary['sent']} answered, variants {summary['variants']}, models "
          f"{summary['model_used']}, p50 {_ms(summary['p50_ms'])}, p99 {_ms(summary['p99_ms'])}, "
          f"errors {summary['errors'] or 'none'}; {summary['labels_sent']} labels sent to /feedback")
    if summary["example"]:
        print(f"  e.g. {json.dumps(summary['example'])}")


def _print_analysis(house: Lakehouse, events: dict, meta: dict) -> None:
    """What ab_events ingested and what ab_analysis measured and decided."""
    from assets.ab.analysis import metric_of

    cfg = house.cfg
    print(f"  ab_events: {events.get('predictions_inserted')} predictions, {events.get('feedback_inserted')} labels")
    if "metric_A" in meta:
        print(f"  loss ({metric_of(cfg.dataset.task, cfg.ab)}): "
              f"A {meta['metric_A']:.4f} ({meta['labelled_A']} labelled), B {meta['metric_B']:.4f} "
              f"({meta['labelled_B']} labelled); SRM p {meta['srm_p']:.3f}; decided on the "
              f"{cfg.ab.decision_basis}, required {meta.get('required_per_variant', 'n/a')} "
              f"{'labelled pairs' if cfg.ab.decision_basis == 'paired' else 'labelled requests per variant'}")
    if meta.get("pairs"):
        test = "McNemar" if metric_of(cfg.dataset.task, cfg.ab) == "accuracy" else "Wilcoxon"
        print(f"  paired (router.shadow_share {cfg.router.shadow_share:.0%}: both models on the same requests): "
              f"{meta['pairs']} labelled pairs, {test} p {meta['paired_p']:.3g}")
    print(f"  decision: {meta['decision'].upper()}: {meta['reason']}")
    print(f"  report: {meta.get('report', '(none)')}")
