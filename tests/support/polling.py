"""Bounded waiting for the integration tests: poll a probe until it answers or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def until(what: str, probe: Callable[[], Any], timeout: float = 90.0, *, interval: float = 0.5,
          log: Callable[[], str] | None = None) -> Any:
    """``probe()``'s first truthy answer, polled every ``interval`` s; fails naming ``what`` (and
    ``log()``'s text, e.g. a server's log tail) when none came within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError(f"{what}: not after {timeout:.0f}s" + (f"\n{log()}" if log else ""))
