"""Which process executes a run, and whether it is still the same process (assets/run_health.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from assets.run_health import HOST_TAG, PID_TAG, START_TAG, process_alive, process_start, process_tags


def test_a_run_names_this_process_and_a_reused_or_dead_pid_is_not_it() -> None:
    tags = process_tags()
    assert tags[PID_TAG] == str(os.getpid()) and tags[HOST_TAG] == socket.gethostname()
    assert tags[START_TAG] == process_start(os.getpid()) and tags[START_TAG].isdigit()
    assert process_alive(os.getpid(), tags[START_TAG]) is True
    # the same id with another start time: a new process under a reused id, not the run's
    assert process_alive(os.getpid(), str(int(tags[START_TAG]) + 1)) is False
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start(child.pid)
    child.wait()
    assert process_alive(child.pid, started) is False  # exited and reaped
    assert process_alive(child.pid, "") is False
