"""The unpartitioned ``eda_report`` asset: an HTML report over all batches so far."""


import dagster as dg

from assets.contract import load_contract
from assets.eda import make_eda_report
from assets.ingest_assets import features as features_asset
from assets.metadata import numbers
from assets.resources import LakehouseResource
from features import FeatureSpec
from lake.tables import FEATURES, QUALITY


@dg.asset(group_name="ingest", deps=[features_asset], kinds={"html", "matplotlib"},
          description="Self-contained HTML EDA of the `features` table: target balance over batches, "
                      "missingness per batch, quality score, distributions, categories, correlations.")
def eda_report(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    cfg, paths, lake = lakehouse.cfg(), lakehouse.paths(), lakehouse.lake()
    contract = load_contract(lake)
    if contract is None or not lake.exists(FEATURES):
        raise dg.Failure("no batch has reached the `features` table yet")
    spec = FeatureSpec.from_contract(contract, cfg)
    frame = lake.read(FEATURES)
    if len(frame) > cfg.eda.max_rows:  # plots need a sample, not the whole history
        frame = frame.sample(cfg.eda.max_rows, random_state=0)
    quality = lake.read(QUALITY, missing_ok=True)
    out = paths.reports / "eda_report.html"
    summary = make_eda_report(frame, spec, quality, out, dataset=cfg.dataset.name,
                              max_columns=cfg.eda.max_columns)
    context.log.info("EDA report written to %s", out)
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.path(str(out)),
        "report_url": dg.MetadataValue.url(out.as_uri()),
        **numbers({"rows_sampled": summary["rows"], "batches": summary["batches"],
                   "missing_share": summary["missing_share"], "plots": summary["plots"]}),
        "time_range": f"{summary['time_min']} .. {summary['time_max']}",
    })
