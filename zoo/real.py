"""Real tables shipped inside the wheels of packages in the lock (their data files, read from the
installed package, never downloaded). Where a table has no time column of its own, the arrival
order is synthesized and said so; the values are the package's.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, located without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (needed for {relative})")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise FileNotFoundError(f"{package} ships no {relative}")
    return path


def gapminder() -> pd.DataFrame:
    """plotly's Gapminder extract: 142 countries every five years 1952..2007 (1,704 rows). The
    year becomes mid-year timestamps; life expectancy is the regression target (scale 10^1)."""
    df = pd.read_csv(package_file("plotly", "package_data/datasets/gapminder.csv.gz"))
    df["observed"] = pd.to_datetime(df["year"].astype(str) + "-07-01")
    return df[["observed", "country", "continent", "pop", "gdpPercap", "lifeExp"]]


BREAST_CANCER_MEASURES = ["radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
                          "concave_points", "symmetry", "fractal_dimension"]


def breast_cancer(seed: int = 0) -> pd.DataFrame:
    """scikit-learn's Wisconsin diagnostic breast cancer table (569 rows; the mean, standard error and
    worst value of ten measures of the cell nuclei), read from the CSV in its wheel without importing
    scikit-learn. It has no time: arrival times over six months are synthesized in a random order;
    the target is the diagnosis in words (``malignant`` / ``benign``, the file's header names them)."""
    path = package_file("sklearn", "datasets/data/breast_cancer.csv")
    header = path.read_text().splitlines()[0].split(",")  # "569,30,malignant,benign": rows, features, names
    names = [f"mean_{m}" for m in BREAST_CANCER_MEASURES] + [f"{m}_error" for m in BREAST_CANCER_MEASURES] \
        + [f"worst_{m}" for m in BREAST_CANCER_MEASURES]
    df = pd.read_csv(path, skiprows=1, header=None, names=[*names, "target"])
    if len(df) != int(header[0]) or len(names) != int(header[1]):
        raise ValueError(f"{path}: {len(df)} rows x {len(names)} features, its header says {header[:2]}")
    df["diagnosis"] = np.asarray(header[2:4])[df.pop("target").to_numpy()]
    rng = np.random.default_rng(seed)
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    df.insert(0, "examined_at", pd.date_range("2024-01-01", periods=len(df), freq="7h").strftime("%Y-%m-%d %H:%M"))
    return df
