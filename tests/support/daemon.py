"""A real `dagster-daemon` for the integration tests: started as a subprocess against the test's
DAGSTER_HOME and data root, stopped (with the runs it launched) once a condition holds or a
deadline passes; and the runs it recorded."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from cli.environment import write_instance_settings
from lake.paths import PROJECT_ROOT
from tests.support.pipeline import Pipeline


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop the daemon and everything in its process group: the runs it launched and the code
    server it started, which may outlive it (one was found still running an hour after its test)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)


def install_instance_config(pipe: Pipeline, override: dict | None = None) -> None:
    """The instance settings ``run.py`` writes (cli.environment.instance_settings: the project's
    ``dagster.yaml`` and the configured storage) in ``pipe``'s instance home, with ``override``'s
    sections merged into it (one level deep, e.g. ``{"run_monitoring": {"poll_interval_seconds": 1}}``)."""
    write_instance_settings(pipe.cfg, pipe.paths.dagster_home, override)


@contextlib.contextmanager
def home_instance(pipe: Pipeline) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance of ``pipe``'s instance home (the one the daemon uses)."""
    os.environ["DAGSTER_HOME"], saved = str(pipe.paths.dagster_home), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        if saved is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = saved


@dataclass
class Daemon:
    """A running ``dagster-daemon`` process and its log."""

    proc: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text()[-chars:] if self.log_path.exists() else ""

    def wait_for(self, done: Callable[[], bool], what: str, wait_seconds: float) -> None:
        """Until ``done()`` (checked every 2 s); fails with the log tail when the daemon exits or
        ``what`` has not happened in ``wait_seconds``."""
        deadline = time.monotonic() + wait_seconds
        while not done():
            assert self.proc.poll() is None, f"the daemon exited:\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"{what} not within {wait_seconds}s:\n{self.log_tail()}"
            time.sleep(2)


@contextlib.contextmanager
def running_daemon(pipe: Pipeline, *, instance_config: dict | None = None) -> Iterator[Daemon]:
    """The daemon on ``pipe``'s instance home and config while the block runs; then it is stopped
    with the runs it launched. ``instance_config``: sections merged into the project's
    ``dagster.yaml`` for this daemon."""
    install_instance_config(pipe, instance_config)
    env = {**os.environ, "DAGSTER_HOME": str(pipe.paths.dagster_home), "LAKEHOUSE_CONFIG": str(pipe.config_path),
           "LAKEHOUSE_DATA": str(pipe.paths.root),
           "PYCARET_CUSTOM_LOGGING_PATH": str(pipe.paths.logs / "pycaret.log")}
    log_path = pipe.paths.root / "daemon.log"
    daemon = Path(sys.executable).with_name("dagster-daemon")
    with log_path.open("a") as log:
        proc = subprocess.Popen([str(daemon), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")], cwd=PROJECT_ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield Daemon(proc, log_path)
    finally:
        stop_process_group(proc)


def run_daemon_until(pipe: Pipeline, done: Callable[[], bool], what: str, wait_seconds: float,
                     before: Callable[[], None] | None = None, *, instance_config: dict | None = None) -> None:
    """Run the daemon on ``pipe``'s instance home and config until ``done()`` (checked every 2 s);
    ``before`` runs once the daemon is up (e.g. dropping a file into the inbox). Fails with the
    daemon's log tail when it exits or ``what`` has not happened in ``wait_seconds``.
    ``instance_config``: sections merged into the project's ``dagster.yaml`` for this run."""
    with running_daemon(pipe, instance_config=instance_config) as daemon:
        if before is not None:
            before()
        daemon.wait_for(done, what, wait_seconds)


def daemon_runs(pipe: Pipeline) -> dict[str, list[dg.DagsterRun]]:
    """The runs the daemon recorded in ``pipe``'s instance home, by job name (newest first)."""
    with home_instance(pipe) as instance:
        runs = instance.get_runs()
    by_job: dict[str, list[dg.DagsterRun]] = {}
    for run in runs:
        by_job.setdefault(run.job_name, []).append(run)
    return by_job
