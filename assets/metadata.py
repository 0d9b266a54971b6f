"""Dagster metadata helpers shared by the assets."""

from __future__ import annotations

from pathlib import Path

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


def report_links(location: str) -> dict[str, dg.MetadataValue]:
    """Metadata naming a published report: its location, and a clickable file URL when it is a
    local file (an object-store URI is not one a browser opens)."""
    links: dict[str, dg.MetadataValue] = {"report": dg.MetadataValue.path(location)}
    if "://" not in location:
        links["report_url"] = dg.MetadataValue.url(Path(location).as_uri())
    return links
