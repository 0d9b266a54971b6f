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
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from assets.ingest.contract import Contract, ensure_contract
from assets.ingest.reader import BatchRejected, batch_meta, conform_to_contract, quarantine_file, read_batch_file
from config.schema import BATCH_ID_PATTERN, PipelineConfig
from lake.batch_files import INBOX, BatchFiles
from lake.delta import Lake
from lake.faults import crash_point
from lake.paths import sha256_file
from lake.tables import BATCH_COLUMN, BATCHES, BATCHES_SCHEMA, INGESTED_AT_COLUMN, RAW, SOURCE_FILE_COLUMN

log = logging.getLogger(__name__)


def valid_batch_id(batch_id: str) -> bool:
    return bool(BATCH_ID_PATTERN.match(batch_id))


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


def ingest_batch(batch_id: str, cfg: PipelineConfig, files: BatchFiles, lake: Lake,
                 run_id: str | None = None) -> IngestOutcome:
    """Read, check, type and store one batch in ``raw``; quarantine it if it is malformed.

    The file is found in the inbox (or the archive, for a re-run) of ``files`` and read from a
    local copy. Raises :class:`BatchRejected` after quarantining the file and recording the reason
    in the ``batches`` table.
    """
    file = files.find(batch_id)
    path = files.local_copy(file)
    sha, size = sha256_file(path), path.stat().st_size
    now = datetime.now(UTC)
    base = {"batch_id": batch_id, "source_file": file.name, "file_sha256": sha, "file_bytes": size,
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
        if file.folder == INBOX:
            quarantine_file(files, file, rejection, run_id)
        _record_batch(lake, {**base, "status": "quarantined", "reason_code": rejection.code,
                             "reason": rejection.message})
        raise
    typed = conformed.frame
    meta = batch_meta(frame, typed, contract.time)
    stored = typed.assign(**{BATCH_COLUMN: batch_id, SOURCE_FILE_COLUMN: file.name,
                             INGESTED_AT_COLUMN: pd.Timestamp(now).as_unit("us")})
    version = lake.overwrite_batch(RAW, stored, batch_id, schema=contract.arrow_schema())
    _record_batch(lake, {**base, **meta, "status": INGESTING,
                         "type_errors": json.dumps(conformed.type_errors),
                         "extra_columns": json.dumps(conformed.extra_columns)})
    crash_point("after_raw_commit")
    log.info("ingesting %s: %d rows into raw v%d", batch_id, len(typed), version)
    return IngestOutcome(batch_id, file.name, len(typed), version, meta, conformed.type_errors,
                         conformed.extra_columns, contract)


INGESTING, INGESTED, BLOCKED = "ingesting", "ingested", "blocked"  # `batches.status`, with quarantined


def complete_batch(lake: Lake, files: BatchFiles, batch_id: str, status: str = INGESTED) -> bool:
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
    waiting = [f for f in files.list(INBOX) if f.name == str(row["source_file"])]
    for file in waiting:
        files.archive(file)
    log.info("%s %s: every step committed, file archived", batch_id, status)
    return True
