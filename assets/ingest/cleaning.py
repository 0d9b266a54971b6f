"""Cleaning rules from the configuration, applied to one typed batch (plain function)."""

from __future__ import annotations

import pandas as pd

from assets.ingest.contract import Contract
from assets.ingest.quality import duplicate_key_columns, duplicate_mask, out_of_range_mask
from config.schema import PipelineConfig


def clean_batch(df: pd.DataFrame, contract: Contract, cfg: PipelineConfig) -> tuple[pd.DataFrame, dict[str, int]]:
    """Apply the cleaning rules in order; return the kept rows and what each rule changed.

    Counts: ``rows_in``, ``categories_normalized`` (cells), ``dropped_missing_time``,
    ``dropped_missing_target``, ``dropped_duplicates`` (rows repeating the duplicate key of a later
    row), ``identical_rows_kept`` (only without a key: identical rows kept as separate records),
    ``out_of_range_<action>`` (cells for clip and null, rows for drop), ``dropped_too_sparse``,
    ``rows_out``.
    """
    rules = cfg.cleaning
    counts: dict[str, int] = {"rows_in": len(df)}
    out = df.copy()
    if rules.normalize_categories:
        changed = 0
        for col in contract.names("categorical", "target", "id"):
            if out[col].dtype != object:
                continue
            stripped = out[col].str.strip()
            stripped = stripped.mask(stripped == "", None)
            both_missing = stripped.isna() & out[col].isna()
            changed += int(((stripped != out[col]) & ~both_missing).sum())
            out[col] = stripped
        counts["categories_normalized"] = changed
    if rules.drop_missing_time:
        keep = out[contract.time].notna()
        counts["dropped_missing_time"] = int((~keep).sum())
        out = out[keep]
    if rules.drop_missing_target:
        keep = out[contract.target].notna()
        counts["dropped_missing_target"] = int((~keep).sum())
        out = out[keep]
    if rules.drop_duplicates:
        keys = duplicate_key_columns(contract, cfg)
        if keys is None:  # identical rows may be separate real records: count them, keep them
            counts["identical_rows_kept"] = int(out.duplicated(subset=contract.names()).sum())
        dup = duplicate_mask(out, keys)
        counts["dropped_duplicates"] = int(dup.sum())
        out = out[~dup]
    if rules.out_of_range != "keep":
        action = rules.out_of_range
        drop_rows = pd.Series(False, index=out.index)
        cells = 0
        for col, rng in cfg.quality.ranges.items():
            if col not in out.columns:
                continue
            mask = out_of_range_mask(out[col], rng.min, rng.max)
            cells += int(mask.sum())
            if action == "clip":
                out[col] = out[col].clip(lower=rng.min, upper=rng.max)
            elif action == "null":
                out[col] = out[col].mask(mask)
            else:
                drop_rows |= mask
        counts[f"out_of_range_{action}"] = int(drop_rows.sum()) if action == "drop" else cells
        out = out[~drop_rows]
    features = contract.names("numeric", "categorical", "text")
    if features:
        sparse = out[features].isna().mean(axis=1) > rules.max_row_missing_share
        counts["dropped_too_sparse"] = int(sparse.sum())
        out = out[~sparse]
    counts["rows_out"] = len(out)
    return out.reset_index(drop=True), counts
