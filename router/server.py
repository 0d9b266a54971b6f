"""Start and stop the router under gunicorn (``make dev``, the demo, tests and the benchmark)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from config import load_config
from config.loader import CONFIG_ENV
from lake.paths import DATA_ENV, PROJECT_ROOT


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a router, a test or a benchmark)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_with_router(config_path: Path, **router: object) -> Path:
    """A copy of ``config_path`` in the same folder (its relative sources still resolve) with
    ``router:`` settings overridden."""
    data = yaml.safe_load(Path(config_path).read_text())
    data["router"] = {**data.get("router", {}), **router}
    out = Path(config_path).with_name(f"router-{router.get('port', 'x')}.yaml")
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


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
        env = self.environment()
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

    def environment(self) -> dict[str, str]:
        """The workers' environment: the config and data root under the variables the router reads,
        and the admin token under the variable the configuration names (``router.admin_token_env``),
        so renaming that variable in the config keeps the admin routes working."""
        env = {**os.environ, CONFIG_ENV: str(self.config_path), DATA_ENV: str(self.data_root)}
        if self.token is not None:
            env[load_config(self.config_path).router.admin_token_env] = self.token
        return env

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
