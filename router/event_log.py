"""The router's durable request log: append-only JSON-lines segments, one writer per worker process.

Durability contract of :meth:`EventLog.append`:

- against the process being killed: the whole line is handed to the kernel by one ``os.write`` on
  an ``O_APPEND`` descriptor before ``append`` returns, so ``kill -9`` right after loses nothing;
- against a machine crash: a background thread fsyncs the segment every ``fsync_interval_seconds``
  when something was written since the last fsync (grouped fsync), so a crash loses at most about
  that window.

Segments follow the format of :mod:`lake.request_log` (names, closing, sealing orphans). Rotation
(by size or age) and :meth:`EventLog.close` fsync, close and rename them to ``.jsonl``. The writer
also holds an exclusive ``flock`` on its open segment, released by the kernel however the process
ends, so :func:`lake.request_log.seal_orphans` never seals a live writer's segment.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from config.schema import EventLogConfig
from lake.request_log import OPEN_SUFFIX, closed_name, default_writer_id, fsync_dir

log = logging.getLogger(__name__)


_JOIN_SECONDS = 5.0


class EventLog:
    """Append-only, size- and age-rotated JSON-lines log of one process; thread-safe.

    The segment is opened lazily at the first :meth:`append`, so a process that only imports the
    router (the gunicorn master with ``preload_app``) writes nothing. After a fork the child drops
    the inherited descriptor (the parent keeps writing that segment) and opens its own segment;
    its writer id becomes ``<host>-<child pid>`` even when an explicit id was given, because an id
    names one process.
    """

    def __init__(self, folder: Path, cfg: EventLogConfig, writer_id: str | None = None) -> None:
        if writer_id is not None and (not writer_id or "/" in writer_id or "\x00" in writer_id):
            raise ValueError(f"invalid writer id {writer_id!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.writer_id = writer_id or default_writer_id()
        self._lock = threading.Lock()
        self._closed = False
        self._seq = 0
        self._forget_inherited()
        _LIVE.add(self)

    # -- state -------------------------------------------------------------------------------------

    def _forget_inherited(self) -> None:
        """(Re)initialise the per-process state; in a forked child, drop the parent's segment."""
        if getattr(self, "_fd", None) is not None:
            # The child's copy only: the parent's descriptor, its segment and its flock stay intact.
            with contextlib.suppress(OSError):
                os.close(self._fd)
        if getattr(self, "_pid", None) not in (None, os.getpid()):
            self.writer_id = default_writer_id()
        self._pid = os.getpid()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._dirty = False
        self._dir_dirty = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.events_written = 0
        self.bytes_written = 0
        self.fsyncs = 0
        self.fsync_errors = 0
        self.segments_sealed = 0
        self.seal_errors = 0

    def _after_fork_in_child(self) -> None:
        # Runs in the only thread of the new child: a lock held by a parent thread at fork time
        # would stay locked forever, so it is replaced, not released.
        self._lock = threading.Lock()
        self._forget_inherited()

    @property
    def segment_path(self) -> Path | None:
        """The segment being written (``.jsonl.open``), or None before the first append/after a seal."""
        return self._path

    @property
    def closed(self) -> bool:
        return self._closed

    # -- writing -----------------------------------------------------------------------------------

    def append(self, event: dict[str, Any]) -> None:
        """Write one event as one JSON line; when this returns, the line is in the kernel.

        Raises on any failure (unserialisable event, NaN, full disk, closed log): the caller must
        answer 503, never pretend the event was logged.
        """
        self.append_many([event])

    def append_many(self, events: list[dict[str, Any]]) -> None:
        """Write ``events`` as consecutive JSON lines of one segment in one write: all of them are in
        the kernel when this returns, or (on an exception) none was accepted. A crash inside the
        write can leave a torn last line, which the reader skips as corrupt, as it does for
        :meth:`append`; the caller answered nothing, so the client retries them all."""
        data = b"".join((json.dumps(e, separators=(",", ":"), default=str, allow_nan=False) + "\n").encode()
                        for e in events)
        if not data:
            return
        to_seal: tuple[int, Path] | None = None
        with self._lock:
            if self._closed:
                raise RuntimeError(f"event log {self.folder} is closed")
            if self._pid != os.getpid():  # forked without the at-fork hook (should not happen)
                self._forget_inherited()
            if self._fd is not None and self._should_rotate(len(data)):
                to_seal = self._detach()
            if self._fd is None:
                self._open_segment()
            assert self._fd is not None
            try:
                _write_all(self._fd, data)
            except BaseException:
                self._abandon_after_failed_write()
                raise
            self._size += len(data)
            self._dirty = True
            self.events_written += len(events)
            self.bytes_written += len(data)
        if to_seal is not None:
            # This event is already in the new segment: a failure to seal the old one must not
            # turn into an error for it (the old segment stays .open until seal_orphans).
            try:
                self._seal(*to_seal)
            except OSError:
                log.exception("event log: could not seal rotated segment %s", to_seal[1].name)

    def _should_rotate(self, incoming: int) -> bool:
        if self._size == 0:
            return False
        return (self._size + incoming > self.cfg.segment_max_bytes
                or time.monotonic() - self._opened_at >= self.cfg.segment_max_seconds)

    def _open_segment(self) -> None:
        name = f"{self.writer_id}-{time.time_ns()}-{self._seq:06d}{OPEN_SUFFIX}"
        self._seq += 1
        path = self.folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        self._fd, self._path, self._size = fd, path, 0
        self._opened_at = time.monotonic()
        self._dir_dirty = True  # the new directory entry is fsynced with the first grouped fsync
        self._ensure_thread()

    def _detach(self) -> tuple[int, Path] | None:
        """Hand over the current segment for sealing (under the lock); the next append opens a new one."""
        if self._fd is None or self._path is None:
            return None
        detached = (self._fd, self._path)
        self._fd, self._path, self._size, self._dirty = None, None, 0, False
        return detached

    def _seal(self, fd: int, path: Path) -> None:
        """fsync, close, rename ``.jsonl.open`` -> ``.jsonl`` (outside the lock), fsync the folder."""
        try:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
                os.rename(path, closed_name(path))
                fsync_dir(path.parent)
        except OSError:
            with self._lock:
                self.seal_errors += 1
            raise
        with self._lock:
            self.fsyncs += 1
            self.segments_sealed += 1

    def _abandon_after_failed_write(self) -> None:
        """A write failed, maybe half-way: cut the segment back to its last complete line and seal it,
        so that the next append starts a clean segment instead of gluing onto a partial line.
        Secondary errors are logged; the caller re-raises the original one."""
        good = self._size  # every byte up to here is a complete line written by this writer
        detached = self._detach()
        if detached is None:
            return
        fd, path = detached
        try:
            os.ftruncate(fd, good)
            os.fsync(fd)
        except OSError:
            log.exception("event log: could not truncate/fsync %s after a failed write", path.name)
        with contextlib.suppress(OSError):
            os.close(fd)
        try:
            os.rename(path, closed_name(path))
            self.segments_sealed += 1
        except OSError:
            self.seal_errors += 1
            log.exception("event log: could not seal %s after a failed write", path.name)

    # -- grouped fsync -----------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"event-log-fsync-{self.writer_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.cfg.fsync_interval_seconds):
            try:
                self.sync()
            except Exception:  # keep the thread: the lines are already in the OS, and the next tick retries
                log.exception("event log %s: background fsync failed", self.folder)

    def sync(self) -> bool:
        """fsync the current segment if it was written since the last fsync; seal it when it is older
        than ``segment_max_seconds`` (so an idle worker's events still reach ingestion). Returns
        whether anything was synced. The background thread calls this; callers may too."""
        with self._lock:
            if self._pid != os.getpid() or self._fd is None:
                return False
            if self._size > 0 and time.monotonic() - self._opened_at >= self.cfg.segment_max_seconds:
                to_seal = self._detach()
                fd = None
            else:
                to_seal = None
                if not self._dirty:
                    return False
                fd = os.dup(self._fd)  # the segment may be rotated meanwhile: fsync our own descriptor
                dir_dirty, self._dirty, self._dir_dirty = self._dir_dirty, False, False
        if to_seal is not None:
            self._seal(*to_seal)
            return True
        assert fd is not None
        try:
            os.fsync(fd)
            if dir_dirty:
                fsync_dir(self.folder)
        except OSError:
            with self._lock:
                self.fsync_errors += 1
                self._dirty = True
                self._dir_dirty = self._dir_dirty or dir_dirty
            raise
        finally:
            os.close(fd)
        with self._lock:
            self.fsyncs += 1
        return True

    # -- closing -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Seal the current segment (fsync, close, rename) and stop the fsync thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            detached = self._detach() if self._pid == os.getpid() else None
            thread, stop = self._thread, self._stop
        stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(_JOIN_SECONDS, 2 * self.cfg.fsync_interval_seconds))
            if thread.is_alive():
                log.warning("event log %s: fsync thread did not stop within the join timeout", self.folder)
        _LIVE.discard(self)
        if detached is not None:
            self._seal(*detached)

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"EventLog({self.folder}, writer={self.writer_id}, segment={self._path and self._path.name}, "
                f"events={self.events_written}, fsyncs={self.fsyncs})")


_LIVE: weakref.WeakSet[EventLog] = weakref.WeakSet()


def _reset_logs_in_child() -> None:
    for event_log in list(_LIVE):
        event_log._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_logs_in_child)


def _write_all(fd: int, data: bytes) -> None:
    """One ``os.write`` of the whole line; loops only if the kernel accepted part of it."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "os.write accepted no bytes")
        view = view[written:]
