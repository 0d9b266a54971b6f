"""Benchmark: the cost of the network path — the lake and the model files on a local S3-compatible
object store (SeaweedFS on 127.0.0.1, the server of the multi-machine tests) against a local folder,
same run, same data.

    python bench/object_store.py [--history 2] [--repeats 3]

Measured, each on both roots:
- ingesting one monthly batch of the default data (every Delta write of ingest_job: raw with its
  batch record, quality, cleaned, features), after ``--history`` batches already in the lake;
- the physical floor of that: writing the batch's raw rows once as one Parquet file (local write,
  or one PUT through pyarrow's S3 client), and one metadata round trip (HEAD) to the store;
- what a router replica pays: reading the aliases (its poll) and loading a registered model on a
  machine with an empty cache;
- the router's throughput and p99 at concurrency 8 (bench/router.py's load, the same bodies),
  one replica on a local data root and one whose storage root is the object store (a copy of the
  same lake and models: the registry's paths are relative): its pollers read the store and its
  closed request-log segments ship there while it serves. Floor: bench/floor_app.py, the prod
  model's compiled kernel alone behind gunicorn (the rows sent as its input matrix), same rounds.

Prints seconds and the ratios object store / local and object store / floor.

    python bench/object_store.py [--router-requests 200] [--rounds 2]   # --router-requests 0 skips the router
"""

from __future__ import annotations

import argparse
import io
import logging
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import joblib
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pyarrow import fs as pafs

from assets.ingest.batch import ingest_batch
from assets.ingest.steps import cleaning_step, features_step, quality_step
from bench.router import (
    CONCURRENCY,
    TOKEN,
    Result,
    _router_pids,
    bodies,
    ensure_lake,
    hammer,
    load_workload,
    say,
    wait_workers,
)
from bench.serving_peers import floor_body, floor_server, inputs_of
from config import load_config
from devservers.object_store import throwaway_object_store
from lake.files import FileRoot
from lake.open import open_batch_files, open_lake, open_registry
from lake.paths import data_paths
from router.server import RouterProcess, config_with_router, free_port
from serving.scoring import ServedModel
from stream.emulator import order_by_time, plan_batches, write_batch_file
from stream.sources import load_source


def _median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _ingest(cfg, paths, lake, rows, batch_id: str) -> None:
    """An upstream's drop into the configured inbox (the bucket's on the object store), then the
    per-batch steps: the network path is in both the delivery and the ingestion."""
    files = open_batch_files(cfg, paths)
    with tempfile.TemporaryDirectory(dir=paths.root) as tmp:
        files.put(write_batch_file(rows, Path(tmp), batch_id, "parquet"))
    ingest_batch(batch_id, cfg, files, lake)
    quality_step(lake, cfg, batch_id)
    cleaning_step(lake, cfg, batch_id)
    features_step(lake, cfg, batch_id)


def measure(cfg, root: Path, rows, history, repeats: int) -> dict[str, float]:
    """Every figure for one configuration (its storage section decides local or object store)."""
    paths = data_paths(root).ensure()
    lake = open_lake(cfg, paths)
    for i, hist in enumerate(history):
        _ingest(cfg, paths, lake, hist, f"h{i:03d}")
    counter = iter(range(10_000))
    ingest = _median(lambda: _ingest(cfg, paths, lake, rows, f"new{next(counter):03d}"), repeats)

    registry = open_registry(cfg, paths)
    work = registry.files.cache_dir / "bench-model"
    work.mkdir(parents=True, exist_ok=True)
    joblib.dump({"weights": list(range(200_000))}, work / "model.joblib")  # ~2 MB, a small model
    version = registry.register(work / "model.joblib", {"algorithm": "bench", "task": "classification"})
    shutil.rmtree(work)
    aliases = _median(registry.aliases, repeats * 5)

    def cold_load() -> None:
        # another machine: on an object store a fresh data root (empty cache) over the same bucket;
        # a local root has no cache, so "cold" is a new registry over the same folder
        machine = root if registry.files.local else root / f"machine-{uuid.uuid4().hex[:8]}"
        open_registry(cfg, data_paths(machine)).load(version)

    load = _median(cold_load, repeats)
    return {"ingest": ingest, "aliases": aliases, "cold_load": load}


def floor(files: FileRoot, rows, repeats: int) -> dict[str, float]:
    """One Parquet file of the batch written once, and one HEAD, on this root."""
    table = pa.Table.from_pandas(rows, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = buffer.getvalue()
    if files.local:
        target = files.root / "floor.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        write = lambda: target.write_bytes(data)  # noqa: E731
        head = target.stat
    else:
        key = f"{files._base}/floor.parquet"

        def write() -> None:
            with files._fs.open_output_stream(key) as out:
                out.write(data)

        head = lambda: files._fs.get_file_info(key)  # noqa: E731
    return {"put": _median(write, repeats), "head": _median(head, repeats * 5), "mib": len(data) / 2**20}


def router_throughput(store, tmp: Path, per_thread: int, rounds: int) -> None:
    """Requests/s and p99 of a replica on a local root vs one on the object store, and the floor."""
    local_root = tmp / "router-local"
    config = ensure_lake(local_root)
    work = load_workload(config, local_root, 512, 0)
    registry = open_registry(load_config(str(config)), data_paths(local_root))
    served = ServedModel.load(registry, registry.aliases()["prod"])  # with its compiled scorer
    if served.scorer is None:
        raise SystemExit(f"prod is not compiled ({served.scoring}): no kernel floor to compare with")
    inputs = inputs_of(work, served)
    prefix = f"bench/router-{uuid.uuid4().hex[:8]}"
    files = FileRoot(store.uri(prefix), store.storage_options, cache_dir=tmp / "upload-cache")
    for folder in ("lake", "artifacts"):  # the data root restored into a bucket
        pafs.copy_files(str(local_root / folder), f"{files._base}/{folder}", source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=files._fs)
    servers = {}
    for name, root in (("local", local_root), ("store", tmp / "router-store")):
        port = free_port()
        cfg_path = config_with_router(config, port=port)
        if name == "store":
            data = yaml.safe_load(cfg_path.read_text())
            data["storage"] = {"root_uri": store.uri(prefix), "storage_options": store.storage_options}
            cfg_path = root.parent / "router-store.yaml"
            cfg_path.write_text(yaml.safe_dump(data, sort_keys=False))
            root.mkdir(parents=True, exist_ok=True)
        servers[name] = RouterProcess(cfg_path, root, port, tmp / f"router-{name}.log", token=TOKEN)
    floor_app = floor_server(config, local_root, work.split_workers, work.split_threads, tmp).start()
    totals = {name: Result(label, CONCURRENCY) for name, label in (
        ("floor", "floor: compiled kernel endpoint"), ("local", "router, local data root"),
        ("store", "router, root on the object store"))}
    try:
        for server in servers.values():
            server.start()
            wait_workers(lambda s=server: _router_pids(s.url), work.split_workers, 120, server.proc, server.log_path)
        for rnd in range(rounds):
            for name, url, body in (
                    ("floor", floor_app.ready_url.replace("/health", "/predict"), floor_body(inputs, 1)),
                    ("local", f"{servers['local'].url}/predict", bodies(work, f"local{rnd}")),
                    ("store", f"{servers['store'].url}/predict", bodies(work, f"store{rnd}"))):
                res = hammer(name, url, body, per_thread=per_thread, warmup=10,
                             max_seconds=60.0, tally=lambda b: [])
                say(f"round {rnd + 1}/{rounds}: {name}: {res.rate:.1f} req/s, p99 {res.pct(0.99):.1f} ms, "
                    f"errors {dict(res.errors) or 'none'}")
                totals[name].merge(res)
    finally:
        for server in servers.values():
            server.stop()
        floor_app.stop()
    shipped = len(FileRoot(store.uri(prefix), store.storage_options, cache_dir=tmp / "list-cache").list("events/inbox"))
    floor_, local, remote = totals["floor"], totals["local"], totals["store"]
    print(f"\n{'router at concurrency 8':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for r in (floor_, local, remote):
        print(f"{r.name:34} {r.rate:>9.1f} {r.pct(0.5):>8.2f} {r.pct(0.99):>8.2f}")
    print(f"object store / local: throughput {remote.rate / local.rate:.3f}, p99 "
          f"{remote.pct(0.99) / local.pct(0.99):.3f}; local / floor {local.rate / floor_.rate:.3f}, "
          f"object store / floor {remote.rate / floor_.rate:.3f}; request-log segments shipped to the store "
          f"while serving: {shipped}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--router-requests", type=int, default=200, help="measured requests per client thread "
                        "and round of the router comparison; 0 skips it (default 200)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the router comparison (default 2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = load_config()
    ordered = order_by_time(load_source(base.dataset), base.dataset.time_column)
    plan = plan_batches(ordered, base.stream)
    batches = [ordered.iloc[b.start: b.stop].drop(columns="_t") for b in plan[: args.history + 1]]
    history, rows = batches[:-1], batches[-1]
    print(f"batch: {len(rows):,} rows (one month of the default data); {len(history)} batches of history; "
          f"medians of {args.repeats}")
    results: dict[str, dict[str, float]] = {}
    with throwaway_object_store() as store, tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        local_root = Path(tmp) / "local"
        results["local"] = measure(base, local_root, rows, history, args.repeats)
        results["local"].update(floor(FileRoot(local_root / "floor"), rows, args.repeats))
        s3_cfg = base.model_copy(update={"storage": base.storage.model_copy(update={
            "root_uri": store.uri(f"bench/{uuid.uuid4().hex}"), "storage_options": store.storage_options})})
        results["s3"] = measure(s3_cfg, Path(tmp) / "s3", rows, history, args.repeats)
        files = FileRoot(store.uri("bench/floor"), store.storage_options, cache_dir=Path(tmp) / "cache")
        results["s3"].update(floor(files, rows, args.repeats))
        if args.router_requests:
            router_throughput(store, Path(tmp), args.router_requests, args.rounds)
    local, s3 = results["local"], results["s3"]
    print(f"{'':34} {'local folder':>13} {'object store':>13} {'store/local':>12}")
    for name, label in (("ingest", "ingest one batch, all steps (s)"), ("put", "floor: one Parquet write (s)"),
                        ("head", "floor: one metadata call (s)"), ("aliases", "router poll: read aliases (s)"),
                        ("cold_load", "load a model, empty cache (s)")):
        print(f"{label:34} {local[name]:>13.4f} {s3[name]:>13.4f} {s3[name] / local[name]:>11.1f}x")
    print(f"batch as Parquet: {s3['mib']:.2f} MiB; ingest on the store = {s3['ingest'] / s3['put']:.0f}x one PUT "
          f"of it, {s3['ingest'] / s3['head']:.0f} metadata round trips; extra cost of the network path "
          f"{s3['ingest'] - local['ingest']:+.2f} s per batch")


if __name__ == "__main__":
    main()
