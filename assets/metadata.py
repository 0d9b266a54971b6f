"""Dagster metadata helpers shared by the assets."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd


def preview(df: pd.DataFrame, rows: int = 8, max_cols: int = 12) -> dg.MetadataValue:
    """A Markdown table of the first rows (few columns, so it stays readable in the UI)."""
    shown = df.iloc[:rows, :max_cols].copy()
    for col in shown.columns:
        if pd.api.types.is_datetime64_any_dtype(shown[col]):
            shown[col] = shown[col].astype(str)
    return dg.MetadataValue.md(shown.to_markdown(index=False))


def timestamp(value: pd.Timestamp | None) -> dg.MetadataValue | None:
    return dg.MetadataValue.timestamp(value.timestamp()) if value is not None and pd.notna(value) else None


def numbers(values: dict[str, int | float]) -> dict[str, dg.MetadataValue]:
    """Numeric metadata: the Dagster UI plots these across materializations."""
    return {k: dg.MetadataValue.float(float(v)) if isinstance(v, float) else dg.MetadataValue.int(int(v))
            for k, v in values.items()}


def report_links(location: str, base_url: str) -> dict[str, dg.MetadataValue]:
    """Metadata naming a published report: where it is stored, and the link that opens it in a
    browser: the router's ``/reports/<name>`` at ``base_url`` (``router.base_url()``), which reads it
    from the same place (a file path or an object-store URI is not something a browser opens from
    another machine)."""
    name = location.replace("\\", "/").rsplit("/", 1)[-1]
    return {"report": dg.MetadataValue.path(location), "report_url": dg.MetadataValue.url(f"{base_url}/reports/{name}")}


def model_version_metadata(registry, version: int) -> dict[str, dg.MetadataValue]:
    """What a registry asset's materialization says about the version it now points to: version,
    algorithm, variant, the hold-out metrics (4 significant digits), the training data's Delta
    version and size, and the artifact's digest (the thing the router verifies before serving)."""
    row = registry.get(version)
    holdout = {f"holdout_{k}": float(f"{v:.4g}") for k, v in json.loads(row["holdout_metrics"] or "{}").items()
               if isinstance(v, int | float)}
    return {"version": dg.MetadataValue.int(int(version)),
            "algorithm": dg.MetadataValue.text(str(row["algorithm"])),
            "variant": dg.MetadataValue.text(str(row["variant"])),
            **numbers(holdout),
            **numbers({"features_version": int(row["features_version"]), "training_rows": int(row["training_rows"])}),
            "sha256": dg.MetadataValue.text(str(row["sha256"]))}
