"""Command line of the lakehouse (the seeds' course interface, extended).

    python run.py -mode update    emit the next stream batch into the inbox, ingest everything pending
                                  through ingest_job (in process), then train a first model or
                                  refresh prod as the policy says; prints True / False
    python run.py -mode stream    emit all remaining batches into the inbox (nothing ingested)
    python run.py -mode ingest    ingest every file waiting in the inbox; prints True / False
    python run.py -mode demo      restart the stream, ingest the first batches, train prod, then stream
                                  the rest with a drift check per batch (drift -> retraining -> staging)
    python run.py -mode dev       start `dagster dev` (webserver + daemon) on 127.0.0.1
    python run.py -mode inference -file PATH
                                  score a CSV/XLSX/Parquet file with the prod model; prints the path
                                  of a CSV with `predict` (and `probability`) and `error` columns
    python run.py -mode summary   HTML report of quality, metrics, hyperparameters, latency over
                                  batches and model versions; prints its path
    python run.py -mode analyse   ingest the router's request log and analyse the running A/B
                                  experiment (ab_analysis_job); prints the decision and the report path
    python run.py -mode promote --reason TEXT     staging -> prod now (promote_job), reason recorded
    python run.py -mode rollback --reason TEXT    stop the experiment: split 0, closed as rolled back
    python run.py -mode simulate [--users N --rate R --duration S --label-delay D --label-share F]
                                  play users from the latest batch against the running router
                                  (loopback), then post their true labels after the delay

``--config PATH`` (or LAKEHOUSE_CONFIG) selects the configuration, ``--data DIR`` (or
LAKEHOUSE_DATA) the data root; both are passed on to Dagster through the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from config import ConfigError, load_config
from config.loader import CONFIG_ENV
from lake.open import open_registry
from lake.paths import DATA_ENV, PROJECT_ROOT, DataPaths, data_paths

log = logging.getLogger("run")
DEMO_USERS = 24_000
QUIET_DAGSTER = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    success: bool
    failure: str = ""


def prepare_environment(config: str | None, data: str | None) -> DataPaths:
    """Export the config and data root for Dagster, and give it an instance home with our settings."""
    if config:
        os.environ[CONFIG_ENV] = str(Path(config).resolve())
    paths = data_paths(data).ensure()
    os.environ[DATA_ENV] = str(paths.root)
    os.environ["DAGSTER_HOME"] = str(paths.dagster_home)
    os.environ.setdefault("PYCARET_CUSTOM_LOGGING_PATH", str(paths.logs / "pycaret.log"))
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", paths.dagster_home / "dagster.yaml")
    return paths


def _failure_text(result) -> str:
    parts = []
    for event in result.all_events:
        if event.is_step_failure:
            err = event.step_failure_data.error
            while err is not None and err.cause is not None and "DagsterExecutionStepExecutionError" in err.cls_name:
                err = err.cause  # the user code's own error, not Dagster's wrapper
            message = f"{err.cls_name}: {err.message.strip()}" if err else "failed"
            parts.append(f"{event.step_key}: {message}")
    return "; ".join(parts) or "run failed before any step"


def ingest_pending(paths: DataPaths, quiet: bool = True) -> list[BatchResult]:
    """Run ingest_job in process for every batch file waiting in the inbox, oldest first."""
    from dagster import DagsterInstance

    from assets.jobs import INGEST_JOB
    from definitions import build_definitions
    from sensors.inbox import quarantine_invalid_names, scan_inbox

    defs = build_definitions(os.environ.get(CONFIG_ENV), str(paths.root))
    job = defs.resolve_job_def(INGEST_JOB)
    results = []
    from tqdm import tqdm

    with DagsterInstance.get() as instance:
        pending = quarantine_invalid_names(scan_inbox(paths.inbox), paths.quarantine)
        for f in tqdm(pending, desc="ingest_job", unit="batch", disable=not pending):
            instance.add_dynamic_partitions("batches", [f.batch_id])
            started = time.perf_counter()
            result = job.execute_in_process(partition_key=f.batch_id, instance=instance, raise_on_error=False,
                                            run_config=QUIET_DAGSTER if quiet else None,
                                            tags={"lakehouse/source_file": f.path.name, "lakehouse/trigger": "run.py"})
            outcome = BatchResult(f.batch_id, result.success, "" if result.success else _failure_text(result))
            log.info("%s %s in %.1fs%s", f.batch_id, "ingested" if outcome.success else "FAILED",
                     time.perf_counter() - started, f" ({outcome.failure})" if outcome.failure else "")
            results.append(outcome)
    return results


def report_results(results: list[BatchResult]) -> int:
    """Print True, or False and each failing step on stderr; return the exit code."""
    failed = [r for r in results if not r.success]
    for r in failed:
        print(f"failed: {r.batch_id}: {r.failure}", file=sys.stderr)
    print("False" if failed else "True")
    return 1 if failed else 0


def mode_update(paths: DataPaths) -> int:
    from assets.drift.compute import retrain_requests
    from assets.training.policy import training_action
    from lake.open import open_lake
    from lake.registry import ModelRegistry
    from stream.emulator import StreamEmulator

    cfg = load_config()
    emitted = StreamEmulator(cfg, paths).emit_next()
    if emitted is None:
        log.info("the stream is exhausted: no new batch; ingesting what is pending")
    results = ingest_pending(paths)
    lake = open_lake(cfg, paths)
    registry = ModelRegistry(lake, paths.artifacts)
    ingested = [r.batch_id for r in results if r.success]
    drifted = retrain_requests(lake, ingested, registry.aliases().get("prod"))
    action, why = training_action(lake, registry, cfg, drifted)
    log.info("models: %s (%s)", action or "no training", why)
    if action is not None:
        results.append(run_retrain(paths, action))
    return report_results(results)


@contextlib.contextmanager
def native_stdout_to(path: Path) -> Iterator[None]:
    """Send file descriptor 1 to ``path`` for the duration: LightGBM's C++ code prints its
    [Info] / [Warning] lines there during the search, which buried the demo's own output. The
    search's progress goes through Dagster's logger (stderr) and stays visible."""
    sys.stdout.flush()
    saved = os.dup(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def run_retrain(paths: DataPaths, mode: str = "full") -> BatchResult:
    """Run retrain_job in process (the job the drift sensor will launch) in the instance the UI shows."""
    from dagster import DagsterInstance

    from assets.jobs import RETRAIN_JOB
    from definitions import build_definitions

    defs = build_definitions(os.environ.get(CONFIG_ENV), str(paths.root))
    with DagsterInstance.get() as instance, native_stdout_to(paths.logs / "native_stdout.log"):
        result = defs.resolve_job_def(RETRAIN_JOB).execute_in_process(
            instance=instance, raise_on_error=False, tags={"lakehouse/trigger": "run.py", "lakehouse/mode": mode},
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}},  # the search's progress
                        "ops": {"candidate_models": {"config": {"mode": mode}}}})
    return BatchResult(f"retrain_job ({mode})", result.success, "" if result.success else _failure_text(result))


def reset_data_root(paths: DataPaths) -> None:
    """Remove everything the pipeline wrote under the data root, except the Dagster instance
    (its run history stays visible in the UI)."""
    for folder in (paths.lake, paths.inbox, paths.archive, paths.quarantine, paths.artifacts, paths.reports,
                   paths.events, paths.stream_state.parent):
        shutil.rmtree(folder, ignore_errors=True)
    paths.ensure()


def mode_demo(paths: DataPaths, batches: int | None, initial: int) -> int:
    """The loop on the default data: ingest the first batches, train prod, then stream the rest
    with a drift check per batch; a drifted batch starts the retraining drift_sensor would."""
    from stream.emulator import StreamEmulator

    cfg = load_config()
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
    print(f"[2/7] ingest: {first} files in {paths.inbox}, one ingest_job run each", flush=True)
    results = ingest_pending(paths)
    print_summary(cfg, paths)
    print(f"[3/7] train: retrain_job, PyCaret AutoML over {cfg.training.models} "
          f"({len(cfg.training.variants)} preprocessing variant(s), budget {cfg.training.budget_time_minutes} min "
          f"each, sorted by {cfg.sort_metric})", flush=True)
    results.append(run_retrain(paths))
    print_training_summary(cfg, paths)
    print(f"[4/7] drift: the other {len(plan) - first} batches arrive one by one; each is compared with the rows "
          f"prod was trained on, and drift_sensor's rules decide on retraining", flush=True)
    results += stream_with_drift(cfg, paths, emulator, len(plan) - first)
    print(f"[5/7] router: gunicorn on http://{cfg.router.host}:{cfg.router.port} ({cfg.router.workers} workers), "
          f"{DEMO_USERS:,} users of the latest batch call /predict_batch, then /feedback with their true labels",
          flush=True)
    # 24,000 users in /predict_batch calls of 50: enough labelled requests for the power calculation
    # at the default minimum detectable effect (about 8,700 per variant), in about a minute
    results.append(demo_router(cfg, paths, users=DEMO_USERS, batch_size=50))
    from assets.training.report import make_summary_report
    from lake.open import open_lake

    make_summary_report(open_lake(cfg, paths), paths.reports / "summary.html", dataset=cfg.dataset.name,
                        metric=cfg.sort_metric)
    print(f"[7/7] done in {time.perf_counter() - started:.0f}s; aliases: {_aliases(cfg, paths)}; summary report: "
          f"{paths.reports / 'summary.html'}")
    return report_results(results)


def demo_router(cfg, paths: DataPaths, users: int = 400, batch_size: int = 1) -> BatchResult:
    """Start the router, play ``users`` users of the latest full batch against it (predictions, then
    their true labels as feedback), stop it; then ingest the request log, analyse the experiment
    and apply a promote / rollback decision (promote_job), as ab_sensor would with auto-promotion."""
    from assets.ab.analysis import metric_of
    from stream.traffic import simulate

    router = start_router(cfg, paths)
    router.start()
    try:
        summary = simulate(cfg, paths, router.url, users=users, batch_size=batch_size)
    finally:
        router.stop()
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
    ok = summary["answered"] == summary["sent"] == users
    if not ok:
        return BatchResult("router", False, f"router: {summary}")
    print("[6/7] A/B analysis: ab_events (request log -> Delta) + ab_analysis (SRM, labels, mSPRT, decision)",
          flush=True)
    result = _run_job(paths, "ab_analysis_job")
    if not result.success:
        return BatchResult("ab_analysis_job", False, _failure_text(result))
    events = {k: getattr(v, "value", v) for m in result.asset_materializations_for_node("ab_events")
              for k, v in m.metadata.items()}
    meta = {k: getattr(v, "value", v) for m in result.asset_materializations_for_node("ab_analysis")
            for k, v in m.metadata.items()}
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
    if meta["decision"] in ("promote", "rollback"):
        applied = _run_job(paths, "promote_job", {"ops": {"apply_decision": {"config": {
            "action": meta["decision"], "reason": f"demo: {meta['reason']}"}}}})
        if not applied.success:
            return BatchResult("promote_job", False, _failure_text(applied))
        print(f"  promote_job applied {meta['decision']}: aliases {_aliases(cfg, paths)}")
    else:
        print("  nothing applied: the experiment keeps running (more traffic, or `run.py -mode promote "
              "--reason ...` to decide by hand)")
    return BatchResult("ab_analysis", True)


def _aliases(cfg, paths: DataPaths) -> dict[str, int]:

    return open_registry(cfg, paths).aliases()


def print_new_staging(cfg, paths: DataPaths) -> None:
    """The staging version a retraining registered, with the gate's comparison against prod."""

    registry = open_registry(cfg, paths)
    aliases = registry.aliases()
    if "staging" not in aliases:
        print(f"    no staging version (the candidate did not pass the gate); aliases {aliases}", flush=True)
        return
    row = registry.get(aliases["staging"])
    gate = json.loads(row["gate"])
    print(f"    staging v{row['version']}: {row['algorithm']} ({row['variant']}), trained on "
          f"{json.loads(row['training_batches'])[0]}..{json.loads(row['training_batches'])[-1]}; hold-out "
          f"{json.loads(row['holdout_batches'])}: {gate['metric']} {gate['candidate']:.4f} vs prod "
          f"{gate['prod']:.4f}; aliases {aliases}", flush=True)


def stream_with_drift(cfg, paths: DataPaths, emulator, count: int) -> list[BatchResult]:
    """Emit and ingest ``count`` batches; after each, apply drift_sensor's plan to its verdict and
    run what it would request (full retraining on drift, refresh when stable, cool-downs)."""
    from assets.drift.compute import stored_result
    from lake.open import open_lake
    from sensors.drift import DriftCursor, DriftEvent, plan_drift_requests

    lake = open_lake(cfg, paths)
    cursor = DriftCursor()
    results: list[BatchResult] = []
    for i in range(count):
        batch = emulator.emit_next()
        if batch is None:
            break
        ingested = ingest_pending(paths)
        results += ingested
        drift = stored_result(lake, batch.batch_id)
        if drift is None or not all(r.success for r in ingested):
            print(f"  {batch.batch_id}: not compared (ingestion failed or no prod model)")
            continue
        v = drift.verdict
        flag = "DRIFTED" if v["drifted"] else "stable "
        print(f"  {batch.batch_id} {batch.rows:>7} rows  {flag} share {v['drifted_share']:.2f}  "
              f"top: {', '.join(drift.top_features(4)) or '-'}", flush=True)
        event = DriftEvent(storage_id=i + 1, batch_id=batch.batch_id, timestamp=time.time(), compared=True,
                           drifted=bool(v["drifted"]), retrain_requested=bool(v["retrain_requested"]),
                           prod_version=drift.prod_version, drifted_share=float(v["drifted_share"]),
                           top_features=drift.top_features(), reason=str(v["reason"]))
        planned, cursor, skipped = plan_drift_requests([event], cursor, cfg.drift, time.time())
        for note in skipped:
            print(f"    drift_sensor: {note}")
        for run in planned:
            print(f"    drift_sensor -> retrain_job ({run.mode}, run key {run.run_key}): {v['reason']}", flush=True)
            results.append(run_retrain(paths, run.mode))
            print_new_staging(cfg, paths)
    return results


def print_training_summary(cfg, paths: DataPaths) -> None:
    """The latest leaderboard's top rows, the registered version, its hold-out metrics and the aliases."""

    from lake.open import open_lake
    from lake.registry import ModelRegistry
    from lake.tables import LEADERBOARD

    lake = open_lake(cfg, paths)
    if not lake.exists(LEADERBOARD):
        print("  no leaderboard: training did not run")
        return
    board = lake.read(LEADERBOARD)
    latest = board[board["trained_at"] == board["trained_at"].max()].sort_values("rank")
    shown = latest[["rank", "model_id", "model", "variant", "stage", "sort_value", "fit_seconds"]].head(8)
    print(f"  leaderboard (run {latest['run_id'].iloc[0][:8]}, CV {cfg.sort_metric}, time-series folds):")
    print("  " + shown.round(4).to_string(index=False).replace("\n", "\n  "))
    registry = ModelRegistry(lake, paths.artifacts)
    versions = registry.versions()
    if versions.empty:
        print("  no model registered (the candidate failed the gate)")
        return
    candidates = versions[versions["role"] == "candidate"]
    if candidates.empty:
        print("  no candidate registered (the AutoML winner failed the gate)")
        return
    row = candidates.sort_values("version").iloc[-1]
    holdout = {k: round(v, 4) for k, v in json.loads(row["holdout_metrics"]).items()}
    print(f"  registered version {row['version']}: {row['algorithm']} ({row['model_id']}, variant {row['variant']}), "
          f"trained on {row['training_rows']} rows of {len(json.loads(row['training_batches']))} batches")
    print(f"  hold-out {json.loads(row['holdout_batches'])}: {holdout}")
    print(f"  latency: {row['latency_single_ms']:.1f} ms per row, {row['latency_batch_ms']:.1f} ms per 1,000 rows; "
          f"artifact {row['artifact_bytes'] / 2**20:.1f} MiB, sha256 {row['sha256'][:12]}")
    fallback = versions[versions["role"] == "fallback"].sort_values("version")
    if len(fallback):
        fb = fallback.iloc[-1]
        print(f"  fallback version {fb['version']}: {fb['algorithm']}, hold-out "
              f"{ {k: round(v, 4) for k, v in json.loads(fb['holdout_metrics']).items()} }")
    print(f"  interpretation: {Path(row['artifact_path']).parent / 'interpretation'}")
    print(f"  summary report: {paths.reports / 'summary.html'} (also `run.py -mode summary`)")
    print(f"  aliases: {registry.aliases()}")


def batch_overview(cfg, paths: DataPaths):
    """One line per batch: rows kept by each table, time range, quality score, status."""
    import pandas as pd

    from lake.open import open_lake
    from lake.tables import BATCHES, CLEANED, FEATURES, QUALITY, QUALITY_BATCH_ROW

    lake = open_lake(cfg, paths)
    batches = lake.read(BATCHES, columns=["batch_id", "status", "reason_code", "row_count", "time_min", "time_max"],
                        missing_ok=True)
    if batches.empty:
        return batches
    quality = lake.read(QUALITY, columns=["batch_id", "column", "score"], missing_ok=True)
    scores = quality[quality["column"] == QUALITY_BATCH_ROW].set_index("batch_id")["score"]
    out = batches.set_index("batch_id").sort_index()
    out["quality"] = scores.reindex(out.index).round(3)
    out["cleaned"] = pd.Series(lake.rows_per_batch(CLEANED)).reindex(out.index)
    out["features"] = pd.Series(lake.rows_per_batch(FEATURES)).reindex(out.index)
    out["time range (UTC)"] = out["time_min"].dt.strftime("%Y-%m-%d %H:%M") + " .. " + \
        out["time_max"].dt.strftime("%Y-%m-%d %H:%M")
    out = out.rename(columns={"row_count": "raw"})
    return out[["status", "reason_code", "raw", "cleaned", "features", "quality", "time range (UTC)"]]


def print_summary(cfg, paths: DataPaths) -> None:
    from lake.open import open_lake
    from lake.tables import CLEANED, FEATURES, QUALITY, RAW, SCHEMA_CONTRACT

    lake = open_lake(cfg, paths)
    overview = batch_overview(cfg, paths)
    if not overview.empty:
        print("  " + overview.fillna("").to_string().replace("\n", "\n  "))
        print(f"  batches: {int((overview['status'] == 'ingested').sum())} ingested, "
              f"{int((overview['status'] != 'ingested').sum())} quarantined")
    for table in (RAW, CLEANED, FEATURES, QUALITY, "batches", SCHEMA_CONTRACT):
        if lake.exists(table):
            dt = lake.table(table)
            print(f"  table {table:<16} {dt.count():>8} rows  v{dt.version():<4} {lake.uri(table)}")
    print(f"  EDA report: {paths.reports / 'eda_report.html'}")
    print(f"  quarantine: {paths.quarantine}")
    print("  Dagster UI: `make dev`, then open http://127.0.0.1:3000 (the runs above are in its history)")


def mode_inference(paths: DataPaths, file: str | None) -> int:
    """Score a CSV/XLSX/Parquet file with the prod model; print the path of the predictions CSV."""
    from serving.scoring import ServedModel, score_frame
    from stream.sources import read_file

    if not file:
        print("-mode inference needs -file PATH", file=sys.stderr)
        return 1
    cfg = load_config()
    registry = open_registry(cfg, paths)
    aliases = registry.aliases()
    if "prod" not in aliases:
        print("no prod model in the registry yet: run `make demo` or retrain_job first", file=sys.stderr)
        return 1
    served = ServedModel.from_registry_row(registry.get(aliases["prod"]), registry.load(aliases["prod"]))
    source = Path(file)
    scored = score_frame(read_file(source, as_strings=True, encoding=cfg.ingest.encoding), served)
    out = paths.reports / f"{source.name.split('.')[0]}_predictions.csv"
    scored.to_csv(out, index=False)
    failed = int((scored["error"] != "").sum())
    log.info("scored %d rows with model version %d (%d row(s) with an error)", len(scored), served.version, failed)
    print(out)
    return 0


def mode_summary(paths: DataPaths) -> int:
    """Write the HTML summary over batches and model versions; print its path."""
    from assets.training.report import make_summary_report
    from lake.open import open_lake

    cfg = load_config()
    out = paths.reports / "summary.html"
    make_summary_report(open_lake(cfg, paths), out, dataset=cfg.dataset.name, metric=cfg.sort_metric)
    print(out)
    return 0


def _run_job(paths: DataPaths, name: str, run_config: dict | None = None, tags: dict | None = None):
    """Run a job of the code location in process, in the instance the UI shows."""
    from dagster import DagsterInstance

    from definitions import build_definitions

    defs = build_definitions(os.environ.get(CONFIG_ENV), str(paths.root))
    with DagsterInstance.get() as instance:
        return defs.resolve_job_def(name).execute_in_process(
            instance=instance, raise_on_error=False, run_config={**QUIET_DAGSTER, **(run_config or {})},
            tags={"lakehouse/trigger": "run.py", **(tags or {})})


def mode_analyse(paths: DataPaths) -> int:
    """ab_analysis_job in process; prints the decision, its reason and the report path."""
    result = _run_job(paths, "ab_analysis_job")
    if not result.success:
        print(f"False: {_failure_text(result)}", file=sys.stderr)
        return 1
    [mat] = [m for m in result.asset_materializations_for_node("ab_analysis")]
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    print(f"{meta['decision']}: {meta['reason']}")
    if "report" in meta:
        print(meta["report"])
    return 0


def mode_apply(paths: DataPaths, action: str, reason: str) -> int:
    """promote_job with an explicit action and reason (what the UI's Launchpad does)."""
    if not reason:
        print(f"-mode {action} needs --reason TEXT (it is recorded with the change)", file=sys.stderr)
        return 1
    result = _run_job(paths, "promote_job", {"ops": {"apply_decision": {"config": {"action": action,
                                                                                     "reason": reason}}}})
    if not result.success:
        print(f"False: {_failure_text(result)}", file=sys.stderr)
        return 1
    print(f"True: {action} applied; aliases {_aliases(load_config(), paths)}")
    return 0


def mode_simulate(args) -> int:
    """Users of the latest full batch against the running router, then their labels."""
    from stream.traffic import simulate

    cfg = load_config()
    paths = data_paths(args.data)
    url = args.url or f"http://{cfg.router.host}:{cfg.router.port}"
    summary = simulate(cfg, paths, url, users=args.users, rate=args.rate, duration=args.duration,
                       label_delay=args.label_delay, label_share=args.label_share, batch_size=args.batch_size)
    print(json.dumps(summary, indent=1, default=str))
    return 0 if summary["answered"] and not summary["errors"] else 1


def start_router(cfg, paths: DataPaths):
    """The router under gunicorn on ``router.host:port`` (its log in <data>/logs/router.log)."""
    from config import resolve_config_path
    from router.server import RouterProcess

    return RouterProcess(resolve_config_path(None), paths.root, cfg.router.port, paths.logs / "router.log",
                         token=os.environ.get(cfg.router.admin_token_env))


def mode_dev(paths: DataPaths) -> int:
    """`dagster dev` on loopback (webserver + daemon for the sensors) and the router under gunicorn
    beside it; Ctrl-C stops both."""
    import signal
    import subprocess

    cfg = load_config()
    # a SIGTERM (service manager, `timeout`) must still stop gunicorn in the finally below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    router = start_router(cfg, paths)
    print(f"starting the router: gunicorn on http://{cfg.router.host}:{cfg.router.port} "
          f"({cfg.router.workers} workers; log {router.log_path})", flush=True)
    router.start(ready=False)  # serves 503 on /predict until a prod model exists, then picks it up
    print(f"router up: http://{cfg.router.host}:{cfg.router.port}/docs", flush=True)
    dagster = Path(sys.executable).with_name("dagster")
    args = [str(dagster), "dev", "-h", "127.0.0.1", "-p", os.environ.get("DAGSTER_PORT", "3000"),
            "-w", str(PROJECT_ROOT / "workspace.yaml")]
    print(f"starting {' '.join(args)} (DAGSTER_HOME={paths.dagster_home})", flush=True)
    try:
        return subprocess.call(args, cwd=PROJECT_ROOT)
    except KeyboardInterrupt:
        return 130
    finally:
        router.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-mode", "--mode", required=True,
                        choices=["update", "stream", "ingest", "demo", "dev", "inference", "summary", "analyse",
                                 "promote", "rollback", "simulate"])
    parser.add_argument("-file", "--file", help="inference: the CSV / XLSX / Parquet file to score")
    parser.add_argument("-reason", "--reason", default="", help="promote / rollback: why (recorded)")
    parser.add_argument("--users", type=int, default=1000, help="simulate: users to play (one request each)")
    parser.add_argument("--rate", type=float, default=0.0, help="simulate: requests per second (0: as fast "
                        "as the router answers)")
    parser.add_argument("--duration", type=float, default=300.0, help="simulate: stop after this many seconds")
    parser.add_argument("--label-delay", type=float, default=0.0, help="simulate: seconds before the labels")
    parser.add_argument("--label-share", type=float, default=1.0, help="simulate: share of requests labelled")
    parser.add_argument("--batch-size", type=int, default=1, help="simulate: rows per /predict_batch call "
                        "(1: one /predict per user)")
    parser.add_argument("--url", default="", help="simulate: router URL (default: router.host:port)")
    parser.add_argument("-config", "--config",
                        help="configuration file (default: LAKEHOUSE_CONFIG or config/pipeline.yaml)")
    parser.add_argument("-data", "--data", help="data root (default: LAKEHOUSE_DATA or ./data)")
    parser.add_argument("-batches", "--batches", type=int, help="demo: only the first N batches")
    parser.add_argument("-initial-batches", "--initial-batches", type=int, default=4,
                        help="demo: batches ingested before the first model is trained (default 4)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # Dagster's SQLite migrations
    try:
        paths = prepare_environment(args.config, args.data)
        load_config()  # fail at once on a bad configuration, before any work
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        print("False")
        return 1
    if args.mode == "update":
        return mode_update(paths)
    if args.mode == "stream":
        from stream.emulator import StreamEmulator

        emitted = StreamEmulator(load_config(), paths).emit_all()
        print(f"emitted {len(emitted)} batch file(s) into {paths.inbox}")
        return 0
    if args.mode == "ingest":
        return report_results(ingest_pending(paths))
    if args.mode == "demo":
        return mode_demo(paths, args.batches, args.initial_batches)
    if args.mode == "inference":
        return mode_inference(paths, args.file)
    if args.mode == "summary":
        return mode_summary(paths)
    if args.mode == "analyse":
        return mode_analyse(paths)
    if args.mode in ("promote", "rollback"):
        return mode_apply(paths, args.mode, args.reason)
    if args.mode == "simulate":
        return mode_simulate(args)
    return mode_dev(paths)


if __name__ == "__main__":
    sys.exit(main())
