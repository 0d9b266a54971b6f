"""Named crash points for fault-injection tests with real kills.

``crash_point("after_raw_commit")`` does nothing unless the environment variable
:data:`CRASH_POINT_ENV` names that point. Then it writes the file named by
:data:`CRASH_MARKER_ENV` (so the test knows the process reached the point, right after the
preceding commit) and waits, up to :data:`PAUSE_SECONDS`, for the test to ``kill -9`` it. A
process the test forgets to kill fails loudly afterwards instead of carrying on as if nothing
happened. The seam costs one dictionary lookup per point in production.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CRASH_POINT_ENV = "LAKEHOUSE_CRASH_POINT"
CRASH_MARKER_ENV = "LAKEHOUSE_CRASH_MARKER"
PAUSE_SECONDS = 120.0


def crash_point(name: str) -> None:
    """Pause here for a kill when the environment asks for crash point ``name``."""
    if os.environ.get(CRASH_POINT_ENV) != name:
        return
    marker = os.environ.get(CRASH_MARKER_ENV)
    if marker:
        Path(marker).write_text(f"{name} {os.getpid()}\n")
    time.sleep(PAUSE_SECONDS)
    raise RuntimeError(f"crash point {name!r}: the test did not kill process {os.getpid()} within "
                       f"{PAUSE_SECONDS:.0f} s")
