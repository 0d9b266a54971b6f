"""The modes of ``run.py`` other than the demo: each takes the prepared data root (and its
arguments), prints its answer and returns the exit code."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from cli.environment import Lakehouse
from cli.reports import report_results
from cli.runner import analyse, apply, ingest_pending, run_retrain
from lake.paths import PROJECT_ROOT, DataPaths

log = logging.getLogger("run")  # the console's lines keep the name they had before the cli package


def update(paths: DataPaths) -> int:
    """Emit the next stream batch, ingest everything pending, then train or refresh as the policy says."""
    from assets.drift.compute import retrain_requests
    from assets.training.policy import training_action
    from stream.emulator import StreamEmulator

    house = Lakehouse.current(paths)
    if StreamEmulator(house.cfg, paths).emit_next() is None:
        log.info("the stream is exhausted: no new batch; ingesting what is pending")
    results = ingest_pending(paths)
    ingested = [r.batch_id for r in results if r.success]
    drifted = retrain_requests(house.lake, ingested, house.aliases().get("prod"))
    action, why = training_action(house.lake, house.registry, house.cfg, drifted)
    log.info("models: %s (%s)", action or "no training", why)
    if action is not None:
        results.append(run_retrain(paths, action))
    return report_results(results)


def stream(paths: DataPaths) -> int:
    """Emit every remaining batch into the inbox (nothing ingested)."""
    from lake.batch_files import INBOX
    from stream.emulator import StreamEmulator

    house = Lakehouse.current(paths)
    emitted = StreamEmulator(house.cfg, paths).emit_all()
    print(f"emitted {len(emitted)} batch file(s) into {house.batch_files.location(INBOX)}")
    return 0


def ingest(paths: DataPaths) -> int:
    """Ingest every file waiting in the inbox; True / False."""
    return report_results(ingest_pending(paths))


def inference(paths: DataPaths, file: str | None) -> int:
    """Score a CSV/XLSX/Parquet file with the prod model; print the path of the predictions CSV.

    Row-level problems never stop it: a row whose values cannot be typed, or on which the model
    raises, gets its reason in ``error`` and the other rows are scored (serving.scoring.score_frame);
    the file is written either way, and the console says how many rows have an error of which kind."""
    from serving.scoring import MODEL_FAILED, ServedModel, score_frame
    from stream.sources import read_file

    if not file:
        print("-mode inference needs -file PATH", file=sys.stderr)
        return 1
    house = Lakehouse.current(paths)
    registry = house.registry
    aliases = registry.aliases()
    if "prod" not in aliases:
        print("no prod model in the registry yet: run `make demo` or retrain_job first", file=sys.stderr)
        return 1
    served = ServedModel.load(registry, aliases["prod"])  # its compiled scorer when it has one
    source = Path(file)
    scored = score_frame(read_file(source, as_strings=True, encoding=house.cfg.ingest.encoding), served)
    out = paths.reports / f"{source.name.split('.')[0]}_predictions.csv"
    scored.to_csv(out, index=False)
    failed = scored["error"] != ""
    model_failed = scored["error"].str.startswith(MODEL_FAILED.format(version=served.version))
    log.info("scored %d of %d rows with model version %d (%d row(s) with an input error, %d on which the model "
             "failed)", int((~failed).sum()), len(scored), served.version, int((failed & ~model_failed).sum()),
             int(model_failed.sum()))
    print(out)
    return 0


def write_summary(house: Lakehouse) -> str:
    """The HTML summary over batches and model versions, rendered into ``<data>/reports/`` and
    published to the storage root; returns where readers find it."""
    from assets.training.data import judge_rows
    from assets.training.report import make_summary_report
    from lake.report_files import SUMMARY_REPORT

    reports = house.report_files
    make_summary_report(house.lake, reports.render_path(SUMMARY_REPORT), dataset=house.cfg.dataset.name,
                        metric=house.cfg.sort_metric, registry=house.registry, target=house.cfg.dataset.target,
                        common_rows=judge_rows(house.lake, house.cfg))
    return reports.publish(SUMMARY_REPORT)


def summary(paths: DataPaths) -> int:
    """Write the HTML summary; print its path."""
    print(write_summary(Lakehouse.current(paths)))
    return 0


def analyse_experiment(paths: DataPaths) -> int:
    """ab_analysis_job in process; prints the decision, its reason and the report path."""
    run = analyse(paths)
    if not run.success:
        print(f"False: {run.failure}", file=sys.stderr)
        return 1
    [meta] = run.materializations("ab_analysis")
    print(f"{meta['decision']}: {meta['reason']}")
    if "report" in meta:
        print(meta["report"])
    return 0


def decide(paths: DataPaths, action: str, reason: str) -> int:
    """promote_job with an explicit action and reason (what the UI's Launchpad does)."""
    if not reason:
        print(f"-mode {action} needs --reason TEXT (it is recorded with the change)", file=sys.stderr)
        return 1
    run = apply(paths, action, reason)
    if not run.success:
        print(f"False: {run.failure}", file=sys.stderr)
        return 1
    print(f"True: {action} applied; aliases {Lakehouse.current(paths).aliases()}")
    return 0


def simulate(paths: DataPaths, args: argparse.Namespace) -> int:
    """Users of the latest full batch against the running router, then their labels."""
    from stream.traffic import simulate as play

    cfg = Lakehouse.current(paths).cfg
    url = args.url or f"http://{cfg.router.host}:{cfg.router.port}"
    result = play(cfg, paths, url, users=args.users, rate=args.rate, duration=args.duration,
                  label_delay=args.label_delay, label_share=args.label_share, batch_size=args.batch_size)
    print(json.dumps(result, indent=1, default=str))
    return 0 if result["answered"] and not result["errors"] else 1


def start_router(house: Lakehouse):
    """The router under gunicorn on ``router.host:port`` (its log in <data>/logs/router.log); not started."""
    from config import resolve_config_path
    from router.server import RouterProcess

    cfg, paths = house.cfg, house.paths
    return RouterProcess(resolve_config_path(None), paths.root, cfg.router.port, paths.logs / "router.log",
                         token=os.environ.get(cfg.router.admin_token_env))


def exporter(paths: DataPaths) -> int:
    """The lake exporter on ``exporter.host:exporter.port`` until SIGTERM / Ctrl-C (docs/operations.md)."""
    from exporter.server import serve

    serve(Lakehouse.current(paths).cfg, paths)
    return 0


def dev(paths: DataPaths) -> int:
    """`dagster dev` on loopback (webserver + daemon for the sensors) and the router under gunicorn
    beside it; Ctrl-C stops both."""
    import signal
    import subprocess

    house = Lakehouse.current(paths)
    cfg = house.cfg
    # a SIGTERM (service manager, `timeout`) must still stop gunicorn in the finally below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    router = start_router(house)
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
