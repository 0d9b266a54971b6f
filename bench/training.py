"""Benchmark: AutoML training time and memory by data size, and serving latency of the result.

For 10k, 50k and 200k of the most recent rows of the default dataset (features built by the
same functions as the pipeline), one training run with the default `training:` config
(models, variants, budget_time) is timed in a fresh process, which also reports its peak RSS.
The model trained on the smallest size is then timed predicting 1 row and 1,000 rows through
the registered artifact (the PyCaret pipeline) against the bare scikit-learn/LightGBM
estimator on pre-transformed input, measured in the same run.

    python bench/training.py [--sizes 10000,50000,200000]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HOLDOUT = 5000


def feature_rows():
    """The default dataset as `features` rows, typed, cleaned and built like the pipeline does."""
    from assets.ingest.cleaning import clean_batch
    from assets.ingest.contract import build_contract
    from assets.ingest.reader import conform_to_contract
    from config import load_config
    from features import FeatureSpec, build_features
    from stream.sources import load_source

    cfg = load_config()
    source = load_source(cfg.dataset)
    contract = build_contract(source, cfg)
    typed = conform_to_contract(source, contract, cfg).frame
    kept, _ = clean_batch(typed, contract, cfg)
    spec = FeatureSpec.from_contract(contract, cfg)
    frame = build_features(kept.assign(_batch_id="all"), spec).sort_values("event_time", kind="stable")
    return cfg, spec, frame.reset_index(drop=True)


def child(size: int, model_out: str | None) -> None:
    """One training run on `size` rows; prints a JSON line with seconds and peak RSS."""
    import joblib

    from assets.training.evaluation import evaluate
    from assets.training.search import run_search

    cfg, spec, frame = feature_rows()
    train = frame.iloc[-(size + HOLDOUT):-HOLDOUT]
    holdout = frame.iloc[-HOLDOUT:]
    started = time.perf_counter()
    search = run_search(train, spec, cfg, f"bench-{size}")
    seconds = time.perf_counter() - started
    metrics = evaluate(search.pipeline, holdout, spec)
    if model_out:
        joblib.dump(search.pipeline, model_out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"size": size, "seconds": seconds, "peak_rss_mb": peak, "model": search.model_id,
                      "variant": search.variant, "candidates": len(search.leaderboard),
                      cfg.sort_metric: metrics.get(cfg.sort_metric)}), flush=True)


def latency(model_path: str) -> None:
    import joblib

    from serving.model_io import model_frame

    _, spec, frame = feature_rows()
    model = joblib.load(model_path)
    x = model_frame(frame.iloc[-HOLDOUT:], spec, with_target=False).reset_index(drop=True)
    estimator, transformed = model.steps[-1][1], model[:-1].transform(x)

    def timed(fn, rows: int, repeats: int) -> float:
        samples = []
        for i in range(repeats):
            started = time.perf_counter()
            fn(i, rows)
            samples.append(time.perf_counter() - started)
        return 1000 * statistics.median(samples)

    pipe_1 = timed(lambda i, n: model.predict(x.iloc[i:i + n]), 1, 50)
    bare_1 = timed(lambda i, n: estimator.predict(transformed.iloc[i:i + n]), 1, 50)
    pipe_k = timed(lambda i, n: model.predict(x.iloc[i:i + n]), 1000, 5)
    bare_k = timed(lambda i, n: estimator.predict(transformed.iloc[i:i + n]), 1000, 5)
    print(f"\nserving latency of the 10k model ({type(estimator).__name__}), median ms:")
    print(f"{'':>28} {'1 row':>9} {'1,000 rows':>11}")
    print(f"{'registered PyCaret pipeline':>28} {pipe_1:>9.2f} {pipe_k:>11.2f}")
    print(f"{'bare estimator (baseline)':>28} {bare_1:>9.2f} {bare_k:>11.2f}")
    print(f"{'ratio pipeline / bare':>28} {pipe_1 / bare_1:>9.1f} {pipe_k / bare_k:>11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000,200000")
    parser.add_argument("--child", type=int)
    parser.add_argument("--model-out")
    parser.add_argument("--latency")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.child:
        return child(args.child, args.model_out)
    if args.latency:
        return latency(args.latency)
    sizes = [int(s) for s in args.sizes.split(",")]
    model_path = str(ROOT / "data" / "bench_model.joblib")
    (ROOT / "data").mkdir(exist_ok=True)
    print(f"{'rows':>8} {'seconds':>8} {'ratio':>6} {'peak RSS MiB':>13} {'candidates':>10} {'best':>22} metric")
    results = []
    for size in sizes:
        cmd = [sys.executable, __file__, "--child", str(size)]
        if size == sizes[0]:
            cmd += ["--model-out", model_path]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
        results.append(r)
        metric = next(k for k in r if k not in ("size", "seconds", "peak_rss_mb", "model", "variant", "candidates"))
        print(f"{size:>8} {r['seconds']:>8.1f} {r['seconds'] / results[0]['seconds']:>6.2f} {r['peak_rss_mb']:>13.0f} "
              f"{r['candidates']:>10} {r['model'] + '/' + r['variant']:>22} {metric}={r[metric]:.4f}", flush=True)
    subprocess.run([sys.executable, __file__, "--latency", model_path], check=True)


if __name__ == "__main__":
    main()
