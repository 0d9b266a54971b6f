"""HTML report of an A/B analysis: the decision, per-variant figures, and three plots over the
sequential looks: the cumulative metric per variant with 95% bands, the traffic split, and the
p-values and interval of the difference."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from assets.ab.analysis import A, Analysis, B
from assets.plots import png_base64


def _plots(analysis: Analysis, events: pd.DataFrame) -> list[tuple[str, str]]:
    looks = analysis.looks
    out = []
    if len(looks):
        fig, ax = plt.subplots(figsize=(7, 3.2))
        n = looks["n_per_variant"]
        for variant, col, sd in ((A, "metric_a", "sd_a"), (B, "metric_b", "sd_b")):
            values = looks[col]
            band = 1.96 * looks[sd] / np.sqrt(n)  # normal band of a running mean
            shown = 1 - values if analysis.metric == "accuracy" else values
            ax.plot(n, shown, label=f"{variant}")
            ax.fill_between(n, shown - band, shown + band, alpha=0.2)
        ax.set_xlabel("labelled requests per variant")
        ax.set_ylabel(analysis.metric)
        ax.legend()
        ax.set_title("cumulative metric per variant (95% band)")
        out.append(("Metric over time", png_base64(fig)))
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.plot(n, looks["always_valid_p"], label="always-valid p (mSPRT)")
        ax.plot(n, looks["p_fixed"], label="fixed-horizon p (Welch)", color="tab:orange", alpha=0.8)
        ax.axhline(0.05, color="grey", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("labelled requests per variant")
        ax.legend()
        ax2 = ax.twinx()
        ax2.fill_between(n, looks["ci_low"], looks["ci_high"], color="tab:green", alpha=0.15)
        ax2.plot(n, looks["difference"], color="tab:green", linewidth=0.8)
        ax2.set_ylabel("loss B - A (95% CI)")
        ax.set_title("p-values and the difference over the looks")
        out.append(("Evidence over time", png_base64(fig)))
    if len(events):
        fig, ax = plt.subplots(figsize=(7, 2.8))
        frame = events.assign(is_b=(events["variant"] == B).astype(float)).set_index("event_time")
        share = frame["is_b"].expanding().mean()
        ax.plot(share.index, share.to_numpy(), label="observed share of B (cumulative)")
        ax.axhline(analysis.experiment.ab_split_b, color="grey", linestyle="--", label="configured split")
        ax.set_ylim(0, 1)
        ax.legend()
        ax.set_title("traffic split over time")
        out.append(("Traffic split", png_base64(fig)))
    return out


def _effect_text(analysis: Analysis) -> str:
    """The MDE and margin in the configured unit and in loss units (ab.mde_unit)."""
    e = analysis.effect
    if e is None:
        return "n/a"
    text = e.describe()
    if e.margin_text:
        text += f"; non-inferiority margin {e.margin_text}"
    return text + (f"; {e.undefined}" if e.undefined else "")


LOSS_NAMES = {"accuracy": "loss (error rate = 1 - accuracy)", "log_loss": "loss (log loss)",
              "mae": "loss (absolute error)"}


def write_report(analysis: Analysis, events: pd.DataFrame, out: Path) -> Path:
    """Write the self-contained HTML report (plots inlined) and return its path."""
    d = analysis.decision
    s = analysis.summary()
    figures = pd.DataFrame({v: f.__dict__ for v, f in analysis.variants.items()}).T
    # the variants' `metric` is the mean per-request loss the test compares (lower is better); the
    # chart plots accuracy itself, so the table names its column and shows accuracy beside it
    loss_column = LOSS_NAMES.get(analysis.metric, f"loss ({analysis.metric})")
    figures = figures.rename(columns={"metric": loss_column})
    if analysis.metric == "accuracy":
        figures.insert(figures.columns.get_loc(loss_column), "accuracy", 1 - figures[loss_column].astype(float))
    blocks = [f"<h1>A/B experiment {html.escape(analysis.experiment.experiment_id)}</h1>",
              f"<p>A = prod v{analysis.experiment.prod_version}, B = staging v{analysis.experiment.staging_version}, "
              f"split {analysis.experiment.ab_split_b:.0%} to B; metric: {analysis.metric} "
              f"(loss: lower is better); computed {analysis.computed_at:%Y-%m-%d %H:%M:%S} UTC</p>",
              f"<h2>Decision: {d.action.upper()}</h2><p>{html.escape(d.reason)}</p>",
              f"<p><b>Minimum detectable effect</b> {html.escape(_effect_text(analysis))}</p>",
              "<p><b>Sample ratio mismatch</b> p = {:.3g}; <b>label balance</b> p = {:.3g}; "
              "<b>required per variant</b> {}; <b>always-valid p</b> {}; <b>paired test</b> {}</p>".format(
                  analysis.srm.p_value, analysis.labels.p_value, s["required_per_variant"],
                  "n/a" if s["always_valid_p"] is None else f"{s['always_valid_p']:.3g}",
                  "no shadow pairs" if analysis.paired is None
                  else f"p = {analysis.paired.p_value:.3g} over {s['pairs']} labelled pairs"),
              figures.to_html(float_format=lambda x: f"{x:.4g}")]
    for title, png in _plots(analysis, events):
        blocks.append(f"<h2>{title}</h2><img src='data:image/png;base64,{png}'/>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("<!doctype html><html><head><meta charset='utf-8'><title>A/B report</title><style>"
                   "body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse}"
                   "td,th{border:1px solid #ccc;padding:2px 8px}</style></head><body>" + "\n".join(blocks)
                   + "</body></html>")
    return out
