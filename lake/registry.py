"""Model registry in the lake: versions in ``model_registry``, aliases in ``model_aliases``.

- A version's artifact is a file under ``models/v<N>-<sha256[:12]>/`` of the artifacts root (the
  data root's ``artifacts/`` folder, or ``<storage.root_uri>/artifacts`` on an object store; see
  lake/files.py); its sha256 is in the registry row and is checked before the file is unpickled
  (pickles execute code on load).
- ``artifact_path`` is relative to the artifacts root (``models/v3-1a2b3c4d5e6f/model.joblib``), so a data
  root copied or restored elsewhere loads its own files (:meth:`ModelRegistry.artifact_file`).
  Rows written before that held absolute paths: they are read by their ``models/v<N>/...`` tail
  under the current folder, and the next registration rewrites them relative (one commit of the
  table it rewrites anyway; docs/lifecycle.md).
- ``model_aliases`` keeps every alias change as a row (alias, version, from_version, when, who,
  why, experiment); the current alias is the latest change. Each change set is one Delta commit
  that rewrites this small table from the snapshot it read (:meth:`Lake.rewrite`), so two
  concurrent writers conflict and the loser retries on the new state: no lost update.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from lake.delta import Lake
from lake.files import FileRoot
from lake.paths import route_pycaret_log, sha256_file
from lake.tables import MODEL_ALIASES, MODEL_ALIASES_SCHEMA, MODEL_REGISTRY, MODEL_REGISTRY_SCHEMA

log = logging.getLogger(__name__)
ALIASES = ("prod", "staging", "previous", "fallback")


def relative_artifact_path(stored: str) -> str | None:
    """An ``artifact_path`` as stored, relative to the artifacts folder: unchanged when already
    relative; an absolute path of an older row cut to its ``models/v<N>/...`` tail; None for an
    absolute path without such a tail (not a file this registry placed)."""
    path = Path(stored)
    if not path.is_absolute():
        return path.as_posix()
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "models" and parts[i + 1].startswith("v") and parts[i + 1][1:].split("-")[0].isdigit():
            return Path(*parts[i:]).as_posix()
    return None


class IntegrityError(RuntimeError):
    """An artifact's bytes do not match the sha256 recorded in the registry."""


@dataclass(frozen=True)
class AliasChange:
    alias: str
    version: int | None  # None clears the alias


class ModelRegistry:
    """Versions, artifacts and aliases of one lake."""

    def __init__(self, lake: Lake, artifacts: Path | FileRoot) -> None:
        self.lake = lake
        # the files' root: a local folder, or an object store with a local cache (lake/files.py)
        self.files = artifacts if isinstance(artifacts, FileRoot) else FileRoot(artifacts)

    # ---- versions -------------------------------------------------------------------------
    def versions(self) -> pd.DataFrame:
        return self.lake.read(MODEL_REGISTRY, missing_ok=True)

    def get(self, version: int) -> dict[str, Any]:
        rows = self.lake.read(MODEL_REGISTRY, where=f"version = {int(version)}", missing_ok=True) \
            if self.lake.exists(MODEL_REGISTRY) else pd.DataFrame()
        if rows.empty:
            raise KeyError(f"model version {version} is not in the registry")
        return rows.iloc[0].to_dict()

    def register(self, artifact: Path, row: dict[str, Any]) -> int:
        """Copy the artifact's folder (the model file and its interpretation files) to its
        version folder and add the registry row; returns the version. Files are hard-linked when
        the folder is on the same file system (the trainers write under the artifacts folder): a
        430 MiB forest is then not written twice.

        The version number is claimed by a compare-and-swap commit of the registry table, so two
        concurrent registrations get different numbers. The files are in place before the row
        that points to them is committed.
        """
        digest = sha256_file(artifact)
        size = artifact.stat().st_size
        full = {f.name: row.get(f.name) for f in MODEL_REGISTRY_SCHEMA}
        for key in ("hyperparameters", "cv_metrics", "holdout_metrics", "training_batches", "holdout_batches",
                    "library_versions", "input_schema", "gate", "interpretation", "scorer_check"):
            if full[key] is not None and not isinstance(full[key], str):
                full[key] = json.dumps(full[key], default=str, sort_keys=True)
        full.update(sha256=digest, artifact_bytes=size, created_at=full.get("created_at") or datetime.now(UTC))
        claimed: dict[str, Any] = {}

        def add(current: pd.DataFrame) -> pd.DataFrame:
            version = int(current["version"].max()) + 1 if len(current) else 1
            # the digest in the folder's name: a registration that loses the race for this version
            # number to another artifact writes beside the winner's files, never over them
            folder = f"models/v{version}-{digest[:12]}"
            self.files.put_folder(artifact.parent, folder, link=True)
            claimed.update(version=version)
            relative = f"{folder}/{artifact.name}"
            new = pd.DataFrame([{**full, "version": version, "artifact_path": relative}])
            if len(current):  # the one-time migration of older rows' absolute paths, in this same commit
                current = current.assign(artifact_path=[relative_artifact_path(p) or p
                                                        for p in current["artifact_path"]])
            return pd.concat([current, new], ignore_index=True) if len(current) else new

        self.lake.rewrite(MODEL_REGISTRY, MODEL_REGISTRY_SCHEMA, add)
        log.info("registered model version %d (%s, sha256 %s)", claimed["version"], full.get("algorithm"), digest[:12])
        return int(claimed["version"])

    def artifact_key(self, row: dict[str, Any]) -> str | None:
        """The key of a row's artifact under the files' root (None: an old absolute path that no
        registry placed, read where it says)."""
        return relative_artifact_path(str(row["artifact_path"]))

    def artifact_file(self, row: dict[str, Any]) -> Path:
        """A local file holding a row's artifact: under a local root the file itself, under an
        object store a cached copy (fetched when missing; check its sha256 before trusting it)."""
        key = self.artifact_key(row)
        if key is None:
            stored = str(row["artifact_path"])
            log.warning("model version %s: artifact_path %s is outside the artifacts folder", row.get("version"),
                        stored)
            return Path(stored)
        return self.files.local_path(key)

    def version_folder(self, row: dict[str, Any]) -> Path:
        """A local folder with a version's files (the model, its compiled scorer, interpretation
        files, the drift step's caches). Under an object store it is the local cache: files
        written into it (the drift caches) stay on this machine."""
        key = self.artifact_key(row)
        if key is None:
            return Path(str(row["artifact_path"])).parent
        return self.files.local_folder(key.rsplit("/", 1)[0])

    def load(self, version: int) -> Any:
        """Unpickle a version's artifact after verifying its sha256 against the registry."""
        import joblib

        route_pycaret_log()  # unpickling a PyCaret pipeline imports PyCaret, which opens its log
        row = self.get(version)
        try:
            path = self.artifact_file(row)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"artifact of model version {version} is missing: {exc}") from exc
        if not path.exists():
            raise FileNotFoundError(f"artifact of model version {version} is missing: {path}")
        actual = sha256_file(path)
        if actual != row["sha256"] and not self.files.local:  # a stale cached copy: fetch it again once
            path = self.files.local_path(self.artifact_key(row), refresh=True)
            actual = sha256_file(path)
        if actual != row["sha256"]:
            raise IntegrityError(f"refusing to load model version {version}: {path} has sha256 {actual}, "
                                 f"the registry says {row['sha256']} (file changed or corrupted)")
        return joblib.load(path)

    def read_verified(self, version: int, name: str, sha256: str) -> bytes:
        """The bytes of another file of a version's artifact folder (e.g. its compiled scorer),
        after checking them against ``sha256`` from the registry row."""
        import hashlib

        row = self.get(version)
        key = self.artifact_key(row)
        where = f"{key.rsplit('/', 1)[0]}/{name}" if key is not None else None
        try:
            data = self.files.read_bytes(where) if where is not None \
                else (Path(str(row["artifact_path"])).parent / name).read_bytes()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{name} of model version {version} is missing: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(f"refusing to load {name} of model version {version}: sha256 {actual}, "
                                 f"the registry says {sha256} (file changed or corrupted)")
        return data

    # ---- aliases --------------------------------------------------------------------------
    def alias_history(self) -> pd.DataFrame:
        return self.lake.read(MODEL_ALIASES, missing_ok=True)

    def aliases(self) -> dict[str, int]:
        """Current alias -> version (cleared aliases are absent)."""
        return current_aliases(self.alias_history())

    def set_aliases(self, changes: list[AliasChange], *, actor: str, reason: str,
                    experiment_id: str | None = None, expect: dict[str, int | None] | None = None,
                    retries: int = 20) -> dict[str, int]:
        """Apply alias changes in one commit; returns the new current aliases.

        ``expect`` makes it a compare-and-set: if an alias no longer has the expected version
        (another writer moved it), a ValueError is raised instead of overwriting their change.
        """
        for change in changes:
            if change.alias not in ALIASES:
                raise ValueError(f"unknown alias {change.alias!r}; expected one of {ALIASES}")
        written: dict[str, int] = {}

        def change(history: pd.DataFrame) -> pd.DataFrame:
            now = current_aliases(history)
            for alias, wanted in (expect or {}).items():
                if now.get(alias) != wanted:
                    raise ValueError(f"alias {alias!r} is at {now.get(alias)}, expected {wanted}: changed concurrently")
            seq = int(history["change_id"].max()) + 1 if len(history) else 1
            stamp = datetime.now(UTC)
            rows = pd.DataFrame([{"change_id": seq + i, "alias": c.alias, "version": c.version,
                                  "from_version": now.get(c.alias), "changed_at": stamp, "actor": actor,
                                  "reason": reason, "experiment_id": experiment_id} for i, c in enumerate(changes)])
            new = pd.concat([history, rows], ignore_index=True) if len(history) else rows
            written.clear()
            written.update(current_aliases(new))
            return new

        self.lake.rewrite(MODEL_ALIASES, MODEL_ALIASES_SCHEMA, change, retries=retries)
        log.info("aliases now %s (%s: %s)", written, actor, reason)
        return dict(written)


def current_aliases(history: pd.DataFrame) -> dict[str, int]:
    """Latest change per alias; an alias whose latest change cleared it is absent."""
    if history.empty:
        return {}
    latest = history.sort_values("change_id").groupby("alias").tail(1)
    return {r.alias: int(r.version) for r in latest.itertuples() if pd.notna(r.version)}
