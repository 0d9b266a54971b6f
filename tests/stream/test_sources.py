"""Source loading: three file formats, joins on keys, derived columns."""

from pathlib import Path

import pandas as pd
import pytest

from config.schema import DatasetConfig
from stream.sources import load_source, read_file


def _dataset(main: Path, **extra) -> DatasetConfig:
    return DatasetConfig.model_validate({"name": "t", "task": "classification", "source": {"path": str(main)},
                                         "time_column": "t", "target": "y", **extra})


@pytest.mark.parametrize("suffix", ["csv", "xlsx", "parquet"])
def test_three_formats_read_the_same_table(tmp_path: Path, suffix: str) -> None:
    df = pd.DataFrame({"t": ["2024-01-01", "2024-01-02"], "k": ["a", "b"], "x": [1.5, None], "y": [0, 1]})
    path = tmp_path / f"d.{suffix}"
    {"csv": lambda: df.to_csv(path, index=False), "xlsx": lambda: df.to_excel(path, index=False),
     "parquet": lambda: df.to_parquet(path, index=False)}[suffix]()
    got = read_file(path)
    assert got["k"].tolist() == ["a", "b"]
    assert got["x"].iloc[0] == 1.5 and pd.isna(got["x"].iloc[1])


def test_joins_add_prefixed_lookup_columns_and_derived_target(tmp_path: Path) -> None:
    pd.DataFrame({"t": ["2024-01-01", "2024-01-02", "2024-01-03"], "store": [1, 2, 9],
                  "sales": [10, 30, 5]}).to_csv(tmp_path / "fact.csv", index=False)
    pd.DataFrame({"store": ["1", "2"], "city": ["Oslo", "Rome"], "size": [100, 200]}).to_parquet(tmp_path / "s.parquet")
    ds = _dataset(tmp_path / "fact.csv",
                  joins=[{"source": {"path": str(tmp_path / "s.parquet")}, "keys": ["store"], "prefix": "store_"}],
                  derived_columns={"y": "sales > 20"})
    df = load_source(ds)
    assert list(df.columns) == ["t", "store", "sales", "store_city", "store_size", "y"]
    assert df["store_city"].tolist()[:2] == ["Oslo", "Rome"] and pd.isna(df["store_city"].iloc[2])
    assert df["y"].tolist() == [False, True, False]


def test_lookup_with_duplicate_keys_is_refused(tmp_path: Path) -> None:
    pd.DataFrame({"t": ["2024-01-01"], "k": ["a"], "y": [1]}).to_csv(tmp_path / "f.csv", index=False)
    pd.DataFrame({"k": ["a", "a"], "v": [1, 2]}).to_csv(tmp_path / "l.csv", index=False)
    ds = _dataset(tmp_path / "f.csv", joins=[{"source": {"path": str(tmp_path / "l.csv")}, "keys": ["k"]}])
    with pytest.raises(ValueError, match="1 duplicate key"):
        load_source(ds)


def test_bad_derived_expression_names_the_key(tmp_path: Path) -> None:
    pd.DataFrame({"t": ["2024-01-01"], "y": [1]}).to_csv(tmp_path / "f.csv", index=False)
    ds = _dataset(tmp_path / "f.csv", derived_columns={"z": "nope_col * 2"})
    with pytest.raises(ValueError, match=r"dataset.derived_columns.z: cannot evaluate"):
        load_source(ds)
