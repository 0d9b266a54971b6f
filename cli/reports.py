"""The console's tables and lines: what a mode did (True / False), the batches and tables of the
lake, the latest training, a new staging version."""

from __future__ import annotations

import json
import sys

import pandas as pd

from cli.environment import Lakehouse
from cli.runner import BatchResult
from lake.delta import Lake


def report_results(results: list[BatchResult]) -> int:
    """Print True, or False and each failing step on stderr; return the exit code."""
    failed = [r for r in results if not r.success]
    for r in failed:
        print(f"failed: {r.batch_id}: {r.failure}", file=sys.stderr)
    print("False" if failed else "True")
    return 1 if failed else 0


def batch_overview(lake: Lake) -> pd.DataFrame:
    """One line per batch: rows kept by each table, time range, quality score, status."""
    from lake.tables import BATCHES, CLEANED, FEATURES, QUALITY, QUALITY_BATCH_ROW

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


def print_summary(house: Lakehouse) -> None:
    """The batches, each table's size and version, and where the reports and the UI are."""
    from lake.batch_files import QUARANTINE
    from lake.report_files import EDA_REPORT
    from lake.tables import CLEANED, FEATURES, QUALITY, RAW, SCHEMA_CONTRACT

    lake = house.lake
    overview = batch_overview(lake)
    if not overview.empty:
        print("  " + overview.fillna("").to_string().replace("\n", "\n  "))
        counts = overview["status"].value_counts()
        print("  batches: " + ", ".join(f"{int(counts.get(s, 0))} {s}" for s in
                                        ("ingested", "ingesting", "blocked", "quarantined") if counts.get(s, 0))
              + ("  (ingesting: incomplete, the next ingest run completes them)" if counts.get("ingesting") else ""))
    for table in (RAW, CLEANED, FEATURES, QUALITY, "batches", SCHEMA_CONTRACT):
        if lake.exists(table):
            dt = lake.table(table)
            print(f"  table {table:<16} {dt.count():>8} rows  v{dt.version():<4} {lake.uri(table)}")
    print(f"  EDA report: {house.report_files.location(EDA_REPORT)}")
    print(f"  quarantine: {house.batch_files.location(QUARANTINE)}")
    print("  Dagster UI: `make dev`, then open http://127.0.0.1:3000 (the runs above are in its history)")


def print_training_summary(house: Lakehouse) -> None:
    """The latest leaderboard's top rows, the registered version, its hold-out metrics and the aliases."""
    from lake.report_files import SUMMARY_REPORT
    from lake.tables import LEADERBOARD

    cfg, lake = house.cfg, house.lake
    if not lake.exists(LEADERBOARD):
        print("  no leaderboard: training did not run")
        return
    board = lake.read(LEADERBOARD)
    latest = board[board["trained_at"] == board["trained_at"].max()].sort_values("rank")
    shown = latest[["rank", "model_id", "model", "variant", "stage", "sort_value", "fit_seconds"]].head(8)
    print(f"  leaderboard (run {latest['run_id'].iloc[0][:8]}, CV {cfg.sort_metric}, time-series folds):")
    print("  " + shown.round(4).to_string(index=False).replace("\n", "\n  "))
    versions = house.registry.versions()
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
    versus = json.loads(row["gate"]).get("fallback") if isinstance(row["gate"], str) else None
    if versus:
        from assets.training.evaluation import fallback_note

        print(f"  fallback vs candidate: {fallback_note(versus)}")
    print(f"  latency: {row['latency_single_ms']:.1f} ms per row, {row['latency_batch_ms']:.1f} ms per 1,000 rows; "
          f"artifact {row['artifact_bytes'] / 2**20:.1f} MiB, sha256 {row['sha256'][:12]}")
    fallback = versions[versions["role"] == "fallback"].sort_values("version")
    if len(fallback):
        fb = fallback.iloc[-1]
        print(f"  fallback version {fb['version']}: {fb['algorithm']}, hold-out "
              f"{ {k: round(v, 4) for k, v in json.loads(fb['holdout_metrics']).items()} }")
    print(f"  interpretation: {house.registry.version_folder(row) / 'interpretation'}")
    print(f"  summary report: {house.report_files.location(SUMMARY_REPORT)} (also `run.py -mode summary`)")
    print(f"  aliases: {house.aliases()}")


def print_new_staging(house: Lakehouse) -> None:
    """The staging version a retraining registered, with the gate's comparison against prod."""
    aliases = house.aliases()
    if "staging" not in aliases:
        print(f"    no staging version (the candidate did not pass the gate); aliases {aliases}", flush=True)
        return
    row = house.registry.get(aliases["staging"])
    gate = json.loads(row["gate"])
    print(f"    staging v{row['version']}: {row['algorithm']} ({row['variant']}), trained on "
          f"{json.loads(row['training_batches'])[0]}..{json.loads(row['training_batches'])[-1]}; hold-out "
          f"{json.loads(row['holdout_batches'])}: {gate['metric']} {gate['candidate']:.4f} vs prod "
          f"{gate['prod']:.4f}; aliases {aliases}", flush=True)
