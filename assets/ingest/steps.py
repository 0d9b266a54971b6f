"""One function per pipeline step on one batch: read from the lake, compute, write one commit.

The Dagster assets call these and only add metadata; the benchmark and tests call them directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from assets.ingest.cleaning import clean_batch
from assets.ingest.contract import Contract, load_contract
from assets.ingest.quality import CheckOutcome, batch_quality, evaluate_checks, seen_categories
from config.schema import PipelineConfig
from features import FeatureSpec, build_features, target_arrow_type
from lake.delta import Lake
from lake.faults import crash_point
from lake.tables import CLEANED, FEATURES, QUALITY, QUALITY_SCHEMA, RAW


def require_contract(lake: Lake) -> Contract:
    contract = load_contract(lake)
    if contract is None:
        raise LookupError("the lake has no schema contract yet: ingest a batch into `raw` first")
    return contract


@dataclass(frozen=True)
class QualityResult:
    rows: pd.DataFrame
    checks: list[CheckOutcome]
    version: int


def quality_step(lake: Lake, cfg: PipelineConfig, batch_id: str) -> QualityResult:
    """Quality rows of a raw batch (categories compared with all other batches), stored and checked."""
    contract = require_contract(lake)
    frame = lake.read_batch(RAW, batch_id)
    history = lake.read(QUALITY, columns=["batch_id", "column", "categories"], missing_ok=True)
    rows = batch_quality(frame, contract, cfg, batch_id, seen_categories(history, batch_id))
    version = lake.overwrite_batch(QUALITY, rows, batch_id, schema=QUALITY_SCHEMA)
    crash_point("after_quality_commit")
    return QualityResult(rows, evaluate_checks(rows, cfg), version)


@dataclass(frozen=True)
class TableResult:
    frame: pd.DataFrame
    version: int
    counts: dict[str, int]


def cleaning_step(lake: Lake, cfg: PipelineConfig, batch_id: str) -> TableResult:
    contract = require_contract(lake)
    kept, counts = clean_batch(lake.read_batch(RAW, batch_id), contract, cfg)
    version = lake.overwrite_batch(CLEANED, kept, batch_id, schema=contract.arrow_schema())
    crash_point("after_cleaned_commit")
    return TableResult(kept, version, counts)


def features_step(lake: Lake, cfg: PipelineConfig, batch_id: str) -> tuple[TableResult, FeatureSpec]:
    spec = FeatureSpec.from_contract(require_contract(lake), cfg)
    frame = build_features(lake.read_batch(CLEANED, batch_id), spec)
    schema = spec.arrow_schema(target_arrow_type(spec.task, frame[spec.target]))
    version = lake.overwrite_batch(FEATURES, frame, batch_id, schema=schema)
    crash_point("after_features_commit")
    return TableResult(frame, version, {"row_count": len(frame)}), spec
