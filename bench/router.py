"""Benchmark: what the A/B router costs on top of a bare model endpoint, at concurrency 8.

One run, loopback only, one lake and the same registered models for every case:

- floor: the prod model's own ``model.predict`` (the registered PyCaret pipeline) on a one-row
  DataFrame already built from a request's features (typed, ``features.build_features``,
  ``serving.model_io.model_frame``), in this process, from 1 thread and from 8 threads; and
  ``serving.scoring.score_frame`` on the raw row (typing + features + predict + predict_proba),
  which is what both servers below do per request;
- minimal: bench/minimal_app.py under gunicorn (gthread) with the router's own workers/threads
  (``router:`` section of the configuration): parse the JSON, one-row frame, score_frame, answer;
- router: router.wsgi:app with router/gunicorn_conf.py (router.server.RouterProcess), a staging model
  so that the A/B split is on (ab_split_b 0.5), the event log on, metrics, access log.

The servers get the same request bodies: real rows of the last ingested batch (raw features,
the time as an ISO string, missing values as null), each with its own user_id so both variants
are hit. Load: 8 client threads, each with its own keep-alive requests.Session, a warm-up, then
``--requests`` requests each (stopped at ``--max-seconds``); requests/s is all answered requests
over the wall time from the start signal to the last answer, p50/p99 are client-side latencies.

Reading the ratios: "router/minimal" throughput is router req/s over minimal req/s (target >= 0.80),
p99 is router p99 over minimal p99 (target <= 1.5). The floor shows how much of a request the
model itself is. The in-process breakdown (Flask test client, one thread, median per request)
splits the router's own work into its steps; ``--profile`` adds cProfile of that path.

The data root is built first (a fresh lake of the default dataset with a fast training override:
4 batches ingested, prod trained, a 5th batch ingested and a retraining that registers staging),
or reused with ``--keep DIR``.

    python bench/router.py [--requests 40] [--keep DIR] [--rounds 1] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
import requests
import yaml

from router.server import RouterProcess, config_with_router, free_port

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 8
FAST_TRAINING = {"models": ["lr", "dt", "lightgbm"], "variants": [{"name": "median_raw"}],
                 "budget_time_minutes": 0.5, "tune_top": 0, "max_train_rows": 20000}
INITIAL_BATCHES = 4
CONFIG_NAME = "bench-config.yaml"
TOKEN = "bench-token"
TARGET_THROUGHPUT, TARGET_P99 = 0.80, 1.5
# cProfile lines shown: this project's code, Flask's request dispatch, the pipeline's predict calls
PROFILED = rf"({re.escape(str(ROOT))}/(?!\.venv)|flask/app\.py.*(wsgi_app|full_dispatch)|pipeline\.py.*predict)"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- data root -------------------------------------------------------------------------------
def write_config(root: Path) -> Path:
    """The default configuration with the fast training override, next to the data root."""
    data = yaml.safe_load((ROOT / "config" / "pipeline.yaml").read_text())
    data["training"] = {**data.get("training", {}), **FAST_TRAINING}
    path = root / CONFIG_NAME
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _registry(config: Path, root: Path):
    from config import load_config
    from lake.open import open_registry
    from lake.paths import data_paths

    cfg = load_config(str(config))
    paths = data_paths(root)
    return cfg, paths, open_registry(cfg, paths)


def prepare_here(config: Path, root: Path) -> None:
    """Build the lake (runs in a child process: Dagster, PyCaret, environment variables)."""
    import logging

    from cli.environment import prepare_environment
    from cli.runner import ingest_pending, run_retrain
    from config import load_config
    from lake.registry import AliasChange
    from stream.emulator import StreamEmulator

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    paths = prepare_environment(str(config), str(root))
    cfg = load_config()
    emulator = StreamEmulator(cfg, paths)
    for _ in range(INITIAL_BATCHES):
        emulator.emit_next()
    started = time.perf_counter()
    results = ingest_pending(paths)
    if not all(r.success for r in results):
        raise SystemExit(f"ingestion failed: {[r.failure for r in results if not r.success]}")
    say(f"  prepare: {len(results)} batches ingested in {time.perf_counter() - started:.0f}s; training prod")
    for step in ("prod", "staging"):
        started = time.perf_counter()
        result = run_retrain(paths, "full")
        if not result.success:
            raise SystemExit(f"retrain_job failed: {result.failure}")
        _, _, registry = _registry(config, root)
        say(f"  prepare: retrain_job ({step}) in {time.perf_counter() - started:.0f}s; aliases {registry.aliases()}")
        if step == "prod":
            emulator.emit_next()
            results = ingest_pending(paths)
            if not all(r.success for r in results):
                raise SystemExit(f"ingestion failed: {[r.failure for r in results if not r.success]}")
            say(f"  prepare: batch {INITIAL_BATCHES + 1} ingested; retraining for a staging model")
    aliases = registry.aliases()
    if "staging" not in aliases:  # the candidate failed the gate: serve another registered version as B
        versions = registry.versions()
        others = versions[versions["version"] != aliases["prod"]].sort_values(["role", "version"])
        candidates = others[others["role"] == "candidate"]
        pick = int((candidates if len(candidates) else others)["version"].iloc[-1])
        aliases = registry.set_aliases([AliasChange("staging", pick)], actor="bench", reason="bench")
        say(f"  prepare: no staging from the gate; staging set to v{pick}: {aliases}")


def ensure_lake(root: Path) -> Path:
    """The configuration of a prepared data root; builds the lake there when it has no prod model."""
    config = root / CONFIG_NAME
    if config.exists():
        _, _, registry = _registry(config, root)
        with contextlib.suppress(Exception):
            aliases = registry.aliases()
            if "prod" in aliases and "staging" in aliases:
                say(f"reusing the data root {root}: aliases {aliases}")
                return config
    root.mkdir(parents=True, exist_ok=True)
    config = write_config(root)
    say(f"preparing a fresh lake under {root} (default dataset, fast training); log in {root / 'prepare.log'}")
    started = time.perf_counter()
    with (root / "prepare.log").open("a") as log:
        proc = subprocess.run([sys.executable, __file__, "--prepare-only", str(root)], cwd=ROOT, stdout=None,
                              stderr=log, check=False, env={**os.environ, "PYCARET_CUSTOM_LOGGING_PATH":
                                                            str(root / "pycaret.log")})
    if proc.returncode != 0:
        raise SystemExit(f"preparing the lake failed ({proc.returncode}):\n"
                         f"{(root / 'prepare.log').read_text()[-3000:]}")
    say(f"lake ready in {time.perf_counter() - started:.0f}s")
    return config


# ---- requests --------------------------------------------------------------------------------
@dataclass
class Workload:
    fields: list[str]
    rows: list[dict[str, Any]]           # raw features, JSON-ready
    raw: pd.DataFrame                     # the same rows as the lake holds them
    prod: Any                             # ServedModel of prod
    split_workers: int
    split_threads: int


def load_workload(config: Path, root: Path, n_rows: int, seed: int) -> Workload:
    from lake.tables import BATCHES, RAW
    from serving.scoring import ServedModel

    cfg, _, registry = _registry(config, root)
    lake = registry.lake
    batches = lake.read(BATCHES, columns=["batch_id", "status"])
    last = sorted(batches.loc[batches["status"] == "ingested", "batch_id"])[-1]
    version = registry.aliases()["prod"]
    prod = ServedModel.from_registry_row(registry.get(version), registry.load(version))
    spec = prod.spec
    fields = [spec.time_column, *spec.numeric, *spec.categorical, *spec.text]
    raw = lake.read_batch(RAW, last)[fields]
    raw = raw.sample(min(n_rows, len(raw)), random_state=seed).reset_index(drop=True)
    rows = []
    for rec in raw.to_dict("records"):
        row: dict[str, Any] = {}
        for name in fields:
            value = rec[name]
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                row[name] = None
            elif name == spec.time_column:
                row[name] = pd.Timestamp(value).isoformat()
            elif name in spec.numeric:
                row[name] = float(value)
            else:
                row[name] = str(value)
        rows.append(row)
    say(f"workload: {len(rows)} rows of {last} (raw features: {len(fields)} fields), prod v{version}; "
        f"gunicorn {cfg.router.workers} workers x {cfg.router.threads} threads")
    return Workload(fields, rows, raw, prod, cfg.router.workers, cfg.router.threads)


def bodies(work: Workload, tag: str) -> Callable[[int, int], bytes]:
    def body(thread: int, i: int) -> bytes:
        row = work.rows[(thread * 7919 + i) % len(work.rows)]
        return json.dumps({"user_id": f"bench-{tag}-{thread}-{i}", "features": row}).encode()

    return body


# ---- load generator --------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)  # seconds, answered (200) requests
    errors: Counter = field(default_factory=Counter)
    wall: float = 0.0
    tally: Counter = field(default_factory=Counter)        # what the answers said (variant, model, worker)

    def merge(self, other: Result) -> None:
        self.latencies += other.latencies
        self.errors.update(other.errors)
        self.wall += other.wall
        self.tally.update(other.tally)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def hammer(name: str, url: str, body: Callable[[int, int], bytes], *, per_thread: int, warmup: int,
           max_seconds: float, tally: Callable[[dict], list[str]]) -> Result:
    """8 keep-alive clients: ``warmup`` requests each, then ``per_thread`` each (or until the deadline)."""
    result = Result(name, CONCURRENCY)
    lock = threading.Lock()
    start = threading.Barrier(CONCURRENCY + 1)
    ends: list[float] = []
    deadline = [float("inf")]
    headers = {"Content-Type": "application/json"}

    def client(k: int) -> None:
        latencies, errors, seen = [], Counter(), Counter()
        with requests.Session() as s:
            for i in range(warmup):
                s.post(url, data=body(k, 10**6 + i), headers=headers, timeout=60)
            start.wait()
            for i in range(per_thread):
                if time.perf_counter() > deadline[0]:
                    break
                payload = body(k, i)
                t0 = time.perf_counter()
                try:
                    r = s.post(url, data=payload, headers=headers, timeout=60)
                except requests.RequestException as exc:
                    errors[type(exc).__name__] += 1
                    continue
                elapsed = time.perf_counter() - t0
                if r.status_code != 200:
                    errors[str(r.status_code)] += 1
                    continue
                latencies.append(elapsed)
                seen.update(tally(r.json()))
        with lock:
            result.latencies += latencies
            result.errors.update(errors)
            result.tally.update(seen)
            ends.append(time.perf_counter())

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(CONCURRENCY)]
    for t in threads:
        t.start()
    start.wait(timeout=300)
    t0 = time.perf_counter()
    deadline[0] = t0 + max_seconds
    for t in threads:
        t.join(timeout=max_seconds + 120)
    result.wall = (max(ends) if ends else time.perf_counter()) - t0
    return result


# ---- servers ---------------------------------------------------------------------------------
@dataclass
class MinimalServer:
    config: Path
    root: Path
    workers: int
    threads: int
    log_path: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> MinimalServer:
        self.port = free_port()
        env = {**os.environ, "LAKEHOUSE_CONFIG": str(self.config), "LAKEHOUSE_DATA": str(self.root)}
        gunicorn = Path(sys.executable).with_name("gunicorn")
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [str(gunicorn), "-k", "gthread", "-w", str(self.workers), "--threads", str(self.threads),
                 "-b", f"127.0.0.1:{self.port}", "--timeout", "120", "bench.minimal_app:create_app()"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_workers(lambda: _minimal_pid(self.url), self.workers, timeout, self.proc, self.log_path)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _minimal_pid(url: str) -> set[str]:
    # a fresh connection each time, so the workers take turns answering
    return {str(requests.get(f"{url}/health", timeout=2).json()["worker"])}


def _router_pids(url: str) -> set[str]:
    """Workers that have loaded their models: router_served_version is written per process (pid label)."""
    text = requests.get(f"{url}/metrics", timeout=2).text
    return {line.split('pid="')[1].split('"')[0] for line in text.splitlines()
            if line.startswith("router_served_version{") and 'pid="' in line}


def wait_workers(probe: Callable[[], set[str]], workers: int, timeout: float, proc: subprocess.Popen,
                 log_path: Path) -> None:
    """Until every worker has loaded its model: keep-alive connections stick to the worker that
    accepted them, so a worker still loading during the warm-up would get no traffic at all."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException, KeyError, ValueError):
            seen |= probe()
            if len(seen) >= workers:
                return
        time.sleep(0.2)
    raise RuntimeError(f"only {len(seen)} of {workers} workers ready after {timeout}s:\n"
                       f"{log_path.read_text()[-3000:]}")


def event_lines(folder: Path) -> Counter:
    """Prediction events per writer (host-pid) in the event-log segments directly in ``folder``."""
    counts: Counter = Counter()
    for path in folder.glob("*.jsonl*"):
        with path.open("rb") as f:
            for line in f:
                if b'"type":"prediction"' in line:
                    counts[json.loads(line)["worker"]] += 1
    return counts


# ---- floor -----------------------------------------------------------------------------------
def floor(work: Workload, calls: int, max_seconds: float) -> list[Result]:
    """The model's own predict on prebuilt one-row frames, and score_frame on the raw row."""
    from features import build_features
    from serving.model_io import model_frame
    from serving.scoring import score_frame, type_errors

    served, spec = work.prod, work.prod.spec
    frames = []
    raws = [work.raw.iloc[[i]].reset_index(drop=True) for i in range(min(64, len(work.raw)))]
    for one in raws:
        typed, _ = type_errors(one, spec)
        frames.append(model_frame(build_features(typed, spec), spec, with_target=False))

    def run(name: str, concurrency: int, call: Callable[[int], Any]) -> Result:
        result = Result(name, concurrency)
        lock = threading.Lock()
        per = max(1, calls // concurrency)
        deadline = time.perf_counter() + max_seconds

        def loop(k: int) -> None:
            mine = []
            for i in range(per):
                if time.perf_counter() > deadline:
                    break
                t0 = time.perf_counter()
                call(k * 31 + i)
                mine.append(time.perf_counter() - t0)
            with lock:
                result.latencies += mine

        for i in range(5):  # warm-up
            call(i)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=loop, args=(k,)) for k in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result.wall = time.perf_counter() - t0
        say(f"  {name} x{concurrency}: {len(result.latencies)} calls, {result.rate:.1f}/s, "
            f"p50 {result.pct(0.5):.2f} ms")
        return result

    def predict(i: int) -> Any:
        return served.model.predict(frames[i % len(frames)])

    def scored(i: int) -> Any:  # as the servers do: a frame of the JSON values
        return score_frame(pd.DataFrame([work.rows[i % len(work.rows)]]), served)

    return [run("floor: model.predict, 1 row", 1, predict),
            run("floor: model.predict, 1 row", CONCURRENCY, predict),
            run("in-process score_frame, 1 row", 1, scored)]


# ---- in-process breakdown --------------------------------------------------------------------
def median_ms(fn: Callable[[int], Any], n: int) -> float:
    for i in range(3):
        fn(i)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def breakdown(work: Workload, config: Path, root: Path, n: int, profile: bool) -> list[tuple[str, float]]:
    """Per-request cost of the router's steps in this process (Flask test client, one thread).
    The metrics use prometheus' multiprocess mode as under gunicorn."""
    metrics_dir = Path(tempfile.mkdtemp(prefix="bench-prom-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        return _breakdown(work, config, root, n, profile)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _breakdown(work: Workload, config: Path, root: Path, n: int, profile: bool) -> list[tuple[str, float]]:
    from prometheus_client import values

    from bench.minimal_app import create_app as minimal_app
    from config import load_config
    from lake.request_log import prediction_event
    from router import metrics
    from router.app import create_app
    from router.plan import plan_rows, predict, score_planned
    from router.schemas import PredictRequest

    cfg = load_config(str(config))
    router = create_app(cfg, str(root), poll=False)
    ctx = router.extensions["lakehouse"]
    if ctx.pool.state is None:
        say(f"  the router app did not load its models ({ctx.pool.last_error}); no breakdown")
        ctx.events.close()
        return []
    minimal = minimal_app(cfg, str(root))
    body = bodies(work, "inproc")
    payloads = [body(0, i) for i in range(max(n, 64))]
    parsed = [PredictRequest.model_validate(json.loads(p)) for p in payloads]
    state = ctx.pool.state
    planned = [plan_rows(state, [r], cfg.router) for r in parsed]
    router_client, minimal_client = router.test_client(), minimal.test_client()

    def post(client) -> Callable[[int], Any]:
        def call(i: int) -> Any:
            r = client.post("/predict", data=payloads[i % len(payloads)], content_type="application/json")
            assert r.status_code == 200, r.get_data(as_text=True)

        return call

    def event(i: int) -> None:
        p = planned[i % len(planned)][0]
        ctx.events.append(prediction_event(
            request_id="0" * 32, variant=p.variant, experiment_id="x", model_version=p.served.version,
            model_used=p.model_used, fallback_reason=None, prediction=0, probability=0.5, latency_ms=1.0,
            user_id=p.row.user_id, features=p.row.features, worker=ctx.events.writer_id))

    def observe(i: int) -> None:
        metrics.PREDICTIONS.labels("A", "prod").observe(0.5)
        metrics.PREDICTED_CLASS.labels("A", "0").inc()
        metrics.REQUESTS.labels("predict", "A", "200").inc()
        metrics.LATENCY.labels("predict", "A").observe(0.02)

    steps = [
        ("minimal app, whole request (test client)", post(minimal_client)),
        ("router, whole request (test client)", post(router_client)),
        ("  router: JSON + pydantic parse", lambda i: PredictRequest.model_validate(json.loads(
            payloads[i % len(payloads)]))),
        ("  router: split + validation (plan_rows)", lambda i: plan_rows(state, [parsed[i % len(parsed)]],
                                                                          cfg.router)),
        ("  router: scoring (score_planned: frame + score_frame)",
         lambda i: score_planned(planned[i % len(planned)], state.fallback)),
        ("  router: event log append", event),
        ("  router: 4 metric updates (multiprocess mode)", observe),
        ("  router: predict (plan + score + log + metrics)", lambda i: predict(ctx.pool, [parsed[i % len(parsed)]],
                                                                                cfg.router, ctx.events)),
    ]
    out = []
    for name, fn in steps:
        out.append((name, median_ms(fn, n)))
        say(f"  {name.strip()}: {out[-1][1]:.3f} ms")
    mode = values.ValueClass.__name__
    if profile:
        for label, client in (("router", router_client), ("minimal", minimal_client)):
            prof = cProfile.Profile()
            call = post(client)
            prof.enable()
            for i in range(n):
                call(i)
            prof.disable()
            text = io.StringIO()
            stats = pstats.Stats(prof, stream=text).sort_stats("cumulative")
            stats.print_stats(PROFILED, 24)
            print(f"\ncProfile of {n} {label} requests through the test client (cumulative; project code, "
                  f"Flask's dispatch and the model pipeline's predict calls only):")
            print("\n".join(line for line in text.getvalue().splitlines()
                            if line.strip() and not line.lstrip().startswith(("List reduced", "Ordered by"))))
    ctx.events.close()
    out.append((f"(prometheus value class: {mode})", float("nan")))
    return out


# ---- main ------------------------------------------------------------------------------------
def table(rows: list[Result]) -> None:
    print(f"\n{'case':<44} {'conc':>4} {'answered':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for r in rows:
        errors = sum(r.errors.values())
        print(f"{r.name:<44} {r.concurrency:>4} {len(r.latencies):>8} {errors:>6} {r.rate:>8.1f} "
              f"{r.pct(0.5):>8.2f} {r.pct(0.99):>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40, help="measured requests per client thread and "
                        "round (default 40)")
    parser.add_argument("--warmup", type=int, default=10, help="warm-up requests per client thread (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="minimal and router alternate this many times; "
                        "figures are over all rounds (default 2)")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="bound of each measured run (default 30)")
    parser.add_argument("--floor-calls", type=int, default=200, help="calls of each floor case (default 200)")
    parser.add_argument("--breakdown", type=int, default=60, help="requests per step of the in-process "
                        "breakdown; 0 skips it (default 60)")
    parser.add_argument("--profile", action="store_true", help="also print cProfile of the in-process paths")
    parser.add_argument("--keep", type=Path, help="data root to reuse (built there if it has no prod+staging)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prepare-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare_only:
        prepare_here(args.prepare_only / CONFIG_NAME, args.prepare_only)
        return
    started = time.perf_counter()
    scratch = None if args.keep else Path(tempfile.mkdtemp(prefix="bench-router-"))
    root = (args.keep or scratch / "data").resolve()  # type: ignore[operator]
    try:
        run_bench(args, root)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    say(f"done in {time.perf_counter() - started:.0f}s")


def run_bench(args: argparse.Namespace, root: Path) -> None:
    config = ensure_lake(root)
    work = load_workload(config, root, 512, args.seed)
    logs = root / "bench-logs"
    logs.mkdir(exist_ok=True)

    say("floor: the model in this process")
    floors = floor(work, args.floor_calls, args.max_seconds)

    say(f"servers: gunicorn gthread, {work.split_workers} workers x {work.split_threads} threads each")
    minimal = MinimalServer(config, root, work.split_workers, work.split_threads, logs / "minimal.log").start()
    port = free_port()
    router = RouterProcess(config_with_router(config, port=port), root, port, logs / f"router-{port}.log",
                          token=TOKEN)
    before = event_lines(root / "events")
    router.start()
    try:
        wait_workers(lambda: _router_pids(router.url), work.split_workers, 120, router.proc, router.log_path)
        info = requests.get(f"{router.url}/model_info", timeout=10).json()
        if info["staging"] is None:
            raise SystemExit("the router serves no staging model: no A/B split to measure")
        if info["ab_split_b"] != 0.5:
            r = requests.put(f"{router.url}/admin/split", json={"ab_split_b": 0.5, "reason": "bench"},
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            r.raise_for_status()
            time.sleep(3 * config_reload_seconds(config))  # the other worker's poller picks it up
            info = requests.get(f"{router.url}/model_info", timeout=10).json()
        missing = set(info["prod"]["input_schema"]["fields"]) ^ set(work.fields)
        if missing:
            raise SystemExit(f"the router expects other fields than the workload has: {sorted(missing)}")
        say(f"router: prod v{info['prod']['version']}, staging v{info['staging']['version']}, "
            f"experiment {info['experiment']['experiment_id']} with ab_split_b {info['ab_split_b']}")
        per = args.requests
        totals = {"minimal": Result("minimal Flask app (gunicorn)", CONCURRENCY),
                  "router": Result("router (A/B 0.5, event log, metrics)", CONCURRENCY)}
        for rnd in range(args.rounds):
            for name, url, tally in (
                    ("minimal", f"{minimal.url}/predict", lambda b: [f"worker {b['worker']}"]),
                    ("router", f"{router.url}/predict",
                     lambda b: [f"variant {b['variant']}", f"model {b['model_used']}"])):
                say(f"round {rnd + 1}/{args.rounds}: {name}: {CONCURRENCY} clients x {per} requests "
                    f"(+{args.warmup} warm-up each)")
                res = hammer(name, url, bodies(work, f"{name}{rnd}"), per_thread=per, warmup=args.warmup,
                             max_seconds=args.max_seconds, tally=tally)
                say(f"  {len(res.latencies)} answered in {res.wall:.1f}s: {res.rate:.1f} req/s, "
                    f"p50 {res.pct(0.5):.1f} ms, p99 {res.pct(0.99):.1f} ms; errors {dict(res.errors) or 'none'}")
                totals[name].merge(res)
    finally:
        router.stop()
        minimal.stop()
    after = event_lines(root / "events")
    logged = {w: after[w] - before.get(w, 0) for w in after if after[w] > before.get(w, 0)}

    steps = []
    if args.breakdown:
        say("in-process breakdown (Flask test client, one thread, median per request)")
        steps = breakdown(work, config, root, args.breakdown, args.profile)

    table([*floors, totals["minimal"], totals["router"]])
    m, r = totals["minimal"], totals["router"]
    tp, p99 = r.rate / m.rate, r.pct(0.99) / m.pct(0.99)
    print(f"\nrouter / minimal: throughput {tp:.3f} (target >= {TARGET_THROUGHPUT:.2f}), "
          f"p99 {p99:.3f} (target <= {TARGET_P99:.1f}), p50 {r.pct(0.5) / m.pct(0.5):.3f}")
    holds = tp >= TARGET_THROUGHPUT and p99 <= TARGET_P99
    print(f"target {'HOLDS' if holds else 'MISSED'}: throughput {'ok' if tp >= TARGET_THROUGHPUT else 'below'}, "
          f"p99 {'ok' if p99 <= TARGET_P99 else 'above'}")
    print(f"one request's model work in this process (p50, one thread): model.predict {floors[0].pct(0.5):.2f} ms, "
          f"score_frame (typing + features + predict + predict_proba) {floors[2].pct(0.5):.2f} ms")
    print(f"minimal answers per worker: {dict(sorted(m.tally.items()))}")
    print(f"router answers: {dict(sorted(r.tally.items()))}; prediction events logged per worker: {logged}")
    if steps:
        print("\nin-process, one thread, median ms per request:")
        for name, ms in steps:
            print(f"  {name:<54} {'' if math.isnan(ms) else f'{ms:8.3f}'}")


def config_reload_seconds(config: Path) -> float:
    from config import load_config

    return load_config(str(config)).router.reload_poll_seconds


if __name__ == "__main__":
    main()
