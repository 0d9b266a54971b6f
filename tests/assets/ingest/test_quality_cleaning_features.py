"""Plain logic on small frames with asserted values: contract, quality, cleaning, features."""

import json

import numpy as np
import pandas as pd
import pytest

from assets.ingest.cleaning import clean_batch
from assets.ingest.contract import build_contract, contract_conflicts
from assets.ingest.quality import batch_quality, evaluate_checks, seen_categories
from config import load_config
from features import FeatureSpec, build_features, encode_target
from lake.tables import QUALITY_BATCH_ROW
from tests.conftest import write_config


def _frame() -> pd.DataFrame:
    ts = pd.to_datetime(["2024-01-06 10:00", "2024-01-06 11:00", "2024-01-08 12:00", "2024-01-08 12:00",
                         "2024-01-09 13:00", None], utc=True).astype("datetime64[us, UTC]")
    return pd.DataFrame({
        "ts": ts,
        "city": [" Oslo", "Rome", "Lima", "Lima", "", "Rome"],
        "plan": ["basic", "pro", "pro", "pro", None, "basic"],
        "temp": [10.0, 99.0, np.nan, np.nan, np.nan, 5.0],
        "amount": [1.0, 2.0, 3.0, 3.0, np.nan, 4.0],
        "visits": [1.0, 2.0, 3.0, 3.0, np.nan, 4.0],
        "row_id": ["a", "b", "c", "c", "e", "f"],
        "churn": ["yes", "no", "yes", "yes", None, "no"],
    })


@pytest.fixture
def cfg(tmp_path):
    return load_config(write_config(tmp_path, {"quality": {"max_missing_share": 0.4},
                                               "cleaning": {"max_row_missing_share": 0.5}}))


@pytest.fixture
def contract(cfg):
    return build_contract(_frame(), cfg)


def test_contract_takes_config_roles_and_infers_the_rest(cfg, tmp_path) -> None:
    contract = build_contract(_frame(), cfg)
    assert contract.names("numeric") == ["temp", "amount", "visits"]
    assert contract.names("categorical") == ["city", "plan"]
    assert (contract.time, contract.target, contract.names("id")) == ("ts", "churn", ["row_id"])
    open_cfg = load_config(write_config(tmp_path / "open", {"dataset": {"numeric": None, "categorical": None,
                                                                        "text": None}}))
    raw = pd.DataFrame({"ts": ["2024-01-01"] * 4, "churn": ["y"] * 4, "row_id": list("abcd"),
                        "n": ["1", "2.5", None, "4"], "c": ["a", "b", "a", "b"],
                        "note": ["the quick brown fox", "jumps over the lazy", "dog and runs away", "far far away now"],
                        "empty": [None] * 4})
    inferred = build_contract(raw, open_cfg)
    roles = {c.name: (c.role, c.dtype, c.origin) for c in inferred.columns}
    assert roles["n"] == ("numeric", "float64", "inferred")
    assert roles["c"] == ("categorical", "string", "inferred")
    assert roles["note"][0] == "text"
    assert roles["empty"][0] == "ignore"
    assert contract_conflicts(inferred, cfg) == ["temp: config declares it as numeric, the lake's contract has no "
                                                 "such column", "amount: config declares it as numeric, the lake's "
                                                 "contract has no such column", "visits: config declares it as "
                                                 "numeric, the lake's contract has no such column", "city: config "
                                                 "declares it as categorical, the lake's contract has no such column",
                                                 "plan: config declares it as categorical, the lake's contract has "
                                                 "no such column"]


def test_quality_metrics_values(cfg, contract) -> None:
    df = _frame()
    rows = batch_quality(df, contract, cfg, "b2", seen={"city": {"Oslo", "Rome"}, "plan": {"basic", "pro"}})
    by_col = rows.set_index("column")
    assert by_col.loc["temp", "missing_share"] == pytest.approx(3 / 6)
    assert by_col.loc["temp", "min"] == 5.0 and by_col.loc["temp", "max"] == 99.0
    assert by_col.loc["temp", "out_of_range_share"] == pytest.approx(1 / 3)  # 99 > 45 of 3 present
    assert by_col.loc["amount", "mean"] == pytest.approx(2.6)
    assert by_col.loc["city", "distinct_count"] == 4  # " Oslo" and "" count as they arrived
    assert set(json.loads(by_col.loc["city", "unseen_categories"])) == {" Oslo", "Lima", ""}
    assert by_col.loc["city", "unseen_share"] == pytest.approx(4 / 6)
    batch = by_col.loc[QUALITY_BATCH_ROW]
    assert batch["duplicate_share"] == pytest.approx(1 / 6)
    features = df[["temp", "amount", "visits", "city", "plan"]]
    penalties = [features.isna().to_numpy().mean(), 1 / 6, 1 / 3, 4 / 6, 1 / 8]  # temp: 1 of 8 checked columns
    assert batch["score"] == pytest.approx(1 - np.mean(penalties))
    outcomes = {o.name: o.passed for o in evaluate_checks(rows, cfg)}
    assert outcomes == {"missing_within_limits": False, "duplicates_within_limit": False, "values_in_range": False,
                        "unseen_categories_within_limit": False, "quality_score_above_min": True}


def test_unseen_categories_come_from_other_batches_only() -> None:
    history = pd.DataFrame({"batch_id": ["b1", "b2"], "column": ["city", "city"],
                            "categories": [json.dumps(["Oslo"]), json.dumps(["Rome"])]})
    assert seen_categories(history, "b2") == {"city": {"Oslo"}}


def test_cleaning_rules_count_what_they_change(cfg, contract) -> None:
    kept, counts = clean_batch(_frame(), contract, cfg)
    assert counts == {"rows_in": 6, "categories_normalized": 2, "dropped_missing_time": 1,
                      "dropped_missing_target": 1, "dropped_duplicates": 1, "out_of_range_clip": 1,
                      "dropped_too_sparse": 0, "rows_out": 3}
    assert kept["row_id"].tolist() == ["a", "b", "c"]
    assert kept["city"].tolist() == ["Oslo", "Rome", "Lima"]
    assert kept["temp"].tolist()[:2] == [10.0, 45.0]  # clipped to the configured max


def test_cleaning_drop_and_null_actions(cfg, contract) -> None:
    dropping = cfg.model_copy(update={"cleaning": cfg.cleaning.model_copy(update={"out_of_range": "drop"})})
    kept, counts = clean_batch(_frame(), contract, dropping)
    assert counts["out_of_range_drop"] == 1 and "b" not in kept["row_id"].tolist()
    nulling = cfg.model_copy(update={"cleaning": cfg.cleaning.model_copy(update={"out_of_range": "null"})})
    kept, counts = clean_batch(_frame(), contract, nulling)
    assert counts["out_of_range_null"] == 1 and pd.isna(kept.set_index("row_id").loc["b", "temp"])


def test_build_features_types_time_features_and_target(cfg, contract) -> None:
    spec = FeatureSpec.from_contract(contract, cfg)
    kept, _ = clean_batch(_frame(), contract, cfg)
    out = build_features(kept.assign(_batch_id="b1"), spec)
    assert list(out.columns) == ["event_time", "hour", "day_of_week", "is_weekend", "temp", "amount", "visits",
                                 "city", "plan", "row_id", "churn", "_batch_id"]
    assert out["hour"].tolist() == [10, 11, 12]
    assert out["day_of_week"].tolist() == [5, 5, 0]  # 2024-01-06 is a Saturday
    assert out["is_weekend"].tolist() == [1, 1, 0]
    assert out["churn"].tolist() == [1, 0, 1]  # yes/no labels become 1/0
    assert np.isnan(out["temp"].iloc[2])  # imputation belongs to the model pipeline
    serving = build_features(kept.drop(columns=["churn"]).head(1), spec)  # a request has no target
    assert "churn" not in serving.columns and serving["city"].tolist() == ["Oslo"]


def test_time_features_read_in_the_configured_zone(contract, tmp_path) -> None:
    ny = load_config(write_config(tmp_path, {"features": {"time_features": ["hour"], "timezone": "America/New_York"}}))
    out = build_features(_frame().head(1), FeatureSpec.from_contract(contract, ny))
    assert out["hour"].tolist() == [5]  # 10:00 UTC is 05:00 in New York in January


def test_encode_target_by_task() -> None:
    assert encode_target(pd.Series(["True", "False", None]), "classification").tolist() == [1, 0, pd.NA]
    assert encode_target(pd.Series(["3", "1"]), "classification").tolist() == [3, 1]
    assert encode_target(pd.Series(["cat", "dog"]), "classification").tolist() == ["cat", "dog"]
    assert encode_target(pd.Series(["1.5", "x"]), "regression").tolist()[0] == 1.5


def _bookings() -> pd.DataFrame:
    """Bookings without an id: rows 0 and 1 are identical yet two real, separate bookings."""
    ts = pd.to_datetime(["2024-01-06 10:00", "2024-01-06 10:00", "2024-01-07 09:00", "2024-01-08 12:00"],
                        utc=True).astype("datetime64[us, UTC]")
    return pd.DataFrame({"ts": ts, "city": ["Oslo", "Oslo", "Rome", "Lima"], "plan": ["basic", "basic", "pro", "pro"],
                         "temp": [10.0, 10.0, 12.0, 14.0], "amount": [1.0, 1.0, 2.0, 3.0],
                         "visits": [1.0, 1.0, 2.0, 3.0], "churn": ["yes", "yes", "no", "no"]})


@pytest.fixture
def no_id_cfg(tmp_path):
    return load_config(write_config(tmp_path / "noid", {"dataset": {"id_column": None}}))


def test_identical_rows_without_a_key_are_kept_counted_and_not_checked(no_id_cfg) -> None:
    contract = build_contract(_bookings(), no_id_cfg)
    assert contract.names("id") == []
    kept, counts = clean_batch(_bookings(), contract, no_id_cfg)
    assert len(kept) == 4  # the two equal bookings both stay
    assert (counts["dropped_duplicates"], counts["identical_rows_kept"]) == (0, 1)
    rows = batch_quality(_bookings(), contract, no_id_cfg, "b1", seen={})
    batch = rows.set_index("column").loc[QUALITY_BATCH_ROW]
    assert np.isnan(batch["duplicate_share"])  # not measured, not a zero
    # four penalties measured (missing, out of range, unseen, columns over limit), all zero here
    assert batch["score"] == pytest.approx(1.0)
    check = next(o for o in evaluate_checks(rows, no_id_cfg) if o.name == "duplicates_within_limit")
    assert check.passed and check.description.startswith("not applicable: no duplicate key")
    assert check.metadata == {}


def test_duplicates_are_keyed_on_the_id_and_the_latest_version_is_kept(cfg) -> None:
    frame = _frame().iloc[:3].copy()
    corrected = frame.iloc[[1]].assign(amount=20.0, ts=frame["ts"].iloc[1] + pd.Timedelta(minutes=5))
    frame = pd.concat([frame, corrected], ignore_index=True)  # b delivered again with a new amount
    contract = build_contract(frame, cfg)
    kept, counts = clean_batch(frame, contract, cfg)
    assert counts["dropped_duplicates"] == 1 and "identical_rows_kept" not in counts
    assert kept["row_id"].tolist() == ["a", "c", "b"]
    assert kept.set_index("row_id").loc["b", "amount"] == 20.0
    rows = batch_quality(frame, contract, cfg, "b1", seen={})
    assert rows.set_index("column").loc[QUALITY_BATCH_ROW, "duplicate_share"] == pytest.approx(1 / 4)


def test_configured_duplicate_keys_and_all_columns(no_id_cfg) -> None:
    contract = build_contract(_bookings(), no_id_cfg)

    def with_keys(keys):
        return no_id_cfg.model_copy(update={"cleaning": no_id_cfg.cleaning.model_copy(
            update={"duplicate_keys": keys})})

    kept, counts = clean_batch(_bookings(), contract, with_keys(["plan"]))
    assert counts["dropped_duplicates"] == 2 and kept["city"].tolist() == ["Oslo", "Lima"]
    kept, counts = clean_batch(_bookings(), contract, with_keys("all_columns"))
    assert counts["dropped_duplicates"] == 1 and len(kept) == 3
    with pytest.raises(ValueError, match=r"duplicate_keys names column\(s\) \['booking_no'\]"):
        clean_batch(_bookings(), contract, with_keys(["booking_no"]))
    off = no_id_cfg.model_copy(update={"cleaning": no_id_cfg.cleaning.model_copy(update={"drop_duplicates": False})})
    assert clean_batch(_bookings(), contract, off)[1].get("dropped_duplicates") is None


def test_an_empty_duplicate_key_list_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="an empty key list identifies nothing"):
        load_config(write_config(tmp_path, {"cleaning": {"duplicate_keys": []}}))
