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
    work = registry.files.cache_dir / f"tmp-{value}"
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
    ("/srv/old/artifacts/models/v4-0123456789ab/model.joblib", "models/v4-0123456789ab/model.joblib"),
])
def test_relative_artifact_path(stored: str, relative: str | None) -> None:
    assert relative_artifact_path(stored) == relative


def test_paths_are_stored_relative_and_a_copied_root_reads_its_own_files(tmp_path: Path) -> None:
    first = _registry(tmp_path / "a")
    version = _register(first, "one")
    row = first.get(version)
    folder = f"v{version}-{row['sha256'][:12]}"
    assert row["artifact_path"] == f"models/{folder}/model.joblib"
    assert first.artifact_file(row) == tmp_path / "a" / "artifacts" / "models" / folder / "model.joblib"

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")  # nothing of the original is left to read from
    copy = _registry(tmp_path / "b")
    assert copy.load(version) == {"model": "one"}
    assert copy.version_folder(copy.get(version)) == tmp_path / "b" / "artifacts" / "models" / folder
    digest = hashlib.sha256(b"scorer of one").hexdigest()
    assert copy.read_verified(version, "scorer.bin", digest) == b"scorer of one"
    assert _register(copy, "two") == version + 1 and copy.load(version + 1) == {"model": "two"}
    assert not (tmp_path / "a").exists()  # the copy wrote nothing into the original's place


def test_absolute_paths_of_older_rows_load_and_the_next_registration_migrates_them(tmp_path: Path) -> None:
    old_root = tmp_path / "old"
    registry = _registry(old_root)
    v1 = _register(registry, "one")
    relative_v1 = registry.get(v1)["artifact_path"]

    def as_before(current):  # how rows were written before paths became relative
        return current.assign(artifact_path=[str(old_root / "artifacts" / p) for p in current["artifact_path"]])

    registry.lake.rewrite(MODEL_REGISTRY, MODEL_REGISTRY_SCHEMA, as_before)
    assert registry.get(v1)["artifact_path"] == str(old_root / "artifacts" / relative_v1)

    shutil.copytree(old_root, tmp_path / "restored")
    shutil.rmtree(old_root)
    restored = _registry(tmp_path / "restored")
    assert restored.load(v1) == {"model": "one"}  # read by its models/v1-<sha> tail under the restored root
    v2 = _register(restored, "two")
    rows = restored.versions().set_index("version")["artifact_path"].to_dict()
    assert rows[v1] == relative_v1 and rows[v1].startswith("models/v1-")
    assert rows[v2] == f"models/v2-{restored.get(v2)['sha256'][:12]}/model.joblib"
    assert not old_root.exists()


def test_a_storage_root_puts_the_lake_and_the_model_files_on_the_object_store(tmp_path: Path) -> None:
    from config.loader import load_config
    from lake.open import open_lake, open_registry
    from lake.paths import DataPaths

    base = load_config()
    options = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    cfg = base.model_copy(update={"storage": base.storage.model_copy(
        update={"root_uri": "s3://bucket/team/", "storage_options": options})})
    paths = DataPaths(tmp_path)
    assert open_lake(cfg, paths).root_uri == "s3://bucket/team/lake"
    registry = open_registry(cfg, paths)
    assert not registry.files.local and registry.files.uri == "s3://bucket/team/artifacts"
    assert registry.files.cache_dir == tmp_path / "cache" / "artifacts"
    # an explicit lake_uri still wins for the tables; without a root everything stays under the data root
    lake_elsewhere = cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"lake_uri": "s3://other/lake"})})
    assert open_lake(lake_elsewhere, paths).root_uri == "s3://other/lake"
    local = open_registry(base, paths)
    assert local.files.local and local.files.root == tmp_path / "artifacts"
    assert open_lake(base, paths).root_uri == str(tmp_path / "lake")


def test_plain_http_endpoints_need_an_explicit_allow() -> None:
    from lake.files import FileRoot

    with pytest.raises(ValueError, match="AWS_ALLOW_HTTP"):
        FileRoot("s3://bucket/x", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, cache_dir=Path("/tmp/unused"))
    with pytest.raises(ValueError, match="leaves its root"):
        FileRoot(Path("/tmp")).local_path("../etc/passwd")
