"""``-mode demo``: the whole loop on the configured data, told step by step on the console.

Reset, ingest the first batches, train prod, stream the rest with drift_sensor's rules deciding on
retraining, play users against the router, analyse the A/B experiment and apply its decision.
"""

from __future__ import annotations

import json
import shutil
import time

from cli.environment import Lakehouse
from cli.modes import start_router, write_summary
from cli.reports import print_new_staging, print_summary, print_training_summary, report_results
from cli.runner import BatchResult, analyse, apply, ingest_pending, run_retrain
from lake.paths import DataPaths

# 24,000 users in /predict_batch calls of 50: enough labelled requests for the power calculation
# at the default minimum detectable effect (about 8,700 per variant), in about a minute
DEMO_USERS = 24_000


def reset_data_root(paths: DataPaths) -> None:
    """Remove everything the pipeline wrote under the data root, except the Dagster instance
    (its run history stays visible in the UI)."""
    for folder in (paths.lake, paths.inbox, paths.archive, paths.quarantine, paths.artifacts, paths.reports,
                   paths.events, paths.stream_state.parent):
        shutil.rmtree(folder, ignore_errors=True)
    paths.ensure()


def run_demo(paths: DataPaths, batches: int | None, initial: int) -> int:
    """The loop on the default data: ingest the first batches, train prod, then stream the rest
    with a drift check per batch; a drifted batch starts the retraining drift_sensor would."""
    from assets.jobs import INGEST_JOB, RETRAIN_JOB
    from stream.emulator import StreamEmulator

    house = Lakehouse.current(paths)
    cfg = house.cfg
    started = time.perf_counter()
    print(f"[0/7] reset: fresh lake under {paths.root} (the Dagster run history is kept)", flush=True)
    reset_data_root(paths)
    emulator = StreamEmulator(cfg, paths)
    plan = emulator.plan[:batches] if batches else emulator.plan
    first = max(1, min(initial, len(plan) - 1))
    print(f"[1/7] stream: {cfg.dataset.name} -> {len(plan)} batches by {cfg.stream.batch_by} "
          f"({cfg.stream.batch_window if cfg.stream.batch_by == 'time' else cfg.stream.batch_rows}); "
          f"the first {first} now, the others after the first model", flush=True)
    for _ in range(first):
        emulator.emit_next()
    print(f"[2/7] ingest: {first} files in {paths.inbox}, one {INGEST_JOB} run each", flush=True)
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
    print(f"[5/7] router: gunicorn on http://{cfg.router.host}:{cfg.router.port} ({cfg.router.workers} workers), "
          f"{DEMO_USERS:,} users of the latest batch call /predict_batch, then /feedback with their true labels",
          flush=True)
    results.append(demo_router(house, users=DEMO_USERS, batch_size=50))
    write_summary(house)
    print(f"[7/7] done in {time.perf_counter() - started:.0f}s; aliases: {house.aliases()}; summary report: "
          f"{paths.reports / 'summary.html'}")
    return report_results(results)


def stream_with_drift(house: Lakehouse, emulator, count: int) -> list[BatchResult]:
    """Emit and ingest ``count`` batches; after each, apply drift_sensor's plan to its verdict and
    run what it would request (full retraining on drift, refresh when stable, cool-downs)."""
    from assets.drift.compute import stored_result
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


def demo_router(house: Lakehouse, users: int = 400, batch_size: int = 1) -> BatchResult:
    """Start the router, play ``users`` users of the latest full batch against it (predictions, then
    their true labels as feedback), stop it; then ingest the request log, analyse the experiment
    and apply a promote / rollback decision (promote_job), as ab_sensor would with auto-promotion."""
    from stream.traffic import simulate

    router = start_router(house)
    router.start()
    try:
        summary = simulate(house.cfg, house.paths, router.url, users=users, batch_size=batch_size)
    finally:
        router.stop()
    _print_traffic(summary)
    if not summary["answered"] == summary["sent"] == users:
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
        print("  nothing applied: the experiment keeps running (more traffic, or `run.py -mode promote "
              "--reason ...` to decide by hand)")
    return BatchResult("ab_analysis", True)


def _print_traffic(summary: dict) -> None:
    """The experiment the users met and how the router answered them."""
    experiment = summary["experiment"]
    print(f"  experiment {experiment['experiment_id'] if experiment else '(none: no staging model)'}: "
          f"A = prod v{summary['prod_version']}"
          + (f", B = staging v{summary['staging_version']}, {experiment['ab_split_b']:.0%} of users to B"
             if experiment else ""))
    print(f"  {summary['answered']}/{summary['sent']} answered, variants {summary['variants']}, models "
          f"{summary['model_used']}, p50 {summary['p50_ms']:.0f} ms, p99 {summary['p99_ms']:.0f} ms, "
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
