"""A client of the router: raw rows -> /predict requests, then their true labels -> /feedback
(or /predict_batch and /feedback_batch, ``batch_size`` rows a call).

Used by ``run.py -mode demo`` (and the A/B loop) to play users against the real router over HTTP.
Plain requests + threads; every loop is bounded by the number of rows.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import requests

from features import encode_target
from lake.batch_files import ARCHIVE, BatchFiles
from lake.open import open_batch_files
from lake.paths import DataPaths
from stream.sources import read_file


def request_bodies(rows: pd.DataFrame, fields: dict[str, str], user_ids: list[str]) -> list[dict[str, Any]]:
    """/predict bodies from raw rows (strings as read from a batch file), typed by field kind."""
    time_field = next(name for name, kind in fields.items() if kind == "time")
    bodies = []
    for user, (_, row) in zip(user_ids, rows.iterrows(), strict=True):
        features: dict[str, Any] = {}
        for name, kind in fields.items():
            value = row.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
                features[name] = None
            elif kind == "numeric":
                number = pd.to_numeric(value, errors="coerce")
                features[name] = None if pd.isna(number) else float(number)
            else:
                features[name] = str(value)
        if features[time_field] is None:
            continue  # a row without time cannot be scored; the ingestion drops it too
        bodies.append({"user_id": user, "features": features})
    return bodies


@dataclass
class TrafficReport:
    sent: int = 0
    answered: list[dict] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        variants = Counter(r["variant"] for r in self.answered)
        used = Counter(r["model_used"] for r in self.answered)
        lat = sorted(self.latencies_ms)
        return {"sent": self.sent, "answered": len(self.answered), "errors": dict(self.errors),
                "variants": dict(variants), "model_used": dict(used),
                "p50_ms": statistics.median(lat) if lat else None,
                "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None}


def play(url: str, bodies: list[dict], concurrency: int = 8, timeout: float = 60.0, *, rate: float = 0.0,
         duration: float | None = None, batch_size: int = 1) -> TrafficReport:
    """POST the bodies with ``concurrency`` keep-alive sessions: one per /predict call, or
    ``batch_size`` rows per /predict_batch call (each row still its own request: assigned, logged
    and answered on its own). At most ``rate`` rows per second in all (0: as fast as answered),
    stopping after ``duration`` seconds."""
    report = TrafficReport()
    lock = threading.Lock()
    calls = [bodies[i:i + batch_size] for i in range(0, len(bodies), batch_size)]
    chunks = [calls[i::concurrency] for i in range(concurrency)]
    interval = concurrency * batch_size / rate if rate > 0 else 0.0
    deadline = time.monotonic() + duration if duration else None

    def run(chunk: list[list[dict]]) -> None:
        with requests.Session() as s:
            for call in chunk:
                started = time.monotonic()
                if deadline is not None and started > deadline:
                    return
                with lock:
                    report.sent += len(call)
                if batch_size == 1:
                    r = s.post(f"{url}/predict", json=call[0], timeout=timeout)
                    answers = [r.json()] if r.status_code == 200 else []
                else:
                    r = s.post(f"{url}/predict_batch", json={"rows": call}, timeout=timeout)
                    answers = r.json()["results"] if r.status_code == 200 else []
                with lock:
                    if r.status_code == 200:
                        report.answered += [{**a, "user_id": b.get("user_id")} for a, b in zip(answers, call,
                                                                                                strict=True)]
                        report.latencies_ms += [r.elapsed.total_seconds() * 1000] * len(answers)
                    else:
                        report.errors[r.status_code] += len(call)
                if interval:
                    time.sleep(max(0.0, interval - (time.monotonic() - started)))

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(run, c) for c in chunks]:
            future.result()
    return report


def send_feedback(url: str, answered: list[dict], labels: dict[str, Any], *, share: float = 1.0,
                  timeout: float = 30.0, concurrency: int = 8, batch_size: int = 1) -> int:
    """POST the true label of (a deterministic ``share`` of) the answered requests: one per
    /feedback call, or ``batch_size`` per /feedback_batch call; returns how many were accepted.
    ``labels`` maps user_id -> label in the model's classes."""
    todo = [{"request_id": r["request_id"], "label": labels[r["user_id"]]}
            for i, r in enumerate(answered) if i % 1000 < share * 1000 and r["user_id"] in labels]
    calls = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    accepted = 0
    lock = threading.Lock()

    def run(chunk: list[list[dict]]) -> None:
        nonlocal accepted
        with requests.Session() as s:
            for call in chunk:
                if batch_size == 1:
                    r = s.post(f"{url}/feedback", json=call[0], timeout=timeout)
                else:
                    r = s.post(f"{url}/feedback_batch", json={"items": call}, timeout=timeout)
                with lock:  # a batch is accepted whole or not at all
                    accepted += len(call) if r.status_code == 200 else 0

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(run, calls[i::concurrency]) for i in range(concurrency)]:
            future.result()
    return accepted


def labels_of(rows: pd.DataFrame, target: str, task: str, user_ids: list[str]) -> dict[str, Any]:
    """user_id -> the row's true label, encoded as the model's classes are (0/1 for yes/no targets)."""
    encoded = encode_target(rows[target], task)
    return {u: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
            for u, v in zip(user_ids, encoded, strict=True) if not pd.isna(v)}


@dataclass(frozen=True)
class UserPool:
    """Rows of the latest archived batch files, pooled newest first, that users will send."""

    rows: pd.DataFrame       # the rows drawn (fixed-seed sample when the pool holds more than asked)
    batches: list[str]       # batch ids pooled, newest first
    available: int           # rows the pooled files hold


def latest_rows(files: BatchFiles, count: int | None, seed: int = 0, *,
                skip: frozenset[str] = frozenset()) -> UserPool:
    """Pool the archived batch files (on the storage root) newest first until they hold ``count``
    rows (every file not in ``skip`` when ``count`` is None), then draw ``count`` of them (fixed
    seed); fewer when the files hold fewer: the traffic is as large as the data can supply, never
    a fixed size."""
    archived = files.list(ARCHIVE)
    if not archived:
        raise LookupError(f"no ingested batch file in {files.location(ARCHIVE)}: ingest batches first")
    frames: list[pd.DataFrame] = []
    batches: list[str] = []
    for file in reversed(archived):
        if file.batch_id in skip:
            continue
        frames.append(read_file(files.local_copy(file), as_strings=True))
        batches.append(file.batch_id)
        if count is not None and sum(map(len, frames)) >= count:
            break
    pooled = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    drawn = pooled.sample(count, random_state=seed) if count is not None and len(pooled) > count else pooled
    return UserPool(drawn.reset_index(drop=True), batches, len(pooled))


def simulate(cfg: Any, paths: DataPaths, url: str, *, users: int | None, rate: float = 0.0, duration: float = 300.0,
             label_delay: float = 0.0, label_share: float = 1.0, concurrency: int = 8, batch_size: int = 1,
             seed: int = 0, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Users drawn from the latest batches pooled (:func:`latest_rows`: ``users`` at most, all the
    batches not in ``skip`` hold when None) call /predict (one request each), then, ``label_delay``
    seconds later, their true labels go to /feedback for ``label_share`` of the answers. Bounded by
    the rows and ``duration``; loopback is where the router runs in every command of this project."""
    pool = latest_rows(open_batch_files(cfg, paths), users, seed, skip=skip)
    rows = pool.rows
    info = requests.get(f"{url}/model_info", timeout=30).json()
    ids = [f"user-{seed}-{i:05d}" for i in range(len(rows))]
    bodies = request_bodies(rows, info["prod"]["input_schema"]["fields"], ids)
    report = play(url, bodies, concurrency, rate=rate, duration=duration, batch_size=batch_size)
    if label_delay > 0:
        time.sleep(min(label_delay, duration))
    fed = send_feedback(url, report.answered, labels_of(rows, cfg.dataset.target, cfg.dataset.task, ids),
                        share=label_share, batch_size=batch_size)
    return {**report.summary(), "labels_sent": fed, "rows_without_time": len(rows) - len(bodies),
            "users_drawn": len(rows), "requests": len(bodies), "pooled_batches": pool.batches,
            "pool_rows": pool.available,
            "experiment": info["experiment"],
            "prod_version": info["prod"]["version"],
            "staging_version": info["staging"]["version"] if info["staging"] else None,
            "example": {k: v for k, v in report.answered[0].items() if k != "user_id"} if report.answered else None}
