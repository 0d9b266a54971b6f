"""Bounds on a batch file, checked before pandas parses it and once more on the parsed frame.

pandas' CSV parser costs per *field*, not per byte: a header of 33,000 repeated names took 23 s and
one of 67,000 took 104 s (renaming the copies is quadratic, pandas 2.1), a data record of 200,000
fields 31 s, while a 400 KB line without delimiters takes 6 ms. One CSV line of 50 MB held
``read_csv`` for 15 minutes. So nothing reaches pandas before a scan in bounded memory
has checked the file's size, its longest record, the fields of every record and its row count:

- CSV: :func:`scan_csv` reads the file in binary chunks of :data:`CHUNK_BYTES` and finds quotes,
  delimiters and line breaks with numpy. It stops at the first chunk that breaks a limit, so a
  hostile file costs at most ``limit + CHUNK_BYTES`` bytes of reading.
- Parquet: the footer gives rows and columns before any data page is read; text cells are measured
  on the Arrow columns, before pandas makes a Python string of any.
- XLSX: the zip directory gives the decompressed size of the XML openpyxl would parse, the
  sheet's ``<dimension>`` tag its declared rows and columns.

The parsed frame is checked again (:func:`check_frame`): rows, columns and duplicate names are
the authority there (a Parquet footer or an XLSX dimension can be wrong), and the cells of an XLSX
file, or of a CSV file with a record longer than the cell limit, are measured there (a CSV cell
has at most as many characters as its record has bytes, so short records need no measuring).

Violations raise :class:`FileRejected` with a code of ``assets.ingest.reader.REASON_CODES``; the
reader turns it into a ``BatchRejected`` (this module stays below the reader, which imports it).
"""

from __future__ import annotations

import codecs
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from config.schema import IngestConfig

# 1 MiB: numpy's per-call overhead (a few µs) is negligible against 1 MiB of work, and the
# position arrays of one chunk stay small (at most 8 MiB of int64 for a chunk made of commas).
CHUNK_BYTES = 1 << 20

# the bytes of pandas' default CSV dialect (read_file passes no options for batches): delimiter
# ",", quote '"' doubled inside quotes, records ended by "\n", "\r\n" or a lone "\r"
_QUOTE, _DELIM, _LF, _CR = 0x22, 0x2C, 0x0A, 0x0D
_FIELD_START = np.array([_DELIM, _LF, _CR, _QUOTE], dtype=np.uint8)
_NO_POSITIONS = np.empty(0, dtype=np.intp)


class FileRejected(Exception):
    """A batch file that breaks a limit or cannot be scanned; ``code`` is a reader reason code."""

    def __init__(self, code: str, message: str, details: dict | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass(frozen=True)
class Limits:
    """The bounds of ``ingest:`` in the config (see :class:`config.schema.IngestConfig`)."""

    max_file_bytes: int
    max_line_bytes: int
    max_cell_chars: int
    max_rows: int
    max_columns: int

    @classmethod
    def from_config(cls, ingest: IngestConfig) -> Limits:
        return cls(ingest.max_file_bytes, ingest.max_line_bytes, ingest.max_cell_chars, ingest.max_rows,
                   ingest.max_columns)


@dataclass(frozen=True)
class PreCheck:
    """What the checks before parsing established."""

    cells_checked: bool = False  # no text cell can be over max_cell_chars: check_frame measures none


def _exceeded(code: str, message: str, limit: str, limit_value: int, observed: int, **extra: object) -> FileRejected:
    """A rejection whose details name the limit, its value, what was observed and the key to raise."""
    return FileRejected(code, message, {"limit": limit, "limit_value": limit_value, "observed": observed,
                                        "config": f"ingest.{limit}", **extra})


def check_size(path: Path, limits: Limits) -> int:
    """The file's size in bytes; ``too_large`` over ``ingest.max_file_bytes`` (no byte read)."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise _exceeded("too_large", f"{path.name} is {size:,} bytes, over the limit of "
                        f"{limits.max_file_bytes:,} (ingest.max_file_bytes)",
                        "max_file_bytes", limits.max_file_bytes, size)
    return size


# ---- CSV ---------------------------------------------------------------------------------------
@dataclass
class CsvScan:
    """Shape of a CSV file as the scan saw it (records are logical: quoted line breaks stay inside).

    ``records`` counts the non-empty records, the header included; blank lines are not records
    (pandas skips them), lines of spaces are (pandas skips them too: the count is an upper bound).
    ``longest_record_bytes`` is in UTF-8 bytes of the decoded text (the file's bytes for a UTF-8
    file), without the record's line break.
    """

    bytes_read: int = 0
    records: int = 0
    longest_record_bytes: int = 0
    header_fields: int = 0

    @property
    def data_rows(self) -> int:
        return max(self.records - 1, 0)


@dataclass
class _ScanState:
    """What the scan carries from one chunk to the next."""

    limits: Limits
    name: str
    scan: CsvScan = field(default_factory=CsvScan)
    pos: int = 0                # offset of the current chunk in the scanned byte stream
    in_quotes: bool = False     # inside a quoted field at the start of the chunk
    prev_byte: int = _LF        # the byte before the chunk; a line break: the file starts a field
    prev_was_close: bool = False  # ... and it was a quote that closed a quoted field
    last_term: int = -1         # offset of the last record terminator (-1: before the file)
    open_delims: int = 0        # delimiters of the record still open at the chunk's end

    def toggles(self, data: bytes, a: np.ndarray) -> np.ndarray:
        """Positions (in the chunk) of the quotes that open or close a quoted field.

        pandas opens a quoted field only at a field's start: a quote inside an unquoted field
        (``5'11"``) is data. When every would-be opening quote follows a delimiter, a line break or
        a closing quote (any file written by a CSV writer), every quote toggles and this is
        vectorised; otherwise the chunk's quotes are walked one by one with pandas' rule (exact,
        and costs a Python step per quote of such a chunk only).
        """
        quotes = np.flatnonzero(a == _QUOTE)
        if not quotes.size:
            return quotes
        openings = quotes[1 if self.in_quotes else 0::2]
        before = a[np.maximum(openings - 1, 0)]
        regular = np.isin(before, _FIELD_START)
        if openings.size and openings[0] == 0:
            regular[0] = self.prev_byte in (_DELIM, _LF, _CR) or (self.prev_byte == _QUOTE and self.prev_was_close)
        if regular.all():
            return quotes
        out, inside, last_close = [], self.in_quotes, -1 if self.prev_was_close else -2
        for p in quotes.tolist():
            if inside:
                out.append(p)
                inside, last_close = False, p
                continue
            b = data[p - 1] if p else self.prev_byte
            if b in (_DELIM, _LF, _CR) or (b == _QUOTE and last_close == p - 1):
                out.append(p)
                inside = True
        return np.asarray(out, dtype=np.int64)

    def outside(self, positions: np.ndarray, toggles: np.ndarray) -> np.ndarray:
        """The positions (of one chunk) that are outside quoted fields."""
        if toggles.size:
            return positions[((np.searchsorted(toggles, positions) + self.in_quotes) & 1) == 0]
        return positions[:0] if self.in_quotes else positions

    def feed(self, data: bytes, final: bool) -> None:
        """Account for one chunk (``final``: the end of the file follows it)."""
        a = np.frombuffer(data, dtype=np.uint8)
        scan, lim, n = self.scan, self.limits, a.size
        toggles = self.toggles(data, a) if b'"' in data else _NO_POSITIONS
        terms = np.flatnonzero(a == _LF)
        if b"\r" in data:
            cr = np.flatnonzero(a == _CR)
            # a CR ends a record unless a LF follows (CRLF ends at the LF); one at the chunk's end
            # counts as an end, and a LF starting the next chunk then ends an empty record
            lone = cr[(cr == n - 1) | (a[np.minimum(cr + 1, n - 1)] != _LF)]
            terms = np.union1d(terms, lone) if lone.size else terms
        terms = self.outside(terms, toggles)
        open_bytes = n + self.pos - self.last_term - 1
        ends = np.append(terms, n) if final and open_bytes > 0 else terms
        if ends.size:
            starts = np.concatenate(([self.last_term - self.pos], ends[:-1])) + 1
            lengths = ends - starts
            crlf = (ends > 0) & (ends < n)  # a LF with a CR before it in this chunk: CRLF, the CR is no data
            crlf[crlf] = a[ends[crlf] - 1] == _CR
            lengths[crlf] -= 1
            # a record of L bytes has at most L + 1 fields: only a chunk with a record of
            # max_columns bytes or more (or the header, whose width is reported) needs the
            # delimiters counted; the others cost nothing here
            counted = not scan.records or int(lengths.max()) >= lim.max_columns
            if counted:
                delims = self.outside(np.flatnonzero(a == _DELIM), toggles)
                delims_before = np.searchsorted(delims, ends)
                fields = np.diff(delims_before, prepend=0) + 1
                fields[0] += self.open_delims
                self.open_delims = int(delims.size - delims_before[-1])
            else:
                tail = int(ends[-1]) + 1
                self.open_delims = int(self.outside(np.flatnonzero(a[tail:] == _DELIM) + tail, toggles).size)
            keep = lengths > 0  # blank lines are no records (pandas skips them)
            lengths, starts = lengths[keep], starts[keep]
            if lengths.size:
                fields = fields[keep] if counted else None
                numbers = scan.records + 1 + np.arange(lengths.size)  # 1-based, the header is 1
                self._check_records(lengths, fields, numbers, starts)
                if not scan.records:
                    scan.header_fields = int(fields[0])
                scan.records += int(lengths.size)
                scan.longest_record_bytes = max(scan.longest_record_bytes, int(lengths.max()))
            self.last_term = self.pos + int(ends[-1])
        else:  # the whole chunk belongs to one open record
            self.open_delims += int(self.outside(np.flatnonzero(a == _DELIM), toggles).size)
        if not final:
            self._check_open_record(self.pos + n - self.last_term - 1)
        if toggles.size:
            self.in_quotes ^= bool(toggles.size & 1)
        self.prev_was_close = bool(toggles.size and toggles[-1] == n - 1 and not self.in_quotes)
        if n:
            self.prev_byte = int(a[-1])
        self.pos += n

    def _check_records(self, lengths: np.ndarray, fields: np.ndarray | None, numbers: np.ndarray,
                       starts: np.ndarray) -> None:
        """Reject at the first complete record of the chunk that breaks a limit (file order);
        ``fields`` is None when no record of the chunk is long enough to break max_columns."""
        lim = self.limits
        bad_line = np.flatnonzero(lengths > lim.max_line_bytes)
        bad_fields = np.flatnonzero(fields > lim.max_columns) if fields is not None else bad_line[:0]
        bad_rows = np.flatnonzero(numbers - 1 > lim.max_rows)
        first = min((int(b[0]) for b in (bad_line, bad_fields, bad_rows) if b.size), default=None)
        if first is None:
            return
        where = {"record": int(numbers[first]), "record_offset": self.pos + int(starts[first])}
        if bad_line.size and bad_line[0] == first:
            raise _exceeded("line_too_long", f"{self.name}: record {where['record']} is {int(lengths[first]):,} "
                            f"bytes, over the limit of {lim.max_line_bytes:,} (ingest.max_line_bytes)",
                            "max_line_bytes", lim.max_line_bytes, int(lengths[first]),
                            observed_is_lower_bound=False, **where)
        if bad_fields.size and bad_fields[0] == first:
            raise self._too_many_fields(int(fields[first]), where, lower_bound=False)
        raise _exceeded("too_many_rows", f"{self.name} has more than {lim.max_rows:,} rows (ingest.max_rows); "
                        f"the scan stopped at record {where['record']}", "max_rows", lim.max_rows,
                        int(numbers[first]) - 1, observed_is_lower_bound=True, **where)

    def _check_open_record(self, open_bytes: int) -> None:
        """Reject a record still open at the chunk's end that already breaks a limit: the scan need
        not read a 50 MB line to its end to know it is too long."""
        lim = self.limits
        where = {"record": self.scan.records + 1, "record_offset": self.last_term + 1}
        if open_bytes > lim.max_line_bytes:
            raise _exceeded("line_too_long", f"{self.name}: record {where['record']} is longer than "
                            f"{open_bytes:,} bytes (read so far), over the limit of {lim.max_line_bytes:,} "
                            "(ingest.max_line_bytes)", "max_line_bytes", lim.max_line_bytes, open_bytes,
                            observed_is_lower_bound=True, **where)
        if self.open_delims + 1 > lim.max_columns:
            raise self._too_many_fields(self.open_delims + 1, where, lower_bound=True)

    def _too_many_fields(self, observed: int, where: dict, lower_bound: bool) -> FileRejected:
        lim = self.limits
        what = "the header" if where["record"] == 1 else f"record {where['record']}"
        more = "at least " if lower_bound else ""
        return _exceeded("too_many_columns", f"{self.name}: {what} has {more}{observed:,} fields, over the limit "
                         f"of {lim.max_columns:,} (ingest.max_columns)", "max_columns", lim.max_columns,
                         observed, observed_is_lower_bound=lower_bound, **where)


def scan_csv(path: Path, limits: Limits, encoding: str = "utf-8", chunk_bytes: int = CHUNK_BYTES) -> CsvScan:
    """Scan a CSV file in chunks and bounded memory; raise :class:`FileRejected` at the first
    violation: ``encoding``, ``line_too_long``, ``too_many_columns`` (fields of any record, the
    header's included), ``too_many_rows`` or, for a compressed file, ``too_large``.

    Cost: one pass over the bytes read, a few numpy passes per chunk (see bench/quarantine.py), and
    nothing past the chunk where a limit is broken. The bytes are decoded on the way, so an invalid
    byte is reported at its offset as pandas would; a file in an encoding other than UTF-8 is
    scanned as its text re-encoded in UTF-8 (quotes, delimiters and line breaks can then be found
    bytewise whatever the encoding, e.g. UTF-16). A compressed file (``.csv.gz``, ``.csv.zip``, ...)
    is decompressed as pandas does (its own handle), and its decompressed bytes count against
    ``ingest.max_file_bytes``: they are what the parser reads, and a 1 MB gzip can hold 1 GB.
    """
    from pandas.io.common import get_handle  # pandas' own opener: the compression read_csv infers

    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    transcode = codecs.lookup(encoding).name != "utf-8"
    state = _ScanState(limits, path.name)
    offset = 0
    with get_handle(path, "rb", compression="infer", is_text=False) as handles:
        f = handles.handle
        while True:
            raw = f.read(chunk_bytes)
            final = not raw
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError as exc:
                at = offset - pending + exc.start
                raise FileRejected("encoding", f"{path.name} is not valid {encoding}: {exc.reason} at byte {at}",
                                   {"byte_offset": at}) from exc
            data = text.encode("utf-8") if transcode else raw
            state.feed(data, final)
            offset += len(raw)
            if offset > limits.max_file_bytes:  # only a compressed file gets here (check_size ran)
                raise _exceeded("too_large", f"{path.name} decompresses to at least {offset:,} bytes, over "
                                f"the limit of {limits.max_file_bytes:,} (ingest.max_file_bytes)",
                                "max_file_bytes", limits.max_file_bytes, offset,
                                measured="decompressed bytes", observed_is_lower_bound=True)
            if final:
                break
    state.scan.bytes_read = offset
    return state.scan


def csv_header(path: Path, encoding: str) -> list[str]:
    """The header's names as written (pandas' own tokenizer on the first non-blank record, without
    the ``.1`` suffixes it gives repeated names when the row is read as a header)."""
    try:
        first = pd.read_csv(path, header=None, nrows=1, dtype=str, encoding=encoding, encoding_errors="strict")
    except pd.errors.EmptyDataError:
        return []  # no header: the full read says `empty`
    return [] if first.empty else first.iloc[0].tolist()


# ---- Parquet -----------------------------------------------------------------------------------
def parquet_precheck(path: Path, limits: Limits) -> None:
    """Rows and columns from the footer, names from the schema, then the length of every text cell,
    all before pandas turns a value into a Python object."""
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
    names = [n for n in schema.names if n not in index]  # pandas' stored index is no column
    rows = pf.metadata.num_rows
    if len(names) > limits.max_columns:
        raise _exceeded("too_many_columns", f"{path.name} has {len(names):,} columns, over the limit of "
                        f"{limits.max_columns:,} (ingest.max_columns)", "max_columns", limits.max_columns,
                        len(names))
    if rows > limits.max_rows:
        raise _exceeded("too_many_rows", f"{path.name} has {rows:,} rows, over the limit of {limits.max_rows:,} "
                        "(ingest.max_rows)", "max_rows", limits.max_rows, rows)
    check_duplicates(path.name, names)
    _check_parquet_cells(path.name, pf, [n for n in names if _is_text(schema.field(n).type)], limits)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _check_parquet_cells(name: str, pf: pq.ParquetFile, columns: list[str], limits: Limits) -> None:
    """``cell_too_long`` for a text cell over the limit, measured on Arrow arrays batch by batch.

    A value's byte length is an offset difference (O(1) per value) and bounds its characters from
    above; characters are counted only in a column whose bytes exceed the limit."""
    if not columns:
        return
    first_row = 0
    for batch in pf.iter_batches(columns=columns, batch_size=65_536):
        for column, values in zip(batch.schema.names, batch.columns, strict=True):
            longest_bytes = pc.max(pc.binary_length(values)).as_py()
            if longest_bytes is None or longest_bytes <= limits.max_cell_chars:
                continue
            chars = pc.utf8_length(values)
            longest = pc.max(chars).as_py()
            if longest > limits.max_cell_chars:
                row = first_row + pc.index(chars, longest).as_py() + 1
                raise _cell_too_long(name, column, row, longest, limits)
        first_row += batch.num_rows


def _cell_too_long(name: str, column: str, row: int, chars: int, limits: Limits) -> FileRejected:
    return _exceeded("cell_too_long", f"{name}: the cell of column {column!r} in data row {row} has {chars:,} "
                     f"characters, over the limit of {limits.max_cell_chars:,} (ingest.max_cell_chars)",
                     "max_cell_chars", limits.max_cell_chars, chars, column=column, row=row)


# ---- XLSX --------------------------------------------------------------------------------------
def xlsx_precheck(path: Path, limits: Limits) -> None:
    """The decompressed size of the workbook (what openpyxl parses; a zip of 1 MB can hold GBs of
    XML) and the first sheet's declared dimension, before any cell is read."""
    from openpyxl import load_workbook

    with zipfile.ZipFile(path) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > limits.max_file_bytes:
        raise _exceeded("too_large", f"{path.name} unpacks to {unpacked:,} bytes of XML, over the limit of "
                        f"{limits.max_file_bytes:,} (ingest.max_file_bytes)", "max_file_bytes",
                        limits.max_file_bytes, unpacked, measured="decompressed bytes")
    book = load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = book.worksheets[0]  # the sheet read_file reads (sheet_name=0)
        # the <dimension> tag as written; pandas ignores it and reads every row, so a tag that is
        # too small is caught after parsing, by check_frame
        rows, columns = sheet.max_row, sheet.max_column
    finally:
        book.close()
    if columns is not None and columns > limits.max_columns:
        raise _exceeded("too_many_columns", f"{path.name} declares {columns:,} columns, over the limit of "
                        f"{limits.max_columns:,} (ingest.max_columns)", "max_columns", limits.max_columns, columns)
    if rows is not None and rows - 1 > limits.max_rows:  # the first row is the header
        raise _exceeded("too_many_rows", f"{path.name} declares {rows - 1:,} rows, over the limit of "
                        f"{limits.max_rows:,} (ingest.max_rows)", "max_rows", limits.max_rows, rows - 1)


def xlsx_header(path: Path) -> list:
    """The first row of the first sheet as pandas converts it (without the ``.1`` suffixes)."""
    first = pd.read_excel(path, sheet_name=0, header=None, nrows=1, engine="openpyxl")
    return [] if first.empty else first.iloc[0].tolist()


# ---- every format ------------------------------------------------------------------------------
def duplicate_names(names: Sequence) -> dict[str, list[int]]:
    """Names (after ``.strip()``, as the reader renames columns) given to more than one column, with
    their 1-based positions. Empty names are left out: pandas names them ``Unnamed: <i>``."""
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(names, start=1):
        if name is None or (isinstance(name, float) and np.isnan(name)):
            continue
        text = str(name).strip()
        if text:
            seen.setdefault(text, []).append(i)
    return {name: where for name, where in seen.items() if len(where) > 1}


def check_duplicates(name: str, names: Sequence) -> None:
    """``duplicate_columns`` if a header repeats a name: pandas would rename the copy ``temp.1`` and
    the contract would drop it as an extra column, silently losing a column of the upstream's."""
    dupes = duplicate_names(names)
    if dupes:
        listed = ", ".join(f"{n!r} (columns {', '.join(map(str, where))})" for n, where in dupes.items())
        raise FileRejected("duplicate_columns", f"{name}: the header repeats {listed}",
                           {"duplicates": dupes, "columns": [str(n) for n in names]})


def check_before_parsing(path: Path, fmt: str, limits: Limits, encoding: str) -> PreCheck:
    """Every check that needs no parse of the whole file; raise :class:`FileRejected` on a violation.

    Exceptions of the format's own readers (a file that is no Parquet, no zip) pass through: the
    reader reports them as ``unreadable`` like the errors of the full read.
    """
    check_size(path, limits)
    if fmt == "csv":
        scan = scan_csv(path, limits, encoding)
        check_duplicates(path.name, csv_header(path, encoding))
        # a cell's characters are at most its record's UTF-8 bytes: with no record longer than the
        # cell limit, no cell can break it and check_frame measures nothing
        return PreCheck(cells_checked=scan.longest_record_bytes <= limits.max_cell_chars)
    if fmt == "parquet":
        parquet_precheck(path, limits)
        return PreCheck(cells_checked=True)  # on the Arrow columns; other types hold no text
    if fmt == "xlsx":
        xlsx_precheck(path, limits)
        check_duplicates(path.name, xlsx_header(path))
    return PreCheck()


# what pandas' .str accessor accepts (it raises on an object column holding no text at all)
_TEXT_KINDS = {"string", "bytes", "mixed", "mixed-integer"}


def longest_cell(df: pd.DataFrame) -> tuple[int, str | None, int | None]:
    """Length of the longest text cell, its column and row position (vectorised per column)."""
    best: tuple[int, str | None, int | None] = (0, None, None)
    for position, name in enumerate(df.columns):
        column = df.iloc[:, position]
        if column.dtype != object and not isinstance(column.dtype, pd.StringDtype):
            continue  # numbers, times, booleans have no unbounded length
        kind = pd.api.types.infer_dtype(column, skipna=True)
        if kind == "string":  # text and missing only: arrow's kernel, 4x faster than .str.len()
            lengths = pc.utf8_length(pa.array(column, type=pa.large_string(), from_pandas=True))
            longest = pc.max(lengths).as_py()
            if longest is not None and longest > best[0]:
                best = (int(longest), str(name), int(pc.index(lengths, longest).as_py()))
        elif kind in _TEXT_KINDS:  # text mixed with numbers or bytes (XLSX): .str.len() skips the rest
            lengths = column.str.len().to_numpy(dtype=float)  # NaN: missing or non-text cell
            if not np.isnan(lengths).all() and np.nanmax(lengths) > best[0]:
                row = int(np.nanargmax(lengths))
                best = (int(lengths[row]), str(name), row)
        # any other kind (all missing, all numbers in an object column) holds no text
    return best


def check_frame(name: str, df: pd.DataFrame, limits: Limits, pre: PreCheck) -> None:
    """Checks on the parsed frame (names already stripped): rows, columns, duplicate names, cells."""
    if len(df.columns) > limits.max_columns:
        raise _exceeded("too_many_columns", f"{name} has {len(df.columns):,} columns, over the limit of "
                        f"{limits.max_columns:,} (ingest.max_columns)", "max_columns", limits.max_columns,
                        len(df.columns))
    if len(df) > limits.max_rows:
        raise _exceeded("too_many_rows", f"{name} has {len(df):,} rows, over the limit of {limits.max_rows:,} "
                        "(ingest.max_rows)", "max_rows", limits.max_rows, len(df))
    check_duplicates(name, list(df.columns))
    if pre.cells_checked:
        return
    chars, column, row = longest_cell(df)
    if chars > limits.max_cell_chars:
        raise _cell_too_long(name, str(column), row + 1, chars, limits)
