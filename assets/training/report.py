"""The summary report: how data quality and the models changed over batches and versions.

One self-contained HTML file (plots inlined), built from the lake's tables only.
"""

from __future__ import annotations

import html
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from assets.plots import png_base64
from assets.training.evaluation import common_evaluation
from lake.delta import Lake
from lake.registry import ModelRegistry
from lake.tables import BATCHES, FEATURES, LEADERBOARD, MODEL_ALIASES, MODEL_REGISTRY, QUALITY, QUALITY_BATCH_ROW


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}")


def fallback_table(versions: pd.DataFrame) -> pd.DataFrame:
    """One row per candidate version whose gate recorded a comparison with the fallback."""
    rows = []
    for row in versions.itertuples():
        gate = json.loads(row.gate) if isinstance(row.gate, str) else {}
        versus = gate.get("fallback")
        if row.role != "candidate" or not versus:
            continue
        low, high = versus["ci95"]
        rows.append({"version": row.version, "model_id": row.model_id, "metric": versus["metric"],
                     "candidate": versus["candidate"], "fallback": versus["fallback"], "lead": versus["advantage"],
                     "ci95 low": low, "ci95 high": high, "fallback better": versus["fallback_better"],
                     "beyond noise": versus["significant"]})
    return pd.DataFrame(rows)


def make_summary_report(lake: Lake, out_path: Path, *, dataset: str, metric: str,
                        registry: ModelRegistry | None = None, target: str | None = None,
                        common_rows: int | None = None) -> dict:
    """Write the report; returns counts for metadata. Sections without data say so. With a
    ``registry`` and ``common_rows``, every version is also scored on one common evaluation set
    (:func:`assets.training.evaluation.common_evaluation`), beside each version's own hold-out."""
    sections: list[str] = []
    common_batches, common = [], pd.DataFrame()
    if registry is not None and target and common_rows and lake.exists(FEATURES) and lake.exists(MODEL_REGISTRY):
        common_batches, common = common_evaluation(registry, lake.read(FEATURES), target, common_rows)
    quality = lake.read(QUALITY, missing_ok=True)
    batches = lake.read(BATCHES, missing_ok=True)
    if not quality.empty:
        per_batch = quality[quality["column"] == QUALITY_BATCH_ROW].sort_values("batch_id")
        fig, axes = plt.subplots(1, 3, figsize=(13, 3))
        axes[0].bar(per_batch["batch_id"], per_batch["row_count"], color="#c9d7e8")
        axes[0].set_title("rows per batch")
        axes[1].plot(per_batch["batch_id"], per_batch["score"], marker="o")
        axes[1].set_ylim(0, 1.02)
        axes[1].set_title("quality score")
        axes[2].plot(per_batch["batch_id"], per_batch["missing_share"], marker="o", label="missing")
        axes[2].plot(per_batch["batch_id"], per_batch["duplicate_share"], marker="o", label="duplicates")
        axes[2].plot(per_batch["batch_id"], per_batch["out_of_range_share"], marker="o", label="out of range")
        axes[2].legend(fontsize=7)
        axes[2].set_title("shares per batch")
        for ax in axes:
            ax.tick_params(axis="x", rotation=70, labelsize=6)
        sections.append(f"<h2>Data quality over batches</h2><img src='data:image/png;base64,{png_base64(fig)}'>")
    if not batches.empty:
        bad = batches[batches["status"] != "ingested"]
        counts = batches["status"].value_counts()
        shown = ", ".join(f"{int(counts[s])} {s}" for s in ("ingested", "ingesting", "blocked", "quarantined")
                          if s in counts)
        sections.append(f"<p>Batches: {shown} (ingesting: incomplete; blocked: stopped by a blocking quality "
                        "check).</p>"
                        + (_table(bad[["batch_id", "reason_code", "reason"]]) if len(bad) else ""))
    versions = lake.read(MODEL_REGISTRY, missing_ok=True)
    if versions.empty:
        sections.append("<h2>Models</h2><p>No model registered yet.</p>")
    else:
        versions = versions.sort_values("version")
        holdout = versions["holdout_metrics"].map(json.loads).apply(pd.Series)
        cv = versions["cv_metrics"].map(json.loads).apply(pd.Series)
        fig, axes = plt.subplots(1, 3, figsize=(13, 3))
        labels = [f"v{v}\n{m}" for v, m in zip(versions["version"], versions["model_id"], strict=True)]
        if metric in holdout:
            axes[0].plot(labels, holdout[metric], marker="o", label="own hold-out (each its own months)")
        if metric in common:
            on_common = versions[["version"]].merge(common, on="version", how="left")[metric]
            axes[0].plot(labels, on_common, marker="D", label=f"common set ({len(common_batches)} latest batches)")
        if metric in cv:
            axes[0].plot(labels, cv[metric], marker="s", label="CV")
        axes[0].set_title(f"{metric} per version")
        axes[0].legend(fontsize=7)
        pos = np.arange(len(labels))
        axes[1].bar(pos - 0.2, versions["latency_single_ms"], width=0.4, label="1 row")
        axes[1].bar(pos + 0.2, versions["latency_batch_ms"], width=0.4, label="1,000 rows")
        axes[1].set_title("predict latency (ms)")
        axes[1].legend(fontsize=7)
        axes[2].bar(pos - 0.2, versions["peak_memory_mb"], width=0.4, label="peak MiB, 1,000-row predict")
        axes[2].bar(pos + 0.2, versions["artifact_bytes"] / 2**20, width=0.4, label="artifact MiB")
        axes[2].set_title("memory and size")
        axes[2].legend(fontsize=7)
        for ax in axes[1:]:
            ax.set_xticks(pos, labels)
        for ax in axes:
            ax.tick_params(axis="x", labelsize=7)
        sections.append(f"<h2>Model versions</h2><img src='data:image/png;base64,{png_base64(fig)}'>")
        shown = versions[["version", "created_at", "role", "model_id", "algorithm", "variant", "training_rows",
                          "features_version", "latency_single_ms", "peak_memory_mb"]].copy()
        shown = pd.concat([shown, holdout.add_prefix("holdout_")], axis=1)
        sections.append(_table(shown))
        if len(common):
            sections.append(
                f"<h3>All versions on one evaluation set</h3><p>Batches {html.escape(', '.join(common_batches))} "
                f"({int(common['rows'].iloc[0]):,} labelled rows), the latest holding the hold-out's size: each "
                "version's own hold-out is from the months before it was trained and not comparable across "
                "versions; these figures are. <b>in_sample</b>: the version was trained on some of these "
                "batches, so its figure there flatters it.</p>" + _table(common.round(4)))
        versus = fallback_table(versions)
        if len(versus):
            beaten = int(versus["fallback better"].sum())
            sections.append("<h3>Fallback against the candidate on the same hold-out</h3>"
                            f"<p>{beaten} of {len(versus)} candidate(s) beaten by the fallback trained on the "
                            "same window (lead: positive = fallback better; 95% paired-bootstrap interval). "
                            "The candidate stays the AutoML winner; the gate's reason says why.</p>"
                            + _table(versus))
        params = versions[["version", "model_id", "hyperparameters"]].copy()
        params["hyperparameters"] = params["hyperparameters"].map(
            lambda p: ", ".join(f"{k}={v}" for k, v in json.loads(p).items() if v is not None))
        sections.append("<h3>Selected hyperparameters</h3>" + _table(params))
    aliases = lake.read(MODEL_ALIASES, missing_ok=True)
    if not aliases.empty:
        sections.append("<h2>Alias history</h2>" + _table(aliases.sort_values("change_id")))
    board = lake.read(LEADERBOARD, missing_ok=True)
    if not board.empty:
        best = board[board["rank"] == 1].sort_values("trained_at")
        sections.append("<h2>Best candidate of each training run</h2>" + _table(
            best[["trained_at", "run_id", "model_id", "variant", "stage", "sort_metric", "sort_value"]]))
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>Summary: {html.escape(dataset)}</title>"
           "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:"
           "collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style>"
           f"</head><body><h1>Summary: {html.escape(dataset)}</h1><p>Generated "
           f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC} from the lake's tables.</p>{''.join(sections)}</body></html>")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, out_path)
    versus = fallback_table(versions) if not versions.empty else pd.DataFrame()
    beaten = int(versus["fallback better"].sum()) if len(versus) else 0
    return {"batches": len(batches), "versions": len(versions), "training_runs": board["run_id"].nunique()
            if not board.empty else 0, "candidates_beaten_by_fallback": beaten,
            "versions_on_common_set": int(common["error"].isna().sum()) if "error" in common else len(common)}
