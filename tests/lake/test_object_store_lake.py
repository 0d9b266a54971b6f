"""The lake on a real S3-compatible object store (SeaweedFS on 127.0.0.1): the same Lake code as on
a local folder, and concurrent writers in separate processes never lose or overwrite a commit,
because delta-rs writes every commit file with put-if-absent (``If-None-Match: *``), which the
store must honour (docs/operations.md "Lake on object storage")."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import joblib
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from devservers.object_store import ObjectStore, throwaway_object_store
from lake.delta import NO_INTERNAL_RETRY, Lake
from lake.files import FileRoot
from lake.registry import IntegrityError, ModelRegistry

pytestmark = pytest.mark.slow

COUNTER = pa.schema([pa.field("key", pa.string()), pa.field("n", pa.int64())])


@pytest.fixture(scope="module")
def store() -> ObjectStore:
    with throwaway_object_store() as started:
        yield started


def _lake(store: ObjectStore) -> Lake:
    return Lake(store.uri(f"roots/{uuid.uuid4().hex}/lake"), store.storage_options, commit_retries=30)


def test_the_lake_reads_and_writes_the_same_on_the_object_store(store: ObjectStore) -> None:
    lake = _lake(store)
    rows = pd.DataFrame({"batch_id": ["b1", "b1", "b2"], "x": [1.0, 2.0, 3.0]})
    assert lake.append("plain", rows) == 0
    # a predicate overwrite replaces exactly one batch
    assert lake.overwrite_batch("plain", pd.DataFrame({"batch_id": ["b1"], "x": [9.0]}), "b1") == 1
    back = lake.read("plain").sort_values("x").reset_index(drop=True)
    assert back.to_dict("list") == {"batch_id": ["b2", "b1"], "x": [3.0, 9.0]}
    assert lake.read_batch("plain", "b2")["x"].tolist() == [3.0]
    assert lake.version("plain") == 1 and lake.version("absent") is None
    assert lake.read("absent", missing_ok=True).empty
    written = lake.rewrite("counter", COUNTER, lambda cur: pd.DataFrame({"key": ["c"], "n": [len(cur)]}))
    assert written["n"].tolist() == [0]
    assert lake.rewrite("counter", COUNTER, lambda cur: None)["n"].tolist() == [0]  # no change, no commit
    assert lake.version("counter") == 0


_WRITER = textwrap.dedent("""
    import json, sys
    import pandas as pd, pyarrow as pa
    from lake.delta import Lake
    root, options, rounds, who = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    lake = Lake(root, options, commit_retries=60)
    schema = pa.schema([pa.field("key", pa.string()), pa.field("n", pa.int64())])
    for i in range(rounds):
        # compare-and-swap: read n, write n + 1 based on that snapshot
        lake.rewrite("counter", schema, lambda cur: cur.assign(n=cur["n"] + 1), retries=200)
        # plain appends from every writer at once (experiments, request-log ingestion)
        lake.append("events", pd.DataFrame({"who": [who], "i": [i]}))
    print("done", who)
""")


def test_concurrent_writers_on_the_object_store_lose_no_commit(store: ObjectStore) -> None:
    lake = _lake(store)
    lake.rewrite("counter", COUNTER, lambda cur: pd.DataFrame({"key": ["c"], "n": [0]}))
    writers, rounds = 3, 6
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, lake.root_uri, json.dumps(store.storage_options),
                               str(rounds), f"w{k}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(writers)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert out.strip().startswith("done")
    # every compare-and-swap increment survived: none was overwritten by a concurrent one
    assert lake.read("counter")["n"].tolist() == [writers * rounds]
    events = lake.read("events")
    assert len(events) == writers * rounds
    assert sorted(map(tuple, events[["who", "i"]].to_numpy().tolist())) == sorted(
        (f"w{k}", i) for k in range(writers) for i in range(rounds))
    # one version per commit: 1 create + 18 increments on counter; 18 appends on events (0..17)
    assert lake.version("counter") == writers * rounds
    assert lake.version("events") == writers * rounds - 1


def test_a_second_creator_of_a_control_table_loses_instead_of_overwriting(store: ObjectStore) -> None:
    lake = _lake(store)
    lake.rewrite("aliases", COUNTER, lambda cur: pd.DataFrame({"key": ["prod"], "n": [1]}))
    # a writer that missed the creation and writes mode="error" must fail, not replace the table
    with pytest.raises(Exception, match=r"(?i)exists"):
        write_deltalake(lake.uri("aliases"), pa.table({"key": ["prod"], "n": [2]}, schema=COUNTER), mode="error",
                        storage_options=store.storage_options)
    assert lake.read("aliases")["n"].tolist() == [1]


def test_a_commit_from_a_stale_snapshot_is_refused_by_the_store(store: ObjectStore) -> None:
    """The property everything above rests on: two writers at the same version race for the same
    commit file ``_delta_log/<v+1>.json``; the store's put-if-absent lets exactly one win."""
    lake = _lake(store)
    lake.append("t", pd.DataFrame({"x": [1]}))
    first, second = (DeltaTable(lake.uri("t"), storage_options=store.storage_options) for _ in range(2))
    write_deltalake(first, pa.table({"x": [2]}), mode="append", commit_properties=NO_INTERNAL_RETRY)
    with pytest.raises(CommitFailedError):
        write_deltalake(second, pa.table({"x": [3]}), mode="append", commit_properties=NO_INTERNAL_RETRY)
    assert sorted(lake.read("t")["x"].tolist()) == [1, 2] and lake.version("t") == 1


def _registry_on(store: ObjectStore, prefix: str, machine: Path) -> ModelRegistry:
    """A registry whose tables and files live under ``prefix`` on the store, as one machine sees
    it (its own cache folder)."""
    lake = Lake(store.uri(f"{prefix}/lake"), store.storage_options)
    return ModelRegistry(lake, FileRoot(store.uri(f"{prefix}/artifacts"), store.storage_options,
                                        cache_dir=machine / "cache"))


def test_a_model_registered_on_one_machine_loads_on_another_and_corruption_is_refused(
        store: ObjectStore, tmp_path: Path) -> None:
    prefix = f"roots/{uuid.uuid4().hex}"
    trainer = _registry_on(store, prefix, tmp_path / "trainer")
    work = trainer.files.cache_dir / "tmp-run"
    (work / "interpretation").mkdir(parents=True)
    joblib.dump({"model": "one"}, work / "model.joblib")
    (work / "scorer.bin").write_bytes(b"compiled")
    (work / "interpretation" / "importance.json").write_text('{"x": 1.0}')
    version = trainer.register(work / "model.joblib", {"algorithm": "test", "task": "classification"})
    shutil.rmtree(work)
    row = trainer.get(version)
    folder = f"models/v{version}-{row['sha256'][:12]}"
    assert trainer.files.list(folder) == {f"{folder}/model.joblib", f"{folder}/scorer.bin",
                                          f"{folder}/interpretation/importance.json"}

    router = _registry_on(store, prefix, tmp_path / "router")  # another machine: an empty cache
    assert router.load(version) == {"model": "one"}
    assert (tmp_path / "router" / "cache" / folder / "model.joblib").is_file()
    digest = hashlib.sha256(b"compiled").hexdigest()
    assert router.read_verified(version, "scorer.bin", digest) == b"compiled"
    local = router.version_folder(row)
    assert json.loads((local / "interpretation" / "importance.json").read_text()) == {"x": 1.0}

    # the object in the store replaced behind the registry's back: refused on a fresh machine, and
    # on a machine whose cached copy is fine but whose fetch of the changed object would differ
    fs = router.files._fs
    with fs.open_output_stream(f"{store.bucket}/{prefix}/artifacts/{folder}/model.joblib") as out:
        out.write(b"not the registered model")
    third = _registry_on(store, prefix, tmp_path / "third")
    with pytest.raises(IntegrityError, match=f"model version {version}"):
        third.load(version)
    with pytest.raises(IntegrityError, match=r"scorer\.bin"):
        third.read_verified(version, "scorer.bin", hashlib.sha256(b"other").hexdigest())
    with pytest.raises(FileNotFoundError, match="missing"):
        third.read_verified(version, "absent.bin", digest)


_REGISTRANT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import joblib
    from lake.delta import Lake
    from lake.files import FileRoot
    from lake.registry import ModelRegistry
    uri, options, machine, who = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    registry = ModelRegistry(Lake(uri + "/lake", options, commit_retries=60),
                             FileRoot(uri + "/artifacts", options, cache_dir=machine / "cache"))
    versions = []
    for i in range(3):
        work = machine / "cache" / f"tmp-{i}"
        work.mkdir(parents=True)
        joblib.dump({"who": who, "i": i}, work / "model.joblib")
        versions.append(registry.register(work / "model.joblib", {"algorithm": who, "task": "classification"}))
    print(json.dumps(versions))
""")


def test_concurrent_registrations_on_the_object_store_get_distinct_versions_and_keep_their_files(
        store: ObjectStore, tmp_path: Path) -> None:
    uri = store.uri(f"roots/{uuid.uuid4().hex}")
    procs = [subprocess.Popen([sys.executable, "-c", _REGISTRANT, uri, json.dumps(store.storage_options),
                               str(tmp_path / who), who], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("a", "b")]
    outs = [p.communicate(timeout=600) for p in procs]
    claimed: dict[str, list[int]] = {}
    for who, p, (out, err) in zip("ab", procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        claimed[who] = json.loads(out.strip().splitlines()[-1])
    assert sorted(claimed["a"] + claimed["b"]) == [1, 2, 3, 4, 5, 6]
    reader = _registry_on(store, uri.split(f"{store.bucket}/", 1)[1], tmp_path / "reader")
    for who, versions in claimed.items():
        for i, version in enumerate(versions):
            # every version's file is the one its registrant wrote: no race overwrote another's
            assert reader.load(version) == {"who": who, "i": i}
