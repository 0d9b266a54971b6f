"""The EDA report on a sample of the features table: the batches' true sizes, the sample named as one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from assets.ingest.report import make_eda_report
from features import FeatureSpec


def test_a_sampled_report_shows_the_true_batch_sizes_and_labels_the_sample(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 4000
    full = pd.DataFrame({"_batch_id": np.repeat(["b1", "b2"], [3000, 1000]),
                         "event_time": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
                         "x": rng.normal(size=n), "city": rng.choice(["Oslo", "a" * 40], n),
                         "y": rng.integers(0, 2, n)})
    spec = FeatureSpec(target="y", task="classification", time_column="event_time", numeric=["x"],
                       categorical=["city"], text=[], time_features=[], id_column=None)
    sample = full.sample(500, random_state=0)
    out = tmp_path / "eda.html"
    summary = make_eda_report(sample, spec, pd.DataFrame(), out, dataset="toy",
                              batch_rows=full.groupby("_batch_id").size())
    assert (summary["rows"], summary["rows_sampled"], summary["batches"]) == (4000, 500, 2)
    text = out.read_text()
    assert "<th>rows</th><td>4000</td>" in text and "<th>rows_sampled</th><td>500</td>" in text
    # the target balance table: each batch's true size, then the rows of it in the sample
    assert "<th>rows</th>\n      <th>rows sampled</th>" in text
    assert "<th>b1</th>\n      <td>3000</td>" in text and "<th>b2</th>\n      <td>1000</td>" in text
    whole = make_eda_report(full, spec, pd.DataFrame(), tmp_path / "whole.html", dataset="toy")
    assert (whole["rows"], whole["rows_sampled"]) == (4000, 4000)
    assert "rows sampled" not in (tmp_path / "whole.html").read_text()  # nothing to tell apart
