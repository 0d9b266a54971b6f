"""Command line of the lakehouse (the seeds' course interface, extended).

    python run.py -mode update    emit the next stream batch into the inbox and ingest everything
                                  pending through ingest_job (in process); prints True / False
    python run.py -mode stream    emit all remaining batches into the inbox (nothing ingested)
    python run.py -mode ingest    ingest every file waiting in the inbox; prints True / False
    python run.py -mode demo      restart the stream, emit and ingest every batch, print a summary
    python run.py -mode dev       start `dagster dev` (webserver + daemon) on 127.0.0.1

``--config PATH`` (or LAKEHOUSE_CONFIG) selects the configuration, ``--data DIR`` (or
LAKEHOUSE_DATA) the data root; both are passed on to Dagster through the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from config import ConfigError, load_config
from config.loader import CONFIG_ENV
from lake.paths import DATA_ENV, PROJECT_ROOT, DataPaths, data_paths

log = logging.getLogger("run")
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

    from definitions import build_definitions
    from sensors.inbox import INGEST_JOB, quarantine_invalid_names, scan_inbox

    defs = build_definitions(os.environ.get(CONFIG_ENV), str(paths.root))
    job = defs.resolve_job_def(INGEST_JOB)
    results = []
    with DagsterInstance.get() as instance:
        for f in quarantine_invalid_names(scan_inbox(paths.inbox), paths.quarantine):
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
    from stream.emulator import StreamEmulator

    emitted = StreamEmulator(load_config(), paths).emit_next()
    if emitted is None:
        log.info("the stream is exhausted: no new batch; ingesting what is pending")
    return report_results(ingest_pending(paths))


def mode_demo(paths: DataPaths, batches: int | None) -> int:
    from stream.emulator import StreamEmulator

    cfg = load_config()
    started = time.perf_counter()
    emulator = StreamEmulator(cfg, paths)
    emulator.reset()
    plan = emulator.plan[:batches] if batches else emulator.plan
    print(f"[1/3] stream: {cfg.dataset.name} -> {len(plan)} batches by {cfg.stream.batch_by} "
          f"({cfg.stream.batch_window if cfg.stream.batch_by == 'time' else cfg.stream.batch_rows})", flush=True)
    for _ in plan:
        emulator.emit_next()
    print(f"[2/3] ingest: {len(plan)} files in {paths.inbox}, one ingest_job run each", flush=True)
    results = ingest_pending(paths)
    print(f"[3/3] summary ({time.perf_counter() - started:.0f}s)")
    print_summary(cfg, paths)
    code = report_results(results)
    return code


def batch_overview(cfg, paths: DataPaths):
    """One line per batch: rows kept by each table, time range, quality score, status."""
    import pandas as pd

    from assets.resources import lake_for
    from lake.tables import BATCHES, CLEANED, FEATURES, QUALITY, QUALITY_BATCH_ROW

    lake = lake_for(cfg, paths)
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
    from assets.resources import lake_for
    from lake.tables import CLEANED, FEATURES, QUALITY, RAW, SCHEMA_CONTRACT

    lake = lake_for(cfg, paths)
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


def mode_dev(paths: DataPaths) -> int:
    """Replace this process with `dagster dev` on loopback (webserver + daemon for the sensors)."""
    dagster = Path(sys.executable).with_name("dagster")
    args = [str(dagster), "dev", "-h", "127.0.0.1", "-p", os.environ.get("DAGSTER_PORT", "3000"),
            "-w", str(PROJECT_ROOT / "workspace.yaml")]
    print(f"starting {' '.join(args)} (DAGSTER_HOME={paths.dagster_home})", flush=True)
    os.chdir(PROJECT_ROOT)
    os.execv(args[0], args)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-mode", "--mode", required=True, choices=["update", "stream", "ingest", "demo", "dev"])
    parser.add_argument("-config", "--config",
                        help="configuration file (default: LAKEHOUSE_CONFIG or config/pipeline.yaml)")
    parser.add_argument("-data", "--data", help="data root (default: LAKEHOUSE_DATA or ./data)")
    parser.add_argument("-batches", "--batches", type=int, help="demo: only the first N batches")
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
        return mode_demo(paths, args.batches)
    return mode_dev(paths)


if __name__ == "__main__":
    sys.exit(main())
