"""The zoo's datasets are what their descriptions say: each config loads, the stream cuts it into
batches, and each shape the zoo promises is really in its data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from config import load_config
from lake.paths import data_paths
from stream.emulator import StreamEmulator
from stream.sources import read_source
from zoo.catalog import ZOO, by_name


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, pd.DataFrame]]:
    out = {}
    for entry in ZOO:
        folder = tmp_path_factory.mktemp(entry.name)
        config = entry.build(folder / "config")
        out[entry.name] = (config, read_source(load_config(str(config)).dataset.source.model_copy(
            update={"path": str(folder / "config" / f"{entry.name}.{entry.file_format}")})))
    return out


def test_every_config_loads_and_streams_into_several_batches(built, tmp_path: Path) -> None:
    assert len(ZOO) >= 8 and len({d.name for d in ZOO}) == len(ZOO)
    assert {d.file_format for d in ZOO} == {"csv", "xlsx", "parquet"} and sum(d.real for d in ZOO) >= 2
    for name, (config, _) in built.items():
        cfg = load_config(str(config))
        plan = StreamEmulator(cfg, data_paths(tmp_path / name).ensure()).plan
        assert 6 <= len(plan) <= 12, name
        assert all(b.stop - b.start <= 1000 for b in plan), name  # small: the zoo runs inside make test


def test_the_shapes_the_zoo_promises(built) -> None:
    records = built["records"][1]
    assert set(records["granted"].dropna()) == {"YES", "NO"}
    assert 0.13 < records["granted"].isna().mean() < 0.19
    assert records["filed_at"].str.endswith(("+01:00", "+02:00")).all()
    bookings = built["bookings"][1]
    assert bookings["price_cents"].between(1e3, 1e7).all() and bookings.duplicated().sum() > 100
    emails = built["emails"][1]
    assert emails["is_spam"].dtype == bool
    assert (emails["subject"].fillna("").str.strip() == "").sum() > 100 and emails["body"].isna().sum() > 50
    sensors = built["sensors"][1]
    assert sensors["pressure"].isna().mean() > 0.2 and sensors["condition"].nunique() == 3
    products = built["products"][1]
    first_garden = pd.to_datetime(products.loc[products["department"] == "garden", "ordered_at"]).min()
    assert first_garden > pd.to_datetime(products["ordered_at"]).min() + pd.Timedelta(days=120)
    assert built["failure_rate"][1]["defect_rate"].between(1e-5, 0.1).all()
    churn = built["churn"][1]
    july = pd.to_datetime(churn["period_end"]).dt.month == 7
    assert set(churn["churned"]) == {0.0, 1.0} and set(churn.loc[july, "churned"]) == {0.0}
    assert len(built["gapminder"][1]) == 1704 and len(built["breast_cancer"][1]) == 569
    assert by_name("gapminder").real and not by_name("records").real
