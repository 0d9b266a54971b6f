"""The inbox, archive and quarantine on a storage root: the same behaviour on a local folder and
(slow) on a real S3-compatible object store (SeaweedFS)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devservers.object_store import throwaway_object_store
from lake.batch_files import ARCHIVE, INBOX, QUARANTINE, BatchFiles
from lake.files import FileRoot


def _file(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def _exercise(files: BatchFiles, scratch: Path) -> None:
    """Every operation the sensor, ingestion and the emulator use, with the values they rely on."""
    assert files.list(INBOX) == []
    first = files.put(_file(scratch, "batch_00001.csv", b"a,b\n1,2\n"))
    files.put(_file(scratch, "batch_00002.parquet", b"xyz"))
    # an upstream's temporary name and a quarantine reason are never batches
    files.root.write_bytes(f"{INBOX}/.batch_00003.csv.tmp", b"half")
    files.root.write_bytes(f"{INBOX}/batch_00004.csv.reason.json", b"{}")
    listed = files.list(INBOX)
    assert [(f.name, f.batch_id, f.size) for f in listed] == [("batch_00001.csv", "batch_00001", 8),
                                                              ("batch_00002.parquet", "batch_00002", 3)]
    assert listed[0].signature == first.signature and first.key == "inbox/batch_00001.csv"
    assert files.local_copy(listed[0]).read_bytes() == b"a,b\n1,2\n"

    time.sleep(1.1)  # object stores keep whole seconds: a replacement a second later is seen
    files.put(_file(scratch, "batch_00001.csv", b"a,b\n1,2\n3,4\n"))
    replaced = files.find("batch_00001")
    assert replaced.signature != first.signature and replaced.size == 12
    assert files.local_copy(replaced).read_bytes() == b"a,b\n1,2\n3,4\n"  # fetched again, not the stale copy

    files.archive(replaced)
    assert [f.name for f in files.list(INBOX)] == ["batch_00002.parquet"]
    archived = files.find("batch_00001")  # a re-run finds it in the archive
    assert (archived.folder, archived.name) == (ARCHIVE, "batch_00001.csv")

    target = files.quarantine(files.find("batch_00002"), {"code": "unreadable", "reason": "not parquet"})
    assert target == f"{files.location(QUARANTINE)}/batch_00002.parquet"
    assert files.reason("batch_00002.parquet") == {"code": "unreadable", "reason": "not parquet"}
    assert [f.name for f in files.list(QUARANTINE)] == ["batch_00002.parquet"]  # its reason is no batch
    with pytest.raises(FileNotFoundError, match=r"batch_00002\.parquet\.reason\.json"):
        files.find("batch_00002")  # the error names the reason to read

    files.put(_file(scratch, "batch_00001.parquet", b"dup"))
    files.root.move(f"{INBOX}/batch_00001.parquet", f"{ARCHIVE}/batch_00001.parquet")
    with pytest.raises(FileExistsError, match="several files"):
        files.find("batch_00001")


def test_batch_files_on_a_local_root(tmp_path: Path) -> None:
    files = BatchFiles(FileRoot(tmp_path / "root"))
    _exercise(files, tmp_path / "scratch")
    assert files.location(INBOX) == f"{(tmp_path / 'root').resolve()}/inbox"
    # a local root reads the file in place: no copy made
    assert not (tmp_path / "root" / "cache").exists()


def test_the_reason_is_written_before_the_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = BatchFiles(FileRoot(tmp_path / "root"))
    file = files.put(_file(tmp_path / "scratch", "batch_00001.csv", b"bad"))

    def crash(src: str, dst: str) -> None:
        raise OSError("killed between the reason and the move")

    monkeypatch.setattr(files.root, "move", crash)
    with pytest.raises(OSError, match="killed"):
        files.quarantine(file, {"code": "empty"})
    # the file is still in the inbox, to be retried; the reason is already there for the retry to replace
    assert [f.name for f in files.list(INBOX)] == ["batch_00001.csv"]
    assert files.reason("batch_00001.csv") == {"code": "empty"}


@pytest.fixture(scope="module")
def bucket_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileRoot]:
    with throwaway_object_store() as store:
        yield FileRoot(store.uri("batch-files"), store.storage_options,
                       cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
def test_batch_files_on_the_object_store(bucket_root: FileRoot, tmp_path: Path) -> None:
    files = BatchFiles(bucket_root)
    _exercise(files, tmp_path / "scratch")
    assert files.location(INBOX).startswith("s3://") and files.location(INBOX).endswith("/batch-files/inbox")
    # copies of archived or quarantined files do not pile up in the cache
    assert not list((bucket_root.cache_dir / QUARANTINE).glob("*"))
