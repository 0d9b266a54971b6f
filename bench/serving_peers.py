"""Benchmark: the router against its peers on the same model, rows and load, one run.

Three servers, each gunicorn with the router's ``router.workers`` processes, on 127.0.0.1:

- **floor**: bench/floor_app.py, a minimal Flask app that runs the prod model's compiled kernel
  (LightGBM's booster, the trees' predictor, a dot product) on rows already transformed into the
  model matrix: what a Python WSGI server can do with this model at all;
- **router**: router.wsgi:app with router/gunicorn_conf.py, prod and staging loaded, the A/B split
  at 0.5, the request log and metrics on (what users run), fed the raw rows;
- **mlflow**: ``mlflow models serve`` (``--env-manager local``) of the same registered PyCaret
  pipeline, fed the already-built features (``dataframe_split`` of the model frame). MLflow is
  installed in a throwaway environment this script makes (the project's lock plus MLflow, with
  uv; reused from ``--mlflow-env`` when it is there), never in the project's lock.

Slow clients: the router's single-row load again while ``--slow-clients`` (50) connections trickle
endless headers or bodies (bench/slow_clients.py); the p99 before and during is printed.

Loads (bench/router.py's load generator: 8 keep-alive client threads, a warm-up, then a number
of requests each, stopped at ``--max-seconds``): single rows, and ``/predict_batch`` of
``--batch`` rows (the floor and MLflow get the same rows as one body). The in-process floor (the
kernel on one matrix row, and per row of a ``--batch`` matrix) is measured too.

Targets (issue 13), printed with the ratios: router >= 0.5x the floor's throughput and >= 10x
MLflow's; router p50 <= 5 ms at concurrency 8; /predict_batch per-row cost <= 2x the bare
estimator's (router rows/s over the floor server's rows/s for the same batches >= 0.5).

The data root is bench/router.py's (a fresh lake of the default dataset with a fast training
override), built first or reused with ``--keep DIR``.

    python bench/serving_peers.py [--keep DIR] [--requests 400] [--max-seconds 20] [--no-mlflow]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import requests

from bench.router import (
    CONCURRENCY,
    TOKEN,
    Result,
    Workload,
    config_reload_seconds,
    ensure_lake,
    hammer,
    load_workload,
    say,
)
from bench.slow_clients import SlowClients
from router.server import RouterProcess, config_with_router, free_port

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_VERSION = "3.17.2"
TARGETS = {"floor": 0.5, "mlflow": 10.0, "p50_ms": 5.0, "batch_vs_floor": 0.5}


# ---- servers ---------------------------------------------------------------------------------
@dataclass
class Server:
    """A server process in its own session (a stop reaches every worker), logging to a file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> Server:
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited ({self.proc.returncode}):\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.ready_url, timeout=2).status_code == 200:
                    return self
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def floor_server(config: Path, root: Path, workers: int, threads: int, logs: Path) -> Server:
    port = free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    return Server("floor", [str(gunicorn), "-k", "gthread", "-w", str(workers), "--threads", str(threads),
                            "-b", f"127.0.0.1:{port}", "--timeout", "120", "bench.floor_app:create_app()"],
                  {**os.environ, "LAKEHOUSE_CONFIG": str(config), "LAKEHOUSE_DATA": str(root)},
                  f"http://127.0.0.1:{port}/health", logs / "floor.log")


def mlflow_env(folder: Path) -> Path:
    """The throwaway environment's Python: the project's lock (hash-checked) plus MLflow."""
    python = folder / "bin" / "python"
    marker = folder / f".mlflow-{MLFLOW_VERSION}"
    if marker.exists():
        return python
    uv = Path(sys.executable).with_name("uv")
    say(f"making a throwaway environment for MLflow {MLFLOW_VERSION} in {folder}")
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(folder)], check=True)
    subprocess.run([str(uv), "pip", "install", "-q", "--python", str(python), "--require-hashes",
                    "--build-constraints", str(ROOT / "build-constraints.txt"), "-r", str(ROOT / "requirements.lock")],
                   check=True)
    # MLflow resolves against what is there (it may move a few of its own pins in this env only)
    subprocess.run([str(uv), "pip", "install", "-q", "--python", str(python), f"mlflow=={MLFLOW_VERSION}"], check=True)
    marker.touch()
    return python


def mlflow_server(python: Path, config: Path, root: Path, workers: int, logs: Path) -> Server:
    model_dir = root / "mlflow-model"
    env = {**os.environ, "LAKEHOUSE_CONFIG": str(config), "LAKEHOUSE_DATA": str(root)}
    shutil.rmtree(model_dir, ignore_errors=True)
    out = subprocess.run([str(python), str(ROOT / "bench" / "mlflow_export.py"), str(model_dir)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"exporting the pipeline to MLflow failed:\n{out.stderr[-3000:]}")
    say(f"  {out.stdout.strip()}")
    port = free_port()
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"  # mlflow execs `uvicorn` from PATH
    return Server("mlflow", [str(python.with_name("mlflow")), "models", "serve", "-m", str(model_dir),
                             "--env-manager", "local", "-w", str(workers), "-h", "127.0.0.1", "-p", str(port)],
                  env, f"http://127.0.0.1:{port}/ping", logs / "mlflow.log")


# ---- bodies ----------------------------------------------------------------------------------
@dataclass
class Inputs:
    """The same rows three ways: raw (router), model frame (MLflow), model matrix (floor)."""

    raw: list[dict]
    frame_columns: list[str]
    frame_rows: list[list]
    matrix: np.ndarray


def inputs_of(work: Workload, served) -> Inputs:
    from features import build_features
    from serving.model_io import model_frame
    from serving.request_features import columns_of_values
    from serving.scoring import type_errors

    spec = served.spec
    typed, errors = type_errors(pd.DataFrame(work.rows), spec)
    if (errors != "").any():
        raise SystemExit(f"workload rows the model cannot type: {errors[errors != ''].head().tolist()}")
    frame = model_frame(build_features(typed, spec), spec, with_target=False)
    rows = [[None if not isinstance(v, str) and pd.isna(v) else v for v in rec]
            for rec in frame.astype(object).itertuples(index=False)]
    matrix = served.scorer.matrix(columns_of_values(work.rows, spec))
    return Inputs(work.rows, list(frame.columns), rows, matrix)


def picker(n: int, size: int) -> Callable[[int, int], list[int]]:
    def pick(thread: int, i: int) -> list[int]:
        start = (thread * 7919 + i * size) % n
        return [(start + k) % n for k in range(size)]

    return pick


def router_body(inp: Inputs, size: int, tag: str) -> Callable[[int, int], bytes]:
    pick = picker(len(inp.raw), size)

    def body(thread: int, i: int) -> bytes:
        rows = [{"user_id": f"peers-{tag}-{thread}-{i}-{k}", "features": inp.raw[j]}
                for k, j in enumerate(pick(thread, i))]
        return json.dumps(rows[0] if size == 1 else {"rows": rows}).encode()

    return body


def mlflow_body(inp: Inputs, size: int) -> Callable[[int, int], bytes]:
    pick = picker(len(inp.raw), size)
    return lambda thread, i: json.dumps({"dataframe_split": {
        "columns": inp.frame_columns, "data": [inp.frame_rows[j] for j in pick(thread, i)]}}).encode()


def floor_body(inp: Inputs, size: int) -> Callable[[int, int], bytes]:
    pick = picker(len(inp.raw), size)
    return lambda thread, i: json.dumps({"x": inp.matrix[pick(thread, i)].tolist()}).encode()


# ---- in process ------------------------------------------------------------------------------
def kernel_ms(kernel, matrix: np.ndarray, size: int, calls: int = 300) -> float:
    """Median ms of one kernel call on ``size`` matrix rows."""
    times = []
    for i in range(calls):
        start = (i * size) % max(1, len(matrix) - size)
        x = np.ascontiguousarray(matrix[start:start + size])
        t0 = time.perf_counter()
        kernel.outputs(x)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


# ---- report ----------------------------------------------------------------------------------
def line(name: str, res: Result, rows_per_request: int) -> str:
    errors = dict(res.errors) or "-"
    return (f"| {name:<44} | {res.rate:9.1f} | {res.rate * rows_per_request:10.1f} | {res.pct(0.5):8.2f} | "
            f"{res.pct(0.99):8.2f} | {errors} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="data root to build or reuse (default: a temporary one)")
    parser.add_argument("--requests", type=int, default=400, help="single-row requests per client thread")
    parser.add_argument("--batch-requests", type=int, default=60, help="batch requests per client thread")
    parser.add_argument("--batch", type=int, default=50, help="rows per /predict_batch")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=20.0, help="bound of each load")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slow-clients", type=int, default=50, help="slow connections during the last router load")
    parser.add_argument("--no-mlflow", action="store_true", help="skip MLflow (no throwaway environment)")
    parser.add_argument("--mlflow-env", type=Path, default=Path(tempfile.gettempdir()) / "lakehouse-bench-mlflow-env")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="lakehouse-peers-"))
    try:
        run(args, root)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path) -> None:
    from config import load_config
    from lake.open import open_registry
    from lake.paths import data_paths
    from serving.scoring import ServedModel

    config = ensure_lake(root)
    work = load_workload(config, root, 512, args.seed)
    cfg = load_config(str(config))
    registry = open_registry(cfg, data_paths(root))
    served = ServedModel.load(registry, registry.aliases()["prod"])
    if served.scorer is None:
        raise SystemExit(f"prod v{served.version} is not compiled ({served.scoring}): nothing to compare")
    estimator = type(served.scorer.kernel.estimator).__name__
    inp = inputs_of(work, served)
    say(f"prod v{served.version}: {estimator}, kernel {served.scoring['kernel']}; model matrix "
        f"{inp.matrix.shape[1]} columns from {len(work.fields)} raw fields")
    one_ms = kernel_ms(served.scorer.kernel, inp.matrix, 1)
    batch_ms = kernel_ms(served.scorer.kernel, inp.matrix, args.batch)
    say(f"in process: the kernel on 1 row {one_ms:.4f} ms; on {args.batch} rows {batch_ms:.4f} ms "
        f"({batch_ms / args.batch:.4f} ms per row)")

    logs = root / "bench-logs"
    logs.mkdir(exist_ok=True)
    workers, threads = cfg.router.workers, cfg.router.threads
    python = None if args.no_mlflow else mlflow_env(args.mlflow_env)
    results: dict[str, tuple[Result, int]] = {}

    def load(name: str, url: str, body: Callable[[int, int], bytes], size: int, per: int) -> None:
        say(f"{name}: {CONCURRENCY} clients x {per} requests of {size} row(s) (+{args.warmup} warm-up each)")
        res = hammer(name, url, body, per_thread=per, warmup=args.warmup, max_seconds=args.max_seconds,
                     tally=lambda b: [])
        say(f"  {len(res.latencies)} answered in {res.wall:.1f}s: {res.rate:.1f} req/s, p50 {res.pct(0.5):.2f} ms, "
            f"p99 {res.pct(0.99):.2f} ms; errors {dict(res.errors) or 'none'}")
        results[name] = (res, size)

    floor = floor_server(config, root, workers, threads, logs).start()
    try:
        url = floor.ready_url.replace("/health", "/predict")
        load("floor, 1 row", url, floor_body(inp, 1), 1, args.requests)
        load(f"floor, {args.batch} rows", url, floor_body(inp, args.batch), args.batch,
             args.batch_requests)
    finally:
        floor.stop()

    port = free_port()
    router = RouterProcess(config_with_router(config, port=port), root, port, logs / f"router-{port}.log", token=TOKEN)
    router.start()
    try:
        info = requests.get(f"{router.url}/model_info", timeout=10).json()
        if info["staging"] is None:
            raise SystemExit("the router serves no staging model: no A/B split to measure")
        if info["ab_split_b"] != 0.5:
            requests.put(f"{router.url}/admin/split", json={"ab_split_b": 0.5, "reason": "bench"},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).raise_for_status()
            time.sleep(3 * config_reload_seconds(config))
            info = requests.get(f"{router.url}/model_info", timeout=10).json()
        say(f"router: prod v{info['prod']['version']} ({info['prod']['scoring']['path']}), staging "
            f"v{info['staging']['version']} ({info['staging']['scoring']['path']}), ab_split_b {info['ab_split_b']}")
        load("router, 1 row (A/B 0.5, log, metrics)", f"{router.url}/predict", router_body(inp, 1, "one"), 1,
             args.requests)
        load(f"router, {args.batch} rows", f"{router.url}/predict_batch", router_body(inp, args.batch, "batch"),
             args.batch, args.batch_requests)
        with SlowClients("127.0.0.1", port, n=args.slow_clients, interval=1.0,
                         max_seconds=args.max_seconds + 60) as slow:
            time.sleep(2.0)  # every slow connection open and trickling
            load(f"router, 1 row, during {args.slow_clients} slow clients", f"{router.url}/predict",
                 router_body(inp, 1, "slow"), 1, args.requests)
        say(f"  slow clients: {slow.connected} connected, {slow.closed_by_server} closed by the server")
    finally:
        router.stop()

    if python is not None:
        mlflow = mlflow_server(python, config, root, workers, logs).start()
        try:
            url = mlflow.ready_url.replace("/ping", "/invocations")
            load("mlflow models serve, 1 row", url, mlflow_body(inp, 1), 1, args.requests)
            load(f"mlflow models serve, {args.batch} rows", url, mlflow_body(inp, args.batch), args.batch,
                 args.batch_requests)
        finally:
            mlflow.stop()

    print(f"\nprod v{served.version} ({estimator}); {workers} workers each (gunicorn gthread x {threads} for the "
          f"floor and the router); {CONCURRENCY} keep-alive clients on 127.0.0.1\n")
    print(f"| {'server, load':<44} | {'req/s':>9} | {'rows/s':>10} | {'p50 ms':>8} | {'p99 ms':>8} | errors |")
    print(f"|{'-' * 46}|{'-' * 11}:|{'-' * 12}:|{'-' * 10}:|{'-' * 10}:|--------|")
    for name, (res, size) in results.items():
        print(line(name, res, size))
    one = results["router, 1 row (A/B 0.5, log, metrics)"][0]
    checks = [("router / floor throughput, 1 row", one.rate / results["floor, 1 row"][0].rate, TARGETS["floor"], ">=")]
    if python is not None:
        checks.append(("router / mlflow throughput, 1 row", one.rate / results["mlflow models serve, 1 row"][0].rate,
                       TARGETS["mlflow"], ">="))
    checks.append(("router p50 ms, 1 row", one.pct(0.5), TARGETS["p50_ms"], "<="))
    router_rows = results[f"router, {args.batch} rows"][0].rate * args.batch
    floor_rows = results[f"floor, {args.batch} rows"][0].rate * args.batch
    checks.append((f"router / floor rows/s, {args.batch}-row batches", router_rows / floor_rows,
                   TARGETS["batch_vs_floor"], ">="))
    print()
    for name, value, target, op in checks:
        holds = value >= target if op == ">=" else value <= target
        print(f"{name:<44} {value:9.3f}  target {op} {target:g}: {'HOLDS' if holds else 'MISSED'}")
    per_row_ms = 1000 * CONCURRENCY / router_rows if router_rows else math.nan
    during = results[f"router, 1 row, during {args.slow_clients} slow clients"][0]
    print(f"router p99 with {args.slow_clients} slow clients open: {during.pct(0.99):.2f} ms against "
          f"{one.pct(0.99):.2f} ms without ({during.rate:.1f} vs {one.rate:.1f} req/s)")
    print(f"router batch: {per_row_ms:.3f} ms per row per client (8 clients) against the kernel's "
          f"{batch_ms / args.batch:.4f} ms per row in process")


if __name__ == "__main__":
    main()
