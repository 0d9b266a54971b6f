"""Bounded reading of batch files: every limit of ``ingest:`` rejects a hostile file with its code
and details before pandas parses it, normal files (at the limits' edge too) pass, and the cases the
reader handled before keep their codes."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.ingest.contract import build_contract
from assets.ingest.limits import CHUNK_BYTES, FileRejected, Limits, scan_csv
from assets.ingest.reader import REASON_CODES, BatchRejected, conform_to_contract, read_batch_file
from config import PipelineConfig, load_config
from config.schema import IngestConfig
from lake.tables import BATCHES, RAW
from tests.conftest import make_source, write_config
from tests.support.pipeline import Pipeline

NEW_CODES = ("too_large", "line_too_long", "cell_too_long", "too_many_rows", "too_many_columns",
             "duplicate_columns")
HEADER = "ts,city,plan,temp,amount,visits,row_id,churn"


def config(tmp_path: Path, **ingest: int | str) -> PipelineConfig:
    """The toy config with these ``ingest:`` keys (the defaults otherwise)."""
    return load_config(write_config(tmp_path / "cfg", {"ingest": ingest} if ingest else None))


def good_rows(n: int = 20) -> pd.DataFrame:
    return make_source(n)


def write_csv(path: Path, df: pd.DataFrame) -> Path:
    df.to_csv(path, index=False)
    return path


def rejection(path: Path, cfg: PipelineConfig) -> BatchRejected:
    with pytest.raises(BatchRejected) as info:
        read_batch_file(path, cfg)
    return info.value


def assert_limit(rej: BatchRejected, code: str, limit: str, limit_value: int) -> None:
    """The details name the limit, its value, the observed value over it and the key to raise."""
    assert rej.code == code, rej
    assert rej.details["limit"] == limit and rej.details["config"] == f"ingest.{limit}"
    assert rej.details["limit_value"] == limit_value
    assert rej.details["observed"] > limit_value
    assert f"ingest.{limit}" in rej.message


def test_every_new_code_is_explained() -> None:
    assert all(REASON_CODES.get(code) for code in NEW_CODES)


def monthly_like(rows: int, columns: int = 30) -> pd.DataFrame:
    """A monthly batch's shape: a time column, short text codes and numbers, some cells empty."""
    rng = np.random.default_rng(0)
    out = {"ts": pd.date_range("2013-01-01", periods=rows, freq="min", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")}
    for i in range(1, columns):
        if i % 3 == 0:
            out[f"c{i}"] = rng.choice(["UA", "AA", "B6", "DL", "EV", None], rows)
        else:
            out[f"n{i}"] = rng.normal(100, 50, rows).round(2)
    return pd.DataFrame(out)


def test_defaults_let_a_normal_monthly_batch_through(tmp_path: Path) -> None:
    """28,000 rows x 30 columns (~5 MB of CSV) and the same rows as Parquet; an XLSX of the same
    width (fewer rows: openpyxl needs ~10 s for the full month, see bench/quarantine.py)."""
    cfg = config(tmp_path)
    df = monthly_like(28_000)
    csv_path = write_csv(tmp_path / "batch_00001.csv", df)
    assert csv_path.stat().st_size > 4_000_000
    assert read_batch_file(csv_path, cfg).shape == (28_000, 30)
    df.to_parquet(tmp_path / "batch_00002.parquet", index=False)
    assert read_batch_file(tmp_path / "batch_00002.parquet", cfg).shape == (28_000, 30)
    df.head(2_000).to_excel(tmp_path / "batch_00003.xlsx", index=False)
    assert read_batch_file(tmp_path / "batch_00003.xlsx", cfg).shape == (2_000, 30)
    limits = Limits.from_config(IngestConfig())
    assert limits.max_cell_chars < 10_000_000 <= limits.max_file_bytes  # a 10 MB cell is not normal


# ---- the single-line 50 MB file ----------------------------------------------------------------
@pytest.mark.parametrize(("body", "code", "limit"), [
    (b"x" * 50_000_000, "line_too_long", "max_line_bytes"),      # no delimiter, no line break
    (b"12," * 17_000_000, "too_many_columns", "max_columns"),    # rows glued together by a lost line break
])
def test_single_line_50_mb_csv_is_rejected_within_one_chunk_of_the_limit(
        tmp_path: Path, body: bytes, code: str, limit: str) -> None:
    cfg = config(tmp_path)
    path = tmp_path / "batch_00001.csv"
    path.write_bytes(body)
    rej = rejection(path, cfg)
    limit_value = getattr(cfg.ingest, limit)
    assert_limit(rej, code, limit, limit_value)
    # the scan stopped at the first chunk that broke the limit: it read at most one chunk past it
    # (bytes for the line, and a field is at least one byte), not the 50 MB
    assert rej.details["observed"] <= limit_value + CHUNK_BYTES
    assert rej.details["observed_is_lower_bound"] is True and rej.details["record"] == 1


# ---- one test per limit ------------------------------------------------------------------------
def test_file_over_the_size_limit(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "batch_00001.csv", good_rows(200))
    size = path.stat().st_size
    rej = rejection(path, config(tmp_path, max_file_bytes=size - 1))
    assert_limit(rej, "too_large", "max_file_bytes", size - 1)
    assert rej.details["observed"] == size
    assert read_batch_file(path, config(tmp_path / "edge", max_file_bytes=size)).shape == (200, 8)


def test_compressed_csv_counts_its_decompressed_bytes(tmp_path: Path) -> None:
    text = good_rows(200).to_csv(index=False).encode()
    path = tmp_path / "batch_00001.csv.gz"
    path.write_bytes(gzip.compress(text))
    assert read_batch_file(path, config(tmp_path)).shape == (200, 8)  # read as pandas reads it
    limit = path.stat().st_size + 10  # the file passes, what it unpacks to does not
    rej = rejection(path, config(tmp_path / "small", max_file_bytes=limit))
    assert_limit(rej, "too_large", "max_file_bytes", limit)
    assert rej.details["measured"] == "decompressed bytes"


def test_xlsx_counts_its_decompressed_xml(tmp_path: Path) -> None:
    path = tmp_path / "batch_00001.xlsx"
    good_rows(200).to_excel(path, index=False)
    limit = path.stat().st_size + 10
    rej = rejection(path, config(tmp_path, max_file_bytes=limit))
    assert_limit(rej, "too_large", "max_file_bytes", limit)
    assert rej.details["measured"] == "decompressed bytes"


def test_line_over_the_line_limit(tmp_path: Path) -> None:
    df = good_rows()
    df.loc[1, "city"] = "y" * 300
    path = write_csv(tmp_path / "batch_00001.csv", df)
    rej = rejection(path, config(tmp_path, max_line_bytes=250))
    assert_limit(rej, "line_too_long", "max_line_bytes", 250)
    longest = max(len(line) for line in path.read_bytes().split(b"\n"))
    assert rej.details["observed"] == longest and rej.details["record"] == 3  # header = record 1
    assert rej.details["observed_is_lower_bound"] is False  # the record was read to its end


def test_a_quoted_cell_spanning_lines_counts_as_one_record(tmp_path: Path) -> None:
    """Line breaks inside quotes belong to the record: ten short physical lines, one long record."""
    df = good_rows()
    df.loc[0, "city"] = "\n".join(["twenty-byte line...."] * 10)
    path = write_csv(tmp_path / "batch_00001.csv", df)
    assert max(len(line) for line in path.read_bytes().split(b"\n")) < 100
    rej = rejection(path, config(tmp_path, max_line_bytes=150))
    assert_limit(rej, "line_too_long", "max_line_bytes", 150)
    assert rej.details["record"] == 2 and rej.details["observed"] > 200


def test_cell_over_the_cell_limit(tmp_path: Path) -> None:
    df = good_rows()
    df.loc[4, "city"] = "z" * 61
    path = write_csv(tmp_path / "batch_00001.csv", df)
    rej = rejection(path, config(tmp_path, max_cell_chars=60))
    assert_limit(rej, "cell_too_long", "max_cell_chars", 60)
    assert rej.details["observed"] == 61 and rej.details["column"] == "city" and rej.details["row"] == 5


def test_cell_limit_counts_characters_not_bytes(tmp_path: Path) -> None:
    df = good_rows()
    df.loc[0, "city"] = "é" * 60  # 120 bytes in UTF-8, 60 characters
    path = write_csv(tmp_path / "batch_00001.csv", df)
    assert read_batch_file(path, config(tmp_path, max_cell_chars=60)).loc[0, "city"] == "é" * 60


def test_parquet_cell_over_the_cell_limit(tmp_path: Path) -> None:
    df = good_rows()
    df.loc[2, "plan"] = "p" * 100
    path = tmp_path / "batch_00001.parquet"
    df.to_parquet(path, index=False)
    rej = rejection(path, config(tmp_path, max_cell_chars=99))
    assert_limit(rej, "cell_too_long", "max_cell_chars", 99)
    assert rej.details["column"] == "plan" and rej.details["observed"] == 100 and rej.details["row"] == 3
    df.loc[2, "plan"] = "é" * 99  # 198 bytes, 99 characters: at the limit
    df.to_parquet(path, index=False)
    assert read_batch_file(path, config(tmp_path / "chars", max_cell_chars=99)).loc[2, "plan"] == "é" * 99


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_too_many_rows(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"batch_00001.{fmt}"
    df = good_rows(11)
    {"csv": lambda: df.to_csv(path, index=False), "parquet": lambda: df.to_parquet(path, index=False),
     "xlsx": lambda: df.to_excel(path, index=False)}[fmt]()
    rej = rejection(path, config(tmp_path, max_rows=10))
    assert_limit(rej, "too_many_rows", "max_rows", 10)
    assert rej.details["observed"] == 11
    assert len(read_batch_file(path, config(tmp_path / "edge", max_rows=11))) == 11


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_too_many_columns(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"batch_00001.{fmt}"
    df = good_rows().assign(extra="e")  # 9 columns
    {"csv": lambda: df.to_csv(path, index=False), "parquet": lambda: df.to_parquet(path, index=False),
     "xlsx": lambda: df.to_excel(path, index=False)}[fmt]()
    rej = rejection(path, config(tmp_path, max_columns=8))
    assert_limit(rej, "too_many_columns", "max_columns", 8)
    assert rej.details["observed"] == 9
    assert read_batch_file(path, config(tmp_path / "edge", max_columns=9)).shape[1] == 9


def test_a_data_record_wider_than_the_limit(tmp_path: Path) -> None:
    """Not only the header: pandas' cost is per field of any record."""
    lines = good_rows(5).to_csv(index=False).splitlines()
    lines[3] += ",1" * 10  # 18 fields in data record 3 (file record 4)
    path = tmp_path / "batch_00001.csv"
    path.write_text("\n".join(lines) + "\n")
    rej = rejection(path, config(tmp_path, max_columns=12))
    assert_limit(rej, "too_many_columns", "max_columns", 12)
    assert rej.details["observed"] == 18 and rej.details["record"] == 4


# ---- duplicate header names --------------------------------------------------------------------
def test_duplicate_header_in_csv_is_named(tmp_path: Path) -> None:
    path = tmp_path / "batch_00001.csv"
    path.write_text(HEADER + ",temp\n" + "\n".join(
        line + ",99" for line in good_rows(5).to_csv(index=False).splitlines()[1:]) + "\n")
    rej = rejection(path, config(tmp_path))
    assert rej.code == "duplicate_columns"
    assert rej.details["duplicates"] == {"temp": [4, 9]}  # not pandas' silent "temp.1"
    assert "'temp' (columns 4, 9)" in rej.message


def test_names_equal_after_trimming_are_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "batch_00001.csv"
    path.write_text(HEADER.replace("temp", " temp ") + ",temp\n" + "\n".join(
        line + ",99" for line in good_rows(5).to_csv(index=False).splitlines()[1:]) + "\n")
    assert rejection(path, config(tmp_path)).details["duplicates"] == {"temp": [4, 9]}


def test_duplicate_header_in_parquet_is_named(tmp_path: Path) -> None:
    path = tmp_path / "batch_00001.parquet"
    table = pa.Table.from_pandas(good_rows(5), preserve_index=False)
    pq.write_table(table.append_column("temp", pa.array(["1"] * 5)), path)  # pyarrow allows it
    rej = rejection(path, config(tmp_path))
    assert rej.code == "duplicate_columns" and rej.details["duplicates"] == {"temp": [4, 9]}


def test_duplicate_header_in_xlsx_is_named(tmp_path: Path) -> None:
    path = tmp_path / "batch_00001.xlsx"
    df = good_rows(5)
    df.insert(8, "temp ", df["temp"])
    df.to_excel(path, index=False)
    rej = rejection(path, config(tmp_path))
    assert rej.code == "duplicate_columns" and rej.details["duplicates"] == {"temp": [4, 9]}


# ---- what must still pass ----------------------------------------------------------------------
def test_a_file_at_every_limits_edge_is_accepted(tmp_path: Path) -> None:
    df = good_rows(50)
    df.loc[7, "city"] = "c" * 40
    path = write_csv(tmp_path / "batch_00001.csv", df)
    raw = path.read_bytes()
    longest_line = max(len(line) for line in raw.split(b"\n"))
    cfg = config(tmp_path, max_file_bytes=len(raw), max_line_bytes=longest_line, max_cell_chars=40,
                 max_rows=50, max_columns=8)
    out = read_batch_file(path, cfg)
    assert out.shape == (50, 8) and out.loc[7, "city"] == "c" * 40


def test_windows_line_endings_quoted_newlines_and_extra_columns_are_accepted(tmp_path: Path) -> None:
    df = good_rows(10).assign(note="n")
    df.loc[3, "city"] = "first line\r\nsecond, with a comma\r\nthird \"quoted\""
    path = tmp_path / "batch_00001.csv"
    df.to_csv(path, index=False, lineterminator="\r\n")
    assert b"\r\n" in path.read_bytes()
    cfg = config(tmp_path)
    out = read_batch_file(path, cfg)
    assert out.shape == (10, 9) and out.loc[3, "city"] == df.loc[3, "city"]
    conformed = conform_to_contract(out, build_contract(read_batch_file(
        write_csv(tmp_path / "good.csv", good_rows(30)), cfg), cfg), cfg)
    assert conformed.extra_columns == ["note"] and len(conformed.frame) == 10


def test_a_quote_inside_an_unquoted_field_is_data(tmp_path: Path) -> None:
    """pandas reads ``5'11"`` as text; the scan must not take that quote for an opening one (it
    would see one record to the end of the file)."""
    df = good_rows(30)
    path = write_csv(tmp_path / "batch_00001.csv", df)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(lines[2].split(",")[1], "5'11\"", 1)
    path.write_text("\n".join(lines) + "\n")
    out = read_batch_file(path, config(tmp_path, max_line_bytes=200))
    assert len(out) == 30 and out.loc[1, "city"] == "5'11\""


def test_a_utf16_batch_is_scanned_as_text_when_configured(tmp_path: Path) -> None:
    path = tmp_path / "batch_00001.csv"
    path.write_bytes(good_rows(10).to_csv(index=False).encode("utf-16"))
    assert read_batch_file(path, config(tmp_path, encoding="utf-16")).shape == (10, 8)


def test_an_invalid_byte_past_the_first_chunk_is_an_encoding_error_at_its_offset(tmp_path: Path) -> None:
    text = good_rows(300).to_csv(index=False).encode()
    body = text * (CHUNK_BYTES // len(text) + 2)
    at = len(body) - 100
    path = tmp_path / "batch_00001.csv"
    path.write_bytes(body[:at] + b"\xff" + body[at + 1:])
    rej = rejection(path, config(tmp_path))
    assert rej.code == "encoding" and rej.details == {"byte_offset": at}
    assert "batch_00001.csv is not valid utf-8" in rej.message  # the message the CLI test reads


CASES = {  # the reader's behaviour before bounded reading: each keeps its code
    "empty": lambda rows: b"",
    "header_only": lambda rows: (HEADER + "\n").encode(),
    "binary": lambda rows: bytes(range(256)) * 40,
    "utf16": lambda rows: rows.to_csv(index=False).encode("utf-16"),
    "wrong_delimiter": lambda rows: rows.to_csv(index=False, sep=";").encode(),
    "missing_target": lambda rows: rows.drop(columns="churn").to_csv(index=False).encode(),
    "missing_time": lambda rows: rows.drop(columns="ts").to_csv(index=False).encode(),
}
EXPECTED = {"empty": "empty", "header_only": "empty", "binary": "encoding", "utf16": "encoding",
            "wrong_delimiter": "missing_columns", "missing_target": "missing_columns",
            "missing_time": "missing_columns", "wrong_parquet_schema": "missing_columns",
            "garbage_xlsx": "unreadable"}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_malformed_files_keep_their_codes(tmp_path: Path, case: str) -> None:
    cfg = config(tmp_path)
    contract = build_contract(read_batch_file(write_csv(tmp_path / "good.csv", good_rows(30)), cfg), cfg)
    rows = good_rows(10)
    if case == "wrong_parquet_schema":
        path = tmp_path / "batch_00002.parquet"
        rows.rename(columns={"temp": "temperature", "ts": "time"}).to_parquet(path, index=False)
    elif case == "garbage_xlsx":
        path = tmp_path / "batch_00002.xlsx"
        path.write_bytes(b"PK\x03\x04 this is no workbook" * 10)
    else:
        path = tmp_path / "batch_00002.csv"
        path.write_bytes(CASES[case](rows))
    with pytest.raises(BatchRejected) as info:
        conform_to_contract(read_batch_file(path, cfg), contract, cfg)
    assert info.value.code == EXPECTED[case], info.value


# ---- the scan against pandas -------------------------------------------------------------------
def test_scan_counts_records_and_fields_as_pandas_does_at_any_chunk_size(tmp_path: Path) -> None:
    """Random small CSVs with quotes, commas, LF / CRLF inside cells and literal quotes in unquoted
    fields: the scan's record count and header width equal pandas', and the column limit fires
    exactly when pandas sees a wider record, whatever the chunk boundaries."""
    rng = random.Random(7)
    alphabet = ["a", "b", ",", '"', "\n", "\r\n", "'", "é", '"x"']
    path, checked = tmp_path / "f.csv", 0
    for _ in range(300):
        ncol = rng.randint(1, 4)
        rows = [[f"h{i}" for i in range(ncol)]]
        rows += [["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))) for _ in range(ncol)]
                 for _ in range(rng.randint(1, 5))]
        rows = [r for r in rows if any(c.strip() for c in r)]  # pandas skips blank lines, the scan too
        buf = io.StringIO()
        csv.writer(buf, lineterminator=rng.choice(["\n", "\r\n"])).writerows(rows)
        text = buf.getvalue()
        if rng.random() < 0.5:
            text = text.replace("a", rng.choice(['a"', "5'11\"", 'a""b']), 1)
        path.write_bytes(text.encode())
        try:
            expected = pd.read_csv(path, dtype=str, keep_default_na=False, header=None)
        except pd.errors.ParserError:
            continue  # ragged beyond the first row: pandas refuses it, the reader says unreadable
        checked += 1
        width = expected.shape[1]
        for chunk in (1, 2, 3, 7, CHUNK_BYTES):
            scan = scan_csv(path, Limits(10**9, 10**9, 10**9, 10**9, width), chunk_bytes=chunk)
            assert (scan.records, scan.header_fields) == (len(expected), ncol), (text, chunk)
            if width > 1:
                with pytest.raises(FileRejected, match="too_many_columns"):
                    scan_csv(path, Limits(10**9, 10**9, 10**9, 10**9, width - 1), chunk_bytes=chunk)
    assert checked > 200


# ---- through the real ingestion ----------------------------------------------------------------
def test_hostile_batch_is_quarantined_and_the_good_one_ingested(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path)
    assert pipe.emit_and_run().success  # batch_00001, the contract
    hostile = pipe.paths.inbox / "batch_90000.csv"
    hostile.write_bytes(HEADER.encode() + b"\n" + b"x" * (5 * 2**20))  # one 5 MiB record, no line break
    result = pipe.run("batch_90000")
    assert not result.success
    reason = json.loads((pipe.paths.quarantine / "batch_90000.csv.reason.json").read_text())
    assert reason["code"] == "line_too_long" and reason["details"]["config"] == "ingest.max_line_bytes"
    assert reason["details"]["record"] == 2 and reason["explanation"] == REASON_CODES["line_too_long"]
    assert (pipe.paths.quarantine / "batch_90000.csv").exists() and not hostile.exists()
    assert pipe.emit_and_run().success  # batch_00002 still flows
    batches = pipe.lake.read(BATCHES).set_index("batch_id")
    assert batches.loc["batch_90000", "status"] == "quarantined"
    assert batches.loc["batch_90000", "reason_code"] == "line_too_long"
    assert batches.loc["batch_00002", "status"] == "ingested"
    assert sorted(pipe.lake.read(RAW)["_batch_id"].unique()) == ["batch_00001", "batch_00002"]
