"""The batch files of the pipeline: ``inbox/`` (waiting), ``archive/`` (ingested, byte for byte as
they arrived) and ``quarantine/`` (rejected, each with ``<file>.reason.json``), on the storage root.

On one machine the root is the data root (``data/inbox`` ...); with ``storage.root_uri`` it is the
shared root (``s3://bucket/prefix/inbox`` ...), so an upstream on any machine drops files there,
``inbox_sensor`` on the daemon's host sees them, and an ingest run on any host reads them. Readers
get a local copy (:meth:`BatchFiles.local_copy`): the parsers and the bounded reader need a file.

A file's *signature* is its size and modification time: it changes when an upstream replaces the
file, which makes the sensor request the batch again. Every move is a rename on a local root and a
copy then delete on an object store; a crash between the two leaves the file in both folders, and
the inbox copy is then ingested again (replacing the same rows), never lost.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from lake.files import FileRoot

log = logging.getLogger(__name__)

INBOX, ARCHIVE, QUARANTINE = "inbox", "archive", "quarantine"
REASON_SUFFIX = ".reason.json"
IGNORED_SUFFIXES = (".tmp", REASON_SUFFIX, ".part")


def is_batch_name(name: str) -> bool:
    """Names the pipeline picks up: not hidden, not temporary, not a quarantine reason."""
    return bool(name) and not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES)


def batch_id_of(name: str) -> str:
    """The batch id (and Dagster partition key) of a file name: the name without extensions."""
    return name.split(".", maxsplit=1)[0]


@dataclass(frozen=True)
class BatchFile:
    """One batch file in one of the folders."""

    folder: str      # INBOX, ARCHIVE or QUARANTINE
    name: str        # the file name (``batch_00003.csv``)
    size: int
    mtime_ns: int

    @property
    def key(self) -> str:
        return f"{self.folder}/{self.name}"

    @property
    def batch_id(self) -> str:
        return batch_id_of(self.name)

    @property
    def signature(self) -> str:
        """``size:mtime_ns``; changes when the file is replaced."""
        return f"{self.size}:{self.mtime_ns}"


class BatchFiles:
    """The inbox, archive and quarantine under ``root`` (remote files are read through local
    copies in the root's cache folder)."""

    def __init__(self, root: FileRoot) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"BatchFiles({self.root.uri!r})"

    def location(self, folder: str) -> str:
        """Where a folder is, for messages and metadata (a path or a URI)."""
        return f"{self.root.uri}/{folder}"

    def list(self, folder: str = INBOX) -> list[BatchFile]:
        """The batch files in ``folder``, by name (oldest batch id first for the usual names)."""
        found = []
        for key, (size, mtime_ns) in self.root.list_info(folder).items():
            name = key.rsplit("/", 1)[-1]
            if is_batch_name(name):
                found.append(BatchFile(folder, name, size, mtime_ns))
        return sorted(found, key=lambda f: f.name)

    def find(self, batch_id: str) -> BatchFile:
        """The file of a batch: waiting in the inbox, or already archived (a re-run).
        FileNotFoundError (naming a quarantined file's reason) when neither holds it."""
        for folder in (INBOX, ARCHIVE):
            found = [f for f in self.list(folder) if f.batch_id == batch_id]
            if len(found) > 1:
                raise FileExistsError(f"batch {batch_id!r} has several files in {self.location(folder)}: "
                                      f"{[f.name for f in found]}")
            if found:
                return found[0]
        quarantined = [f for f in self.list(QUARANTINE) if f.batch_id == batch_id]
        hint = (f"; it was quarantined, see {self.location(QUARANTINE)}/{quarantined[0].name}{REASON_SUFFIX}"
                if quarantined else "")
        raise FileNotFoundError(f"no file for batch {batch_id!r} in {self.location(INBOX)} or "
                                f"{self.location(ARCHIVE)}{hint}")

    def local_copy(self, file: BatchFile) -> Path:
        """A local file with ``file``'s bytes: the file itself on a local root, else a fresh
        download into the cache (a replaced file is fetched again)."""
        if self.root.local:
            return self.root.local_path(file.key)
        return self.root.local_path(file.key, refresh=True)

    def drop_local_copy(self, file: BatchFile) -> None:
        """Remove the cached copy of a remote file once it is archived or quarantined."""
        if not self.root.local:
            (self.root.cache_dir / file.key).unlink(missing_ok=True)

    def put(self, path: Path, name: str | None = None) -> BatchFile:
        """Deliver a local file into the inbox, whole or not at all (an upstream's drop)."""
        key = f"{INBOX}/{name or path.name}"
        self.root.put_file(path, key)
        size, mtime_ns = self.root.list_info(INBOX)[key]
        return BatchFile(INBOX, key.rsplit("/", 1)[-1], size, mtime_ns)

    def archive(self, file: BatchFile) -> None:
        """Move an ingested file from the inbox to the archive."""
        self.root.move(file.key, f"{ARCHIVE}/{file.name}")
        self.drop_local_copy(file)

    def quarantine(self, file: BatchFile, reason: dict) -> str:
        """Move a rejected file to the quarantine with ``<name>.reason.json`` beside it; returns
        where it went. The reason is written first, so a crash in between leaves the file in the
        inbox to be retried, never a quarantined file without its reason."""
        self.root.write_bytes(f"{QUARANTINE}/{file.name}{REASON_SUFFIX}",
                              json.dumps(reason, indent=2, default=str).encode())
        self.root.move(file.key, f"{QUARANTINE}/{file.name}")
        self.drop_local_copy(file)
        return f"{self.location(QUARANTINE)}/{file.name}"

    def reason(self, name: str) -> dict:
        """The reason of a quarantined file (FileNotFoundError when it has none)."""
        return json.loads(self.root.read_bytes(f"{QUARANTINE}/{name}{REASON_SUFFIX}"))
