"""The zoo's datasets: what shape each has, the file it is written as and the one YAML config
that runs the loop on it. ``build(folder)`` writes both and returns the config's path.

The configs set only what describes the data (source, time column, target, task, how it is cut
into batches) and bound the training budget so the whole zoo runs inside ``make test``; every
other setting keeps its default, because the defaults are what the zoo is here to prove.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from zoo import generators, real

# a bounded search: three model families, two folds, no tuning; the zoo tests the loop, and
# bench/automl_vs_baseline.py measures quality with the full default search
ZOO_TRAINING = {"models": ["lr", "dt", "lightgbm"], "folds": 2, "budget_time_minutes": 0.5, "tune_top": 0}


@dataclass(frozen=True)
class ZooDataset:
    """One dataset of the zoo: ``make()`` the frame, written as ``file_format``, configured by ``dataset``
    (the config's dataset section without ``source``) and ``stream``."""

    name: str
    shape: str                         # what it tests, in a few words
    make: Callable[[], pd.DataFrame]
    file_format: str                   # csv | xlsx | parquet
    dataset: dict[str, Any]
    stream: dict[str, Any]
    real: bool = False                 # rows from a package's data file (bench compares on these)
    extra: dict[str, Any] = field(default_factory=dict)  # other config sections, when the data needs them

    def write_data(self, folder: Path) -> Path:
        """The source file in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        frame = self.make()
        path = folder / f"{self.name}.{self.file_format}"
        if self.file_format == "csv":
            frame.to_csv(path, index=False)
        elif self.file_format == "xlsx":
            frame.to_excel(path, index=False, engine="openpyxl")
        else:
            frame.to_parquet(path, index=False)
        return path

    def config(self, data_file: Path, training: dict[str, Any] | None = None) -> dict[str, Any]:
        """The configuration as a mapping (``training`` replaces the zoo's bounded search)."""
        return {"dataset": {"name": self.name, "source": {"path": data_file.name}, **self.dataset},
                "stream": self.stream, "training": training if training is not None else ZOO_TRAINING,
                **self.extra}

    def build(self, folder: Path, training: dict[str, Any] | None = None) -> Path:
        """Write the data file and ``<name>.yaml`` into ``folder``; the config's path."""
        data = self.write_data(folder)
        path = folder / f"{self.name}.yaml"
        path.write_text(f"# zoo dataset {self.name}: {self.shape}\n"
                        + yaml.safe_dump(self.config(data, training), sort_keys=False))
        return path


ZOO: list[ZooDataset] = [
    ZooDataset("records", "binary YES/NO target missing on 16% of rows, categorical-heavy, +01:00/+02:00 offsets",
               generators.records, "csv",
               {"task": "classification", "time_column": "filed_at", "target": "granted"},
               {"batch_by": "time", "batch_window": "1MS"}),
    ZooDataset("bookings", "regression on a price in cents (10^4..10^6), repeated identical rows, roles "
               "inferred, XLSX", generators.bookings, "xlsx",
               {"task": "regression", "time_column": "booked_at", "target": "price_cents"},
               {"batch_by": "time", "batch_window": "1MS"}),
    ZooDataset("emails", "two free-text columns with empty, blank and missing values, boolean target, "
               "batches of 500 rows", generators.emails, "csv",
               {"task": "classification", "time_column": "received", "target": "is_spam",
                "categorical": ["sender_domain"], "text": ["subject", "body"]},
               {"batch_by": "rows", "batch_rows": 500}),
    ZooDataset("sensors", "mostly numeric with heavy missingness (a sensor offline for days), three "
               "classes in words, Parquet", generators.sensors, "parquet",
               {"task": "classification", "time_column": "measured_at", "target": "condition"},
               {"batch_by": "time", "batch_window": "1MS"}),
    ZooDataset("products", "multiclass strings with a class that appears only in the last months, "
               "integer-coded ids, Parquet", generators.products, "parquet",
               {"task": "classification", "time_column": "ordered_at", "target": "department",
                "categorical": ["store_id"]},
               {"batch_by": "time", "batch_window": "1MS"}),
    ZooDataset("failure_rate", "regression on a small scale (10^-4..10^-2), a regular 2-hour clock",
               generators.failure_rate, "csv",
               {"task": "regression", "time_column": "hour_start", "target": "defect_rate"},
               {"batch_by": "time", "batch_window": "1MS"}),
    ZooDataset("churn", "0.0/1.0 target, one month in which every row is of one class, XLSX",
               generators.churn, "xlsx",
               {"task": "classification", "time_column": "period_end", "target": "churned"},
               {"batch_by": "time", "batch_window": "1MS"}),
    ZooDataset("gapminder", "real (plotly): 142 countries every five years, tiny batches, regression "
               "on life expectancy", real.gapminder, "csv",
               {"task": "regression", "time_column": "observed", "target": "lifeExp", "id_column": "country"},
               {"batch_by": "time", "batch_window": "1YS"}, real=True),
    ZooDataset("breast_cancer", "real (scikit-learn): 30 numeric features, 569 rows in batches of 100, "
               "string diagnosis", real.breast_cancer, "csv",
               {"task": "classification", "time_column": "examined_at", "target": "diagnosis"},
               {"batch_by": "rows", "batch_rows": 100}, real=True),
]


def by_name(name: str) -> ZooDataset:
    """The zoo dataset called ``name``."""
    for entry in ZOO:
        if entry.name == name:
            return entry
    raise KeyError(f"no zoo dataset {name!r}; known: {[d.name for d in ZOO]}")
