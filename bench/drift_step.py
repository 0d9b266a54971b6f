"""Benchmark: one drift comparison of a monthly batch with prod, cold against warm.

Needs a data root where `make demo` ran (a prod model and ingested batches). For the latest full
batch it times ``assets.drift.compute.compute_drift`` (read prod's training rows by time travel, the
statistics, prod's predictions on both sides, its metric on the labelled batch, the `drift` rows):

- baseline ("cold"): prod's cached reference predictions removed first, so the reference rows
  are scored again, as every drift step did before the cache;
- ours ("warm"): the same call with the cache in place (every later batch against that prod).

Both are timed with time.perf_counter in the same run, alternating, best of N repeats; "ratio" is
cold / warm. The comparison writes the batch's `drift` rows again (what a re-check does).

    python bench/drift_step.py [--data data] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.drift.compute import compute_drift
from config import load_config
from lake.open import open_lake
from lake.paths import data_paths
from lake.registry import ModelRegistry
from lake.tables import BATCHES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data root of a demo run (default: LAKEHOUSE_DATA or ./data)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg, paths = load_config(), data_paths(args.data)
    lake = open_lake(cfg, paths)
    registry = ModelRegistry(lake, paths.artifacts)
    aliases = registry.aliases()
    if "prod" not in aliases:
        raise SystemExit(f"no prod model under {paths.root}: run `make demo` (or -data <root>) first")
    prod = registry.get(aliases["prod"])
    batches = lake.read(BATCHES)
    batches = batches[batches["status"] == "ingested"].sort_values("batch_id")
    batch = batches[batches["row_count"] >= 1000].iloc[-1]
    folder = registry.version_folder(prod)
    print(f"prod v{prod['version']} {prod['algorithm']} ({prod['training_rows']} training rows), "
          f"batch {batch['batch_id']} ({batch['row_count']} rows)")
    cold, warm = [], []
    for _ in range(args.repeats):
        for cached in folder.glob("drift_reference_predictions-*.parquet"):
            cached.unlink()
        started = time.perf_counter()
        compute_drift(lake, registry, cfg, batch["batch_id"])
        cold.append(time.perf_counter() - started)
        started = time.perf_counter()
        compute_drift(lake, registry, cfg, batch["batch_id"])
        warm.append(time.perf_counter() - started)
    print(f"{'':>6} {'best s':>8} {'all s':>24}")
    print(f"{'cold':>6} {min(cold):8.2f} {', '.join(f'{t:.2f}' for t in cold):>24}")
    print(f"{'warm':>6} {min(warm):8.2f} {', '.join(f'{t:.2f}' for t in warm):>24}")
    print(f"ratio cold / warm: {min(cold) / min(warm):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
