"""The system beyond one machine, with the real servers on 127.0.0.1: one storage root in a
SeaweedFS bucket (lake, models, batch files, the shipped request log), the Dagster instance on a
throwaway PostgreSQL, the real dagster-daemon, and two gunicorn router replicas with their own data
roots, one of them killed with -9 mid-load.

Batches go into the bucket's inbox; the sensors ingest them, drift requests the retraining that
makes a staging model, traffic goes to both replicas, the replicas ship their request logs to the
bucket, event_log_sensor ingests them, ab_sensor analyses and promotes, and both replicas serve the
new prod. Every loop is bounded; every server is stopped at the end, whatever happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import psycopg2
import pytest
import requests
import yaml

from assets.jobs import AB_ANALYSIS_JOB, AB_EVENTS_JOB, INGEST_JOB, PROMOTE_JOB, RETRAIN_JOB
from devservers.object_store import ObjectStore, throwaway_object_store
from lake.batch_files import ARCHIVE, INBOX
from lake.experiments import ExperimentStore
from lake.log_shipping import shipped_segments
from lake.open import open_registry, open_shared_root
from lake.report_files import AB_REPORT, REPORTS, SUMMARY_REPORT
from lake.tables import AB_EVENTS, BATCHES, DRIFT, DRIFT_BATCH_ROW
from stream.sources import read_file
from stream.traffic import labels_of, request_bodies, send_feedback
from tests.assets.ab.test_ab_loop import AB, TRAINING
from tests.conftest import make_source, write_config
from tests.support.daemon import Daemon, home_instance, running_daemon
from tests.support.pipeline import Pipeline
from tests.support.postgres import throwaway_postgres
from tests.support.router_server import RouterServer, config_with_router, free_port

pytestmark = pytest.mark.slow  # object store, PostgreSQL, the daemon, gunicorn: about 10 minutes

URL_ENV = "LAKEHOUSE_DAGSTER_POSTGRES_URL"
STAGE_SECONDS = 420   # the bound of each stage the daemon drives (a training run takes 1-3 min on 2 cores)
POLL = 0.5            # the replicas' reload poll
CONCURRENCY = 8
PACE = 0.1            # seconds between one client's requests: replica A's 150 take about 4 s


def shifted_source(n: int = 1500, shifted: int = 600) -> pd.DataFrame:
    """Five batches of 300; in the last two the features drift (warmer, a new city) and the label
    rule flips, so a model retrained on them is better there than the old prod (A/B promotes)."""
    df = make_source(n, seed=7)
    late = pd.to_datetime(df["ts"]).rank(method="first") > n - shifted
    df.loc[late, "churn"] = np.where(df.loc[late, "churn"] == "yes", "no", "yes")
    df.loc[late, "temp"] = df.loc[late, "temp"] + 12
    df.loc[late & (np.random.default_rng(1).random(n) < 0.4), "city"] = "Paris"
    return df


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ObjectStore, str]]:
    with throwaway_object_store() as store, throwaway_postgres() as url:
        monkeypatch.setenv(URL_ENV, url)
        yield store, url


def _replica(pipe: Pipeline, tmp_path: Path, name: str) -> RouterServer:
    """A router replica on its own host's data root (spool, caches, metrics), configured like
    every other process: the same file, the same storage root in the bucket."""
    port = free_port()
    cfg = config_with_router(pipe.config_path, port=port, workers=2, threads=4)
    root = tmp_path / name
    root.mkdir()
    return RouterServer(cfg, root, port, tmp_path / f"{name}.log")


def _succeeded(pipe: Pipeline, job: str) -> int:
    with home_instance(pipe) as instance:
        return len(instance.get_run_records(dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS])))


def _model_info(server: RouterServer) -> dict:
    return requests.get(f"{server.url}/model_info", timeout=30).json()


def _serving(server: RouterServer, version: int, body: dict) -> bool:
    """Whether 6 requests on fresh connections (spread over the workers) all got ``version``."""
    for i in range(6):
        r = requests.post(f"{server.url}/predict", json={**body, "user_id": f"probe-{version}-{i}"}, timeout=30)
        if r.status_code != 200 or r.json()["model_version"] != version:
            return False
    return True


def _wait(condition, what: str, seconds: float, daemon: Daemon | None = None, every: float = 0.5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert daemon is None or daemon.proc.poll() is None, f"the daemon exited:\n{daemon.log_tail()}"
        assert time.monotonic() < deadline, f"{what} not within {seconds}s" + (
            f":\n{daemon.log_tail()}" if daemon else "")
        time.sleep(every)


@pytest.mark.timeout(2400)
def test_two_replicas_daemon_postgres_and_object_store_from_batches_to_promotion(
        servers: tuple[ObjectStore, str], tmp_path: Path) -> None:
    store, url = servers
    root_uri = store.uri("team")
    config = write_config(tmp_path / "cfg", {
        "training": TRAINING, "ab": {**AB, "sensor_poll_seconds": 1, "mde": 0.5,  # a large effect: one batch of users
                                       # the models' latency on 2 busy cores is noise here (a CI run
                                       # rolled back on 2.26 vs 1.43 ms); the guardrail has its own tests
                                       "latency_p95_ratio": 100.0},
        "drift": {"sensor_poll_seconds": 1, "persistence_batches": 2},
        "dagster": {"instance_storage": "postgres", "inbox_poll_seconds": 1, "event_log_poll_seconds": 1},
        "router": {"shadow_share": 1.0, "reload_poll_seconds": POLL, "event_log": {"segment_max_seconds": 1.0}},
        "storage": {"root_uri": root_uri, "storage_options": store.storage_options}}, shifted_source())
    pipe = Pipeline(tmp_path / "daemon-host", config_path=config)  # the daemon's (and the runs') host
    files, registry, shared = pipe.batch_files(), open_registry(pipe.cfg, pipe.paths), \
        open_shared_root(pipe.cfg, pipe.paths)
    replicas = [_replica(pipe, tmp_path, "replica-a"), _replica(pipe, tmp_path, "replica-b")]
    a, b = replicas
    answered: dict[str, tuple[str, str]] = {}  # request_id -> (user_id, replica)
    sent: set[str] = set()
    lock = threading.Lock()

    try:
        with running_daemon(pipe) as daemon:
            # 1. three batches into the bucket's inbox: inbox_sensor ingests them, one run each
            for _ in range(3):
                assert pipe.emulator.emit_next() is not None
            daemon.wait_for(lambda: _succeeded(pipe, INGEST_JOB) >= 3, "3 ingestions", STAGE_SECONDS)
            # 2. the first model, launched by a person (the UI's "Materialize"), recorded in PostgreSQL
            with home_instance(pipe) as instance:
                first = pipe.defs.resolve_job_def(RETRAIN_JOB).execute_in_process(
                    instance=instance, tags={"lakehouse/trigger": "manual"})
            assert first.success and registry.aliases()["prod"] == 1
            for replica in replicas:
                replica.start()
            # 3. two drifted batches: the second makes the drift persistent, drift_sensor retrains
            for _ in range(2):
                assert pipe.emulator.emit_next() is not None
            daemon.wait_for(lambda: _succeeded(pipe, RETRAIN_JOB) >= 2 and "staging" in registry.aliases(),
                            "a staging model from drift_sensor's retrain_job", 2 * STAGE_SECONDS)
            staging = registry.aliases()["staging"]
            _wait(lambda: all((_model_info(r)["staging"] or {}).get("version") == staging for r in replicas),
                  "both replicas serving the staging model", 30, daemon)

            # 4. the latest batch's rows as users, half to each replica; replica A dies with -9 mid-load
            latest = files.list(ARCHIVE)[-1]
            rows = read_file(files.local_copy(latest), as_strings=True)
            info = _model_info(a)
            users = [f"user-{i:04d}" for i in range(len(rows))]
            bodies = request_bodies(rows, info["prod"]["input_schema"]["fields"], users)
            labels = labels_of(rows, pipe.cfg.dataset.target, pipe.cfg.dataset.task, users)
            with requests.Session() as s:  # the same user gets the same variant from either replica
                pairs = [(s.post(f"{a.url}/predict", json={**body, "user_id": f"sticky-{i}"}, timeout=30).json(),
                          s.post(f"{b.url}/predict", json={**body, "user_id": f"sticky-{i}"}, timeout=30).json())
                         for i, body in enumerate(bodies[:32])]
            assert [x["variant"] for x, _ in pairs] == [y["variant"] for _, y in pairs]
            assert {x["variant"] for x, _ in pairs} == {"A", "B"}
            for i, (x, y) in enumerate(pairs):
                answered[x["request_id"]], answered[y["request_id"]] = (f"sticky-{i}", "a"), (f"sticky-{i}", "b")
                sent.add(f"sticky-{i}")

            todo = {"a": bodies[0::2], "b": bodies[1::2]}
            left: dict[str, list[dict]] = {"a": [], "b": []}

            def load(name: str, server: RouterServer, chunk: list[dict]) -> None:
                with requests.Session() as s:
                    for n, body in enumerate(chunk):
                        with lock:
                            sent.add(body["user_id"])
                        try:
                            r = s.post(f"{server.url}/predict", json=body, timeout=30)
                        except requests.RequestException:  # the replica died: the rest go to it after its restart
                            with lock:
                                left[name].extend(chunk[n:])
                            return
                        assert r.status_code == 200, r.text
                        with lock:
                            answered[r.json()["request_id"]] = (body["user_id"], name)
                        time.sleep(PACE)  # the load lasts seconds, so the kill lands mid-stream

            with ThreadPoolExecutor(CONCURRENCY) as pool:
                futures = [pool.submit(load, name, server, todo[name][k::CONCURRENCY // 2])
                           for name, server in (("a", a), ("b", b)) for k in range(CONCURRENCY // 2)]
                _wait(lambda: sum(r == "a" for _, r in list(answered.values())) >= 32 + 20,
                      "20 answers of replica A's load", 120, every=0.02)
                a.kill()  # master and workers, SIGKILL, mid-stream
                for f in futures:
                    f.result(timeout=120)
            assert left["a"] and not left["b"], "the kill came after replica A's load was done"
            a.start()  # its first sweep seals the dead workers' segments and ships them
            with requests.Session() as s:
                for body in left["a"]:
                    r = s.post(f"{a.url}/predict", json=body, timeout=30)
                    assert r.status_code == 200, a.log_tail()
                    answered[r.json()["request_id"]] = (body["user_id"], "a")
            labelled = [{"request_id": rid, "user_id": user} for rid, (user, _) in answered.items()
                        if not user.startswith("sticky-")]
            assert send_feedback(b.url, labelled, labels) == len(labelled)

            # 5. the replicas' logs reach the bucket; the sensors ingest, analyse and promote
            daemon.wait_for(lambda: _succeeded(pipe, PROMOTE_JOB) >= 1, "promote_job from ab_sensor", STAGE_SECONDS)
            decided = ExperimentStore(pipe.lake).all().iloc[-1]
            assert decided["decision"] == "promote", decided["reason"]
            assert registry.aliases()["prod"] == staging
            _wait(lambda: all(_serving(r, staging, bodies[0]) for r in replicas),
                  "both replicas serving the new prod", 30, daemon)

            # 6. graceful stops ship the last segments; event_log_sensor ingests them
            for replica in replicas:
                replica.stop()
            _wait(lambda: not shipped_segments(shared) and _idle(pipe), "the last shipped segments ingested",
                  STAGE_SECONDS, daemon)
    finally:
        for replica in replicas:
            replica.stop()

    # every answered request in ab_events exactly once, whichever replica answered it
    events = pipe.lake.read(AB_EVENTS)
    mine = events[events["request_id"].isin(answered) | events["user_id"].isin(sent)]
    assert mine["request_id"].is_unique
    assert set(answered) <= set(mine["request_id"])
    extra = mine[~mine["request_id"].isin(answered)]
    assert len(extra) <= CONCURRENCY // 2, extra  # logged, never answered: in flight on A when it died
    experiment = ExperimentStore(pipe.lake).all().iloc[-1]
    assert experiment["status"] == "promoted" and experiment["decision"] == "promote"
    assert registry.aliases()["previous"] == 1

    # the runs, each launched by its sensor, and the cursors: in PostgreSQL
    with home_instance(pipe) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = {job: instance.get_runs(dg.RunsFilter(job_name=job))
                for job in (INGEST_JOB, RETRAIN_JOB, AB_EVENTS_JOB, AB_ANALYSIS_JOB, PROMOTE_JOB)}
        states = {s.instigator_name: s for s in instance.all_instigator_state()}
    assert sorted(r.tags["dagster/partition"] for r in runs[INGEST_JOB]) == [f"batch_{i:05d}" for i in range(1, 6)]
    assert {r.tags.get("dagster/sensor_name") for r in runs[INGEST_JOB]} == {"inbox_sensor"}
    by_drift = [r for r in runs[RETRAIN_JOB] if r.tags.get("dagster/sensor_name") == "drift_sensor"]
    assert [r.tags["lakehouse/drift_batch"] for r in by_drift] == ["batch_00005"]
    assert registry.get(staging)["run_id"] == by_drift[0].run_id
    assert {r.tags["dagster/sensor_name"] for r in runs[AB_EVENTS_JOB]} == {"event_log_sensor"}
    assert {r.tags["dagster/sensor_name"] for r in runs[AB_ANALYSIS_JOB]} == {"ab_sensor"}
    assert [r.tags["dagster/sensor_name"] for r in runs[PROMOTE_JOB]] == ["ab_sensor"]
    assert not [r.run_id for found in runs.values() for r in found if r.status == dg.DagsterRunStatus.FAILURE]
    assert states["inbox_sensor"].instigator_data.cursor == "{}"  # the inbox is empty again
    assert states["drift_sensor"].instigator_data.cursor and states["ab_sensor"].instigator_data.cursor
    with psycopg2.connect(url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE pipeline_name = %s", (INGEST_JOB,))
        assert cur.fetchone()[0] == 5
    conn.close()

    # the state lives in the bucket: the hosts' data roots hold only spools, caches and logs
    verdicts = pipe.lake.read(DRIFT, where=f"feature = '{DRIFT_BATCH_ROW}'").set_index("batch_id")
    assert verdicts["retrain_requested"].astype(bool).to_dict() == {"batch_00004": False, "batch_00005": True}
    assert pipe.lake.read(BATCHES)["status"].tolist() == ["ingested"] * 5
    assert [f.name for f in files.list(INBOX)] == [] and len(files.list(ARCHIVE)) == 5
    for host in (pipe.paths.root, a.data_root, b.data_root):
        for folder in ("lake", "artifacts", "inbox", "archive", "quarantine"):
            assert not [p for p in (host / folder).rglob("*") if p.is_file()], f"{host / folder} holds files"
        assert not list((host / "events").glob("*.jsonl*")), f"{host} kept request-log segments"
    # the reports of the daemon's runs are published to the bucket, for a reviewer on any host
    assert b"<html" in shared.read_bytes(f"{REPORTS}/{AB_REPORT}")[:200].lower()
    assert b"<html" in shared.read_bytes(f"{REPORTS}/{SUMMARY_REPORT}")[:200].lower()
    assert not [p for p in (pipe.paths.dagster_home).rglob("*") if p.suffix in (".db", ".sqlite")]
    assert yaml.safe_load((pipe.paths.dagster_home / "dagster.yaml").read_text())["storage"] == {
        "postgres": {"postgres_url": {"env": URL_ENV}}}


def _idle(pipe: Pipeline) -> bool:
    """No run of the A/B jobs queued or running."""
    with home_instance(pipe) as instance:
        return not instance.get_run_records(dg.RunsFilter(
            job_name=AB_EVENTS_JOB, statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED,
                                               dg.DagsterRunStatus.STARTING]))
