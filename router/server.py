"""Start and stop the router under gunicorn (``make dev``, the demo, tests and the benchmark)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from lake.paths import PROJECT_ROOT


@dataclass
class RouterProcess:
    """gunicorn running router.wsgi:app with router/gunicorn_conf.py, in its own process group
    (so a kill reaches the master and every worker). ``token``: the admin bearer token, or None."""

    config_path: Path
    data_root: Path
    port: int
    log_path: Path
    token: str | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0, *, ready: bool = True) -> RouterProcess:
        """Start gunicorn and wait (bounded) until /health?ready=1 answers 200 (models loaded), or
        with ``ready=False`` until /health does (a fresh lake has no model to load yet)."""
        env = {**os.environ, "LAKEHOUSE_CONFIG": str(self.config_path), "LAKEHOUSE_DATA": str(self.data_root)}
        if self.token is not None:
            env["LAKEHOUSE_ADMIN_TOKEN"] = self.token
        gunicorn = Path(sys.executable).with_name("gunicorn")
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [str(gunicorn), "-c", str(PROJECT_ROOT / "router" / "gunicorn_conf.py"), "router.wsgi:app"],
                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return self._wait_until_up(timeout, ready)
        except BaseException:
            self.kill()  # never leave a half-started server behind (e.g. an interrupted wait)
            raise

    def _wait_until_up(self, timeout: float, ready: bool) -> RouterProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                probe = f"{self.url}/health?ready=1" if ready else f"{self.url}/health"
                if requests.get(probe, timeout=2).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or a worker still loading the models: ask again
            time.sleep(0.3)
        raise RuntimeError(f"router not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: SIGTERM to the master (workers finish their requests and seal their logs)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to the master and every worker at once (the process group)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text()[-chars:] if self.log_path.exists() else ""
