"""Delta writes under concurrency and crashes: never a duplicate, never a half-written table."""

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from lake.delta import Lake
from lake.paths import PROJECT_ROOT


def _batch(batch_id: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({"_batch_id": [batch_id] * n, "x": range(n)})


def test_overwrite_batch_replaces_only_that_batch(lake: Lake) -> None:
    lake.overwrite_batch("raw", _batch("b1", 3), "b1")
    lake.overwrite_batch("raw", _batch("b2", 4), "b2")
    lake.overwrite_batch("raw", _batch("b1", 2), "b1")
    assert lake.read("raw").groupby("_batch_id").size().to_dict() == {"b1": 2, "b2": 4}
    with pytest.raises(ValueError, match="rows of other batches"):
        lake.overwrite_batch("raw", _batch("b3", 1), "b1")
    with pytest.raises(ValueError, match="invalid batch id"):
        lake.overwrite_batch("raw", _batch("x' OR '1'='1", 1), "x' OR '1'='1")


def test_concurrent_writers_of_different_batches_both_land(lake: Lake) -> None:
    errors: list[BaseException] = []

    def writer(batch_id: str) -> None:
        try:
            for n in range(1, 6):
                lake.overwrite_batch("raw", _batch(batch_id, n * 10), batch_id)
                lake.upsert("batches", pd.DataFrame({"batch_id": [batch_id], "n": [n]}), keys=["batch_id"])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"b{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert lake.read("raw").groupby("_batch_id").size().to_dict() == {"b0": 50, "b1": 50, "b2": 50}
    assert sorted(lake.read("batches")["n"].tolist()) == [5, 5, 5]


def test_failed_write_leaves_the_previous_version(lake: Lake) -> None:
    lake.overwrite_batch("raw", _batch("b1", 3), "b1")
    bad = pa.table({"_batch_id": ["b1"], "x": ["not a number"]})
    with pytest.raises(Exception, match=r"(?i)schema|cast|type"):
        lake.overwrite_batch("raw", bad, "b1")
    assert lake.version("raw") == 0 and lake.read("raw")["x"].tolist() == [0, 1, 2]


WRITER = """
import sys, pandas as pd
sys.path.insert(0, {root!r})
from lake.delta import Lake
lake = Lake({uri!r})
n = 3_000_000
df = pd.DataFrame({{"_batch_id": ["b1"] * n, "x": range(n), "y": ["pad" * 10] * n}})
print("start", flush=True)
lake.overwrite_batch("raw", df, "b1")
print("done", flush=True)
"""


def test_killed_writer_never_leaves_a_half_written_table(tmp_path: Path, lake: Lake) -> None:
    lake.overwrite_batch("raw", pd.DataFrame({"_batch_id": ["b1"] * 5, "x": range(5), "y": ["a"] * 5}), "b1")
    root = str(PROJECT_ROOT)
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=root, uri=lake.root_uri)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "start"
    time.sleep(0.3)  # inside the write of ~3M rows (about 1 s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    table = DeltaTable(lake.uri("raw"))
    count = table.count()
    # either the old batch or the whole new one: Delta commits are atomic
    assert (table.version(), count) in {(0, 5), (1, 3_000_000)}
    assert len(table.to_pyarrow_table(columns=["x"])) == count


def test_merge_adds_a_column_declared_later_to_an_older_table(lake: Lake) -> None:
    """A table written before a nullable column joined its schema (``ab_events.error``) takes it in
    the next merge's commit; older rows read it as null."""
    old = pa.schema([("request_id", pa.string()), ("prediction", pa.string())])
    new = pa.schema([*old, ("error", pa.string())])
    lake.merge("events", pd.DataFrame({"request_id": ["a", "b"], "prediction": ["1", "0"]}), ["request_id"],
               schema=old, insert_only=True)
    version, inserted = lake.merge("events", pd.DataFrame({"request_id": ["b", "c"], "prediction": ["0", "1"],
                                                          "error": [None, "boom"]}),
                                   ["request_id"], schema=new, insert_only=True)
    assert (version, inserted) == (1, 1)
    rows = lake.read("events").sort_values("request_id").reset_index(drop=True)
    assert list(rows.columns) == ["request_id", "prediction", "error"]
    assert rows["error"].tolist() == [None, None, "boom"]


def test_registering_links_the_artifact_instead_of_writing_it_twice(tmp_path: Path) -> None:
    """The trainers write under the artifacts folder, so registration hard-links: same inode, and
    the version survives the trainer removing its temporary folder."""
    from lake.registry import ModelRegistry

    registry = ModelRegistry(Lake(str(tmp_path / "lake")), tmp_path / "artifacts")
    work = tmp_path / "artifacts" / "tmp-run"
    (work / "interpretation").mkdir(parents=True)
    artifact = work / "model.joblib"
    artifact.write_bytes(b"model bytes" * 1000)
    (work / "interpretation" / "shap.json").write_text("{}")
    version = registry.register(artifact, {"algorithm": "test", "task": "classification"})
    stored = registry.artifact_file(registry.get(version))
    assert stored.stat().st_ino == artifact.stat().st_ino
    assert (stored.parent / "interpretation" / "shap.json").read_text() == "{}"
    shutil.rmtree(work)
    assert stored.read_bytes() == b"model bytes" * 1000 and stored.stat().st_nlink == 1
