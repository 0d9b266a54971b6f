"""Files the system keeps beside its tables (model artifacts, their compiled scorers and
interpretation files), under one root: a local folder or an object-store URI (``s3://bucket/prefix``).

One layer, pyarrow.fs, for both: it ships with the pyarrow the lock already pins (no new
dependency), reads and writes S3-compatible stores natively, and takes the same ``storage_options``
keys as delta-rs (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), so the lake and its files are
configured once. Readers on an object store get a local copy in a cache folder (the unpickler and
the drift step's caches need a real file); a copy is written to a temporary name and renamed, so a
crash never leaves a half-downloaded file under its real name, and every model file is checked
against its registry sha256 before it is loaded.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def s3_filesystem(storage_options: dict[str, str] | None) -> pafs.S3FileSystem:
    """A pyarrow S3 file system from delta-rs style storage options (missing keys: the AWS
    defaults, i.e. the environment and instance credentials)."""
    opts = {k.upper(): v for k, v in (storage_options or {}).items()}
    kwargs: dict[str, object] = {}
    endpoint = opts.get("AWS_ENDPOINT_URL") or opts.get("AWS_ENDPOINT")
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
        if kwargs["scheme"] == "http" and opts.get("AWS_ALLOW_HTTP", "").lower() != "true":
            raise ValueError(f"storage endpoint {endpoint} is plain http: set AWS_ALLOW_HTTP=true to allow it")
    if "AWS_ACCESS_KEY_ID" in opts:
        kwargs["access_key"] = opts["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = opts.get("AWS_SECRET_ACCESS_KEY", "")
    if "AWS_SESSION_TOKEN" in opts:
        kwargs["session_token"] = opts["AWS_SESSION_TOKEN"]
    if "AWS_REGION" in opts:
        kwargs["region"] = opts["AWS_REGION"]
    # path-style addressing works with every S3-compatible store (and AWS); virtual hosts need DNS
    kwargs["force_virtual_addressing"] = opts.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "").lower() == "true"
    return pafs.S3FileSystem(**kwargs)


def is_local_uri(uri: str) -> bool:
    """A plain path or ``file://`` URI (everything else is an object store)."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1  # a Windows drive letter parses as a scheme


class FileRoot:
    """The files under one root URI; keys are relative POSIX paths (``models/v3/model.joblib``)."""

    def __init__(self, root_uri: str | os.PathLike[str], storage_options: dict[str, str] | None = None,
                 cache_dir: Path | None = None) -> None:
        uri = str(root_uri)
        self.local = is_local_uri(uri)
        if self.local:
            self.root = Path(uri.removeprefix("file://")).resolve()
            self.uri = str(self.root)
            self.cache_dir = self.root
            return
        parsed = urlparse(uri)
        if parsed.scheme != "s3":
            raise ValueError(f"unsupported file root {uri}: a local folder or s3://bucket/prefix")
        self.uri = uri.rstrip("/")
        self._fs = s3_filesystem(storage_options)
        self._base = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
        if cache_dir is None:
            raise ValueError(f"file root {uri} is remote: a local cache folder is required")
        self.cache_dir = cache_dir

    def __repr__(self) -> str:
        return f"FileRoot({self.uri!r})"

    def _remote(self, key: str) -> str:
        return f"{self._base}/{_clean(key)}"

    def put_folder(self, folder: Path, prefix: str, *, link: bool = False) -> None:
        """Every file under ``folder`` to ``prefix/`` (replacing what is there). Local roots
        hard-link when ``link`` and the file system allows it (a 430 MiB forest is not copied)."""
        prefix = _clean(prefix)
        if self.local:
            target = self.root / prefix
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(folder, target, copy_function=_link_or_copy if link else shutil.copy2)
            return
        existing = self.list(prefix)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            with path.open("rb") as src, self._fs.open_output_stream(self._remote(key)) as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            existing.discard(key)
        for stale in existing:  # left by an earlier attempt at the same prefix
            self._fs.delete_file(self._remote(stale))

    def put_file(self, path: Path, key: str) -> None:
        """One file to ``key``, whole or not at all: a local root writes a temporary file beside
        the target, fsyncs and renames it; an object store's PUT makes the object visible only
        once complete. Putting the same bytes again is harmless (shipping relies on it)."""
        key = _clean(key)
        if self.local:
            target = self.root / key
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as dst, path.open("rb") as src:
                    shutil.copyfileobj(src, dst, _CHUNK)
                    dst.flush()
                    os.fsync(dst.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return
        with path.open("rb") as src, self._fs.open_output_stream(self._remote(key)) as dst:
            shutil.copyfileobj(src, dst, _CHUNK)

    def move(self, src_key: str, dst_key: str) -> None:
        """Rename a file (an object store copies, then deletes the source: a crash in between
        leaves both, which readers of the source prefix must tolerate). FileNotFoundError when
        the source is gone."""
        if self.local:
            target = self.root / _clean(dst_key)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.root / _clean(src_key), target)
            return
        self._require(src_key)
        self._fs.copy_file(self._remote(src_key), self._remote(dst_key))
        self._fs.delete_file(self._remote(src_key))

    def list(self, prefix: str) -> set[str]:
        """Keys of the files under ``prefix/``."""
        return set(self.list_sizes(prefix))

    def list_sizes(self, prefix: str) -> dict[str, int]:
        """Keys of the files under ``prefix/`` with their sizes, from one listing (no request per file)."""
        prefix = _clean(prefix)
        if self.local:
            base = self.root / prefix
            if not base.exists():
                return {}
            return {p.relative_to(self.root).as_posix(): p.stat().st_size for p in base.rglob("*") if p.is_file()}
        selector = pafs.FileSelector(self._remote(prefix), recursive=True, allow_not_found=True)
        return {info.path[len(self._base) + 1:]: int(info.size) for info in self._fs.get_file_info(selector)
                if info.type == pafs.FileType.File}

    def list_info(self, prefix: str) -> dict[str, tuple[int, int]]:
        """The files directly under ``prefix/`` (not in sub-folders): key -> (size, mtime in ns),
        from one listing. The pair changes when a file is replaced, which the inbox sensor uses."""
        prefix = _clean(prefix)
        if self.local:
            base = self.root / prefix
            if not base.is_dir():
                return {}
            out = {}
            for p in base.iterdir():
                st = p.stat()
                if p.is_file():
                    out[p.relative_to(self.root).as_posix()] = (st.st_size, st.st_mtime_ns)
            return out
        selector = pafs.FileSelector(self._remote(prefix), recursive=False, allow_not_found=True)
        return {info.path[len(self._base) + 1:]: (int(info.size), int(info.mtime_ns or 0))
                for info in self._fs.get_file_info(selector) if info.type == pafs.FileType.File}

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write a small file whole or not at all (see :meth:`put_file`)."""
        fd, tmp = tempfile.mkstemp(prefix=".write.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.put_file(Path(tmp), key)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        """Remove a file (FileNotFoundError when absent)."""
        if self.local:
            (self.root / _clean(key)).unlink()
            return
        self._require(key)
        self._fs.delete_file(self._remote(key))

    def exists(self, key: str) -> bool:
        if self.local:
            return (self.root / _clean(key)).is_file()
        return self._fs.get_file_info(self._remote(key)).type == pafs.FileType.File

    def read_bytes(self, key: str) -> bytes:
        """A file's bytes (FileNotFoundError when absent)."""
        if self.local:
            return (self.root / _clean(key)).read_bytes()
        self._require(key)
        with self._fs.open_input_stream(self._remote(key)) as src:
            return src.read()

    def local_path(self, key: str, *, refresh: bool = False) -> Path:
        """A local file holding ``key``: the file itself on a local root, else a copy in the cache
        folder (downloaded when missing or ``refresh``). FileNotFoundError when absent."""
        if self.local:
            return self.root / _clean(key)
        target = self.cache_dir / _clean(key)
        if target.exists() and not refresh:
            return target
        self._require(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as dst, self._fs.open_input_stream(self._remote(key)) as src:
                shutil.copyfileobj(src, dst, _CHUNK)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log.info("fetched %s/%s into %s", self.uri, key, target)
        return target

    def local_folder(self, prefix: str) -> Path:
        """A local folder holding every file under ``prefix/`` (see :meth:`local_path`); on an
        object store, files written into the returned folder stay local (a per-machine cache)."""
        if self.local:
            return self.root / _clean(prefix)
        for key in sorted(self.list(prefix)):
            self.local_path(key)
        folder = self.cache_dir / _clean(prefix)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _require(self, key: str) -> None:
        if not self.exists(key):
            raise FileNotFoundError(f"{self.uri}/{_clean(key)} does not exist")


def _clean(key: str) -> str:
    """A relative key without leading or trailing slashes; refuses ``..`` (keys come from tables)."""
    parts = [p for p in str(key).replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError(f"file key {key!r} leaves its root")
    return "/".join(parts)


def _link_or_copy(src: str, dst: str) -> str:
    """Hard-link, or copy when the two paths are on different file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst
