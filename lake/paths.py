"""Every path the system writes, derived from one data root (``data/`` or ``$LAKEHOUSE_DATA``)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_ENV = "LAKEHOUSE_DATA"


@dataclass(frozen=True)
class DataPaths:
    """The folders under one data root. Moving the root moves all state of an instance."""

    root: Path

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def inbox(self) -> Path:
        """Landing zone: batch files waiting to be ingested (emulator or a real upstream)."""
        return self.root / "inbox"

    @property
    def archive(self) -> Path:
        """Batch files already ingested, kept byte-for-byte as they arrived."""
        return self.root / "archive"

    @property
    def quarantine(self) -> Path:
        """Rejected batch files, each with a ``<file>.reason.json`` beside it."""
        return self.root / "quarantine"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def events(self) -> Path:
        """The router's event log: open and closed segments (JSON lines)."""
        return self.root / "events"

    @property
    def events_ingested(self) -> Path:
        """Segments already ingested into `ab_events` / `ab_feedback`."""
        return self.root / "events" / "ingested"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def stream_state(self) -> Path:
        """The emulator's position in the source stream."""
        return self.root / "stream" / "position.json"

    def ensure(self) -> DataPaths:
        """Create the folders (idempotent) and return self."""
        for folder in (self.lake, self.inbox, self.archive, self.quarantine, self.artifacts,
                       self.reports, self.logs, self.events, self.events_ingested, self.dagster_home,
                       self.stream_state.parent):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def data_paths(root: str | os.PathLike[str] | None = None) -> DataPaths:
    """The data root: the argument, else ``$LAKEHOUSE_DATA``, else ``<project>/data``."""
    chosen = root or os.environ.get(DATA_ENV) or PROJECT_ROOT / "data"
    return DataPaths(Path(chosen).expanduser().resolve())


PYCARET_LOG_ENV = "PYCARET_CUSTOM_LOGGING_PATH"


def route_pycaret_log() -> None:
    """Send PyCaret's log to ``<data root>/logs/pycaret.log`` unless the environment already says
    where. PyCaret opens its log when its first module is imported (training, or unpickling a
    model) and otherwise writes ``logs.log`` into whatever directory the process started in."""
    if os.environ.get(PYCARET_LOG_ENV):
        return
    logs = data_paths().logs
    logs.mkdir(parents=True, exist_ok=True)
    os.environ[PYCARET_LOG_ENV] = str(logs / "pycaret.log")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
