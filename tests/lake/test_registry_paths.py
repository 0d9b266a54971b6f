"""The registry's artifact paths are relative to the artifacts folder: a data root copied or
restored elsewhere loads its own files, rows written with absolute paths still load, and the next
registration rewrites them relative."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import joblib
import pytest

from lake.delta import Lake
from lake.registry import ModelRegistry, relative_artifact_path
from lake.tables import MODEL_REGISTRY, MODEL_REGISTRY_SCHEMA


def _registry(root: Path) -> ModelRegistry:
    return ModelRegistry(Lake(str(root / "lake")), root / "artifacts")


def _register(registry: ModelRegistry, value: object) -> int:
    work = registry.artifacts_dir / f"tmp-{value}"
    work.mkdir(parents=True)
    artifact = work / "model.joblib"
    joblib.dump({"model": value}, artifact)
    (work / "scorer.bin").write_bytes(f"scorer of {value}".encode())
    version = registry.register(artifact, {"algorithm": "test", "task": "classification"})
    shutil.rmtree(work)
    return version


@pytest.mark.parametrize("stored, relative", [
    ("models/v3/model.joblib", "models/v3/model.joblib"),
    ("/srv/old-root/artifacts/models/v12/model.joblib", "models/v12/model.joblib"),
    ("/data/models/archive/models/v2/x/model.joblib", "models/v2/x/model.joblib"),  # the last models/v<N>
    ("/elsewhere/model.joblib", None),
    ("/srv/models/vx/model.joblib", None),
])
def test_relative_artifact_path(stored: str, relative: str | None) -> None:
    assert relative_artifact_path(stored) == relative


def test_paths_are_stored_relative_and_a_copied_root_reads_its_own_files(tmp_path: Path) -> None:
    first = _registry(tmp_path / "a")
    version = _register(first, "one")
    row = first.get(version)
    assert row["artifact_path"] == f"models/v{version}/model.joblib"
    assert first.artifact_file(row) == tmp_path / "a" / "artifacts" / "models" / f"v{version}" / "model.joblib"

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")  # nothing of the original is left to read from
    copy = _registry(tmp_path / "b")
    assert copy.load(version) == {"model": "one"}
    assert copy.version_folder(copy.get(version)) == tmp_path / "b" / "artifacts" / "models" / f"v{version}"
    digest = hashlib.sha256(b"scorer of one").hexdigest()
    assert copy.read_verified(version, "scorer.bin", digest) == b"scorer of one"
    assert _register(copy, "two") == version + 1 and copy.load(version + 1) == {"model": "two"}
    assert not (tmp_path / "a").exists()  # the copy wrote nothing into the original's place


def test_absolute_paths_of_older_rows_load_and_the_next_registration_migrates_them(tmp_path: Path) -> None:
    old_root = tmp_path / "old"
    registry = _registry(old_root)
    v1 = _register(registry, "one")

    def as_before(current):  # how rows were written before paths became relative
        return current.assign(artifact_path=[str(old_root / "artifacts" / p) for p in current["artifact_path"]])

    registry.lake.rewrite(MODEL_REGISTRY, MODEL_REGISTRY_SCHEMA, as_before)
    assert registry.get(v1)["artifact_path"] == str(old_root / "artifacts" / "models" / "v1" / "model.joblib")

    shutil.copytree(old_root, tmp_path / "restored")
    shutil.rmtree(old_root)
    restored = _registry(tmp_path / "restored")
    assert restored.load(v1) == {"model": "one"}  # read by its models/v1 tail under the restored root
    v2 = _register(restored, "two")
    rows = restored.versions().set_index("version")["artifact_path"].to_dict()
    assert rows == {v1: "models/v1/model.joblib", v2: "models/v2/model.joblib"}
    assert not old_root.exists()
