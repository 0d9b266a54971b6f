"""Dagster side of ingestion: the partitioned raw -> quality -> cleaned -> features assets and the
unpartitioned ``eda_report``.

Each asset is a thin wrapper: it reads its batch from the lake, calls a plain function and
writes the result back as one Delta commit, then reports metadata to the Dagster UI.
"""


import json
import math

import dagster as dg

from assets.ingest.batch import BLOCKED, complete_batch, ingest_batch
from assets.ingest.contract import load_contract
from assets.ingest.reader import BatchRejected
from assets.ingest.report import make_eda_report
from assets.ingest.steps import cleaning_step, features_step, quality_step
from assets.metadata import numbers, preview, report_links, timestamp
from assets.partitions import batches_partitions
from assets.resources import LakehouseResource
from config.schema import QUALITY_CHECKS, PipelineConfig
from features import FeatureSpec
from lake.batch_files import QUARANTINE
from lake.report_files import EDA_REPORT
from lake.tables import BATCH_COLUMN, FEATURES, QUALITY, QUALITY_BATCH_ROW, RAW

INGEST_GROUP = "ingest"


def _step(fn, *args):
    try:
        return fn(*args)
    except LookupError as exc:  # no contract yet: say what to do instead of a traceback
        raise dg.Failure(str(exc)) from exc


@dg.asset(partitions_def=batches_partitions, group_name=INGEST_GROUP, kinds={"deltalake", "pandas"},
          description="Source rows of each batch as they arrived, typed to the schema contract, with "
                      "`_batch_id`, `_source_file`, `_ingested_at`. A malformed batch file is moved to "
                      "quarantine with a reason and this step fails with that reason. The batch's "
                      "`batches` row says `ingesting` until its drift step committed (then `ingested` "
                      "and the file is archived).")
def raw(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    cfg, files, lake = lakehouse.cfg(), lakehouse.batch_files(), lakehouse.lake()
    batch_id = context.partition_key
    try:
        outcome = ingest_batch(batch_id, cfg, files, lake, run_id=context.run_id)
    except BatchRejected as rejection:
        raise dg.Failure(
            description=f"batch {batch_id} quarantined ({rejection.code}): {rejection.message}",
            metadata={"reason_code": rejection.code, "reason": rejection.message,
                      "quarantine": dg.MetadataValue.path(files.location(QUARANTINE)),
                      "details": dg.MetadataValue.json(rejection.details)},
            allow_retries=False,
        ) from rejection
    meta = outcome.meta
    frame = lake.read_batch(RAW, batch_id)
    return dg.MaterializeResult(metadata={
        **numbers({"row_count": outcome.rows, "missing_share": meta["missing_share"],
                   "duplicate_share": meta["duplicate_share"], "type_errors": sum(outcome.type_errors.values()),
                   "delta_version": outcome.raw_version}),
        "time_min": timestamp(meta["time_min"]), "time_max": timestamp(meta["time_max"]),
        "source_file": outcome.source_file,
        "extra_columns_dropped": dg.MetadataValue.json(outcome.extra_columns),
        "table_uri": dg.MetadataValue.path(lake.uri(RAW)),
        "preview": preview(frame),
    })


def quality_check_descriptions(cfg: PipelineConfig) -> dict[str, str]:
    """What each quality check tests, with the configured threshold (shown in the UI)."""
    q = cfg.quality
    return {
        "missing_within_limits": f"Every column's missing share is at most {q.max_missing_share:.0%} "
                                 "(quality.max_missing_share; per column: quality.max_missing_share_by_column).",
        "duplicates_within_limit": f"Duplicate rows are at most {q.max_duplicate_share:.0%} of the batch "
                                   "(quality.max_duplicate_share; not measured without a duplicate key).",
        "values_in_range": f"Out-of-range values are at most {q.max_out_of_range_share:.0%} of a column's "
                           "values, for the columns given a range in quality.ranges.",
        "unseen_categories_within_limit": f"Categories never seen before are at most "
                                          f"{q.max_unseen_category_share:.0%} of a column's values "
                                          "(quality.max_unseen_category_share).",
        "quality_score_above_min": f"The batch's quality score is at least {q.min_score:.2f} (quality.min_score).",
    }


def _quality_checks(cfg: PipelineConfig) -> list[dg.AssetCheckSpec]:
    # one evaluation per batch partition: the UI's partition view shows which batches failed
    described = quality_check_descriptions(cfg)
    return [dg.AssetCheckSpec(name, asset="quality", blocking=name in cfg.quality.blocking_checks,
                              partitions_def=batches_partitions,
                              description=described[name] + (" Blocking: a failure stops cleaning."
                                                             if name in cfg.quality.blocking_checks else ""))
            for name in QUALITY_CHECKS]


def build_quality_asset(cfg: PipelineConfig) -> dg.AssetsDefinition:
    """The quality asset; which of its checks block downstream steps comes from the config."""

    @dg.asset(name="quality", partitions_def=batches_partitions, group_name=INGEST_GROUP, deps=[raw],
              kinds={"deltalake"}, check_specs=_quality_checks(cfg),
              description="Per batch and column: missing share, distinct count, min/max/mean, out-of-range "
                          "share, unseen categories; batch totals with a quality score. Checks enforce the "
                          "thresholds of `quality:` in the config (blocking ones stop cleaning).")
    def quality(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):
        result = _step(quality_step, lakehouse.lake(), lakehouse.cfg(), context.partition_key)
        rows, version = result.rows, result.version
        batch = rows[rows["column"] == QUALITY_BATCH_ROW].iloc[0]
        per_column = rows[rows["column"] != QUALITY_BATCH_ROW][
            ["column", "role", "missing_share", "distinct_count", "min", "max", "out_of_range_share", "unseen_share"]]
        yield dg.MaterializeResult(metadata={
            **numbers({"quality_score": float(batch.score), "missing_share": float(batch.missing_share),
                       # NaN without a duplicate key: not measured, so not plotted as a zero
                       **({} if math.isnan(batch.duplicate_share)
                          else {"duplicate_share": float(batch.duplicate_share)}),
                       "out_of_range_share": float(batch.out_of_range_share),
                       "unseen_category_share": float(batch.unseen_share), "row_count": int(batch.row_count),
                       "delta_version": version}),
            "per_column": dg.MetadataValue.md(per_column.round(4).to_markdown(index=False)),
        })
        blocked = [o.name for o in result.checks if not o.passed and o.name in lakehouse.cfg().quality.blocking_checks]
        if blocked:  # the steps after this one will not run: the batch is complete as far as it goes
            complete_batch(lakehouse.lake(), lakehouse.batch_files(), context.partition_key, BLOCKED)
            context.log.warning("batch %s blocked by quality check(s) %s", context.partition_key, blocked)
        for outcome in result.checks:
            yield dg.AssetCheckResult(check_name=outcome.name, asset_key="quality", passed=bool(outcome.passed),
                                      description=outcome.description,
                                      metadata={k: float(v) for k, v in outcome.metadata.items()},
                                      severity=dg.AssetCheckSeverity.ERROR)

    return quality


@dg.asset(partitions_def=batches_partitions, group_name=INGEST_GROUP, deps=["quality"], kinds={"deltalake", "pandas"},
          description="Rows of each batch after the cleaning rules of `cleaning:` in the config; what each "
                      "rule removed or changed is in the metadata.")
def cleaned(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    cfg = lakehouse.cfg()
    result = _step(cleaning_step, lakehouse.lake(), cfg, context.partition_key)
    kept, counts, version = result.frame, result.counts, result.version
    return dg.MaterializeResult(metadata={
        **numbers({**counts, "kept_share": counts["rows_out"] / max(counts["rows_in"], 1),
                   "delta_version": version}),
        "rules": dg.MetadataValue.json(json.loads(cfg.cleaning.model_dump_json())),
        "preview": preview(kept),
    })


@dg.asset(partitions_def=batches_partitions, group_name=INGEST_GROUP, deps=[cleaned], kinds={"deltalake", "pandas"},
          description="Model-ready rows from `build_features(df, spec)`, the same function serving calls: "
                      "event time, time features, typed numeric/categorical/text columns, encoded target.")
def features(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    result, spec = _step(features_step, lakehouse.lake(), lakehouse.cfg(), context.partition_key)
    frame, version = result.frame, result.version
    cols = spec.feature_columns
    target = frame[spec.target]
    return dg.MaterializeResult(metadata={
        **numbers({"row_count": len(frame), "feature_count": len(cols),
                   "missing_share": float(frame[cols].isna().to_numpy().mean()) if len(frame) else 0.0,
                   "delta_version": version}),
        **({"target_mean": dg.MetadataValue.float(float(target.mean()))}
           if str(target.dtype) in ("Int64", "float64") and len(frame) else {}),
        "time_min": timestamp(frame["event_time"].min()), "time_max": timestamp(frame["event_time"].max()),
        "preview": preview(frame),
    })



@dg.asset(group_name="ingest", deps=[features], kinds={"html", "matplotlib"},
          description="Self-contained HTML EDA of the `features` table: target balance over batches, "
                      "missingness per batch, quality score, distributions, categories, correlations.")
def eda_report(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    cfg, lake = lakehouse.cfg(), lakehouse.lake()
    contract = load_contract(lake)
    if contract is None or not lake.exists(FEATURES):
        raise dg.Failure("no batch has reached the `features` table yet")
    spec = FeatureSpec.from_contract(contract, cfg)
    frame = lake.read(FEATURES)
    batch_rows = frame.groupby(BATCH_COLUMN).size()  # the batches' true sizes, before any sampling
    if len(frame) > cfg.eda.max_rows:  # plots need a sample, not the whole history
        frame = frame.sample(cfg.eda.max_rows, random_state=0)
    quality = lake.read(QUALITY, missing_ok=True)
    reports = lakehouse.report_files()
    summary = make_eda_report(frame, spec, quality, reports.render_path(EDA_REPORT), dataset=cfg.dataset.name,
                              max_columns=cfg.eda.max_columns, batch_rows=batch_rows)
    location = reports.publish(EDA_REPORT)
    context.log.info("EDA report written to %s", location)
    return dg.MaterializeResult(metadata={
        **report_links(location, cfg.router.base_url()),
        **numbers({"rows": summary["rows"], "rows_sampled": summary["rows_sampled"], "batches": summary["batches"],
                   "missing_share": summary["missing_share"], "plots": summary["plots"]}),
        "time_range": f"{summary['time_min']} .. {summary['time_max']}",
    })
