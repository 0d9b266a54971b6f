"""The router under gunicorn on 127.0.0.1: an alias flip under load, kill -9 mid-stream, a fuzz run.

Every loop here is bounded by a request count or a deadline, and talks to loopback only.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets.ab.events import ingest_event_log, ingest_shipped_event_log
from lake.files import FileRoot
from lake.log_shipping import shipped_segments
from lake.registry import AliasChange, ModelRegistry
from lake.request_log import OPEN_SUFFIX
from lake.tables import AB_EVENTS
from tests.router.test_router import ROW
from tests.support.pipeline import Pipeline
from tests.support.router_server import RouterServer, config_with_router, free_port

pytestmark = pytest.mark.slow  # real gunicorn processes

CONCURRENCY = 8


@pytest.fixture(scope="module")
def lakehouse(two_model_template: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return two_model_template.copy_to(tmp_path_factory.mktemp("gunicorn"))


def _server(pipe: Pipeline, tmp_path: Path, **router: object) -> RouterServer:
    port = free_port()
    cfg = config_with_router(pipe.config_path, port=port, workers=2, threads=4, **router)
    return RouterServer(cfg, pipe.paths.root, port, tmp_path / f"gunicorn-{port}.log")


def _post(session: requests.Session, url: str, user: str) -> requests.Response:
    return session.post(f"{url}/predict", json={"user_id": user, "features": ROW}, timeout=30)


def test_alias_flip_under_load_fails_no_request(lakehouse: Pipeline, tmp_path: Path) -> None:
    registry = ModelRegistry(lakehouse.lake, lakehouse.paths.artifacts)
    server = _server(lakehouse, tmp_path, reload_poll_seconds=0.3).start()
    # (sent, answered, status, version): a request takes the worker's state when it starts, so an
    # answer from the old prod can arrive after the other worker already switched; what the router
    # promises is about when a request was *sent*
    results: list[tuple[float, float, int, int | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(k: int) -> None:
        with requests.Session() as s:
            for i in range(5000):  # bounded; stopped once the flip has settled
                if stop.is_set():
                    return
                sent = time.monotonic()
                r = _post(s, server.url, f"load-{k}-{i}")
                version = r.json().get("model_version") if r.status_code == 200 else None
                with lock:
                    results.append((sent, time.monotonic(), r.status_code, version))

    try:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            futures = [pool.submit(worker, k) for k in range(CONCURRENCY)]
            time.sleep(1.5)
            # promotion-like flip in one commit: prod -> 3, previous -> 1, staging cleared
            registry.set_aliases([AliasChange("prod", 3), AliasChange("previous", 1), AliasChange("staging", None)],
                                 actor="test", reason="flip under load", expect={"prod": 1, "staging": 3})
            flipped_at = time.monotonic()
            deadline = flipped_at + 60
            while time.monotonic() < deadline:  # until the last 50 answers all come from the new prod
                with lock:
                    tail = results[-50:]
                if len(tail) == 50 and {v for *_, v in tail} == {3} and tail[0][0] > flipped_at:
                    break
                time.sleep(0.2)
            # then 10 more polls under load: a worker that never switched would answer in them
            settled_at = time.monotonic() + 10 * 0.3
            time.sleep(10 * 0.3 + 1.0)
            stop.set()
            for f in futures:
                f.result(timeout=120)
    finally:
        server.stop()
        registry.set_aliases([AliasChange("prod", 1), AliasChange("staging", 3), AliasChange("previous", None)],
                             actor="test", reason="restore")
    statuses = {status for _, _, status, _ in results}
    assert statuses == {200}, server.log_tail()  # zero failed requests across the swap
    before = [v for sent, _, _, v in results if sent < flipped_at]
    assert 1 in before and set(before) <= {1, 3}
    last = [v for sent, _, _, v in results if sent >= settled_at]
    assert len(last) >= 20 and set(last) == {3}, f"the new prod never took over on every worker: {last}"
    switched = max((sent for sent, _, _, v in results if v != 3), default=flipped_at) - flipped_at
    assert switched < 15, f"requests sent {switched:.1f}s after the flip still got an old version"


def _load(server: RouterServer, prefix: str, *, answered: dict[str, str], sent: set[str], lock: threading.Lock,
          stop: threading.Event, requests_at_most: int = 400) -> None:
    """One client's bounded stream of /predict to ``server`` until ``stop`` or a dead server;
    records every user sent and every answered request id."""
    with requests.Session() as s:
        for i in range(requests_at_most):
            if stop.is_set():
                return
            user = f"{prefix}-{i}"
            with lock:
                sent.add(user)
            try:
                r = _post(s, server.url, user)
            except requests.RequestException:
                return
            if r.status_code == 200:
                with lock:
                    answered[r.json()["request_id"]] = user


def _post_after_restart(server: RouterServer, prefix: str, n: int, answered: dict[str, str], sent: set[str]) -> None:
    """``n`` requests to a restarted router; each must be answered (and is recorded)."""
    with requests.Session() as s:
        for i in range(n):
            user = f"{prefix}-{i}"
            r = _post(s, server.url, user)
            assert r.status_code == 200, server.log_tail()
            answered[r.json()["request_id"]] = user
            sent.add(user)


def test_kill_9_loses_no_answered_request(lakehouse: Pipeline, tmp_path: Path) -> None:
    server = _server(lakehouse, tmp_path).start()
    answered: dict[str, str] = {}  # request_id -> user_id
    sent: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        futures = [pool.submit(_load, server, f"kill-{k}", answered=answered, sent=sent, lock=lock, stop=stop)
                    for k in range(CONCURRENCY)]
        deadline = time.monotonic() + 120
        while len(answered) < 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()  # SIGKILL master and workers mid-stream
        stop.set()
        for f in futures:
            f.result(timeout=60)
    assert len(answered) >= 150, server.log_tail()

    restarted = _server(lakehouse, tmp_path).start()
    try:
        _post_after_restart(restarted, "after-kill", 10, answered, sent)
    finally:
        restarted.stop()
    paths = lakehouse.paths
    ingest_event_log(lakehouse.lake, paths.events, paths.events_ingested)
    events = lakehouse.lake.read(AB_EVENTS)
    mine = events[events["user_id"].isin(sent)]
    assert mine["request_id"].is_unique
    assert set(answered) <= set(mine["request_id"])  # every 200 is there, exactly once
    extra = mine[~mine["request_id"].isin(answered)]
    # logged but never answered: only requests that were in flight when the processes died
    assert len(extra) <= CONCURRENCY and set(extra["user_id"]) <= sent
    assert not list(paths.events.glob("*.open"))  # the dead workers' segments were sealed


def _replica(pipe: Pipeline, tmp_path: Path, name: str, port: int | None = None) -> RouterServer:
    """A replica with its own data root (spool, cache, metrics) on the pipeline's data root as the
    shared storage root: the lake and the model files every replica reads, the inbox they ship to."""
    port = port or free_port()
    cfg = config_with_router(pipe.config_path, port=port, workers=2, reload_poll_seconds=POLL,
                             event_log={"segment_max_seconds": 1.0})
    data = yaml.safe_load(cfg.read_text())
    data["storage"] = {**data.get("storage", {}), "root_uri": str(pipe.paths.root)}
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    root = tmp_path / name
    root.mkdir(exist_ok=True)
    return RouterServer(cfg, root, port, tmp_path / f"{name}-{port}.log")


POLL = 0.5


def _serving(url: str, version: int, tries: int = 8) -> bool:
    """Whether ``tries`` requests on fresh connections (spread over the workers) all got ``version``."""
    for i in range(tries):
        r = requests.post(f"{url}/predict", json={"user_id": f"probe-{i}", "features": ROW}, timeout=30)
        if r.status_code != 200 or r.json()["model_version"] != version:
            return False
    return True


def test_two_replicas_share_assignment_flip_together_and_ship_every_answer_once(lakehouse: Pipeline,
                                                                                 tmp_path: Path) -> None:
    registry = ModelRegistry(lakehouse.lake, lakehouse.paths.artifacts)
    shared = FileRoot(lakehouse.paths.root)
    a, b = _replica(lakehouse, tmp_path, "replica-a"), _replica(lakehouse, tmp_path, "replica-b")
    answered: dict[str, str] = {}  # request_id -> user_id
    sent: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    try:
        a.start()
        b.start()
        # the same user gets the same variant from either replica (the split is a hash of the
        # experiment id and the user, both from the lake)
        with requests.Session() as s:
            variants = [(_post(s, a.url, f"sticky-{i}").json(), _post(s, b.url, f"sticky-{i}").json())
                        for i in range(32)]
        for ra, rb in variants:
            answered[ra["request_id"]], answered[rb["request_id"]] = "sticky", "sticky"
        assert [ra["variant"] for ra, _ in variants] == [rb["variant"] for _, rb in variants]
        assert {ra["variant"] for ra, _ in variants} == {"A", "B"}
        assert len({ra["experiment_id"] for ra, _ in variants} | {rb["experiment_id"] for _, rb in variants}) == 1

        # an alias flip reaches both replicas within one poll (v3 is loaded already, as staging)
        registry.set_aliases([AliasChange("prod", 3), AliasChange("previous", 1), AliasChange("staging", None)],
                             actor="test", reason="flip on two replicas", expect={"prod": 1, "staging": 3})
        flipped, seen = time.monotonic(), {}
        while len(seen) < 2 and time.monotonic() < flipped + 30:
            for name, server in (("a", a), ("b", b)):
                if name not in seen and _serving(server.url, 3):
                    seen[name] = time.monotonic() - flipped
            time.sleep(0.05)
        assert set(seen) == {"a", "b"} and max(seen.values()) < POLL + 2.0, seen

        # load on both, then replica A's master and workers die with -9 mid-stream
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            futures = [pool.submit(_load, server, f"rep-{server.port}-{k}", answered=answered, sent=sent, lock=lock,
                                   stop=stop)
                       for server in (a, b) for k in range(CONCURRENCY // 2)]
            deadline = time.monotonic() + 120
            while len(answered) < 64 + 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            a.kill()
            time.sleep(0.5)
            stop.set()
            for f in futures:
                f.result(timeout=60)
        assert len(answered) >= 64 + 200, a.log_tail()
        b.stop()  # graceful: each worker seals and ships its last segment on exit
        assert not list((b.data_root / "events").glob("*.jsonl*")), "replica B left segments in its spool"
        assert list((a.data_root / "events").glob(f"*{OPEN_SUFFIX}")), "the kill left no open segment"

        a.start()  # the restart's first sweep seals the dead workers' segments and ships them
        deadline = time.monotonic() + 30  # no request yet: the new workers have opened no segment
        while list((a.data_root / "events").glob("*.jsonl*")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not list((a.data_root / "events").glob("*.jsonl*")), "the restart did not ship the dead segments"
        _post_after_restart(a, "after-replica-restart", 5, answered, sent)
    finally:
        a.stop()
        b.stop()
        registry.set_aliases([AliasChange("prod", 1), AliasChange("staging", 3), AliasChange("previous", None)],
                             actor="test", reason="restore")
    for server in (a, b):
        assert not list((server.data_root / "events").glob("*.jsonl*")), f"{server.data_root} kept segments"
    outcome = ingest_shipped_event_log(lakehouse.lake, shared)
    assert outcome.segments and not shipped_segments(shared)
    events = lakehouse.lake.read(AB_EVENTS)
    mine = events[events["request_id"].isin(answered) | events["user_id"].isin(sent)]
    assert mine["request_id"].is_unique
    assert set(answered) <= set(mine["request_id"])  # every 200 of either replica, exactly once
    extra = mine[~mine["request_id"].isin(answered)]
    # logged but never answered: only requests in flight on replica A when it died
    assert len(extra) <= CONCURRENCY and set(extra["user_id"]) <= sent
    assert set(mine["worker"].str.rsplit("-", n=1).str[0]) == {socket.gethostname()}
    # which worker answers is the kernel's choice (all of a replica's load may reach one worker),
    # so the test asserts whose rows they are: each replica's own processes, the restart new ones
    def workers(prefix: str) -> set[str]:
        return set(mine.loc[mine["user_id"].str.startswith(prefix), "worker"])
    before_kill, other, restarted = workers(f"rep-{a.port}-"), workers(f"rep-{b.port}-"), workers("after-replica-")
    assert before_kill and other and restarted, (before_kill, other, restarted)
    assert not (before_kill & other) and not (restarted & (before_kill | other))
    assert ingest_shipped_event_log(lakehouse.lake, shared).events_inserted == 0  # nothing twice


SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
FEATURE_VALUES = st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats() | \
    st.text(max_size=30) | st.sampled_from(["2024-01-01T00:00:00Z", "Oslo", "pro", "nan"])
FEATURES = st.dictionaries(st.sampled_from([*ROW, "row_id", "other"]), FEATURE_VALUES, max_size=9)
BODIES = {
    "/predict": st.fixed_dictionaries({"features": FEATURES}, optional={"user_id": JSON}) | JSON,
    "/predict_batch": st.fixed_dictionaries({"rows": st.lists(st.fixed_dictionaries({"features": FEATURES}),
                                                              max_size=3)}) | JSON,
    "/feedback": st.fixed_dictionaries({"request_id": st.text(max_size=40) | st.just("a" * 32), "label": JSON}),
    "/admin/split": st.fixed_dictionaries({"ab_split_b": JSON | st.floats()}) | JSON,
}


@pytest.fixture(scope="module")
def fuzz_server(lakehouse: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> RouterServer:
    server = _server(lakehouse, tmp_path_factory.mktemp("fuzz")).start()
    yield server
    server.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_from_the_openapi_routes_never_gives_5xx(fuzz_server: RouterServer, data: st.DataObject) -> None:
    doc = requests.get(f"{fuzz_server.url}/openapi.json", timeout=10).json()
    path = data.draw(st.sampled_from(sorted(p for p in BODIES if p in doc["paths"])))
    method = next(iter(doc["paths"][path]))
    body = data.draw(BODIES[path])
    raw = data.draw(st.booleans())
    headers = {"Authorization": f"Bearer {fuzz_server.token}"} if path.startswith("/admin") and \
        data.draw(st.booleans()) else {}
    if raw:  # arbitrary bytes or a wrong content type
        content = data.draw(st.binary(max_size=200) | st.just(json.dumps(body).encode()))
        ctype = data.draw(st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
        r = requests.request(method, f"{fuzz_server.url}{path}", data=content, headers={**headers,
                             "Content-Type": ctype}, timeout=30)
    else:  # Python's json writes NaN / Infinity tokens: the router must refuse them with a 4xx too
        r = requests.request(method, f"{fuzz_server.url}{path}", data=json.dumps(body).encode(),
                             headers={**headers, "Content-Type": "application/json"}, timeout=30)
    assert r.status_code < 500, (path, body, r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("application/json")


def test_a_chunked_body_past_the_limit_is_413_and_the_server_serves_on(fuzz_server: RouterServer) -> None:
    """A body without Content-Length (chunked) is cut at `router.max_body_bytes` like any other:
    413 naming the body, after reading at most that much of the 20 MiB sent."""
    host, port = fuzz_server.url.removeprefix("http://").split(":")
    limit, sent = 20 * 2**20, 0
    chunk = b" " * 2**16
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            while sent < limit and not select.select([sock], [], [], 0)[0]:  # until the server answers
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while the rest was still on its way
        answer = sock.recv(65536)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE", answer[:300]
    assert b'"field":"body"' in rest.replace(b" ", b"") and sent < limit
    assert requests.get(f"{fuzz_server.url}/health", timeout=10).status_code == 200
