"""Read a batch file, check it against the schema contract, type it; reject what is malformed.

A rejected batch raises :class:`BatchRejected` with a machine-readable code; the caller moves the
file to the quarantine folder with a ``.reason.json`` beside it (:func:`quarantine_file`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from assets.ingest.contract import Contract
from assets.ingest.limits import FileRejected, Limits, check_before_parsing, check_frame
from config.schema import PipelineConfig
from lake.batch_files import BatchFile, BatchFiles
from serving.parsing import as_text, parse_numeric, parse_time, share
from stream.sources import detect_format, read_file

log = logging.getLogger(__name__)

REASON_CODES = {
    "unreadable": "the file cannot be parsed as its format",
    "encoding": "the bytes are not valid in the configured encoding",
    "empty": "the file has no rows",
    "missing_columns": "required columns of the schema contract are absent",
    "extra_columns": "columns outside the schema contract (ingest.extra_columns: reject)",
    "wrong_types": "values of a typed column do not parse as that type",
    "target_all_missing": "no row has a target value",
    "contract_conflict": "the configuration contradicts the lake's schema contract",
    "invalid_name": "the file name does not give a valid batch id",
    # bounded reading (assets/ingest/limits.py): checked before pandas parses the whole file
    "too_large": "the file (for XLSX or a compressed CSV: its decompressed bytes) is larger than "
                 "ingest.max_file_bytes",
    "line_too_long": "a CSV record (line breaks inside quotes included) is longer than ingest.max_line_bytes",
    "cell_too_long": "a text cell has more characters than ingest.max_cell_chars",
    "too_many_rows": "the file has more data rows than ingest.max_rows",
    "too_many_columns": "the header or a CSV record has more fields than ingest.max_columns",
    "duplicate_columns": "the header gives the same name (after trimming spaces) to several columns",
}


class BatchRejected(Exception):
    """A batch that must go to quarantine; ``code`` is one of :data:`REASON_CODES`."""

    def __init__(self, code: str, message: str, details: dict | None = None) -> None:
        assert code in REASON_CODES, code
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


def read_batch_file(path: Path, cfg: PipelineConfig) -> pd.DataFrame:
    """Read a batch as it arrived (CSV cells as text); raise BatchRejected if it cannot be read.

    The limits of ``ingest:`` (size, record length, rows, columns, unique header names) are checked
    before pandas parses the whole file, so a hostile file is quarantined after reading at most its
    limit's worth of bytes; cell lengths and, as the authority, rows / columns / names once more on
    the parsed frame (:mod:`assets.ingest.limits`).
    """
    if path.stat().st_size == 0:
        raise BatchRejected("empty", f"{path.name} is 0 bytes")
    try:
        fmt = detect_format(path)
    except ValueError as exc:
        raise BatchRejected("unreadable", str(exc)) from exc
    limits = Limits.from_config(cfg.ingest)
    try:
        pre = check_before_parsing(path, fmt, limits, cfg.ingest.encoding)
        df = read_file(path, fmt, as_strings=True, encoding=cfg.ingest.encoding)
    except FileRejected as exc:
        raise BatchRejected(exc.code, exc.message, exc.details) from exc
    except UnicodeDecodeError as exc:
        raise BatchRejected("encoding", f"{path.name} is not valid {cfg.ingest.encoding}: {exc.reason} "
                            f"at byte {exc.start}", {"byte_offset": exc.start}) from exc
    except pd.errors.EmptyDataError as exc:
        raise BatchRejected("empty", f"{path.name} has no header and no rows") from exc
    except Exception as exc:  # parser errors of three formats: report type and text
        raise BatchRejected("unreadable", f"{path.name}: {type(exc).__name__}: {exc}") from exc
    if df.empty:
        raise BatchRejected("empty", f"{path.name} has a header but no rows",
                            {"columns": list(map(str, df.columns))})
    df.columns = [str(c).strip() for c in df.columns]
    try:
        check_frame(path.name, df, limits, pre)
    except FileRejected as exc:
        raise BatchRejected(exc.code, exc.message, exc.details) from exc
    return df


@dataclass
class ConformedBatch:
    """A batch typed to the contract, with what had to be changed to get there."""

    frame: pd.DataFrame
    type_errors: dict[str, int] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)


def conform_to_contract(df: pd.DataFrame, contract: Contract, cfg: PipelineConfig) -> ConformedBatch:
    """Check required columns and types, and return the batch in contract column order and types.

    A typed column whose non-empty values fail to parse in more than
    ``ingest.max_type_error_share`` of rows rejects the batch (wrong types); below that share
    the failures become missing values and are counted in ``type_errors``.
    """
    missing = [c for c in contract.required if c not in df.columns]
    if missing:
        raise BatchRejected("missing_columns", f"required column(s) {missing} absent",
                            {"missing": missing, "present": list(df.columns)})
    known = set(contract.names())
    extra = [c for c in df.columns if c not in known]
    if extra and cfg.ingest.extra_columns == "reject":
        raise BatchRejected("extra_columns", f"column(s) {extra} are not in the schema contract",
                            {"extra": extra})
    out: dict[str, pd.Series] = {}
    errors: dict[str, int] = {}
    bad: dict[str, dict] = {}
    for spec in contract.columns:
        if spec.name not in df.columns:  # an ignored column may be absent
            out[spec.name] = pd.Series([None] * len(df), index=df.index, dtype=object)
            continue
        values = df[spec.name]
        if spec.dtype == "float64":
            parsed = parse_numeric(values)
        elif spec.dtype == "timestamp":
            parsed = parse_time(values)
        else:
            parsed = as_text(values)
        failed = values.notna() & parsed.isna()
        n_failed = int(failed.sum())
        if n_failed:
            errors[spec.name] = n_failed
            fail_share = n_failed / max(int(values.notna().sum()), 1)
            if fail_share > cfg.ingest.max_type_error_share or (spec.role == "time" and parsed.isna().all()):
                bad[spec.name] = {"expected": spec.dtype, "failed_share": round(fail_share, 4),
                                  "examples": values[failed].astype(str).unique()[:3].tolist()}
        out[spec.name] = parsed
    if bad:
        desc = "; ".join(f"{c}: {d['failed_share']:.0%} of values are not {d['expected']} "
                         f"(e.g. {d['examples']})" for c, d in bad.items())
        raise BatchRejected("wrong_types", desc, {"columns": bad})
    frame = pd.DataFrame(out, index=df.index).reset_index(drop=True)
    if frame[contract.target].isna().all():
        raise BatchRejected("target_all_missing", f"target {contract.target!r} is missing in all "
                            f"{len(frame)} rows")
    return ConformedBatch(frame, errors, extra)


def batch_meta(raw: pd.DataFrame, typed: pd.DataFrame, time_column: str) -> dict:
    """The meta-parameters a streaming system tracks per batch (as read and as typed)."""
    return {
        "row_count": len(typed),
        "time_min": typed[time_column].min(),
        "time_max": typed[time_column].max(),
        "columns": json.dumps(list(raw.columns)),
        "dtypes": json.dumps({c: str(t) for c, t in typed.dtypes.items()}),
        "missing_share": float(typed.isna().to_numpy().mean()) if typed.size else 0.0,
        "duplicate_share": share(typed.duplicated()),
    }


def quarantine_file(files: BatchFiles, file: BatchFile, rejection: BatchRejected,
                    run_id: str | None = None) -> str:
    """Move a rejected file to the quarantine of ``files`` with ``<name>.reason.json`` beside it
    (written first: a crash in between leaves the file in the inbox to be retried, never a
    quarantined file without its reason); returns where the file went."""
    reason = {"batch_id": file.batch_id, "file": file.name, "code": rejection.code,
              "reason": rejection.message, "explanation": REASON_CODES[rejection.code],
              "details": rejection.details, "quarantined_at": datetime.now(UTC).isoformat(),
              "run_id": run_id}
    target = files.quarantine(file, reason)
    log.warning("quarantined %s (%s) to %s: %s", file.name, rejection.code, target, rejection.message)
    return target
