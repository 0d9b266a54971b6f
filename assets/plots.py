"""Figures for the HTML reports (EDA, training summary, A/B): rendered headless, inlined as PNG."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or in the Dagster daemon
import matplotlib.pyplot as plt


def png_base64(fig: plt.Figure, tight: bool = True) -> str:
    """PNG as base64. ``tight`` bounding boxes cost ~50 ms per axes, so grids lay out by hand."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()
