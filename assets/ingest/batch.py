"""Ingest one batch file into ``raw``, and close the batch once its last step committed.

Order of effects, chosen so a crash at any point loses nothing, duplicates nothing and leaves
no batch looking complete while it is not: read and check the file -> one Delta commit
replacing the batch in ``raw`` -> its ``batches`` row says ``ingesting`` -> quality, cleaned,
features, drift (each one predicate overwrite of the batch) -> :func:`complete_batch`: the row
says ``ingested`` (or ``blocked`` when a blocking quality check stopped the steps after it) ->
the file moves from the inbox to the archive. Until that move the file stays in the inbox, so
the next run (``run.py``, or ``inbox_sensor``'s retry of a failed run) ingests the batch again,
replacing every step's rows.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from assets.ingest.contract import Contract, ensure_contract
from assets.ingest.reader import BatchRejected, batch_meta, conform_to_contract, quarantine_file, read_batch_file
from config.schema import BATCH_ID_PATTERN, PipelineConfig
from lake.delta import Lake
from lake.faults import crash_point
from lake.paths import DataPaths, sha256_file
from lake.tables import BATCH_COLUMN, BATCHES, BATCHES_SCHEMA, INGESTED_AT_COLUMN, RAW, SOURCE_FILE_COLUMN

log = logging.getLogger(__name__)
IGNORED_SUFFIXES = (".tmp", ".reason.json", ".part")


def is_batch_file(path: Path) -> bool:
    """Files the pipeline picks up: not hidden, not temporary, not a quarantine reason."""
    return path.is_file() and not path.name.startswith(".") and not path.name.endswith(IGNORED_SUFFIXES)


def batch_id_of(path: Path) -> str:
    """The batch id (and Dagster partition key) of a file: its name without extensions."""
    return path.name.split(".")[0]


def valid_batch_id(batch_id: str) -> bool:
    return bool(BATCH_ID_PATTERN.match(batch_id))


def find_batch_file(paths: DataPaths, batch_id: str) -> Path:
    """The file of a batch: waiting in the inbox, or already archived (a re-run)."""
    for folder in (paths.inbox, paths.archive):
        found = sorted(p for p in folder.glob(f"{batch_id}.*") if is_batch_file(p) and batch_id_of(p) == batch_id)
        if len(found) > 1:
            raise FileExistsError(f"batch {batch_id!r} has several files in {folder}: {[p.name for p in found]}")
        if found:
            return found[0]
    in_quarantine = [p for p in paths.quarantine.glob(f"{batch_id}.*") if is_batch_file(p)]
    hint = f"; it was quarantined, see {in_quarantine[0]}.reason.json" if in_quarantine else ""
    raise FileNotFoundError(f"no file for batch {batch_id!r} in {paths.inbox} or {paths.archive}{hint}")


@dataclass(frozen=True)
class IngestOutcome:
    batch_id: str
    source_file: str
    rows: int
    raw_version: int
    meta: dict
    type_errors: dict[str, int]
    extra_columns: list[str]
    contract: Contract


def _record_batch(lake: Lake, row: dict) -> None:
    full = {f.name: row.get(f.name) for f in BATCHES_SCHEMA}
    # a predicate overwrite, not a merge: it rewrites only the file holding this batch's row
    lake.overwrite_batch(BATCHES, pd.DataFrame([full]), row["batch_id"], schema=BATCHES_SCHEMA, column="batch_id")


def ingest_batch(batch_id: str, cfg: PipelineConfig, paths: DataPaths, lake: Lake,
                 run_id: str | None = None) -> IngestOutcome:
    """Read, check, type and store one batch in ``raw``; quarantine it if it is malformed.

    Raises :class:`BatchRejected` after quarantining the file and recording the reason in the
    ``batches`` table.
    """
    path = find_batch_file(paths, batch_id)
    sha, size = sha256_file(path), path.stat().st_size
    now = datetime.now(UTC)
    base = {"batch_id": batch_id, "source_file": path.name, "file_sha256": sha, "file_bytes": size,
            "ingested_at": now, "run_id": run_id}
    try:
        frame = read_batch_file(path, cfg)
        try:
            contract = ensure_contract(lake, frame, cfg, batch_id)
        except ValueError as exc:
            raise BatchRejected("missing_columns" if "not in the batch" in str(exc) else "contract_conflict",
                                str(exc)) from exc
        conformed = conform_to_contract(frame, contract, cfg)
    except BatchRejected as rejection:
        if path.parent == paths.inbox:
            quarantine_file(path, paths.quarantine, batch_id, rejection, run_id)
        _record_batch(lake, {**base, "status": "quarantined", "reason_code": rejection.code,
                             "reason": rejection.message})
        raise
    typed = conformed.frame
    meta = batch_meta(frame, typed, contract.time)
    stored = typed.assign(**{BATCH_COLUMN: batch_id, SOURCE_FILE_COLUMN: path.name,
                             INGESTED_AT_COLUMN: pd.Timestamp(now).as_unit("us")})
    version = lake.overwrite_batch(RAW, stored, batch_id, schema=contract.arrow_schema())
    _record_batch(lake, {**base, **meta, "status": INGESTING,
                         "type_errors": json.dumps(conformed.type_errors),
                         "extra_columns": json.dumps(conformed.extra_columns)})
    crash_point("after_raw_commit")
    log.info("ingesting %s: %d rows into raw v%d", batch_id, len(typed), version)
    return IngestOutcome(batch_id, path.name, len(typed), version, meta, conformed.type_errors,
                         conformed.extra_columns, contract)


INGESTING, INGESTED, BLOCKED = "ingesting", "ingested", "blocked"  # `batches.status`, with quarantined


def complete_batch(lake: Lake, paths: DataPaths, batch_id: str, status: str = INGESTED) -> bool:
    """Close a batch whose last step committed: its ``batches`` row says ``status`` (``ingested``,
    or ``blocked`` when a blocking quality check stopped the steps after it), then its file moves
    from the inbox to the archive. A batch that is not ``ingesting`` (already closed, or re-checked
    by drift_job later) is left as it is; returns whether this call closed it.

    The row is written before the move: a crash between the two leaves a closed batch whose file
    is still in the inbox, which the next run ingests again (replacing the same rows) and closes."""
    rows = lake.read_batch(BATCHES, batch_id, column="batch_id") if lake.exists(BATCHES) else pd.DataFrame()
    if rows.empty or rows.iloc[-1]["status"] != INGESTING:
        return False
    row = {k: (None if pd.isna(v) else v) if not isinstance(v, (list, dict)) else v
           for k, v in rows.iloc[-1].to_dict().items()}
    _record_batch(lake, {**row, "status": status})
    crash_point("before_archive")
    path = paths.inbox / str(row["source_file"])
    if path.exists():
        paths.archive.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), paths.archive / path.name)
    log.info("%s %s: every step committed, file archived", batch_id, status)
    return True
