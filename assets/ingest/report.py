"""Automatic EDA over the ``features`` table as one self-contained HTML file (plots inlined)."""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or in the Dagster daemon
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from assets.plots import png_base64
from features import FeatureSpec
from lake.tables import BATCH_COLUMN, QUALITY_BATCH_ROW


def _grid(n: int, cols: int = 4) -> tuple[plt.Figure, np.ndarray]:
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.04, top=0.96, hspace=0.55, wspace=0.35)
    return fig, axes.flat


def target_by_batch(df: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Rows and target balance per batch: positive/class shares (classification) or mean."""
    grouped = df.groupby(BATCH_COLUMN, sort=True)
    out = pd.DataFrame({"rows": grouped.size()})
    y = df[spec.target]
    if spec.task == "regression" or (pd.api.types.is_integer_dtype(y) and set(y.dropna().unique()) <= {0, 1}):
        out["target_mean"] = grouped[spec.target].mean().astype(float)
    else:
        shares = pd.crosstab(df[BATCH_COLUMN], y, normalize="index")
        out = out.join(shares.add_prefix("share_"))
    return out


def _short(label: object, width: int = 22) -> str:
    """A category label that fits beside its bar (the full list is in the tables above)."""
    text = str(label)
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def make_eda_report(features: pd.DataFrame, spec: FeatureSpec, quality: pd.DataFrame,
                    out_path: Path, *, dataset: str, max_columns: int = 24,
                    batch_rows: pd.Series | None = None) -> dict:
    """Write the report to ``out_path`` atomically and return summary figures for metadata.

    ``features`` may be a sample of the table (plots need no more); ``batch_rows`` are then the
    true rows per batch, which the report shows as the batches' sizes (a sample's counts are not)."""
    figures: list[tuple[str, str]] = []
    n_batches = features[BATCH_COLUMN].nunique()
    true_rows = batch_rows if batch_rows is not None else features.groupby(BATCH_COLUMN).size()
    sampled = int(true_rows.sum()) > len(features)

    balance = target_by_batch(features, spec).rename(columns={"rows": "rows sampled"})
    balance.insert(0, "rows", true_rows.reindex(balance.index).astype(int))
    if not sampled:
        balance = balance.drop(columns="rows sampled")
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.bar(range(len(balance)), balance["rows"], color="#c9d7e8", label="rows")
    ax.set_ylabel("rows in the batch")
    ax.set_xticks(range(len(balance)), balance.index, rotation=60, fontsize=7)
    ax2 = ax.twinx()
    for col in [c for c in balance.columns if c not in ("rows", "rows sampled")]:
        ax2.plot(range(len(balance)), balance[col], marker="o", label=col)
    ax2.set_ylabel("target share / mean" + (" (sample)" if sampled else ""))
    ax2.legend(loc="upper right", fontsize=7)
    ax.set_title(f"Rows and target balance per batch ({spec.target})")
    figures.append(("Target balance over batches", png_base64(fig)))

    batch_q = quality[quality["column"] == QUALITY_BATCH_ROW].sort_values("batch_id") if not quality.empty else quality
    col_q = quality[quality["column"] != QUALITY_BATCH_ROW] if not quality.empty else quality
    if not col_q.empty:
        pivot = col_q.pivot_table(index="column", columns="batch_id", values="missing_share")
        fig, ax = plt.subplots(figsize=(10, 0.25 * len(pivot) + 1.5))
        im = ax.imshow(pivot.to_numpy(), aspect="auto", cmap="Reds", vmin=0, vmax=1)
        ax.grid(False)  # a heat map's cells are its grid
        ax.set_yticks(range(len(pivot)), pivot.index, fontsize=7)
        ax.set_xticks(range(pivot.shape[1]), pivot.columns, rotation=60, fontsize=7)
        fig.colorbar(im, ax=ax, label="missing share")
        ax.set_title("Missingness per column and batch (raw batches, before cleaning)")
        figures.append(("Missingness", png_base64(fig)))
    if not batch_q.empty:
        fig, ax = plt.subplots(figsize=(10, 2.6))
        ax.plot(batch_q["batch_id"], batch_q["score"], marker="o")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("quality score")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        ax.set_title("Batch quality score")
        figures.append(("Quality score per batch", png_base64(fig)))

    numeric = [*spec.time_features, *spec.numeric][:max_columns]
    if numeric:
        fig, axes = _grid(len(numeric))
        for ax, col in zip(axes, numeric, strict=False):
            values = features[col].dropna()
            ax.hist(values, bins=40, color="#4c78a8")
            ax.set_title(f"{col} ({features[col].isna().mean():.0%} missing)", fontsize=8)
            ax.tick_params(labelsize=6)
        figures.append(("Numeric distributions", png_base64(fig, tight=False)))
    categorical = list(spec.categorical)[:max_columns]
    if categorical:
        fig, axes = _grid(len(categorical))
        for ax, col in zip(axes, categorical, strict=False):
            top = features[col].fillna("(missing)").value_counts().head(12)[::-1]
            ax.barh([_short(c) for c in top.index], top.to_numpy(), color="#f58518")
            ax.set_title(f"{col} ({features[col].nunique()} values" + (" in the sample)" if sampled else ")"),
                         fontsize=8)
            ax.set_xlabel("rows" + (" in the sample" if sampled else ""), fontsize=6)
            ax.tick_params(labelsize=6)
        # labels are cut to 22 characters; the left margin and the gaps hold them (a tight bounding
        # box would cost ~50 ms per axes)
        fig.subplots_adjust(left=0.1, wspace=0.8)
        figures.append(("Top categories", png_base64(fig, tight=False)))
    corr_cols = numeric + ([spec.target] if pd.api.types.is_numeric_dtype(features[spec.target]) else [])
    if len(corr_cols) >= 2:
        corr = features[corr_cols].astype(float).corr()
        fig, ax = plt.subplots(figsize=(0.4 * len(corr_cols) + 3, 0.4 * len(corr_cols) + 2))
        im = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.grid(False)
        ax.set_xticks(range(len(corr_cols)), corr_cols, rotation=90, fontsize=7)
        ax.set_yticks(range(len(corr_cols)), corr_cols, fontsize=7)
        fig.colorbar(im, ax=ax)
        ax.set_title("Pearson correlation")
        figures.append(("Correlations", png_base64(fig)))

    missing = features[spec.feature_columns].isna().mean().sort_values(ascending=False)
    summary = {
        "rows": int(true_rows.sum()), "rows_sampled": len(features), "batches": int(n_batches),
        "time_min": str(features["event_time"].min()), "time_max": str(features["event_time"].max()),
        "features": len(spec.feature_columns),
        "missing_share": float(features[spec.feature_columns].isna().to_numpy().mean()),
    }
    doc = [f"<!doctype html><html><head><meta charset='utf-8'><title>EDA: {html.escape(dataset)}</title>",
           "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
           "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}"
           "img{max-width:100%}</style></head><body>",
           f"<h1>EDA report: {html.escape(dataset)}</h1>",
           f"<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} from the <code>features</code> table "
           f"(task: {spec.task}, target: <code>{html.escape(spec.target)}</code>).</p>",
           "<table>" + "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>"
                               for k, v in summary.items()) + "</table>",
           "<h2>Target balance per batch</h2>", balance.round(4).to_html(),
           "<h2>Missing share per feature</h2>", missing.round(4).to_frame("missing_share").to_html()]
    for title, img in figures:
        doc.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{img}'>")
    doc.append("</body></html>")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text("\n".join(doc), encoding="utf-8")
    os.replace(tmp, out_path)
    return {**summary, "plots": len(figures)}
