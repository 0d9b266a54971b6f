"""A throwaway PostgreSQL server on 127.0.0.1 for the multi-machine tests: the Debian binaries
(``/usr/lib/postgresql/<major>/bin``, installed by the project's set-up when absent), a cluster in
a temporary folder owned by the ``postgres`` user (initdb refuses to run as root), trust
authentication on loopback only, stopped and removed at the end however the test ends.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from router.server import free_port

DB_USER = "lakehouse"
DB_NAME = "dagster"


def postgres_bin() -> Path:
    """The newest installed server's ``bin`` folder; skips nothing: a missing server is a set-up bug."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql: `make test` installs the "
                           "Debian `postgresql` package when they are missing (scripts/system-packages.sh)")
    return found[-1].parent


def _as_owner(argv: list[str], owner: str | None, **kw) -> subprocess.CompletedProcess:
    if owner is not None:
        argv = ["runuser", "-u", owner, "--", *argv]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120, **kw)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a server; yields its SQLAlchemy URL
    (``postgresql+psycopg2://lakehouse@127.0.0.1:<port>/dagster``)."""
    binaries = postgres_bin()
    owner = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="lakehouse-pg-"))
    data, sockets, log = folder / "data", folder / "sockets", folder / "server.log"
    sockets.mkdir()
    if owner is not None:
        info = pwd.getpwnam(owner)
        for path in (folder, sockets):
            os.chown(path, info.pw_uid, info.pw_gid)
    port = free_port()
    started = False
    try:
        _as_owner([str(binaries / "initdb"), "-D", str(data), "-U", DB_USER, "--auth=trust", "-E", "UTF8",
                   "--no-instructions"], owner)
        # loopback only; fsync off: the cluster is thrown away with the test
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        _as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60",
                   "start"], owner)
        started = True
        _as_owner([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", DB_USER, DB_NAME], owner)
        yield f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{port}/{DB_NAME}"
    finally:
        try:
            if started:  # a failed stop raises: a server left running must not pass unnoticed
                _as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"], owner)
        finally:
            shutil.rmtree(folder)
