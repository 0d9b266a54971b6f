"""Data-quality metrics of a batch and the checks on them (plain functions, no Dagster).

Batch quality score, in [0, 1]:  1 - mean of the measured penalties, each a share in [0, 1]:
missing cells (feature columns), rows repeating the duplicate key (only measured when there is a
key: see :func:`duplicate_key_columns`), out-of-range cells (columns with a range), rows carrying a
category no other batch had, and columns over their missing-share limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from assets.ingest.contract import Contract
from config.schema import PipelineConfig, QualityConfig
from lake.tables import QUALITY_BATCH_ROW, QUALITY_SCHEMA
from serving.parsing import share


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def missing_limit(q: QualityConfig, column: str) -> float:
    return q.max_missing_share_by_column.get(column, q.max_missing_share)


def duplicate_key_columns(contract: Contract, cfg: PipelineConfig) -> list[str] | None:
    """The columns that identify a record, or None when the data has no key.

    ``cleaning.duplicate_keys`` when set (``all_columns``: every contract column), else the id
    column. Without a key, identical rows are not duplicates by definition: in data such as
    bookings or a records log, two equal rows are two real events, and dropping them changes the
    data (3-17% of a bookings table in issue 11).
    """
    keys = cfg.cleaning.duplicate_keys
    if keys == "all_columns":
        return contract.names()
    if keys is None:
        ids = contract.names("id")
        return ids or None
    unknown = [k for k in keys if k not in contract.names()]
    if unknown:
        raise ValueError(f"cleaning.duplicate_keys names column(s) {unknown} that are not in the schema "
                         f"contract {contract.names()}")
    return list(keys)


def duplicate_mask(df: pd.DataFrame, keys: list[str] | None) -> pd.Series:
    """True on rows whose key repeats later in the batch (so the last version is the one kept);
    all False without a key. Rows with a missing key part are never duplicates of each other:
    a missing id identifies nothing."""
    if not keys or df.empty:
        return pd.Series(False, index=df.index)
    return df.duplicated(subset=keys, keep="last") & df[keys].notna().all(axis=1)


def out_of_range_mask(values: pd.Series, lo: float | None, hi: float | None) -> pd.Series:
    """True where a present value lies outside [lo, hi]."""
    mask = pd.Series(False, index=values.index)
    if lo is not None:
        mask |= values < lo
    if hi is not None:
        mask |= values > hi
    return mask & values.notna()


def seen_categories(previous_quality: pd.DataFrame, batch_id: str) -> dict[str, set[str]]:
    """Categories per column seen in the other batches' quality rows."""
    seen: dict[str, set[str]] = {}
    if previous_quality.empty:
        return seen
    others = previous_quality[(previous_quality["batch_id"] != batch_id)
                              & previous_quality["categories"].notna()]
    for col, cats in zip(others["column"], others["categories"], strict=True):
        seen.setdefault(col, set()).update(json.loads(cats))
    return seen


def batch_quality(df: pd.DataFrame, contract: Contract, cfg: PipelineConfig, batch_id: str,
                  seen: dict[str, set[str]]) -> pd.DataFrame:
    """One row per contract column plus the batch-totals row (``column == '__batch__'``)."""
    q = cfg.quality
    now = datetime.now(UTC)
    n = len(df)
    rows = []
    unseen_any = np.zeros(n, dtype=bool)
    oor_cells = range_cells = 0
    over_limit = 0
    checked = [c for c in contract.columns if c.role != "ignore"]
    for spec in checked:
        values = df[spec.name]
        row = {"batch_id": batch_id, "column": spec.name, "role": spec.role, "row_count": n,
               "missing_share": share(values.isna()), "distinct_count": int(values.nunique()),
               "computed_at": now}
        if row["missing_share"] > missing_limit(q, spec.name):
            over_limit += 1
        if spec.dtype == "float64":
            present = values.dropna()
            row.update(min=float(present.min()) if len(present) else None,
                       max=float(present.max()) if len(present) else None,
                       mean=float(present.mean()) if len(present) else None)
            rng = q.ranges.get(spec.name)
            if rng is not None:
                oor = out_of_range_mask(values, rng.min, rng.max)
                row["out_of_range_share"] = float(oor.sum() / max(len(present), 1))
                oor_cells += int(oor.sum())
                range_cells += len(present)
        elif spec.role in ("categorical", "target"):
            counts = values.value_counts()
            row["categories"] = json.dumps(counts.index[: q.max_tracked_categories].tolist())
            known = seen.get(spec.name)
            if known:  # the first batch of a column has nothing to compare with
                new = [c for c in counts.index if c not in known]
                is_new = values.isin(new).to_numpy()
                row["unseen_categories"] = json.dumps(new[:50])
                row["unseen_share"] = share(is_new)
                if spec.role == "categorical":
                    unseen_any |= is_new
        rows.append(row)
    features = [c.name for c in contract.columns if c.role in ("numeric", "categorical", "text")]
    keys = duplicate_key_columns(contract, cfg)
    # no key: not measured (NaN), and left out of the score rather than counted as a perfect 0
    dup = (share(duplicate_mask(df, keys)) if n else 0.0) if keys else float("nan")
    penalties = {
        "missing": float(df[features].isna().to_numpy().mean()) if features and n else 0.0,
        **({"duplicates": dup} if keys else {}),
        "out_of_range": oor_cells / range_cells if range_cells else 0.0,
        "unseen": share(unseen_any),
        "columns_over_missing_limit": over_limit / len(checked) if checked else 0.0,
    }
    rows.append({"batch_id": batch_id, "column": QUALITY_BATCH_ROW, "role": "batch", "row_count": n,
                 "missing_share": penalties["missing"], "duplicate_share": dup,
                 "out_of_range_share": penalties["out_of_range"], "unseen_share": penalties["unseen"],
                 "score": 1.0 - float(np.mean(list(penalties.values()))), "computed_at": now})
    return pd.DataFrame(rows).reindex(columns=QUALITY_SCHEMA.names)


def evaluate_checks(quality: pd.DataFrame, cfg: PipelineConfig) -> list[CheckOutcome]:
    """The five quality checks of a batch from its quality rows."""
    q = cfg.quality
    batch = quality[quality["column"] == QUALITY_BATCH_ROW].iloc[0]
    cols = quality[quality["column"] != QUALITY_BATCH_ROW]
    over = {r.column: round(r.missing_share, 4) for r in cols.itertuples()
            if r.missing_share > missing_limit(q, r.column)}
    oor = {r.column: round(r.out_of_range_share, 4) for r in cols.itertuples()
           if pd.notna(r.out_of_range_share) and r.out_of_range_share > q.max_out_of_range_share}
    return [
        CheckOutcome("missing_within_limits", not over,
                     f"columns over their missing-share limit: {over}" if over else
                     "every column within its missing-share limit", {"columns_over_limit": len(over)}),
        _duplicates_check(float(batch.duplicate_share), q),
        CheckOutcome("values_in_range", not oor,
                     f"columns over the out-of-range limit {q.max_out_of_range_share}: {oor}" if oor
                     else "every ranged column within limits",
                     {"out_of_range_share": float(batch.out_of_range_share)}),
        CheckOutcome("unseen_categories_within_limit", batch.unseen_share <= q.max_unseen_category_share,
                     f"rows with an unseen category: {batch.unseen_share:.4f} "
                     f"(limit {q.max_unseen_category_share})", {"unseen_share": float(batch.unseen_share)}),
        CheckOutcome("quality_score_above_min", batch.score >= q.min_score,
                     f"quality score {batch.score:.4f} (minimum {q.min_score})", {"score": float(batch.score)}),
    ]


def _duplicates_check(duplicate_share: float, q: QualityConfig) -> CheckOutcome:
    """Passes without a key: there is nothing a duplicate could be defined by (see
    :func:`duplicate_key_columns`); the description says so, so a pass is not mistaken for a measure."""
    if np.isnan(duplicate_share):
        return CheckOutcome("duplicates_within_limit", True,
                            "not applicable: no duplicate key (set dataset.id_column or cleaning.duplicate_keys); "
                            "identical rows are kept as separate records", {})
    return CheckOutcome("duplicates_within_limit", duplicate_share <= q.max_duplicate_share,
                        f"share of rows repeating the duplicate key {duplicate_share:.4f} "
                        f"(limit {q.max_duplicate_share})", {"duplicate_share": duplicate_share})
